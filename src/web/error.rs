//! JSON errors and the one table that maps error codes to HTTP statuses.
//!
//! Modules below `web` have their own error enums and no HTTP types; each is
//! turned into an [`ApiError`] here, and the status always comes from [`TABLE`].

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

/// tus's checksum extension answers a chunk whose checksum does not match
/// with this (unregistered) status.
const CHECKSUM_MISMATCH: StatusCode = match StatusCode::from_u16(460) {
    Ok(s) => s,
    Err(_) => panic!("460 is a valid status"),
};

/// Every stable error code with its status. Integrators match on the code.
pub const TABLE: &[(&str, StatusCode)] = &[
    ("bad_request", StatusCode::BAD_REQUEST),
    ("invalid_json", StatusCode::BAD_REQUEST),
    ("unauthorized", StatusCode::UNAUTHORIZED),
    ("invalid_credentials", StatusCode::UNAUTHORIZED),
    ("invalid_token", StatusCode::UNAUTHORIZED),
    ("forbidden", StatusCode::FORBIDDEN),
    ("csrf", StatusCode::FORBIDDEN),
    ("password_change_required", StatusCode::FORBIDDEN),
    ("host_expired", StatusCode::FORBIDDEN),
    ("host_disabled", StatusCode::FORBIDDEN),
    ("volume_exhausted", StatusCode::FORBIDDEN),
    ("not_found", StatusCode::NOT_FOUND),
    ("unknown_host", StatusCode::NOT_FOUND),
    ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
    ("conflict", StatusCode::CONFLICT),
    ("offset_mismatch", StatusCode::CONFLICT),
    ("upload_expired", StatusCode::GONE),
    ("tus_version_unsupported", StatusCode::PRECONDITION_FAILED),
    ("checksum_mismatch", CHECKSUM_MISMATCH),
    ("illegal_transition", StatusCode::CONFLICT),
    ("session_not_open", StatusCode::CONFLICT),
    ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
    (
        "headers_too_large",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ),
    ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("range_not_satisfiable", StatusCode::RANGE_NOT_SATISFIABLE),
    ("unprocessable", StatusCode::UNPROCESSABLE_ENTITY),
    ("invalid_field", StatusCode::UNPROCESSABLE_ENTITY),
    ("password_rejected", StatusCode::UNPROCESSABLE_ENTITY),
    ("unsupported_image", StatusCode::UNPROCESSABLE_ENTITY),
    ("corrupt_image", StatusCode::UNPROCESSABLE_ENTITY),
    ("image_too_small", StatusCode::UNPROCESSABLE_ENTITY),
    ("no_face", StatusCode::UNPROCESSABLE_ENTITY),
    ("invalid_mrz", StatusCode::UNPROCESSABLE_ENTITY),
    ("image_too_large", StatusCode::PAYLOAD_TOO_LARGE),
    ("locked", StatusCode::LOCKED),
    ("too_many_requests", StatusCode::TOO_MANY_REQUESTS),
    ("internal", StatusCode::INTERNAL_SERVER_ERROR),
    ("storage_error", StatusCode::INTERNAL_SERVER_ERROR),
    ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
    ("timeout", StatusCode::REQUEST_TIMEOUT),
];

/// The status of a code; an unlisted code is a bug and answers 500.
pub fn status_of(code: &str) -> StatusCode {
    TABLE
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(StatusCode::INTERNAL_SERVER_ERROR, |(_, s)| *s)
}

/// The code the table gives for a status, for errors produced by the HTTP
/// machinery itself (routing, extractors, body limits).
pub fn code_for_status(status: StatusCode) -> &'static str {
    TABLE.iter().find(|(_, s)| *s == status).map_or(
        if status.is_server_error() {
            "internal"
        } else {
            "bad_request"
        },
        |(c, _)| c,
    )
}

/// An error answer: `{ "error": code, "message": text }` with the table's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (lock-outs and rate limits).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new("not_found", what)
    }

    pub fn forbidden(why: impl Into<String>) -> Self {
        Self::new("forbidden", why)
    }

    pub fn payload_too_large(limit_bytes: u64) -> Self {
        Self::new(
            "payload_too_large",
            format!(
                "the request body is larger than UPLOAD_LIMIT ({} MiB)",
                limit_bytes / (1024 * 1024)
            ),
        )
    }

    /// Logs the detail of an internal failure and answers without it, so that
    /// paths and backend messages do not reach clients.
    pub fn internal(code: &'static str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(code, "{detail}");
        Self::new(code, "an internal error occurred; it has been logged")
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code,
            message: &self.message,
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal("storage_error", e)
    }
}

impl From<crate::proctoring::ProctoringError> for ApiError {
    fn from(e: crate::proctoring::ProctoringError) -> Self {
        use crate::proctoring::ProctoringError as P;
        let message = e.to_string();
        match e {
            P::Store(inner) => ApiError::internal("storage_error", inner),
            P::Host(inner) => ApiError::from(inner),
            P::Invalid { .. } => ApiError::new("invalid_field", message),
            P::NotFound(_) => ApiError::new("not_found", message),
            P::Conflict(_) => ApiError::new("conflict", message),
            P::IllegalMove { .. } => ApiError::new("illegal_transition", message),
            P::NotOpen(_) => ApiError::new("session_not_open", message),
        }
    }
}

impl From<crate::proctoring::retention::LifecycleError> for ApiError {
    fn from(e: crate::proctoring::retention::LifecycleError) -> Self {
        use crate::proctoring::retention::LifecycleError as L;
        match e {
            L::Proctoring(inner) => ApiError::from(inner),
            L::Auth(inner) => ApiError::from(inner),
            L::Store(inner) => ApiError::from(inner),
            L::Objects(inner) => ApiError::internal("storage_error", inner),
            L::Task(_) => ApiError::internal("internal", e),
        }
    }
}

impl From<crate::proctoring::bundle::BundleError> for ApiError {
    fn from(e: crate::proctoring::bundle::BundleError) -> Self {
        use crate::proctoring::bundle::BundleError as B;
        match e {
            B::NotFound(_) => ApiError::new("not_found", e.to_string()),
            // Evidence that no longer matches its chain is the operator's
            // to investigate; say so rather than hide it behind a 500.
            B::Chain(_) => ApiError::new("conflict", e.to_string()),
            other => ApiError::internal("storage_error", other),
        }
    }
}

impl From<crate::recognize::RecognizeError> for ApiError {
    fn from(e: crate::recognize::RecognizeError) -> Self {
        use crate::recognize::RecognizeError as R;
        match e {
            R::Busy { .. } => ApiError {
                code: "too_many_requests",
                message: e.to_string(),
                // A job takes well under a second; one second spreads retries.
                retry_after: Some(1),
            },
            R::Model { .. } | R::Library { .. } | R::Io { .. } => ApiError::internal("internal", e),
            other => ApiError::new(other.code(), other.to_string()),
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError as A;
        let message = e.to_string();
        let code = match &e {
            A::Store(inner) => return ApiError::internal("storage_error", inner),
            A::Hash(detail) => return ApiError::internal("internal", detail),
            A::InvalidCredentials => "invalid_credentials",
            A::Locked { retry_after_secs } | A::RateLimited { retry_after_secs } => {
                let code = if matches!(e, A::Locked { .. }) {
                    "locked"
                } else {
                    "too_many_requests"
                };
                return ApiError {
                    code,
                    message,
                    retry_after: Some(*retry_after_secs),
                };
            }
            A::Unauthenticated => "unauthorized",
            A::Forbidden(_) => "forbidden",
            A::PasswordChangeRequired => "password_change_required",
            A::PasswordRejected(_) => "password_rejected",
            A::Csrf(_) => "csrf",
            A::UnknownHost(_) => "unknown_host",
            A::NotFound(_) => "not_found",
            A::Conflict(_) => "conflict",
            A::Invalid { .. } => "invalid_field",
            A::HostExpired(_) => "host_expired",
            A::VolumeExhausted(_) => "volume_exhausted",
            A::HostDisabled => "host_disabled",
            A::Token(_) => "invalid_token",
        };
        ApiError::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn table_codes_are_unique_and_statuses_are_errors() {
        let mut codes: Vec<_> = TABLE.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len());
        for (code, status) in TABLE {
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code} maps to {status}"
            );
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code} is not snake_case"
            );
        }
    }

    #[test]
    fn status_lookup_both_ways() {
        assert_eq!(status_of("unknown_host"), StatusCode::NOT_FOUND);
        assert_eq!(status_of("locked"), StatusCode::LOCKED);
        assert_eq!(status_of("no_such_code"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            code_for_status(StatusCode::PAYLOAD_TOO_LARGE),
            "payload_too_large"
        );
        assert_eq!(code_for_status(StatusCode::NOT_FOUND), "not_found");
        assert_eq!(code_for_status(StatusCode::IM_A_TEAPOT), "bad_request");
        assert_eq!(code_for_status(StatusCode::BAD_GATEWAY), "internal");
    }

    #[test]
    fn every_account_error_maps_to_a_listed_code() {
        use crate::auth::AuthError as A;
        let all = [
            A::InvalidCredentials,
            A::Locked {
                retry_after_secs: 5,
            },
            A::RateLimited {
                retry_after_secs: 5,
            },
            A::Unauthenticated,
            A::Forbidden("x".into()),
            A::PasswordChangeRequired,
            A::PasswordRejected("x".into()),
            A::Csrf("x".into()),
            A::UnknownHost("x".into()),
            A::NotFound("x".into()),
            A::Conflict("x".into()),
            A::invalid("f", "m"),
            A::HostExpired("x".into()),
            A::VolumeExhausted(1),
            A::HostDisabled,
            A::Token("x".into()),
            A::Hash("x".into()),
            A::Store(crate::store::StoreError::Backend("x".into())),
        ];
        for e in all {
            let debug = format!("{e:?}");
            let api = ApiError::from(e);
            assert!(
                TABLE.iter().any(|(c, _)| *c == api.code),
                "{debug} → {}",
                api.code
            );
        }
        let locked = ApiError::from(A::Locked {
            retry_after_secs: 7,
        });
        assert_eq!(
            (locked.status(), locked.retry_after),
            (StatusCode::LOCKED, Some(7))
        );
        let hidden = ApiError::from(A::Store(crate::store::StoreError::Backend(
            "/secret/path".into(),
        )));
        assert!(!hidden.message.contains("/secret/path"));
    }

    #[test]
    fn every_proctoring_error_maps_to_a_listed_code() {
        use crate::proctoring::ProctoringError as P;
        let all = [
            (P::invalid("f", "m"), StatusCode::UNPROCESSABLE_ENTITY),
            (P::NotFound("x".into()), StatusCode::NOT_FOUND),
            (P::Conflict("x".into()), StatusCode::CONFLICT),
            (
                P::IllegalMove {
                    from: "created",
                    action: "pause",
                    allowed: vec!["start"],
                },
                StatusCode::CONFLICT,
            ),
            (P::NotOpen("x".into()), StatusCode::CONFLICT),
            (
                P::Host(crate::auth::AuthError::VolumeExhausted(3)),
                StatusCode::FORBIDDEN,
            ),
            (
                P::Store(crate::store::StoreError::Backend("x".into())),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in all {
            let debug = format!("{e:?}");
            let api = ApiError::from(e);
            assert!(TABLE.iter().any(|(c, _)| *c == api.code), "{debug}");
            assert_eq!(api.status(), status, "{debug}");
        }
    }

    #[test]
    fn every_lifecycle_error_maps_to_a_listed_code() {
        use crate::proctoring::retention::LifecycleError as L;
        let all = [
            (
                L::Proctoring(crate::proctoring::ProctoringError::Conflict("x".into())),
                StatusCode::CONFLICT,
            ),
            (
                L::Auth(crate::auth::AuthError::NotFound("x".into())),
                StatusCode::NOT_FOUND,
            ),
            (
                L::Store(crate::store::StoreError::Backend("x".into())),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                L::Objects(crate::objects::ObjectsError::Backend("/secret".into())),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (L::Task("x".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (e, status) in all {
            let debug = format!("{e:?}");
            let api = ApiError::from(e);
            assert!(TABLE.iter().any(|(c, _)| *c == api.code), "{debug}");
            assert_eq!(api.status(), status, "{debug}");
            assert!(!api.message.contains("/secret"), "{debug}");
        }
    }

    #[tokio::test]
    async fn response_is_json_with_code_and_message() {
        let response = ApiError::payload_too_large(100 * 1024 * 1024).into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()["content-type"], "application/json");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"], "payload_too_large");
        assert!(v["message"].as_str().unwrap().contains("100 MiB"));
    }
}

//! `POST /recognize`: the recognizer endpoint the seed's main server calls
//! (`RECOGNIZER_URI=http://KEY@host:8080/…`). The key is `API_KEY`, sent as
//! the user part of the URI (HTTP Basic) or as a bearer token.
//!
//! The body is one image (raw `image/*` or `application/octet-stream`, or one
//! file of a multipart form): the answer lists its faces. A form with two
//! files compares their main faces and answers the vendor's verification
//! shape `{ verified, distance, threshold, confidence, similar }`.
//!
//! `POST /recognize?mode=document` reads an ID document photo instead: its
//! face, text lines and machine-readable zone (see
//! [`crate::recognize::document`]). A form with two files reads the first as
//! the document and matches its face with the second.
//!
//! Work goes through the bounded recognition pool; when it is full the answer
//! is 429 with `Retry-After`, at once. With `RECOGNIZER_URI` the request is
//! passed to a recognizer host first (failing over between hosts) and only
//! recognised here when none can take it; `x-invigil-recognizer` says who
//! answered. `?range=near` counts faces as in webcam snapshots.

use super::WebState;
use super::error::ApiError;
use crate::config::Secret;
use crate::recognize::document::{self, Document};
use crate::recognize::{
    Face, Range, Recognizer, Remote, RemoteError, Service, THRESHOLD, Verification,
};
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde::Serialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Which machine answered a request: a recognizer's `host:port`, or
/// `local` (this process).
pub const ANSWERED_BY: &str = "x-invigil-recognizer";

/// The endpoint's key and the recognition service behind it.
pub struct Endpoint {
    pub service: Arc<Service>,
    pub api_key: Option<Secret>,
    /// The recognizer hosts of `RECOGNIZER_URI`; requests go there first.
    pub remote: Option<Arc<Remote>>,
    /// Largest raw image body, in bytes.
    pub upload_limit_bytes: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Faces { faces: Vec<Face> },
    Verification(Verification),
    Document(Box<Document>),
}

pub async fn recognize(State(state): State<Arc<WebState>>, request: Request) -> Response {
    handle(&state.recognition, request).await
}

/// `POST /recognize` on `endpoint`, for the daemon and for `invigil recognizer`.
pub async fn handle(endpoint: &Endpoint, request: Request) -> Response {
    match answer(endpoint, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn answer(endpoint: &Endpoint, request: Request) -> Result<Response, ApiError> {
    let Some(key) = &endpoint.api_key else {
        return Err(ApiError::not_found(
            "the recognizer endpoint is off: set API_KEY to enable it",
        ));
    };
    if !authorized(request.headers(), key) {
        return Err(ApiError::new(
            "unauthorized",
            "send API_KEY as the user of the URI (Basic) or as a bearer token",
        ));
    }
    let document_mode = document_mode(request.uri().query())?;
    let range = range(request.uri().query())?;
    let request = match &endpoint.remote {
        Some(remote) => match pass_on(remote, endpoint.upload_limit_bytes, request).await? {
            Ok(response) => return Ok(response),
            Err(request) => request,
        },
        None => request,
    };
    let images = images(endpoint.upload_limit_bytes, request).await?;
    let service = Arc::clone(&endpoint.service);
    let job = tokio::task::spawn_blocking(move || {
        let documents = Arc::clone(&service);
        service.pool()?.submit(move |r| {
            Ok(if document_mode {
                read_document(r, &documents, &images)
            } else {
                run(r, &images, range)
            })
        })
    })
    .await
    .map_err(|e| ApiError::internal("internal", e))??;
    let answer = job
        .await
        .map_err(|e| ApiError::internal("internal", e))?
        .map_err(ApiError::from)??;
    let mut response = Json(answer).into_response();
    if endpoint.remote.is_some() {
        response
            .headers_mut()
            .insert(ANSWERED_BY, HeaderValue::from_static("local"));
    }
    Ok(response)
}

/// `?range=near` (webcam frames, as snapshots are counted) or `far` (the
/// default: photos, documents, groups).
fn range(query: Option<&str>) -> Result<Range, ApiError> {
    let mut range = Range::Far;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "range" {
            range = match v.as_ref() {
                "near" => Range::Near,
                "far" => Range::Far,
                other => {
                    return Err(ApiError::new(
                        "bad_request",
                        format!("range: {other:?} is not near or far"),
                    ));
                }
            };
        }
    }
    Ok(range)
}

/// Sends the request to a recognizer host and returns its answer as it is.
/// When no host can take it, the request comes back rebuilt for local work
/// (the hosts being down must not take recognition down with them).
async fn pass_on(
    remote: &Remote,
    limit: u64,
    request: Request,
) -> Result<Result<Response, Request>, ApiError> {
    let (parts, body) = request.into_parts();
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| ApiError::payload_too_large(limit))?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    match remote
        .call(&content_type, bytes.clone(), parts.uri.query())
        .await
    {
        Ok(reply) => {
            let mut response = Response::new(Body::from(reply.body));
            *response.status_mut() = reply.status;
            if let Some(ct) = reply.content_type {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            if let Ok(host) = HeaderValue::try_from(reply.host) {
                response.headers_mut().insert(ANSWERED_BY, host);
            }
            Ok(Ok(response))
        }
        Err(e @ RemoteError::NoHost(_)) => {
            tracing::warn!("recognizing here instead: {e}");
            Ok(Err(Request::from_parts(parts, Body::from(bytes))))
        }
        Err(e) => Err(ApiError::internal("internal", e)),
    }
}

/// The whole router of `invigil recognizer`: `POST /recognize` and
/// `GET /ping` (for the daemons' health checks), nothing else.
pub fn node_router(endpoint: Arc<Endpoint>, tls_mode: &'static str) -> axum::Router {
    let limit = usize::try_from(endpoint.upload_limit_bytes).unwrap_or(usize::MAX);
    axum::Router::new()
        .route(
            "/recognize",
            axum::routing::post(
                |State(e): State<Arc<Endpoint>>, request: Request| async move {
                    handle(&e, request).await
                },
            ),
        )
        .route(
            "/ping",
            axum::routing::get(move || async move {
                (
                    [(header::CACHE_CONTROL, "no-store")],
                    Json(serde_json::json!({
                        "status": "ok",
                        "role": "recognizer",
                        "version": crate::VERSION,
                        "tls": tls_mode,
                    })),
                )
            }),
        )
        .fallback(|| async {
            ApiError::not_found("a recognizer serves only POST /recognize and GET /ping")
        })
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(super::headers::security_headers))
        .with_state(endpoint)
}

/// Decodes and recognises on a pool worker; errors name the image.
fn run(r: &Recognizer, images: &[Bytes], range: Range) -> Result<Answer, ApiError> {
    let names = ["first", "second"];
    let decoded = images
        .iter()
        .zip(names)
        .map(|(bytes, which)| {
            r.decode(bytes).map_err(|e| {
                let mut err = ApiError::from(e);
                if images.len() > 1 {
                    err.message = format!("{which} image: {}", err.message);
                }
                err
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match decoded.as_slice() {
        [one] => Ok(Answer::Faces {
            faces: r.detect(one, range)?,
        }),
        [a, b] => {
            let (_, ea) = r.main_embedding(a, "first")?;
            let (_, eb) = r.main_embedding(b, "second")?;
            Ok(Answer::Verification(Verification::compare(
                &ea, &eb, THRESHOLD,
            )))
        }
        _ => Err(ApiError::new("unprocessable", "send one or two images")),
    }
}

/// `mode=document` in the query string asks for a document reading; no
/// mode is the seed's faces/verification answer.
fn document_mode(query: Option<&str>) -> Result<bool, ApiError> {
    let mut document = false;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "mode" {
            match value.as_ref() {
                "document" => document = true,
                "faces" | "" => document = false,
                other => {
                    return Err(ApiError::new(
                        "bad_request",
                        format!("mode {other:?} is not `document` (or `faces`, the default)"),
                    ));
                }
            }
        }
    }
    Ok(document)
}

/// A document photo, and a live photo to match its face with when a second
/// image was sent. Missing parts of the document are named in its
/// `problems`; a live photo without a face is an error naming it.
fn read_document(r: &Recognizer, service: &Service, images: &[Bytes]) -> Result<Answer, ApiError> {
    let names = ["document", "live"];
    let mut decoded = Vec::new();
    for (bytes, which) in images.iter().zip(names) {
        decoded.push(r.decode(bytes).map_err(|e| {
            let mut err = ApiError::from(e);
            err.message = format!("{which} image: {}", err.message);
            err
        })?);
    }
    let mut doc = document::read(r, service.ocr()?, &decoded[0])?;
    if let Some(live) = decoded.get(1) {
        doc.match_face(r, live)?;
    }
    Ok(Answer::Document(Box::new(doc)))
}

/// The images of the request: the raw body, or the files of a form.
async fn images(limit: u64, request: Request) -> Result<Vec<Bytes>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let images = if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::new("bad_request", e.body_text()))?;
        let mut files = Vec::new();
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::new("bad_request", e.body_text()))?
        {
            // Text fields of the form (options) are not images.
            let is_file = field.file_name().is_some()
                || field
                    .content_type()
                    .is_some_and(|t| t.starts_with("image/") || t == "application/octet-stream");
            if !is_file {
                continue;
            }
            if files.len() == 2 {
                return Err(ApiError::new(
                    "unprocessable",
                    "send one image (faces) or two (verification), not more",
                ));
            }
            files.push(
                field
                    .bytes()
                    .await
                    .map_err(|e| ApiError::new("bad_request", e.body_text()))?,
            );
        }
        files
    } else if content_type.starts_with("image/")
        || content_type.starts_with("application/octet-stream")
    {
        let max = usize::try_from(limit).unwrap_or(usize::MAX);
        let body = axum::body::to_bytes(request.into_body(), max)
            .await
            .map_err(|_| ApiError::payload_too_large(limit))?;
        vec![body]
    } else {
        return Err(ApiError::new(
            "unsupported_media_type",
            "send an image (image/jpeg, image/png, image/webp) or a multipart form with one or two files",
        ));
    };
    if images.is_empty() || images.iter().any(Bytes::is_empty) {
        return Err(ApiError::new("unprocessable", "the request holds no image"));
    }
    Ok(images)
}

/// `Authorization: Bearer KEY`, or Basic with KEY as the user (what a
/// client makes of `http://KEY@host/…`), compared in constant time.
fn authorized(headers: &HeaderMap, key: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let given = if let Some(token) = value.strip_prefix("Bearer ") {
        token.trim().to_string()
    } else if let Some(encoded) = value.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let text = String::from_utf8_lossy(&decoded).into_owned();
        match text.split_once(':') {
            // `KEY:` from the URI's user part; `:KEY` from a password-only URI.
            Some(("", password)) => password.to_string(),
            Some((user, _)) => user.to_string(),
            None => text,
        }
    } else {
        return false;
    };
    bool::from(given.as_bytes().ct_eq(key.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().expect("header"));
        h
    }

    #[test]
    fn the_key_is_taken_from_bearer_or_basic() {
        let key = Secret::new("k3y");
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(&with("Bearer k3y"), &key));
        assert!(authorized(&with(&basic("k3y:")), &key));
        assert!(authorized(&with(&basic(":k3y")), &key));
        assert!(!authorized(&with("Bearer k3"), &key));
        assert!(!authorized(&with(&basic("other:k3y")), &key));
        assert!(!authorized(&with("Basic !!!"), &key));
        assert!(!authorized(&HeaderMap::new(), &key));
    }

    #[test]
    fn the_mode_parameter_selects_documents() {
        assert!(!document_mode(None).expect("no query"));
        assert!(!document_mode(Some("position=1")).expect("other keys"));
        assert!(document_mode(Some("position=1&mode=document")).expect("document"));
        assert!(!document_mode(Some("mode=faces")).expect("faces"));
        let err = document_mode(Some("mode=passport")).expect_err("unknown mode");
        assert!(err.message.contains("passport"), "{}", err.message);
    }
}

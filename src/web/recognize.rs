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
//! is 429 with `Retry-After`, at once.

use super::WebState;
use super::error::ApiError;
use crate::config::Secret;
use crate::recognize::document::{self, Document};
use crate::recognize::{Face, Range, Recognizer, Service, THRESHOLD, Verification};
use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, header};
use serde::Serialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The endpoint's key and the recognition service behind it.
pub struct Endpoint {
    pub service: Arc<Service>,
    pub api_key: Option<Secret>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Faces { faces: Vec<Face> },
    Verification(Verification),
    Document(Box<Document>),
}

pub async fn recognize(State(state): State<Arc<WebState>>, request: Request) -> Response {
    match answer(&state, request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn answer(state: &Arc<WebState>, request: Request) -> Result<Answer, ApiError> {
    let endpoint = &state.recognition;
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
    let images = images(state, request).await?;
    let service = Arc::clone(&endpoint.service);
    let job = tokio::task::spawn_blocking(move || {
        let documents = Arc::clone(&service);
        service.pool()?.submit(move |r| {
            Ok(if document_mode {
                read_document(r, &documents, &images)
            } else {
                run(r, &images)
            })
        })
    })
    .await
    .map_err(|e| ApiError::internal("internal", e))??;
    job.await
        .map_err(|e| ApiError::internal("internal", e))?
        .map_err(ApiError::from)?
}

/// Decodes and recognises on a pool worker; errors name the image.
fn run(r: &Recognizer, images: &[Bytes]) -> Result<Answer, ApiError> {
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
            faces: r.detect(one, Range::Far)?,
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
async fn images(state: &Arc<WebState>, request: Request) -> Result<Vec<Bytes>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let images = if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, state)
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
        let limit = usize::try_from(state.upload_limit_bytes).unwrap_or(usize::MAX);
        let body = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| ApiError::payload_too_large(state.upload_limit_bytes))?;
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

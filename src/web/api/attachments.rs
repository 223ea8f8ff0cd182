//! Chat attachments over REST: a participant uploads a file to a session
//! (the raw body with its Content-Type, at most UPLOAD_LIMIT) and gets an id
//! to name in a chat message; participants fetch it back, with HTTP Range.

use super::sessions::visible;
use super::{Access, Ctx, Route, blocking, route};
use crate::auth::now_secs;
use crate::proctoring::attachments::{self, Attachment};
use crate::web::WebState;
use crate::web::error::ApiError;
use crate::web::range;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::sync::Arc;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::POST,
            "/api/v1/sessions/{id}/attachments",
            Access::Signed,
            post(upload),
        ),
        route(
            Method::GET,
            "/api/v1/sessions/{id}/attachments/{aid}",
            Access::Signed,
            get(download),
        ),
    ]
}

async fn upload(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Attachment>), ApiError> {
    let (s, _) = visible(&state, &ctx, &id)?;
    attachments::open(&s)?;
    let content_type = attachments::content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    if body.is_empty() {
        return Err(ApiError::new(
            "invalid_field",
            "body: an attachment must not be empty",
        ));
    }
    let aid = attachments::new_id();
    let a = Attachment {
        key: attachments::object_key(&s, &aid),
        id: aid,
        session: s.id.clone(),
        content_type,
        size: body.len() as u64,
        by: ctx.who()?.actor(),
        at: now_secs(),
    };
    // The bytes are durable before the record names them.
    state
        .objects
        .put(&a.key, body)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let (store, host, record) = (state.accounts.store.clone(), s.host_id.clone(), a.clone());
    blocking(move || attachments::record(store.as_ref(), &host, &record)).await?;
    Ok((StatusCode::CREATED, Json(a)))
}

async fn download(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, aid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (s, _) = visible(&state, &ctx, &id)?;
    let a = state
        .accounts
        .store
        .read(|tx| attachments::get(tx, &s.host_id, &s.id, &aid))?
        .ok_or_else(|| ApiError::not_found(format!("attachment {aid} not found")))?;
    let bytes = state
        .objects
        .get(&a.key)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let mut out = HeaderMap::new();
    let typed = HeaderValue::from_str(&a.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    out.insert(header::CONTENT_TYPE, typed);
    // Uploaded content never runs as a page of this site.
    out.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    let etag = format!("\"{}\"", a.id);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    Ok(range::respond(bytes.to_vec(), out, &headers, &etag))
}

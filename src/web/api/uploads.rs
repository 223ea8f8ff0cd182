//! Evidence uploads over tus 1.0 (core, creation with deferred length,
//! termination, checksum with SHA-256, expiration) for the session's
//! student, and playback with HTTP Range for the staff who review it.
//!
//! A PATCH is answered 204 only after the chunk's object and its protocol
//! entry are on disk, so an acknowledged chunk survives a crash.

use super::sessions::visible;
use super::{Access, Ctx, Route, route};
use crate::auth::now_secs;
use crate::proctoring::access::Standing;
use crate::proctoring::uploads::{NewUpload, Upload, UploadError, UploadKind};
use crate::web::WebState;
use crate::web::error::ApiError;
use crate::web::range::{self, Part};
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, head, on};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,creation-defer-length,termination,checksum,expiration";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

pub(super) fn routes() -> Vec<Route> {
    use Access::{Public, Signed, Staff};
    const UPLOADS: &str = "/api/v1/sessions/{id}/uploads";
    const UPLOAD: &str = "/api/v1/sessions/{id}/uploads/{upload}";
    let options: MethodRouter<Arc<WebState>> = on(axum::routing::MethodFilter::OPTIONS, discovery);
    vec![
        route(Method::OPTIONS, UPLOADS, Public, options).raw(),
        route(Method::POST, UPLOADS, Signed, axum::routing::post(create)).raw(),
        route(Method::GET, UPLOADS, Staff, get(list)),
        route(Method::HEAD, UPLOAD, Signed, head(status)).raw(),
        route(Method::PATCH, UPLOAD, Signed, axum::routing::patch(append)).raw(),
        route(Method::DELETE, UPLOAD, Signed, delete(terminate)).raw(),
        route(
            Method::GET,
            "/api/v1/sessions/{id}/recordings/{upload}",
            Staff,
            get(recording),
        )
        .raw(),
        route(
            Method::GET,
            "/api/v1/sessions/{id}/snapshots/{upload}",
            Staff,
            get(snapshot),
        )
        .raw(),
    ]
}

/// Every tus answer, errors included, names the protocol version.
fn tus(mut r: Response) -> Response {
    r.headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    r
}

fn tus_error(e: impl Into<ApiError>) -> Response {
    tus(e.into().into_response())
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let message = e.to_string();
        match e {
            UploadError::Domain(inner) => inner.into(),
            UploadError::OffsetMismatch { .. } => ApiError::new("offset_mismatch", message),
            UploadError::ChecksumMismatch { .. } => ApiError::new("checksum_mismatch", message),
            UploadError::ChunkTooLarge { .. } | UploadError::TooLong(_) => {
                ApiError::new("payload_too_large", message)
            }
            UploadError::Expired => ApiError::new("upload_expired", message),
            UploadError::Body(_) => ApiError::new("bad_request", message),
            UploadError::Objects(inner) => ApiError::internal("storage_error", inner),
        }
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The 412 answer for a request in another tus version (or none).
fn version_refused(h: &HeaderMap) -> Option<Response> {
    match header_str(h, "tus-resumable") {
        Some(TUS_VERSION) => None,
        other => {
            let mut r = tus_error(ApiError::new(
                "tus_version_unsupported",
                format!(
                    "Tus-Resumable {} is not supported; this server speaks tus {TUS_VERSION}",
                    other.map_or("(missing)".to_string(), |v| format!("{v:?}"))
                ),
            ));
            r.headers_mut()
                .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
            Some(r)
        }
    }
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new("bad_request", format!("{field}: {message}"))
}

/// A non-negative decimal header value, as tus requires (no sign, no spaces).
fn number(h: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match header_str(h, name) {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse()
            .map(Some)
            .map_err(|_| invalid(name, "number out of range")),
        Some(v) => Err(invalid(
            name,
            format!("{v:?} is not a non-negative integer"),
        )),
    }
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (value optional).
fn parse_metadata(v: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = pair.split(' ');
        let key = it.next().unwrap_or_default();
        let value = it.next().unwrap_or_default();
        if key.is_empty() || it.next().is_some() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "Upload-Metadata",
                format!("malformed pair {pair:?}"),
            ));
        }
        let decoded = STANDARD
            .decode(value)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                invalid(
                    "Upload-Metadata",
                    format!("the value of {key} is not base64 of UTF-8 text"),
                )
            })?;
        if out.len() >= 32 || out.insert(key.to_string(), decoded).is_some() {
            return Err(invalid(
                "Upload-Metadata",
                "duplicate key or more than 32 keys",
            ));
        }
    }
    Ok(out)
}

fn format_metadata(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `Upload-Checksum: sha256 <base64>`; other algorithms are refused.
fn parse_checksum(h: &HeaderMap) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(v) = header_str(h, "upload-checksum") else {
        return Ok(None);
    };
    let (algorithm, value) = v.split_once(' ').unwrap_or((v, ""));
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(invalid(
            "Upload-Checksum",
            format!("algorithm {algorithm:?} is not supported; use sha256"),
        ));
    }
    STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Some)
        .ok_or_else(|| invalid("Upload-Checksum", "the value is not base64 of 32 bytes"))
}

/// The length (`None` when deferred) and metadata of a creation request.
pub(crate) fn creation_headers(
    headers: &HeaderMap,
) -> Result<(Option<u64>, BTreeMap<String, String>), ApiError> {
    let length = number(headers, "upload-length")?;
    let deferred = header_str(headers, "upload-defer-length");
    match (length, deferred) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "Upload-Length",
                "give Upload-Length or Upload-Defer-Length, not both",
            ));
        }
        (None, Some("1")) | (Some(_), None) => {}
        (None, Some(v)) => {
            return Err(invalid("Upload-Defer-Length", format!("{v:?} must be 1")));
        }
        (None, None) => {
            return Err(invalid(
                "Upload-Length",
                "required (or Upload-Defer-Length: 1)",
            ));
        }
    }
    if number(headers, "content-length")?.unwrap_or(0) > 0 {
        return Err(invalid(
            "Content-Length",
            "creation takes no data; send the chunks with PATCH",
        ));
    }
    let metadata = match header_str(headers, "upload-metadata") {
        Some(v) => parse_metadata(v)?,
        None => BTreeMap::new(),
    };
    Ok((length, metadata))
}

/// What a chunk request (PATCH) says about its chunk.
pub(crate) struct ChunkHeaders {
    pub offset: u64,
    /// A deferred length declared with this chunk.
    pub length: Option<u64>,
    pub checksum: Option<[u8; 32]>,
}

pub(crate) fn chunk_headers(headers: &HeaderMap) -> Result<ChunkHeaders, ApiError> {
    if header_str(headers, "content-type") != Some(OFFSET_STREAM) {
        return Err(ApiError::new(
            "unsupported_media_type",
            format!("a chunk is sent as Content-Type: {OFFSET_STREAM}"),
        ));
    }
    let offset =
        number(headers, "upload-offset")?.ok_or_else(|| invalid("Upload-Offset", "required"))?;
    Ok(ChunkHeaders {
        offset,
        length: number(headers, "upload-length")?,
        checksum: parse_checksum(headers)?,
    })
}

fn http_date(secs: u64) -> HeaderValue {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap_or(HeaderValue::from_static(""))
}

fn offset_headers(u: &Upload, h: &mut HeaderMap) {
    h.insert("upload-offset", HeaderValue::from(u.offset));
    if !u.is_complete() {
        h.insert("upload-expires", http_date(u.expires_at));
    }
}

/// The caller must be the session's student.
fn student_session(
    state: &WebState,
    ctx: &Ctx,
    id: &str,
) -> Result<crate::proctoring::sessions::Session, ApiError> {
    let (s, standing) = visible(state, ctx, id)?;
    if standing != Standing::Student {
        return Err(ApiError::forbidden(
            "evidence is uploaded by the session's student",
        ));
    }
    Ok(s)
}

async fn discovery() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    h.insert("tus-checksum-algorithm", HeaderValue::from_static("sha256"));
    tus(r)
}

async fn create(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    let result = async {
        let s = student_session(&state, &ctx, &id)?;
        let (length, metadata) = creation_headers(&headers)?;
        let by = ctx.who()?.actor();
        let new = NewUpload { length, metadata };
        Ok::<_, ApiError>(state.uploads.create(&s, &by, new, now_secs()).await?)
    }
    .await;
    match result {
        Ok(u) => {
            let mut r = StatusCode::CREATED.into_response();
            let location = format!("/api/v1/sessions/{}/uploads/{}", u.session_id, u.id);
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            offset_headers(&u, r.headers_mut());
            tus(r)
        }
        Err(e) => tus_error(e),
    }
}

async fn status(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, upload)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    let result = async {
        let (s, _) = visible(&state, &ctx, &id)?;
        Ok::<_, ApiError>(state.uploads.get(&s.host_id, &s.id, &upload).await?)
    }
    .await;
    match result {
        Ok(u) => {
            let mut r = StatusCode::OK.into_response();
            let h = r.headers_mut();
            offset_headers(&u, h);
            match u.length {
                Some(n) => h.insert("upload-length", HeaderValue::from(n)),
                None => h.insert("upload-defer-length", HeaderValue::from_static("1")),
            };
            if let Ok(v) = HeaderValue::from_str(&format_metadata(&u.metadata))
                && !u.metadata.is_empty()
            {
                h.insert("upload-metadata", v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            tus(r)
        }
        Err(e) => tus_error(e),
    }
}

async fn append(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, upload)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    let checked = async {
        let ChunkHeaders {
            offset,
            length,
            checksum,
        } = chunk_headers(&headers)?;
        let s = student_session(&state, &ctx, &id)?;
        Ok::<_, ApiError>((offset, length, checksum, s, ctx.who()?.actor()))
    }
    .await;
    let (offset, length, checksum, s, by) = match checked {
        Ok(c) => c,
        Err(e) => return tus_error(e),
    };
    let appended = state
        .uploads
        .append(
            &s.host_id,
            &s.id,
            &upload,
            &by,
            offset,
            length,
            checksum,
            body.into_data_stream(),
            now_secs(),
        )
        .await;
    match appended {
        Ok(a) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            offset_headers(&a.upload, r.headers_mut());
            tus(r)
        }
        Err(e) => {
            // A conflict tells the client where to resume.
            let current = match &e {
                UploadError::OffsetMismatch { current, .. } => Some(*current),
                _ => None,
            };
            let mut r = tus_error(e);
            if let Some(current) = current {
                r.headers_mut()
                    .insert("upload-offset", HeaderValue::from(current));
            }
            r
        }
    }
}

async fn terminate(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, upload)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    let result = async {
        let s = student_session(&state, &ctx, &id)?;
        let by = ctx.who()?.actor();
        state
            .uploads
            .terminate(&s.host_id, &s.id, &upload, &by, now_secs())
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => tus(StatusCode::NO_CONTENT.into_response()),
        Err(e) => tus_error(e),
    }
}

/// An upload as listed for review.
#[derive(Serialize)]
struct Listed {
    id: String,
    kind: UploadKind,
    content_type: String,
    length: Option<u64>,
    offset: u64,
    complete: bool,
    chunks: u64,
    created_by: String,
    created_at: u64,
    completed_at: Option<u64>,
    metadata: BTreeMap<String, String>,
    /// Where to play or view it.
    href: String,
}

async fn list(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Listed>>, ApiError> {
    let (s, _) = visible(&state, &ctx, &id)?;
    let all = state.uploads.list(&s.host_id, &s.id).await?;
    Ok(Json(
        all.into_iter()
            .map(|u| Listed {
                href: format!(
                    "/api/v1/sessions/{}/{}/{}",
                    u.session_id,
                    if u.kind == UploadKind::Snapshot {
                        "snapshots"
                    } else {
                        "recordings"
                    },
                    u.id
                ),
                complete: u.is_complete(),
                id: u.id,
                kind: u.kind,
                content_type: u.content_type,
                length: u.length,
                offset: u.offset,
                chunks: u.chunks,
                created_by: u.created_by,
                created_at: u.created_at,
                completed_at: u.completed_at,
                metadata: u.metadata,
            })
            .collect(),
    ))
}

async fn recording(
    state: State<Arc<WebState>>,
    ctx: Extension<Ctx>,
    Path((id, upload)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    play(state, ctx, id, upload, headers, false).await
}

async fn snapshot(
    state: State<Arc<WebState>>,
    ctx: Extension<Ctx>,
    Path((id, upload)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    play(state, ctx, id, upload, headers, true).await
}

/// The stored bytes of an upload as one body: a recording while it is still
/// growing (what is stored so far), a snapshot once complete.
async fn play(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    id: String,
    upload: String,
    request: HeaderMap,
    snapshot: bool,
) -> Response {
    let result = async {
        let (s, _) = visible(&state, &ctx, &id)?;
        let missing = || ApiError::not_found(format!("upload {upload} not found"));
        let u = state
            .uploads
            .get(&s.host_id, &s.id, &upload)
            .await
            .map_err(|_| missing())?;
        if (u.kind == UploadKind::Snapshot) != snapshot || (snapshot && !u.is_complete()) {
            return Err(missing());
        }
        let chunks = state.uploads.chunks(&u).await?;
        Ok::<_, ApiError>((u, chunks))
    }
    .await;
    let (u, chunks) = match result {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let parts: Vec<Part> = chunks
        .iter()
        .map(|c| Part {
            key: c.object.clone(),
            at: c.offset,
            size: c.size,
        })
        .collect();
    // The content only grows; its validator is the upload and its offset.
    let etag = format!("\"{}-{}\"", u.id, u.offset);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&u.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    range::respond_parts(
        state.uploads.objects().clone(),
        parts,
        u.offset,
        headers,
        &request,
        &etag,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_bad_pairs_are_named() {
        let m = parse_metadata("kind d2ViY2Ft,filename YS53ZWJt,empty").unwrap();
        assert_eq!(m["kind"], "webcam");
        assert_eq!(m["filename"], "a.webm");
        assert_eq!(m["empty"], "");
        assert_eq!(parse_metadata(&format_metadata(&m)).unwrap(), m);
        let e = parse_metadata("kind !!!").unwrap_err();
        assert!(e.message.contains("kind"), "{}", e.message);
        assert!(parse_metadata("a b c").is_err());
        assert!(parse_metadata("a YQ==,a YQ==").is_err());
    }

    #[test]
    fn checksum_header_is_sha256_only() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_checksum(&h).unwrap(), None);
        let digest = [7u8; 32];
        h.insert(
            "upload-checksum",
            format!("sha256 {}", STANDARD.encode(digest))
                .parse()
                .unwrap(),
        );
        assert_eq!(parse_checksum(&h).unwrap(), Some(digest));
        h.insert("upload-checksum", "md5 AAAA".parse().unwrap());
        assert!(
            parse_checksum(&h)
                .unwrap_err()
                .message
                .contains("use sha256")
        );
        h.insert("upload-checksum", "sha256 AAAA".parse().unwrap());
        assert!(parse_checksum(&h).is_err());
    }

    #[test]
    fn numbers_are_plain_decimals() {
        let mut h = HeaderMap::new();
        h.insert("upload-offset", "42".parse().unwrap());
        assert_eq!(number(&h, "upload-offset").unwrap(), Some(42));
        for bad in ["-1", "+1", "1e3", ""] {
            h.insert("upload-offset", bad.parse().unwrap());
            assert!(number(&h, "upload-offset").is_err(), "{bad}");
        }
    }
}

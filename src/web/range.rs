//! HTTP Range (RFC 9110 §14), for bodies held in memory and for bodies
//! streamed from a sequence of stored objects (a recording's chunks): one
//! range gets 206 with `Content-Range`, an unsatisfiable one 416, several
//! ranges or a stale `If-Range` the whole body, a matching `If-None-Match`
//! 304. Parsing is `http-range-header`'s.

use super::error::ApiError;
use crate::objects::Objects;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// What to send for a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    NotModified,
    Unsatisfiable,
}

fn choose(request: &HeaderMap, len: u64, etag: &str) -> Choice {
    let matches = |v: &str| v.split(',').any(|t| t.trim() == etag || t.trim() == "*");
    if request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(matches)
    {
        return Choice::NotModified;
    }
    let range = request.get(header::RANGE).and_then(|v| v.to_str().ok());
    // If-Range with another validator: the client's copy is stale, send it all.
    let fresh = request
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let Some(range) = range.filter(|_| fresh) else {
        return Choice::Whole;
    };
    match http_range_header::parse_range_header(range).and_then(|r| r.validate(len)) {
        Ok(ranges) if ranges.len() == 1 => Choice::Part(*ranges[0].start(), *ranges[0].end()),
        // Several ranges: the whole body is a valid answer and simpler for clients.
        Ok(_) => Choice::Whole,
        Err(_) => Choice::Unsatisfiable,
    }
}

fn unsatisfiable(request: &HeaderMap, len: u64) -> Response {
    let range = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut r = ApiError::new(
        "range_not_satisfiable",
        format!("the range {range:?} does not fit a body of {len} bytes"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    r
}

/// One stored object's place in a streamed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub key: String,
    /// Where the object starts in the body.
    pub at: u64,
    pub size: u64,
}

/// Largest read from the object store per body frame, so a long range never
/// sits in memory whole.
const READ: u64 = 1024 * 1024;

/// Answers the concatenation of `parts` (contiguous, in order, `len` bytes
/// in all) for a request that may carry `Range`, `If-Range` and
/// `If-None-Match`, reading only the objects the range touches.
pub fn respond_parts(
    objects: Objects,
    parts: Vec<Part>,
    len: u64,
    mut headers: HeaderMap,
    request: &HeaderMap,
    etag: &str,
) -> Response {
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    let (status, start, end) = match choose(request, len, etag) {
        Choice::NotModified => return (StatusCode::NOT_MODIFIED, headers).into_response(),
        Choice::Unsatisfiable => return unsatisfiable(request, len),
        Choice::Whole if len == 0 => {
            return (StatusCode::OK, headers, Body::empty()).into_response();
        }
        Choice::Whole => (StatusCode::OK, 0, len - 1),
        Choice::Part(start, end) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
    let mut reads = Vec::new();
    for p in parts {
        let (from, to) = (start.max(p.at), (end + 1).min(p.at + p.size));
        let mut pos = from;
        while pos < to {
            let next = (pos + READ).min(to);
            reads.push((p.key.clone(), pos - p.at..next - p.at));
            pos = next;
        }
    }
    let stream = futures::stream::iter(reads).then(move |(key, range)| {
        let objects = objects.clone();
        async move {
            objects
                .get_range(&key, range)
                .await
                .map_err(std::io::Error::other)
        }
    });
    (status, headers, Body::from_stream(stream)).into_response()
}

/// Answers `bytes` (with `headers` already set: type, ETag, caching) for a
/// request that may carry `Range` and `If-Range`.
pub fn respond(
    bytes: Vec<u8>,
    mut headers: HeaderMap,
    request: &HeaderMap,
    etag: &str,
) -> Response {
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let len = bytes.len() as u64;
    // Callers answer If-None-Match themselves (with their caching headers).
    let mut request = request.clone();
    request.remove(header::IF_NONE_MATCH);
    match choose(&request, len, etag) {
        Choice::Part(start, end) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            let slice = bytes[start as usize..=end as usize].to_vec();
            (StatusCode::PARTIAL_CONTENT, headers, Body::from(slice)).into_response()
        }
        Choice::Unsatisfiable => unsatisfiable(&request, len),
        Choice::Whole | Choice::NotModified => {
            (StatusCode::OK, headers, Body::from(bytes)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn get(range: Option<&str>, if_range: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = HeaderMap::new();
        if let Some(r) = range {
            req.insert(header::RANGE, r.parse().unwrap());
        }
        if let Some(r) = if_range {
            req.insert(header::IF_RANGE, r.parse().unwrap());
        }
        let r = respond(b"0123456789".to_vec(), HeaderMap::new(), &req, "\"e1\"");
        let (parts, body) = r.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    #[tokio::test]
    async fn ranges_partial_whole_and_unsatisfiable() {
        let (s, h, b) = get(Some("bytes=2-4"), None).await;
        assert_eq!(
            (s, b.as_slice()),
            (StatusCode::PARTIAL_CONTENT, b"234".as_slice())
        );
        assert_eq!(h[header::CONTENT_RANGE], "bytes 2-4/10");
        let (s, _, b) = get(Some("bytes=-3"), None).await;
        assert_eq!(
            (s, b.as_slice()),
            (StatusCode::PARTIAL_CONTENT, b"789".as_slice())
        );
        let (s, h, b) = get(None, None).await;
        assert_eq!((s, b.len()), (StatusCode::OK, 10));
        assert_eq!(h[header::ACCEPT_RANGES], "bytes");
        let (s, h, _) = get(Some("bytes=20-30"), None).await;
        assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(h[header::CONTENT_RANGE], "bytes */10");
        let (s, _, b) = get(Some("bytes=0-1,5-6"), None).await;
        assert_eq!((s, b.len()), (StatusCode::OK, 10));
        let (s, _, b) = get(Some("bytes=2-4"), Some("\"old\"")).await;
        assert_eq!(
            (s, b.len()),
            (StatusCode::OK, 10),
            "stale If-Range gets everything"
        );
        let (s, _, _) = get(Some("bytes=2-4"), Some("\"e1\"")).await;
        assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    }
}

//! HTTP Range (RFC 9110 §14) for bodies held in memory: one range gets 206
//! with `Content-Range`, an unsatisfiable one 416, several ranges or a stale
//! `If-Range` the whole body. Parsing is `http-range-header`'s.

use super::error::ApiError;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

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
    let range = request.get(header::RANGE).and_then(|v| v.to_str().ok());
    // If-Range with another validator: the client's copy is stale, send it all.
    let fresh = request
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let Some(range) = range.filter(|_| fresh) else {
        return (StatusCode::OK, headers, Body::from(bytes)).into_response();
    };
    let valid = http_range_header::parse_range_header(range).and_then(|r| r.validate(len));
    match valid {
        Ok(ranges) if ranges.len() == 1 => {
            let (start, end) = (*ranges[0].start(), *ranges[0].end());
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            let slice = bytes[start as usize..=end as usize].to_vec();
            (StatusCode::PARTIAL_CONTENT, headers, Body::from(slice)).into_response()
        }
        // Several ranges: the whole body is a valid answer and simpler for clients.
        Ok(_) => (StatusCode::OK, headers, Body::from(bytes)).into_response(),
        Err(_) => {
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

//! Security headers on every response.
//!
//! The interface is plain ES modules served from our own origin, so the
//! Content-Security-Policy can forbid inline script, `eval` and every foreign
//! origin. Two exceptions, both for the exam: `blob:` media and images (the
//! camera preview, recorded chunks, snapshots) and `frame-src https:` for the
//! exam page a template shows beside the proctoring panel (its origin is set
//! per template, so it cannot be named here).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, header};

/// The most request header fields the router answers; more get a 431 naming
/// this limit. Browsers send about twenty.
pub const MAX_REQUEST_HEADERS: usize = 100;

/// The most bytes of request header names and values the router answers.
pub const MAX_REQUEST_HEADER_BYTES: usize = 32 * 1024;

/// hyper's own limits, far above ours: a request past them is refused while
/// it is parsed, with a 431 hyper writes itself (no body), and its headers
/// never take more memory than this.
pub const PARSER_MAX_HEADERS: usize = 400;
pub const PARSER_MAX_HEADER_BYTES: usize = 256 * 1024;

/// Which request header limit `headers` break, as the message a client gets.
pub fn header_limit_broken(headers: &HeaderMap) -> Option<String> {
    if headers.len() > MAX_REQUEST_HEADERS {
        return Some(format!(
            "{} request header fields; at most {MAX_REQUEST_HEADERS} are accepted",
            headers.len()
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (bytes > MAX_REQUEST_HEADER_BYTES).then(|| {
        format!("{bytes} bytes of request headers; at most {MAX_REQUEST_HEADER_BYTES} are accepted")
    })
}

/// The Content-Security-Policy of every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
     script-src 'self'; \
     style-src 'self'; \
     img-src 'self' blob: data:; \
     media-src 'self' blob:; \
     connect-src 'self'; \
     font-src 'self'; \
     manifest-src 'self'; \
     worker-src 'self'; \
     frame-src https:; \
     form-action 'self'; \
     base-uri 'none'; \
     frame-ancestors 'none'";

/// Camera, microphone and screen capture for our own pages only; the
/// features an exam never needs are off.
pub const PERMISSIONS_POLICY: &str = "camera=(self), microphone=(self), \
     display-capture=(self), fullscreen=(self), geolocation=(), payment=(), usb=(), \
     serial=(), hid=(), midi=()";

/// Every header this layer sets, in one table (also read by the tests).
pub const HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("permissions-policy", PERMISSIONS_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Adds [`HEADERS`] to a response that does not set them itself.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        let name = HeaderName::from_static(name);
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    // Pages and API answers about people are not for shared caches.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_has_no_unsafe_sources() {
        for bad in ["unsafe-inline", "unsafe-eval", "*", "http:"] {
            assert!(
                !CONTENT_SECURITY_POLICY
                    .split([' ', ';'])
                    .any(|t| t.trim_matches('\'') == bad),
                "CSP allows {bad}"
            );
        }
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn header_limits_count_fields_and_bytes() {
        let mut h = HeaderMap::new();
        for i in 0..MAX_REQUEST_HEADERS {
            h.insert(
                HeaderName::try_from(format!("x-h{i}")).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert_eq!(header_limit_broken(&h), None);
        h.insert("x-one-more", HeaderValue::from_static("v"));
        let message = header_limit_broken(&h).unwrap();
        assert!(message.contains("at most 100"), "{message}");

        let mut h = HeaderMap::new();
        let big = "a".repeat(MAX_REQUEST_HEADER_BYTES);
        h.insert(
            "cookie",
            HeaderValue::from_str(&big[..big.len() - 6]).unwrap(),
        );
        assert_eq!(header_limit_broken(&h), None);
        h.insert("cookie", HeaderValue::from_str(&big).unwrap());
        let message = header_limit_broken(&h).unwrap();
        assert!(message.contains("at most 32768 are accepted"), "{message}");
    }

    #[test]
    fn every_header_value_is_valid() {
        for (name, value) in HEADERS {
            HeaderName::from_static(name);
            HeaderValue::from_static(value);
        }
    }
}

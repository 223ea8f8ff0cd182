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
use http::{HeaderName, HeaderValue, header};

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
    fn every_header_value_is_valid() {
        for (name, value) in HEADERS {
            HeaderName::from_static(name);
            HeaderValue::from_static(value);
        }
    }
}

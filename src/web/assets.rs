//! The web interface's files: embedded in the binary, or read from `STATIC_DIR`
//! when it is set (so a change to the interface shows without a rebuild).

use super::error::ApiError;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/web"]
struct Embedded;

/// Values substituted into HTML pages (`{{NAME}}`).
#[derive(Debug, Clone)]
pub struct PageValues {
    pub version: String,
    pub manager_host: String,
    pub manager_username: String,
}

/// Where files come from and how long browsers may keep them.
#[derive(Debug, Clone)]
pub struct Assets {
    dir: Option<PathBuf>,
    max_age: Duration,
    values: PageValues,
}

impl Assets {
    pub fn new(dir: Option<PathBuf>, max_age: Duration, values: PageValues) -> Self {
        Self {
            dir,
            max_age,
            values,
        }
    }

    /// Answers a GET for `path` (without the leading `/`), honouring `If-None-Match`.
    pub async fn serve(&self, path: &str, request_headers: &HeaderMap) -> Response {
        let path = if path.is_empty() || path.ends_with('/') {
            format!("{path}index.html")
        } else {
            path.to_string()
        };
        let Some(bytes) = self.read(&path).await else {
            return ApiError::not_found(format!("no such page: /{path}")).into_response();
        };
        let is_html = path.ends_with(".html");
        let bytes = if is_html { self.fill(&bytes) } else { bytes };
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..32]);
        let mut headers = HeaderMap::new();
        let mime = mime_guess::from_path(&path).first_or_octet_stream();
        let content_type = if mime.type_() == mime_guess::mime::TEXT
            || mime.subtype() == mime_guess::mime::JAVASCRIPT
        {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        };
        insert(&mut headers, header::CONTENT_TYPE, &content_type);
        insert(&mut headers, header::ETAG, &etag);
        // Pages revalidate on every visit so a new version shows at once; the
        // files they load may be cached for STATIC_EXPIRES.
        let cache = if is_html {
            "no-cache".to_string()
        } else {
            format!("public, max-age={}", self.max_age.as_secs())
        };
        insert(&mut headers, header::CACHE_CONTROL, &cache);
        insert(&mut headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        if matches_etag(request_headers, &etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        super::range::respond(bytes, headers, request_headers, &etag)
    }

    async fn read(&self, path: &str) -> Option<Vec<u8>> {
        if !is_safe(path) {
            return None;
        }
        match &self.dir {
            Some(dir) => tokio::fs::read(dir.join(path)).await.ok(),
            None => Embedded::get(path).map(|f| f.data.into_owned()),
        }
    }

    fn fill(&self, bytes: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return bytes.to_vec();
        };
        text.replace("{{VERSION}}", &escape(&self.values.version))
            .replace("{{MANAGER_HOST}}", &escape(&self.values.manager_host))
            .replace(
                "{{MANAGER_USERNAME}}",
                &escape(&self.values.manager_username),
            )
            .into_bytes()
    }
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Only plain relative paths: no `..`, no absolute paths, no hidden files.
fn is_safe(path: &str) -> bool {
    Path::new(path).components().all(|c| match c {
        Component::Normal(part) => !part.to_string_lossy().starts_with('.'),
        _ => false,
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn assets(dir: Option<PathBuf>) -> Assets {
        Assets::new(
            dir,
            Duration::from_secs(3600),
            PageValues {
                version: "1.2.3".into(),
                manager_host: "exam.example.org".into(),
                manager_username: "<boss>".into(),
            },
        )
    }

    async fn body(r: Response) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn front_page_is_filled_and_revalidated() {
        let a = assets(None);
        let r = a.serve("", &HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let etag = r.headers()["etag"].clone();
        let text = body(r).await;
        assert!(text.contains("1.2.3") && text.contains("exam.example.org"));
        assert!(text.contains("&lt;boss&gt;") && !text.contains("{{"));
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            a.serve("index.html", &h).await.status(),
            StatusCode::NOT_MODIFIED
        );
    }

    #[tokio::test]
    async fn files_are_cached_for_static_expires() {
        let r = assets(None).serve("style.css", &HeaderMap::new()).await;
        assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
        assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
    }

    #[tokio::test]
    async fn traversal_and_missing_files_are_json_404() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "from disk").unwrap();
        let a = assets(Some(dir.path().to_path_buf()));
        assert_eq!(
            body(a.serve("a.txt", &HeaderMap::new()).await).await,
            "from disk"
        );
        for bad in ["../Cargo.toml", "/etc/passwd", ".hidden", "nope.js"] {
            let r = a.serve(bad, &HeaderMap::new()).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
            assert!(body(r).await.contains("\"error\":\"not_found\""));
        }
    }
}

//! HTTP: the axum router, its middleware, the listeners and the error table.

pub mod api;
pub mod assets;
pub mod error;
pub mod forwarded;
pub mod headers;
pub mod metrics;
pub mod prefixed;
pub mod range;
pub mod recognize;
pub mod serve;

use assets::Assets;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use error::ApiError;
use metrics::Metrics;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The client's address, inserted into every request: the direct peer, or
/// the address a trusted reverse proxy forwarded (see [`forwarded`]).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// What the handlers share.
pub struct WebState {
    pub version: &'static str,
    /// How this instance got its certificate: "self-signed", "acme", "files", "proxy", "local-ca".
    pub tls_mode: &'static str,
    /// The served certificate (absent behind a reverse proxy), for its expiry.
    pub certificate: Option<Arc<crate::tls::CertResolver>>,
    pub metrics: Metrics,
    pub assets: Assets,
    pub upload_limit_bytes: u64,
    pub accounts: Arc<crate::auth::Accounts>,
    /// The live hub behind `/api/v1/ws`.
    pub hub: Arc<crate::realtime::Hub>,
    /// Mints the TURN credentials handed to browsers.
    pub ice: crate::turn::credentials::Minter,
    /// Recordings, snapshots and chat attachments.
    pub objects: crate::objects::Objects,
    /// Signs evidence bundles.
    pub evidence: Arc<crate::proctoring::bundle::Signer>,
    /// `POST /recognize`.
    pub recognition: recognize::Endpoint,
    /// Evidence uploads and their objects.
    pub uploads: Arc<crate::proctoring::uploads::Uploads>,
    /// What `GET /api/v1/instance/status` reports.
    pub instance: api::instance::InstanceFacts,
    /// The reference faces of the hosts' sessions, for the c5 search.
    pub faces: Arc<crate::proctoring::identity::FaceIndex>,
}

/// Builds the router with all routes and middleware. `extra` is merged in
/// before the middleware, so anything added there gets the same treatment.
pub fn router(state: Arc<WebState>, extra: Router<Arc<WebState>>) -> Router {
    let limit = usize::try_from(state.upload_limit_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/ping", get(ping))
        .route("/metrics", get(prometheus))
        .route("/recognize", axum::routing::post(recognize::recognize))
        .route("/api", get(api_not_found))
        .route("/api/{*rest}", get(api_not_found).post(api_not_found))
        .route("/", get(static_file))
        .route("/{*path}", get(static_file))
        .merge(api::router(state.clone()))
        .merge(extra)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), body_limit))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(headers::security_headers))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

#[derive(Serialize)]
struct Ping {
    status: &'static str,
    version: &'static str,
    tls: &'static str,
    /// RFC 3339; `null` behind a reverse proxy.
    cert_expires: Option<String>,
}

async fn ping(State(state): State<Arc<WebState>>) -> Response {
    let cert_expires = state
        .certificate
        .as_ref()
        .and_then(|r| r.current_info())
        .and_then(|info| rfc3339(info.not_after));
    let body = Ping {
        status: "ok",
        version: state.version,
        tls: state.tls_mode,
        cert_expires,
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn rfc3339(t: std::time::SystemTime) -> Option<String> {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[derive(Serialize)]
struct ClientView {
    address: String,
    scheme: &'static str,
}

/// The address and scheme invigil sees for the caller: lets an operator
/// check that a reverse proxy forwards them (and that TRUSTED_PROXIES is right).
pub(crate) async fn client_address(request: Request) -> Response {
    let address = request
        .extensions()
        .get::<PeerAddr>()
        .map_or_else(String::new, |p| p.0.ip().to_string());
    let scheme = request
        .extensions()
        .get::<forwarded::Scheme>()
        .map_or("https", |s| s.0);
    let body = ClientView { address, scheme };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// Metrics reveal load and versions, so only loopback clients (a local
/// Prometheus or node exporter) may read them for now.
async fn prometheus(State(state): State<Arc<WebState>>, request: Request) -> Response {
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    if !peer.is_some_and(|ip| ip.is_loopback()) {
        return ApiError::forbidden("/metrics is served to loopback clients only").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn api_not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no API endpoint {method} {}", uri.path()))
}

async fn static_file(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let path = uri.path().trim_start_matches('/');
    state.assets.serve(path, &headers).await
}

/// Refuses a declared body over `UPLOAD_LIMIT` before anything reads it;
/// bodies without a length are cut by `DefaultBodyLimit` where they are read.
async fn body_limit(State(state): State<Arc<WebState>>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.upload_limit_bytes) {
        return ApiError::payload_too_large(state.upload_limit_bytes).into_response();
    }
    let response = next.run(request).await;
    // A body without a length cut by `DefaultBodyLimit` while read: the
    // extractor's plain text does not name the limit.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return ApiError::payload_too_large(state.upload_limit_bytes).into_response();
    }
    response
}

/// Errors produced by the HTTP machinery itself (unknown method, a body cut by
/// the limit, a malformed JSON body) come as plain text; clients are promised
/// JSON `{error, message}` for every error, so they are rewritten here.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = error::code_for_status(status);
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut answer = ApiError::new(code, message).into_response();
    // Keep the machinery's status even where the table has no code for it.
    *answer.status_mut() = status;
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

async fn observe(State(state): State<Arc<WebState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    state
        .metrics
        .observe(&method, response.status(), started.elapsed());
    response
}

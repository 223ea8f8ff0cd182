//! The REST API under `/api/v1`. Every route is declared once in [`routes`]
//! with the access it needs; one guard enforces that access before any handler
//! runs, so a handler cannot forget a check, and the isolation test walks the
//! same list.

mod accounts;
mod admin;
mod attachments;
mod demo;
mod erase;
mod evidence;
mod identity;
pub mod instance;
mod manager;
pub mod openapi;
mod sessions;
pub(crate) mod uploads;
mod ws;

use super::error::ApiError;
use super::{PeerAddr, WebState};
use crate::auth::hosts::{self, Host};
use crate::auth::sessions::{COOKIE, Session};
use crate::auth::{AuthError, Principal, Role, apikeys, now_secs};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::{HeaderMap, Method, header};
use std::sync::Arc;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, on any Host (diagnostics that need no host).
    Open,
    /// Anyone on a configured host (sign-in, JWT links).
    Public,
    /// Any signed-in account, even one that must still change its password.
    Signed,
    /// The host's administrators (and the manager on the manager's host, and
    /// the host's API keys: read-only keys for GET only).
    HostAdmin,
    /// The manager only, on MANAGER_HOST (and instance API keys).
    Manager,
    /// Proctors, administrators, the manager and the host's API keys.
    Staff,
}

/// One API route.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// The JSON body it takes, for the OpenAPI document.
    pub body: Option<BodySchema>,
    /// The media type of a successful answer; empty when it varies (tus
    /// answers with headers only, media of the stored type).
    pub produces: &'static str,
    handler: MethodRouter<Arc<WebState>>,
}

/// Produces a body's schema (a `$ref` into the document's components).
pub type BodySchema = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

fn schema_of<T: schemars::JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    generator.subschema_for::<T>()
}

impl Route {
    /// Declares the JSON body the route takes.
    fn body<T: schemars::JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self
    }

    /// Declares a successful answer that is not JSON.
    fn produces(mut self, media_type: &'static str) -> Self {
        self.produces = media_type;
        self
    }

    /// Marks a route whose successful answers have no one media type.
    fn raw(self) -> Self {
        self.produces("")
    }
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<Arc<WebState>>,
) -> Route {
    Route {
        method,
        path,
        access,
        body: None,
        produces: "application/json",
        handler,
    }
}

/// Every API route, in one list.
pub fn routes() -> Vec<Route> {
    let mut all = accounts::routes();
    all.extend(admin::routes());
    all.extend(manager::routes());
    all.extend(instance::routes());
    all.extend(sessions::routes());
    all.extend(attachments::routes());
    all.extend(evidence::routes());
    all.extend(uploads::routes());
    all.extend(ws::routes());
    all.extend(demo::routes());
    all.extend(identity::routes());
    all.extend(erase::routes());
    all.push(route(
        Method::GET,
        "/api/v1/openapi.json",
        Access::Open,
        axum::routing::get(openapi::serve),
    ));
    all
}

/// The API router: each route behind the access guard.
pub fn router(state: Arc<WebState>) -> Router<Arc<WebState>> {
    let mut router = Router::new();
    for r in routes() {
        let guarded = r.handler.route_layer(middleware::from_fn_with_state(
            (state.clone(), r.access),
            guard,
        ));
        router = router.route(r.path, guarded);
    }
    router
}

/// What the guard found out about a request, for the handler.
#[derive(Clone)]
pub struct Ctx {
    pub host: Host,
    pub host_header: String,
    pub client: String,
    pub principal: Option<Principal>,
    pub session: Option<Session>,
    pub token: Option<String>,
}

impl Ctx {
    /// The signed-in principal (the guard guarantees one on non-public routes).
    pub fn who(&self) -> Result<&Principal, ApiError> {
        self.principal
            .as_ref()
            .ok_or_else(|| AuthError::Unauthenticated.into())
    }
}

/// The Host header, or the `:authority` of an HTTP/2 request.
pub fn host_header(request: &Request) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
}

/// A state-changing request carried by a cookie must come from our own pages:
/// `Origin` (or `Sec-Fetch-Site`) proves it; a missing proof is refused.
fn check_same_origin(headers: &HeaderMap, host_header: &str) -> Result<(), AuthError> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let ours = origin.strip_prefix("https://").is_some_and(|o| {
            hosts::normalize_domain(o).ok() == hosts::normalize_domain(host_header).ok()
        });
        return if ours {
            Ok(())
        } else {
            Err(AuthError::Csrf(format!("Origin {origin} is not this site")))
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin") => Ok(()),
        Some(other) => Err(AuthError::Csrf(format!("Sec-Fetch-Site is {other}"))),
        None => Err(AuthError::Csrf(
            "a request authenticated by cookie must carry Origin".into(),
        )),
    }
}

async fn guard(
    State((state, access)): State<(Arc<WebState>, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    if access == Access::Open {
        return next.run(request).await;
    }
    match authorize(&state, access, &request) {
        Ok(ctx) => {
            request.extensions_mut().insert(ctx);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn authorize(state: &WebState, access: Access, request: &Request) -> Result<Ctx, AuthError> {
    let accounts = &state.accounts;
    let host_header = host_header(request);
    let host = hosts::resolve(accounts.store.as_ref(), &host_header)?;
    let client = request
        .extensions()
        .get::<PeerAddr>()
        .map(|p| p.0.ip().to_string())
        .unwrap_or_default();
    let headers = request.headers();
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let now = now_secs();
    let mut ctx = Ctx {
        host,
        host_header,
        client,
        principal: None,
        session: None,
        token: None,
    };

    // Public routes (signing in) take no API key; one sent along is ignored.
    let bearer = bearer(headers).filter(|_| access != Access::Public);
    if let Some(token) = bearer {
        let key = apikeys::authenticate(accounts.store.as_ref(), &token, now)?;
        // A key works only on its own host; an instance key only on the
        // manager's host.
        let fits = match &key.host_id {
            Some(h) => *h == ctx.host.id,
            None => accounts.is_manager_host_header(&ctx.host_header),
        };
        if !fits {
            return Err(AuthError::Unauthenticated);
        }
        if !key.write && !safe {
            return Err(AuthError::Forbidden("this API key is read-only".into()));
        }
        ctx.principal = Some(Principal::ApiKey {
            host_id: key.host_id,
            key_id: key.id,
            write: key.write,
        });
    } else if let Some(token) = cookie_token(headers) {
        match accounts.session(&token, &ctx.host.id, now) {
            Ok(session) => {
                if !safe {
                    check_same_origin(headers, &ctx.host_header)?;
                }
                ctx.principal = Some(session.principal());
                ctx.session = Some(session);
                ctx.token = Some(token);
            }
            // A stale cookie on a public route (signing in again) is fine.
            Err(e) if access != Access::Public => return Err(e),
            Err(_) => {}
        }
    } else if access == Access::Public && !safe {
        // Login CSRF: a foreign page must not sign a browser into our site.
        if headers.contains_key(header::ORIGIN) {
            check_same_origin(headers, &ctx.host_header)?;
        }
    }

    if access == Access::Public {
        return Ok(ctx);
    }
    let Some(principal) = &ctx.principal else {
        return Err(AuthError::Unauthenticated);
    };
    if let Some(session) = &ctx.session
        && access != Access::Signed
        && accounts.must_change_password(session)?
    {
        return Err(AuthError::PasswordChangeRequired);
    }
    let allowed = match access {
        Access::Open | Access::Public | Access::Signed => true,
        Access::HostAdmin => matches!(principal.role(), Role::Administrator | Role::Manager),
        Access::Manager => principal.role() == Role::Manager,
        Access::Staff => principal.role() != Role::Student,
    };
    if allowed {
        Ok(ctx)
    } else {
        Err(AuthError::Forbidden(format!(
            "the {} role may not do this",
            principal.role().as_str()
        )))
    }
}

/// Runs store and argon2 work off the async threads: a sign-in storm or a
/// slow fsync must not stall every other request.
pub(super) async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("internal", e))?
        .map_err(Into::into)
}

/// The cookie that carries a new session.
pub fn session_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Lax")
}

/// The cookie that removes the session from the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_proofs() {
        let ok = |h: &[(&'static str, &'static str)]| {
            check_same_origin(&headers(h), "exam.test:8443").is_ok()
        };
        assert!(ok(&[("origin", "https://exam.test:8443")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(!ok(&[("origin", "https://evil.test")]));
        assert!(!ok(&[("origin", "http://exam.test:8443")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[]));
    }

    #[test]
    fn cookie_and_bearer_are_read() {
        let h = headers(&[
            ("cookie", "a=b; __Host-invigil=tok123; c=d"),
            ("authorization", "Bearer ivk_x_y"),
        ]);
        assert_eq!(cookie_token(&h).as_deref(), Some("tok123"));
        assert_eq!(bearer(&h).as_deref(), Some("ivk_x_y"));
    }

    #[test]
    fn every_path_is_under_api_v1_and_unique_per_method() {
        let mut seen = std::collections::HashSet::new();
        for r in routes() {
            assert!(r.path.starts_with("/api/v1/"), "{}", r.path);
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }
}

//! The manager's part: hosts, instance API keys, and the audit log of every
//! scope. Only on MANAGER_HOST.

use super::admin::{AuditQuery, CreatedKey, NewKey, create_key_for, revoke_key_for};
use super::{Access, Ctx, Route, blocking, route};
use crate::auth::hosts::{self, Host, HostInput};
use crate::auth::{apikeys, audit};
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::routing::{delete, get, patch, post};
use http::{Method, StatusCode};
use serde::Serialize;
use std::sync::Arc;

pub(super) fn routes() -> Vec<Route> {
    use Access::Manager as M;
    vec![
        route(Method::GET, "/api/v1/hosts", M, get(list_hosts)),
        route(Method::POST, "/api/v1/hosts", M, post(create_host)).body::<HostInput>(),
        route(Method::GET, "/api/v1/hosts/{id}", M, get(get_host)),
        route(Method::PATCH, "/api/v1/hosts/{id}", M, patch(update_host)).body::<HostInput>(),
        route(
            Method::POST,
            "/api/v1/hosts/{id}/users",
            M,
            post(create_host_user),
        )
        .body::<crate::auth::users::UserInput>(),
        route(Method::GET, "/api/v1/instance/keys", M, get(list_keys)),
        route(Method::POST, "/api/v1/instance/keys", M, post(create_key)).body::<NewKey>(),
        route(
            Method::DELETE,
            "/api/v1/instance/keys/{id}",
            M,
            delete(revoke_key),
        ),
        route(Method::GET, "/api/v1/instance/audit", M, get(list_audit)),
    ]
}

/// A host as the manager sees it: JWT secrets are never listed.
#[derive(Serialize)]
pub(super) struct HostView {
    id: String,
    domains: Vec<String>,
    title: String,
    valid_until: Option<u64>,
    volume: Option<u64>,
    sessions_used: u64,
    retention_days: Option<u32>,
    disabled: bool,
    jwt_roles: Vec<crate::auth::Role>,
    created_at: u64,
    webhook_url: Option<String>,
    webhook_allow_private: bool,
}

impl From<Host> for HostView {
    fn from(h: Host) -> Self {
        HostView {
            id: h.id,
            domains: h.domains,
            title: h.title,
            valid_until: h.valid_until,
            volume: h.volume,
            sessions_used: h.sessions_used,
            retention_days: h.retention_days,
            disabled: h.disabled,
            jwt_roles: h.jwt_roles,
            created_at: h.created_at,
            webhook_url: h.webhook_url,
            webhook_allow_private: h.webhook_allow_private,
        }
    }
}

async fn list_hosts(State(state): State<Arc<WebState>>) -> Result<Json<Vec<HostView>>, ApiError> {
    let all = hosts::list(state.accounts.store.as_ref())?;
    Ok(Json(all.into_iter().map(HostView::from).collect()))
}

async fn create_host(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(input): Json<HostInput>,
) -> Result<(StatusCode, Json<HostView>), ApiError> {
    let host = hosts::create(
        state.accounts.store.as_ref(),
        ctx.who()?,
        &input,
        &ctx.client,
    )?;
    Ok((StatusCode::CREATED, Json(host.into())))
}

async fn get_host(
    State(state): State<Arc<WebState>>,
    Path(id): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    Ok(Json(hosts::get(state.accounts.store.as_ref(), &id)?.into()))
}

async fn update_host(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Json(input): Json<HostInput>,
) -> Result<Json<HostView>, ApiError> {
    let host = hosts::update(
        state.accounts.store.as_ref(),
        ctx.who()?,
        &id,
        &input,
        &ctx.client,
    )?;
    Ok(Json(host.into()))
}

/// A new host's first administrator comes from here: the manager has no
/// session on other hosts.
async fn create_host_user(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Json(input): Json<crate::auth::users::UserInput>,
) -> Result<(StatusCode, Json<crate::auth::users::UserView>), ApiError> {
    let a = state.accounts.clone();
    let host = hosts::get(a.store.as_ref(), &id)?;
    let user = blocking(move || {
        crate::auth::users::create(
            a.store.as_ref(),
            ctx.who()?,
            &host.id,
            &input,
            &a.policy.rule,
            &ctx.client,
        )
        .map_err(ApiError::from)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(user.view(crate::auth::now_secs())),
    ))
}

async fn list_keys(
    State(state): State<Arc<WebState>>,
) -> Result<Json<Vec<apikeys::ApiKey>>, ApiError> {
    Ok(Json(apikeys::list(state.accounts.store.as_ref(), None)?))
}

async fn create_key(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(body): Json<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    create_key_for(&state, &ctx, None, &body)
}

async fn revoke_key(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    revoke_key_for(&state, &ctx, None, &id)
}

async fn list_audit(
    State(state): State<Arc<WebState>>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<audit::Entry>>, ApiError> {
    let scope = q
        .scope
        .clone()
        .unwrap_or_else(|| audit::INSTANCE.to_string());
    Ok(Json(audit::list(
        state.accounts.store.as_ref(),
        &scope,
        &q.filter(),
    )?))
}

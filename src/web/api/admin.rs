//! A host's administration: users (with CSV import), API keys, JWT secrets,
//! sign-in sessions, the audit log and the host's own settings. Everything is
//! scoped to the host the request's Host header names.

use super::manager::HostView;
use super::{Access, Ctx, Route, blocking, route};
use crate::auth::users::{self, UserInput};
use crate::auth::{Role, apikeys, audit, csv_import, hosts, now_secs, sessions};
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::routing::{delete, get, patch, post};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) fn routes() -> Vec<Route> {
    use Access::HostAdmin as A;
    vec![
        route(Method::GET, "/api/v1/users", A, get(list_users)),
        route(Method::POST, "/api/v1/users", A, post(create_user)).body::<UserInput>(),
        route(Method::POST, "/api/v1/users/import", A, post(import_users)),
        route(Method::GET, "/api/v1/users/{username}", A, get(get_user)),
        route(
            Method::PATCH,
            "/api/v1/users/{username}",
            A,
            patch(update_user),
        )
        .body::<UserInput>(),
        route(
            Method::DELETE,
            "/api/v1/users/{username}",
            A,
            delete(delete_user),
        ),
        route(
            Method::DELETE,
            "/api/v1/users/{username}/sessions",
            A,
            delete(revoke_sessions),
        ),
        route(Method::GET, "/api/v1/keys", A, get(list_keys)),
        route(Method::POST, "/api/v1/keys", A, post(create_key)).body::<NewKey>(),
        route(Method::DELETE, "/api/v1/keys/{id}", A, delete(revoke_key)),
        route(Method::GET, "/api/v1/jwt-secrets", A, get(list_jwt_secrets)),
        route(
            Method::POST,
            "/api/v1/jwt-secrets",
            A,
            post(rotate_jwt_secret),
        ),
        route(Method::GET, "/api/v1/audit", A, get(list_audit)),
        route(Method::GET, "/api/v1/settings", A, get(get_settings)),
        route(Method::PATCH, "/api/v1/settings", A, patch(update_settings))
            .body::<hosts::SettingsInput>(),
    ]
}

#[derive(Deserialize)]
struct UserQuery {
    q: Option<String>,
    role: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list_users(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<UserQuery>,
) -> Result<Json<users::Page>, ApiError> {
    let role = match q.role.as_deref() {
        None => None,
        Some(r) => Some(Role::parse_host_role(r).ok_or_else(|| {
            ApiError::new(
                "invalid_field",
                "role: one of student, proctor, administrator",
            )
        })?),
    };
    let page = users::search(
        state.accounts.store.as_ref(),
        &ctx.host.id,
        q.q.as_deref(),
        role,
        q.page.unwrap_or(1),
        q.per_page.unwrap_or(50),
    )?;
    Ok(Json(page))
}

async fn create_user(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(input): Json<UserInput>,
) -> Result<(StatusCode, Json<users::UserView>), ApiError> {
    let a = state.accounts.clone();
    let user = blocking(move || {
        users::create(
            a.store.as_ref(),
            ctx.who()?,
            &ctx.host.id,
            &input,
            &a.policy.rule,
            &ctx.client,
        )
        .map_err(ApiError::from)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(user.view(now_secs()))))
}

#[derive(Deserialize)]
struct ImportQuery {
    dry_run: Option<bool>,
}

async fn import_users(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> Result<Json<csv_import::Report>, ApiError> {
    let a = state.accounts.clone();
    let report = blocking(move || {
        csv_import::import(
            a.store.as_ref(),
            ctx.who()?,
            &ctx.host.id,
            &body,
            &a.policy.rule,
            q.dry_run.unwrap_or(false),
            &ctx.client,
        )
        .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(report))
}

async fn get_user(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(username): Path<String>,
) -> Result<Json<users::UserView>, ApiError> {
    let user = users::get(state.accounts.store.as_ref(), &ctx.host.id, &username)?;
    Ok(Json(user.view(now_secs())))
}

async fn update_user(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(username): Path<String>,
    Json(input): Json<UserInput>,
) -> Result<Json<users::UserView>, ApiError> {
    let a = state.accounts.clone();
    let user = blocking(move || {
        users::update(
            a.store.as_ref(),
            ctx.who()?,
            &ctx.host.id,
            &username,
            &input,
            &a.policy.rule,
            &ctx.client,
        )
        .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(user.view(now_secs())))
}

async fn delete_user(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    users::delete(
        state.accounts.store.as_ref(),
        ctx.who()?,
        &ctx.host.id,
        &username,
        &ctx.client,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_sessions(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(username): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.accounts.store.as_ref();
    let user = users::get(store, &ctx.host.id, &username)?;
    let who = ctx.who()?.actor();
    let ended = store.write(|tx| {
        let n = sessions::revoke_user_in(tx, &ctx.host.id, &user.username)?;
        audit::append(
            tx,
            &ctx.host.id,
            audit::Event::new(who, "sessions_revoked", &user.username)
                .client(&ctx.client)
                .with("count", n.to_string()),
        )?;
        Ok::<_, crate::auth::AuthError>(n)
    })?;
    Ok(Json(serde_json::json!({ "revoked": ended })))
}

async fn list_keys(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Json<Vec<apikeys::ApiKey>>, ApiError> {
    Ok(Json(apikeys::list(
        state.accounts.store.as_ref(),
        Some(&ctx.host.id),
    )?))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    pub name: String,
    /// `read` or `write`.
    pub scope: String,
}

#[derive(Serialize)]
pub(super) struct CreatedKey {
    #[serde(flatten)]
    pub key: apikeys::ApiKey,
    /// The bearer token, shown only in this answer.
    pub token: String,
}

pub(super) fn parse_scope(scope: &str) -> Result<bool, ApiError> {
    match scope {
        "read" => Ok(false),
        "write" => Ok(true),
        _ => Err(ApiError::new("invalid_field", "scope: `read` or `write`")),
    }
}

async fn create_key(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(body): Json<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let host = Some(ctx.host.id.clone());
    create_key_for(&state, &ctx, host.as_deref(), &body)
}

/// Creates a key of a host (`Some`) or an instance key (`None`).
pub(super) fn create_key_for(
    state: &WebState,
    ctx: &Ctx,
    host_id: Option<&str>,
    body: &NewKey,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let write = parse_scope(&body.scope)?;
    let store = state.accounts.store.as_ref();
    let (key, token) = apikeys::create(store, ctx.who()?, host_id, &body.name, write, &ctx.client)?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, token })))
}

async fn revoke_key(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let host = Some(ctx.host.id.clone());
    revoke_key_for(&state, &ctx, host.as_deref(), &id)
}

/// Revokes a key of a host (`Some`) or an instance key (`None`).
pub(super) fn revoke_key_for(
    state: &WebState,
    ctx: &Ctx,
    host_id: Option<&str>,
    id: &str,
) -> Result<StatusCode, ApiError> {
    apikeys::revoke(
        state.accounts.store.as_ref(),
        ctx.who()?,
        host_id,
        id,
        &ctx.client,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct SecretInfo {
    id: String,
    created_at: u64,
}

async fn list_jwt_secrets(Extension(ctx): Extension<Ctx>) -> Json<Vec<SecretInfo>> {
    Json(
        ctx.host
            .jwt_secrets
            .iter()
            .map(|s| SecretInfo {
                id: s.id.clone(),
                created_at: s.created_at,
            })
            .collect(),
    )
}

async fn rotate_jwt_secret(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<(StatusCode, Json<hosts::JwtSecret>), ApiError> {
    let fresh = hosts::rotate_jwt_secret(
        state.accounts.store.as_ref(),
        ctx.who()?,
        &ctx.host.id,
        &ctx.client,
    )?;
    Ok((StatusCode::CREATED, Json(fresh)))
}

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    /// For the manager: `instance` (default) or a host id. Hosts see their own.
    pub scope: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub before: Option<u64>,
    pub limit: Option<usize>,
}

impl AuditQuery {
    pub fn filter(&self) -> audit::Filter {
        audit::Filter {
            action: self.action.clone(),
            actor: self.actor.clone(),
            since: self.since,
            until: self.until,
            before: self.before,
            limit: self.limit.unwrap_or(100),
        }
    }
}

async fn list_audit(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<audit::Entry>>, ApiError> {
    Ok(Json(audit::list(
        state.accounts.store.as_ref(),
        &ctx.host.id,
        &q.filter(),
    )?))
}

/// The administrator's own host, as the manager sees it.
async fn get_settings(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Json<HostView>, ApiError> {
    Ok(Json(
        hosts::get(state.accounts.store.as_ref(), &ctx.host.id)?.into(),
    ))
}

async fn update_settings(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(input): Json<hosts::SettingsInput>,
) -> Result<Json<HostView>, ApiError> {
    let host = hosts::update_settings(
        state.accounts.store.as_ref(),
        ctx.who()?,
        &ctx.host.id,
        &input,
        &ctx.client,
    )?;
    Ok(Json(host.into()))
}

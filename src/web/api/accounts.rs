//! Sign-in, sign-out, password change, "who am I", and JWT links.

use super::{Access, Ctx, Route, blocking, clear_cookie, route, session_cookie};
use crate::auth::login::SignedIn;
use crate::auth::{AuthError, Principal, now_secs};
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, http::header};
use http::Method;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::POST,
            "/api/v1/auth/login",
            Access::Public,
            post(login),
        )
        .body::<Credentials>(),
        route(
            Method::POST,
            "/api/v1/auth/logout",
            Access::Signed,
            post(logout),
        ),
        route(
            Method::POST,
            "/api/v1/auth/password",
            Access::Signed,
            post(change_password),
        )
        .body::<PasswordChange>(),
        route(
            Method::GET,
            "/api/v1/auth/jwt",
            Access::Public,
            get(jwt_link),
        ),
        route(
            Method::POST,
            "/api/v1/auth/jwt",
            Access::Public,
            post(jwt_post),
        )
        .body::<TokenParam>(),
        route(Method::GET, "/api/v1/me", Access::Signed, get(me)),
        route(
            Method::GET,
            "/api/v1/client",
            Access::Open,
            get(crate::web::client_address),
        ),
    ]
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Me {
    username: String,
    role: &'static str,
    host: HostRef,
    must_change_password: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
}

#[derive(Serialize)]
struct HostRef {
    id: String,
    title: String,
}

fn me_of(
    ctx: &Ctx,
    principal: &Principal,
    must_change_password: bool,
    nickname: Option<String>,
) -> Me {
    let username = match principal {
        Principal::Manager { username } | Principal::User { username, .. } => username.clone(),
        Principal::ApiKey { key_id, .. } => format!("key:{key_id}"),
    };
    Me {
        username,
        role: principal.role().as_str(),
        host: HostRef {
            id: ctx.host.id.clone(),
            title: ctx.host.title.clone(),
        },
        must_change_password,
        nickname,
    }
}

fn signed_in_response(ctx: &Ctx, signed: &SignedIn) -> Response {
    let body = me_of(ctx, &signed.principal, signed.must_change_password, None);
    (
        [
            (header::SET_COOKIE, session_cookie(&signed.token)),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Json(body),
    )
        .into_response()
}

async fn login(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    // A session the browser already had is ended: a fresh id at every sign-in.
    if let Some(old) = &ctx.token {
        state.accounts.close_session(old)?;
    }
    let accounts = state.accounts.clone();
    let (host, header, client) = (
        ctx.host.clone(),
        ctx.host_header.clone(),
        ctx.client.clone(),
    );
    let signed = blocking(move || {
        accounts.login(
            &host,
            &header,
            &body.username,
            &body.password,
            &client,
            now_secs(),
        )
    })
    .await?;
    Ok(signed_in_response(&ctx, &signed))
}

async fn logout(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, ApiError> {
    if let Some(token) = &ctx.token {
        state.accounts.close_session(token)?;
    }
    Ok((
        [(header::SET_COOKIE, clear_cookie())],
        Json(serde_json::json!({ "status": "signed out" })),
    )
        .into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    old: String,
    new: String,
}

async fn change_password(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(body): Json<PasswordChange>,
) -> Result<Response, ApiError> {
    let Some(session) = ctx.session.clone() else {
        return Err(AuthError::Forbidden("API keys have no password".into()).into());
    };
    let accounts = state.accounts.clone();
    let client = ctx.client.clone();
    let token = blocking(move || {
        accounts.change_password(&session, &body.old, &body.new, &client, now_secs())
    })
    .await?;
    Ok((
        [(header::SET_COOKIE, session_cookie(&token))],
        Json(serde_json::json!({ "status": "password changed" })),
    )
        .into_response())
}

async fn me(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Json<Me>, ApiError> {
    let principal = ctx.who()?;
    let (must_change, nickname) = match (&ctx.session, principal) {
        (
            Some(session),
            Principal::User {
                host_id, username, ..
            },
        ) => {
            let user = crate::auth::users::get(state.accounts.store.as_ref(), host_id, username)?;
            (
                state.accounts.must_change_password(session)?,
                Some(user.nickname),
            )
        }
        (Some(session), _) => (state.accounts.must_change_password(session)?, None),
        (None, _) => (false, None),
    };
    Ok(Json(me_of(&ctx, principal, must_change, nickname)))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct TokenParam {
    token: String,
}

/// Signs in with a link and opens the session it names (created by the first
/// link with its identifier, resumed by later ones); answers the sign-in, the
/// link's fields and that session's id.
async fn jwt_sign_in(
    state: &WebState,
    ctx: &Ctx,
    token: &str,
) -> Result<
    (
        SignedIn,
        serde_json::Value,
        Option<crate::proctoring::sessions::Session>,
    ),
    ApiError,
> {
    if let Some(old) = &ctx.token {
        state.accounts.close_session(old)?;
    }
    let (signed, claims) = state
        .accounts
        .jwt_login(&ctx.host, token, &ctx.client, now_secs())?;
    let session = match &signed.principal {
        Principal::User {
            username,
            role: crate::auth::Role::Student,
            ..
        } => {
            let (store, host, student) = (
                state.accounts.store.clone(),
                ctx.host.id.clone(),
                username.clone(),
            );
            let link = claims.clone();
            blocking(move || {
                crate::proctoring::links::open(store.as_ref(), &host, &student, &link, now_secs())
            })
            .await?
        }
        _ => None,
    };
    let claims = serde_json::to_value(claims).map_err(|e| ApiError::internal("internal", e))?;
    Ok((signed, claims, session))
}

/// The link an LMS gives a student: signs in and lands in the session the
/// link names (or on the front page when it names none).
async fn jwt_link(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<TokenParam>,
) -> Result<Response, ApiError> {
    let (signed, _, session) = jwt_sign_in(&state, &ctx, &q.token).await?;
    let to = match session {
        Some(s) => format!("/#/session/{}", s.id),
        None => "/".to_string(),
    };
    Ok((
        [
            (header::SET_COOKIE, session_cookie(&signed.token)),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
        Redirect::to(&to),
    )
        .into_response())
}

/// The same for scripts: answers the account and the link's session fields.
async fn jwt_post(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(q): Json<TokenParam>,
) -> Result<Response, ApiError> {
    let (signed, claims, session) = jwt_sign_in(&state, &ctx, &q.token).await?;
    let me = me_of(&ctx, &signed.principal, false, None);
    Ok((
        [(header::SET_COOKIE, session_cookie(&signed.token))],
        Json(serde_json::json!({ "account": me, "link": claims, "session": session })),
    )
        .into_response())
}

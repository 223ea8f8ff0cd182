//! Erasure on request: one session, or everything of one user, in both storage
//! tiers. Administrators only; each erasure leaves an audit entry with the reason.

use super::{Access, Ctx, Route, route};
use crate::proctoring::retention::{self, Erased, ErasedUser, Request};
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::routing::{delete, post};
use http::Method;
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Vec<Route> {
    use Access::HostAdmin as A;
    vec![
        route(
            Method::DELETE,
            "/api/v1/sessions/{id}",
            A,
            delete(erase_session),
        )
        .body::<Reason>(),
        route(
            Method::POST,
            "/api/v1/users/{username}/erase",
            A,
            post(erase_user),
        )
        .body::<Reason>(),
    ]
}

/// Why the data is erased; kept in the audit log (the data is not).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

async fn erase_session(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Json(input): Json<Reason>,
) -> Result<Json<Erased>, ApiError> {
    let actor = ctx.who()?.actor();
    let erased = retention::erase_session(
        &state.accounts.store,
        &state.objects,
        &ctx.host.id,
        &id,
        &Request {
            actor: &actor,
            reason: &input.reason,
            client: &ctx.client,
        },
    )
    .await?;
    state.faces.forget(&ctx.host.id);
    Ok(Json(erased))
}

async fn erase_user(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(username): Path<String>,
    Json(input): Json<Reason>,
) -> Result<Json<ErasedUser>, ApiError> {
    let actor = ctx.who()?.actor();
    let erased = retention::erase_user(
        &state.accounts.store,
        &state.objects,
        &ctx.host.id,
        &username,
        &Request {
            actor: &actor,
            reason: &input.reason,
            client: &ctx.client,
        },
    )
    .await?;
    state.faces.forget(&ctx.host.id);
    Ok(Json(erased))
}

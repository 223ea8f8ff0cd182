//! `GET /api/v1/ws`: the live hub's WebSocket. The access guard has
//! authenticated the caller; here the handshake's `Origin` is checked (a
//! cross-site page must not open a socket with the user's cookie), the
//! frame limit is set, and the socket is handed to `realtime`.

use super::{Access, Ctx, Route, check_same_origin, route};
use crate::proctoring::access;
use crate::realtime::{self, Identity};
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Extension, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Method};
use std::sync::Arc;

pub(super) fn routes() -> Vec<Route> {
    vec![route(Method::GET, "/api/v1/ws", Access::Signed, get(open))]
}

async fn open(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // WebSocket handshakes are GETs, which the guard lets through without
    // the same-origin proof; a cookie is ambient, so it needs one here.
    if ctx.session.is_some() {
        check_same_origin(&headers, &ctx.host_header)?;
    }
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            "bad_request",
            format!("this endpoint speaks WebSocket only: {e}"),
        )
    })?;
    let principal = ctx.who()?.clone();
    let hub = state.hub.clone();
    let store = state.accounts.store.clone();
    let groups = {
        let p = principal.clone();
        tokio::task::spawn_blocking(move || access::groups(store.as_ref(), &p))
            .await
            .map_err(|e| ApiError::internal("internal", e))?
    };
    let who = Identity {
        principal,
        host_id: ctx.host.id.clone(),
        groups,
    };
    Ok(upgrade
        .max_message_size(hub.limits.hard_frame_bytes)
        .max_frame_size(hub.limits.hard_frame_bytes)
        .on_upgrade(move |socket| realtime::serve(hub, socket, who))
        .into_response())
}

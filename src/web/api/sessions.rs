//! Templates and sessions over REST: creation, the status machine, metric
//! periods, the explained score and the protocol. Who may see or move a
//! session is decided per record: students their own, proctors the ones they
//! watch, administrators all of their host.

use super::{Access, Ctx, Route, blocking, route};
use crate::auth::{Principal, Role, now_secs};
use crate::proctoring::access::{self, Standing};
use crate::proctoring::metrics::{Metric, Score};
use crate::proctoring::protocol::{self, Kind};
use crate::proctoring::sessions::{self, Action, NewSession, Session};
use crate::proctoring::templates::{self, Template, TemplateInput};
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::routing::{get, post, put};
use http::{Method, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) fn routes() -> Vec<Route> {
    use Access::{HostAdmin, Signed, Staff};
    let mut all = vec![
        route(Method::GET, "/api/v1/templates", Staff, get(list_templates)),
        route(
            Method::POST,
            "/api/v1/templates",
            HostAdmin,
            post(create_template),
        )
        .body::<TemplateInput>(),
        route(
            Method::PUT,
            "/api/v1/templates/{id}",
            HostAdmin,
            put(update_template),
        )
        .body::<TemplateInput>(),
        route(Method::GET, "/api/v1/sessions", Staff, get(list_sessions)),
        route(
            Method::POST,
            "/api/v1/sessions",
            HostAdmin,
            post(create_session),
        )
        .body::<NewSession>(),
        route(
            Method::GET,
            "/api/v1/sessions/{id}",
            Signed,
            get(get_session),
        ),
        route(
            Method::POST,
            "/api/v1/sessions/{id}/periods",
            Signed,
            post(add_period),
        )
        .body::<PeriodBody>(),
        route(
            Method::GET,
            "/api/v1/sessions/{id}/score",
            Staff,
            get(get_score),
        ),
        route(
            Method::GET,
            "/api/v1/sessions/{id}/protocol",
            Staff,
            get(get_protocol),
        ),
        route(
            Method::POST,
            "/api/v1/sessions/{id}/accommodations",
            HostAdmin,
            post(accommodate),
        )
        .body::<AccommodationBody>(),
    ];
    for (path, action) in [
        ("/api/v1/sessions/{id}/start", Action::Start),
        ("/api/v1/sessions/{id}/pause", Action::Pause),
        ("/api/v1/sessions/{id}/resume", Action::Resume),
        ("/api/v1/sessions/{id}/stop", Action::Stop),
        ("/api/v1/sessions/{id}/conclude", Action::Conclude),
    ] {
        let handler = post(
            move |state: State<Arc<WebState>>,
                  ctx: Extension<Ctx>,
                  id: Path<String>,
                  body: Option<Json<Conclusion>>| { act(state, ctx, id, action, body) },
        );
        let r = route(Method::POST, path, Signed, handler);
        all.push(if action == Action::Conclude {
            r.body::<Conclusion>()
        } else {
            r
        });
    }
    all
}

async fn list_templates(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Json<Vec<Template>>, ApiError> {
    Ok(Json(templates::list(
        state.accounts.store.as_ref(),
        &ctx.host.id,
    )?))
}

async fn create_template(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(input): Json<TemplateInput>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let t = templates::save(
        state.accounts.store.as_ref(),
        &ctx.host.id,
        &ctx.who()?.actor(),
        &input,
    )?;
    Ok((StatusCode::CREATED, Json(t)))
}

async fn update_template(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Json(mut input): Json<TemplateInput>,
) -> Result<Json<Template>, ApiError> {
    let store = state.accounts.store.as_ref();
    if store
        .read(|tx| templates::latest(tx, &ctx.host.id, &id))?
        .is_none()
    {
        return Err(ApiError::not_found(format!("template {id} not found")));
    }
    input.id = Some(id);
    Ok(Json(templates::save(
        store,
        &ctx.host.id,
        &ctx.who()?.actor(),
        &input,
    )?))
}

/// Finds a session the caller may see (the one rule in
/// [`access::standing`]); anything else is "not found", so that nobody
/// learns which sessions exist.
pub(super) fn visible(
    state: &WebState,
    ctx: &Ctx,
    id: &str,
) -> Result<(Session, Standing), ApiError> {
    let store = state.accounts.store.as_ref();
    let missing = || ApiError::not_found(format!("session {id} not found"));
    let s = sessions::get(store, &ctx.host.id, id).map_err(|_| missing())?;
    let who = ctx.who()?;
    let standing = access::standing(&s, who, &access::groups(store, who)).ok_or_else(missing)?;
    Ok((s, standing))
}

async fn get_session(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(visible(&state, &ctx, &id)?.0))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Conclusion {
    positive: bool,
    #[serde(default)]
    comment: String,
}

async fn act(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    action: Action,
    body: Option<Json<Conclusion>>,
) -> Result<Json<Session>, ApiError> {
    let (s, standing) = visible(&state, &ctx, &id)?;
    let may = match (action, standing) {
        (Action::Start | Action::Stop, _) => true,
        (_, Standing::Staff) => true,
        (_, Standing::Student) => false,
    };
    if !may {
        return Err(ApiError::forbidden(format!(
            "a student may not {} a session",
            action.as_str()
        )));
    }
    if action == Action::Start
        && standing == Standing::Staff
        && !matches!(ctx.who()?, Principal::User { .. })
    {
        // Starting means the exam begins for the student; API keys and the
        // manager have no exam to take.
        return Err(ApiError::forbidden("only the student starts a session"));
    }
    let conclusion = body.map(|Json(c)| (c.positive, c.comment));
    if action == Action::Conclude && conclusion.is_none() {
        return Err(ApiError::new(
            "invalid_field",
            "positive: a conclusion needs {\"positive\": true|false}",
        ));
    }
    let who = ctx.who()?.actor();
    let announced_by = who.clone();
    let store = state.accounts.store.clone();
    let updated = blocking(move || {
        sessions::act(
            store.as_ref(),
            &s.host_id,
            &s.id,
            &who,
            action,
            now_secs(),
            conclusion,
        )
    })
    .await?;
    state.hub.announce_status(&updated, action, &announced_by);
    Ok(Json(updated))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PeriodBody {
    values: BTreeMap<Metric, f64>,
}

async fn add_period(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Json(body): Json<PeriodBody>,
) -> Result<Json<Session>, ApiError> {
    let (s, standing) = visible(&state, &ctx, &id)?;
    if standing != Standing::Student {
        return Err(ApiError::forbidden(
            "metric periods come from the student's browser",
        ));
    }
    if let Some(m) = body.values.keys().find(|m| m.server_side()) {
        return Err(ApiError::new(
            "invalid_field",
            format!("values: {m} is measured by the server, not the browser"),
        ));
    }
    let who = ctx.who()?.actor();
    let updated = sessions::add_period(
        state.accounts.store.as_ref(),
        &s.host_id,
        &s.id,
        &who,
        &body.values,
        now_secs(),
    )?;
    state.hub.announce_metrics(&updated, &body.values);
    Ok(Json(updated))
}

async fn get_score(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<Score>, ApiError> {
    let (s, _) = visible(&state, &ctx, &id)?;
    Ok(Json(sessions::score(state.accounts.store.as_ref(), &s)?))
}

#[derive(Deserialize)]
struct ProtocolQuery {
    kind: Option<Kind>,
    before: Option<u64>,
    limit: Option<usize>,
}

async fn get_protocol(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<ProtocolQuery>,
) -> Result<Json<Vec<protocol::Entry>>, ApiError> {
    let (s, _) = visible(&state, &ctx, &id)?;
    Ok(Json(protocol::list(
        state.accounts.store.as_ref(),
        &s.scope(),
        q.kind,
        q.before,
        q.limit.unwrap_or(200),
    )?))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AccommodationBody {
    grant: sessions::Grant,
    #[serde(default)]
    reason: String,
}

async fn accommodate(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Json(body): Json<AccommodationBody>,
) -> Result<Json<Session>, ApiError> {
    let (s, _) = visible(&state, &ctx, &id)?;
    let who = ctx.who()?.actor();
    let updated = sessions::accommodate(
        state.accounts.store.as_ref(),
        &s.host_id,
        &s.id,
        &who,
        body.grant,
        &body.reason,
        now_secs(),
    )?;
    Ok(Json(updated))
}

async fn list_sessions(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Query(mut q): Query<sessions::Query>,
) -> Result<Json<Vec<Session>>, ApiError> {
    let store = state.accounts.store.as_ref();
    // Proctors see the sessions they watch.
    let who = ctx.who()?;
    let proctor = matches!(
        who,
        Principal::User {
            role: Role::Proctor,
            ..
        }
    );
    if proctor {
        q.proctor = None;
    }
    let mut found = sessions::list(store, &ctx.host.id, &q, 1000)?;
    if proctor {
        let groups = access::groups(store, who);
        found.retain(|s| access::standing(s, who, &groups).is_some());
    }
    Ok(Json(found))
}

async fn create_session(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Json(input): Json<NewSession>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let s = sessions::create(
        state.accounts.store.as_ref(),
        &ctx.host.id,
        &ctx.who()?.actor(),
        &input,
        now_secs(),
    )?;
    Ok((StatusCode::CREATED, Json(s)))
}

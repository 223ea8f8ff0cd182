//! Evidence over REST: the signed bundle of a session, its printable report,
//! the CSV export of a host's sessions, and the host's webhook secret and
//! outbox.

use super::sessions::visible;
use super::{Access, Ctx, Route, blocking, route};
use crate::auth::{Principal, Role, audit, hosts, now_secs};
use crate::proctoring::access::{self, Standing};
use crate::proctoring::reports::{self, Filter, ReportData};
use crate::proctoring::{bundle, protocol, sessions, webhooks};
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

pub(super) fn routes() -> Vec<Route> {
    use Access::{HostAdmin, Staff};
    vec![
        route(
            Method::GET,
            "/api/v1/sessions/{id}/export",
            Staff,
            get(export),
        )
        .produces("application/x-tar"),
        route(
            Method::GET,
            "/api/v1/sessions/{id}/report",
            Staff,
            get(report),
        )
        .produces("text/html"),
        route(
            Method::GET,
            "/api/v1/reports/sessions.csv",
            Staff,
            get(sessions_csv),
        )
        .produces("text/csv"),
        route(Method::GET, "/api/v1/webhooks", HostAdmin, get(outbox)),
        route(
            Method::POST,
            "/api/v1/webhooks/secret",
            HostAdmin,
            post(rotate_secret),
        ),
    ]
}

/// Staff who may see the session (students get "not found" or 403 like
/// every other staff-only view of a session).
fn staff_view(state: &WebState, ctx: &Ctx, id: &str) -> Result<sessions::Session, ApiError> {
    let (s, standing) = visible(state, ctx, id)?;
    if standing != Standing::Staff {
        return Err(ApiError::forbidden("only staff see a session's evidence"));
    }
    Ok(s)
}

async fn export(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = staff_view(&state, &ctx, &id)?;
    let who = ctx.who()?.actor();
    let store = state.accounts.store.clone();
    let (host_id, sid) = (s.host_id.clone(), s.id.clone());
    let collected = blocking(move || bundle::collect(store.as_ref(), &host_id, &sid)).await?;
    // Recordings can be large: the bundle goes to an unlinked temporary
    // file and is streamed from there, never held in memory.
    let path = std::env::temp_dir().join(format!(
        "invigil-export-{}.tar",
        crate::auth::random_token(12)
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ApiError::internal("internal", format!("{}: {e}", path.display())))?;
    let signer = &state.evidence;
    let written = bundle::write(
        &collected,
        &state.objects,
        &signer.key,
        signer.instance.clone(),
        &who,
        now_secs(),
        std::io::BufWriter::new(file),
    )
    .await;
    let reopened = tokio::fs::File::open(&path).await;
    let _ = std::fs::remove_file(&path);
    let manifest = written?;
    let file = reopened.map_err(|e| ApiError::internal("internal", e))?;
    let length = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal("internal", e))?
        .len();
    let store = state.accounts.store.clone();
    let event = audit::Event::new(&who, "evidence_exported", &s.id)
        .client(&ctx.client)
        .with("head", &manifest.chain.head)
        .with("files", manifest.files.len().to_string());
    let scope = s.host_id.clone();
    blocking(move || audit::record(store.as_ref(), &scope, event)).await?;
    let filename = format!("invigil-{}-{}.tar", s.host_id, s.id);
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>((n > 0).then(|| (Bytes::from(buf), file)))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

async fn report(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = staff_view(&state, &ctx, &id)?;
    let store = state.accounts.store.clone();
    let session = s.clone();
    let (entries, score, chain) = blocking(move || {
        let store = store.as_ref();
        let scope = session.scope();
        let mut entries = Vec::new();
        loop {
            let after = entries.last().map_or(0, |e: &protocol::Entry| e.seq);
            let page = protocol::since(store, &scope, after, 1000)?;
            if page.is_empty() {
                break;
            }
            entries.extend(page);
        }
        let score = sessions::score(store, &session)?;
        let chain = protocol::verify(store, &scope).map_err(|e| e.to_string());
        Ok::<_, crate::proctoring::ProctoringError>((entries, score, chain))
    })
    .await?;
    let prefix = s.object_prefix();
    let objects: Vec<(String, u64)> = state
        .objects
        .list(prefix.trim_end_matches('/'))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let page = reports::html(&ReportData {
        session: &s,
        host_title: &ctx.host.title,
        entries: &entries,
        score: &score,
        objects: &objects,
        chain,
        generated_at: now_secs(),
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page has no scripts; nothing may run in it.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
            ),
        ],
        page,
    )
        .into_response())
}

/// `GET /api/v1/reports/sessions.csv` filters; values are checked here so
/// that a bad one is named.
#[derive(Debug, Deserialize, Default)]
struct CsvQuery {
    from: Option<String>,
    to: Option<String>,
    status: Option<String>,
    score_min: Option<String>,
    score_max: Option<String>,
    /// Comma-separated; every one must be present.
    tags: Option<String>,
    proctor: Option<String>,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::new("invalid_field", format!("{field}: {message}"))
}

impl CsvQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let date = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| {
                    reports::parse_date(v)
                        .ok_or_else(|| invalid(field, "a date YYYY-MM-DD or Unix seconds"))
                })
                .transpose()
        };
        let score = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| invalid(field, "a number"))
                })
                .transpose()
        };
        let status = self
            .status
            .as_deref()
            .map(|v| {
                serde_json::from_value::<sessions::Status>(serde_json::Value::from(v)).map_err(
                    |_| invalid("status", "created, started, paused, stopped or concluded"),
                )
            })
            .transpose()?;
        Ok(Filter {
            from: date("from", &self.from)?,
            to: date("to", &self.to)?,
            status,
            score_min: score("score_min", &self.score_min)?,
            score_max: score("score_max", &self.score_max)?,
            tags: self
                .tags
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            proctor: self.proctor.as_ref().map(|p| p.trim().to_lowercase()),
        })
    }
}

async fn sessions_csv(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<CsvQuery>,
) -> Result<Response, ApiError> {
    let filter = q.filter()?;
    let who = ctx.who()?.clone();
    let store = state.accounts.store.clone();
    let host_id = ctx.host.id.clone();
    let text = blocking(move || {
        let store = store.as_ref();
        let mut found = sessions::all(store, &host_id)?;
        found.retain(|s| filter.matches(s));
        // Proctors export only the sessions they watch.
        if matches!(
            who,
            Principal::User {
                role: Role::Proctor,
                ..
            }
        ) {
            let groups = access::groups(store, &who);
            found.retain(|s| access::standing(s, &who, &groups).is_some());
        }
        found.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        reports::csv(&found).map_err(|e| ApiError::internal("internal", e))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sessions.csv\"",
            ),
        ],
        text,
    )
        .into_response())
}

/// A message in the outbox, as administrators see it (no body, no secret).
#[derive(Serialize)]
struct OutboxItem {
    id: String,
    session: String,
    event: String,
    url: String,
    attempts: u32,
    next_at_ms: u64,
    last_error: Option<String>,
    given_up: bool,
}

#[derive(Serialize)]
struct Outbox {
    webhook_url: Option<String>,
    allow_private: bool,
    messages: Vec<OutboxItem>,
}

async fn outbox(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Json<Outbox>, ApiError> {
    let store = state.accounts.store.clone();
    let host_id = ctx.host.id.clone();
    let (pending, dead) = blocking(move || {
        Ok::<_, crate::store::StoreError>((
            webhooks::pending(store.as_ref())?,
            webhooks::dead(store.as_ref())?,
        ))
    })
    .await?;
    let item = |m: webhooks::Message, given_up: bool| OutboxItem {
        id: m.id,
        session: m.session_id,
        event: m.event,
        url: m.url,
        attempts: m.attempts,
        next_at_ms: m.next_at_ms,
        last_error: m.last_error,
        given_up,
    };
    let messages = pending
        .into_iter()
        .map(|m| (m, false))
        .chain(dead.into_iter().map(|m| (m, true)))
        .filter(|(m, _)| m.host_id == host_id)
        .map(|(m, g)| item(m, g))
        .collect();
    Ok(Json(Outbox {
        webhook_url: ctx.host.webhook_url.clone(),
        allow_private: ctx.host.webhook_allow_private,
        messages,
    }))
}

#[derive(Serialize)]
struct NewSecret {
    secret: String,
}

async fn rotate_secret(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<(StatusCode, Json<NewSecret>), ApiError> {
    let secret = hosts::rotate_webhook_secret(
        state.accounts.store.as_ref(),
        ctx.who()?,
        &ctx.host.id,
        &ctx.client,
    )?;
    Ok((StatusCode::CREATED, Json(NewSecret { secret })))
}

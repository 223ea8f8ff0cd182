//! `GET /api/v1/instance/status`: what the manager needs to see at a glance —
//! version and uptime, how TLS is done, disk and database use, the TURN
//! relay, the recognition engine and its work, the live hub, the schema
//! version and the last backup. Read-only; nothing secret in it.

use super::{Access, Route, blocking, route};
use crate::diskspace::{DiskSpace, disk_space};
use crate::proctoring::snapshots;
use crate::turn::server::TurnServer;
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use http::Method;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

pub(super) fn routes() -> Vec<Route> {
    vec![route(
        Method::GET,
        "/api/v1/instance/status",
        Access::Manager,
        get(status),
    )]
}

/// Facts fixed at start that the status reports, with handles to the parts
/// it asks for live figures.
pub struct InstanceFacts {
    pub started: SystemTime,
    pub data_dir: PathBuf,
    /// Where objects live, e.g. `local /var/lib/invigil/objects`.
    pub objects: String,
    /// The embedded relay, `None` when TURN_URI names an external one.
    pub turn: Option<TurnServer>,
    /// The TURN URLs browsers are given when the relay is external.
    pub turn_external: Vec<String>,
    /// The `RECOGNIZER_URI` hosts, when work is spread over them.
    pub recognizers: Option<Arc<crate::recognize::Remote>>,
    pub recognition_threads: usize,
    pub recognition_queue: usize,
    pub snapshots: Arc<snapshots::Stats>,
}

#[derive(Serialize)]
struct Status {
    version: &'static str,
    started_unix: u64,
    uptime_secs: u64,
    tls: Tls,
    storage: Storage,
    turn: Turn,
    recognition: Recognition,
    hub: Hub,
    schema_version: u64,
    last_backup: Option<crate::backup::LastBackup>,
}

#[derive(Serialize)]
struct Tls {
    mode: &'static str,
    /// Unix time; `null` behind a reverse proxy.
    cert_expires_unix: Option<u64>,
}

#[derive(Serialize)]
struct Storage {
    data_dir: String,
    /// `null` when the file system cannot be asked.
    disk: Option<DiskSpace>,
    database_bytes: Option<u64>,
    objects: String,
}

#[derive(Serialize)]
struct Turn {
    /// "embedded" or "external".
    relay: &'static str,
    /// The embedded relay's port.
    port: Option<u16>,
    /// Relayed allocations now open on the embedded relay.
    allocations: Option<usize>,
    urls: Vec<String>,
}

#[derive(Serialize)]
struct Recognition {
    engine: &'static str,
    /// The `RECOGNIZER_URI` hosts: health, jobs in flight, last error.
    hosts: Vec<crate::recognize::HostStatus>,
    threads: usize,
    queue: usize,
    snapshots_queued: u64,
    snapshots_analyzed: u64,
    snapshots_skipped: u64,
    snapshots_failed: u64,
}

#[derive(Serialize)]
struct Hub {
    connections: usize,
    /// Frames waiting in connections' outboxes.
    queued: usize,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn status(State(state): State<Arc<WebState>>) -> Result<Json<Status>, ApiError> {
    let facts = &state.instance;
    let store = state.accounts.store.clone();
    let (schema_version, last_backup) = blocking(move || {
        Ok::<_, ApiError>((
            crate::store::schema_version(store.as_ref())?,
            crate::backup::last(store.as_ref()).map_err(|e| ApiError::internal("backup", e))?,
        ))
    })
    .await?;
    let data_dir = facts.data_dir.clone();
    let (disk, database_bytes) = tokio::task::spawn_blocking(move || {
        (
            disk_space(&data_dir).ok(),
            std::fs::metadata(data_dir.join(crate::store::DATABASE_FILE))
                .ok()
                .map(|m| m.len()),
        )
    })
    .await
    .unwrap_or((None, None));
    let conns = state.hub.stats();
    let stats = &facts.snapshots;
    Ok(Json(Status {
        version: state.version,
        started_unix: unix(facts.started),
        uptime_secs: facts.started.elapsed().map_or(0, |d| d.as_secs()),
        tls: Tls {
            mode: state.tls_mode,
            cert_expires_unix: state
                .certificate
                .as_ref()
                .and_then(|r| r.current_info())
                .map(|info| unix(info.not_after)),
        },
        storage: Storage {
            data_dir: facts.data_dir.display().to_string(),
            disk,
            database_bytes,
            objects: facts.objects.clone(),
        },
        turn: Turn {
            relay: if facts.turn.is_some() {
                "embedded"
            } else {
                "external"
            },
            port: facts.turn.as_ref().map(|t| t.local_addr().port()),
            allocations: facts.turn.as_ref().map(TurnServer::allocations),
            urls: facts.turn_external.clone(),
        },
        recognition: Recognition {
            engine: state.recognition.service.engine(),
            hosts: facts
                .recognizers
                .as_ref()
                .map(|r| r.status())
                .unwrap_or_default(),
            threads: facts.recognition_threads,
            queue: facts.recognition_queue,
            snapshots_queued: stats.queued.load(Ordering::Relaxed),
            snapshots_analyzed: stats.analyzed.load(Ordering::Relaxed),
            snapshots_skipped: stats.skipped.load(Ordering::Relaxed),
            snapshots_failed: stats.failed.load(Ordering::Relaxed),
        },
        hub: Hub {
            connections: conns.len(),
            queued: conns.iter().map(|c| c.queued).sum(),
        },
        schema_version,
        last_backup,
    }))
}

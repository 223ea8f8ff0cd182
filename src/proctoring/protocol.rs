//! The protocol (timeline) of a session: every status change, metric period,
//! chat message, face check and proctor action, hash-chained per session so
//! that an exported bundle can be verified offline.

use super::ProctoringError;
use super::metrics::{Averages, Metric};
use crate::store::chain::{self, ChainError};
use crate::store::{Store, StoreError, WriteTx, catalog};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Status,
    Metrics,
    Chat,
    FaceCheck,
    Action,
    /// A durably stored evidence chunk, or the removal of an incomplete upload.
    Upload,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Metrics => "metrics",
            Kind::Chat => "chat",
            Kind::FaceCheck => "face_check",
            Kind::Action => "action",
            Kind::Upload => "upload",
        }
    }
}

/// A protocol entry as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub scope: String,
    pub seq: u64,
    pub time: u64,
    pub author: String,
    pub kind: Kind,
    pub data: Value,
    #[serde(default)]
    pub attachments: Vec<String>,
    pub prev: String,
    pub hash: String,
}

/// Appends an entry to a session's chain inside the caller's transaction.
pub fn append(
    tx: &mut dyn WriteTx,
    scope: &str,
    time: u64,
    author: &str,
    kind: Kind,
    data: Value,
) -> Result<Entry, StoreError> {
    append_with(tx, scope, time, author, kind, data, Vec::new())
}

/// The same with attachments (object keys).
pub fn append_with(
    tx: &mut dyn WriteTx,
    scope: &str,
    time: u64,
    author: &str,
    kind: Kind,
    data: Value,
    attachments: Vec<String>,
) -> Result<Entry, StoreError> {
    let mut fields = Map::new();
    fields.insert("time".into(), time.into());
    fields.insert("author".into(), author.into());
    fields.insert("kind".into(), kind.as_str().into());
    fields.insert("data".into(), data);
    fields.insert("attachments".into(), attachments.into());
    let stored = chain::append(tx, catalog::PROTOCOL, scope, fields)?;
    serde_json::from_value(Value::Object(stored)).map_err(|e| StoreError::Codec {
        tree: catalog::PROTOCOL.name(),
        message: e.to_string(),
    })
}

/// Entries of a session, newest first, optionally of one kind, before a sequence number.
pub fn list(
    store: &dyn Store,
    scope: &str,
    kind: Option<Kind>,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<Entry>, ProctoringError> {
    let rows = store.read(|tx| {
        chain::newest(
            tx,
            catalog::PROTOCOL,
            scope,
            before,
            limit.clamp(1, 1000),
            |e| kind.is_none_or(|k| e.get("kind").and_then(Value::as_str) == Some(k.as_str())),
        )
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|m| serde_json::from_value(Value::Object(m)).ok())
        .collect())
}

/// Entries after `after` (oldest first): what a reconnecting client missed.
pub fn since(
    store: &dyn Store,
    scope: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Entry>, ProctoringError> {
    let rows = store.read(|tx| {
        chain::range(
            tx,
            catalog::PROTOCOL,
            scope,
            after + 1,
            u64::MAX,
            limit.clamp(1, 1000),
        )
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|m| serde_json::from_value(Value::Object(m)).ok())
        .collect())
}

/// Deletes a session's whole protocol chain (erasure); returns the entry count.
pub fn remove_in(tx: &mut dyn WriteTx, scope: &str) -> Result<u64, StoreError> {
    crate::store::chain::remove(tx, catalog::PROTOCOL, scope)
}

/// Verifies a session's chain.
pub fn verify(store: &dyn Store, scope: &str) -> Result<u64, ChainError> {
    store
        .read(|tx| Ok::<_, StoreError>(chain::verify(tx, catalog::PROTOCOL, scope)))
        .map_err(|e| ChainError::Store(e.to_string()))?
}

/// Rebuilds the per-metric averages from the stored metric periods, so the
/// live score can be checked against the evidence.
pub fn recompute_averages(store: &dyn Store, scope: &str) -> Result<Averages, ProctoringError> {
    let mut averages = Averages::default();
    let mut after = 0;
    loop {
        let page = since(store, scope, after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if e.kind == Kind::Metrics
                && let Some(values) = e.data.get("values")
                && let Ok(values) = serde_json::from_value::<BTreeMap<Metric, f64>>(values.clone())
            {
                averages.add_period(&values);
            }
        }
    }
    Ok(averages)
}

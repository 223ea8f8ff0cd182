//! What the simulated students were promised: every acknowledgement the
//! server gave, the time each operation took, every error; and the check,
//! after the run, that the server still has everything it acknowledged.

use crate::cli::bench_hostile::Latencies;
use crate::cli::hub_bench::client::Http;
use http::Method;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Operations, in the order they are reported.
pub(crate) const OPS: [&str; 8] = [
    "sign-in (JWT link)",
    "start session",
    "hub connect + join",
    "sample acknowledged",
    "chat acknowledged",
    "fan-out to proctor",
    "snapshot (create + send)",
    "recording chunk",
];
pub(crate) const SIGN_IN: usize = 0;
pub(crate) const START: usize = 1;
pub(crate) const JOIN: usize = 2;
pub(crate) const SAMPLE: usize = 3;
pub(crate) const CHAT: usize = 4;
pub(crate) const FAN_OUT: usize = 5;
pub(crate) const SNAPSHOT: usize = 6;
pub(crate) const CHUNK: usize = 7;

/// What one student's session was acknowledged.
#[derive(Default, Clone)]
pub(crate) struct Acked {
    /// Bytes of the recording the server acknowledged.
    pub offset: u64,
    pub snapshots: u64,
    pub samples: u64,
    /// Protocol sequence numbers of acknowledged chat messages.
    pub chat: Vec<u64>,
}

pub(crate) struct Ledger {
    pub students: Vec<Mutex<Acked>>,
    times: Vec<Mutex<Vec<u64>>>,
    errors: Vec<AtomicU64>,
    first_error: Mutex<BTreeMap<usize, String>>,
    /// Frames and requests sent whose answer never came (the connection
    /// broke first): not acknowledged, so not owed.
    pub unanswered: AtomicU64,
    /// A recording's offset found lower than acknowledged, seen while running.
    pub regressions: AtomicU64,
}

impl Ledger {
    pub fn new(students: usize) -> Ledger {
        Ledger {
            students: (0..students).map(|_| Mutex::default()).collect(),
            times: OPS.iter().map(|_| Mutex::default()).collect(),
            errors: OPS.iter().map(|_| AtomicU64::new(0)).collect(),
            first_error: Mutex::default(),
            unanswered: AtomicU64::new(0),
            regressions: AtomicU64::new(0),
        }
    }

    pub fn time(&self, op: usize, took: Duration) {
        self.time_ns(op, took.as_nanos() as u64);
    }

    pub fn time_ns(&self, op: usize, ns: u64) {
        if let Ok(mut t) = self.times[op].lock() {
            t.push(ns);
        }
    }

    pub fn error(&self, op: usize, what: impl std::fmt::Display) {
        self.errors[op].fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.entry(op).or_insert_with(|| what.to_string());
        }
    }

    pub fn acked(&self, student: usize, f: impl FnOnce(&mut Acked)) {
        if let Ok(mut a) = self.students[student].lock() {
            f(&mut a);
        }
    }

    /// Per operation: its name, latencies and its first error.
    pub fn report(&self) -> Vec<(&'static str, Latencies, Option<String>)> {
        let first = self
            .first_error
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        OPS.iter()
            .enumerate()
            .map(|(i, name)| {
                let times = self.times[i].lock().map(|t| t.clone()).unwrap_or_default();
                let errors = self.errors[i].load(Ordering::Relaxed) as usize;
                (*name, Latencies::of(times, errors), first.get(&i).cloned())
            })
            .collect()
    }

    pub fn totals(&self) -> Acked {
        let mut t = Acked::default();
        for s in &self.students {
            if let Ok(a) = s.lock() {
                t.offset += a.offset;
                t.snapshots += a.snapshots;
                t.samples += a.samples;
                t.chat.extend(&a.chat);
            }
        }
        t
    }
}

/// What the server no longer had of what it acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Missing {
    pub recording_bytes: u64,
    /// Times a recording's offset was found behind what had been
    /// acknowledged (the student then sent those bytes again, so the final
    /// check alone would not see the loss).
    pub regressions: u64,
    pub snapshots: u64,
    pub samples: u64,
    pub chat: u64,
    pub sessions: u64,
}

impl Missing {
    pub fn none(&self) -> bool {
        self.recording_bytes + self.regressions + self.snapshots + self.samples + self.chat == 0
    }

    fn add(&mut self, o: &Missing) {
        self.recording_bytes += o.recording_bytes;
        self.snapshots += o.snapshots;
        self.samples += o.samples;
        self.chat += o.chat;
        self.sessions += o.sessions;
    }
}

/// Checks one session through the API as its manager: the recording's
/// offset, the finished snapshots, the student's metric periods and every
/// acknowledged chat message in the protocol.
pub(crate) async fn check_session(
    http: &mut Http,
    manager: &str,
    session: &str,
    student: &str,
    acked: &Acked,
) -> anyhow::Result<Missing> {
    let uploads = http
        .expect(
            200,
            Method::GET,
            &format!("/api/v1/sessions/{session}/uploads"),
            Some(manager),
            None,
        )
        .await?
        .body;
    let list = uploads.as_array().cloned().unwrap_or_default();
    let recorded = list
        .iter()
        .filter(|u| u["kind"] == "webcam")
        .map(|u| u["offset"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let snapshots = list
        .iter()
        .filter(|u| u["kind"] == "snapshot" && u["complete"] == true)
        .count() as u64;
    let chat: BTreeSet<u64> = entries(http, manager, session, "chat")
        .await?
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    let samples = entries(http, manager, session, "metrics")
        .await?
        .iter()
        .filter(|e| e["author"] == student)
        .count() as u64;
    Ok(Missing {
        recording_bytes: acked.offset.saturating_sub(recorded),
        regressions: 0,
        snapshots: acked.snapshots.saturating_sub(snapshots),
        samples: acked.samples.saturating_sub(samples),
        chat: acked.chat.iter().filter(|s| !chat.contains(s)).count() as u64,
        sessions: 1,
    })
}

/// Every protocol entry of one kind, newest first, page by page.
async fn entries(
    http: &mut Http,
    manager: &str,
    session: &str,
    kind: &str,
) -> anyhow::Result<Vec<Value>> {
    const PAGE: usize = 1000;
    let mut all = Vec::new();
    let mut before = String::new();
    loop {
        let path = format!("/api/v1/sessions/{session}/protocol?kind={kind}&limit={PAGE}{before}");
        let page = http
            .expect(200, Method::GET, &path, Some(manager), None)
            .await?
            .body
            .as_array()
            .cloned()
            .unwrap_or_default();
        let last = page.iter().filter_map(|e| e["seq"].as_u64()).min();
        let full = page.len() == PAGE;
        all.extend(page);
        match last {
            Some(seq) if full => before = format!("&before={seq}"),
            _ => return Ok(all),
        }
    }
}

/// Sums the per-session checks.
pub(crate) fn sum(parts: impl IntoIterator<Item = Missing>) -> Missing {
    let mut total = Missing::default();
    for p in parts {
        total.add(&p);
    }
    total
}

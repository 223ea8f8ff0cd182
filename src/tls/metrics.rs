//! Certificate events for `/metrics`: every replacement attempt by source and
//! result, and when the served certificate expires. The web layer registers
//! these into its registry; TLS code only counts.

use std::sync::atomic::AtomicI64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Counters shared by the ACME client, the file watcher and the local CA.
/// Cheap to clone; all clones count together.
#[derive(Clone, Default)]
pub struct TlsMetrics {
    updates: Family<Labels, Counter>,
    expires: Gauge<i64, AtomicI64>,
}

impl TlsMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metrics to `registry` (prefixed there, e.g. `invigil_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_certificate_updates",
            "Attempts to replace the served certificate, by source (acme, files, local-ca) and result",
            self.updates.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served certificate expires, seconds since the Unix epoch",
            self.expires.clone(),
        );
    }

    pub fn success(&self, source: &'static str) {
        self.count(source, "success");
    }

    pub fn failure(&self, source: &'static str) {
        self.count(source, "failure");
    }

    /// How often `source` failed so far (for tests and logs).
    pub fn failures(&self, source: &'static str) -> u64 {
        self.updates
            .get_or_create(&vec![("source", source), ("result", "failure")])
            .get()
    }

    pub fn set_expiry(&self, not_after: SystemTime) {
        let secs = not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.expires.set(secs);
    }

    fn count(&self, source: &'static str, result: &'static str) {
        self.updates
            .get_or_create(&vec![("source", source), ("result", result)])
            .inc();
    }
}

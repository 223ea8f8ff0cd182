//! Prometheus metrics: the registry, HTTP request counters, and `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

type Labels = Vec<(&'static str, String)>;

/// The instance's metrics. Cheap to clone; all clones count into one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<Labels, Counter>,
    duration: Histogram,
    started: Instant,
    uptime: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn new(version: &str, tls_mode: &str) -> Self {
        Self::with(version, tls_mode, |_| {})
    }

    /// Like [`Metrics::new`], letting lower modules add their own metrics.
    pub fn with(version: &str, tls_mode: &str, register: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("invigil");
        register(&mut registry);
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method and status",
            requests.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers",
            duration.clone(),
        );
        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&vec![
            ("version", version.to_string()),
            ("tls", tls_mode.to_string()),
        ])
        .set(1);
        registry.register("build_info", "Version and TLS mode of this instance", info);
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "uptime_seconds",
            "Seconds since the server started",
            uptime.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            duration,
            started: Instant::now(),
            uptime,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, method: &http::Method, status: http::StatusCode, took: Duration) {
        self.requests
            .get_or_create(&vec![
                ("method", method.as_str().to_string()),
                ("status", status.as_u16().to_string()),
            ])
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_in_text_format() {
        let m = Metrics::new("9.9.9", "self-signed");
        m.observe(
            &http::Method::GET,
            http::StatusCode::OK,
            Duration::from_millis(3),
        );
        m.observe(
            &http::Method::GET,
            http::StatusCode::OK,
            Duration::from_millis(5),
        );
        let text = m.render();
        assert!(
            text.contains("invigil_http_requests_total{method=\"GET\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("invigil_build_info{version=\"9.9.9\",tls=\"self-signed\"} 1"));
        assert!(text.contains("invigil_http_request_duration_seconds_count 2"));
        assert!(text.ends_with("# EOF\n"));
    }
}

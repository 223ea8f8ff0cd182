//! Quotas (allocations per user and per client address, bandwidth per
//! allocation and in total, rate of 401 answers) and the relay's counters.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Limits; 0 means unlimited for the bandwidth fields.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    pub allocations_per_user: usize,
    /// Per client IP: a school's NAT puts many students behind one address.
    pub allocations_per_ip: usize,
    pub total_allocations: usize,
    /// Bytes per second relayed per allocation, both directions together.
    pub allocation_bps: u64,
    /// Bytes per second relayed by the whole server.
    pub total_bps: u64,
    /// 401 answers per client IP per second; beyond it requests are dropped.
    pub unauthorized_per_ip: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            allocations_per_user: 64,
            allocations_per_ip: 1024,
            total_allocations: 8192,
            allocation_bps: 0,
            total_bps: 0,
            unauthorized_per_ip: 20,
        }
    }
}

/// A token bucket with a one-second burst.
#[derive(Debug)]
pub struct Bucket {
    rate: u64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: u64) -> Self {
        Self {
            rate,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens if there are enough; a zero rate never limits.
    pub fn take(&mut self, n: usize, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.rate as f64);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// Counts 401 answers per client IP in one-second windows.
#[derive(Debug, Default)]
pub struct StormGuard {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl StormGuard {
    /// Whether another 401 may be sent to `ip` now.
    pub fn allow(&self, ip: IpAddr, limit: u32) -> bool {
        let now = Instant::now();
        let Ok(mut w) = self.windows.lock() else {
            return false;
        };
        if w.len() > 10_000 {
            // Bounded memory under a spoofed-source flood.
            w.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(1));
        }
        let entry = w.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(1) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= limit
    }
}

/// The relay's counters; the web layer's registry reads them.
#[derive(Debug, Default)]
pub struct TurnMetrics {
    pub allocations_active: AtomicI64,
    pub allocations_total: AtomicU64,
    pub bytes_to_peers: AtomicU64,
    pub bytes_to_clients: AtomicU64,
    pub packets_to_peers: AtomicU64,
    pub packets_to_clients: AtomicU64,
    /// Permissions, channels and packets refused by the relay policy.
    pub policy_denials: AtomicU64,
    /// Requests refused for quota (486) or dropped for bandwidth.
    pub quota_denials: AtomicU64,
    pub unauthorized: AtomicU64,
    /// Requests dropped without an answer (malformed, 401 storms).
    pub dropped: AtomicU64,
}

impl TurnMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One labelled series of a counter family: label name, label value (both
/// empty for an unlabelled counter) and the counter.
type Series<'a> = (&'a str, &'a str, &'a AtomicU64);

/// Read at each scrape straight from the counters, so that the relay's hot
/// path touches nothing but its atomics.
impl Collector for TurnMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let get = Self::get;
        let gauge = ConstGauge::new(self.allocations_active.load(Ordering::Relaxed));
        gauge.encode(encoder.encode_descriptor(
            "turn_allocations_active",
            "TURN allocations now open",
            None,
            gauge.metric_type(),
        )?)?;
        let counters: [(&str, &str, &[Series]); 5] = [
            (
                "turn_allocations",
                "TURN allocations made",
                &[("", "", &self.allocations_total)],
            ),
            (
                "turn_relayed_bytes",
                "Bytes relayed, by direction (to peers, to clients)",
                &[
                    ("direction", "to_peers", &self.bytes_to_peers),
                    ("direction", "to_clients", &self.bytes_to_clients),
                ],
            ),
            (
                "turn_relayed_packets",
                "Packets relayed, by direction (to peers, to clients)",
                &[
                    ("direction", "to_peers", &self.packets_to_peers),
                    ("direction", "to_clients", &self.packets_to_clients),
                ],
            ),
            (
                "turn_denials",
                "Requests and packets refused, by reason: the relay policy (403, never sent) or a quota (486, bandwidth)",
                &[
                    ("reason", "policy", &self.policy_denials),
                    ("reason", "quota", &self.quota_denials),
                ],
            ),
            (
                "turn_unauthorized",
                "TURN requests answered 401 (missing or wrong credentials)",
                &[("", "", &self.unauthorized)],
            ),
        ];
        for (name, help, series) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (key, value, counter) in series {
                let c = ConstCounter::new(get(counter));
                if key.is_empty() {
                    c.encode(family)?;
                    break;
                }
                c.encode(family.encode_family(&[(*key, *value)])?)?;
            }
        }
        let dropped = ConstCounter::new(get(&self.dropped));
        dropped.encode(encoder.encode_descriptor(
            "turn_dropped",
            "STUN/TURN messages dropped unanswered (malformed, 401 storms)",
            None,
            MetricType::Counter,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_and_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000);
        assert!(b.take(600, t0));
        assert!(!b.take(600, t0));
        assert!(b.take(600, t0 + Duration::from_millis(300)));
        let mut free = Bucket::new(0);
        assert!(free.take(usize::MAX, t0));
    }

    #[test]
    fn counters_are_exported_in_text_format() {
        let m = std::sync::Arc::new(TurnMetrics::default());
        m.allocations_active.store(2, Ordering::Relaxed);
        TurnMetrics::add(&m.bytes_to_peers, 1200);
        TurnMetrics::add(&m.policy_denials, 3);
        TurnMetrics::add(&m.unauthorized, 1);
        let mut r = prometheus_client::registry::Registry::with_prefix("invigil");
        r.register_collector(Box::new(m));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "invigil_turn_allocations_active 2",
            "invigil_turn_allocations_total 0",
            "invigil_turn_relayed_bytes_total{direction=\"to_peers\"} 1200",
            "invigil_turn_relayed_bytes_total{direction=\"to_clients\"} 0",
            "invigil_turn_denials_total{reason=\"policy\"} 3",
            "invigil_turn_denials_total{reason=\"quota\"} 0",
            "invigil_turn_unauthorized_total 1",
            "invigil_turn_dropped_total 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn storm_guard_limits_per_ip() {
        let g = StormGuard::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| g.allow(a, 3)));
        assert!(!g.allow(a, 3));
        assert!(g.allow(b, 3));
    }
}

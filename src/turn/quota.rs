//! Quotas (allocations per user and per client address, bandwidth per
//! allocation and in total, rate of 401 answers) and the relay's counters.

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
    fn storm_guard_limits_per_ip() {
        let g = StormGuard::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| g.allow(a, 3)));
        assert!(!g.allow(a, 3));
        assert!(g.allow(b, 3));
    }
}

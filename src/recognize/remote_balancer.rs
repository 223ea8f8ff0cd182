//! Which recognizer host gets the next job: the healthy host with the
//! fewest jobs in flight, ties taken in turn (round robin), skipping hosts
//! that asked to be left alone (429 with `Retry-After`) and hosts that
//! failed (connection error, 5xx) until a health check finds them up again.
//!
//! Pure bookkeeping, no I/O: the caller reports what happened and the
//! health checks report what they saw, so the policy is tested on its own.

use std::time::{Duration, Instant};

/// What became of a job sent to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The host answered (any answer that is not its own failure).
    Answered,
    /// 429: the host is full; it is skipped for `retry_after`.
    Busy { retry_after: Duration },
    /// Connection refused or reset, timeout, 5xx, a redirect: the host is
    /// down until a health check sees it answer.
    Failed(String),
}

/// One host as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostStatus {
    /// `host:port`.
    pub host: String,
    pub healthy: bool,
    pub in_flight: usize,
    /// Whether the host is resting after a 429 at `now`.
    pub busy: bool,
    /// The last failure, while the host is unhealthy.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Host {
    name: String,
    healthy: bool,
    in_flight: usize,
    busy_until: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct Balancer {
    hosts: Vec<Host>,
    /// Where the round robin resumes among equally loaded hosts.
    next: usize,
}

impl Balancer {
    /// Every host starts healthy, so the first jobs do not wait for the
    /// first health check.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Balancer {
            hosts: names
                .into_iter()
                .map(|name| Host {
                    name,
                    healthy: true,
                    in_flight: 0,
                    busy_until: None,
                    last_error: None,
                })
                .collect(),
            next: 0,
        }
    }

    pub fn name(&self, host: usize) -> &str {
        &self.hosts[host].name
    }

    /// The host for a job that has not yet been tried on `tried`, counted as
    /// in flight there; `None` when no host can take it now.
    pub fn pick(&mut self, now: Instant, tried: &[usize]) -> Option<usize> {
        let n = self.hosts.len();
        let chosen = (0..n)
            .map(|k| (self.next + k) % n)
            .filter(|i| !tried.contains(i))
            .filter(|&i| {
                let h = &self.hosts[i];
                h.healthy && h.busy_until.is_none_or(|until| until <= now)
            })
            // min_by_key keeps the first of equals: the round robin order.
            .min_by_key(|&i| self.hosts[i].in_flight)?;
        self.hosts[chosen].in_flight += 1;
        self.next = (chosen + 1) % n;
        Some(chosen)
    }

    /// Records how a job picked for `host` ended.
    pub fn finish(&mut self, host: usize, outcome: Outcome, now: Instant) {
        let h = &mut self.hosts[host];
        h.in_flight = h.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Answered => {
                h.healthy = true;
                h.last_error = None;
            }
            Outcome::Busy { retry_after } => h.busy_until = Some(now + retry_after),
            Outcome::Failed(why) => {
                h.healthy = false;
                h.last_error = Some(why);
            }
        }
    }

    /// Records a health check; returns whether the host's health changed.
    pub fn checked(&mut self, host: usize, result: Result<(), String>) -> bool {
        let h = &mut self.hosts[host];
        let was = h.healthy;
        match result {
            Ok(()) => {
                h.healthy = true;
                h.last_error = None;
            }
            Err(why) => {
                h.healthy = false;
                h.last_error = Some(why);
            }
        }
        was != h.healthy
    }

    pub fn status(&self, now: Instant) -> Vec<HostStatus> {
        self.hosts
            .iter()
            .map(|h| HostStatus {
                host: h.name.clone(),
                healthy: h.healthy,
                in_flight: h.in_flight,
                busy: h.busy_until.is_some_and(|until| until > now),
                last_error: h.last_error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Balancer {
        Balancer::new(["a", "b", "c"].map(String::from))
    }

    #[test]
    fn equal_hosts_take_turns() {
        let mut b = three();
        let now = Instant::now();
        let mut order = Vec::new();
        for _ in 0..6 {
            let h = b.pick(now, &[]).expect("a host");
            order.push(h);
            b.finish(h, Outcome::Answered, now);
        }
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn the_least_loaded_host_is_chosen() {
        let mut b = three();
        let now = Instant::now();
        assert_eq!(b.pick(now, &[]), Some(0));
        assert_eq!(b.pick(now, &[]), Some(1));
        assert_eq!(b.pick(now, &[]), Some(2));
        // All have one job; b finishes, so it is the least loaded.
        b.finish(1, Outcome::Answered, now);
        assert_eq!(b.pick(now, &[]), Some(1));
        let s = b.status(now);
        assert_eq!(s.iter().map(|h| h.in_flight).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn a_failed_host_is_skipped_until_a_check_sees_it_up() {
        let mut b = three();
        let now = Instant::now();
        let h = b.pick(now, &[]).expect("host");
        b.finish(h, Outcome::Failed("connection refused".into()), now);
        // The job goes to the next host, never back to the one that failed.
        assert_eq!(b.pick(now, &[h]), Some(1));
        b.finish(1, Outcome::Answered, now);
        for _ in 0..4 {
            let got = b.pick(now, &[]).expect("host");
            assert_ne!(got, 0);
            b.finish(got, Outcome::Answered, now);
        }
        let s = &b.status(now)[0];
        assert!(!s.healthy);
        assert_eq!(s.last_error.as_deref(), Some("connection refused"));
        assert!(!b.checked(0, Err("still down".into())), "no change");
        assert!(b.checked(0, Ok(())), "back up");
        let picks: Vec<_> = (0..3)
            .map(|_| {
                let h = b.pick(now, &[]).expect("host");
                b.finish(h, Outcome::Answered, now);
                h
            })
            .collect();
        assert!(picks.contains(&0), "{picks:?}");
        assert!(b.checked(0, Err("gone".into())));
        assert!(!b.status(now)[0].healthy);
    }

    #[test]
    fn a_busy_host_rests_for_its_retry_after() {
        let mut b = Balancer::new(["a", "b"].map(String::from));
        let now = Instant::now();
        let h = b.pick(now, &[]).expect("host");
        b.finish(
            h,
            Outcome::Busy {
                retry_after: Duration::from_secs(2),
            },
            now,
        );
        assert!(b.status(now)[h].healthy, "busy is not down");
        assert!(b.status(now)[h].busy);
        for _ in 0..3 {
            let got = b.pick(now + Duration::from_secs(1), &[]).expect("host");
            assert_ne!(got, h);
            b.finish(got, Outcome::Answered, now);
        }
        // After Retry-After it takes work again.
        let later = now + Duration::from_secs(2);
        let picks: Vec<_> = (0..2)
            .map(|_| {
                let got = b.pick(later, &[]).expect("host");
                b.finish(got, Outcome::Answered, later);
                got
            })
            .collect();
        assert!(picks.contains(&h), "{picks:?}");
    }

    #[test]
    fn no_host_left_is_none() {
        let mut b = Balancer::new(["a", "b"].map(String::from));
        let now = Instant::now();
        assert_eq!(b.pick(now, &[0, 1]), None, "every host tried");
        b.checked(0, Err("down".into()));
        b.checked(1, Err("down".into()));
        assert_eq!(b.pick(now, &[]), None, "every host down");
        assert!(Balancer::new(Vec::new()).pick(now, &[]).is_none());
    }
}

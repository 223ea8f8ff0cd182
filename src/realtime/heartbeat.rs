//! Heartbeats drive `n1` (no network): a student who is not heard from for a
//! whole sampling period, over any of their sockets or none, gets a period
//! with `n1 = 100` recorded by invigil; periods the student reports
//! themselves carry `n1 = 0`. So the `n1` average is the share of periods
//! without a connection.

use super::RealtimeError;
use super::hub::{Hub, RoomKey, lock};
use crate::app::tasks::Shutdown;
use crate::proctoring::ProctoringError;
use crate::proctoring::metrics::Metric;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the watches are looked at; well below the shortest period (1 s).
const TICK: Duration = Duration::from_millis(250);

/// One student's session as the heartbeat sees it.
#[derive(Debug, Clone)]
pub struct Watch {
    period: Duration,
    last_heard: Instant,
    /// The end of the last period already recorded as missed.
    recorded_until: Instant,
}

impl Watch {
    pub fn new(period: Duration, now: Instant) -> Self {
        Self {
            period,
            last_heard: now,
            recorded_until: now,
        }
    }

    pub fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// Whether a whole period without a word has passed since the later of
    /// the last heartbeat and the last missed period; each is counted once.
    pub fn due(&mut self, now: Instant) -> bool {
        let from = self.last_heard.max(self.recorded_until);
        if now.saturating_duration_since(from) >= self.period {
            self.recorded_until = from + self.period;
            true
        } else {
            false
        }
    }
}

impl Hub {
    /// The heartbeat task: records missed periods until shutdown.
    pub async fn run_heartbeats(self: Arc<Self>, signal: Shutdown) {
        let stop = signal.requested();
        tokio::pin!(stop);
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.check_heartbeats().await,
                () = &mut stop => return,
            }
        }
    }

    async fn check_heartbeats(&self) {
        let now = Instant::now();
        let due: Vec<RoomKey> = lock(&self.watches)
            .iter_mut()
            .filter_map(|(k, w)| w.due(now).then(|| k.clone()))
            .collect();
        for key in due {
            let values = BTreeMap::from([(Metric::N1, 100.0)]);
            match self.record_period(&key, "invigil".into(), values).await {
                Ok(_) => tracing::debug!(session = key.1, "no heartbeat for a period: n1"),
                // Paused or not started yet: no period to record.
                Err(RealtimeError::Proctoring(ProctoringError::IllegalMove {
                    from: "created" | "paused",
                    ..
                })) => {}
                // Over or gone: nothing more to watch.
                Err(RealtimeError::Proctoring(
                    ProctoringError::IllegalMove { .. } | ProctoringError::NotFound(_),
                )) => {
                    lock(&self.watches).remove(&key);
                }
                Err(e) => tracing::warn!(session = key.1, "recording n1 failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_silent_period_counts_once_and_a_heartbeat_restarts_the_clock() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = Watch::new(s(10), t0);
        w.heard(t0 + s(5));
        assert!(!w.due(t0 + s(14)), "heard 9 s ago");
        assert!(w.due(t0 + s(15)), "a whole period of silence");
        assert!(!w.due(t0 + s(16)), "the same period is not counted twice");
        assert!(w.due(t0 + s(26)), "the next silent period");
        w.heard(t0 + s(27));
        assert!(!w.due(t0 + s(36)));
        assert!(w.due(t0 + s(37)));
        // A late-arriving older heartbeat does not move the clock back.
        w.heard(t0 + s(1));
        assert!(!w.due(t0 + s(40)));
    }
}

//! A token bucket per connection: bursts (a wall joining 30 sessions, a
//! burst of ICE candidates) pass, floods get error frames, and a client that
//! keeps flooding is disconnected.

use std::time::Instant;

/// What to do with one incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Refuse this frame with an error frame.
    Refuse,
    /// Refused too often: close the connection.
    Close,
}

pub struct Bucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    strikes: u32,
    max_strikes: u32,
    last: Instant,
}

impl Bucket {
    pub fn new(burst: u32, per_second: u32, max_strikes: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            strikes: 0,
            max_strikes,
            last: now,
        }
    }

    pub fn take(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= self.burst {
            // A client that calmed down starts with a clean record.
            self.strikes = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        self.strikes += 1;
        if self.strikes >= self.max_strikes {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_pass_floods_are_refused_then_closed_and_calm_resets() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5, 2, 3, t0);
        for _ in 0..5 {
            assert_eq!(b.take(t0), Verdict::Accept);
        }
        assert_eq!(b.take(t0), Verdict::Refuse);
        assert_eq!(b.take(t0), Verdict::Refuse);
        // Half a second at 2/s gives one token back.
        assert_eq!(b.take(t0 + Duration::from_millis(500)), Verdict::Accept);
        assert_eq!(b.take(t0 + Duration::from_millis(500)), Verdict::Close);
        // After a full refill the strikes are forgotten.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.take(later), Verdict::Accept);
        for _ in 0..4 {
            assert_eq!(b.take(later), Verdict::Accept);
        }
        assert_eq!(b.take(later), Verdict::Refuse);
    }
}

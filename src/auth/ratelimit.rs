//! In-memory rate limits for sign-in attempts, per client address and per
//! account: a fixed window per key, small enough to keep for every caller.

use std::collections::HashMap;
use std::sync::Mutex;

/// Attempts allowed per window, per client address (a school behind one NAT
/// address signs in many students at 09:00, so this is generous).
pub const PER_CLIENT: u32 = 300;
/// Attempts allowed per window for one account, whatever the address.
pub const PER_ACCOUNT: u32 = 20;
/// The window length in seconds.
pub const WINDOW: u64 = 60;
/// Above this many tracked keys, stale windows are dropped.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub struct Limiter {
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

impl Limiter {
    /// Counts one attempt for `key`; returns the seconds to wait when the
    /// limit is exceeded.
    pub fn hit(&self, key: &str, limit: u32, now: u64) -> Result<(), u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > MAX_KEYS {
            windows.retain(|_, (start, _)| now < *start + WINDOW);
        }
        let entry = windows.entry(key.to_string()).or_insert((now, 0));
        if now >= entry.0 + WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > limit {
            Err((entry.0 + WINDOW).saturating_sub(now).max(1))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_limits_and_resets() {
        let l = Limiter::default();
        for _ in 0..3 {
            assert!(l.hit("ip:1", 3, 100).is_ok());
        }
        assert_eq!(l.hit("ip:1", 3, 110), Err(50));
        assert!(l.hit("ip:2", 3, 110).is_ok());
        assert!(l.hit("ip:1", 3, 160).is_ok());
    }
}

//! Registrations per `software_id` in a sliding window, per instance.
//!
//! Hand-written (a few lines) rather than `governor`, because the time comes
//! from the caller like everywhere in the protocol code, which keeps it
//! testable without sleeping.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

pub(crate) struct RateLimiter {
    limit: usize,
    window: i64,
    seen: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: u32, window: i64) -> RateLimiter {
        RateLimiter {
            limit: limit as usize,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds until a slot frees)` when `key` used up its window.
    pub(crate) fn check(&self, key: &str, now: i64) -> Result<(), i64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget keys whose whole window has passed, so the map stays small.
        seen.retain(|_, q| q.back().is_some_and(|t| now - t < self.window));
        match seen.get_mut(key) {
            Some(q) => {
                while q.front().is_some_and(|t| now - t >= self.window) {
                    q.pop_front();
                }
                if q.len() >= self.limit {
                    Err(q.front().map_or(1, |t| (t + self.window - now).max(1)))
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Counts one registration of `key`.
    pub(crate) fn record(&self, key: &str, now: i64) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_owned())
            .or_default()
            .push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_within_the_window() {
        let l = RateLimiter::new(2, 100);
        assert!(l.check("a", 0).is_ok());
        l.record("a", 0);
        l.record("a", 10);
        assert_eq!(l.check("a", 20), Err(80));
        assert!(l.check("b", 20).is_ok(), "other software is not affected");
        assert!(l.check("a", 100).is_ok(), "the first slot freed");
    }
}

//! Failing fast while PostgreSQL is unreachable.
//!
//! A pool checkout waits up to [`CONNECT_TIMEOUT`](crate::conn::CONNECT_TIMEOUT)
//! for a connection, on a thread of the blocking pool, which the server keeps
//! about as large as the database pool. While the database is gone every
//! checkout waits that long, so under load the requests queue for those
//! threads and wait far longer than the timeout: in `make reliability` (40
//! concurrent clients per instance, PostgreSQL stopped for 10 s), answers took
//! as long as the outage itself. Once a checkout or a query has found the
//! database unreachable, callers are therefore told `Unavailable` at once,
//! without taking a thread, while one caller at a time (the probe) still
//! goes to the pool; the first that gets an answer from the database ends it.
//! A connection the pool has re-established meanwhile (it keeps one idle)
//! also lets callers through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the database answered last, and whether a probe is out.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    down: AtomicBool,
    probing: AtomicBool,
}

/// Leave to go to the pool. A probe's ends the probe when dropped.
#[must_use]
pub(crate) struct Admitted {
    reach: Arc<Reach>,
    probe: bool,
}

impl Admitted {
    /// See [`Reach::record`].
    pub(crate) fn record(&self, unreachable: bool) {
        self.reach.record(unreachable);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.probe {
            self.reach.probing.store(false, Ordering::Release);
        }
    }
}

impl Reach {
    /// Leave to go to the pool, or `None`: answer `Unavailable` now.
    /// `idle` counts the pool's idle connections (asked only while the
    /// database is down: it takes the pool's lock).
    pub(crate) fn admit(self: &Arc<Self>, idle: impl FnOnce() -> u32) -> Option<Admitted> {
        if !self.down.load(Ordering::Acquire) || idle() > 0 {
            return Some(Admitted {
                reach: self.clone(),
                probe: false,
            });
        }
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Admitted {
                reach: self.clone(),
                probe: true,
            })
    }

    /// The outcome of an admitted call: `unreachable` when the checkout or
    /// the query found no database (`StoreError::Unavailable`).
    pub(crate) fn record(&self, unreachable: bool) {
        if self.down.swap(unreachable, Ordering::AcqRel) != unreachable {
            if unreachable {
                tracing::warn!(
                    "the database is unreachable: requests are answered 503 at once until it answers"
                );
            } else {
                tracing::info!("the database answers again");
            }
        }
    }

    #[cfg(test)]
    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everyone_goes_while_the_database_answers() {
        let r = Arc::new(Reach::default());
        let a = r.admit(|| 0);
        let b = r.admit(|| 0);
        assert!(a.is_some() && b.is_some());
    }

    #[test]
    fn while_it_is_down_one_probe_goes_and_the_rest_are_refused() {
        let r = Arc::new(Reach::default());
        r.record(true);
        assert!(r.is_down());
        let probe = r.admit(|| 0).expect("the probe");
        assert!(
            r.admit(|| 0).is_none(),
            "a second caller while the probe is out"
        );
        assert!(r.admit(|| 0).is_none());
        // An idle connection the pool re-established lets callers through.
        assert!(r.admit(|| 1).is_some());
        drop(probe);
        let again = r
            .admit(|| 0)
            .expect("the next probe once the first is back");
        assert!(r.admit(|| 0).is_none());
        drop(again);
    }

    #[test]
    fn an_answer_ends_the_outage() {
        let r = Arc::new(Reach::default());
        r.record(true);
        let probe = r.admit(|| 0).unwrap();
        r.record(false);
        drop(probe);
        assert!(!r.is_down());
        let (a, b) = (r.admit(|| 0), r.admit(|| 0));
        assert!(a.is_some() && b.is_some());
    }
}

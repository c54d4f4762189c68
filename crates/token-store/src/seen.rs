//! The single-use values (client assertion and DPoP `jti`s, request
//! objects, registrations, hook results) of a store that has claimed its
//! SQLite database ([`Store::claim_database`](crate::Store::claim_database)):
//! checked in the writer thread's memory, kept on disk in an append-only
//! log.
//!
//! Why: these values are the clients' choice and random, so a unique index
//! over them (`replay_cache`, which PostgreSQL and unclaimed SQLite stores
//! use) takes each new value on a random page of an index far larger than
//! the writer's page cache. Each insert read a page back, wrote it to the
//! WAL at commit and had the checkpoint copy it again: a handful of system
//! calls per value, on a host where each is dear. The log's rows (`seq`,
//! fingerprint, expiry) land at the right edge of its two B-trees instead,
//! as the values the server mints do.
//!
//! Why this is exact:
//! - Every write of a SQLite store runs on its one writer thread, and a
//!   claimed database has one server process. [`Seen`] lives in that
//!   thread's local storage, installed by the claim; nothing else records a
//!   value while it exists.
//! - [`Seen`] holds what has committed. What the batch in flight recorded is
//!   `pending`; a value found there is confirmed in the log (a savepoint may
//!   have rolled its row back), so a value is refused exactly when its row
//!   exists unexpired, as with the unique index.
//! - After every batch the writer reads back the rows it committed
//!   ([`settle`]). Should that read fail, every pending value counts as
//!   committed: at worst a value whose write was rolled back is refused
//!   until it expires, never a used one accepted.
//! - The claim loads every unexpired row of the log, and of `replay_cache`,
//!   before the writer takes its next write.
//!
//! A value is known by its fingerprint, the first 8 bytes of
//! SHA-256(kind NUL value), of which memory keeps 56 bits. Two values
//! sharing those can only make the second look used (a refusal, never an
//! acceptance); with half a million live values the chance per value
//! recorded is about 10⁻¹¹, and aiming at another client's value takes
//! some 2⁵⁶ hashes.
//!
//! Memory: 8 bytes a live value (56 bits of the fingerprint and the expiry
//! modulo 2²⁰ s), in 4 096 sorted buckets that grow by a quarter at a time;
//! expired values go in a sweep every [`SWEEP_EVERY`] seconds. A server at
//! 5 000 token requests a second (two values each, kept 61–70 s) holds
//! about 6 MB.

use std::cell::RefCell;
use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use crate::error::Fail;
use crate::schema::{replay_cache, replay_log};

/// How often, in seconds of the callers' `now`, expired values are dropped.
const SWEEP_EVERY: i64 = 10;

const BUCKET_BITS: u32 = 12;

thread_local! {
    /// The writer thread's set, once its store has claimed the database.
    static SEEN: RefCell<Option<Seen>> = const { RefCell::new(None) };
}

/// The fingerprint of `value` of `kind` (see the module documentation).
pub(crate) fn fingerprint(kind: &str, value: &str) -> u64 {
    let digest = oauth_core::secret::sha256(&[kind.as_bytes(), &[0], value.as_bytes()]);
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Runs `f` on this thread's set; `None` when it has none (PostgreSQL, an
/// unclaimed store, or not the writer thread).
pub(crate) fn with<T>(f: impl FnOnce(&mut Seen) -> T) -> Option<T> {
    SEEN.with(|seen| seen.borrow_mut().as_mut().map(f))
}

/// Loads the unexpired values recorded on disk into this (the writer)
/// thread's set, unless it has one already or the schema has no log yet
/// (a claim comes before the migrations; `Store::migrate` calls this again).
pub(crate) fn install(conn: &mut SqliteConnection, now: i64) -> Result<(), Fail> {
    if with(|_| ()).is_some() {
        return Ok(());
    }
    let logs: i64 = diesel::sql_query(
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'replay_log'",
    )
    .get_result::<Count>(conn)?
    .n;
    if logs == 0 {
        return Ok(());
    }
    let mut seen = Seen::new(now);
    let last: Option<i64> = replay_log::table
        .select(diesel::dsl::max(replay_log::seq))
        .get_result(conn)?;
    seen.next_seq = last.map_or(1, |s| s + 1);
    seen.batch_start = seen.next_seq;
    let logged: Vec<(i64, i64)> = replay_log::table
        .filter(replay_log::expires_at.gt(now))
        .select((replay_log::fingerprint, replay_log::expires_at))
        .load(conn)?;
    for (fp, exp) in logged {
        seen.insert(fp as u64, exp);
    }
    // Values an unclaimed store recorded in the indexed table.
    let cached: Vec<(String, String, i64)> = replay_cache::table
        .filter(replay_cache::expires_at.gt(now))
        .select((
            replay_cache::kind,
            replay_cache::value,
            replay_cache::expires_at,
        ))
        .load(conn)?;
    for (kind, value, exp) in cached {
        seen.insert(fingerprint(&kind, &value), exp);
    }
    SEEN.with(|s| *s.borrow_mut() = Some(seen));
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// After a batch (or a lone write) has committed or failed: the values it
/// recorded that are on disk now join the set. Runs on the writer thread
/// before it takes its next write.
pub(crate) fn settle(conn: &mut SqliteConnection) {
    with(|seen| {
        if !seen.pending.is_empty() {
            let committed: QueryResult<Vec<(i64, i64)>> = replay_log::table
                .filter(replay_log::seq.ge(seen.batch_start))
                .select((replay_log::fingerprint, replay_log::expires_at))
                .load(conn);
            match committed {
                Ok(rows) => {
                    for (fp, exp) in rows {
                        seen.insert(fp as u64, exp);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read back the recorded single-use values; keeping all of the batch's");
                    for (fp, exp) in std::mem::take(&mut seen.pending) {
                        seen.insert(fp, exp);
                    }
                }
            }
            seen.pending.clear();
        }
        seen.batch_start = seen.next_seq;
    });
}

/// Records `(fp, expires_at)` values in order until one is in use, whose
/// index it returns; the rows before it stay, for the caller's savepoint to
/// undo (as `repo::replay::record_until_used`).
pub(crate) fn record_until_used(
    conn: &mut SqliteConnection,
    seen: &mut Seen,
    values: impl Iterator<Item = (u64, i64)>,
    now: i64,
) -> Result<Option<usize>, Fail> {
    for (i, (fp, exp)) in values.enumerate() {
        if seen.in_use(fp, now) || (seen.is_pending(fp) && logged_in_batch(conn, seen, fp, now)?) {
            return Ok(Some(i));
        }
        let seq = seen.next_seq;
        seen.next_seq += 1;
        diesel::insert_into(replay_log::table)
            .values((
                replay_log::seq.eq(seq),
                replay_log::fingerprint.eq(fp as i64),
                replay_log::expires_at.eq(exp),
            ))
            .execute(conn)?;
        seen.pending.push((fp, exp));
    }
    Ok(None)
}

/// Whether the batch in flight holds `fp` unexpired (its row may have been
/// rolled back with a savepoint since it went into `pending`).
fn logged_in_batch(
    conn: &mut SqliteConnection,
    seen: &Seen,
    fp: u64,
    now: i64,
) -> Result<bool, Fail> {
    let n: i64 = replay_log::table
        .filter(replay_log::seq.ge(seen.batch_start))
        .filter(replay_log::fingerprint.eq(fp as i64))
        .filter(replay_log::expires_at.gt(now))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Expiries are kept in an entry's low 20 bits, modulo 2²⁰ s (12 days);
/// a value is live while its expiry is less than half that ahead.
const EXP_BITS: u32 = 20;
const EXP_MASK: u64 = (1 << EXP_BITS) - 1;
const HALF_CYCLE: u64 = 1 << (EXP_BITS - 1);
/// Values whose expiry is this far (3 days) or further from the set's
/// clock, ahead or behind, are kept whole in `far` (none in practice), so
/// that the clock may step by up to this much without a value's expiry
/// being misread.
const NEAR: i64 = 1 << (EXP_BITS - 2);

/// `fp`'s bucket, and its entry with the expiry bits cleared: the 44 bits
/// of `fp` below the bucket's 12, at the top (56 bits of `fp` in all).
fn split(fp: u64) -> (usize, u64) {
    (
        (fp >> (64 - BUCKET_BITS)) as usize,
        (fp << BUCKET_BITS) & !EXP_MASK,
    )
}

/// Seconds `entry` has to live at `now`, 0 once expired.
fn remaining(entry: u64, now: i64) -> u64 {
    // `now as u64` keeps the low bits of a negative `now` as well.
    let ahead = entry.wrapping_sub(now as u64) & EXP_MASK;
    if ahead < HALF_CYCLE { ahead } else { 0 }
}

/// The committed single-use values, by fingerprint (see the module
/// documentation).
#[derive(Debug)]
pub(crate) struct Seen {
    /// Sorted entries (see [`split`]), at most one a fingerprint.
    buckets: Box<[Vec<u64>]>,
    far: HashMap<u64, i64>,
    /// The latest `now` a caller gave; expiries are read against it.
    now: i64,
    last_sweep: i64,
    /// The `seq` of the next row of the log.
    next_seq: i64,
    /// The first `seq` of the batch in flight.
    batch_start: i64,
    /// What the batch in flight recorded.
    pending: Vec<(u64, i64)>,
}

impl Seen {
    pub(crate) fn new(now: i64) -> Seen {
        Seen {
            buckets: (0..1 << BUCKET_BITS).map(|_| Vec::new()).collect(),
            far: HashMap::new(),
            now,
            last_sweep: now,
            next_seq: 1,
            batch_start: 1,
            pending: Vec::new(),
        }
    }

    /// Values held (expired ones count until the next sweep).
    pub(crate) fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum::<usize>() + self.far.len()
    }

    /// Values recorded by the batch in flight, not yet settled.
    pub(crate) fn unsettled(&self) -> usize {
        self.pending.len()
    }

    /// Whether `fp` is held unexpired at `now`. Sweeps first when due.
    pub(crate) fn in_use(&mut self, fp: u64, now: i64) -> bool {
        self.now = now;
        self.sweep_if_due(now);
        if self.far.get(&fp).is_some_and(|&exp| exp > now) {
            return true;
        }
        let (b, key) = split(fp);
        let bucket = &self.buckets[b];
        let i = bucket.partition_point(|&e| e < key);
        bucket
            .get(i)
            .is_some_and(|&e| e & !EXP_MASK == key && remaining(e, now) > 0)
    }

    fn is_pending(&self, fp: u64) -> bool {
        self.pending.iter().any(|&(p, _)| p == fp)
    }

    /// Holds `fp` until `expires_at`; a value held already keeps the later
    /// of its two expiries.
    pub(crate) fn insert(&mut self, fp: u64, expires_at: i64) {
        let now = self.now;
        let ahead = expires_at.saturating_sub(now);
        if !(-NEAR..NEAR).contains(&ahead) {
            let exp = self.far.entry(fp).or_insert(expires_at);
            *exp = (*exp).max(expires_at);
            return;
        }
        let (b, key) = split(fp);
        let entry = key | (expires_at as u64 & EXP_MASK);
        let bucket = &mut self.buckets[b];
        let i = bucket.partition_point(|&e| e < key);
        if let Some(held) = bucket.get_mut(i)
            && *held & !EXP_MASK == key
        {
            if (remaining(*held, now) as i64) < ahead {
                *held = entry;
            }
            return;
        }
        if bucket.len() == bucket.capacity() {
            // A quarter more, not double: the buckets are most of the
            // memory, and each holds a few hundred values at most.
            bucket.reserve_exact((bucket.len() / 4).max(4));
        }
        bucket.insert(i, entry);
    }

    fn sweep_if_due(&mut self, now: i64) {
        if now >= self.last_sweep.saturating_add(SWEEP_EVERY) || now < self.last_sweep {
            self.sweep(now);
        }
    }

    /// Drops every value expired at `now`, and memory the buckets no longer
    /// need.
    pub(crate) fn sweep(&mut self, now: i64) {
        self.now = now;
        self.last_sweep = now;
        for bucket in &mut *self.buckets {
            bucket.retain(|&e| remaining(e, now) > 0);
            let kept = bucket.len();
            if bucket.capacity() > kept + kept / 2 + 8 {
                bucket.shrink_to(kept + kept / 4);
            }
        }
        self.far.retain(|_, &mut exp| exp > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn values_are_held_until_they_expire() {
        let mut seen = Seen::new(NOW);
        let (a, b) = (fingerprint("dpop", "k:1"), fingerprint("dpop", "k:2"));
        assert_ne!(a, b);
        assert_ne!(a, fingerprint("client_assertion", "k:1"), "kinds apart");
        seen.insert(a, NOW + 60);
        assert!(seen.in_use(a, NOW));
        assert!(seen.in_use(a, NOW + 59));
        assert!(!seen.in_use(a, NOW + 60), "expired at its expiry");
        assert!(!seen.in_use(b, NOW));
        // Recorded again after expiry: held again, until the new expiry.
        seen.insert(a, NOW + 200);
        assert!(seen.in_use(a, NOW + 199));
        assert_eq!(seen.len(), 1);
        // Far from the set's clock, ahead and behind: kept whole.
        seen.insert(b, NOW + (1 << 40));
        assert!(seen.in_use(b, NOW + (1 << 39)));
        let c = fingerprint("dpop", "k:3");
        seen.insert(c, NOW - (1 << 40));
        assert!(seen.in_use(c, NOW - (1 << 40) - 1));
    }

    /// Expiries are kept modulo 2²⁰ s: a clock stepping back or forth by
    /// days must not make a used value look expired.
    #[test]
    fn a_clock_step_of_days_does_not_misread_an_expiry() {
        const DAY: i64 = 86_400;
        let mut seen = Seen::new(NOW);
        let (a, b, c, d) = (
            fingerprint("dpop", "a"),
            fingerprint("dpop", "b"),
            fingerprint("dpop", "c"),
            fingerprint("dpop", "d"),
        );
        seen.insert(a, NOW + 60);
        // The clock steps back two days (and the set sweeps): still used.
        assert!(seen.in_use(a, NOW - 2 * DAY));
        // Recorded while the clock is behind, with an ordinary lifetime.
        seen.insert(b, NOW - 2 * DAY + 60);
        assert!(seen.in_use(b, NOW - 2 * DAY + 59));
        // Back to the right time: each expires at its own expiry.
        assert!(seen.in_use(a, NOW + 59));
        assert!(!seen.in_use(a, NOW + 60));
        assert!(!seen.in_use(b, NOW), "b expired two days ago");
        // Expired when recorded: never held as used.
        seen.insert(c, NOW);
        assert!(!seen.in_use(c, NOW));
        // Four days ahead (past NEAR): kept whole, used until then.
        seen.insert(d, NOW + 4 * DAY);
        assert!(seen.in_use(d, NOW + 4 * DAY - 1));
        assert!(!seen.in_use(d, NOW + 4 * DAY));
        // Five days on, a sweep has run and nothing wraps around into use.
        assert!(!seen.in_use(a, NOW + 5 * DAY));
        assert_eq!(seen.len(), 0);
    }

    #[test]
    fn the_sweep_drops_expired_values_and_their_memory() {
        let mut seen = Seen::new(NOW);
        let fps: Vec<u64> = (0..200_000)
            .map(|i| fingerprint("dpop", &format!("jti-{i}")))
            .collect();
        for (i, &fp) in fps.iter().enumerate() {
            seen.insert(fp, NOW + if i % 2 == 0 { 30 } else { 90 });
        }
        assert_eq!(seen.len(), 200_000);
        let before: usize = seen.buckets.iter().map(Vec::capacity).sum();
        assert!(
            before < 200_000 * 5 / 4 + 4 * 4096,
            "growth by a quarter: {before}"
        );
        // A check sweeps when one is due (every SWEEP_EVERY seconds).
        assert!(seen.in_use(fps[0], NOW + 29));
        assert_eq!(seen.len(), 200_000, "nothing expired at NOW + 29");
        assert!(!seen.in_use(fps[0], NOW + 30));
        assert!(seen.in_use(fps[1], NOW + 39));
        assert_eq!(seen.len(), 100_000, "the sweep at NOW + 39 dropped half");
        let after: usize = seen.buckets.iter().map(Vec::capacity).sum();
        assert!(after < before * 3 / 4, "{after} of {before}");
        seen.sweep(NOW + 90);
        assert_eq!(seen.len(), 0);
        assert!(fps.iter().all(|&fp| !seen.in_use(fp, NOW + 90)));
    }
}

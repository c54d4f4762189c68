//! SQLite group commit: one writer thread owns the write connection and
//! commits the writes that queued up while it was busy as one transaction.
//!
//! SQLite has a single writer at a time, and each commit appends every page
//! it touched to the WAL. Under load, requests write the same few pages (the
//! replay cache, the token table and their indexes) over and over; committing
//! them together writes each page once per batch instead of once per request,
//! and the callers wait on a channel instead of hopping through the blocking
//! pool and a pool checkout.
//!
//! Each write keeps its own outcome: a write that must be all-or-nothing
//! runs in `Db::write_tx`, which is a savepoint inside a batch, and a single
//! statement that fails (a replayed `jti`'s unique violation) is undone by
//! SQLite alone, so a failing write is rolled back while the others commit.
//! A caller hears `Ok` only after the batch's `COMMIT` succeeded; if the
//! `COMMIT` fails, every write of the batch fails with it and none is kept.
//! Writes of a batch run in arrival order and see each other, exactly as if
//! they had committed one after the other.
//!
//! A lone write (the common case at low load) runs as before, in its own
//! transaction, with no batch around it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use oauth_core::storage::{StoreError, StoreResult};

use crate::conn::{AnyConnection, Manager};
use crate::error::{Fail, from_diesel, one_line};

/// At most this many writes share one transaction, so one batch cannot hold
/// the write lock for long.
const MAX_BATCH: usize = 128;

/// Hands a finished write its outcome once the batch has committed (`None`)
/// or failed (`Some`).
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// One write: run on the connection (or told why it cannot run), it returns
/// how to deliver its result.
type Job = Box<dyn FnOnce(Result<&mut AnyConnection, &StoreError>) -> Deliver + Send>;

/// The sending side of the writer thread. The thread ends when the last
/// `Writer` (every clone of the store) is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Counters>,
    /// Dropped with the last writer: the checkpointer then stops.
    _checkpointer: Arc<mpsc::Sender<()>>,
}

/// How often the WAL is copied back into the database file, on a
/// connection of its own, so that the writer's checkpoints (see
/// [`writer_loop`]) find little left to copy and sync. It also bounds how
/// long a commit stays unsynced when the writer goes idle: with
/// `synchronous = NORMAL` a commit is not fsynced, a checkpoint syncs the
/// WAL first, and the writer checkpoints only after a batch. An idle pass
/// is a few reads of the WAL index.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Copies the WAL back into the database (`PRAGMA wal_checkpoint(PASSIVE)`,
/// which never blocks readers or the writer) on a connection of its own,
/// until the store is dropped. The writer still checkpoints between its
/// transactions, because only then can SQLite rewind the WAL (a passive
/// checkpoint racing a busy writer never catches up, and the WAL, its index
/// and the memory mapping them grew for as long as the load lasted).
fn checkpointer_loop(pool: &r2d2::Pool<Manager>, stop: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_INTERVAL) {
        if let Ok(mut conn) = pool.get() {
            checkpoint(&mut conn);
        }
    }
}

/// How many writes ran, in how many transactions.
#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    commits: AtomicU64,
}

/// Group-commit figures of a SQLite store since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes run (each a caller's unit of work).
    pub writes: u64,
    /// Transactions they ran in; `writes / commits` is the mean batch.
    pub commits: u64,
}

impl Writer {
    /// Starts the writer thread on `pool` (a one-connection pool, which
    /// reconnects when the connection breaks).
    /// `checkpoint` is the checkpointer's own one-connection pool.
    pub(crate) fn start(
        pool: r2d2::Pool<Manager>,
        checkpoint: r2d2::Pool<Manager>,
    ) -> StoreResult<Writer> {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer_loop(&checkpoint, &stop_rx))
            .map_err(|e| StoreError::Backend(format!("cannot start the WAL checkpointer: {e}")))?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(Counters::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(&pool, &rx, &counters))
            .map_err(|e| StoreError::Backend(format!("cannot start the database writer: {e}")))?;
        Ok(Writer {
            jobs,
            stats,
            _checkpointer: Arc::new(stop_tx),
        })
    }

    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            writes: self.stats.writes.load(Ordering::Relaxed),
            commits: self.stats.commits.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` on the write connection and waits, without blocking the
    /// async thread, for it to be committed. `after` runs on the writer
    /// thread once the batch has committed or failed, before the caller
    /// hears the outcome, and whether or not the caller is still waiting.
    pub(crate) async fn submit<T, F, A>(&self, f: F, after: A) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, Fail> + Send + 'static,
        A: FnOnce() + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn| {
            let result: StoreResult<T> = match conn {
                Ok(conn) => f(conn).map_err(StoreError::from),
                Err(e) => Err(e.clone()),
            };
            Box::new(move |commit_failed: Option<&StoreError>| {
                let result = match (result, commit_failed) {
                    (Ok(_), Some(e)) => Err(e.clone()),
                    (result, _) => result,
                };
                after();
                // The caller may have gone away (request cancelled); the
                // write stands regardless.
                let _ = tx.send(result);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend("the database writer has stopped".into()))?;
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "database write failed: the writer aborted it".into(),
            ))
        })
    }
}

/// How often, at most, the writer checkpoints the WAL between its
/// transactions (see [`writer_loop`]). Measured in interleaved runs
/// (release build, 64 connections, half of the saturated rate offered,
/// three to six runs each): against SQLite's automatic checkpoint in the
/// commit, p99 of token requests 9.8–13.5 → 6.3–7.0 ms, of PAR 10.2–12.7 →
/// 6.0–7.5 ms, of introspection 7.6–8.6 → 5.2–7.2 ms; saturated session
/// flows +4.7 %. Every 100 ms was worse than the automatic checkpoint
/// (token p99 13 ms), every 25 ms in between, every 3 ms no better than
/// 10 ms and 3 % slower on introspection: small checkpoints keep the WAL
/// short and in cache.
const WRITER_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Runs the writes as they come, batching those that queued up meanwhile.
///
/// The writer connection does not checkpoint inside its commits (SQLite's
/// automatic checkpoint runs in the `COMMIT` that takes the WAL past 1000
/// pages, so that batch's callers waited for the copy and the fsync).
/// Instead, once a batch's callers have their answers, the writer
/// checkpoints if [`WRITER_CHECKPOINT_INTERVAL`] has passed since its last
/// one. A checkpoint between the writer's transactions is what lets SQLite
/// rewind the WAL (see [`checkpointer_loop`]), so under sustained load the
/// WAL stays bounded as before.
fn writer_loop(pool: &r2d2::Pool<Manager>, rx: &mpsc::Receiver<Job>, stats: &Counters) {
    let mut last_checkpoint = std::time::Instant::now();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        stats
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        let mut conn = match pool.get() {
            Ok(c) => c,
            Err(e) => {
                let err = StoreError::Unavailable(format!(
                    "no database connection: {}",
                    one_line(&e.to_string())
                ));
                for job in batch {
                    job(Err(&err))(None);
                }
                continue;
            }
        };
        if batch.len() == 1 {
            let job = batch.pop().expect("one job");
            if let Ok(deliver) = catch_unwind(AssertUnwindSafe(|| job(Ok(&mut *conn)))) {
                deliver(None);
            } else {
                tracing::error!("a database write panicked; its connection is discarded");
                force_rollback(&mut conn);
            }
        } else {
            run_batch(&mut conn, batch);
        }
        // Before the next write: what this one recorded is in memory now
        // (see `seen`).
        crate::seen::settle(sqlite(&mut conn));
        if last_checkpoint.elapsed() >= WRITER_CHECKPOINT_INTERVAL {
            checkpoint(&mut conn);
            last_checkpoint = std::time::Instant::now();
        }
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: copies what no reader still needs,
/// never waits.
fn checkpoint(conn: &mut AnyConnection) {
    use diesel::RunQueryDsl;
    if let AnyConnection::Sqlite(c) = conn
        && let Err(e) = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").execute(c)
    {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
}

/// Runs `batch` as one `BEGIN IMMEDIATE … COMMIT`.
fn run_batch(conn: &mut AnyConnection, batch: Vec<Job>) {
    if let Err(e) = AnsiTransactionManager::begin_transaction_sql(sqlite(conn), "BEGIN IMMEDIATE") {
        let err = from_diesel(e);
        for job in batch {
            job(Err(&err))(None);
        }
        return;
    }
    let mut delivers = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    // No savepoint per write: a write that must be all-or-nothing runs in
    // `Db::write_tx`, a savepoint here; a single statement that fails is
    // undone by SQLite alone. Other multi-statement writes keep what they
    // did before failing, exactly as when each write committed on its own.
    let mut panicked = false;
    for job in jobs.by_ref() {
        match catch_unwind(AssertUnwindSafe(|| job(Ok(&mut *conn)))) {
            Ok(deliver) => delivers.push(deliver),
            // The job's result channel was dropped with it: its caller
            // hears that the write was aborted.
            Err(_) => {
                panicked = true;
                break;
            }
        }
    }
    let outcome = if panicked {
        // diesel's transaction depth is unknown now: roll everything back;
        // the pool then discards the connection (see `force_rollback`).
        tracing::error!("a database write panicked; its batch is rolled back");
        force_rollback(conn);
        let err = StoreError::Backend("database write failed: its batch was aborted".into());
        for job in jobs {
            delivers.push(job(Err(&err)));
        }
        Err(err)
    } else {
        AnsiTransactionManager::commit_transaction(sqlite(conn)).map_err(|e| {
            let _ = AnsiTransactionManager::rollback_transaction(sqlite(conn));
            from_diesel(e)
        })
    };
    let failed = outcome.err();
    if let Some(e) = &failed {
        tracing::warn!(error = %e, "a batch of database writes failed");
    }
    for deliver in delivers {
        deliver(failed.as_ref());
    }
}

/// The writer thread serves SQLite only (`Store::connect`).
fn sqlite(conn: &mut AnyConnection) -> &mut diesel::SqliteConnection {
    match conn {
        AnyConnection::Sqlite(c) => c,
        AnyConnection::Postgresql(_) => unreachable!("the group-commit writer is SQLite-only"),
    }
}

/// After a panic: roll back whatever is open. diesel still counts the
/// transaction as open, so the pool discards this connection when it is
/// returned and opens a fresh one.
fn force_rollback(conn: &mut AnyConnection) {
    let _ = sqlite(conn).batch_execute("ROLLBACK");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::db::with_conn;
    use crate::schema::replay_cache as rc;
    use diesel::prelude::*;

    fn insert(value: String) -> impl FnOnce(&mut AnyConnection) -> Result<(), Fail> {
        move |conn| {
            with_conn!(conn, c => diesel::insert_into(rc::table)
                .values((rc::kind.eq("test"), rc::value.eq(&value), rc::expires_at.eq(1)))
                .execute(c)?);
            Ok(())
        }
    }

    async fn stored(store: &Store, value: &str) -> bool {
        let value = value.to_owned();
        store
            .run(move |conn| {
                let n: i64 = with_conn!(conn, c => rc::table
                    .filter(rc::value.eq(&value))
                    .count()
                    .get_result(c)?);
                Ok(n == 1)
            })
            .await
            .unwrap()
    }

    /// A write that panics takes its batch down with it: every caller of
    /// the batch hears an error and none of the batch is kept, while
    /// everything reported `Ok` is stored; the writer goes on afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_panicking_write_aborts_only_its_batch() {
        let (dir, store) = temp_store().await;
        let writer = store.writer.clone().expect("SQLite has a writer");
        for round in 0..10 {
            let tasks: Vec<_> = (0..24)
                .map(|i| {
                    let w = writer.clone();
                    tokio::spawn(async move {
                        let value = format!("r{round}-{i}");
                        let r = if i == 12 {
                            w.submit(
                                |_| -> Result<(), Fail> { panic!("a bug in a write") },
                                || {},
                            )
                            .await
                        } else {
                            w.submit(insert(value.clone()), || {}).await
                        };
                        (value, r)
                    })
                })
                .collect();
            for t in tasks {
                let (value, r) = t.await.unwrap();
                if value.ends_with("-12") {
                    assert!(r.is_err(), "{value}: the panicking write reported success");
                    continue;
                }
                assert_eq!(r.is_ok(), stored(&store, &value).await, "{value}: {r:?}");
            }
        }
        writer.submit(insert("after".into()), || {}).await.unwrap();
        assert!(stored(&store, "after").await);
        drop((writer, store));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `after` runs once the write has committed, before its caller hears
    /// of it, and also when the caller stopped waiting (its write stands).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_runs_once_committed_even_for_a_caller_gone_away() {
        let (dir, store) = temp_store().await;
        let writer = store.writer.clone().expect("SQLite has a writer");

        // Seen by `after`: was the write committed when it ran?
        let (tx, rx) = std::sync::mpsc::channel::<bool>();
        let probe = store.clone();
        let check = move |value: &'static str| {
            let (probe, tx) = (probe.clone(), tx.clone());
            move || {
                // On the writer thread, after the commit: another
                // connection already sees the row.
                let n: i64 = probe
                    .pool
                    .get()
                    .map(|mut conn| {
                        with_conn!(&mut **conn, c => rc::table
                            .filter(rc::value.eq(value))
                            .count()
                            .get_result(c)
                            .unwrap())
                    })
                    .unwrap();
                tx.send(n == 1).unwrap();
            }
        };
        writer
            .submit(insert("kept".into()), check("kept"))
            .await
            .unwrap();
        assert!(rx.recv().unwrap(), "after ran before the commit");

        // The caller is dropped right after handing the write over.
        let submit = writer.submit(insert("cancelled".into()), check("cancelled"));
        let cancelled = tokio::time::timeout(std::time::Duration::ZERO, submit).await;
        drop(cancelled);
        let seen = tokio::task::spawn_blocking(move || {
            rx.recv_timeout(std::time::Duration::from_secs(10))
        })
        .await
        .unwrap();
        assert_eq!(seen, Ok(true), "after must run for a caller gone away");
        assert!(stored(&store, "cancelled").await);
        drop((writer, store));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A migrated SQLite store in a directory of its own.
    async fn temp_store() -> (std::path::PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!(
            "strongroom-writer-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}/db.sqlite", dir.display()), 2).unwrap();
        store.migrate().await.unwrap();
        (dir, store)
    }

    fn unique() -> u64 {
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}

//! Strongroom persistence: every storage contract of
//! [`oauth_core::storage`] on SQLite (embedded default) or PostgreSQL, with
//! diesel and an r2d2 pool.
//!
//! The backend is chosen once, from the URL scheme, in [`Store::connect`].
//! Queries are written once against the shared schema and compiled for both
//! backends; the few differences (transaction start, row locks) live in
//! `db.rs`. Database calls are synchronous, so every repository method runs
//! on tokio's blocking pool and never stalls the async executor.
//!
//! One-time use (codes, pushed requests, replay-cache entries, CIBA requests,
//! interactions, refresh rotation) is a single conditional write whose
//! affected-row count decides the winner, or an insert that a unique key
//! refuses: correct across several server instances sharing one PostgreSQL.
//!
//! Referential rule: a grant must be stored before any code, token or CIBA
//! decision that names it (foreign keys enforce it); grants are never
//! deleted, only revoked.

mod client_cache;
mod conn;
mod db;
mod error;
mod models;
mod reach;
mod repo;
mod schema;
mod seen;
mod timing;
mod writer;
mod written;

use std::sync::{Arc, Mutex, PoisonError};

pub use conn::init_openssl;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use oauth_core::storage::ReplayEntry;
pub use oauth_core::storage::{StoreError, StoreResult};
pub use repo::admin::{AuditEntry, AuditFilter, ChangeOutcome, ClientChange};
pub use repo::{AuthorizeReads, TokenReads};
pub use timing::{DB_QUERY_DURATION, OPERATIONS};
pub use writer::WriteStats;

use crate::conn::{AnyConnection, Backend, CONNECT_TIMEOUT, Manager, SqlitePragmas, Target};
use crate::error::{Fail, one_line};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Key of the PostgreSQL advisory lock that serialises migrations when
/// several instances start at once (held for the run's transaction). A
/// migration applied by hand takes it too (docs/operations.md §5).
pub const MIGRATION_LOCK_KEY: i64 = 0x5354_524f_4e47; // "STRONG"

/// How long a spent authorization code is kept after it expires, so that a
/// late replay is still recognised as reuse (RFC 6749 §4.1.2) and the grant
/// revoked, rather than answered as an unknown code.
pub const SPENT_CODE_RETENTION_SECS: i64 = 24 * 60 * 60;

/// Rows deleted per write by the purges ([`Store::purge_stale`]).
pub const PURGE_BATCH: usize = 500;

/// The pause between two batches of a purge: the writer's time goes to
/// requests at least as much as to the sweep (a batch of 500 expired rows
/// took about 1 ms here), and a sweep still deletes about 100 000 rows a
/// second, far above what a server's load makes expire.
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(3);

/// The database behind every repository trait. Cloning is cheap (the pool is
/// reference-counted).
#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<Manager>,
    /// Where writes run. SQLite has one writer at a time: on SQLite this is
    /// a one-connection pool owned by the writer thread ([`writer`]), so
    /// writers queue for it instead of colliding on the database lock and
    /// sleeping in SQLite's busy handler (1, 2, 5, … 100 ms back-off), and
    /// the writes that queued up are committed together. Reads stay
    /// concurrent (WAL). On PostgreSQL, the same pool as reads.
    writer_pool: r2d2::Pool<Manager>,
    /// SQLite's group-commit writer; `None` on PostgreSQL.
    writer: Option<writer::Writer>,
    backend: Backend,
    /// Single-use entries that this handle's next write records first, in
    /// the same transaction ([`Store::carrying_replay`]).
    pending: Option<Arc<Mutex<Option<PendingReplay>>>>,
    /// An admin audit line that this handle's next write appends, in the
    /// same transaction ([`Store::carrying_audit`]).
    audit: Option<Arc<Mutex<Option<AuditEntry>>>>,
    /// Registrations answered from memory, once this process holds the
    /// SQLite database alone ([`Store::claim_database`]); `None` otherwise.
    clients: Option<Arc<client_cache::ClientCache>>,
    /// The SQLite database file (`None` on PostgreSQL).
    sqlite_path: Option<String>,
    /// The claim's lock, held for as long as any clone of the store lives.
    claim: Option<Arc<std::fs::File>>,
    /// PostgreSQL: whether the database answered last ([`reach`]); `None`
    /// on SQLite, a file that cannot go away (its busy errors are
    /// contention, not an outage).
    reach: Option<Arc<reach::Reach>>,
}

/// See [`Store::carrying_replay`].
struct PendingReplay {
    entries: Vec<ReplayEntry>,
    now: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.name())
            .field("state", &self.pool.state())
            .finish()
    }
}

/// See [`Store::pool_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open, idle or in use.
    pub connections: u32,
    pub idle_connections: u32,
    /// The most the pool opens.
    pub max_size: u32,
}

/// Rows removed by [`Store::purge_stale`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub tokens: u64,
    pub authorization_codes: u64,
    pub pushed_requests: u64,
    pub ciba_requests: u64,
    pub ciba_deliveries: u64,
    pub sessions: u64,
    pub interactions: u64,
}

impl Store {
    /// Opens a pool of at most `max_pool_size` connections.
    ///
    /// `url` is `sqlite://relative/path.db`, `sqlite:///absolute/path.db`,
    /// `postgres://…` or `postgresql://…`; other schemes are refused. One
    /// connection is made before returning so that a wrong or unreachable
    /// database fails here, within about five seconds, with the driver's
    /// message on one line (passwords removed). Blocks the calling thread for
    /// that long at most; call it at start-up.
    ///
    /// # Errors
    ///
    /// `Backend` for an unsupported URL or a zero pool size, `Unavailable`
    /// when the database cannot be reached or opened.
    pub fn connect(url: &str, max_pool_size: u32) -> StoreResult<Store> {
        let target = Target::parse(url)?;
        if max_pool_size == 0 {
            return Err(StoreError::Backend(
                "the database pool size must be at least 1".into(),
            ));
        }
        // A direct attempt reports the driver's own error at once; r2d2
        // would retry until its timeout and then report only the last one.
        target.establish().map(drop).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to {}: {}",
                target.display,
                one_line(&e.to_string())
            ))
        })?;
        let backend = target.backend;
        let display = target.display.clone();
        let build = |size: u32, target: Target, cache_kib: u32, auto_checkpoint: bool| {
            r2d2::Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                // A SQLite connection is a file handle and cannot go stale;
                // PostgreSQL connections idle for a while are checked before
                // use (one `SELECT 1`, see `conn::TRUSTED_AFTER_USE`) so a
                // server restarted meanwhile costs no failed request.
                .test_on_check_out(backend == Backend::Postgres)
                .connection_timeout(CONNECT_TIMEOUT)
                .connection_customizer(Box::new(SqlitePragmas {
                    cache_kib,
                    auto_checkpoint,
                }))
                .error_handler(Box::new(conn::TracingErrors))
                .build(Manager { target })
                .map_err(|e| {
                    StoreError::Unavailable(format!(
                        "cannot connect to {display}: {}",
                        one_line(&e.to_string())
                    ))
                })
        };
        let sqlite_path = target.conninfo.clone();
        let (pool, writer_pool, writer) = match backend {
            Backend::Sqlite => {
                // Page caches: the writer's stays warm (it is the only
                // writer, so nothing else invalidates it). A reader's is
                // emptied whenever it begins a read after a commit by
                // another connection (SQLite's WAL rule), which under load
                // is nearly every read: it holds one query's pages, and a
                // larger limit only let it keep more memory as the
                // database grew. The checkpointer copies WAL frames
                // without it. The writer's is 1 MiB since its hot pages
                // are the right edges of the indexes: the clients' random
                // `jti`s, which took a page each, are checked in memory
                // once the database is claimed (`seen`).
                let writer_pool = build(1, target.clone(), 1024, false)?;
                let checkpoint_pool = build(1, target.clone(), 64, true)?;
                let pool = build(max_pool_size, target, 512, true)?;
                let writer = writer::Writer::start(writer_pool.clone(), checkpoint_pool)?;
                (pool, writer_pool, Some(writer))
            }
            Backend::Postgres => {
                let pool = build(max_pool_size, target, 0, true)?;
                (pool.clone(), pool, None)
            }
        };
        Ok(Store {
            pool,
            writer_pool,
            writer,
            backend,
            pending: None,
            audit: None,
            clients: None,
            claim: None,
            sqlite_path: (backend == Backend::Sqlite).then_some(sqlite_path),
            reach: (backend == Backend::Postgres).then(Default::default),
        })
    }

    /// A handle on the same database (and the same registrations in memory)
    /// that does not keep the claim ([`Store::claim_database`]) alive: for
    /// the server's background tasks, so that the claim ends with the
    /// server's own handles however late those tasks wind down.
    #[must_use]
    pub fn unclaimed(&self) -> Store {
        let mut handle = self.clone();
        handle.claim = None;
        handle
    }

    /// Claims the database for this process, as a server does before it
    /// serves: on SQLite, takes an exclusive lock on `<database>.server.lock`
    /// beside the database file (held until the last clone of this store is
    /// dropped) and from then on answers registrations from memory
    /// ([`client_cache`]), which is exact only because every change to them
    /// now goes through this store. Commands that only read, or write
    /// nothing but keys and the schema (`strongroom keys`, `migrate`), need
    /// no claim and can run beside the server. On PostgreSQL several
    /// instances share the database by design: nothing is claimed and
    /// nothing cached.
    ///
    /// While another holder has the lock (a server still shutting down), it
    /// tries again every 50 ms for up to `wait`, without blocking the thread.
    ///
    /// # Errors
    ///
    /// `Unavailable` when another process (or another store in this one)
    /// still holds the claim after `wait`; `Backend` when the lock file
    /// cannot be opened.
    pub async fn claim_database(&mut self, wait: std::time::Duration) -> StoreResult<()> {
        let Some(db) = &self.sqlite_path else {
            return Ok(());
        };
        if self.claim.is_some() {
            return Ok(());
        }
        let path = format!("{db}.server.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Backend(format!("{path}: {e}")))?;
        let since = std::time::Instant::now();
        let mut logged = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if since.elapsed() < wait => {
                    if !logged {
                        logged = true;
                        tracing::warn!(lock = %path, "waiting for another server to release the database");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Unavailable(format!(
                        "another Strongroom server is using {db} (it holds {path}); \
                         one SQLite database serves one process: run several instances on PostgreSQL"
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::Backend(format!("{path}: cannot lock ({e})")));
                }
            }
        }
        self.claim = Some(Arc::new(file));
        self.clients = Some(Arc::new(client_cache::ClientCache::new()));
        self.check_replays_in_memory().await
    }

    /// Whether this is a SQLite store that has claimed its database (also
    /// through an [`Store::unclaimed`] handle on it): registrations and
    /// single-use values are then answered from memory.
    fn holds_sqlite_alone(&self) -> bool {
        self.writer.is_some() && self.clients.is_some()
    }

    /// Once claimed: from the next write on, single-use values are checked
    /// in the writer's memory and logged in order ([`seen`]). Waits for the
    /// migrations that create the log, if they have not run yet.
    async fn check_replays_in_memory(&self) -> StoreResult<()> {
        if !self.holds_sqlite_alone() {
            return Ok(());
        }
        let now = oauth_core::secret::now();
        self.run_write(move |conn| match conn {
            AnyConnection::Sqlite(c) => seen::install(c, now),
            AnyConnection::Postgresql(_) => Ok(()),
        })
        .await
    }

    /// How many single-use values a store that has claimed its SQLite
    /// database holds in memory ([`seen`]), and how many of them its writer
    /// has not settled yet (none between writes); `None` for other stores.
    /// For tests and diagnostics.
    pub async fn replay_values_in_memory(&self) -> StoreResult<Option<(usize, usize)>> {
        self.run_write(|_| Ok(seen::with(|s| (s.len(), s.unsettled()))))
            .await
    }

    /// A handle on the same database whose next write first records
    /// `entries` as used (as [`ReplayCache::consume_all`](oauth_core::storage::ReplayCache::consume_all) would), in the
    /// same transaction: one trip to the database for a request's
    /// single-use values and its own first write, instead of two.
    ///
    /// All or none: when an entry was used before, that write fails with
    /// [`StoreError::Replayed`] and neither the entries nor the write are
    /// kept; when the write fails, the entries are not kept either. A
    /// request that ends before any write records nothing; one that
    /// succeeds without writing must call [`Store::settle_replay`] before
    /// it answers.
    #[must_use]
    pub fn carrying_replay(&self, entries: Vec<ReplayEntry>, now: i64) -> Store {
        let mut handle = self.clone();
        handle.pending = (!entries.is_empty())
            .then(|| Arc::new(Mutex::new(Some(PendingReplay { entries, now }))));
        handle
    }

    /// Whether this handle still carries entries of
    /// [`Store::carrying_replay`] that no write has recorded yet.
    fn carries_replay(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| lock(p).is_some())
    }

    /// Records the entries of [`Store::carrying_replay`] now, if no write
    /// has carried them yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Replayed`] when one was used before; the store's
    /// failure.
    pub async fn settle_replay(&self) -> StoreResult<()> {
        if self.carries_replay() {
            self.run_write(|_| Ok(())).await?;
        }
        Ok(())
    }

    /// Group-commit figures on SQLite (`None` on PostgreSQL, where each
    /// write is its own transaction).
    #[must_use]
    pub fn write_stats(&self) -> Option<WriteStats> {
        self.writer.as_ref().map(writer::Writer::stats)
    }

    /// The connection pool now, for metrics (r2d2's `state()`; on SQLite
    /// the readers' pool, beside the one writer connection).
    #[must_use]
    pub fn pool_state(&self) -> PoolState {
        let s = self.pool.state();
        PoolState {
            connections: s.connections,
            idle_connections: s.idle_connections,
            max_size: self.pool.max_size(),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    #[must_use]
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Applies the embedded migrations of this backend that have not run yet.
    /// Safe to call on every start and from several instances at once: the
    /// whole run is one transaction behind a lock (an advisory lock on
    /// PostgreSQL, `BEGIN IMMEDIATE` on SQLite).
    ///
    /// # Errors
    ///
    /// `Backend` when a migration fails (nothing of the run is kept),
    /// `Unavailable` when no connection can be had.
    pub async fn migrate(&self) -> StoreResult<()> {
        // Straight on the write connection, never inside a batch: the run is
        // its own transaction.
        Self::run_on(self.writer_pool.clone(), None, |conn| {
            let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
                Fail::Store(StoreError::Backend(format!(
                    "migration failed: {}",
                    one_line(&e.to_string())
                )))
            };
            match conn {
                AnyConnection::Postgresql(c) => c.transaction(|c| {
                    diesel::sql_query(format!(
                        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
                    ))
                    .execute(c)?;
                    c.run_pending_migrations(POSTGRES_MIGRATIONS)
                        .map(drop)
                        .map_err(failed)
                }),
                AnyConnection::Sqlite(c) => c.immediate_transaction(|c| {
                    c.run_pending_migrations(SQLITE_MIGRATIONS)
                        .map(drop)
                        .map_err(failed)
                }),
            }
        })
        .await?;
        self.check_replays_in_memory().await
    }

    /// Deletes what can no longer be used: expired tokens, pushed requests,
    /// CIBA requests, sessions and interactions, and authorization codes
    /// [`SPENT_CODE_RETENTION_SECS`] after their expiry. Grants are kept:
    /// they are the consent record. Rows go in batches of at most
    /// [`PURGE_BATCH`], each its own write, so a request's write waits for
    /// one batch at most, never for the whole sweep (on SQLite every write
    /// goes through one writer: a sweep of half a million rows in one
    /// statement held every request's write for seconds).
    ///
    /// # Errors
    ///
    /// As for any query; rows deleted before a failure stay deleted.
    pub async fn purge_stale(&self, now: i64) -> StoreResult<PurgeReport> {
        Ok(PurgeReport {
            tokens: self.purge_table("tokens", now).await?,
            authorization_codes: self
                .purge_table("authorization_codes", now - SPENT_CODE_RETENTION_SECS)
                .await?,
            pushed_requests: self.purge_table("pushed_requests", now).await?,
            ciba_requests: self.purge_table("ciba_requests", now).await?,
            ciba_deliveries: self.purge_table("ciba_deliveries", now).await?,
            sessions: self.purge_table("sessions", now).await?,
            interactions: self.purge_table("interactions", now).await?,
        })
    }

    /// Deletes the rows of `table` whose `expires_at` is at most `upto`, in
    /// batches (see [`Store::purge_stale`]); how many went.
    pub(crate) async fn purge_table(&self, table: &'static str, upto: i64) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let n = self
                .run_write(move |conn| purge_batch(conn, table, upto))
                .await?;
            total += n as u64;
            if n < PURGE_BATCH {
                return Ok(total);
            }
            // The requests' writes that queued behind this batch go first.
            tokio::time::sleep(PURGE_PAUSE).await;
        }
    }

    /// Runs a read-only `f` on a pooled connection on the blocking pool,
    /// timed for the caller's module ([`timing`]).
    #[track_caller]
    pub(crate) fn run<T, F>(&self, f: F) -> impl Future<Output = StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, Fail> + Send + 'static,
    {
        let timer = timing::Timer::start("read");
        let run = Self::run_on(self.pool.clone(), self.reach.clone(), f);
        async move {
            let result = run.await;
            timer.stop();
            result
        }
    }

    /// Runs `f`, which writes, on the writer connection (see [`Store`]).
    /// On SQLite `f` may share its transaction with other writes
    /// ([`writer`]): it must not start a transaction other than through
    /// [`db::Db::write_tx`], which becomes a savepoint there.
    #[track_caller]
    pub(crate) fn run_write<T, F>(&self, f: F) -> impl Future<Output = StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, Fail> + Send + 'static,
    {
        self.run_write_then(f, || {})
    }

    /// [`Store::run_write`], then `after` once the write has committed or
    /// failed, on the thread that ran it: also when the caller has gone
    /// away meanwhile (a cancelled request), since the write stands then too.
    /// Timed for the caller's module ([`timing`]).
    #[track_caller]
    pub(crate) fn run_write_then<T, F, A>(
        &self,
        f: F,
        after: A,
    ) -> impl Future<Output = StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, Fail> + Send + 'static,
        A: FnOnce() + Send + 'static,
    {
        let timer = timing::Timer::start("write");
        async move {
            let result = self.write_carrying_replay(f, after).await;
            timer.stop();
            result
        }
    }

    /// [`Store::run_write_then`]'s write, with the entries of
    /// [`Store::carrying_replay`] recorded first if this handle has any.
    async fn write_carrying_replay<T, F, A>(&self, f: F, after: A) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, Fail> + Send + 'static,
        A: FnOnce() + Send + 'static,
    {
        let pending = self.pending.as_ref().and_then(|p| lock(p).take());
        let audit = self.audit.as_ref().and_then(|a| lock(a).take());
        if pending.is_none() && audit.is_none() {
            return self.submit_write(f, after).await;
        }
        self.submit_write(
            move |conn| {
                // One savepoint: a used entry or a failing `f` undoes the
                // inserts of the entries before it, and the audit line
                // lands only with the write it describes.
                db::savepoint(conn, |conn| {
                    if let Some(p) = &pending
                        && let Some(i) = repo::replay::record_until_used(conn, &p.entries, p.now)?
                    {
                        return Err(Fail::Store(StoreError::Replayed(p.entries[i].clone())));
                    }
                    let out = f(conn)?;
                    if let Some(a) = &audit {
                        repo::admin::insert_audit(conn, a)?;
                        repo::admin::bump_version(conn)?;
                    }
                    Ok(out)
                })
            },
            after,
        )
        .await
    }

    async fn submit_write<T, F, A>(&self, f: F, after: A) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, Fail> + Send + 'static,
        A: FnOnce() + Send + 'static,
    {
        match &self.writer {
            Some(w) => w.submit(f, after).await,
            None => {
                Self::run_on(self.writer_pool.clone(), self.reach.clone(), move |conn| {
                    let result = f(conn);
                    after();
                    result
                })
                .await
            }
        }
    }

    /// Runs `f` on a connection of `pool` on the blocking pool; with
    /// `reach` (PostgreSQL), `Unavailable` at once while the database is
    /// known to be unreachable ([`reach`]).
    async fn run_on<T, F>(
        pool: r2d2::Pool<Manager>,
        reach: Option<Arc<reach::Reach>>,
        f: F,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, Fail> + Send + 'static,
    {
        let admitted = match &reach {
            None => None,
            Some(r) => match r.admit(|| pool.state().idle_connections) {
                Some(a) => Some(a),
                None => {
                    return Err(StoreError::Unavailable(
                        "the database is unreachable (answering at once until it answers again)"
                            .to_owned(),
                    ));
                }
            },
        };
        let joined = tokio::task::spawn_blocking(move || {
            let result = pool
                .get()
                .map_err(|e| {
                    StoreError::Unavailable(format!(
                        "no database connection: {}",
                        one_line(&e.to_string())
                    ))
                })
                .and_then(|mut conn| f(&mut conn).map_err(StoreError::from));
            if let Some(a) = &admitted {
                a.record(matches!(result, Err(StoreError::Unavailable(_))));
            }
            result
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) => Err(StoreError::Backend(format!("database task failed: {e}"))),
        }
    }

    /// Ends every registration this process cached (see [`client_cache`]):
    /// called by each write to the `clients` table once it has committed or
    /// failed.
    fn registrations_changed(&self) -> impl FnOnce() + Send + 'static {
        let cache = self.clients.clone();
        move || {
            if let Some(cache) = cache {
                cache.invalidate();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One batch of [`Store::purge_table`]: at most [`PURGE_BATCH`] rows of
/// `table` (one of the schema's own table names, never input) whose
/// `expires_at` is at most `upto`, found through the `expires_at` index and
/// deleted by their physical row id.
fn purge_batch(conn: &mut AnyConnection, table: &'static str, upto: i64) -> Result<usize, Fail> {
    use diesel::sql_types::BigInt;
    let n = match conn {
        AnyConnection::Sqlite(c) => diesel::sql_query(format!(
            "DELETE FROM {table} WHERE rowid IN \
             (SELECT rowid FROM {table} WHERE expires_at <= ? LIMIT {PURGE_BATCH})"
        ))
        .bind::<BigInt, _>(upto)
        .execute(c)?,
        AnyConnection::Postgresql(c) => diesel::sql_query(format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(\
             SELECT ctid FROM {table} WHERE expires_at <= $1 LIMIT {PURGE_BATCH}))"
        ))
        .bind::<BigInt, _>(upto)
        .execute(c)?,
    };
    Ok(n)
}

//! Connections: the URL, the backend it selects, and the r2d2 manager.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::R2D2Connection;
use diesel::{ConnectionError, PgConnection, SqliteConnection};
use oauth_core::storage::StoreError;

use crate::error::one_line;

/// How long a new connection or a pool checkout may take before the store
/// reports the database unavailable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One pooled connection of whichever backend the URL chose.
#[derive(diesel::MultiConnection)]
pub(crate) enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A parsed database URL: what to hand the driver, and what to show in
/// messages (never a password).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub backend: Backend,
    pub conninfo: String,
    pub display: String,
}

impl Target {
    /// Accepts `sqlite://path` (relative), `sqlite:///abs/path`,
    /// `postgres://…` and `postgresql://…`.
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Backend(
                    "database URL `sqlite://` names no file: use sqlite://path/to/file.db".into(),
                ));
            }
            // Every pooled connection would open its own empty database.
            if path == ":memory:" || path.contains("mode=memory") {
                return Err(StoreError::Backend(
                    "in-memory SQLite cannot back a connection pool: use sqlite://path/to/file.db"
                        .into(),
                ));
            }
            return Ok(Target {
                backend: Backend::Sqlite,
                conninfo: path.to_owned(),
                display: format!("sqlite://{path}"),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target {
                backend: Backend::Postgres,
                conninfo: with_connect_timeout(url),
                display: redact_password(url),
            });
        }
        let scheme = match url.split_once(':') {
            Some((scheme, _)) if !scheme.is_empty() => scheme,
            _ => "(none)",
        };
        Err(StoreError::Backend(format!(
            "unsupported database URL scheme `{scheme}`: use sqlite://path/to/file.db, \
             postgres://user@host/db or postgresql://user@host/db"
        )))
    }

    pub(crate) fn establish(&self) -> Result<AnyConnection, ConnectionError> {
        match self.backend {
            Backend::Postgres => {
                init_openssl();
                PgConnection::establish(&self.conninfo).map(AnyConnection::Postgresql)
            }
            Backend::Sqlite => {
                SqliteConnection::establish(&self.conninfo).map(AnyConnection::Sqlite)
            }
        }
    }
}

/// libpq waits for the OS TCP timeout (minutes) on a black-holed host unless
/// told otherwise; the caller's own setting wins.
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout={}", CONNECT_TIMEOUT.as_secs())
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Initialises the OpenSSL that libpq uses for TLS, once per process,
/// without the exit handler OpenSSL otherwise registers on first use. That
/// handler frees OpenSSL's global state when the process exits, while
/// r2d2's background threads may still be opening a connection: the
/// process then crashed on its way out (a segmentation fault after the
/// work was done, about once in five test runs). Whichever initialisation
/// comes first decides: [`Store::connect`](crate::Store::connect) calls this
/// before its first connection, and a program that makes PostgreSQL
/// connections of its own should call it before them.
pub fn init_openssl() {
    openssl_sys::init();
}

/// Establishes connections for the one backend chosen from the URL.
///
/// diesel's `ConnectionManager<AnyConnection>` is not used because the
/// derived `MultiConnection::establish` tries every backend in turn and
/// discards their errors: a mistyped PostgreSQL URL would end as "Invalid
/// connection url" after an attempt to open it as a SQLite file.
#[derive(Debug)]
pub(crate) struct Manager {
    pub target: Target,
}

/// How long after its last use a pooled connection is trusted without a
/// check. A PostgreSQL pool checks a connection (one `SELECT 1`, a round
/// trip) before handing it out only when it has been idle longer than
/// this, so that a database restarted while the instance was quiet costs
/// no failed request, while a busy pool, whose connections were all in use
/// moments ago, does not pay a round trip on every read and write. A
/// database that goes away within this window fails the requests that were
/// handed its connections meanwhile (`Unavailable`, 503), at most one per
/// pooled connection: each such connection counts as broken on its return
/// and is discarded, and the next request gets a checked or new one.
/// 500 ms is HikariCP's window for the same check.
///
/// Measured on PostgreSQL (release build, 64 connections, three
/// interleaved pairs, the database on the same two cores) against a check
/// on every checkout: `tls_client_auth` token requests 3.0–3.6 k →
/// 3.6–4.3 k req/s, `private_key_jwt` token requests 1.55–1.68 k →
/// 1.68–1.92 k; introspection, PAR and userinfo within the noise.
pub(crate) const TRUSTED_AFTER_USE: Duration = Duration::from_millis(500);

/// A pooled connection and when it last went back to the pool.
pub(crate) struct Pooled {
    conn: AnyConnection,
    returned: Option<Instant>,
}

impl std::ops::Deref for Pooled {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

/// Whether a connection last returned at `returned` (never, for one not
/// used yet) must be checked before use at `now` (see
/// [`TRUSTED_AFTER_USE`]).
fn needs_check(returned: Option<Instant>, now: Instant) -> bool {
    returned.is_none_or(|t| now.saturating_duration_since(t) >= TRUSTED_AFTER_USE)
}

impl r2d2::ManageConnection for Manager {
    type Connection = Pooled;
    type Error = ConnectionError;

    fn connect(&self) -> Result<Pooled, ConnectionError> {
        Ok(Pooled {
            conn: self.target.establish()?,
            returned: None,
        })
    }

    /// Called on checkout when the pool tests connections (PostgreSQL).
    fn is_valid(&self, conn: &mut Pooled) -> Result<(), ConnectionError> {
        if !needs_check(conn.returned, Instant::now()) {
            return Ok(());
        }
        conn.conn
            .ping()
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    /// Called when a connection goes back to the pool.
    fn has_broken(&self, conn: &mut Pooled) -> bool {
        conn.returned = Some(Instant::now());
        // A panic mid-transaction leaves the connection in an unknown state.
        // A connection whose server went away counts as broken too: libpq
        // then reports its transaction status unknown, and diesel puts the
        // connection's transaction manager in error.
        std::thread::panicking() || conn.conn.is_broken()
    }
}

/// The page size of new SQLite databases, bytes. Under load most writes
/// insert under random keys (hashes of codes, tokens, request URIs and
/// `jti`s), so each dirties a page of its own that the commit writes to the
/// WAL and the checkpoint copies back: half of SQLite's default 4 KiB
/// halves those bytes, while a row still fits in one page. Measured against
/// 4 KiB in six interleaved pairs (release build, 64 connections): session
/// flows +3.9 %, token requests +3.0 %; 1 KiB pages were no better than
/// 4 KiB.
pub(crate) const PAGE_SIZE: u32 = 2048;

/// Per-connection SQLite settings. `page_size` comes first: it only takes
/// effect on a database not yet written, and SQLite cannot change it once
/// the database is in WAL mode, so every connection asks for it before
/// anything else (on an existing database it is a no-op). `busy_timeout`
/// comes next so that the switch to WAL, which needs a lock, waits for a
/// concurrently opening connection instead of failing.
#[derive(Debug)]
pub(crate) struct SqlitePragmas {
    /// The connection's page cache, KiB.
    pub(crate) cache_kib: u32,
    /// Whether a commit on this connection checkpoints the WAL once it
    /// passes 1000 pages (SQLite's default). Off on the writer, which
    /// checkpoints between its transactions instead (`crate::writer`).
    pub(crate) auto_checkpoint: bool,
}

impl r2d2::CustomizeConnection<Pooled, ConnectionError> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut Pooled) -> Result<(), ConnectionError> {
        if let AnyConnection::Sqlite(c) = &mut conn.conn {
            c.batch_execute(&format!(
                "PRAGMA page_size = {}; \
                 PRAGMA busy_timeout = 5000; \
                 PRAGMA journal_mode = WAL; \
                 PRAGMA foreign_keys = ON; \
                 PRAGMA synchronous = NORMAL; \
                 PRAGMA cache_size = -{}; \
                 PRAGMA wal_autocheckpoint = {};",
                PAGE_SIZE,
                self.cache_kib,
                if self.auto_checkpoint { 1000 } else { 0 }
            ))
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        }
        Ok(())
    }
}

/// Sends r2d2's background connection errors to `tracing` (r2d2 itself
/// logs through the `log` crate, which the server does not collect).
#[derive(Debug)]
pub(crate) struct TracingErrors;

impl r2d2::HandleError<ConnectionError> for TracingErrors {
    fn handle_error(&self, error: ConnectionError) {
        tracing::warn!(error = %one_line(&error.to_string()), "database connection failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_checked_unless_it_was_in_use_moments_ago() {
        let now = Instant::now();
        let ago = |d: Duration| now.checked_sub(d).expect("an uptime of a second");
        let ms = Duration::from_millis;
        assert!(needs_check(None, now), "never used");
        assert!(!needs_check(Some(now), now));
        assert!(!needs_check(Some(ago(TRUSTED_AFTER_USE - ms(1))), now));
        assert!(needs_check(Some(ago(TRUSTED_AFTER_USE)), now));
        assert!(needs_check(Some(ago(ms(1000))), now));
        // Returned "after" now (another thread's clock read): trusted.
        assert!(!needs_check(Some(now + ms(5)), now));
    }

    #[test]
    fn sqlite_urls_keep_relative_and_absolute_paths() {
        let rel = Target::parse("sqlite://data/strongroom.db").unwrap();
        assert_eq!(rel.backend, Backend::Sqlite);
        assert_eq!(rel.conninfo, "data/strongroom.db");
        let abs = Target::parse("sqlite:///var/lib/strongroom/db.sqlite").unwrap();
        assert_eq!(abs.conninfo, "/var/lib/strongroom/db.sqlite");
    }

    #[test]
    fn postgres_urls_get_a_connect_timeout_unless_they_have_one() {
        let t = Target::parse("postgres://u@h/db").unwrap();
        assert_eq!(t.backend, Backend::Postgres);
        assert_eq!(t.conninfo, "postgres://u@h/db?connect_timeout=5");
        let t = Target::parse("postgresql://u@h/db?sslmode=require").unwrap();
        assert_eq!(
            t.conninfo,
            "postgresql://u@h/db?sslmode=require&connect_timeout=5"
        );
        let t = Target::parse("postgres://u@h/db?connect_timeout=1").unwrap();
        assert_eq!(t.conninfo, "postgres://u@h/db?connect_timeout=1");
    }

    #[test]
    fn passwords_never_reach_messages() {
        let t = Target::parse("postgres://app:s3cret@db:5432/sr?sslmode=require").unwrap();
        assert_eq!(t.display, "postgres://app:***@db:5432/sr?sslmode=require");
        assert!(!t.display.contains("s3cret"));
        assert_eq!(
            redact_password("postgres://app@db/sr"),
            "postgres://app@db/sr"
        );
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        let err = Target::parse("mysql://root:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unsupported database URL scheme `mysql`"),
            "{err}"
        );
        assert!(!err.contains("pw"), "{err}");
        let err = Target::parse("strongroom.db").unwrap_err().to_string();
        assert!(err.contains("unsupported"), "{err}");
        assert!(Target::parse("sqlite://").is_err());
        let err = Target::parse("sqlite://:memory:").unwrap_err().to_string();
        assert!(err.contains("in-memory"), "{err}");
    }
}

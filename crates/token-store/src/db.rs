//! The two places where the backends must behave differently: how a write
//! transaction starts, and how rows are locked inside one.
//!
//! Everything else is one query text compiled for each backend by
//! [`with_conn!`], which hands the body a concrete `&mut PgConnection` or
//! `&mut SqliteConnection`. Going through the concrete types (rather than
//! the `MultiConnection` backend) keeps `ON CONFLICT`, `FOR UPDATE` and
//! `BEGIN IMMEDIATE` available.
//!
//! Lock order, PostgreSQL: a transaction that touches a grant and its tokens
//! locks the grant row first, and several grants in `grant_id` order. Token
//! writers (`put_tokens`, `rotate_refresh`) hold the grant `FOR SHARE`;
//! revocations hold it exclusively. A token can therefore never be inserted
//! under a grant that a committed revocation has revoked, and two revocations
//! cannot deadlock on each other's token rows.
//!
//! Lookups by primary key use `get_result`, never `first`: `first` adds a
//! bound `LIMIT ?`, and SQLite (3.53) re-prepares a statement with a bound
//! `LIMIT` on every execution, parsing and planning the query each time;
//! `clippy.toml` refuses `first` so the slow form cannot come back.
//!
//! SQLite: write transactions start with `BEGIN IMMEDIATE`, taking the
//! database write lock before the first read, so a read-then-write cannot
//! fail with SQLITE_BUSY at the upgrade; the row locks are then no-ops.

use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};

use crate::conn::AnyConnection;
use crate::error::Fail;
use crate::schema::{ciba_requests, grants};

/// Runs `$body` with `$c` bound to the concrete connection inside `$conn`
/// (an `&mut AnyConnection`). The body is compiled once per backend.
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::conn::AnyConnection::Postgresql($c) => $body,
            $crate::conn::AnyConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use with_conn;

/// Runs `f` all or nothing: in a savepoint when a transaction is open (a
/// group-commit batch, or a `write_tx`), else in a transaction of its own
/// (`BEGIN IMMEDIATE` on SQLite). For writes composed of other writes that
/// each take the whole connection; a single query's body uses
/// [`Db::write_tx`].
pub(crate) fn savepoint<T, F>(conn: &mut AnyConnection, f: F) -> Result<T, Fail>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, Fail>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match &mut *conn {
        AnyConnection::Sqlite(c) => {
            let open = AnsiTransactionManager::transaction_manager_status_mut(c)
                .transaction_depth()?
                .is_some();
            if open {
                AnsiTransactionManager::begin_transaction(c)?;
            } else {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
            }
        }
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    let result = f(conn);
    with_conn!(conn, c => match result {
        Ok(v) => match AnsiTransactionManager::commit_transaction(c) {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = AnsiTransactionManager::rollback_transaction(c);
                Err(Fail::Db(e))
            }
        },
        Err(e) => {
            AnsiTransactionManager::rollback_transaction(c)?;
            Err(e)
        }
    })
}

pub(crate) trait Db: Sized {
    /// A transaction meant to write; see the module docs for SQLite.
    fn write_tx<T, F>(&mut self, f: F) -> Result<T, Fail>
    where
        F: FnOnce(&mut Self) -> Result<T, Fail>;

    /// Whether the grant exists unrevoked, holding it against concurrent
    /// revocation until the transaction ends.
    fn grant_is_live_shared(&mut self, grant_id: &str) -> QueryResult<bool>;

    /// Locks one grant for revocation of it or its tokens.
    fn lock_grant(&mut self, grant_id: &str) -> QueryResult<()>;

    /// Locks every grant carrying `consent_id`, in `grant_id` order.
    fn lock_grants_of_consent(&mut self, consent_id: &str) -> QueryResult<()>;

    /// Locks every grant of `client_id`, in `grant_id` order.
    fn lock_grants_of_client(&mut self, client_id: &str) -> QueryResult<()>;

    /// `last_polled_at` of a CIBA request, locked until the transaction
    /// ends. `None` when there is no such request.
    fn ciba_last_poll_locked(&mut self, auth_req_id_hash: &str)
    -> QueryResult<Option<Option<i64>>>;
}

impl Db for PgConnection {
    fn write_tx<T, F>(&mut self, f: F) -> Result<T, Fail>
    where
        F: FnOnce(&mut Self) -> Result<T, Fail>,
    {
        self.transaction(f)
    }

    fn grant_is_live_shared(&mut self, grant_id: &str) -> QueryResult<bool> {
        let revoked_at: Option<Option<i64>> = grants::table
            .find(grant_id)
            .select(grants::revoked_at)
            .for_share()
            .get_result(self)
            .optional()?;
        Ok(matches!(revoked_at, Some(None)))
    }

    fn lock_grant(&mut self, grant_id: &str) -> QueryResult<()> {
        // NO KEY UPDATE: conflicts with FOR SHARE (token writers) but not
        // with the FOR KEY SHARE that foreign-key checks take.
        grants::table
            .find(grant_id)
            .select(grants::grant_id)
            .for_no_key_update()
            .execute(self)
            .map(drop)
    }

    fn lock_grants_of_consent(&mut self, consent_id: &str) -> QueryResult<()> {
        grants::table
            .filter(grants::consent_id.eq(consent_id))
            .order(grants::grant_id)
            .select(grants::grant_id)
            .for_no_key_update()
            .execute(self)
            .map(drop)
    }

    fn lock_grants_of_client(&mut self, client_id: &str) -> QueryResult<()> {
        grants::table
            .filter(grants::client_id.eq(client_id))
            .order(grants::grant_id)
            .select(grants::grant_id)
            .for_no_key_update()
            .execute(self)
            .map(drop)
    }

    fn ciba_last_poll_locked(
        &mut self,
        auth_req_id_hash: &str,
    ) -> QueryResult<Option<Option<i64>>> {
        ciba_requests::table
            .find(auth_req_id_hash)
            .select(ciba_requests::last_polled_at)
            .for_no_key_update()
            .get_result(self)
            .optional()
    }
}

impl Db for SqliteConnection {
    /// `BEGIN IMMEDIATE`, or a savepoint when the write runs inside a
    /// group-commit batch (`crate::writer`), which already holds the lock.
    fn write_tx<T, F>(&mut self, f: F) -> Result<T, Fail>
    where
        F: FnOnce(&mut Self) -> Result<T, Fail>,
    {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        let depth = AnsiTransactionManager::transaction_manager_status_mut(self)
            .transaction_depth()
            .map_err(Fail::Db)?;
        if depth.is_some() {
            self.transaction(f)
        } else {
            self.immediate_transaction(f)
        }
    }

    fn grant_is_live_shared(&mut self, grant_id: &str) -> QueryResult<bool> {
        let revoked_at: Option<Option<i64>> = grants::table
            .find(grant_id)
            .select(grants::revoked_at)
            .get_result(self)
            .optional()?;
        Ok(matches!(revoked_at, Some(None)))
    }

    fn lock_grant(&mut self, _grant_id: &str) -> QueryResult<()> {
        Ok(())
    }

    fn lock_grants_of_consent(&mut self, _consent_id: &str) -> QueryResult<()> {
        Ok(())
    }

    fn lock_grants_of_client(&mut self, _client_id: &str) -> QueryResult<()> {
        Ok(())
    }

    fn ciba_last_poll_locked(
        &mut self,
        auth_req_id_hash: &str,
    ) -> QueryResult<Option<Option<i64>>> {
        ciba_requests::table
            .find(auth_req_id_hash)
            .select(ciba_requests::last_polled_at)
            .get_result(self)
            .optional()
    }
}

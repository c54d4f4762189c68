use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use oauth_core::storage::{ReplayCache, ReplayEntry, ReplayKind, StoreResult};

use crate::Store;
use crate::db::{Db, with_conn};
use crate::models::ReplayRow;
use crate::schema::replay_cache as rc;

impl ReplayCache for Store {
    /// The primary key (kind, value) decides: an expired entry is deleted
    /// first, then the insert either succeeds (first use) or hits the key
    /// (replay). Two instances racing on one value cannot both insert.
    async fn consume_once(
        &self,
        kind: ReplayKind,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let value = value.to_owned();
        self.run_write(move |conn| {
            let row = ReplayRow {
                kind: kind.as_str(),
                value: &value,
                expires_at,
            };
            with_conn!(conn, c => {
                diesel::delete(
                    rc::table
                        .find((row.kind, row.value))
                        .filter(rc::expires_at.le(now)),
                )
                .execute(c)?;
                match diesel::insert_into(rc::table).values(&row).execute(c) {
                    Ok(_) => Ok(true),
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                        Ok(false)
                    }
                    Err(e) => Err(e.into()),
                }
            })
        })
        .await
    }

    /// One savepoint (a transaction on PostgreSQL): the first entry that is
    /// already in use rolls every insert of this call back.
    async fn consume_all(&self, entries: Vec<ReplayEntry>, now: i64) -> StoreResult<Option<usize>> {
        self.run_write(move |conn| {
            let replayed = std::cell::Cell::new(None);
            let outcome = with_conn!(conn, c => c.write_tx(|c| {
                for (i, e) in entries.iter().enumerate() {
                    let row = ReplayRow {
                        kind: e.kind.as_str(),
                        value: &e.value,
                        expires_at: e.expires_at,
                    };
                    diesel::delete(
                        rc::table
                            .find((row.kind, row.value))
                            .filter(rc::expires_at.le(now)),
                    )
                    .execute(c)?;
                    if let Err(err) = diesel::insert_into(rc::table).values(&row).execute(c) {
                        if matches!(
                            err,
                            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
                        ) {
                            replayed.set(Some(i));
                        }
                        return Err(err.into());
                    }
                }
                Ok(())
            }));
            match (outcome, replayed.get()) {
                (Ok(()), _) => Ok(None),
                (Err(_), Some(i)) => Ok(Some(i)),
                (Err(e), None) => Err(e),
            }
        })
        .await
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        self.run_write(move |conn| {
            let n = with_conn!(conn, c =>
                diesel::delete(rc::table.filter(rc::expires_at.le(now))).execute(c)?);
            Ok(n as u64)
        })
        .await
    }
}

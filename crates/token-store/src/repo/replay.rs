use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use oauth_core::storage::{ReplayCache, ReplayEntry, StoreError, StoreResult};

use crate::Store;
use crate::db::{Db, with_conn};
use crate::error::Fail;
use crate::models::ReplayRow;
use crate::schema::replay_cache as rc;

impl ReplayCache for Store {
    /// The primary key (kind, value) decides: an expired entry is deleted
    /// first, then the insert either succeeds (first use) or hits the key
    /// (replay). Two instances racing on one value cannot both insert.
    /// Several entries share one savepoint (a transaction on PostgreSQL)
    /// that the first used one rolls back; a single entry needs none.
    async fn consume_all(&self, entries: Vec<ReplayEntry>, now: i64) -> StoreResult<Option<usize>> {
        if entries.is_empty() {
            return Ok(None);
        }
        self.run_write(move |conn| {
            with_conn!(conn, c => {
                // The index of the first entry in use, or `None` when all
                // are recorded now.
                let record = |c: &mut _| -> Result<Option<usize>, DieselError> {
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
                        match diesel::insert_into(rc::table).values(&row).execute(c) {
                            Ok(_) => {}
                            Err(DieselError::DatabaseError(
                                DatabaseErrorKind::UniqueViolation,
                                _,
                            )) => return Ok(Some(i)),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(None)
                };
                if entries.len() == 1 {
                    return Ok(record(c)?);
                }
                // A replay must still undo the inserts before it.
                let replayed = std::cell::Cell::new(None);
                match c.write_tx(|c| match record(c)? {
                    None => Ok(()),
                    Some(i) => {
                        replayed.set(Some(i));
                        Err(Fail::Store(StoreError::Conflict))
                    }
                }) {
                    Ok(()) => Ok(None),
                    Err(_) if replayed.get().is_some() => Ok(replayed.get()),
                    Err(e) => Err(e),
                }
            })
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

use diesel::prelude::*;
use oauth_core::storage::{KeyRecord, KeyRepository, StoreError, StoreResult};

use crate::Store;
use crate::db::{Db, with_conn};
use crate::error::Fail;
use crate::models::KeyRow;
use crate::schema::provider_keys as pk;

impl KeyRepository for Store {
    async fn list_keys(&self, now: i64) -> StoreResult<Vec<KeyRecord>> {
        self.run(move |conn| {
            let rows: Vec<KeyRow> = with_conn!(conn, c => pk::table
                .filter(pk::expires_at.is_null().or(pk::expires_at.gt(now)))
                .order((pk::created_at.asc(), pk::kid.asc()))
                .select(KeyRow::as_select())
                .load(c)?);
            Ok(rows.into_iter().map(KeyRecord::from).collect())
        })
        .await
    }

    /// Retiring a `kid` the table does not hold is an error and undoes the
    /// whole rotation: a half-rotated key set is worse than none.
    async fn rotate_keys(
        &self,
        insert: Vec<KeyRecord>,
        retire: Vec<(String, i64, i64)>,
    ) -> StoreResult<()> {
        let rows: Vec<KeyRow> = insert.into_iter().map(KeyRow::from).collect();
        self.run_write(move |conn| {
            with_conn!(conn, c => c.write_tx(|c| {
                for row in &rows {
                    diesel::insert_into(pk::table).values(row).execute(c)?;
                }
                for (kid, retired_at, expires_at) in &retire {
                    let n = diesel::update(pk::table.find(kid))
                        .set((
                            pk::retired_at.eq(Some(*retired_at)),
                            pk::expires_at.eq(Some(*expires_at)),
                        ))
                        .execute(c)?;
                    if n == 0 {
                        return Err(Fail::Store(StoreError::Backend(format!(
                            "cannot retire key `{kid}`: no such key"
                        ))));
                    }
                }
                Ok(())
            }))
        })
        .await
    }
}

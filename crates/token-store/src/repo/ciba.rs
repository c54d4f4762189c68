use diesel::prelude::*;
use oauth_core::storage::{CibaRepository, CibaRequestRecord, StoreError, StoreResult};

use crate::Store;
use crate::db::{Db, with_conn};
use crate::error::Fail;
use crate::models::CibaRow;
use crate::schema::ciba_requests as cr;

const PENDING: &str = "pending";

impl CibaRepository for Store {
    async fn put_ciba_request(&self, rec: CibaRequestRecord) -> StoreResult<()> {
        let row = CibaRow::from(rec);
        self.run_write(move |conn| {
            with_conn!(conn, c => diesel::insert_into(cr::table).values(&row).execute(c)?);
            Ok(())
        })
        .await
    }

    /// Returned whatever its expiry: the token endpoint answers an expired
    /// request with `expired_token` (CIBA §11), not `invalid_grant`.
    async fn get_ciba_request(
        &self,
        auth_req_id_hash: &str,
    ) -> StoreResult<Option<CibaRequestRecord>> {
        let hash = auth_req_id_hash.to_owned();
        self.run(move |conn| {
            let row: Option<CibaRow> = with_conn!(conn, c => cr::table
                .find(&hash)
                .select(CibaRow::as_select())
                .get_result(c)
                .optional()?);
            Ok(row.map(CibaRequestRecord::from))
        })
        .await
    }

    /// `status` must be `approved` or `denied`; only a `pending` request
    /// moves, so the first decision stands.
    async fn decide_ciba_request(
        &self,
        auth_req_id_hash: &str,
        status: &str,
        grant_id: Option<String>,
    ) -> StoreResult<bool> {
        if status != "approved" && status != "denied" {
            return Err(StoreError::Backend(format!(
                "a CIBA request cannot be decided as `{status}` (approved or denied)"
            )));
        }
        let hash = auth_req_id_hash.to_owned();
        let status = status.to_owned();
        self.run_write(move |conn| {
            let n = with_conn!(conn, c => diesel::update(
                cr::table.find(&hash).filter(cr::status.eq(PENDING)),
            )
            .set((cr::status.eq(&status), cr::grant_id.eq(&grant_id)))
            .execute(c)?);
            Ok(n == 1)
        })
        .await
    }

    /// The row is locked between the read and the write so that two polls
    /// in the same instant cannot both see the older time (and both escape
    /// `slow_down`). `None` also when the request does not exist.
    async fn touch_ciba_poll(&self, auth_req_id_hash: &str, now: i64) -> StoreResult<Option<i64>> {
        let hash = auth_req_id_hash.to_owned();
        self.run_write(move |conn| {
            let hash = hash.as_str();
            with_conn!(conn, c => c.write_tx(|c| {
                let Some(previous) = c.ciba_last_poll_locked(hash)? else {
                    return Ok(None);
                };
                diesel::update(cr::table.find(hash))
                    .set(cr::last_polled_at.eq(Some(now)))
                    .execute(c)?;
                Ok::<_, Fail>(previous)
            }))
        })
        .await
    }

    async fn consume_ciba_request(&self, auth_req_id_hash: &str) -> StoreResult<bool> {
        let hash = auth_req_id_hash.to_owned();
        self.run_write(move |conn| {
            let n = with_conn!(conn, c => diesel::delete(cr::table.find(&hash)).execute(c)?);
            Ok(n == 1)
        })
        .await
    }
}

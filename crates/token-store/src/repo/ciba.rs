use diesel::prelude::*;
use diesel::sql_types::BigInt;
use oauth_core::storage::{
    CibaDeliveryRecord, CibaOutbox, CibaPoll, CibaRedeemed, CibaRepository, CibaRequestRecord,
    GrantRecord, StoreError, StoreResult, TokenRecord,
};

use crate::Store;
use crate::db::{Db, with_conn};
use crate::error::Fail;
use crate::models::{CibaDeliveryRow, CibaRow, GrantRow, TokenRow};
use crate::schema::ciba_deliveries as cd;
use crate::schema::ciba_requests as cr;
use crate::schema::grants as gr;

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

    async fn get_ciba_request_by_handle(
        &self,
        handle_hash: &str,
    ) -> StoreResult<Option<CibaRequestRecord>> {
        let hash = handle_hash.to_owned();
        self.run(move |conn| {
            let row: Option<CibaRow> = with_conn!(conn, c => cr::table
                .filter(cr::handle_hash.eq(&hash))
                .select(CibaRow::as_select())
                .get_result(c)
                .optional()?);
            Ok(row.map(CibaRequestRecord::from))
        })
        .await
    }

    /// The status moves first (the conditional update is the one winner);
    /// the grant is inserted and linked only then, in the same transaction.
    async fn approve_ciba_request(
        &self,
        auth_req_id_hash: &str,
        grant: GrantRecord,
        now: i64,
    ) -> StoreResult<bool> {
        let hash = auth_req_id_hash.to_owned();
        let row = GrantRow::from(grant);
        self.run_write(move |conn| {
            let hash = hash.as_str();
            with_conn!(conn, c => c.write_tx(|c| {
                let n = diesel::update(
                    cr::table
                        .find(hash)
                        .filter(cr::status.eq(PENDING))
                        .filter(cr::expires_at.gt(now)),
                )
                .set(cr::status.eq("approved"))
                .execute(c)?;
                if n != 1 {
                    return Ok::<_, Fail>(false);
                }
                diesel::insert_into(gr::table).values(&row).execute(c)?;
                diesel::update(cr::table.find(hash))
                    .set(cr::grant_id.eq(Some(&row.grant_id)))
                    .execute(c)?;
                Ok(true)
            }))
        })
        .await
    }

    async fn poll_ciba_request(
        &self,
        auth_req_id_hash: &str,
        now: i64,
        step: i64,
    ) -> StoreResult<Option<CibaPoll>> {
        let hash = auth_req_id_hash.to_owned();
        self.run_write(move |conn| {
            let hash = hash.as_str();
            with_conn!(conn, c => c.write_tx(|c| {
                let in_time = diesel::update(
                    cr::table.find(hash).filter(
                        cr::last_polled_at.is_null().or(cr::last_polled_at
                            .le((now.into_sql::<BigInt>() - cr::poll_interval).nullable())),
                    ),
                )
                .set(cr::last_polled_at.eq(Some(now)))
                .execute(c)?;
                if in_time == 1 {
                    return Ok::<_, Fail>(Some(CibaPoll::InTime));
                }
                let n = diesel::update(cr::table.find(hash))
                    .set((
                        cr::last_polled_at.eq(Some(now)),
                        cr::poll_interval.eq(cr::poll_interval + step),
                    ))
                    .execute(c)?;
                Ok((n == 1).then_some(CibaPoll::TooFast))
            }))
        })
        .await
    }
}

impl CibaOutbox for Store {
    async fn put_ciba_request_with_delivery(
        &self,
        rec: CibaRequestRecord,
        delivery: CibaDeliveryRecord,
    ) -> StoreResult<()> {
        let row = CibaRow::from(rec);
        let d = CibaDeliveryRow::from(delivery);
        self.run_write(move |conn| {
            with_conn!(conn, c => c.write_tx(|c| {
                diesel::insert_into(cr::table).values(&row).execute(c)?;
                diesel::insert_into(cd::table).values(&d).execute(c)?;
                Ok::<_, Fail>(())
            }))
        })
        .await
    }

    async fn put_ciba_delivery(&self, delivery: CibaDeliveryRecord) -> StoreResult<()> {
        let d = CibaDeliveryRow::from(delivery);
        self.run_write(move |conn| {
            with_conn!(conn, c => diesel::insert_into(cd::table).values(&d).execute(c)?);
            Ok(())
        })
        .await
    }

    async fn due_ciba_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<CibaDeliveryRecord>> {
        self.run(move |conn| {
            let rows: Vec<CibaDeliveryRow> = with_conn!(conn, c => cd::table
                .filter(cd::next_attempt_ms.le(now_ms))
                .order(cd::next_attempt_ms.asc())
                .limit(limit)
                .select(CibaDeliveryRow::as_select())
                .load(c)?);
            Ok(rows.into_iter().map(CibaDeliveryRecord::from).collect())
        })
        .await
    }

    async fn claim_ciba_delivery(
        &self,
        delivery_id: &str,
        seen_next_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool> {
        let id = delivery_id.to_owned();
        self.run_write(move |conn| {
            let n = with_conn!(conn, c => diesel::update(
                cd::table
                    .find(&id)
                    .filter(cd::next_attempt_ms.eq(seen_next_ms)),
            )
            .set((
                cd::next_attempt_ms.eq(until_ms),
                cd::attempts.eq(cd::attempts + 1),
            ))
            .execute(c)?);
            Ok(n == 1)
        })
        .await
    }

    async fn retry_ciba_delivery(&self, delivery_id: &str, next_ms: i64) -> StoreResult<()> {
        let id = delivery_id.to_owned();
        self.run_write(move |conn| {
            with_conn!(conn, c => diesel::update(cd::table.find(&id))
                .set(cd::next_attempt_ms.eq(next_ms))
                .execute(c)?);
            Ok(())
        })
        .await
    }

    async fn redeem_ciba_request(
        &self,
        auth_req_id_hash: &str,
        tokens: Vec<TokenRecord>,
    ) -> StoreResult<CibaRedeemed> {
        let hash = auth_req_id_hash.to_owned();
        let rows: Vec<TokenRow> = tokens.into_iter().map(TokenRow::from).collect();
        self.run_write(move |conn| {
            let grants = crate::repo::tokens::grant_ids(&rows);
            with_conn!(conn, c => c.write_tx(|c| {
                if diesel::delete(cr::table.find(&hash)).execute(c)? != 1 {
                    return Ok::<_, Fail>(CibaRedeemed::Gone);
                }
                if !crate::repo::tokens::grants_usable(c, &grants)? {
                    return Ok(CibaRedeemed::GrantRevoked);
                }
                for row in &rows {
                    diesel::insert_into(crate::schema::tokens::table)
                        .values(row)
                        .execute(c)?;
                }
                Ok(CibaRedeemed::Redeemed)
            }))
        })
        .await
    }

    async fn drop_ciba_delivery(&self, delivery_id: &str) -> StoreResult<()> {
        let id = delivery_id.to_owned();
        self.run_write(move |conn| {
            with_conn!(conn, c => diesel::delete(cd::table.find(&id)).execute(c)?);
            Ok(())
        })
        .await
    }
}

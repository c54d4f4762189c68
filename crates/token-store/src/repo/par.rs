use diesel::prelude::*;
use oauth_core::storage::{PushedRequestRecord, PushedRequestRepository, StoreResult};

use crate::Store;
use crate::conn::AnyConnection;
use crate::db::with_conn;
use crate::error::Fail;
use crate::models::PushedRequestRow;
use crate::schema::pushed_requests as pr;
use crate::written::SpendPushedRequest;

impl PushedRequestRepository for Store {
    async fn put_pushed_request(&self, rec: PushedRequestRecord) -> StoreResult<()> {
        let row = PushedRequestRow::from(rec);
        self.run_write(move |conn| {
            with_conn!(conn, c => diesel::insert_into(pr::table).values(&row).execute(c)?);
            Ok(())
        })
        .await
    }

    async fn get_pushed_request(
        &self,
        request_uri_hash: &str,
        now: i64,
    ) -> StoreResult<Option<PushedRequestRecord>> {
        let hash = request_uri_hash.to_owned();
        self.run(move |conn| find_unspent(conn, &hash, now)).await
    }

    /// RFC 9126 §4: a `request_uri` is one-time use. The conditional update
    /// is the whole decision; the row stays until it expires.
    async fn consume_pushed_request(&self, request_uri_hash: &str, now: i64) -> StoreResult<bool> {
        let hash = request_uri_hash.to_owned();
        self.run_write(move |conn| spend(conn, &hash, now)).await
    }
}

/// The pushed request behind `request_uri_hash` if it is unspent and
/// unexpired at `now`.
pub(crate) fn find_unspent(
    conn: &mut AnyConnection,
    request_uri_hash: &str,
    now: i64,
) -> Result<Option<PushedRequestRecord>, Fail> {
    let row: Option<PushedRequestRow> = with_conn!(conn, c => pr::table
        .find(request_uri_hash)
        .filter(pr::consumed_at.is_null())
        .filter(pr::expires_at.gt(now))
        .select(PushedRequestRow::as_select())
        .get_result(c)
        .optional()?);
    Ok(row.map(PushedRequestRecord::from))
}

/// Spends the pushed request (unspent and unexpired at `now`): whether this
/// call did. Also a step of a code's issuance
/// (`AuthorizationCodeRepository::put_grant_and_code`).
pub(crate) fn spend(
    conn: &mut AnyConnection,
    request_uri_hash: &str,
    now: i64,
) -> Result<bool, Fail> {
    let spend = SpendPushedRequest {
        request_uri_hash,
        now,
    };
    let n = with_conn!(conn, c => spend.execute(c)?);
    Ok(n == 1)
}

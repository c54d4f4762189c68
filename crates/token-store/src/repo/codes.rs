use diesel::prelude::*;
use oauth_core::storage::{
    AuthorizationCodeRecord, AuthorizationCodeRepository, CodeRedemption, StoreResult,
};

use crate::Store;
use crate::db::{Db, with_conn};
use crate::models::CodeRow;
use crate::schema::authorization_codes as ac;

impl AuthorizationCodeRepository for Store {
    async fn put_code(&self, code: AuthorizationCodeRecord) -> StoreResult<()> {
        let row = CodeRow::from(code);
        self.run_write(move |conn| {
            with_conn!(conn, c => diesel::insert_into(ac::table).values(&row).execute(c)?);
            Ok(())
        })
        .await
    }

    /// The conditional update (`consumed_at IS NULL AND expires_at > now`)
    /// picks the single winner; concurrent callers on PostgreSQL wait for the
    /// winner's row lock and then find the code spent. The read after it only
    /// tells the losers apart: spent (reuse, `AlreadyUsed`) or unknown and
    /// expired (`Invalid`).
    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption> {
        let hash = code_hash.to_owned();
        self.run_write(move |conn| {
            let (won, row): (bool, Option<CodeRow>) = with_conn!(conn, c => c.write_tx(|c| {
                let n = diesel::update(
                    ac::table
                        .find(&hash)
                        .filter(ac::consumed_at.is_null())
                        .filter(ac::expires_at.gt(now)),
                )
                .set(ac::consumed_at.eq(Some(now)))
                .execute(c)?;
                let row = ac::table
                    .find(&hash)
                    .select(CodeRow::as_select())
                    .get_result(c)
                    .optional()?;
                Ok((n == 1, row))
            }))?;
            Ok(match row {
                Some(row) if won => CodeRedemption::Redeemed(Box::new(row.into())),
                Some(row) if row.consumed_at.is_some() => CodeRedemption::AlreadyUsed {
                    grant_id: row.grant_id,
                },
                _ => CodeRedemption::Invalid,
            })
        })
        .await
    }
}

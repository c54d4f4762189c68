use diesel::prelude::*;
use oauth_core::storage::{
    AuthorizationCodeRecord, AuthorizationCodeRepository, CodeRedemption, CodeStored, GrantRecord,
    InteractionEnd, RedeemedCode, StoreResult,
};

use crate::Store;
use crate::db::{Db, with_conn};
use crate::models::{CodeRow, GrantRow};
use crate::schema::{
    authorization_codes as ac, grants as gr, interactions as ia, pushed_requests as pr,
};

impl AuthorizationCodeRepository for Store {
    async fn put_grant_and_code(
        &self,
        grant: GrantRecord,
        code: AuthorizationCodeRecord,
        end: Option<InteractionEnd>,
    ) -> StoreResult<CodeStored> {
        let (grant, code) = (GrantRow::from(grant), CodeRow::from(code));
        self.run_write(move |conn| {
            with_conn!(conn, c => c.write_tx(|c| {
                if let Some(end) = &end {
                    let taken = diesel::delete(ia::table.find(&end.interaction_hash)).execute(c)?;
                    if taken == 0 {
                        return Ok(CodeStored::InteractionGone);
                    }
                    let spent = diesel::update(
                        pr::table
                            .find(&end.request_uri_hash)
                            .filter(pr::consumed_at.is_null())
                            .filter(pr::expires_at.gt(end.presented_at)),
                    )
                    .set(pr::consumed_at.eq(Some(end.presented_at)))
                    .execute(c)?;
                    if spent == 0 {
                        return Ok(CodeStored::RequestUriGone);
                    }
                }
                diesel::insert_into(gr::table).values(&grant).execute(c)?;
                diesel::insert_into(ac::table).values(&code).execute(c)?;
                Ok(CodeStored::Stored)
            }))
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
            let (won, row, grant): (bool, Option<CodeRow>, Option<GrantRow>) =
                with_conn!(conn, c => c.write_tx(|c| {
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
                // The winner's grant (foreign key: it exists).
                let grant = match &row {
                    Some(r) if n == 1 => Some(
                        gr::table
                            .find(&r.grant_id)
                            .select(GrantRow::as_select())
                            .get_result(c)?,
                    ),
                    _ => None,
                };
                Ok((n == 1, row, grant))
            }))?;
            Ok(match (row, grant) {
                (Some(row), Some(grant)) if won => CodeRedemption::Redeemed(Box::new(RedeemedCode {
                    code: row.into(),
                    grant: grant.into(),
                })),
                (Some(row), _) if row.consumed_at.is_some() => CodeRedemption::AlreadyUsed {
                    grant_id: row.grant_id,
                },
                _ => CodeRedemption::Invalid,
            })
        })
        .await
    }
}

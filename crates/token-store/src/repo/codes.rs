use diesel::prelude::*;
use oauth_core::storage::{
    AuthorizationCodeRecord, AuthorizationCodeRepository, CodeRedemption, CodeStored, GrantRecord,
    InteractionEnd, RedeemedCode, StoreResult,
};

use crate::Store;
use crate::db::{Db, savepoint, with_conn};
use crate::models::{CodeRow, GrantRow};
use crate::schema::{authorization_codes as ac, grants as gr};
use crate::written::SpendCode;

impl AuthorizationCodeRepository for Store {
    async fn put_grant_and_code(
        &self,
        grant: GrantRecord,
        code: AuthorizationCodeRecord,
        end: Option<InteractionEnd>,
    ) -> StoreResult<CodeStored> {
        let (grant, code) = (GrantRow::from(grant), CodeRow::from(code));
        self.run_write(move |conn| {
            savepoint(conn, |conn| {
                if let Some(end) = &end {
                    if !super::sessions::take(conn, &end.interaction_hash)? {
                        return Ok(CodeStored::InteractionGone);
                    }
                    // The interaction stays taken: it is over either way.
                    if !super::par::spend(conn, &end.request_uri_hash, end.presented_at)? {
                        return Ok(CodeStored::RequestUriGone);
                    }
                }
                with_conn!(conn, c => {
                    diesel::insert_into(gr::table).values(&grant).execute(c)?;
                    diesel::insert_into(ac::table).values(&code).execute(c)?;
                });
                Ok(CodeStored::Stored)
            })
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
                let n = SpendCode { code_hash: &hash, now }.execute(c)?;
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

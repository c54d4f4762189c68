use diesel::prelude::*;
use oauth_core::storage::{
    AuthorizationCodeRecord, AuthorizationCodeRepository, CodeLookup, CodeRedeemed, CodeRedemption,
    CodeStored, GrantRecord, InteractionEnd, RedeemedCode, StoreResult, TokenRecord,
};

use crate::Store;
use crate::db::{Db, savepoint, with_conn};
use crate::models::{CodeRow, GrantRow, TokenRow};
use crate::schema::{authorization_codes as ac, grants as gr, tokens as tk};
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

    /// The code and its grant, read on one connection; `Unspent` only while
    /// `consumed_at IS NULL AND expires_at > now`, the condition the
    /// spend checks again.
    async fn find_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeLookup> {
        let hash = code_hash.to_owned();
        self.run(move |conn| {
            Ok(with_conn!(conn, c => {
                let row: Option<CodeRow> = ac::table
                    .find(&hash)
                    .select(CodeRow::as_select())
                    .get_result(c)
                    .optional()?;
                match row {
                    Some(row) if row.consumed_at.is_some() => CodeLookup::AlreadyUsed {
                        grant_id: row.grant_id,
                    },
                    Some(row) if row.expires_at > now => {
                        // Its grant (foreign key: it exists).
                        let grant: GrantRow = gr::table
                            .find(&row.grant_id)
                            .select(GrantRow::as_select())
                            .get_result(c)?;
                        CodeLookup::Unspent(Box::new(RedeemedCode {
                            code: row.into(),
                            grant: grant.into(),
                        }))
                    }
                    _ => CodeLookup::Invalid,
                }
            }))
        })
        .await
    }

    /// The grants of the tokens are held `FOR SHARE` first (the lock order
    /// of db.rs), then the conditional update of the code picks the one
    /// winner, then the tokens go in; losers store nothing and learn
    /// whether the code was spent (a replay) or expired.
    async fn redeem_code_with_tokens(
        &self,
        code_hash: &str,
        now: i64,
        tokens: Vec<TokenRecord>,
    ) -> StoreResult<CodeRedeemed> {
        let hash = code_hash.to_owned();
        let rows: Vec<TokenRow> = tokens.into_iter().map(TokenRow::from).collect();
        self.run_write(move |conn| {
            let grants = super::tokens::grant_ids(&rows);
            Ok(with_conn!(conn, c => c.write_tx(|c| {
                if !super::tokens::grants_usable(c, &grants)? {
                    return Ok(CodeRedeemed::GrantRevoked);
                }
                if (SpendCode { code_hash: &hash, now }).execute(c)? == 0 {
                    let spent: Option<(String, Option<i64>)> = ac::table
                        .find(&hash)
                        .select((ac::grant_id, ac::consumed_at))
                        .get_result(c)
                        .optional()?;
                    return Ok(match spent {
                        Some((grant_id, Some(_))) => CodeRedeemed::AlreadyUsed { grant_id },
                        _ => CodeRedeemed::Invalid,
                    });
                }
                for row in &rows {
                    diesel::insert_into(tk::table).values(row).execute(c)?;
                }
                Ok(CodeRedeemed::Redeemed)
            }))?)
        })
        .await
    }
}

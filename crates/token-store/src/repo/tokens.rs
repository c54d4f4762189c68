use std::collections::BTreeSet;

use diesel::prelude::*;
use oauth_core::storage::{RefreshRotation, StoreResult, TokenKind, TokenRecord, TokenRepository};

use crate::Store;
use crate::conn::AnyConnection;
use crate::db::{Db, with_conn};
use crate::error::Fail;
use crate::models::TokenRow;
use crate::schema::tokens as tk;

/// Distinct grant ids of `rows`, sorted: grants are locked in this order.
pub(crate) fn grant_ids(rows: &[TokenRow]) -> BTreeSet<String> {
    rows.iter().filter_map(|r| r.grant_id.clone()).collect()
}

/// Holds each grant against revocation until the transaction ends and
/// reports whether all of them exist and are unrevoked.
pub(crate) fn grants_usable<C: Db>(c: &mut C, ids: &BTreeSet<String>) -> QueryResult<bool> {
    for id in ids {
        if !c.grant_is_live_shared(id)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The unrevoked, unexpired token whose SHA-256 is `hash`
/// ([`TokenRepository::get_active_token`]).
pub(crate) fn find_active(
    conn: &mut AnyConnection,
    hash: &str,
    now: i64,
) -> Result<Option<TokenRecord>, Fail> {
    let row: Option<TokenRow> = with_conn!(conn, c => tk::table
        .find(hash)
        .filter(tk::revoked_at.is_null())
        .filter(tk::expires_at.gt(now))
        .select(TokenRow::as_select())
        .get_result(c)
        .optional()?);
    row.map(TokenRecord::try_from)
        .transpose()
        .map_err(Fail::Store)
}

impl TokenRepository for Store {
    /// Returns `false`, storing nothing, when a grant the tokens name is
    /// revoked or missing. The grant stays locked until the tokens are in, so
    /// a revocation either precedes this check or sees the new tokens.
    async fn put_tokens(&self, tokens: Vec<TokenRecord>) -> StoreResult<bool> {
        let rows: Vec<TokenRow> = tokens.into_iter().map(TokenRow::from).collect();
        if rows.is_empty() {
            return Ok(true);
        }
        self.run_write(move |conn| {
            let grants = grant_ids(&rows);
            with_conn!(conn, c => c.write_tx(|c| {
                if !grants_usable(c, &grants)? {
                    return Ok(false);
                }
                for row in &rows {
                    diesel::insert_into(tk::table).values(row).execute(c)?;
                }
                Ok(true)
            }))
        })
        .await
    }

    async fn get_active_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Option<TokenRecord>> {
        let hash = token_hash.to_owned();
        self.run(move |conn| find_active(conn, &hash, now)).await
    }

    /// RFC 7009 §2.1. With `cascade`, revoking a refresh token revokes every
    /// token of its grant (the grant itself stays: revoking a token is not
    /// withdrawing consent). Returns whether this call revoked anything.
    async fn revoke_token(&self, token_hash: &str, cascade: bool, now: i64) -> StoreResult<bool> {
        let hash = token_hash.to_owned();
        self.run_write(move |conn| {
            let hash = hash.as_str();
            with_conn!(conn, c => c.write_tx(|c| {
                let found: Option<(String, Option<String>)> = tk::table
                    .find(hash)
                    .select((tk::kind, tk::grant_id))
                    .get_result(c)
                    .optional()?;
                let Some((kind, grant_id)) = found else {
                    return Ok(false);
                };
                let n = match grant_id {
                    Some(grant_id) if cascade && kind == TokenKind::Refresh.as_str() => {
                        c.lock_grant(&grant_id)?;
                        diesel::update(
                            tk::table
                                .filter(tk::grant_id.eq(&grant_id))
                                .filter(tk::revoked_at.is_null()),
                        )
                        .set(tk::revoked_at.eq(Some(now)))
                        .execute(c)?
                    }
                    _ => diesel::update(tk::table.find(hash).filter(tk::revoked_at.is_null()))
                        .set(tk::revoked_at.eq(Some(now)))
                        .execute(c)?,
                };
                Ok(n > 0)
            }))
        })
        .await
    }

    /// RFC 9700 §4.14.2 rotation. The conditional revoke of the old refresh
    /// token (unrevoked, unexpired) is the single winner; the replacements go
    /// in within the same transaction, under the grant's share lock, so a
    /// concurrent revocation of the grant either wins or revokes them too.
    /// `Rotated` carries the old token as it now stands (revoked at `now`).
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        replacement: Vec<TokenRecord>,
        now: i64,
    ) -> StoreResult<RefreshRotation> {
        let old_hash = old_hash.to_owned();
        let rows: Vec<TokenRow> = replacement.into_iter().map(TokenRow::from).collect();
        self.run_write(move |conn| {
            let old_hash = old_hash.as_str();
            let old: Option<TokenRow> = with_conn!(conn, c => c.write_tx(|c| {
                let old: Option<TokenRow> = tk::table
                    .find(old_hash)
                    .select(TokenRow::as_select())
                    .get_result(c)
                    .optional()?;
                let Some(mut old) = old else {
                    return Ok(None);
                };
                if old.kind != TokenKind::Refresh.as_str() {
                    return Ok(None);
                }
                let mut grants = grant_ids(&rows);
                grants.extend(old.grant_id.clone());
                if !grants_usable(c, &grants)? {
                    return Ok(None);
                }
                let n = diesel::update(
                    tk::table
                        .find(old_hash)
                        .filter(tk::revoked_at.is_null())
                        .filter(tk::expires_at.gt(now)),
                )
                .set(tk::revoked_at.eq(Some(now)))
                .execute(c)?;
                if n != 1 {
                    return Ok(None);
                }
                for row in &rows {
                    diesel::insert_into(tk::table).values(row).execute(c)?;
                }
                old.revoked_at = Some(now);
                Ok(Some(old))
            }))?;
            match old {
                Some(old) => Ok(RefreshRotation::Rotated(Box::new(
                    TokenRecord::try_from(old).map_err(Fail::Store)?,
                ))),
                None => Ok(RefreshRotation::Invalid),
            }
        })
        .await
    }

    /// Deletes expired tokens, and along with them the other expired
    /// short-lived rows (see [`Store::purge_stale`]); the count is tokens
    /// only.
    async fn purge_expired_tokens(&self, now: i64) -> StoreResult<u64> {
        let report = self.purge_stale(now).await?;
        tracing::debug!(?report, "purged expired rows");
        Ok(report.tokens)
    }
}

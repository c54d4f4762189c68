use diesel::prelude::*;
use oauth_core::storage::{GrantFilter, GrantRecord, GrantRepository, StoreResult};

use crate::Store;
use crate::conn::AnyConnection;
use crate::db::{Db, with_conn};
use crate::error::Fail;
use crate::models::{GrantChanges, GrantRow};
use crate::schema::{grants as gr, tokens as tk};

/// The grant `grant_id`, revoked or not.
pub(crate) fn find(conn: &mut AnyConnection, grant_id: &str) -> Result<Option<GrantRecord>, Fail> {
    let row: Option<GrantRow> = with_conn!(conn, c => gr::table
        .find(grant_id)
        .select(GrantRow::as_select())
        .get_result(c)
        .optional()?);
    Ok(row.map(GrantRecord::from))
}

impl GrantRepository for Store {
    /// Inserts the grant, or updates its client, subject, scope, consent id
    /// and details. A stored revocation is never lifted; a record that
    /// arrives revoked revokes the stored grant and its tokens.
    async fn put_grant(&self, grant: GrantRecord) -> StoreResult<()> {
        let row = GrantRow::from(grant);
        self.run_write(move |conn| {
            with_conn!(conn, c => c.write_tx(|c| {
                diesel::insert_into(gr::table)
                    .values(&row)
                    .on_conflict(gr::grant_id)
                    .do_update()
                    .set(GrantChanges::from(&row))
                    .execute(c)?;
                if let Some(at) = row.revoked_at {
                    diesel::update(gr::table.find(&row.grant_id).filter(gr::revoked_at.is_null()))
                        .set(gr::revoked_at.eq(Some(at)))
                        .execute(c)?;
                    diesel::update(
                        tk::table
                            .filter(tk::grant_id.eq(&row.grant_id))
                            .filter(tk::revoked_at.is_null()),
                    )
                    .set(tk::revoked_at.eq(Some(at)))
                    .execute(c)?;
                }
                Ok(())
            }))
        })
        .await
    }

    async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let grant_id = grant_id.to_owned();
        self.run(move |conn| find(conn, &grant_id)).await
    }

    /// Grants matching every given field, oldest first (revoked ones
    /// included: the consent API shows them).
    async fn list_grants(&self, filter: GrantFilter) -> StoreResult<Vec<GrantRecord>> {
        self.run(move |conn| {
            let rows: Vec<GrantRow> = with_conn!(conn, c => {
                let mut q = gr::table.select(GrantRow::as_select()).into_boxed();
                if let Some(v) = &filter.consent_id {
                    q = q.filter(gr::consent_id.eq(v));
                }
                if let Some(v) = &filter.client_id {
                    q = q.filter(gr::client_id.eq(v));
                }
                if let Some(v) = &filter.sub {
                    q = q.filter(gr::sub.eq(v));
                }
                q.order((gr::created_at.asc(), gr::grant_id.asc())).load(c)?
            });
            Ok(rows.into_iter().map(GrantRecord::from).collect())
        })
        .await
    }

    /// Returns how many grants this call revoked (0 or 1; 0 also when the
    /// grant was already revoked or does not exist). Tokens are revoked in
    /// either case, which makes a retry harmless.
    async fn revoke_grant(&self, grant_id: &str, now: i64) -> StoreResult<u64> {
        let grant_id = grant_id.to_owned();
        self.run_write(move |conn| {
            let id = grant_id.as_str();
            with_conn!(conn, c => c.write_tx(|c| {
                // The grant row first (lock order, see db.rs).
                let n = diesel::update(gr::table.find(id).filter(gr::revoked_at.is_null()))
                    .set(gr::revoked_at.eq(Some(now)))
                    .execute(c)?;
                diesel::update(tk::table.filter(tk::grant_id.eq(id)).filter(tk::revoked_at.is_null()))
                    .set(tk::revoked_at.eq(Some(now)))
                    .execute(c)?;
                Ok(n as u64)
            }))
        })
        .await
    }

    /// Returns how many grants this call revoked.
    async fn revoke_by_consent(&self, consent_id: &str, now: i64) -> StoreResult<u64> {
        let consent_id = consent_id.to_owned();
        self.run_write(move |conn| {
            let id = consent_id.as_str();
            with_conn!(conn, c => c.write_tx(|c| {
                c.lock_grants_of_consent(id)?;
                let n = diesel::update(
                    gr::table.filter(gr::consent_id.eq(id)).filter(gr::revoked_at.is_null()),
                )
                .set(gr::revoked_at.eq(Some(now)))
                .execute(c)?;
                let of_consent = gr::table
                    .filter(gr::consent_id.eq(id))
                    .select(gr::grant_id.nullable());
                diesel::update(
                    tk::table
                        .filter(tk::revoked_at.is_null())
                        .filter(tk::grant_id.eq_any(of_consent)),
                )
                .set(tk::revoked_at.eq(Some(now)))
                .execute(c)?;
                Ok(n as u64)
            }))
        })
        .await
    }
}

impl Store {
    /// Grants not revoked, for the `strongroom_active_grants` gauge: one
    /// COUNT on a reader connection, read at scrape time. Grants are never
    /// deleted, so this scans the table; at a scrape every 15 s even a few
    /// million rows cost a small share of one reader.
    ///
    /// # Errors
    ///
    /// As for any query.
    pub async fn count_active_grants(&self) -> StoreResult<u64> {
        self.run(|conn| {
            let n: i64 = with_conn!(conn, c => gr::table
                .filter(gr::revoked_at.is_null())
                .count()
                .get_result(c)?);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}

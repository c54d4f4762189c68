use diesel::prelude::*;
use oauth_core::storage::{ClientRecord, ClientRepository, ReplayEntry, StoreResult};

use crate::Store;
use crate::client_cache::ClientCache;
use crate::conn::AnyConnection;
use crate::db::{Db, with_conn};
use crate::error::Fail;
use crate::models::ClientRow;
use crate::schema::{
    authorization_codes as ac, ciba_requests as cr, clients as cl, grants as gr,
    interactions as ia, pushed_requests as pr, tokens as tk,
};

impl ClientRepository for Store {
    /// From memory when this store claimed its database and read the
    /// registration since the last client write (`client_cache`).
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let cache = self.clients.as_deref();
        if let Some(record) = cache.and_then(|c| c.get(client_id)) {
            return Ok(Some(record));
        }
        // Taken before the read: a write that lands meanwhile outdates it.
        let generation = cache.map(ClientCache::generation);
        let id = client_id.to_owned();
        let found = self.run(move |conn| find(conn, &id)).await?;
        if let (Some(cache), Some(generation), Some(record)) = (cache, generation, &found) {
            cache.put(generation, record);
        }
        Ok(found)
    }

    async fn put_client(&self, client: ClientRecord) -> StoreResult<()> {
        let row = ClientRow::from(client);
        self.run_write_then(
            move |conn| {
                with_conn!(conn, c => diesel::insert_into(cl::table)
                    .values(&row)
                    .on_conflict(cl::client_id)
                    .do_update()
                    .set(&row)
                    .execute(c)?);
                Ok(())
            },
            self.registrations_changed(),
        )
        .await
    }

    /// Revokes the client's grants and every token issued to it (with or
    /// without a grant), deletes its codes, pushed requests, CIBA requests
    /// and pending interactions, then the client: one transaction. The
    /// cleanup runs even when the client row is already gone, so a retried
    /// delete finishes what it started.
    /// The entries ride with the client's insert ([`Store::carrying_replay`]).
    async fn put_client_spending(
        &self,
        client: ClientRecord,
        spend: Vec<ReplayEntry>,
        now: i64,
    ) -> StoreResult<()> {
        self.carrying_replay(spend, now).put_client(client).await
    }

    async fn delete_client(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        let client_id = client_id.to_owned();
        self.run_write_then(
            move |conn| delete_rows(conn, &client_id, now),
            self.registrations_changed(),
        )
        .await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.run(|conn| {
            let rows: Vec<ClientRow> = with_conn!(conn, c => cl::table
                .order(cl::client_id)
                .select(ClientRow::as_select())
                .load(c)?);
            Ok(rows.into_iter().map(ClientRecord::from).collect())
        })
        .await
    }
}

/// The client registered as `client_id`, if any. Also a step of the reads
/// that fetch a client with what refers to it.
pub(crate) fn find(
    conn: &mut AnyConnection,
    client_id: &str,
) -> Result<Option<ClientRecord>, Fail> {
    let row: Option<ClientRow> = with_conn!(conn, c => cl::table
        .find(client_id)
        .select(ClientRow::as_select())
        .get_result(c)
        .optional()?);
    Ok(row.map(ClientRecord::from))
}

/// The body of [`ClientRepository::delete_client`], also a step of the
/// admin API's conditional delete: one transaction (a savepoint inside an
/// open one).
pub(crate) fn delete_rows(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, Fail> {
    with_conn!(conn, c => c.write_tx(|c| {
        c.lock_grants_of_client(id)?;
        diesel::update(gr::table.filter(gr::client_id.eq(id)).filter(gr::revoked_at.is_null()))
            .set(gr::revoked_at.eq(Some(now)))
            .execute(c)?;
        let of_client = gr::table
            .filter(gr::client_id.eq(id))
            .select(gr::grant_id.nullable());
        diesel::update(
            tk::table
                .filter(tk::revoked_at.is_null())
                .filter(tk::client_id.eq(id).or(tk::grant_id.eq_any(of_client))),
        )
        .set(tk::revoked_at.eq(Some(now)))
        .execute(c)?;
        diesel::delete(ac::table.filter(ac::client_id.eq(id))).execute(c)?;
        diesel::delete(pr::table.filter(pr::client_id.eq(id))).execute(c)?;
        diesel::delete(cr::table.filter(cr::client_id.eq(id))).execute(c)?;
        diesel::delete(ia::table.filter(ia::client_id.eq(id))).execute(c)?;
        let n = diesel::delete(cl::table.find(id)).execute(c)?;
        Ok(n == 1)
    }))
}

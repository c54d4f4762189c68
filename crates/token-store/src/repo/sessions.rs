use diesel::prelude::*;
use oauth_core::storage::{
    ClientRecord, InteractionRecord, SessionRecord, SessionRepository, StoreResult,
};

use crate::Store;
use crate::conn::AnyConnection;
use crate::db::with_conn;
use crate::error::Fail;
use crate::models::{InteractionRow, SessionRow};
use crate::schema::{interactions as ia, sessions as se};
use crate::written::PutInteraction;

impl SessionRepository for Store {
    /// Inserts or replaces the session.
    async fn put_session(&self, s: SessionRecord) -> StoreResult<()> {
        let row = SessionRow::from(s);
        self.run_write(move |conn| {
            with_conn!(conn, c => diesel::insert_into(se::table)
                .values(&row)
                .on_conflict(se::session_hash)
                .do_update()
                .set(&row)
                .execute(c)?);
            Ok(())
        })
        .await
    }

    async fn get_session(
        &self,
        session_hash: &str,
        now: i64,
    ) -> StoreResult<Option<SessionRecord>> {
        let hash = session_hash.to_owned();
        self.run(move |conn| find_session(conn, &hash, now)).await
    }

    async fn delete_session(&self, session_hash: &str) -> StoreResult<()> {
        let hash = session_hash.to_owned();
        self.run_write(move |conn| {
            with_conn!(conn, c => diesel::delete(se::table.find(&hash)).execute(c)?);
            Ok(())
        })
        .await
    }

    /// Inserts or replaces the interaction (its state advances as login and
    /// consent progress).
    async fn put_interaction(&self, i: InteractionRecord) -> StoreResult<()> {
        let row = InteractionRow::from(i);
        self.run_write(move |conn| {
            let put = PutInteraction {
                interaction_id: &row.interaction_id,
                client_id: &row.client_id,
                state: &row.state,
                expires_at: row.expires_at,
            };
            with_conn!(conn, c => put.execute(c)?);
            Ok(())
        })
        .await
    }

    async fn get_interaction(
        &self,
        interaction_id: &str,
        now: i64,
    ) -> StoreResult<Option<(InteractionRecord, Option<ClientRecord>)>> {
        let id = interaction_id.to_owned();
        self.run(move |conn| {
            let row: Option<InteractionRow> = with_conn!(conn, c => ia::table
                .find(&id)
                .filter(ia::expires_at.gt(now))
                .select(InteractionRow::as_select())
                .get_result(c)
                .optional()?);
            let Some(row) = row else { return Ok(None) };
            let client = super::clients::find(conn, &row.client_id)?;
            Ok(Some((InteractionRecord::from(row), client)))
        })
        .await
    }

    /// The delete's row count picks the one caller that may continue.
    async fn take_interaction(&self, interaction_id: &str) -> StoreResult<bool> {
        let id = interaction_id.to_owned();
        self.run_write(move |conn| take(conn, &id)).await
    }
}

/// The session behind `session_hash` if it is unexpired at `now`.
pub(crate) fn find_session(
    conn: &mut AnyConnection,
    session_hash: &str,
    now: i64,
) -> Result<Option<SessionRecord>, Fail> {
    let row: Option<SessionRow> = with_conn!(conn, c => se::table
        .find(session_hash)
        .filter(se::expires_at.gt(now))
        .select(SessionRow::as_select())
        .get_result(c)
        .optional()?);
    Ok(row.map(SessionRecord::from))
}

/// Deletes the interaction: whether this call did. Also a step of a code's
/// issuance (`AuthorizationCodeRepository::put_grant_and_code`).
pub(crate) fn take(conn: &mut AnyConnection, interaction_id: &str) -> Result<bool, Fail> {
    let n = with_conn!(conn, c => diesel::delete(ia::table.find(interaction_id)).execute(c)?);
    Ok(n == 1)
}

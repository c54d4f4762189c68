//! The reads of the endpoints that are handed a token (introspection,
//! userinfo), in one trip to the database with the request's single-use
//! values.

use oauth_core::storage::{ClientRecord, GrantRecord, StoreResult, TokenRecord};

use crate::Store;
use crate::conn::AnyConnection;
use crate::error::Fail;

/// What an endpoint handed a token reads: the token and, when asked, its
/// grant and its client (userinfo: the claims, and how the client
/// registered to receive them, OIDC Registration §2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenReads {
    /// The token, if unrevoked and unexpired (as `get_active_token`).
    pub token: Option<TokenRecord>,
    /// The token's grant, revoked or not (as `get_grant`), when asked for
    /// and the token has one.
    pub grant: Option<GrantRecord>,
    /// The token's client, with the grant (from the registration cache
    /// on a claimed SQLite database, else read in the same trip).
    pub client: Option<ClientRecord>,
}

impl Store {
    /// The token whose SHA-256 is `token_hash` and, with `grant`, its
    /// grant and client, read in one trip to the database that also records the
    /// single-use values this handle carries ([`Store::carrying_replay`]).
    /// On a claimed SQLite database the client is taken from the
    /// registration cache after that trip (a read of its own only when the
    /// cache does not hold it).
    ///
    /// With values to record, the trip is the writer's, and the reads run
    /// in the same transaction as the record, after it; the answer comes
    /// once it has committed. Without, it is a plain read on the pool. A
    /// request that authenticated its caller with a client assertion, or
    /// presented a DPoP proof, thus spends one trip instead of a write and
    /// then a read.
    ///
    /// # Errors
    ///
    /// [`StoreError::Replayed`](oauth_core::storage::StoreError::Replayed)
    /// when a carried value was used before (nothing is recorded or read);
    /// `Unavailable` or `Backend` when the database fails.
    pub async fn token_reads(
        &self,
        token_hash: &str,
        now: i64,
        grant: bool,
    ) -> StoreResult<TokenReads> {
        let token_hash = token_hash.to_owned();
        // A server that holds its SQLite database alone keeps registrations
        // in memory (`client_cache`): the client is taken from there after
        // the trip, so the single writer's transaction is not lengthened by
        // a read that memory answers. Elsewhere it rides in the same trip.
        let cached = self.clients.is_some();
        let with_client = grant && !cached;
        let read = move |conn: &mut AnyConnection| read(conn, &token_hash, now, grant, with_client);
        let mut reads = if self.carries_replay() {
            self.run_write(read).await
        } else {
            self.run(read).await
        }?;
        if grant
            && cached
            && let Some(t) = &reads.token
        {
            use oauth_core::storage::ClientRepository;
            reads.client = self.get_client(&t.client_id).await?;
        }
        Ok(reads)
    }
}

fn read(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: i64,
    with_grant: bool,
    with_client: bool,
) -> Result<TokenReads, Fail> {
    let token = super::tokens::find_active(conn, token_hash, now)?;
    let grant = match token.as_ref().and_then(|t| t.grant_id.as_deref()) {
        Some(id) if with_grant => super::grants::find(conn, id)?,
        _ => None,
    };
    let client = match &token {
        Some(t) if with_client => super::clients::find(conn, &t.client_id)?,
        _ => None,
    };
    Ok(TokenReads {
        token,
        grant,
        client,
    })
}

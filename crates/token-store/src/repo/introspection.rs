//! The reads of the introspection endpoint, in one trip to the database.

use oauth_core::storage::{ClientRecord, StoreResult, TokenRecord};

use crate::Store;

/// What `POST /introspect` reads (RFC 7662 §2.1): the caller's
/// registration and the token it asks about.
#[derive(Debug, Clone, Default)]
pub struct IntrospectionReads {
    /// The registration of the client the request names, if any.
    pub client: Option<ClientRecord>,
    /// The token, if unrevoked and unexpired.
    pub token: Option<TokenRecord>,
}

impl Store {
    /// The introspection endpoint's two reads on one pooled connection, in
    /// one hop to the blocking pool instead of two: `get_client(client_id)`
    /// (skipped without a `client_id`) and `get_active_token(token_hash)`.
    /// The token is read before the caller is authenticated; the endpoint
    /// must not answer until it is.
    ///
    /// # Errors
    ///
    /// `Unavailable` or `Backend` when the database fails.
    pub async fn introspection_reads(
        &self,
        client_id: Option<&str>,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<IntrospectionReads> {
        let (client_id, token_hash) = (client_id.map(str::to_owned), token_hash.to_owned());
        self.run(move |conn| {
            Ok(IntrospectionReads {
                client: match client_id {
                    Some(id) => super::clients::find(conn, &id)?,
                    None => None,
                },
                token: super::tokens::find_active(conn, &token_hash, now)?,
            })
        })
        .await
    }
}

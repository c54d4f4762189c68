//! The reads of the authorization endpoint, in one trip to the database.

use oauth_core::storage::{ClientRecord, PushedRequestRecord, SessionRecord, StoreResult};

use crate::Store;

/// What `GET /authorize` reads (RFC 9126 §4): the pushed request behind
/// the `request_uri`, the client that presents it and the browser's
/// session.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeReads {
    /// The pushed request, if unspent and unexpired.
    pub pushed: Option<PushedRequestRecord>,
    /// The registration of the presenting client.
    pub client: Option<ClientRecord>,
    /// The browser's session, if it sent one that is unexpired.
    pub session: Option<SessionRecord>,
}

impl Store {
    /// The authorization endpoint's three reads on one pooled connection,
    /// in one hop to the blocking pool instead of three. Each read is the
    /// one its repository method makes (`get_pushed_request`,
    /// `get_client`, `get_session`); a read that finds nothing is `None`.
    ///
    /// # Errors
    ///
    /// `Unavailable` or `Backend` when the database fails.
    pub async fn authorize_reads(
        &self,
        request_uri_hash: &str,
        client_id: &str,
        session_hash: Option<&str>,
        now: i64,
    ) -> StoreResult<AuthorizeReads> {
        let (request_uri_hash, client_id) = (request_uri_hash.to_owned(), client_id.to_owned());
        let session_hash = session_hash.map(str::to_owned);
        self.run(move |conn| {
            Ok(AuthorizeReads {
                pushed: super::par::find_unspent(conn, &request_uri_hash, now)?,
                client: super::clients::find(conn, &client_id)?,
                session: match session_hash {
                    Some(h) => super::sessions::find_session(conn, &h, now)?,
                    None => None,
                },
            })
        })
        .await
    }
}

//! The single-use checks of one request, recorded with its first write.
//!
//! A token or PAR request carries a DPoP proof and a client assertion, each
//! with a `jti` that must be recorded as used (RFC 9449 §11.1, RFC 7523 §3).
//! Recorded one by one, that is two writes, each waiting its turn for the
//! database, before the request's own. Run the checks against a
//! [`DeferredReplay`] instead: it collects the entries, and the store
//! records them in the same transaction as the request's first write
//! ([`DeferredReplay::into_entries`], then
//! `token_store::Store::carrying_replay`), all or none with it. A value
//! already used fails that write with
//! [`StoreError::Replayed`](crate::storage::StoreError::Replayed), which
//! converts to the error its own check gives.
//!
//! The checks see every value as unused until then. Nothing is recorded for
//! a request that fails a check, so a valid proof is not spent by a failure
//! elsewhere in the same request (e.g. a DPoP proof sent with a wrong
//! client assertion). Once they all pass, the entries are recorded whatever
//! the request's outcome (`token_store::Store::settle_replay` when it failed
//! before writing), so a verified assertion or proof cannot be replayed
//! with another body.

use std::sync::{Mutex, PoisonError};

use crate::error::OAuthError;
use crate::storage::{
    ClientRecord, ClientRepository, ReplayCache, ReplayEntry, ReplayKind, StoreResult,
};

/// A store whose [`ReplayCache`] collects entries instead of writing them;
/// every other call goes to the store.
pub struct DeferredReplay<'a, S> {
    store: &'a S,
    entries: Mutex<Vec<ReplayEntry>>,
}

impl<'a, S> DeferredReplay<'a, S> {
    pub fn new(store: &'a S) -> Self {
        DeferredReplay {
            store,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The collected entries, for a store to record with its next write
    /// (`token_store::Store::carrying_replay`) instead of on their own.
    #[must_use]
    pub fn into_entries(self) -> Vec<ReplayEntry> {
        self.entries
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a refused replay and reports it as a security event
/// (docs/operations.md, `replay_refused`). The value itself is never
/// logged: it may be a hash of a client's secret material.
pub(crate) fn refused(kind: ReplayKind) {
    metrics::counter!(crate::telemetry::REPLAYS_REFUSED, "kind" => kind.as_str()).increment(1);
    tracing::warn!(
        target: "strongroom::security",
        event = "replay_refused",
        kind = kind.as_str(),
        "a single-use value was presented again"
    );
}

/// The error of the check that recorded `e`, for a value used before.
pub(crate) fn replay_error(e: &ReplayEntry) -> OAuthError {
    refused(e.kind);
    match e.kind {
        ReplayKind::DpopProof => crate::sender_constraint::dpop::replayed(),
        // Entries are `client_id:jti`.
        ReplayKind::ClientAssertion => crate::client_auth::assertion_replayed(
            e.value.split_once(':').map_or("-", |(client, _)| client),
        ),
        ReplayKind::RequestObject => crate::request::request_object::replayed(),
        // A signed registration request (RFC 7591 §3.2.2).
        ReplayKind::Registration => OAuthError::new(
            crate::error::ErrorCode::InvalidClientMetadata,
            "the registration request's jti was already used: sign a new request with a fresh jti",
        ),
        ReplayKind::HookResult => {
            OAuthError::invalid_request("a single-use value has already been used")
        }
    }
}

impl<S: ReplayCache> ReplayCache for DeferredReplay<'_, S> {
    /// Collects the entries and answers "none in use" (so `consume_once`
    /// answers "first use"); the write that records them decides.
    async fn consume_all(
        &self,
        entries: Vec<ReplayEntry>,
        _now: i64,
    ) -> StoreResult<Option<usize>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(entries);
        Ok(None)
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        self.store.purge_expired(now).await
    }
}

impl<S: ClientRepository> ClientRepository for DeferredReplay<'_, S> {
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.store.get_client(client_id).await
    }

    async fn put_client(&self, client: ClientRecord) -> StoreResult<()> {
        self.store.put_client(client).await
    }

    async fn delete_client(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        self.store.delete_client(client_id, now).await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.store.list_clients().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_auth::test_support::MemStore;
    use crate::error::ErrorCode;
    use crate::storage::StoreError;

    const NOW: i64 = 1_700_000_000;

    fn entry(kind: ReplayKind, value: &str) -> ReplayEntry {
        ReplayEntry {
            kind,
            value: value.into(),
            expires_at: NOW + 60,
        }
    }

    #[tokio::test]
    async fn checks_collect_their_entries_in_order_and_write_nothing() {
        let store = MemStore::default();
        let r = DeferredReplay::new(&store);
        for (kind, value) in [
            (ReplayKind::DpopProof, "jkt:p1"),
            (ReplayKind::ClientAssertion, "c1:j1"),
        ] {
            assert!(r.consume_once(kind, value, NOW + 60, NOW).await.unwrap());
        }
        let wanted = vec![
            entry(ReplayKind::DpopProof, "jkt:p1"),
            entry(ReplayKind::ClientAssertion, "c1:j1"),
        ];
        assert_eq!(r.into_entries(), wanted);
        // Nothing reached the store.
        assert_eq!(store.consume_all(wanted, NOW).await.unwrap(), None);
    }

    /// The provided `put_client_spending`: the client is stored only when
    /// its entries were unused.
    #[tokio::test]
    async fn a_client_is_stored_only_with_unused_entries() {
        use crate::storage::{ClientRecord, ClientRepository};
        let store = MemStore::default();
        let rec = |id: &str| ClientRecord {
            client_id: id.into(),
            metadata: "{}".into(),
            secret_hash: None,
            registration_token_hash: None,
            software_id: None,
            origin: "dynamic".into(),
            created_at: NOW,
            updated_at: NOW,
        };
        let jti = || vec![entry(ReplayKind::Registration, "sw:j1")];
        store
            .put_client_spending(rec("c1"), jti(), NOW)
            .await
            .unwrap();
        let err = store
            .put_client_spending(rec("c2"), jti(), NOW)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Replayed(entry(ReplayKind::Registration, "sw:j1"))
        );
        assert!(store.get_client("c1").await.unwrap().is_some());
        assert_eq!(store.get_client("c2").await.unwrap(), None);
    }

    #[test]
    fn a_replayed_entry_answers_as_its_own_check() {
        let answer = |kind, value| OAuthError::from(StoreError::Replayed(entry(kind, value)));
        let e = answer(ReplayKind::ClientAssertion, "c1:j1");
        assert_eq!(e.code, ErrorCode::InvalidClient);
        assert_eq!(
            e.description.as_deref(),
            Some("client assertion has already been used")
        );
        let e = answer(ReplayKind::DpopProof, "jkt:p2");
        assert_eq!(e.code, ErrorCode::InvalidDpopProof);
        let e = answer(ReplayKind::RequestObject, "c1:h");
        assert_eq!(e.code, ErrorCode::InvalidRequestObject);
        let e = answer(ReplayKind::Registration, "r");
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        assert!(e.description.as_deref().unwrap().contains("jti"));
        let e = answer(ReplayKind::HookResult, "h");
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }
}

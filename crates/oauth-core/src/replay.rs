//! The single-use checks of one request, recorded in one write.
//!
//! A token or PAR request carries a DPoP proof and a client assertion, each
//! with a `jti` that must be recorded as used (RFC 9449 §11.1, RFC 7523 §3).
//! Recorded one by one, that is two writes, each waiting its turn for the
//! database. Run the checks against a [`DeferredReplay`] instead and
//! [`commit`](DeferredReplay::commit) once they all passed: the entries go
//! to the store together ([`ReplayCache::consume_all`]), all or none, and a
//! value already used is refused with the error its own check gives.
//!
//! Until `commit`, the checks see every value as unused; a request is only
//! acted on after `commit` succeeds. Nothing is recorded for a request that
//! fails a check, so a valid proof is not spent by a failure elsewhere in
//! the same request (e.g. a DPoP proof sent with a wrong client assertion).
//!
//! A store can do one better and record the entries in the same write as
//! the request's own first write ([`DeferredReplay::into_entries`], then
//! `token_store::Store::carrying_replay`): one trip to the database instead
//! of two, and still all or none. That write then fails with
//! [`StoreError::Replayed`](crate::storage::StoreError::Replayed), which
//! converts to the same errors as `commit`'s.

use std::sync::{Mutex, PoisonError};

use crate::error::OAuthError;
use crate::storage::{
    ClientRecord, ClientRepository, ReplayCache, ReplayEntry, ReplayKind, StoreResult,
};

/// A store whose [`ReplayCache::consume_once`] collects instead of writing;
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
        self.take()
    }

    fn take(&self) -> Vec<ReplayEntry> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<S: ReplayCache> DeferredReplay<'_, S> {
    /// Records every collected value as used, in one write. A value used
    /// before (the first, in the order the checks ran) is answered with its
    /// check's own error, and nothing is recorded.
    ///
    /// # Errors
    ///
    /// That check's error (`invalid_dpop_proof`, `invalid_client`,
    /// `invalid_request_object`), or the store's failure.
    pub async fn commit(self, now: i64) -> Result<(), OAuthError> {
        let entries = self.take();
        if entries.is_empty() {
            return Ok(());
        }
        match self.store.consume_all(entries.clone(), now).await? {
            None => Ok(()),
            Some(i) => Err(replay_error(&entries[i])),
        }
    }
}

/// The error of the check that recorded `e`, for a value used before.
pub(crate) fn replay_error(e: &ReplayEntry) -> OAuthError {
    match e.kind {
        ReplayKind::DpopProof => crate::sender_constraint::dpop::replayed(),
        // Entries are `client_id:jti`.
        ReplayKind::ClientAssertion => crate::client_auth::assertion_replayed(
            e.value.split_once(':').map_or("-", |(client, _)| client),
        ),
        ReplayKind::RequestObject => crate::request::request_object::replayed(),
        ReplayKind::Registration | ReplayKind::HookResult => {
            OAuthError::invalid_request("a single-use value has already been used")
        }
    }
}

impl<S: ReplayCache> ReplayCache for DeferredReplay<'_, S> {
    /// Collects the entry and answers "first use"; [`DeferredReplay::commit`]
    /// decides.
    async fn consume_once(
        &self,
        kind: ReplayKind,
        value: &str,
        expires_at: i64,
        _now: i64,
    ) -> StoreResult<bool> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ReplayEntry {
                kind,
                value: value.to_owned(),
                expires_at,
            });
        Ok(true)
    }

    async fn consume_all(&self, entries: Vec<ReplayEntry>, now: i64) -> StoreResult<Option<usize>> {
        self.store.consume_all(entries, now).await
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

    const NOW: i64 = 1_700_000_000;

    async fn check(r: &DeferredReplay<'_, MemStore>, kind: ReplayKind, value: &str) {
        assert!(r.consume_once(kind, value, NOW + 60, NOW).await.unwrap());
    }

    #[tokio::test]
    async fn nothing_is_recorded_before_commit_and_everything_after() {
        let store = MemStore::default();
        let r = DeferredReplay::new(&store);
        check(&r, ReplayKind::DpopProof, "jkt:p1").await;
        check(&r, ReplayKind::ClientAssertion, "c1:j1").await;
        let probe = [
            ReplayEntry {
                kind: ReplayKind::DpopProof,
                value: "jkt:p1".into(),
                expires_at: NOW + 60,
            },
            ReplayEntry {
                kind: ReplayKind::ClientAssertion,
                value: "c1:j1".into(),
                expires_at: NOW + 60,
            },
        ];
        r.commit(NOW).await.unwrap();
        // The commit recorded both.
        for (i, e) in probe.iter().enumerate() {
            assert_eq!(
                store.consume_all(vec![e.clone()], NOW).await.unwrap(),
                Some(0),
                "entry {i} was not recorded"
            );
        }
        // An empty commit writes nothing and succeeds.
        DeferredReplay::new(&store).commit(NOW).await.unwrap();
    }

    #[tokio::test]
    async fn a_replay_is_refused_with_its_own_checks_error_and_spends_nothing() {
        let store = MemStore::default();
        let first = DeferredReplay::new(&store);
        check(&first, ReplayKind::ClientAssertion, "c1:j1").await;
        first.commit(NOW).await.unwrap();

        // A fresh DPoP proof with a replayed assertion: invalid_client, and
        // the proof stays unspent.
        let again = DeferredReplay::new(&store);
        check(&again, ReplayKind::DpopProof, "jkt:p2").await;
        check(&again, ReplayKind::ClientAssertion, "c1:j1").await;
        let e = again.commit(NOW).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        assert_eq!(
            e.description.as_deref(),
            Some("client assertion has already been used")
        );
        assert!(
            store
                .consume_once(ReplayKind::DpopProof, "jkt:p2", NOW + 60, NOW)
                .await
                .unwrap()
        );

        // Both replayed: the first check's error (the DPoP proof's).
        let both = DeferredReplay::new(&store);
        check(&both, ReplayKind::DpopProof, "jkt:p2").await;
        check(&both, ReplayKind::ClientAssertion, "c1:j1").await;
        let e = both.commit(NOW).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidDpopProof);

        // A request object's replay keeps its own error too.
        let first = DeferredReplay::new(&store);
        check(&first, ReplayKind::RequestObject, "c1:h").await;
        first.commit(NOW).await.unwrap();
        let again = DeferredReplay::new(&store);
        check(&again, ReplayKind::RequestObject, "c1:h").await;
        assert_eq!(
            again.commit(NOW).await.unwrap_err().code,
            ErrorCode::InvalidRequestObject
        );
    }
}

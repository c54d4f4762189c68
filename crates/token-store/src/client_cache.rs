//! Registrations kept in memory by a server that is its SQLite database's
//! only writer.
//!
//! Every authenticated request reads its client's registration, and on
//! SQLite that read is a hand-off to the blocking pool and back: two thread
//! wake-ups, more than the rest of a `tls_client_auth` token request costs.
//! A server that holds its database alone ([`crate::Store::claim_database`])
//! sees every change to the `clients` table, because each one goes through
//! its own [`ClientRepository`](oauth_core::storage::ClientRepository)
//! writes, so it can answer those reads from memory and stay exact.
//!
//! Each thread keeps its own map (no lock on the request path). One counter
//! per database, the generation, is read before every lookup and bumped after
//! every write to a registration: a cached record counts only while the
//! generation it was read under is still current. The generation is taken
//! *before* the database read, so a record read while a write was in flight
//! is never trusted after that write's bump. A write's bump comes right after
//! its commit, as a request's own read would come right after it.
//!
//! On PostgreSQL, other instances write the same table, so nothing is cached
//! there: each instance reads the registration every time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use oauth_core::storage::ClientRecord;

/// How many registrations each thread keeps (it starts over when full).
const PER_THREAD: usize = 256;

/// One database's generation of registrations.
#[derive(Debug)]
pub(crate) struct ClientCache {
    /// Tells apart the stores one thread may serve (tests open several).
    id: u64,
    generation: AtomicU64,
}

struct Cached {
    store: u64,
    generation: u64,
    record: ClientRecord,
}

thread_local! {
    static CACHED: RefCell<HashMap<String, Cached>> = RefCell::new(HashMap::new());
}

impl ClientCache {
    pub(crate) fn new() -> ClientCache {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        ClientCache {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation to read a registration under: take it before the read.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The registration as this thread last read it, if nothing was written
    /// to any registration since.
    pub(crate) fn get(&self, client_id: &str) -> Option<ClientRecord> {
        let current = self.generation();
        CACHED.with_borrow(|cached| {
            cached
                .get(client_id)
                .filter(|c| c.store == self.id && c.generation == current)
                .map(|c| c.record.clone())
        })
    }

    /// Keeps `record`, read under `generation`.
    pub(crate) fn put(&self, generation: u64, record: &ClientRecord) {
        CACHED.with_borrow_mut(|cached| {
            if cached.len() >= PER_THREAD && !cached.contains_key(&record.client_id) {
                cached.clear();
            }
            cached.insert(
                record.client_id.clone(),
                Cached {
                    store: self.id,
                    generation,
                    record: record.clone(),
                },
            );
        });
    }

    /// After a write to any registration (whether or not it committed):
    /// every record read before it stops counting.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, metadata: &str) -> ClientRecord {
        ClientRecord {
            client_id: id.into(),
            metadata: metadata.into(),
            secret_hash: None,
            registration_token_hash: None,
            software_id: None,
            origin: "dynamic".into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn a_record_counts_until_the_next_write() {
        let cache = ClientCache::new();
        assert!(cache.get("a").is_none());
        let g = cache.generation();
        cache.put(g, &record("a", "{}"));
        assert_eq!(cache.get("a").unwrap().metadata, "{}");
        cache.invalidate();
        assert!(cache.get("a").is_none(), "a write ends every cached record");
        // Read under the old generation, before the write: never trusted.
        cache.put(g, &record("a", "{\"old\":1}"));
        assert!(cache.get("a").is_none());
        let g = cache.generation();
        cache.put(g, &record("a", "{\"new\":1}"));
        assert_eq!(cache.get("a").unwrap().metadata, "{\"new\":1}");
    }

    #[test]
    fn stores_and_threads_keep_their_own() {
        let one = ClientCache::new();
        let two = ClientCache::new();
        one.put(one.generation(), &record("a", "one"));
        assert!(two.get("a").is_none(), "another store's record is not ours");
        two.put(two.generation(), &record("a", "two"));
        assert!(one.get("a").is_none(), "it replaced ours on this thread");
        assert_eq!(two.get("a").unwrap().metadata, "two");
        let two = std::sync::Arc::new(two);
        let other = two.clone();
        let seen = std::thread::spawn(move || other.get("a").is_some())
            .join()
            .unwrap();
        assert!(!seen, "each thread reads for itself");
    }

    /// A write on one thread ends what every other thread cached (a
    /// registration deleted or changed is at once gone everywhere).
    #[test]
    fn a_write_reaches_every_thread() {
        let cache = std::sync::Arc::new(ClientCache::new());
        let (to_reader, reader_rx) = std::sync::mpsc::channel::<()>();
        let (to_main, main_rx) = std::sync::mpsc::channel::<bool>();
        let theirs = cache.clone();
        let reader = std::thread::spawn(move || {
            theirs.put(theirs.generation(), &record("a", "old"));
            to_main.send(theirs.get("a").is_some()).unwrap();
            reader_rx.recv().unwrap();
            to_main.send(theirs.get("a").is_some()).unwrap();
        });
        assert!(main_rx.recv().unwrap(), "the reader cached it");
        cache.invalidate();
        to_reader.send(()).unwrap();
        assert!(!main_rx.recv().unwrap(), "the other thread still trusts it");
        reader.join().unwrap();
    }

    #[test]
    fn each_thread_starts_over_when_full() {
        let cache = ClientCache::new();
        let g = cache.generation();
        for i in 0..PER_THREAD + 10 {
            cache.put(g, &record(&format!("c{i}"), "{}"));
            assert!(cache.get(&format!("c{i}")).is_some());
        }
        assert!(CACHED.with_borrow(HashMap::len) <= PER_THREAD);
    }
}

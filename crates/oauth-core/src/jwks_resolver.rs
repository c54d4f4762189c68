//! Resolving a client's public keys: the inline `jwks` of its metadata or the
//! JWK Set (RFC 7517 §5) published at its `jwks_uri` (RFC 7591 §2, OpenID
//! Connect Dynamic Registration §2), used to verify client assertions
//! (RFC 7523 §3), request objects (RFC 9101 §6.2) and to match
//! `self_signed_tls_client_auth` certificates (RFC 8705 §2.2).
//!
//! Fetched sets are cached per URL for [`ResolverSettings::ttl_secs`]. A key
//! id that is not in the cached set triggers ONE refetch, because clients
//! rotate keys by publishing the new one and signing with it right away
//! (OpenID Connect Core §10.1.1); refetches are limited to one per URL per
//! [`ResolverSettings::min_refetch_interval_secs`], so a caller sending
//! random `kid`s cannot make us hammer the client's server. Concurrent
//! misses on one URL wait for a single fetch. Reads of a cached set take no
//! lock that is held across an await: a short read lock on one of several
//! shards finds the URL's slot, whose content is an atomically swapped
//! pointer.
//!
//! Fetching itself (HTTPS only, timeout, size limit) is the server's
//! [`JwksFetcher`]; this module never opens a connection.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;

use crate::client::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::keys::{ClientEncrypter, JwsAlg, candidate_keys};

/// Why a `jwks_uri` could not be fetched. The detail is logged, never sent
/// to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Only `https` URLs are fetched (RFC 7591 §2: `jwks_uri` over TLS).
    #[error("only https URLs are fetched")]
    NotHttps,
    #[error("the request timed out")]
    Timeout,
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("transport failure: {0}")]
    Transport(String),
}

/// Fetches a client's `jwks_uri` (RFC 7591 §2), implemented by the server
/// with an HTTP client (HTTPS only, a timeout, a response size limit, no redirects to
/// other schemes). Returns the response body.
pub trait JwksFetcher: Send + Sync {
    fn fetch(&self, url: &str) -> impl Future<Output = Result<Vec<u8>, FetchError>> + Send;

    /// Another JSON document of the client's, by the same rules (OIDC
    /// Registration §5's `sector_identifier_uri`); `target` names it in
    /// the outbound metrics. The JWKS fetch by default.
    fn fetch_document(
        &self,
        url: &str,
        target: &'static str,
    ) -> impl Future<Output = Result<Vec<u8>, FetchError>> + Send {
        let _ = target;
        self.fetch(url)
    }
}

/// Why no key could be resolved. Callers turn it into their surface's error
/// with [`KeyLookupError::to_oauth`]: `invalid_client` for client
/// authentication, `invalid_request_object` for request objects, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    /// The client registered neither `jwks` nor `jwks_uri`.
    #[error("the client has no registered keys")]
    NoKeys,
    /// No registered key fits (also after the one refetch).
    #[error("no registered key matches")]
    NotFound,
    /// The JWS names no `kid` and several registered keys fit; guessing
    /// would let any of them sign.
    #[error("several registered keys match and no kid was given")]
    Ambiguous,
    /// The `jwks_uri` could not be fetched or did not hold a JWK Set.
    #[error("the client's jwks_uri could not be fetched or parsed")]
    Unavailable,
}

impl KeyLookupError {
    /// The error for the client, with `code` chosen by the caller and a
    /// description that says nothing about the client's server.
    pub fn to_oauth(self, code: ErrorCode) -> OAuthError {
        let description = match self {
            KeyLookupError::NoKeys | KeyLookupError::NotFound | KeyLookupError::Ambiguous => {
                "no registered client key matches"
            }
            KeyLookupError::Unavailable => "the client's keys could not be retrieved",
        };
        OAuthError::new(code, description)
    }
}

/// Cache policy of a [`JwksResolver`] (how long a `jwks_uri` JWK Set,
/// RFC 7517 §5, is trusted, and how often it may be fetched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverSettings {
    /// How long a fetched set is used without asking again.
    pub ttl_secs: i64,
    /// At most one fetch per URL within this many seconds, whatever the
    /// reason (unknown `kid`, expired cache, earlier failure).
    pub min_refetch_interval_secs: i64,
    /// When a refresh fails, a set fetched at most this long ago is still
    /// used, so a short outage at the client does not lock it out.
    pub max_stale_secs: i64,
    /// A fetched set with more keys than this is refused.
    pub max_keys: usize,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            ttl_secs: 300,
            min_refetch_interval_secs: 30,
            max_stale_secs: 3600,
            max_keys: 100,
        }
    }
}

struct Cached {
    jwks: Arc<Value>,
    fetched_at: i64,
}

/// The cache state of one URL.
struct Slot {
    cached: ArcSwapOption<Cached>,
    /// Time of the last fetch attempt, successful or not.
    last_attempt: AtomicI64,
    /// Single flight: one fetch per URL at a time; waiters reuse its result.
    gate: tokio::sync::Mutex<()>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            cached: ArcSwapOption::const_empty(),
            last_attempt: AtomicI64::new(i64::MIN),
            gate: tokio::sync::Mutex::new(()),
        }
    }
}

const SHARDS: usize = 16;

/// A shard this full sweeps out, before it takes a new URL, the slots no
/// client can use any more (unused and older than
/// [`ResolverSettings::max_stale_secs`]): deleted and changed
/// registrations otherwise left their URLs behind for the life of the
/// process.
const SWEEP_AT: usize = 64;

/// URL → cache slot; one of [`SHARDS`] maps.
type Shard = RwLock<HashMap<String, Arc<Slot>>>;

/// Resolves clients' public keys (RFC 7591 §2 `jwks` / `jwks_uri`), caching
/// `jwks_uri` documents. One per server, shared by all workers.
pub struct JwksResolver<F> {
    fetcher: F,
    settings: ResolverSettings,
    hasher: RandomState,
    shards: Box<[Shard]>,
}

impl<F> std::fmt::Debug for JwksResolver<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksResolver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Where a client's keys come from.
enum Source<'a> {
    Inline(&'a Value),
    Uri(&'a str),
}

fn source(client: &Client) -> Option<Source<'_>> {
    match (&client.metadata.jwks, &client.metadata.jwks_uri) {
        (Some(jwks), _) => Some(Source::Inline(jwks)),
        (None, Some(uri)) => Some(Source::Uri(uri)),
        (None, None) => None,
    }
}

impl<F: JwksFetcher> JwksResolver<F> {
    /// A resolver with the default settings (5-minute TTL, one fetch per
    /// URL per 30 s).
    pub fn new(fetcher: F) -> Self {
        Self::with_settings(fetcher, ResolverSettings::default())
    }

    pub fn with_settings(fetcher: F, settings: ResolverSettings) -> Self {
        JwksResolver {
            fetcher,
            settings,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    pub fn settings(&self) -> ResolverSettings {
        self.settings
    }

    /// The key to verify an `alg` signature whose header names `kid`
    /// (RFC 7515 §4.1.4): with a `kid`, the registered key with exactly that
    /// `kid`; without, the only registered key that fits `alg`. Keys for
    /// encryption, with private members or of the wrong type are never
    /// chosen ([`crate::keys::candidate_keys`]). A miss on a `jwks_uri` set
    /// causes one (rate-limited) refetch.
    pub async fn key_for(
        &self,
        client: &Client,
        kid: Option<&str>,
        alg: JwsAlg,
        now: i64,
    ) -> Result<Jwk, KeyLookupError> {
        self.search(client, now, |jwks| {
            let mut found = candidate_keys(jwks, kid, alg);
            match found.len() {
                0 => Err(KeyLookupError::NotFound),
                1 => Ok(found.remove(0)),
                _ => Err(KeyLookupError::Ambiguous),
            }
        })
        .await
    }

    /// The first registered key (as JSON) for which `pred` holds, e.g. the
    /// key of a self-signed client certificate (RFC 8705 §2.2). A miss on a
    /// `jwks_uri` set causes one (rate-limited) refetch.
    pub async fn find_key(
        &self,
        client: &Client,
        now: i64,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, KeyLookupError> {
        self.search(client, now, |jwks| {
            jwks.get("keys")
                .and_then(Value::as_array)
                .and_then(|keys| keys.iter().find(|k| pred(k)))
                .cloned()
                .ok_or(KeyLookupError::NotFound)
        })
        .await
    }

    /// The client's current JWK Set, inline or from the (cached) `jwks_uri`.
    pub async fn jwks(&self, client: &Client, now: i64) -> Result<Arc<Value>, KeyLookupError> {
        match source(client).ok_or(KeyLookupError::NoKeys)? {
            Source::Inline(v) => Ok(Arc::new(v.clone())),
            Source::Uri(url) => self.load(url, now, None).await,
        }
    }

    /// The encrypter for the responses the client registered encrypted
    /// (`(alg, enc)` from [`crate::client::ClientMetadata::id_token_encryption`]
    /// or `userinfo_encryption`): its RSA `use: enc` key for `alg`, inline
    /// or from the `jwks_uri` (one refetch when the cached set has none,
    /// as the client may have just rotated it). Resolved before anything
    /// one-time is spent, so a client whose key is gone loses no code.
    ///
    /// # Errors
    ///
    /// `code` (the caller's surface: `invalid_client` at the token
    /// endpoint) when the client has no such key or its keys cannot be
    /// fetched.
    pub async fn encrypter(
        &self,
        client: &Client,
        (alg, enc): (&str, &str),
        code: ErrorCode,
        now: i64,
    ) -> Result<ClientEncrypter, OAuthError> {
        self.search(client, now, |jwks| match ClientEncrypter::from_jwks(jwks, alg, enc) {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(KeyLookupError::NotFound),
            Err(e) => {
                tracing::info!(client_id = %client.id(), error = %e, "client encryption key unusable");
                Err(KeyLookupError::NotFound)
            }
        })
        .await
        .map_err(|e| match e {
            KeyLookupError::Unavailable => e.to_oauth(code),
            _ => OAuthError::new(
                code,
                format!("the client's JWK Set has no RSA key with use enc for {alg} to encrypt the response to"),
            ),
        })
    }

    /// Forgets what was cached for `url` (e.g. after the client updated its
    /// registration).
    pub fn invalidate(&self, url: &str) {
        self.shard(url)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(url);
    }

    async fn search<T>(
        &self,
        client: &Client,
        now: i64,
        pick: impl Fn(&Value) -> Result<T, KeyLookupError>,
    ) -> Result<T, KeyLookupError> {
        match source(client).ok_or(KeyLookupError::NoKeys)? {
            Source::Inline(jwks) => pick(jwks),
            Source::Uri(url) => {
                let jwks = self.load(url, now, None).await?;
                match pick(&jwks) {
                    Err(KeyLookupError::NotFound) => {
                        let fresh = self.load(url, now, Some(&jwks)).await?;
                        if Arc::ptr_eq(&fresh, &jwks) {
                            return Err(KeyLookupError::NotFound);
                        }
                        pick(&fresh)
                    }
                    other => other,
                }
            }
        }
    }

    fn shard(&self, url: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(url) as usize) % SHARDS]
    }

    fn slot(&self, url: &str, now: i64) -> Arc<Slot> {
        let shard = self.shard(url);
        if let Some(slot) = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
        {
            return slot.clone();
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= SWEEP_AT && !map.contains_key(url) {
            // URLs of deleted or changed registrations: a slot nobody is
            // using whose set is past any use (or was never fetched) goes.
            let max_stale = self.settings.max_stale_secs;
            map.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .cached
                        .load()
                        .as_ref()
                        .is_some_and(|c| now.saturating_sub(c.fetched_at) <= max_stale)
            });
        }
        map.entry(url.to_owned())
            .or_insert_with(|| Arc::new(Slot::new()))
            .clone()
    }

    /// How many URLs are cached.
    #[cfg(test)]
    fn cached_urls(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// The set for `url`. `stale` = `None`: a cached set within its TTL, else
    /// a fetch. `stale` = `Some(set)`: the caller found no key in `set` and
    /// wants a newer one; returns `set` itself when no refetch is allowed.
    async fn load(
        &self,
        url: &str,
        now: i64,
        stale: Option<&Arc<Value>>,
    ) -> Result<Arc<Value>, KeyLookupError> {
        let s = &self.settings;
        let fresh = |c: &Cached| now.saturating_sub(c.fetched_at) < s.ttl_secs;
        let slot = self.slot(url, now);
        if stale.is_none()
            && let Some(c) = slot.cached.load_full()
            && fresh(&c)
        {
            return Ok(c.jwks.clone());
        }

        let _flight = slot.gate.lock().await;
        let current = slot.cached.load_full();
        if let Some(c) = &current {
            match stale {
                None if fresh(c) => return Ok(c.jwks.clone()),
                // Another task refetched while we waited: use its result.
                Some(seen) if !Arc::ptr_eq(seen, &c.jwks) => return Ok(c.jwks.clone()),
                _ => {}
            }
        }
        let usable = |c: &Arc<Cached>| now.saturating_sub(c.fetched_at) <= s.max_stale_secs;
        let last = slot.last_attempt.load(Ordering::Acquire);
        if now.saturating_sub(last) < s.min_refetch_interval_secs {
            return match current {
                Some(c) if usable(&c) => Ok(c.jwks.clone()),
                _ => Err(KeyLookupError::Unavailable),
            };
        }
        slot.last_attempt.store(now, Ordering::Release);
        match self.fetch_set(url).await {
            Some(set) => {
                let jwks = Arc::new(set);
                slot.cached.store(Some(Arc::new(Cached {
                    jwks: jwks.clone(),
                    fetched_at: now,
                })));
                Ok(jwks)
            }
            None => match current {
                Some(c) if usable(&c) => {
                    tracing::warn!(jwks_uri = %url, age_secs = now.saturating_sub(c.fetched_at),
                        "using the previously fetched JWK Set");
                    Ok(c.jwks.clone())
                }
                _ => Err(KeyLookupError::Unavailable),
            },
        }
    }

    async fn fetch_set(&self, url: &str) -> Option<Value> {
        let body = match self.fetcher.fetch(url).await {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(jwks_uri = %url, error = %e, "jwks_uri fetch failed");
                return None;
            }
        };
        let set: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(jwks_uri = %url, error = %e, "jwks_uri did not return JSON");
                return None;
            }
        };
        match set.get("keys").and_then(Value::as_array) {
            Some(keys) if keys.len() <= self.settings.max_keys => Some(set),
            Some(keys) => {
                tracing::warn!(jwks_uri = %url, keys = keys.len(), "jwks_uri JWK Set has too many keys");
                None
            }
            None => {
                tracing::warn!(jwks_uri = %url, "jwks_uri did not return a JWK Set");
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A scripted [`JwksFetcher`] for tests.

    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{FetchError, JwksFetcher};

    #[derive(Default)]
    pub(crate) struct MockFetcher {
        docs: Mutex<HashMap<String, Result<Vec<u8>, FetchError>>>,
        calls: AtomicUsize,
    }

    impl MockFetcher {
        pub(crate) fn set(&self, url: &str, body: Result<Vec<u8>, FetchError>) {
            self.docs.lock().unwrap().insert(url.to_owned(), body);
        }

        pub(crate) fn set_json(&self, url: &str, v: &serde_json::Value) {
            self.set(url, Ok(serde_json::to_vec(v).unwrap()));
        }

        pub(crate) fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl JwksFetcher for MockFetcher {
        async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.docs
                .lock()
                .unwrap()
                .get(url)
                .cloned()
                .unwrap_or(Err(FetchError::Status(404)))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_support::MockFetcher;
    use super::*;
    use crate::client_auth::test_support::{T0, TestKey, client};

    const URI: &str = "https://tpp.example/jwks.json";

    fn uri_client() -> Client {
        client(
            json!({"client_id": "c1", "redirect_uris": ["https://tpp.example/cb"], "jwks_uri": URI}),
            None,
        )
    }

    fn resolver(f: MockFetcher) -> JwksResolver<MockFetcher> {
        JwksResolver::new(f)
    }

    #[tokio::test]
    async fn inline_jwks_are_used_without_fetching() {
        let k1 = TestKey::ec(Some("k1"));
        let c = client(
            json!({"client_id": "c1", "redirect_uris": ["https://tpp.example/cb"],
                "jwks": {"keys": [k1.jwk]}}),
            None,
        );
        let r = resolver(MockFetcher::default());
        let key = r.key_for(&c, Some("k1"), JwsAlg::ES256, T0).await.unwrap();
        assert_eq!(key.common.key_id.as_deref(), Some("k1"));
        assert_eq!(
            r.key_for(&c, Some("k2"), JwsAlg::ES256, T0).await,
            Err(KeyLookupError::NotFound)
        );
        assert_eq!(
            r.key_for(&c, Some("k1"), JwsAlg::PS256, T0).await,
            Err(KeyLookupError::NotFound),
            "a P-256 key cannot verify PS256"
        );
        assert!(r.key_for(&c, None, JwsAlg::ES256, T0).await.is_ok());
        assert_eq!(r.fetcher().calls(), 0);
    }

    /// The key to encrypt responses to: the client's RSA `use: enc` key,
    /// from its `jwks_uri`; a set without one is `code` (and refetched
    /// once, as the client may just have rotated it in).
    #[tokio::test]
    async fn the_encryption_key_comes_from_the_jwks_uri() {
        let f = MockFetcher::default();
        let sig = TestKey::ec(Some("k1")).jwk;
        f.set_json(URI, &json!({"keys": [sig]}));
        let r = resolver(f);
        let mut c = uri_client();
        c.metadata.id_token_encrypted_response_alg = Some("RSA-OAEP".into());
        let pair = c.metadata.id_token_encryption().unwrap();
        let e = r
            .encrypter(&c, pair, ErrorCode::InvalidRequest, T0)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.unwrap().contains("RSA-OAEP"));
        let enc: Value =
            serde_json::from_str(&crate::keys::test_support::fixture().enc_oaep.public_jwk)
                .unwrap();
        r.fetcher().set_json(URI, &json!({"keys": [sig, enc]}));
        let e = r
            .encrypter(&c, pair, ErrorCode::InvalidRequest, T0 + 31)
            .await
            .unwrap();
        assert!(format!("{e:?}").contains("A128CBC-HS256"), "{e:?}");
        r.fetcher().set(URI, Err(FetchError::Status(500)));
        r.invalidate(URI);
        let e = r
            .encrypter(&c, pair, ErrorCode::InvalidRequest, T0 + 62)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[tokio::test]
    async fn jwks_uri_is_cached_for_the_ttl() {
        let f = MockFetcher::default();
        f.set_json(URI, &json!({"keys": [TestKey::ec(Some("k1")).jwk]}));
        let r = resolver(f);
        let c = uri_client();
        for t in [T0, T0 + 1, T0 + 299] {
            assert!(r.key_for(&c, Some("k1"), JwsAlg::ES256, t).await.is_ok());
        }
        assert_eq!(r.fetcher().calls(), 1);
        assert!(
            r.key_for(&c, Some("k1"), JwsAlg::ES256, T0 + 300)
                .await
                .is_ok()
        );
        assert_eq!(r.fetcher().calls(), 2, "refreshed after the TTL");
    }

    /// Slots of URLs no client uses any more are swept once a shard fills;
    /// URLs with a set still usable stay.
    #[tokio::test]
    async fn forgotten_urls_are_swept_out() {
        let f = MockFetcher::default();
        let jwks = json!({"keys": [TestKey::ec(Some("k1")).jwk]});
        let url = |i: usize| format!("https://tpp{i}.example/jwks");
        let n = SHARDS * SWEEP_AT * 2;
        for i in 0..n {
            f.set_json(&url(i), &jwks);
        }
        let r = resolver(f);
        let client_of = |u: &str| {
            client(
                json!({"client_id": "c1", "redirect_uris": ["https://tpp.example/cb"], "jwks_uri": u}),
                None,
            )
        };
        // Registrations that came and went long ago.
        for i in 0..n / 2 {
            assert!(r.jwks(&client_of(&url(i)), T0).await.is_ok());
        }
        assert_eq!(r.cached_urls(), n / 2, "usable sets are never swept");
        // Clients of today: the old slots make way, today's stay.
        let later = T0 + r.settings().max_stale_secs + 1;
        for i in n / 2..n {
            assert!(r.jwks(&client_of(&url(i)), later).await.is_ok());
        }
        assert!(r.cached_urls() < n, "{} slots kept", r.cached_urls());
        assert!(r.cached_urls() >= n / 2, "today's slots are all kept");
        let calls = r.fetcher().calls();
        for i in n / 2..n {
            assert!(r.jwks(&client_of(&url(i)), later + 1).await.is_ok());
        }
        assert_eq!(r.fetcher().calls(), calls, "today's sets are still cached");
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_and_is_rate_limited() {
        let f = MockFetcher::default();
        f.set_json(URI, &json!({"keys": [TestKey::ec(Some("old")).jwk]}));
        let r = resolver(f);
        let c = uri_client();
        assert!(r.key_for(&c, Some("old"), JwsAlg::ES256, T0).await.is_ok());
        // The client rotates: the new key is only at the URI.
        r.fetcher().set_json(
            URI,
            &json!({"keys": [TestKey::ec(Some("old")).jwk, TestKey::ec(Some("new")).jwk]}),
        );
        let t = T0 + 40;
        assert!(r.key_for(&c, Some("new"), JwsAlg::ES256, t).await.is_ok());
        assert_eq!(r.fetcher().calls(), 2);
        // Random kids: no further fetch within the interval.
        for i in 0..20 {
            let kid = format!("random-{i}");
            assert_eq!(
                r.key_for(&c, Some(&kid), JwsAlg::ES256, t + 1).await,
                Err(KeyLookupError::NotFound)
            );
        }
        assert_eq!(r.fetcher().calls(), 2, "rate-limited");
        // After the interval one more refetch is allowed.
        assert_eq!(
            r.key_for(&c, Some("random-x"), JwsAlg::ES256, t + 30).await,
            Err(KeyLookupError::NotFound)
        );
        assert_eq!(r.fetcher().calls(), 3);
    }

    #[tokio::test]
    async fn fetch_and_parse_failures_are_unavailable_with_a_generic_error() {
        let c = uri_client();
        for body in [
            Err(FetchError::Timeout),
            Err(FetchError::Transport(
                "connection refused by 10.0.0.7".into(),
            )),
            Ok(b"<html>oops</html>".to_vec()),
            Ok(br#"{"no_keys": true}"#.to_vec()),
        ] {
            let f = MockFetcher::default();
            f.set(URI, body);
            let r = resolver(f);
            let e = r
                .key_for(&c, Some("k1"), JwsAlg::ES256, T0)
                .await
                .unwrap_err();
            assert_eq!(e, KeyLookupError::Unavailable);
            let o = e.to_oauth(ErrorCode::InvalidClient);
            assert_eq!(o.code.as_str(), "invalid_client");
            let text = o.to_json().to_string();
            assert!(
                !text.contains("10.0.0.7") && !text.contains("html"),
                "{text}"
            );
            // A failed URL is not hammered either.
            let _ = r.key_for(&c, Some("k1"), JwsAlg::ES256, T0 + 1).await;
            assert_eq!(r.fetcher().calls(), 1);
        }
        assert_eq!(
            KeyLookupError::NotFound
                .to_oauth(ErrorCode::InvalidRequestObject)
                .code
                .as_str(),
            "invalid_request_object"
        );
    }

    #[tokio::test]
    async fn too_many_keys_are_refused() {
        let f = MockFetcher::default();
        let keys: Vec<Value> = (0..101)
            .map(|i| json!({"kty": "EC", "crv": "P-256", "kid": format!("k{i}"), "x": "a", "y": "b"}))
            .collect();
        f.set_json(URI, &json!({ "keys": keys }));
        let r = resolver(f);
        assert_eq!(
            r.key_for(&uri_client(), Some("k1"), JwsAlg::ES256, T0)
                .await,
            Err(KeyLookupError::Unavailable)
        );
    }

    #[tokio::test]
    async fn a_stale_set_is_used_when_a_refresh_fails() {
        let f = MockFetcher::default();
        f.set_json(URI, &json!({"keys": [TestKey::ec(Some("k1")).jwk]}));
        let r = resolver(f);
        let c = uri_client();
        assert!(r.key_for(&c, Some("k1"), JwsAlg::ES256, T0).await.is_ok());
        r.fetcher().set(URI, Err(FetchError::Status(503)));
        assert!(
            r.key_for(&c, Some("k1"), JwsAlg::ES256, T0 + 600)
                .await
                .is_ok()
        );
        assert_eq!(r.fetcher().calls(), 2);
        assert_eq!(
            r.key_for(&c, Some("k1"), JwsAlg::ES256, T0 + 3601).await,
            Err(KeyLookupError::Unavailable),
            "not beyond max_stale"
        );
    }

    #[tokio::test]
    async fn no_keys_and_ambiguity() {
        let c = client(
            json!({"client_id": "c1", "redirect_uris": ["https://tpp.example/cb"],
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": "CN=c1"}),
            None,
        );
        let r = resolver(MockFetcher::default());
        assert_eq!(
            r.key_for(&c, None, JwsAlg::ES256, T0).await,
            Err(KeyLookupError::NoKeys)
        );
        let two = client(
            json!({"client_id": "c2", "redirect_uris": ["https://tpp.example/cb"],
                "jwks": {"keys": [TestKey::ec(None).jwk, TestKey::ec(None).jwk]}}),
            None,
        );
        assert_eq!(
            r.key_for(&two, None, JwsAlg::ES256, T0).await,
            Err(KeyLookupError::Ambiguous)
        );
    }

    #[tokio::test]
    async fn find_key_refetches_on_a_miss() {
        let f = MockFetcher::default();
        f.set_json(URI, &json!({"keys": [TestKey::ec(Some("a")).jwk]}));
        let r = resolver(f);
        let c = uri_client();
        let has_kid = |kid: &'static str| move |k: &Value| k["kid"] == kid;
        assert!(r.find_key(&c, T0, has_kid("a")).await.is_ok());
        r.fetcher()
            .set_json(URI, &json!({"keys": [TestKey::ec(Some("b")).jwk]}));
        assert_eq!(
            r.find_key(&c, T0 + 31, has_kid("b")).await.unwrap()["kid"],
            "b"
        );
        assert_eq!(r.fetcher().calls(), 2);
        r.invalidate(URI);
        assert!(r.find_key(&c, T0 + 32, has_kid("b")).await.is_ok());
        assert_eq!(r.fetcher().calls(), 3, "invalidate forgets the cache");
        assert_eq!(r.jwks(&c, T0 + 33).await.unwrap()["keys"][0]["kid"], "b");
    }
}

/// Where a grant takes the client's id_token encryption key from (OIDC
/// Core §10.2, `id_token_encrypted_response_alg`): asked only when an
/// id_token is about to be issued, so a request that issues none (no
/// `openid` scope, a CIBA poll still pending) neither looks the key up nor
/// fails for want of it. It is still asked before anything one-time is
/// spent: every grant signs its tokens before its one write.
pub trait IdTokenEncryption: Send + Sync {
    fn id_token_encrypter(
        &self,
        client: &Client,
        now: i64,
    ) -> impl Future<Output = Result<Option<ClientEncrypter>, OAuthError>> + Send;
}

/// No key resolver: id_tokens in clear (`issue_id_token` refuses that for
/// a client registered for encryption).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEncryption;

impl IdTokenEncryption for NoEncryption {
    async fn id_token_encrypter(
        &self,
        _client: &Client,
        _now: i64,
    ) -> Result<Option<ClientEncrypter>, OAuthError> {
        Ok(None)
    }
}

/// The client's `use: enc` key, inline or from its `jwks_uri`, when it
/// registered id_token encryption; `invalid_request` when it has none.
impl<F: JwksFetcher> IdTokenEncryption for JwksResolver<F> {
    async fn id_token_encrypter(
        &self,
        client: &Client,
        now: i64,
    ) -> Result<Option<ClientEncrypter>, OAuthError> {
        match client.metadata.id_token_encryption() {
            None => Ok(None),
            Some(pair) => self
                .encrypter(client, pair, ErrorCode::InvalidRequest, now)
                .await
                .map(Some),
        }
    }
}

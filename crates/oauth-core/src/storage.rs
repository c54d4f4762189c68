//! Narrow storage contracts that the protocol code needs, implemented by
//! `token-store` for SQLite and PostgreSQL.
//!
//! Rules every implementation keeps:
//! - secrets (codes, tokens, request URIs, registration access tokens, client
//!   secrets) are handed over already hashed ([`crate::secret::hash_secret`]);
//!   the store never sees them in clear;
//! - one-time use is a single conditional write that cannot race across
//!   instances sharing one database (`consume_*`), never a read then a write;
//! - times are UNIX seconds (UTC).

use std::future::Future;

use serde::{Deserialize, Serialize};

/// Errors a store can report. Callers map them to `server_error` /
/// `temporarily_unavailable` without exposing the detail to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("duplicate key")]
    Conflict,
    #[error("database error: {0}")]
    Backend(String),
    /// A single-use value the write carried (see `token_store::Store::
    /// carrying_replay`) was used before; nothing of the write was kept.
    /// Not a failure of the store: it answers as the value's own check.
    #[error("single-use value already used")]
    Replayed(ReplayEntry),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Health of the database, used by `/readyz`.
pub trait HealthCheck: Send + Sync {
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
}

// ---------------------------------------------------------------- keys

/// One of the provider's own keys, private half encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    /// JOSE algorithm: `PS256`, `ES256` (use `sig`) or `RSA-OAEP-256`, `RSA-OAEP` (use `enc`).
    pub alg: String,
    /// `sig` or `enc`.
    pub key_use: String,
    /// The private key (PKCS#8 DER) sealed with the key-encryption key.
    pub private_sealed: Vec<u8>,
    /// The public JWK as JSON text.
    pub public_jwk: String,
    pub created_at: i64,
    /// From this time on the key is used for signing (published before).
    pub active_from: i64,
    /// From this time on the key no longer signs (still verifies, still published).
    pub retired_at: Option<i64>,
    /// From this time on the key is no longer published at all.
    pub expires_at: Option<i64>,
}

pub trait KeyRepository: Send + Sync {
    /// Every key not yet expired at `now`, oldest first.
    fn list_keys(&self, now: i64) -> impl Future<Output = StoreResult<Vec<KeyRecord>>> + Send;
    /// Inserts new keys and retires/expires old ones in one transaction.
    /// `retire` lists (kid, retired_at, expires_at).
    fn rotate_keys(
        &self,
        insert: Vec<KeyRecord>,
        retire: Vec<(String, i64, i64)>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

// ---------------------------------------------------------------- replay

/// What kind of single-use value a replay-cache entry guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKind {
    /// `jti` of a `private_key_jwt` client assertion (per client).
    ClientAssertion,
    /// `jti` of a DPoP proof (per key thumbprint).
    DpopProof,
    /// `jti` of a signed request object.
    RequestObject,
    /// `jti` of a DCR software statement / registration request.
    Registration,
    /// A consent-bridge hand-off / result token.
    HookResult,
}

impl ReplayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayKind::ClientAssertion => "client_assertion",
            ReplayKind::DpopProof => "dpop",
            ReplayKind::RequestObject => "request_object",
            ReplayKind::Registration => "registration",
            ReplayKind::HookResult => "hook_result",
        }
    }
}

pub trait ReplayCache: Send + Sync {
    /// Records `value` as used until `expires_at`. Returns `true` the first
    /// time, `false` if an unexpired entry already exists (a replay), also
    /// when another instance recorded it a moment earlier. The one-entry
    /// case of [`ReplayCache::consume_all`].
    fn consume_once(
        &self,
        kind: ReplayKind,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let entry = ReplayEntry {
            kind,
            value: value.to_owned(),
            expires_at,
        };
        async move {
            let first_use = self.consume_all(vec![entry], now).await?.is_none();
            if !first_use {
                crate::replay::refused(kind);
            }
            Ok(first_use)
        }
    }
    /// Records every entry as used, all or none, in one write: `Ok(None)`
    /// when none was in use (all are recorded now), `Ok(Some(i))` when
    /// `entries[i]` is the first that was (a replay; nothing is recorded).
    fn consume_all(
        &self,
        entries: Vec<ReplayEntry>,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<usize>>> + Send;
    /// Deletes expired entries; returns how many went.
    fn purge_expired(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// A single-use value to record (see [`ReplayCache::consume_all`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEntry {
    pub kind: ReplayKind,
    pub value: String,
    pub expires_at: i64,
}

// ---------------------------------------------------------------- clients

/// A registered client. `metadata` is the RFC 7591 metadata as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub metadata: String,
    /// SHA-256 of the client secret (non-FAPI clients only).
    pub secret_hash: Option<String>,
    /// SHA-256 of the RFC 7592 registration access token.
    pub registration_token_hash: Option<String>,
    pub software_id: Option<String>,
    /// `static` (from the config file) or `dynamic` (registered).
    pub origin: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub trait ClientRepository: Send + Sync {
    fn get_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<ClientRecord>>> + Send;
    /// Inserts or replaces a client.
    fn put_client(&self, client: ClientRecord) -> impl Future<Output = StoreResult<()>> + Send;
    /// [`ClientRepository::put_client`] that first records `spend` as used
    /// (a signed registration request's `jti`), all or none: when an entry
    /// was used before, nothing is stored and the answer is
    /// [`StoreError::Replayed`]. This provided version records, then
    /// writes; a database store does both in one write.
    fn put_client_spending(
        &self,
        client: ClientRecord,
        spend: Vec<ReplayEntry>,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send
    where
        Self: ReplayCache,
    {
        async move {
            if let Some(i) = self.consume_all(spend.clone(), now).await? {
                return Err(StoreError::Replayed(spend[i].clone()));
            }
            self.put_client(client).await
        }
    }
    /// Deletes the client and revokes all its grants and tokens, in one
    /// transaction. Returns whether the client existed.
    fn delete_client(
        &self,
        client_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn list_clients(&self) -> impl Future<Output = StoreResult<Vec<ClientRecord>>> + Send;
}

// ---------------------------------------------------------------- PAR

/// A pushed authorization request (RFC 9126), stored under the hash of its
/// `request_uri`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedRequestRecord {
    pub request_uri_hash: String,
    pub client_id: String,
    /// The validated authorization request, as JSON text.
    pub request: String,
    pub expires_at: i64,
    pub created_at: i64,
}

pub trait PushedRequestRepository: Send + Sync {
    fn put_pushed_request(
        &self,
        rec: PushedRequestRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads an unexpired, unconsumed request without consuming it (the
    /// authorization endpoint may be visited twice before login completes).
    fn get_pushed_request(
        &self,
        request_uri_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<PushedRequestRecord>>> + Send;
    /// Marks the request used; `Ok(true)` only for the first caller.
    fn consume_pushed_request(
        &self,
        request_uri_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

// ---------------------------------------------------------------- grants

/// What a user (or, for client credentials, the client itself) authorised:
/// every code and token hangs off one grant, so revoking the grant (or the
/// bank's consent it carries) revokes them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub grant_id: String,
    pub client_id: String,
    pub sub: Option<String>,
    pub scope: String,
    /// The bank's consent / intent id, once the consent step reports it.
    pub consent_id: Option<String>,
    /// JSON text: requested `claims`, `authorization_details`, `acr`, `amr`,
    /// `auth_time`, granted accounts and extra claims from the consent app.
    pub details: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Filter for listing grants (bank-side consent lifecycle API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub consent_id: Option<String>,
    pub client_id: Option<String>,
    pub sub: Option<String>,
}

pub trait GrantRepository: Send + Sync {
    fn put_grant(&self, grant: GrantRecord) -> impl Future<Output = StoreResult<()>> + Send;
    fn get_grant(
        &self,
        grant_id: &str,
    ) -> impl Future<Output = StoreResult<Option<GrantRecord>>> + Send;
    fn list_grants(
        &self,
        filter: GrantFilter,
    ) -> impl Future<Output = StoreResult<Vec<GrantRecord>>> + Send;
    /// Revokes the grant and every token issued under it, atomically.
    fn revoke_grant(
        &self,
        grant_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Revokes every grant carrying `consent_id` and all their tokens, atomically.
    fn revoke_by_consent(
        &self,
        consent_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

// ---------------------------------------------------------------- codes

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCodeRecord {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    /// JSON text: redirect_uri, code_challenge, nonce, dpop_jkt, x5t#S256,
    /// scope, claims and whatever the token endpoint needs to finish.
    pub request: String,
    pub expires_at: i64,
    pub created_at: i64,
}

/// A code just redeemed, and its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemedCode {
    pub code: AuthorizationCodeRecord,
    pub grant: GrantRecord,
}

/// Outcome of redeeming a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First redemption: the code is now spent. With its grant as it
    /// stood then (read in the same write, so the token endpoint needs no
    /// second trip for it).
    Redeemed(Box<RedeemedCode>),
    /// The code was already spent: a replay. Carries the grant so the caller
    /// can revoke what the first redemption issued (RFC 6749 §4.1.2).
    AlreadyUsed { grant_id: String },
    /// Unknown or expired.
    Invalid,
}

/// A code as the token endpoint finds it before spending it
/// ([`AuthorizationCodeRepository::find_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeLookup {
    /// Unspent and unexpired, with its grant as it stands.
    Unspent(Box<RedeemedCode>),
    /// Spent before: a replay (RFC 6749 §4.1.2).
    AlreadyUsed { grant_id: String },
    /// Unknown or expired.
    Invalid,
}

/// Outcome of spending a code together with storing its tokens
/// ([`AuthorizationCodeRepository::redeem_code_with_tokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedeemed {
    /// The code is spent and the tokens are stored, in one transaction.
    Redeemed,
    /// Another redemption spent it first: nothing was stored.
    AlreadyUsed { grant_id: String },
    /// Expired (or gone) since it was read: nothing was stored.
    Invalid,
    /// Its grant was revoked since it was read: nothing was stored.
    GrantRevoked,
}

/// The interaction that a code ends (see
/// [`AuthorizationCodeRepository::put_grant_and_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionEnd {
    /// Hash of the interaction id, taken (deleted) with the code.
    pub interaction_hash: String,
    /// Hash of the pushed request's `request_uri`, spent with the code.
    pub request_uri_hash: String,
    /// When the request_uri was validly presented at `/authorize`.
    pub presented_at: i64,
}

/// Outcome of [`AuthorizationCodeRepository::put_grant_and_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeStored {
    /// The grant and the code are stored (and the interaction ended).
    Stored,
    /// The interaction was already taken (a double submit): nothing written.
    InteractionGone,
    /// The interaction is now taken, but its pushed request was spent or
    /// expired: no grant or code.
    RequestUriGone,
}

pub trait AuthorizationCodeRepository: Send + Sync {
    /// Stores a new grant and its first code, both or neither, in one write.
    /// With `end`, the interaction that produced them is taken and its
    /// pushed request spent ([`PushedRequestRepository::
    /// consume_pushed_request`] at `presented_at`) in the same transaction,
    /// first; the grant and code are stored only if both succeed (see
    /// [`CodeStored`]). One winner across instances: a double submit stores
    /// one code.
    fn put_grant_and_code(
        &self,
        grant: GrantRecord,
        code: AuthorizationCodeRecord,
        end: Option<InteractionEnd>,
    ) -> impl Future<Output = StoreResult<CodeStored>> + Send;
    /// Spends the code atomically (one winner across instances).
    fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<CodeRedemption>> + Send;
    /// Reads the code and its grant without spending it, so that a
    /// request that fails its checks leaves it to the client that holds
    /// the verifier.
    fn find_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<CodeLookup>> + Send;
    /// Spends the code (the one winner across instances, as
    /// [`Self::redeem_code`]) and stores `tokens` in the same transaction,
    /// with their grant held against revocation: a crash, an outage or a
    /// lost race between the two can leave neither a spent code without
    /// its tokens nor tokens of a code spent twice.
    fn redeem_code_with_tokens(
        &self,
        code_hash: &str,
        now: i64,
        tokens: Vec<TokenRecord>,
    ) -> impl Future<Output = StoreResult<CodeRedeemed>> + Send;
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_hash: String,
    pub kind: TokenKind,
    pub client_id: String,
    pub grant_id: Option<String>,
    pub sub: Option<String>,
    pub scope: String,
    /// `cnf.jkt` (DPoP key thumbprint).
    pub cnf_jkt: Option<String>,
    /// `cnf.x5t#S256` (client certificate thumbprint).
    pub cnf_x5t: Option<String>,
    /// JSON text of extra introspection data (authorization_details, consent_id, …).
    pub details: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// Outcome of rotating a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The old refresh token, now revoked.
    Rotated(Box<TokenRecord>),
    /// Unknown, expired, revoked or already rotated.
    Invalid,
}

pub trait TokenRepository: Send + Sync {
    /// Stores tokens (an access token and perhaps a refresh token) at once,
    /// refusing if their grant has been revoked meanwhile (a consent revoked
    /// while a refresh is in flight must not yield new tokens).
    fn put_tokens(
        &self,
        tokens: Vec<TokenRecord>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// An unexpired, unrevoked token.
    fn get_active_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<TokenRecord>>> + Send;
    /// Revokes one token (and, for a refresh token, what belongs to its grant
    /// when `cascade`).
    fn revoke_token(
        &self,
        token_hash: &str,
        cascade: bool,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Revokes `old_hash` (a refresh token) and stores `replacement` tokens in
    /// one transaction; one winner across instances.
    fn rotate_refresh(
        &self,
        old_hash: &str,
        replacement: Vec<TokenRecord>,
        now: i64,
    ) -> impl Future<Output = StoreResult<RefreshRotation>> + Send;
    /// Deletes tokens that expired before `now`; returns how many went.
    fn purge_expired_tokens(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

// ---------------------------------------------------------------- CIBA

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CibaRequestRecord {
    pub auth_req_id_hash: String,
    pub client_id: String,
    /// `pending`, `approved`, `denied`.
    pub status: String,
    /// JSON text: scope, hint, binding_message, acr, notification token hash…
    pub request: String,
    pub grant_id: Option<String>,
    pub interval: i64,
    pub last_polled_at: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
    /// SHA-256 of the request's public handle (what the bank's notification
    /// service and decision API name; never the `auth_req_id`).
    #[serde(default)]
    pub handle_hash: Option<String>,
}

/// Outcome of [`CibaRepository::poll_ciba_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CibaPoll {
    /// At least `interval` seconds after the previous poll (or the first).
    InTime,
    /// Too early (CIBA §11 `slow_down`): the interval has grown by the step.
    TooFast,
}

pub trait CibaRepository: Send + Sync {
    fn put_ciba_request(
        &self,
        rec: CibaRequestRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn get_ciba_request(
        &self,
        auth_req_id_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<CibaRequestRecord>>> + Send;
    /// Moves a pending request to `approved` or `denied` (once).
    fn decide_ciba_request(
        &self,
        auth_req_id_hash: &str,
        status: &str,
        grant_id: Option<String>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records a poll; returns the previous poll time (for `slow_down`).
    fn touch_ciba_poll(
        &self,
        auth_req_id_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;
    /// The request behind a public handle, whatever its state or expiry.
    fn get_ciba_request_by_handle(
        &self,
        handle_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<CibaRequestRecord>>> + Send;
    /// Approves a pending, unexpired request and stores its grant, both or
    /// neither, in one transaction: `Ok(false)` (nothing written) when the
    /// request is no longer pending, has expired or does not exist.
    fn approve_ciba_request(
        &self,
        auth_req_id_hash: &str,
        grant: GrantRecord,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records a poll at `now` (CIBA §7.3 `interval`, §11 `slow_down`): in
    /// time when no poll came within the current interval; otherwise the
    /// interval grows by `step` seconds. One conditional update, so two
    /// instances answering polls of the same request cannot both let a
    /// too-early one through. `None` when the request does not exist.
    fn poll_ciba_request(
        &self,
        auth_req_id_hash: &str,
        now: i64,
        step: i64,
    ) -> impl Future<Output = StoreResult<Option<CibaPoll>>> + Send;
}

/// A CIBA delivery waiting to be made or retried (an outbox row): the
/// bank's notify hook, a ping or a push. Whichever instance claims it sends
/// it, so a restart or a dying instance loses none (at least once: a
/// delivery whose sender died after sending may be sent again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CibaDeliveryRecord {
    pub delivery_id: String,
    /// `notify`, `ping` or `push`.
    pub kind: String,
    /// The URL it goes to.
    pub target: String,
    /// The JSON body; for ping and push sealed (it holds the `auth_req_id`
    /// or tokens) under a key the database does not hold.
    pub body: String,
    /// Ping and push: the client's sealed `client_notification_token`.
    pub bearer: Option<String>,
    /// Ping and push: the request's delivery seed the seals are bound to.
    pub seed: Option<String>,
    pub client_id: String,
    /// Attempts made or under way.
    pub attempts: i64,
    /// When it is due (milliseconds); while an attempt is under way, the
    /// end of that attempt's lease, after which another instance may claim
    /// it.
    pub next_attempt_ms: i64,
    /// The request's expiry (seconds): not sent after it, purged then.
    pub expires_at: i64,
}

/// Outcome of [`CibaOutbox::redeem_ciba_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CibaRedeemed {
    /// The request was spent and its tokens stored, in one transaction.
    Redeemed,
    /// No such request (already redeemed, or never there): nothing stored.
    Gone,
    /// The request was spent, but its grant was revoked meanwhile: no
    /// token stored.
    GrantRevoked,
}

/// The CIBA outbox ([`CibaDeliveryRecord`]).
pub trait CibaOutbox: Send + Sync {
    /// The request and the bank's notice of it, both or neither.
    fn put_ciba_request_with_delivery(
        &self,
        rec: CibaRequestRecord,
        delivery: CibaDeliveryRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn put_ciba_delivery(
        &self,
        delivery: CibaDeliveryRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Up to `limit` deliveries due at `now_ms`, oldest first.
    fn due_ciba_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<CibaDeliveryRecord>>> + Send;
    /// Claims a due delivery for one attempt, leased until `until_ms`: one
    /// conditional update on the `next_attempt_ms` that was read, so one
    /// instance wins. `false` when another did.
    fn claim_ciba_delivery(
        &self,
        delivery_id: &str,
        seen_next_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// After a failed attempt: due again at `next_ms`.
    fn retry_ciba_delivery(
        &self,
        delivery_id: &str,
        next_ms: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Sent or given up.
    fn drop_ciba_delivery(&self, delivery_id: &str)
    -> impl Future<Output = StoreResult<()>> + Send;
    /// Spends an approved request and stores its tokens in one transaction
    /// (one winner: the delete of the row), so a crash between the two
    /// cannot leave a spent request without its tokens.
    fn redeem_ciba_request(
        &self,
        auth_req_id_hash: &str,
        tokens: Vec<TokenRecord>,
    ) -> impl Future<Output = StoreResult<CibaRedeemed>> + Send;
}

// ---------------------------------------------------------------- sessions

/// A browser session at the built-in login (or after a bank login hook),
/// stored under the hash of the cookie value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_hash: String,
    pub sub: String,
    pub auth_time: i64,
    pub acr: Option<String>,
    /// JSON array text.
    pub amr: String,
    pub expires_at: i64,
}

/// An authorization request waiting for login and consent, keyed by a random
/// interaction id that the browser carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionRecord {
    pub interaction_id: String,
    pub client_id: String,
    /// JSON text of the validated authorization request and progress.
    pub state: String,
    pub expires_at: i64,
}

pub trait SessionRepository: Send + Sync {
    fn put_session(&self, s: SessionRecord) -> impl Future<Output = StoreResult<()>> + Send;
    fn get_session(
        &self,
        session_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<SessionRecord>>> + Send;
    fn delete_session(&self, session_hash: &str) -> impl Future<Output = StoreResult<()>> + Send;
    fn put_interaction(&self, i: InteractionRecord)
    -> impl Future<Output = StoreResult<()>> + Send;
    /// The unexpired interaction, with its client's registration (read
    /// together: every step of the interaction needs both). The client is
    /// `None` only if it was deleted meanwhile.
    fn get_interaction(
        &self,
        interaction_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<(InteractionRecord, Option<ClientRecord>)>>> + Send;
    /// Removes the interaction; `Ok(true)` only for the first caller.
    fn take_interaction(
        &self,
        interaction_id: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

//! The CIBA state machine: `pending` → `approved` (with a grant) or
//! `denied`, once; an approved request is redeemed once (its row deleted);
//! any request expires at `expires_at`. Every move is one conditional
//! write in the database, so instances sharing it agree.

use oauth_core::authorization::{Authentication, GrantDetails};
use oauth_core::client::AuthenticatedClient;
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::grant::{Binding, prepare_for_grant, sender_binding};
use oauth_core::keys::Keys;
use oauth_core::policy::Policy;
use oauth_core::secret::{hash_secret, new_secret, random_token, time_ordered};
use oauth_core::storage::{
    CibaDeliveryRecord, CibaOutbox, CibaPoll, CibaRedeemed, CibaRepository, CibaRequestRecord,
    GrantRecord, GrantRepository,
};
use oauth_core::token::TokenResponse;
use oauth_core::token::claims::ClaimsHook;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hooks::{Hooks, Notice};
use crate::request::{BackchannelRequest, HintType};
use crate::{AUTH_REQ_ID_CLAIM, GRANT_TYPE, SLOW_DOWN_STEP_SECS};

pub const PENDING: &str = "pending";
pub const APPROVED: &str = "approved";
pub const DENIED: &str = "denied";

/// What a stored request holds ([`CibaRequestRecord::request`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CibaData {
    /// The customer the bank resolved the hint to.
    pub sub: String,
    pub scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
    pub hint_type: HintType,
    /// Ping and push: the client's bearer for its notification endpoint,
    /// sealed ([`seal_notification_token`]) under a key the database does
    /// not hold: it must be sent back, so it cannot be stored hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_notification_token: Option<String>,
    /// The id_token claim that carries the consent id (`[hooks]
    /// consent_claim`).
    pub consent_claim: String,
    /// Ping and push: the random seed the `auth_req_id` is derived from
    /// ([`derive_auth_req_id`]) with a key the database does not hold, so
    /// the notification can name it while the store keeps only its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_seed: Option<String>,
}

/// The `auth_req_id` of a ping or push request: HMAC-SHA-256 under
/// `key` (derived from the key-encryption key, never stored) of the
/// request's random seed, base64url (256 bits).
pub fn derive_auth_req_id(key: &[u8], seed: &str) -> String {
    use base64::Engine as _;
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&k, seed.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// The AES-256-GCM key that seals `client_notification_token`s:
/// HMAC-SHA-256 of a fixed label under the delivery key, so it differs
/// from the key the `auth_req_id`s are derived with.
fn notification_token_key(key: &[u8]) -> Result<aws_lc_rs::aead::RandomizedNonceKey, OAuthError> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let derived = aws_lc_rs::hmac::sign(&k, b"strongroom ciba client_notification_token v1");
    aws_lc_rs::aead::RandomizedNonceKey::new(&aws_lc_rs::aead::AES_256_GCM, derived.as_ref())
        .map_err(|_| OAuthError::server_error())
}

/// Seals a request's `client_notification_token` (bound to its seed as
/// associated data): base64url of nonce ‖ ciphertext ‖ tag.
pub fn seal_notification_token(key: &[u8], seed: &str, token: &str) -> Result<String, OAuthError> {
    use base64::Engine as _;
    let mut in_out = token.as_bytes().to_vec();
    let nonce = notification_token_key(key)?
        .seal_in_place_append_tag(aws_lc_rs::aead::Aad::from(seed.as_bytes()), &mut in_out)
        .map_err(|_| OAuthError::server_error())?;
    let mut out = nonce.as_ref().to_vec();
    out.extend_from_slice(&in_out);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
}

/// Opens [`seal_notification_token`]'s output for the same seed; `None` if
/// it was altered, belongs to another request or another key.
pub fn open_notification_token(key: &[u8], seed: &str, sealed: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed)
        .ok()?;
    const NONCE: usize = aws_lc_rs::aead::NONCE_LEN;
    if raw.len() < NONCE {
        return None;
    }
    let (nonce, ct) = raw.split_at(NONCE);
    let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut in_out = ct.to_vec();
    let plain = notification_token_key(key)
        .ok()?
        .open_in_place(
            nonce,
            aws_lc_rs::aead::Aad::from(seed.as_bytes()),
            &mut in_out,
        )
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// The delivery mode the client registered (`poll` when unset).
pub fn delivery_mode(client: &oauth_core::client::Client) -> &str {
    client
        .metadata
        .backchannel_token_delivery_mode
        .as_deref()
        .unwrap_or("poll")
}

/// CIBA §11: a push-mode client gets its tokens at its notification
/// endpoint; at the token endpoint it is `unauthorized_client` ("configured
/// in Push Mode"), whatever the state of the request.
pub fn check_may_poll(client: &oauth_core::client::Client) -> Result<(), OAuthError> {
    if delivery_mode(client) == "push" {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client is configured in push mode: its tokens are delivered to its notification endpoint",
        ));
    }
    Ok(())
}

/// The successful answer (CIBA §7.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticationResponse {
    pub auth_req_id: String,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
}

/// A request just stored: the answer for the client and the handle for
/// the bank.
#[derive(Debug, Clone)]
pub struct Started {
    pub response: AuthenticationResponse,
    /// The public handle (never the `auth_req_id`), 128 random bits.
    pub handle: String,
    pub data: CibaData,
    pub expires_at: i64,
    /// The bank's notice, stored with the request and held by this
    /// instance for its first attempt (`crate::outbox::attempt`).
    pub notice: CibaDeliveryRecord,
}

fn corrupt(e: impl std::fmt::Display) -> OAuthError {
    tracing::error!(error = %e, "stored CIBA request unreadable");
    OAuthError::server_error()
}

/// Stores a validated request for customer `sub` (CIBA §7.3): a fresh
/// `auth_req_id` of 256 random bits (for ping and push derived with
/// `delivery_key` from a random seed, [`derive_auth_req_id`]) and a handle,
/// both kept only as their SHA-256.
/// The request and the bank's notice of it (docs/hooks.md §10b) go into
/// the database in one transaction.
pub async fn start<S: CibaOutbox>(
    store: &S,
    hooks: &Hooks,
    client: &AuthenticatedClient,
    req: BackchannelRequest,
    sub: String,
    consent_claim: &str,
    now: i64,
) -> Result<Started, OAuthError> {
    let interval = hooks.config().interval_secs;
    let delivery_key = hooks.delivery_key();
    let notifies = matches!(delivery_mode(&client.client), "ping" | "push");
    let delivery_seed = notifies.then(|| random_token(32));
    let data = CibaData {
        sub,
        scope: req.request.scope,
        acr_values: req.request.acr_values,
        binding_message: req.binding_message,
        claims: req.request.claims,
        authorization_details: req.request.authorization_details,
        intent_id: req.intent_id,
        hint_type: req.hint_type,
        sealed_notification_token: match (&delivery_seed, &req.client_notification_token) {
            (Some(seed), Some(token)) => Some(seal_notification_token(delivery_key, seed, token)?),
            _ => None,
        },
        consent_claim: consent_claim.to_owned(),
        delivery_seed,
    };
    let auth_req_id = match &data.delivery_seed {
        Some(seed) => derive_auth_req_id(delivery_key, seed),
        None => new_secret(),
    };
    let handle = random_token(16);
    let expires_at = now.saturating_add(req.expires_in);
    let m = &client.client.metadata;
    let notice = crate::outbox::notice(
        hooks,
        &Notice {
            handle: handle.clone(),
            sub: data.sub.clone(),
            client_id: client.client.id().to_owned(),
            client_name: m.client_name.clone(),
            logo_uri: m.logo_uri.clone(),
            policy_uri: m.policy_uri.clone(),
            tos_uri: m.tos_uri.clone(),
            binding_message: data.binding_message.clone(),
            scope: data.scope.clone(),
            acr_values: data.acr_values.clone(),
            intent_id: data.intent_id.clone(),
            authorization_details: data.authorization_details.clone(),
            expires_at,
        },
        crate::outbox::now_ms(),
    )?;
    store
        .put_ciba_request_with_delivery(
            CibaRequestRecord {
                auth_req_id_hash: hash_secret(&auth_req_id),
                client_id: client.client.id().to_owned(),
                status: PENDING.into(),
                request: serde_json::to_string(&data).map_err(corrupt)?,
                grant_id: None,
                interval,
                last_polled_at: None,
                expires_at,
                created_at: now,
                handle_hash: Some(hash_secret(&handle)),
            },
            notice.clone(),
        )
        .await?;
    let push = delivery_mode(&client.client) == "push";
    Ok(Started {
        response: AuthenticationResponse {
            auth_req_id,
            expires_in: req.expires_in,
            interval: (!push).then_some(interval),
        },
        handle,
        data,
        expires_at,
        notice,
    })
}

/// The stored data of a request.
pub fn data(rec: &CibaRequestRecord) -> Result<CibaData, OAuthError> {
    serde_json::from_str(&rec.request).map_err(corrupt)
}

/// The token request with `grant_type=urn:openid:params:grant-type:ciba`
/// (CIBA §10.1, §11): `authorization_pending` while the customer has not
/// decided, `slow_down` when polled within the interval (which grows),
/// `access_denied`, `expired_token`; `invalid_grant` for an unknown or
/// already redeemed `auth_req_id` and for another client's (whose state is
/// not touched). Tokens once, sender-constrained like every grant.
#[allow(clippy::too_many_arguments)]
pub async fn redeem<
    S: CibaRepository + CibaOutbox + GrantRepository,
    H: ClaimsHook,
    E: oauth_core::jwks_resolver::IdTokenEncryption,
>(
    store: &S,
    keys: &Keys,
    policy: &Policy,
    hook: &H,
    client: &AuthenticatedClient,
    auth_req_id: Option<&str>,
    binding: &Binding,
    encryption: &E,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    if !client.client.allows_grant(GRANT_TYPE) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client may not use the CIBA grant",
        ));
    }
    let auth_req_id =
        auth_req_id.ok_or_else(|| OAuthError::invalid_request("auth_req_id is required"))?;
    let unknown = || OAuthError::invalid_grant("auth_req_id is unknown or already used");
    let hash = hash_secret(auth_req_id);
    let rec = store.get_ciba_request(&hash).await?.ok_or_else(unknown)?;
    if rec.client_id != client.client.id() {
        tracing::warn!(client_id = %client.client.id(), "auth_req_id of another client presented");
        return Err(unknown());
    }
    if rec.expires_at <= now {
        return Err(OAuthError::new(
            ErrorCode::ExpiredToken,
            "the authentication request has expired",
        ));
    }
    match rec.status.as_str() {
        PENDING => {
            match store
                .poll_ciba_request(&hash, now, SLOW_DOWN_STEP_SECS)
                .await?
            {
                Some(CibaPoll::TooFast) => Err(OAuthError::new(
                    ErrorCode::SlowDown,
                    "polled too often: wait the interval (now longer) between polls",
                )),
                Some(CibaPoll::InTime) => Err(OAuthError::new(
                    ErrorCode::AuthorizationPending,
                    "the customer has not yet decided",
                )),
                None => Err(unknown()),
            }
        }
        DENIED => Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "the customer denied the request",
        )),
        APPROVED => {
            let cnf = sender_binding(client, policy, binding)?;
            let grant_id = rec.grant_id.clone().ok_or_else(|| corrupt("no grant"))?;
            let grant = store.get_grant(&grant_id).await?.ok_or_else(unknown)?;
            let mut extra = serde_json::Map::new();
            extra.insert(AUTH_REQ_ID_CLAIM.into(), auth_req_id.into());
            // The tokens are minted first, then the request is spent and
            // they are stored in one transaction: one winner (the row's
            // delete), and no spent request without its tokens.
            let (tokens, records) = prepare_for_grant(
                keys, policy, hook, GRANT_TYPE, client, &grant, &cnf, &extra, encryption, now,
            )
            .await?;
            match store.redeem_ciba_request(&hash, records).await? {
                CibaRedeemed::Redeemed => Ok(tokens),
                CibaRedeemed::Gone => Err(unknown()),
                CibaRedeemed::GrantRevoked => Err(OAuthError::invalid_grant(
                    "the authorization grant has been revoked",
                )),
            }
        }
        other => Err(corrupt(format_args!("status {other}"))),
    }
}

/// The bank's decision (docs/hooks.md §10c), already verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub approved: bool,
    pub sub: Option<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: Option<i64>,
    pub consent_id: Option<String>,
    pub accounts: Vec<String>,
}

/// Why a decision was not applied.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionRefused {
    /// No request has this handle (HTTP 404).
    UnknownHandle,
    /// Already approved or denied (409 `already_decided`).
    AlreadyDecided,
    /// Past its expiry (409 `expired_token`).
    Expired,
    /// An approval for another customer than the one resolved (400).
    WrongSub,
    /// An approval of a request that named an intent, without naming that
    /// same intent as its consent id (400), as the redirect flow refuses it.
    OtherConsent,
    Failed(OAuthError),
}

impl From<OAuthError> for DecisionRefused {
    fn from(e: OAuthError) -> Self {
        DecisionRefused::Failed(e)
    }
}

impl From<oauth_core::storage::StoreError> for DecisionRefused {
    fn from(e: oauth_core::storage::StoreError) -> Self {
        DecisionRefused::Failed(e.into())
    }
}

/// The request behind a public handle.
pub async fn by_handle<S: CibaRepository>(
    store: &S,
    handle: &str,
) -> Result<CibaRequestRecord, DecisionRefused> {
    if handle.is_empty() || handle.len() > 64 {
        return Err(DecisionRefused::UnknownHandle);
    }
    store
        .get_ciba_request_by_handle(&hash_secret(handle))
        .await?
        .ok_or(DecisionRefused::UnknownHandle)
}

/// Applies the bank's decision to `rec` once: an approval stores the grant
/// (the customer, scope, consent id, accounts and how they authenticated)
/// and moves the request to `approved` in one write; a denial moves it to
/// `denied`. A decided or expired request is left as it is.
pub async fn decide<S: CibaRepository + GrantRepository>(
    store: &S,
    rec: &CibaRequestRecord,
    d: Decision,
    now: i64,
) -> Result<(), DecisionRefused> {
    if rec.status != PENDING {
        return Err(DecisionRefused::AlreadyDecided);
    }
    if rec.expires_at <= now {
        return Err(DecisionRefused::Expired);
    }
    let data = data(rec)?;
    let moved = if d.approved {
        let sub = d.sub.unwrap_or_default();
        if !oauth_core::secret::constant_time_eq(sub.as_bytes(), data.sub.as_bytes()) {
            return Err(DecisionRefused::WrongSub);
        }
        if let Some(intent) = &data.intent_id
            && d.consent_id.as_deref() != Some(intent.as_str())
        {
            return Err(DecisionRefused::OtherConsent);
        }
        let details = GrantDetails {
            authentication: Some(Authentication {
                sub: sub.clone(),
                auth_time: d.auth_time.unwrap_or(now),
                acr: d.acr,
                amr: d.amr,
            }),
            claims_request: data.claims.clone(),
            authorization_details: data.authorization_details.clone(),
            accounts: d.accounts,
            consent_claim: Some(data.consent_claim.clone()),
            ..GrantDetails::default()
        };
        let grant = GrantRecord {
            grant_id: time_ordered(16),
            client_id: rec.client_id.clone(),
            sub: Some(sub),
            scope: data.scope.join(" "),
            consent_id: d.consent_id,
            details: serde_json::to_string(&details).map_err(corrupt)?,
            created_at: now,
            revoked_at: None,
        };
        store
            .approve_ciba_request(&rec.auth_req_id_hash, grant, now)
            .await?
    } else {
        store
            .decide_ciba_request(&rec.auth_req_id_hash, DENIED, None)
            .await?
    };
    if moved {
        Ok(())
    } else {
        // Lost a race with another decision (or the expiry).
        match store.get_ciba_request(&rec.auth_req_id_hash).await? {
            Some(r) if r.status == PENDING => Err(DecisionRefused::Expired),
            Some(_) => Err(DecisionRefused::AlreadyDecided),
            None => Err(DecisionRefused::AlreadyDecided),
        }
    }
}

#[cfg(test)]
mod sealing_tests {
    use super::*;

    #[test]
    fn notification_tokens_are_sealed_to_their_request_and_key() {
        let key = [7u8; 32];
        let sealed = seal_notification_token(&key, "seed-a", "client-bearer-123").unwrap();
        assert!(!sealed.contains("client-bearer-123"));
        assert_eq!(
            open_notification_token(&key, "seed-a", &sealed).as_deref(),
            Some("client-bearer-123")
        );
        assert_eq!(
            open_notification_token(&key, "seed-b", &sealed),
            None,
            "another request"
        );
        assert_eq!(
            open_notification_token(&[8u8; 32], "seed-a", &sealed),
            None,
            "another key"
        );
        let mut bad = sealed.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open_notification_token(&key, "seed-a", std::str::from_utf8(&bad).unwrap()),
            None
        );
        assert_ne!(
            sealed,
            seal_notification_token(&key, "seed-a", "client-bearer-123").unwrap()
        );
    }
}

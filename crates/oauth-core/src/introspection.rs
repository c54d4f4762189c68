//! Token introspection (RFC 7662).
//!
//! Who may introspect what (RFC 7662 §2.1 and §4 leave it to the server):
//! any authenticated client may introspect access tokens, whichever client
//! they were issued to, because a bank's API gateway is a client of its own
//! that checks the TPPs' tokens; refresh tokens are only ever shown to the
//! client they were issued to, since nobody else has a use for them and a
//! gateway must never mistake one for an access token. Everything that is
//! not shown is `{"active": false}`, indistinguishable from an unknown
//! token (§2.2).

use serde_json::{Map, Value, json};

use crate::authorization::Confirmation;
use crate::client::AuthenticatedClient;
use crate::error::OAuthError;
use crate::policy::Policy;
use crate::secret::hash_secret;
use crate::storage::{TokenKind, TokenRecord, TokenRepository};
use crate::token::{TOKEN_TYPE_BEARER, TOKEN_TYPE_DPOP, TokenDetails};

/// The `token_type` introspection reports for a refresh token: not an RFC
/// 6749 §7.1 access token type, so a gateway that checks `token_type` can
/// never accept a refresh token as an access token.
pub const REFRESH_TOKEN_TYPE: &str = "refresh_token";

fn inactive() -> Value {
    json!({"active": false})
}

/// RFC 7662 §2.2 response members of an active token.
fn describe(policy: &Policy, t: &TokenRecord) -> Value {
    let details: TokenDetails = serde_json::from_str(&t.details).unwrap_or_else(|e| {
        // The token itself is valid; report what the columns hold.
        tracing::error!(error = %e, "stored token details unreadable");
        TokenDetails::default()
    });
    let mut m = Map::new();
    m.insert("active".into(), true.into());
    m.insert("iss".into(), policy.issuer.clone().into());
    m.insert("client_id".into(), t.client_id.clone().into());
    m.insert("scope".into(), t.scope.clone().into());
    // RFC 7662 §2.2 `sub`: the customer as the token's client is shown it
    // (crate::subject), the same as in its id_tokens.
    if let Some(sub) = details.subject.as_ref().or(t.sub.as_ref()) {
        m.insert("sub".into(), sub.clone().into());
    }
    m.insert("iat".into(), t.created_at.into());
    m.insert("exp".into(), t.expires_at.into());
    let token_type = match t.kind {
        TokenKind::Refresh => REFRESH_TOKEN_TYPE,
        TokenKind::Access if t.cnf_jkt.is_some() => TOKEN_TYPE_DPOP,
        TokenKind::Access => TOKEN_TYPE_BEARER,
    };
    m.insert("token_type".into(), token_type.into());
    let cnf = Confirmation {
        jkt: t.cnf_jkt.clone(),
        x5t_s256: t.cnf_x5t.clone(),
    };
    if !cnf.is_empty() {
        // RFC 9449 §6.2, RFC 8705 §3.2.
        m.insert("cnf".into(), json!(cnf));
    }
    if let Some(ad) = details.authorization_details {
        // RFC 9396 §9.1.
        m.insert("authorization_details".into(), ad);
    }
    if let Some(c) = details.consent_id {
        m.insert("consent_id".into(), c.into());
    }
    if let Some(acr) = details.acr {
        m.insert("acr".into(), acr.into());
    }
    if let Some(t) = details.auth_time {
        m.insert("auth_time".into(), t.into());
    }
    if !details.accounts.is_empty() {
        m.insert("accounts".into(), details.accounts.into());
    }
    for (name, v) in details.claims {
        // The token-claims hook adds members; it never overrides ours.
        if !crate::token::claims::INTROSPECTION_RESERVED.contains(&name.as_str())
            && name != "accounts"
        {
            m.insert(name, v);
        }
    }
    Value::Object(m)
}

/// RFC 7662 §2: what the authorization server knows about `token`, for an
/// authenticated `caller` (the server authenticates it first, §2.1).
///
/// `token_type_hint` is accepted and ignored: one lookup finds access and
/// refresh tokens alike (§2.1 allows ignoring it). Unknown, expired and
/// revoked tokens, and refresh tokens of other clients, are
/// `{"active": false}` and nothing else. An empty `token` is
/// `invalid_request` (§2.1: the parameter is required).
pub async fn introspect<S: TokenRepository>(
    store: &S,
    policy: &Policy,
    caller: &AuthenticatedClient,
    token: &str,
    _hint: Option<&str>,
    now: i64,
) -> Result<Value, OAuthError> {
    if token.is_empty() {
        return Err(OAuthError::invalid_request("token is required"));
    }
    let found = store.get_active_token(&hash_secret(token), now).await?;
    Ok(answer(policy, caller, found.as_ref()))
}

/// [`introspect`]'s answer for a token already looked up: `found` is what
/// [`TokenRepository::get_active_token`] returned for the SHA-256 of the
/// presented token (a server may read it together with the caller's
/// registration, before authenticating the caller; it must not answer
/// before). The caller must present a non-empty token.
#[must_use]
pub fn answer(policy: &Policy, caller: &AuthenticatedClient, found: Option<&TokenRecord>) -> Value {
    match found {
        Some(t) if t.kind == TokenKind::Refresh && t.client_id != caller.client.id() => inactive(),
        Some(t) => describe(policy, t),
        None => inactive(),
    }
}

//! Tokens: access and refresh tokens ([`issue`]), ID Tokens ([`id_token`])
//! and the token endpoint's response (RFC 6749 §5.1).

pub mod claims;
pub mod id_token;
pub mod issue;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use claims::{ClaimsHook, ClaimsQuery, ExtraClaims, NoClaimsHook};
pub use id_token::{
    DEFAULT_CONSENT_CLAIM, FrontChannel, IdTokenInput, at_hash, consent_claim_name, id_token_alg,
    id_token_claims, issue_id_token,
};
pub use issue::{
    ACCESS_TOKEN_JWT_TYP, IssuedToken, TokenContext, issue_access_token, issue_refresh_token,
};

use crate::authorization::Confirmation;

/// RFC 6750 §6.1.1 token type.
pub const TOKEN_TYPE_BEARER: &str = "Bearer";
/// RFC 9449 §5 token type of DPoP-bound access tokens.
pub const TOKEN_TYPE_DPOP: &str = "DPoP";

/// The `token_type` of an access token with this confirmation: `DPoP` when
/// bound to a DPoP key (RFC 9449 §5), otherwise `Bearer` (mTLS-bound tokens
/// stay `Bearer`, RFC 8705 §3).
pub fn token_type(cnf: &Confirmation) -> &'static str {
    if cnf.jkt.is_some() {
        TOKEN_TYPE_DPOP
    } else {
        TOKEN_TYPE_BEARER
    }
}

/// What a token record keeps besides its columns
/// ([`crate::storage::TokenRecord::details`]): the RFC 7662 §2.2 extension
/// members introspection reports.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TokenDetails {
    /// The `sub` the token's client is shown for the customer
    /// ([`crate::subject::client_subject`]): userinfo's, introspection's
    /// and a JWT access token's. The record's `sub` column stays the
    /// bank's own id of the customer. Absent: that column (tokens issued
    /// before subjects were configurable, client credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `Bearer` or `DPoP` (access tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// `jwt` for RFC 9068 access tokens; absent for opaque ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// RFC 9396 §9.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    /// The bank's consent / intent id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    /// OIDC Core §2 `acr` of the authentication behind the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// OIDC Core §2 `auth_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Accounts the customer selected at the consent step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Extra introspection members from the token-claims hook.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
    /// Extra UserInfo claims from the token-claims hook (access tokens).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub userinfo_claims: Map<String, Value>,
}

/// A successful token response (RFC 6749 §5.1). The server sends it as JSON
/// with `Cache-Control: no-store`.
#[derive(Clone, PartialEq, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// `Bearer` or `DPoP` (RFC 9449 §5).
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OIDC Core §3.1.3.3, when the grant has the `openid` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// RFC 6749 §5.1: always sent, so the client never has to guess.
    pub scope: String,
    /// RFC 9396 §7, when the grant has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are credentials: a stray `{:?}` must not log them.
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("scope", &self.scope)
            .field("authorization_details", &self.authorization_details)
            .finish()
    }
}

/// The claim names requested for `target` (`id_token` or `userinfo`) in an
/// OIDC Core §5.5 `claims` request.
pub(crate) fn requested_claim_names<'a>(
    claims_request: Option<&'a Value>,
    target: &str,
) -> impl Iterator<Item = &'a str> + 'a {
    claims_request
        .and_then(|c| c.get(target))
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys().map(String::as_str))
}

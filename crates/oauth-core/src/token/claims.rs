//! The token-claims hook: at issuance (authorization-code and refresh
//! grants), a deployment may ask an outside service (the bank, through the
//! consent bridge) for extra claims to put into the ID Token, the UserInfo
//! response and the introspection response of the tokens being issued.
//!
//! The grant handlers call the hook after every check has passed and before
//! anything is stored: a hook that fails fails the token request and nothing
//! is issued. Claims the protocol sets itself can never be overridden.

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::OAuthError;

/// What the hook is told about the tokens about to be issued.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClaimsQuery<'a> {
    /// `authorization_code` or `refresh_token`.
    pub grant_type: &'a str,
    pub client_id: &'a str,
    pub sub: Option<&'a str>,
    /// Space-delimited scope of the access token.
    pub scope: &'a str,
    pub consent_id: Option<&'a str>,
    pub acr: Option<&'a str>,
    pub accounts: &'a [String],
}

/// Extra claims per target. Unknown members of the hook's answer are
/// ignored; protocol claims in them are dropped where they are applied.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(default)]
    pub id_token: Map<String, Value>,
    #[serde(default)]
    pub userinfo: Map<String, Value>,
    #[serde(default)]
    pub introspection: Map<String, Value>,
}

/// The token-claims hook. `Ok(None)`: the hook does not apply to this
/// issuance. An error fails the token request (the implementation chooses
/// the code, normally `temporarily_unavailable`).
pub trait ClaimsHook: Send + Sync {
    fn token_claims(
        &self,
        query: &ClaimsQuery<'_>,
    ) -> impl Future<Output = Result<Option<ExtraClaims>, OAuthError>> + Send;
}

/// No hook: nothing is added.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClaimsHook;

impl ClaimsHook for NoClaimsHook {
    async fn token_claims(
        &self,
        _query: &ClaimsQuery<'_>,
    ) -> Result<Option<ExtraClaims>, OAuthError> {
        Ok(None)
    }
}

/// Introspection members (RFC 7662 §2.2 and ours) a hook cannot override.
pub(crate) const INTROSPECTION_RESERVED: [&str; 16] = [
    "active",
    "iss",
    "client_id",
    "scope",
    "sub",
    "iat",
    "exp",
    "nbf",
    "aud",
    "jti",
    "token_type",
    "cnf",
    "authorization_details",
    "consent_id",
    "acr",
    "auth_time",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_parses_with_missing_targets() {
        let e: ExtraClaims =
            serde_json::from_str(r#"{"id_token": {"tier": "gold"}, "other": 1}"#).unwrap();
        assert_eq!(e.id_token["tier"], "gold");
        assert!(e.userinfo.is_empty() && e.introspection.is_empty());
    }
}

//! The data that travels between the steps of an authorization: the
//! validated request (PAR → authorize → consent → code), who authenticated,
//! what the grant holds, and how tokens are bound. Validation lives in
//! [`crate::request`]; these are the shared shapes.

use serde::{Deserialize, Serialize};

/// A validated authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1,
/// RFC 7636 §4.3, RFC 9396 §2, RFC 9449 §10, JARM §2.3). Stored as JSON in the
/// pushed request and carried through to the authorization code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub response_type: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub code_challenge: String,
    /// Always `S256` once validated.
    pub code_challenge_method: String,
    /// `query` (default), `jwt` or `query.jwt` (JARM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<String>,
    /// The OIDC `claims` request (§5.5), e.g. an essential
    /// `openbanking_intent_id` with a `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt: Vec<String>,
    /// RFC 9396 rich authorization request, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// RFC 9449 §10: the DPoP key the code is bound to (from `dpop_jkt` or
    /// the DPoP proof at PAR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_locales: Option<String>,
}

impl AuthorizationRequest {
    pub fn has_scope(&self, s: &str) -> bool {
        self.scope.iter().any(|x| x == s)
    }

    pub fn is_openid(&self) -> bool {
        self.has_scope("openid")
    }

    /// Every `acr` the request asks for: the `acr_values` parameter
    /// (OIDC Core §3.1.2.1) and the `value` / `values` of the id_token's
    /// `acr` claim request (§5.5.1.1), which is how UK TPPs ask for
    /// `urn:openbanking:psd2:sca` (Open Banking Connector sends no
    /// `acr_values`).
    pub fn requested_acrs(&self) -> Vec<String> {
        let mut out = self.acr_values.clone();
        if let Some(acr) = self
            .claims
            .as_ref()
            .and_then(|c| c.get("id_token"))
            .and_then(|c| c.get("acr"))
        {
            out.extend(acr.get("value").and_then(|v| v.as_str()).map(str::to_owned));
            out.extend(
                acr.get("values")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned)),
            );
        }
        out
    }

    /// The `value` of an essential-or-not claim requested for the id_token
    /// (or userinfo), e.g. `openbanking_intent_id`.
    pub fn requested_claim_value(&self, name: &str) -> Option<&str> {
        let claims = self.claims.as_ref()?;
        ["id_token", "userinfo"]
            .iter()
            .find_map(|target| claims.get(target)?.get(name)?.get("value")?.as_str())
    }
}

/// Who authenticated, and how (OIDC Core §2: `auth_time`, `acr`, `amr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authentication {
    pub sub: String,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
}

/// What a grant holds besides its columns ([`crate::storage::GrantRecord::details`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GrantDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// The requested `claims` parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_request: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// The user's claims released to this client (userinfo / id_token).
    #[serde(default)]
    pub user_claims: serde_json::Map<String, serde_json::Value>,
    /// Accounts the customer selected at the consent step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// The claim name under which the consent id is written into the
    /// id_token (default `openbanking_intent_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_claim: Option<String>,
}

/// What the authorization code carries to the token endpoint
/// ([`crate::storage::AuthorizationCodeRecord::request`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeData {
    pub request: AuthorizationRequest,
    pub authentication: Authentication,
}

/// Token confirmation (`cnf`): RFC 9449 §6.1 `jkt`, RFC 8705 §3.1 `x5t#S256`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confirmation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl Confirmation {
    pub fn is_empty(&self) -> bool {
        self.jkt.is_none() && self.x5t_s256.is_none()
    }
}

/// A verified DPoP proof (RFC 9449 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// RFC 7638 thumbprint of the proof's public key.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_acrs_come_from_acr_values_and_the_claims_request() {
        let mut r: AuthorizationRequest = serde_json::from_value(serde_json::json!({
            "client_id": "c", "response_type": "code id_token", "redirect_uri": "https://c/cb",
            "scope": ["openid"], "code_challenge": "", "code_challenge_method": "S256",
            "acr_values": ["urn:a"],
            "claims": {"id_token": {"acr": {"essential": true,
                "values": ["urn:openbanking:psd2:ca", "urn:openbanking:psd2:sca"]}}},
        }))
        .unwrap();
        assert_eq!(
            r.requested_acrs(),
            [
                "urn:a",
                "urn:openbanking:psd2:ca",
                "urn:openbanking:psd2:sca"
            ]
        );
        r.acr_values.clear();
        r.claims = Some(serde_json::json!({"id_token": {"acr": {"value": "urn:b"}}}));
        assert_eq!(r.requested_acrs(), ["urn:b"]);
        r.claims = Some(serde_json::json!({"userinfo": {"acr": {"value": "urn:b"}}}));
        assert!(r.requested_acrs().is_empty());
    }
}

//! The `[hooks]` section of the server configuration (docs/hooks.md §2).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// How hand-off and result tokens are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenMode {
    /// JWE compact, `alg: dir`, `enc: A256GCM`, with `shared_secret`.
    #[default]
    Encrypted,
    /// JWS: hand-offs signed with Strongroom's key (its `/jwks`), results
    /// with the bank's key (`bank_jwks_url`).
    Signed,
}

/// The hooks of the bank's login app, consent app and consent service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// The bank's login app: the customer is sent to
    /// `login_url?handoff=<token>`.
    pub login_url: String,
    /// The bank's consent app: `consent_url?handoff=<token>`.
    pub consent_url: String,
    /// The consent service's intent look-up: `GET {consent_service_url}/{id}`.
    /// Empty: no intent check.
    pub consent_service_url: String,
    /// Bearer token Strongroom presents to the consent service.
    pub consent_service_token: String,
    pub token_mode: TokenMode,
    /// Encrypted mode: 32 random bytes, base64url (the key of `dir`/A256GCM).
    pub shared_secret: String,
    /// Signed mode: the bank's JWKS (keys that sign result tokens).
    pub bank_jwks_url: String,
    /// `iss` of result tokens, `aud` of hand-offs.
    pub bank_issuer: String,
    /// Lifetime of hand-off and result tokens (at most 600 s).
    pub token_lifetime_secs: i64,
    /// Timeout of each call to the consent service (connect and answer).
    pub timeout_ms: u64,
    /// Clients whose authorizations always go through the hooks.
    pub clients: Vec<String>,
    /// `acr` values that select the hooks; listed in `acr_values_supported`.
    pub acr_values: Vec<String>,
    /// The request claim that names the intent, and the id_token claim that
    /// returns the consent id.
    pub consent_claim: String,
    /// Whether a request through the hooks must name an intent.
    pub require_intent: bool,
    /// SHA-256 (hex) of the bank service token that authenticates the bank
    /// lifecycle API (`/bank/...`). Empty: the API is not mounted.
    pub bank_api_token_sha256: String,
    /// Subject DN of a client certificate that authenticates the bank
    /// lifecycle API on the mTLS listener (alternative to the token).
    pub bank_api_subject_dn: String,
    /// Token-claims hook: `POST {claims_url}` at every authorization-code
    /// and refresh issuance of a selected grant. Empty: no hook.
    pub claims_url: String,
    /// Clients whose tokens are enriched by the claims hook.
    pub claims_clients: Vec<String>,
    /// `acr` values (of the authentication behind the grant) that select the
    /// claims hook.
    pub claims_acr_values: Vec<String>,
    /// Outbound webhook: `POST {revocation_webhook_url}` when a TPP revokes
    /// (RFC 7009) a token whose grant carries a consent id. Empty: none.
    pub revocation_webhook_url: String,
    /// Bearer token Strongroom presents to the webhook.
    pub revocation_webhook_token: String,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            login_url: String::new(),
            consent_url: String::new(),
            consent_service_url: String::new(),
            consent_service_token: String::new(),
            token_mode: TokenMode::Encrypted,
            shared_secret: String::new(),
            bank_jwks_url: String::new(),
            bank_issuer: "bank".into(),
            token_lifetime_secs: 300,
            timeout_ms: 3000,
            clients: Vec::new(),
            acr_values: vec!["urn:openbanking:psd2:sca".into()],
            consent_claim: "openbanking_intent_id".into(),
            require_intent: true,
            bank_api_token_sha256: String::new(),
            bank_api_subject_dn: String::new(),
            claims_url: String::new(),
            claims_clients: Vec::new(),
            claims_acr_values: Vec::new(),
            revocation_webhook_url: String::new(),
            revocation_webhook_token: String::new(),
        }
    }
}

fn check_url(key: &str, v: &str, required: bool) -> Result<(), String> {
    if v.is_empty() {
        return if required {
            Err(format!("hooks.{key}: required"))
        } else {
            Ok(())
        };
    }
    let u = url::Url::parse(v).map_err(|e| format!("hooks.{key}: {e}"))?;
    if !matches!(u.scheme(), "https" | "http") || u.fragment().is_some() {
        return Err(format!(
            "hooks.{key}: must be an http(s) URL without fragment"
        ));
    }
    Ok(())
}

impl HooksConfig {
    /// Checks the section; errors are `hooks.<key>: <problem>`.
    pub fn validate(&self) -> Result<(), String> {
        check_url("login_url", &self.login_url, true)?;
        check_url("consent_url", &self.consent_url, true)?;
        check_url("consent_service_url", &self.consent_service_url, false)?;
        check_url("claims_url", &self.claims_url, false)?;
        check_url(
            "revocation_webhook_url",
            &self.revocation_webhook_url,
            false,
        )?;
        if !self.claims_url.is_empty()
            && self.claims_clients.is_empty()
            && self.claims_acr_values.is_empty()
        {
            return Err(
                "hooks.claims_url: name the claims_clients or claims_acr_values it applies to"
                    .into(),
            );
        }
        match self.token_mode {
            TokenMode::Encrypted => {
                self.secret_bytes()?;
            }
            TokenMode::Signed => check_url("bank_jwks_url", &self.bank_jwks_url, true)?,
        }
        if !(10..=600).contains(&self.token_lifetime_secs) {
            return Err("hooks.token_lifetime_secs: must be between 10 and 600".into());
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("hooks.timeout_ms: must be between 100 and 60000".into());
        }
        if self.bank_issuer.is_empty() {
            return Err("hooks.bank_issuer: required".into());
        }
        if self.consent_claim.is_empty() {
            return Err("hooks.consent_claim: required".into());
        }
        if self.require_intent && self.consent_service_url.is_empty() {
            return Err("hooks.consent_service_url: required when require_intent is true".into());
        }
        if !self.bank_api_token_sha256.is_empty()
            && (self.bank_api_token_sha256.len() != 64
                || !self
                    .bank_api_token_sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit()))
        {
            return Err("hooks.bank_api_token_sha256: must be 64 hex digits".into());
        }
        Ok(())
    }

    /// The 32-byte content-encryption key of encrypted mode.
    pub fn secret_bytes(&self) -> Result<[u8; 32], String> {
        let raw = URL_SAFE_NO_PAD
            .decode(self.shared_secret.trim_end_matches('='))
            .map_err(|_| "hooks.shared_secret: must be base64url".to_string())?;
        raw.try_into()
            .map_err(|_| "hooks.shared_secret: must be 32 bytes (256 bits)".to_string())
    }

    /// Whether the token-claims hook enriches tokens of `client_id` whose
    /// authentication had `acr`.
    pub fn claims_apply(&self, client_id: &str, acr: Option<&str>) -> bool {
        !self.claims_url.is_empty()
            && (self.claims_clients.iter().any(|c| c == client_id)
                || acr.is_some_and(|a| self.claims_acr_values.iter().any(|x| x == a)))
    }

    /// Whether a request of `client_id` asking for `acr_values` goes
    /// through the hooks.
    pub fn applies(&self, client_id: &str, acr_values: &[String]) -> bool {
        self.clients.iter().any(|c| c == client_id)
            || acr_values.iter().any(|a| self.acr_values.contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> HooksConfig {
        HooksConfig {
            login_url: "https://bank.example/login".into(),
            consent_url: "https://bank.example/consent".into(),
            consent_service_url: "https://bank.example/intents".into(),
            shared_secret: URL_SAFE_NO_PAD.encode([7u8; 32]),
            clients: vec!["tpp".into()],
            ..HooksConfig::default()
        }
    }

    #[test]
    fn validates_keys() {
        good().validate().unwrap();
        let mut c = good();
        c.shared_secret = URL_SAFE_NO_PAD.encode([7u8; 16]);
        assert!(c.validate().unwrap_err().starts_with("hooks.shared_secret"));
        let mut c = good();
        c.token_lifetime_secs = 3600;
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("hooks.token_lifetime_secs")
        );
        let mut c = good();
        c.login_url = "ftp://x".into();
        assert!(c.validate().unwrap_err().starts_with("hooks.login_url"));
        let mut c = good();
        c.token_mode = TokenMode::Signed;
        assert!(c.validate().unwrap_err().starts_with("hooks.bank_jwks_url"));
    }

    #[test]
    fn claims_hook_selection() {
        let mut c = good();
        assert!(!c.claims_apply("tpp", None), "no claims_url: never");
        c.claims_url = "https://bank.example/claims".into();
        assert!(c.validate().unwrap_err().starts_with("hooks.claims_url"));
        c.claims_acr_values = vec!["urn:openbanking:psd2:sca".into()];
        c.validate().unwrap();
        assert!(c.claims_apply("x", Some("urn:openbanking:psd2:sca")));
        assert!(!c.claims_apply("x", Some("urn:other")));
        assert!(!c.claims_apply("x", None));
        c.claims_clients = vec!["tpp".into()];
        assert!(c.claims_apply("tpp", None));
        c.revocation_webhook_url = "ftp://bank".into();
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("hooks.revocation_webhook_url")
        );
    }

    #[test]
    fn applies_by_client_or_acr() {
        let c = good();
        assert!(c.applies("tpp", &[]));
        assert!(!c.applies("other", &[]));
        assert!(c.applies("other", &["urn:openbanking:psd2:sca".into()]));
    }
}

//! Trust anchors and registration settings, as they appear in the server's
//! configuration file (`[[directories]]`, `[registration]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rules::RulePack;

/// How a directory's TPPs send their registration request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RequestFormat {
    /// A JWS signed by the TPP (`application/jwt` / `application/jose`),
    /// UK Open Banking DCR v3.3 "Request".
    #[default]
    Jwt,
    /// RFC 7591 §3.1 JSON with a `software_statement` member.
    Json,
}

/// One regulatory directory whose software statements (SSAs) Strongroom
/// trusts (RFC 7591 §2.3): a sandbox and a production directory can coexist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// A label for logs and errors, e.g. `ob-sandbox`.
    pub name: String,
    /// The `iss` of the directory's SSAs, e.g. `OpenBanking Ltd`.
    pub issuer: String,
    /// The directory's SSA signing keys by URL (https), refreshed on an
    /// unknown `kid` and every few minutes…
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// …or inline (a JWK Set).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Algorithms accepted for the SSA and the registration request.
    #[serde(default = "default_algs")]
    pub algs: Vec<String>,
    /// Maximum age of the SSA (`iat`), seconds; 0 = no limit. Brazil: 300.
    #[serde(default)]
    pub max_ssa_age_secs: i64,
    /// `software_roles` → scopes they allow, e.g. `AISP = ["accounts"]`.
    #[serde(default)]
    pub role_scopes: BTreeMap<String, Vec<String>>,
    /// Scopes every software from this directory may have whatever its roles.
    #[serde(default = "default_base_scopes")]
    pub base_scopes: Vec<String>,
    /// The ecosystem rule pack: `uk-ob`, `brazil`, `cdr` or `rfc7591`.
    #[serde(default)]
    pub rules: RulePack,
    /// `jwt` (signed request) or `json` (RFC 7591 JSON); default from the pack.
    #[serde(default)]
    pub request_format: Option<RequestFormat>,
    /// Also demand an initial access token (RFC 7591 §3) on registration.
    #[serde(default)]
    pub require_initial_access_token: bool,
    /// The bank's own identifier in this directory (UK: its Open Banking
    /// organisation id), accepted as the registration request's `aud`
    /// besides the issuer and the registration endpoint (UK DCR 3.3: `aud`
    /// should be the ASPSP's id issued by the SSA's issuer).
    #[serde(default)]
    pub aspsp_id: Option<String>,
}

fn default_algs() -> Vec<String> {
    vec!["PS256".into(), "ES256".into()]
}

fn default_base_scopes() -> Vec<String> {
    vec!["openid".into()]
}

impl DirectoryConfig {
    /// The request format: configured, or the rule pack's.
    pub fn format(&self) -> RequestFormat {
        self.request_format
            .unwrap_or_else(|| self.rules.rules().request_format)
    }
}

/// `[registration]`: endpoint-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Largest registration body accepted, bytes.
    pub max_body_bytes: usize,
    /// At most this many registrations per `software_id` per window.
    pub rate_limit_per_software: u32,
    /// The rate-limit window, seconds.
    pub rate_limit_window_secs: i64,
    /// SHA-256 (base64url, `strongroom hash-secret`) of initial access
    /// tokens (RFC 7591 §3) that allow a plain RFC 7591 registration without
    /// a software statement. Empty: no such mode.
    pub initial_access_tokens_sha256: Vec<String>,
    /// Scopes a client registered with an initial access token (and no SSA)
    /// may have.
    pub initial_access_scopes: Vec<String>,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            max_body_bytes: 64 * 1024,
            rate_limit_per_software: 20,
            rate_limit_window_secs: 3600,
            initial_access_tokens_sha256: Vec::new(),
            initial_access_scopes: vec!["openid".into()],
        }
    }
}

/// Checks the settings without touching the network; the error names the
/// key (`directories[0].jwks_uri`) and the problem.
pub fn validate(
    directories: &[DirectoryConfig],
    registration: &RegistrationConfig,
) -> Result<(), (String, String)> {
    let err = |k: String, p: &str| Err((k, p.to_string()));
    let mut names = std::collections::HashSet::new();
    let mut issuers = std::collections::HashSet::new();
    for (i, d) in directories.iter().enumerate() {
        let key = |f: &str| format!("directories[{i}].{f}");
        if d.name.trim().is_empty() {
            return err(key("name"), "must not be empty");
        }
        if !names.insert(d.name.clone()) {
            return err(key("name"), "is used by another directory");
        }
        if d.issuer.is_empty() {
            return err(key("issuer"), "must not be empty");
        }
        if !issuers.insert(d.issuer.clone()) {
            return err(
                key("issuer"),
                "is used by another directory (SSAs are matched to directories by iss)",
            );
        }
        match (&d.jwks_uri, &d.jwks) {
            (Some(_), Some(_)) => return err(key("jwks"), "give jwks_uri or jwks, not both"),
            (None, None) => return err(key("jwks_uri"), "give jwks_uri or jwks"),
            (Some(u), None) => match url::Url::parse(u) {
                Ok(u) if u.scheme() == "https" => {}
                _ => return err(key("jwks_uri"), "must be an https URL"),
            },
            (None, Some(j)) => {
                if !j.get("keys").is_some_and(|k| k.is_array()) {
                    return err(key("jwks"), "must be a JWK Set with a keys array");
                }
            }
        }
        if d.algs.is_empty() {
            return err(key("algs"), "must list at least one algorithm");
        }
        for a in &d.algs {
            if !matches!(a.as_str(), "PS256" | "ES256" | "EdDSA") {
                return err(key("algs"), "only PS256, ES256 and EdDSA are allowed");
            }
        }
        if d.max_ssa_age_secs < 0 {
            return err(key("max_ssa_age_secs"), "must not be negative");
        }
    }
    if registration.max_body_bytes < 1024 || registration.max_body_bytes > 1024 * 1024 {
        return err(
            "registration.max_body_bytes".into(),
            "must be between 1024 and 1048576",
        );
    }
    if registration.rate_limit_per_software == 0 || registration.rate_limit_window_secs <= 0 {
        return err(
            "registration.rate_limit_per_software".into(),
            "the limit and its window must be positive",
        );
    }
    for h in &registration.initial_access_tokens_sha256 {
        if !oauth_core::secret::is_secret_key(h) {
            return err(
                "registration.initial_access_tokens_sha256".into(),
                "entries are what `strongroom hash-secret` prints (43 or 54 characters)",
            );
        }
    }
    Ok(())
}

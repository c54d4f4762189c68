//! The bank's side of the hook protocol, written from `docs/hooks.md` alone
//! (no Strongroom crate): the hand-off and result claims (§4, §5), their
//! encrypted form (JWE compact, `dir` + `A256GCM` with the shared secret),
//! the revocation notice (§7a), the CIBA hooks and decision token,
//! and the small helpers a bank needs around
//! them (constant-time comparison, random ids, the clock).
//!
//! A bank writing this in Java or .NET does the same with its own JOSE
//! library (Nimbus, jose-jwt): nothing here is specific to Rust or to
//! Strongroom's code.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwe::{self, JweHeader};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only JWE algorithms of encrypted mode (docs/hooks.md §4, §5).
pub const ALG: &str = "dir";
pub const ENC: &str = "A256GCM";

/// Which hook a token belongs to (`purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Login,
    Consent,
    /// A decision on a decoupled (CIBA) request (docs/hooks.md, CIBA).
    Ciba,
}

/// The hand-off token's claims (docs/hooks.md §4). Unknown claims are
/// ignored, so Strongroom may add some without breaking the bank.
#[derive(Debug, Clone, Deserialize)]
pub struct Handoff {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Copied unchanged into the result.
    pub sid: String,
    pub purpose: Purpose,
    /// `{issuer}/interaction/{id}/hook/{login|consent}`.
    pub return_uri: String,
    /// The TPP's redirect URI of this request, where Strongroom may send
    /// the browser after the bank's answer.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    pub client_id: String,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub software_id: Option<String>,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub intent_id: Option<String>,
    #[serde(default)]
    pub authorization_details: Option<Value>,
    /// Consent hand-offs: the customer who logged in.
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub acr_values: Vec<String>,
    #[serde(default)]
    pub login_hint: Option<String>,
    #[serde(default)]
    pub ui_locales: Option<String>,
}

impl Handoff {
    /// The TPP as the customer should read it.
    pub fn tpp_name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.client_id)
    }
}

/// The result token's claims (docs/hooks.md §5); absent members are left
/// out of the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct HookResult {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sid: String,
    pub purpose: Purpose,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Consent: `approved` or `denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
}

impl HookResult {
    /// A result answering `h`, issued by `iss` to `aud` for `lifetime` seconds.
    pub fn answering(h: &Handoff, iss: &str, aud: &str, lifetime: i64) -> HookResult {
        let t = now();
        HookResult {
            iss: iss.into(),
            aud: aud.into(),
            iat: t,
            exp: t + lifetime,
            jti: random_token(16),
            sid: h.sid.clone(),
            purpose: h.purpose,
            error: None,
            sub: None,
            acr: None,
            amr: Vec::new(),
            auth_time: None,
            status: None,
            consent_id: None,
            scope: None,
            accounts: Vec::new(),
            claims: Map::new(),
        }
    }
}

/// The revocation webhook's body (docs/hooks.md §7a).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevocationNotice {
    pub event: String,
    pub jti: String,
    pub iat: i64,
    pub consent_id: String,
    pub client_id: String,
    /// `access_token` or `refresh_token`.
    pub token_type: String,
}

/// The CIBA resolve hook's question (docs/hooks.md, CIBA resolve hook): which customer
/// does this hint name?
#[derive(Debug, Clone, Deserialize)]
pub struct ResolveRequest {
    pub client_id: String,
    /// `login_hint`, `login_hint_token` or `id_token_hint` (for which `hint`
    /// is the `sub` Strongroom verified).
    pub hint_type: String,
    pub hint: String,
}

/// The CIBA notify hook's body (docs/hooks.md, CIBA notify hook): a request awaits the
/// customer. Unknown members are ignored; absent ones are omitted by
/// Strongroom.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CibaNotice {
    /// The request's public handle (not the TPP's `auth_req_id`).
    pub handle: String,
    pub sub: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_message: Option<String>,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub acr_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    /// Unix seconds.
    pub expires_at: i64,
}

impl CibaNotice {
    /// The TPP as the customer should read it.
    pub fn tpp_name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.client_id)
    }
}

/// The decision token the bank posts to `POST {issuer}/bank/ciba/{handle}/decision`
/// (docs/hooks.md, CIBA decision API): sealed like a §5 result, `purpose` = `ciba`.
#[derive(Debug, Clone, Serialize)]
pub struct CibaDecision {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub purpose: Purpose,
    pub handle: String,
    /// `approved` or `denied`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
}

impl CibaDecision {
    /// A denial of `handle`, issued by `iss` to `aud` for `lifetime` seconds;
    /// [`CibaDecision::approve`] turns it into an approval.
    pub fn deny(handle: &str, iss: &str, aud: &str, lifetime: i64) -> CibaDecision {
        let t = now();
        CibaDecision {
            iss: iss.into(),
            aud: aud.into(),
            iat: t,
            exp: t + lifetime,
            jti: random_token(16),
            purpose: Purpose::Ciba,
            handle: handle.into(),
            status: "denied".into(),
            sub: None,
            acr: None,
            amr: Vec::new(),
            auth_time: None,
            consent_id: None,
            accounts: Vec::new(),
        }
    }

    /// The customer `sub` approved, authenticated with `acr`/`amr` now.
    pub fn approve(
        mut self,
        sub: &str,
        acr: &str,
        amr: &[&str],
        consent: Option<(String, Vec<String>)>,
    ) -> CibaDecision {
        self.status = "approved".into();
        self.sub = Some(sub.into());
        self.acr = Some(acr.into());
        self.amr = amr.iter().map(|s| s.to_string()).collect();
        self.auth_time = Some(self.iat);
        if let Some((id, accounts)) = consent {
            self.consent_id = Some(id);
            self.accounts = accounts;
        }
        self
    }
}

/// Why a token could not be opened (never shown in detail to anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a JWE compact serialization, or not JSON inside.
    Malformed,
    /// Another `alg`/`enc`, another key, or tampered.
    Undecryptable,
}

/// `hooks.shared_secret`: 32 bytes, base64url (padding tolerated).
pub fn parse_shared_secret(s: &str) -> Result<[u8; 32], String> {
    let raw = URL_SAFE_NO_PAD
        .decode(s.trim().trim_end_matches('='))
        .map_err(|_| "the shared secret is not base64url".to_string())?;
    <[u8; 32]>::try_from(raw).map_err(|r| {
        format!(
            "the shared secret must be 32 bytes, this one is {}",
            r.len()
        )
    })
}

/// Seals claims as Strongroom expects: JWE compact, protected header
/// `{"alg":"dir","enc":"A256GCM","typ":"JWT"}`.
pub fn seal<T: Serialize>(key: &[u8; 32], claims: &T) -> Result<String, String> {
    let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let mut header = JweHeader::new();
    header.set_token_type("JWT");
    header.set_content_encryption(ENC);
    let encrypter = jwe::Dir
        .encrypter_from_bytes(key)
        .map_err(|e| e.to_string())?;
    jwe::serialize_compact(&payload, &header, &encrypter).map_err(|e| e.to_string())
}

/// Opens a hand-off sealed by Strongroom; any other `alg`/`enc` is refused.
pub fn open(key: &[u8; 32], token: &str) -> Result<Value, OpenError> {
    // Five base64url parts; the `dir` mode's encrypted key is empty.
    if token.len() > 16 * 1024 || token.split('.').count() != 5 {
        return Err(OpenError::Malformed);
    }
    let decrypter = jwe::Dir
        .decrypter_from_bytes(key)
        .map_err(|_| OpenError::Malformed)?;
    let (payload, header) =
        jwe::deserialize_compact(token, &decrypter).map_err(|_| OpenError::Undecryptable)?;
    if header.algorithm() != Some(ALG) || header.content_encryption() != Some(ENC) {
        return Err(OpenError::Undecryptable);
    }
    serde_json::from_slice(&payload).map_err(|_| OpenError::Malformed)
}

/// Equal bytes, in time that depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// `n` random bytes from the system CSPRNG, base64url.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).expect("the system CSPRNG");
    URL_SAFE_NO_PAD.encode(b)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: [u8; 32] = [7u8; 32];

    fn header_of(token: &str) -> Value {
        let h = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice(&h).unwrap()
    }

    #[test]
    fn sealed_tokens_have_the_documented_header_and_open_again() {
        let t = seal(&KEY, &json!({"sub": "cust-1"})).unwrap();
        assert_eq!(t.split('.').count(), 5);
        assert_eq!(t.split('.').nth(1), Some(""), "dir: no encrypted key");
        let h = header_of(&t);
        assert_eq!(
            (h["alg"].as_str(), h["enc"].as_str(), h["typ"].as_str()),
            (Some("dir"), Some("A256GCM"), Some("JWT"))
        );
        assert_eq!(open(&KEY, &t).unwrap()["sub"], "cust-1");
    }

    #[test]
    fn tampered_foreign_and_malformed_tokens_are_refused() {
        let t = seal(&KEY, &json!({"sub": "cust-1"})).unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let c = parts[3].pop().unwrap();
        parts[3].push(if c == 'A' { 'B' } else { 'A' });
        assert_eq!(open(&KEY, &parts.join(".")), Err(OpenError::Undecryptable));
        assert_eq!(open(&[8u8; 32], &t), Err(OpenError::Undecryptable));
        assert_eq!(open(&KEY, "a.b.c"), Err(OpenError::Malformed));
        assert_eq!(open(&KEY, ""), Err(OpenError::Malformed));
        let huge = format!("{t}{}", "A".repeat(20_000));
        assert_eq!(open(&KEY, &huge), Err(OpenError::Malformed));
    }

    #[test]
    fn a_jwe_with_another_enc_is_refused() {
        // Same key, A256CBC-HS512 needs 64 bytes: use A128GCM with 16.
        let mut header = JweHeader::new();
        header.set_content_encryption("A128GCM");
        let enc = jwe::Dir.encrypter_from_bytes([7u8; 16]).unwrap();
        let t = jwe::serialize_compact(b"{}", &header, &enc).unwrap();
        assert!(open(&KEY, &t).is_err());
    }

    #[test]
    fn shared_secret_parsing() {
        let s = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI";
        assert_eq!(parse_shared_secret(s).unwrap(), [0x42; 32]);
        assert_eq!(parse_shared_secret(&format!("{s}=")).unwrap(), [0x42; 32]);
        assert!(
            parse_shared_secret("QkJC")
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(parse_shared_secret("not base64!").is_err());
    }

    #[test]
    fn handoff_claims_parse_with_unknown_members() {
        let h: Handoff = serde_json::from_value(json!({
            "iss": "https://op", "aud": "bank", "iat": 1, "exp": 2, "jti": "j",
            "sid": "s", "purpose": "consent", "return_uri": "https://op/interaction/x/hook/consent",
            "client_id": "tpp", "scope": ["openid"], "sub": "cust-1", "future_claim": true,
        }))
        .unwrap();
        assert_eq!(h.purpose, Purpose::Consent);
        assert_eq!(h.tpp_name(), "tpp");
        let r = HookResult::answering(&h, "bank", "https://op", 60);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["sid"], "s");
        assert_eq!(v["purpose"], "consent");
        assert_eq!(v["exp"].as_i64().unwrap() - v["iat"].as_i64().unwrap(), 60);
        assert!(v.get("sub").is_none() && v.get("claims").is_none(), "{v}");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}

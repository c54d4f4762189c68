//! Hand-off and result tokens (docs/hooks.md §4–§5).

use josekit::jwe::{self, JweHeader};
use oauth_core::error::OAuthError;
use oauth_core::keys::{JwsAlg, Keys, VerifyOptions, peek_header, select_key, verify_jws};
use oauth_core::secret::constant_time_eq;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Clock skew allowed on `iat` and `exp`.
pub const LEEWAY_SECS: i64 = 30;
/// `typ` of signed hook tokens.
pub const HOOK_TYP: &str = "hook+jwt";
/// The only content encryption accepted in encrypted mode.
pub const ENC: &str = "A256GCM";

/// Which hook a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Login,
    Consent,
    /// A CIBA decision (docs/hooks.md §10c): bound to the request's
    /// `handle` instead of a browser session.
    Ciba,
}

/// What Strongroom tells the bank's app (docs/hooks.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Session binding: the result must echo it.
    pub sid: String,
    pub purpose: Purpose,
    /// Where to send the customer back, with `?result=<token>`.
    pub return_uri: String,
    /// The client's redirect URI of this request: where Strongroom may send
    /// the browser after the bank's answer. The bank's pages list it (with
    /// `return_uri`'s origin) in their CSP `form-action`, which Chromium
    /// applies to every redirect after a form post (docs/hooks.md §4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    pub scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    /// Consent hand-offs: who logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_locales: Option<String>,
}

/// What the bank's app reports back (docs/hooks.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    pub iss: String,
    pub aud: Value,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Login and consent: the session binding. Absent in CIBA decisions.
    #[serde(default)]
    pub sid: String,
    /// CIBA decisions: the public handle of the request decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    pub purpose: Purpose,
    /// Login: the customer cancelled (`access_denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Consent: `approved` or `denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    /// Granted scopes (a subset of the requested ones); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Extra claims for the id_token / userinfo.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
}

impl HookResult {
    pub fn approved(&self) -> bool {
        self.status.as_deref() == Some("approved")
    }
}

/// Why a result token was refused. All end the flow with `access_denied`
/// (except [`HookError::Unavailable`]: `temporarily_unavailable`); the
/// variant is logged, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookError {
    Malformed,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    TooLongLived,
    OtherSession,
    WrongPurpose,
    Incomplete,
    Replayed,
    Unavailable,
}

impl HookError {
    pub fn as_str(self) -> &'static str {
        match self {
            HookError::Malformed => "malformed",
            HookError::BadSignature => "bad_signature_or_decryption",
            HookError::WrongIssuer => "wrong_issuer",
            HookError::WrongAudience => "wrong_audience",
            HookError::Expired => "expired",
            HookError::TooLongLived => "too_long_lived",
            HookError::OtherSession => "other_session",
            HookError::WrongPurpose => "wrong_purpose",
            HookError::Incomplete => "incomplete",
            HookError::Replayed => "replayed",
            HookError::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn jose_failed(e: impl std::fmt::Display) -> OAuthError {
    tracing::error!(error = %e, "sealing a hook token failed");
    OAuthError::server_error()
}

/// JWE compact, `alg: dir`, `enc: A256GCM`, `typ: JWT`.
pub fn encrypt<T: Serialize>(key: &[u8; 32], claims: &T) -> Result<String, OAuthError> {
    let payload = serde_json::to_vec(claims).map_err(jose_failed)?;
    let mut header = JweHeader::new();
    header.set_token_type("JWT");
    header.set_content_encryption(ENC);
    let encrypter = jwe::Dir.encrypter_from_bytes(key).map_err(jose_failed)?;
    jwe::serialize_compact(&payload, &header, &encrypter).map_err(jose_failed)
}

/// Opens a JWE made by [`encrypt`] (any other `alg`/`enc` is refused).
pub fn decrypt(key: &[u8; 32], token: &str) -> Result<Value, HookError> {
    if token.split('.').count() != 5 {
        return Err(HookError::Malformed);
    }
    let decrypter = jwe::Dir
        .decrypter_from_bytes(key)
        .map_err(|_| HookError::Malformed)?;
    let (payload, header) =
        jwe::deserialize_compact(token, &decrypter).map_err(|_| HookError::BadSignature)?;
    if header.algorithm() != Some("dir") || header.content_encryption() != Some(ENC) {
        return Err(HookError::BadSignature);
    }
    serde_json::from_slice(&payload).map_err(|_| HookError::Malformed)
}

/// Signs a hand-off with Strongroom's current key (`typ: hook+jwt`).
pub fn sign<T: Serialize>(keys: &Keys, claims: &T) -> Result<String, OAuthError> {
    let algs = keys.signing_algs();
    let alg = if algs.contains(&JwsAlg::PS256) {
        JwsAlg::PS256
    } else {
        *algs.first().ok_or_else(OAuthError::server_error)?
    };
    keys.sign(alg, Some(HOOK_TYP), claims).map_err(jose_failed)
}

/// Verifies a result signed by the bank with a key of `jwks`.
pub fn verify(jwks: &Value, token: &str, now: i64) -> Result<Value, HookError> {
    let header = peek_header(token).map_err(|_| HookError::Malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(HookError::Malformed)
        .and_then(|a| JwsAlg::parse(a).map_err(|_| HookError::BadSignature))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let key = select_key(jwks, kid, alg).ok_or(HookError::BadSignature)?;
    let checks = VerifyOptions::new(now).leeway(LEEWAY_SECS).typ(HOOK_TYP);
    let v = verify_jws(
        token,
        &key,
        &[JwsAlg::PS256, JwsAlg::ES256, JwsAlg::EdDSA],
        &checks,
    )
    .map_err(|_| HookError::BadSignature)?;
    Ok(v.claims)
}

/// The claim checks common to both modes (docs/hooks.md §5).
pub fn check_result(
    claims: Value,
    bank_issuer: &str,
    issuer: &str,
    sid: &str,
    purpose: Purpose,
    max_lifetime: i64,
    now: i64,
) -> Result<HookResult, HookError> {
    let r: HookResult = serde_json::from_value(claims).map_err(|_| HookError::Malformed)?;
    if r.iss != bank_issuer {
        return Err(HookError::WrongIssuer);
    }
    let aud_ok = match &r.aud {
        Value::String(a) => a == issuer,
        Value::Array(a) => a.iter().any(|x| x.as_str() == Some(issuer)),
        _ => false,
    };
    if !aud_ok {
        return Err(HookError::WrongAudience);
    }
    if r.exp + LEEWAY_SECS <= now || r.iat > now + LEEWAY_SECS {
        return Err(HookError::Expired);
    }
    if r.exp - r.iat > max_lifetime {
        return Err(HookError::TooLongLived);
    }
    // `sid` is the interaction's binding, or a CIBA request's handle.
    let binding = match purpose {
        Purpose::Ciba => r.handle.as_deref().unwrap_or_default(),
        _ => r.sid.as_str(),
    };
    if binding.is_empty() || !constant_time_eq(binding.as_bytes(), sid.as_bytes()) {
        return Err(HookError::OtherSession);
    }
    if r.purpose != purpose {
        return Err(HookError::WrongPurpose);
    }
    if r.jti.is_empty() || r.jti.len() > 256 {
        return Err(HookError::Incomplete);
    }
    match purpose {
        Purpose::Login if r.error.is_none() => {
            if r.sub.as_deref().is_none_or(str::is_empty) {
                return Err(HookError::Incomplete);
            }
        }
        Purpose::Login => {}
        Purpose::Consent => match r.status.as_deref() {
            Some("approved") if r.consent_id.as_deref().is_some_and(|c| !c.is_empty()) => {}
            Some("denied") => {}
            _ => return Err(HookError::Incomplete),
        },
        Purpose::Ciba => match r.status.as_deref() {
            Some("approved") if r.sub.as_deref().is_some_and(|s| !s.is_empty()) => {}
            Some("denied") => {}
            _ => return Err(HookError::Incomplete),
        },
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: [u8; 32] = [9u8; 32];

    fn result(now: i64) -> Value {
        json!({"iss": "bank", "aud": "https://op", "iat": now, "exp": now + 60, "jti": "j1",
               "sid": "s1", "purpose": "login", "sub": "cust-1", "acr": "urn:openbanking:psd2:sca",
               "amr": ["pwd", "otp"], "auth_time": now})
    }

    fn check(v: Value, now: i64) -> Result<HookResult, HookError> {
        check_result(v, "bank", "https://op", "s1", Purpose::Login, 600, now)
    }

    #[test]
    fn encrypted_round_trip_and_tamper() {
        let now = 1_000_000;
        let t = encrypt(&KEY, &result(now)).unwrap();
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                t.split('.').next().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "dir");
        assert_eq!(header["enc"], "A256GCM");
        let r = check(decrypt(&KEY, &t).unwrap(), now).unwrap();
        assert_eq!(r.sub.as_deref(), Some("cust-1"));
        // Flip one character of the ciphertext.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let c = parts[3].pop().unwrap();
        parts[3].push(if c == 'A' { 'B' } else { 'A' });
        assert_eq!(
            decrypt(&KEY, &parts.join(".")).unwrap_err(),
            HookError::BadSignature
        );
        assert_eq!(
            decrypt(&[1u8; 32], &t).unwrap_err(),
            HookError::BadSignature
        );
        assert_eq!(decrypt(&KEY, "a.b.c").unwrap_err(), HookError::Malformed);
    }

    #[test]
    fn claim_checks() {
        let now = 1_000_000;
        check(result(now), now).unwrap();
        let cases: Vec<(Value, HookError)> = vec![
            (json!({"iss": "evil"}), HookError::WrongIssuer),
            (json!({"aud": "https://other"}), HookError::WrongAudience),
            (
                json!({"exp": now - 100, "iat": now - 200}),
                HookError::Expired,
            ),
            (json!({"exp": now + 5000}), HookError::TooLongLived),
            (json!({"sid": "s2"}), HookError::OtherSession),
            (json!({"purpose": "consent"}), HookError::WrongPurpose),
            (json!({"sub": ""}), HookError::Incomplete),
        ];
        for (patch, want) in cases {
            let mut v = result(now);
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            assert_eq!(check(v, now).unwrap_err(), want);
        }
        let mut v = result(now);
        v["purpose"] = json!("consent");
        v["status"] = json!("approved");
        let r = check_result(
            v.clone(),
            "bank",
            "https://op",
            "s1",
            Purpose::Consent,
            600,
            now,
        );
        assert_eq!(
            r.unwrap_err(),
            HookError::Incomplete,
            "approved needs a consent_id"
        );
        v["consent_id"] = json!("c-1");
        assert!(
            check_result(v, "bank", "https://op", "s1", Purpose::Consent, 600, now)
                .unwrap()
                .approved()
        );
    }
}

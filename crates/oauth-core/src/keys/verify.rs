//! Verifying JWS compact serialisations (RFC 7515 §7.1): other parties'
//! (client assertions, request objects, DPoP proofs, software statements)
//! with [`verify_jws`], our own through [`Keys::verify_own`](super::Keys::verify_own).
//!
//! The algorithm is always our choice: the header's `alg` must be on the
//! caller's allow-list and fit the key, and the `jsonwebtoken::Validation`
//! is built from that algorithm, never from the header (RFC 8725 §3.1).
//! Claim checks run here rather than in `jsonwebtoken` so that the time
//! comes from the caller ([`VerifyOptions::now`]), like everywhere else in
//! the protocol code.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwk::key_fits;
use super::{JwsAlg, KeyError};

/// Header parameters registered by RFC 7515 §4.1 and RFC 7516 §4.1, which
/// `crit` must not list (RFC 7515 §4.1.11).
const REGISTERED_HEADERS: [&str; 12] = [
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "enc",
];

/// What to check besides the signature. Start from [`VerifyOptions::new`]
/// and adjust with the builder methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Current UNIX time in seconds.
    pub now: i64,
    /// Allowed clock skew for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// Expected `typ` header (RFC 7515 §4.1.9, RFC 8725 §3.11), compared
    /// case-insensitively with an optional `application/` prefix; `None`
    /// accepts any or no `typ`.
    pub typ: Option<String>,
    /// Claims that must be present (any names, not only registered ones).
    pub required_claims: Vec<String>,
    /// Refuse when `now` is at or after `exp` + leeway (RFC 7519 §4.1.4).
    pub validate_exp: bool,
    /// Refuse when `nbf` - leeway is after `now` (RFC 7519 §4.1.5).
    pub validate_nbf: bool,
    /// If set, `iat` is required, may not lie in the future, and may be at
    /// most this old (freshness of DPoP proofs, RFC 9449 §4.3 check 11).
    pub max_iat_age_secs: Option<i64>,
    /// If set, `aud` is required and must contain one of these values
    /// (RFC 7519 §4.1.3). `None` leaves `aud` unchecked, for tokens that
    /// bind their audience differently (DPoP `htu`).
    pub audience: Option<Vec<String>>,
    /// If set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// `crit` extensions the caller processes itself; any other is refused.
    pub understood_crit: Vec<String>,
}

impl VerifyOptions {
    /// Defaults: `exp` required and checked, `nbf` checked when present,
    /// 30 s leeway, nothing else.
    pub fn new(now: i64) -> VerifyOptions {
        VerifyOptions {
            now,
            leeway_secs: 30,
            typ: None,
            required_claims: vec!["exp".to_owned()],
            validate_exp: true,
            validate_nbf: true,
            max_iat_age_secs: None,
            audience: None,
            issuer: None,
            understood_crit: Vec::new(),
        }
    }

    /// Requires this `typ` header.
    pub fn typ(mut self, typ: &str) -> Self {
        self.typ = Some(typ.to_owned());
        self
    }

    /// Requires `aud` to contain one of `values`.
    pub fn audience<I: IntoIterator<Item = S>, S: Into<String>>(mut self, values: I) -> Self {
        self.audience = Some(values.into_iter().map(Into::into).collect());
        self
    }

    /// Requires `iss` to equal `iss`.
    pub fn issuer(mut self, iss: &str) -> Self {
        self.issuer = Some(iss.to_owned());
        self
    }

    /// Requires a claim to be present.
    pub fn require(mut self, claim: &str) -> Self {
        if !self.required_claims.iter().any(|c| c == claim) {
            self.required_claims.push(claim.to_owned());
        }
        self
    }

    /// Neither requires nor checks `exp` (DPoP proofs carry `iat` instead).
    pub fn without_exp(mut self) -> Self {
        self.validate_exp = false;
        self.required_claims.retain(|c| c != "exp");
        self
    }

    /// Requires a fresh `iat`.
    pub fn max_iat_age(mut self, secs: i64) -> Self {
        self.max_iat_age_secs = Some(secs);
        self
    }

    /// Sets the clock-skew allowance.
    pub fn leeway(mut self, secs: i64) -> Self {
        self.leeway_secs = secs.max(0);
        self
    }

    /// Declares a `crit` extension the caller processes.
    pub fn understand_crit(mut self, name: &str) -> Self {
        self.understood_crit.push(name.to_owned());
        self
    }
}

/// A JWS whose signature and claims passed the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJws {
    /// The algorithm it was verified with.
    pub alg: JwsAlg,
    /// The protected header (a JSON object).
    pub header: Value,
    /// The claims (a JSON object).
    pub claims: Value,
}

impl VerifiedJws {
    /// A string header parameter, e.g. `kid` or `typ`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A string claim, e.g. `iss`, `sub` or `jti`.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Decodes the protected header of a JWS compact serialisation WITHOUT
/// verifying anything, so callers can pick a key (`kid`, DPoP `jwk`) and
/// report refusals precisely. Unlike `jsonwebtoken::decode_header` it does
/// not choke on `alg` values it does not know, such as `none`; those are
/// refused by [`verify_jws`] with [`KeyError::UnsupportedAlg`].
pub fn peek_header(token: &str) -> Result<Value, KeyError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyError::Malformed(
            "not a JWS compact serialisation (three dot-separated parts)".into(),
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| KeyError::Malformed("header is not base64url".into()))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| KeyError::Malformed("header is not JSON".into()))?;
    if !value.is_object() {
        return Err(KeyError::Malformed("header is not a JSON object".into()));
    }
    if !crate::text::json_is_clean(&value) {
        return Err(KeyError::Malformed(
            "header holds a control character".into(),
        ));
    }
    Ok(value)
}

/// The header's `alg`, through the allow-list.
pub(crate) fn header_alg(header: &Value) -> Result<JwsAlg, KeyError> {
    match header.get("alg") {
        Some(Value::String(s)) => JwsAlg::parse(s),
        Some(_) => Err(KeyError::Malformed("alg is not a string".into())),
        None => Err(KeyError::Malformed("header has no alg".into())),
    }
}

/// Verifies another party's JWS with `key`.
///
/// The header's `alg` must be in `allowed` and fit the key (RSA → PS256,
/// EC P-256 → ES256, OKP Ed25519 → EdDSA, see [`key_fits`]); a `kid` in both
/// header and key must match; `crit` may only name extensions in
/// [`VerifyOptions::understood_crit`]; then the signature and the claims are
/// checked. `jku`/`x5u` in the header are never fetched.
pub fn verify_jws(
    token: &str,
    key: &Jwk,
    allowed: &[JwsAlg],
    checks: &VerifyOptions,
) -> Result<VerifiedJws, KeyError> {
    let header = peek_header(token)?;
    let alg = header_alg(&header)?;
    if !allowed.contains(&alg) {
        return Err(KeyError::UnsupportedAlg(alg.as_str().to_owned()));
    }
    key_fits(key, alg)?;
    if let (Some(want), Some(got)) = (
        key.common.key_id.as_deref(),
        header.get("kid").and_then(Value::as_str),
    ) && want != got
    {
        return Err(KeyError::KeyMismatch("kid does not match the key".into()));
    }
    let decoding = DecodingKey::from_jwk(key).map_err(map_jwt_error)?;
    verify_with_key(token, header, alg, &decoding, checks)
}

/// Verification once the key and algorithm are settled; shared with our own
/// key set.
pub(crate) fn verify_with_key(
    token: &str,
    header: Value,
    alg: JwsAlg,
    key: &DecodingKey,
    checks: &VerifyOptions,
) -> Result<VerifiedJws, KeyError> {
    check_header(&header, checks)?;

    let mut validation = Validation::new(alg.to_jsonwebtoken());
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(token, key, &validation).map_err(map_jwt_error)?;

    let Value::Object(claims) = data.claims else {
        return Err(KeyError::Malformed("claims are not a JSON object".into()));
    };
    // Claims become database keys (`jti`, `iss`, `sub`) and page text:
    // the rule for text from outside (crate::text).
    if !claims
        .iter()
        .all(|(k, v)| crate::text::is_clean(k) && crate::text::json_is_clean(v))
    {
        return Err(KeyError::Malformed(
            "claims hold a control character".into(),
        ));
    }
    check_claims(&claims, checks)?;
    Ok(VerifiedJws {
        alg,
        header,
        claims: Value::Object(claims),
    })
}

fn check_header(header: &Value, checks: &VerifyOptions) -> Result<(), KeyError> {
    // RFC 7797 unencoded payloads change what is signed; we never accept them.
    if header.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(KeyError::UnsupportedCrit("b64".into()));
    }
    if let Some(crit) = header.get("crit") {
        let names = crit
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| KeyError::Malformed("crit must be a non-empty array".into()))?;
        for name in names {
            let name = name
                .as_str()
                .ok_or_else(|| KeyError::Malformed("crit entries must be strings".into()))?;
            if REGISTERED_HEADERS.contains(&name) {
                return Err(KeyError::Malformed(format!(
                    "crit lists registered header {name:?}"
                )));
            }
            if header.get(name).is_none() {
                return Err(KeyError::Malformed(format!(
                    "crit names absent header {name:?}"
                )));
            }
            if !checks.understood_crit.iter().any(|u| u == name) {
                return Err(KeyError::UnsupportedCrit(name.to_owned()));
            }
        }
    }
    if let Some(expected) = &checks.typ {
        let found = header.get("typ").and_then(Value::as_str);
        if !found.is_some_and(|f| same_media_type(f, expected)) {
            return Err(KeyError::WrongType {
                expected: expected.clone(),
                found: found.map(str::to_owned),
            });
        }
    }
    Ok(())
}

// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, and
// the "application/" prefix may be omitted.
fn same_media_type(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> &str {
        match s.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    bare(a).eq_ignore_ascii_case(bare(b))
}

/// A NumericDate claim (RFC 7519 §2): absent → `None`; not a number → error.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, KeyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                // Fractional seconds are allowed; `as` saturates out-of-range values.
                Ok(Some(f.floor() as i64))
            } else {
                Err(KeyError::InvalidClaim(format!(
                    "{name} is not a NumericDate"
                )))
            }
        }
        Some(_) => Err(KeyError::InvalidClaim(format!(
            "{name} is not a NumericDate"
        ))),
    }
}

fn check_claims(claims: &Map<String, Value>, c: &VerifyOptions) -> Result<(), KeyError> {
    for name in &c.required_claims {
        if !claims.contains_key(name) {
            return Err(KeyError::MissingClaim(name.clone()));
        }
    }
    let leeway = c.leeway_secs.max(0);
    let exp = numeric_date(claims, "exp")?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;

    if c.validate_exp
        && let Some(exp) = exp
        && c.now >= exp.saturating_add(leeway)
    {
        return Err(KeyError::Expired);
    }
    if c.validate_nbf
        && let Some(nbf) = nbf
        && nbf.saturating_sub(leeway) > c.now
    {
        return Err(KeyError::NotYetValid);
    }
    if let Some(max_age) = c.max_iat_age_secs {
        let iat = iat.ok_or_else(|| KeyError::MissingClaim("iat".into()))?;
        if iat.saturating_sub(leeway) > c.now {
            return Err(KeyError::NotYetValid);
        }
        if iat.saturating_add(max_age).saturating_add(leeway) < c.now {
            return Err(KeyError::InvalidClaim("iat is too old".into()));
        }
    }
    if let Some(iss) = &c.issuer {
        match claims.get("iss") {
            None => return Err(KeyError::MissingClaim("iss".into())),
            Some(Value::String(s)) if s == iss => {}
            Some(_) => return Err(KeyError::InvalidClaim("iss does not match".into())),
        }
    }
    if let Some(accepted) = &c.audience {
        let ok = match claims.get("aud") {
            None => return Err(KeyError::MissingClaim("aud".into())),
            Some(Value::String(s)) => accepted.contains(s),
            Some(Value::Array(values)) => values
                .iter()
                .filter_map(Value::as_str)
                .any(|v| accepted.iter().any(|a| a == v)),
            Some(_) => false,
        };
        if !ok {
            return Err(KeyError::InvalidClaim("aud does not include us".into()));
        }
    }
    Ok(())
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> KeyError {
    match e.kind() {
        ErrorKind::InvalidSignature => KeyError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => {
            KeyError::KeyMismatch("algorithm does not fit the key".into())
        }
        ErrorKind::UnsupportedAlgorithm => KeyError::KeyMismatch("unsupported key".into()),
        ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => KeyError::KeyMismatch("unusable key".into()),
        ErrorKind::InvalidToken => KeyError::Malformed("not a JWS compact serialisation".into()),
        ErrorKind::Base64(_) => KeyError::Malformed("invalid base64url".into()),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => KeyError::Malformed("invalid JSON".into()),
        _ => KeyError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
    };
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use crate::keys::test_support::{T0, fixture, kek};
    use crate::keys::{ProviderAlg, parse_public_jwk};

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn ec_key() -> (EncodingKey, Jwk) {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let p = kp.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])});
        (
            EncodingKey::from_ec_der(doc.as_ref()),
            parse_public_jwk(&jwk).unwrap(),
        )
    }

    fn ed_key() -> (EncodingKey, Jwk) {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())});
        (
            EncodingKey::from_ed_der(doc.as_ref()),
            parse_public_jwk(&jwk).unwrap(),
        )
    }

    /// A client's RSA key, borrowed from the shared fixture: PKCS#8 → PEM,
    /// which is what `jsonwebtoken` can load.
    fn rsa_key() -> (EncodingKey, Jwk) {
        let f = fixture();
        let der = kek()
            .open(&f.ps256.kid, ProviderAlg::PS256, &f.ps256.private_sealed)
            .unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(&der[..]);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let jwk: Value = serde_json::from_str(&f.ps256.public_jwk).unwrap();
        (
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            parse_public_jwk(&jwk).unwrap(),
        )
    }

    fn claims() -> Value {
        json!({
            "iss": "client-1", "sub": "client-1", "aud": "https://op.example",
            "exp": T0 + 60, "iat": T0, "jti": "j1",
        })
    }

    fn opts() -> VerifyOptions {
        VerifyOptions::new(T0)
            .audience(["https://op.example"])
            .issuer("client-1")
    }

    fn sign(alg: jsonwebtoken::Algorithm, key: &EncodingKey, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.typ = None;
        encode(&h, claims, key).unwrap()
    }

    /// Builds `header.payload.signature` by hand, for headers `jsonwebtoken`
    /// refuses to produce.
    fn raw(header: &Value, claims: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(sig)
        )
    }

    #[test]
    fn accepts_ps256_es256_eddsa_with_the_right_keys() {
        for (alg, (enc, jwk)) in [
            (jsonwebtoken::Algorithm::PS256, rsa_key()),
            (jsonwebtoken::Algorithm::ES256, ec_key()),
            (jsonwebtoken::Algorithm::EdDSA, ed_key()),
        ] {
            let token = sign(alg, &enc, &claims());
            let v = verify_jws(&token, &jwk, &JwsAlg::ALL, &opts()).unwrap();
            assert_eq!(v.alg.to_jsonwebtoken(), alg);
            assert_eq!(v.claim_str("jti"), Some("j1"));
            assert_eq!(v.header_str("alg"), Some(v.alg.as_str()));
        }
    }

    #[test]
    fn refuses_alg_none() {
        let (_, jwk) = ec_key();
        for none in ["none", "None", "NONE"] {
            let token = raw(&json!({"alg": none}), &claims(), b"");
            assert!(
                peek_header(&token).is_ok(),
                "peek must still show the header"
            );
            assert_eq!(
                verify_jws(&token, &jwk, &JwsAlg::ALL, &opts()),
                Err(KeyError::UnsupportedAlg(none.into()))
            );
        }
        // No signature part at all.
        let token = format!(
            "{}.{}",
            b64(br#"{"alg":"none"}"#),
            b64(claims().to_string().as_bytes())
        );
        assert!(matches!(
            verify_jws(&token, &jwk, &JwsAlg::ALL, &opts()),
            Err(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_hs256_even_with_the_public_key_as_secret() {
        // The classic confusion attack: HMAC keyed with the verifier's
        // public key, which the attacker knows.
        for (_, jwk) in [rsa_key(), ec_key()] {
            let secret = serde_json::to_vec(&jwk).unwrap();
            let forged = sign(
                jsonwebtoken::Algorithm::HS256,
                &EncodingKey::from_secret(&secret),
                &claims(),
            );
            assert_eq!(
                verify_jws(&forged, &jwk, &JwsAlg::ALL, &opts()),
                Err(KeyError::UnsupportedAlg("HS256".into()))
            );
        }
        let (_, ec) = ec_key();
        let p = match &ec.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p) => p.clone(),
            _ => unreachable!(),
        };
        let forged = sign(
            jsonwebtoken::Algorithm::HS256,
            &EncodingKey::from_secret(p.x.as_bytes()),
            &claims(),
        );
        assert!(matches!(
            verify_jws(&forged, &ec, &JwsAlg::ALL, &opts()),
            Err(KeyError::UnsupportedAlg(_))
        ));
    }

    #[test]
    fn refuses_rs256() {
        let (enc, jwk) = rsa_key();
        let token = sign(jsonwebtoken::Algorithm::RS256, &enc, &claims());
        assert_eq!(
            verify_jws(&token, &jwk, &JwsAlg::ALL, &opts()),
            Err(KeyError::UnsupportedAlg("RS256".into()))
        );
    }

    #[test]
    fn refuses_alg_that_does_not_fit_the_key_or_the_caller() {
        let (ec_enc, _) = ec_key();
        let (_, rsa_jwk) = rsa_key();
        let token = sign(jsonwebtoken::Algorithm::ES256, &ec_enc, &claims());
        assert!(matches!(
            verify_jws(&token, &rsa_jwk, &JwsAlg::ALL, &opts()),
            Err(KeyError::KeyMismatch(_))
        ));
        // Allowed by the key, but not by this caller.
        let (ed_enc, ed_jwk) = ed_key();
        let token = sign(jsonwebtoken::Algorithm::EdDSA, &ed_enc, &claims());
        assert_eq!(
            verify_jws(&token, &ed_jwk, &[JwsAlg::PS256, JwsAlg::ES256], &opts()),
            Err(KeyError::UnsupportedAlg("EdDSA".into()))
        );
    }

    #[test]
    fn refuses_bad_signature_and_other_key() {
        let (enc, jwk) = ec_key();
        let (_, other) = ec_key();
        let token = sign(jsonwebtoken::Algorithm::ES256, &enc, &claims());
        assert_eq!(
            verify_jws(&token, &other, &JwsAlg::ALL, &opts()),
            Err(KeyError::BadSignature)
        );

        // Payload swapped under a valid signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("someone-else");
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            verify_jws(&swapped, &jwk, &JwsAlg::ALL, &opts()),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn refuses_unknown_crit_and_b64() {
        let (enc, jwk) = ec_key();
        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.crit = Some(vec!["exp-ext".into()]);
        h.extras.insert("exp-ext", "1");
        let token = encode(&h, &claims(), &enc).unwrap();
        assert_eq!(
            verify_jws(&token, &jwk, &JwsAlg::ALL, &opts()),
            Err(KeyError::UnsupportedCrit("exp-ext".into()))
        );
        // Understood by the caller: accepted.
        assert!(
            verify_jws(
                &token,
                &jwk,
                &JwsAlg::ALL,
                &opts().understand_crit("exp-ext")
            )
            .is_ok()
        );

        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.crit = Some(vec!["alg".into()]);
        let token = encode(&h, &claims(), &enc).unwrap();
        assert!(matches!(
            verify_jws(&token, &jwk, &JwsAlg::ALL, &opts()),
            Err(KeyError::Malformed(_))
        ));

        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.extras.insert("b64", false);
        let token = encode(&h, &claims(), &enc).unwrap();
        assert_eq!(
            verify_jws(&token, &jwk, &JwsAlg::ALL, &opts()),
            Err(KeyError::UnsupportedCrit("b64".into()))
        );
    }

    #[test]
    fn checks_claims_and_typ() {
        let (enc, jwk) = ed_key();
        let v = |c: &Value, o: &VerifyOptions| {
            verify_jws(
                &sign(jsonwebtoken::Algorithm::EdDSA, &enc, c),
                &jwk,
                &JwsAlg::ALL,
                o,
            )
        };
        assert!(v(&claims(), &opts()).is_ok());
        // exp: leeway 30 s.
        assert!(
            v(
                &claims(),
                &VerifyOptions {
                    now: T0 + 89,
                    ..opts()
                }
            )
            .is_ok()
        );
        assert_eq!(
            v(
                &claims(),
                &VerifyOptions {
                    now: T0 + 90,
                    ..opts()
                }
            ),
            Err(KeyError::Expired)
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(v(&c, &opts()), Err(KeyError::MissingClaim("exp".into())));
        c["exp"] = json!("tomorrow");
        assert!(matches!(v(&c, &opts()), Err(KeyError::InvalidClaim(_))));
        // nbf
        let mut c = claims();
        c["nbf"] = json!(T0 + 31);
        assert_eq!(v(&c, &opts()), Err(KeyError::NotYetValid));
        c["nbf"] = json!(T0 + 30);
        assert!(v(&c, &opts()).is_ok());
        // aud, string or array
        assert!(matches!(
            v(&claims(), &opts().audience(["https://other"])),
            Err(KeyError::InvalidClaim(_))
        ));
        let mut c = claims();
        c["aud"] = json!(["https://x", "https://op.example"]);
        assert!(v(&c, &opts()).is_ok());
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(v(&c, &opts()), Err(KeyError::MissingClaim("aud".into())));
        // iss
        assert!(matches!(
            v(&claims(), &opts().issuer("client-2")),
            Err(KeyError::InvalidClaim(_))
        ));
        // iat freshness, DPoP style
        let dpop = VerifyOptions::new(T0)
            .without_exp()
            .max_iat_age(60)
            .leeway(5);
        let c = json!({"iat": T0 - 65, "jti": "x"});
        assert!(v(&c, &dpop).is_ok());
        let c = json!({"iat": T0 - 66, "jti": "x"});
        assert!(matches!(v(&c, &dpop), Err(KeyError::InvalidClaim(_))));
        let c = json!({"iat": T0 + 6, "jti": "x"});
        assert_eq!(v(&c, &dpop), Err(KeyError::NotYetValid));
        assert_eq!(
            v(&json!({"jti": "x"}), &dpop),
            Err(KeyError::MissingClaim("iat".into()))
        );
        // required custom claim
        assert_eq!(
            v(&claims(), &opts().require("htm")),
            Err(KeyError::MissingClaim("htm".into()))
        );

        // typ
        let mut h = Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.typ = Some("dpop+jwt".into());
        let token = encode(&h, &claims(), &enc).unwrap();
        assert!(verify_jws(&token, &jwk, &JwsAlg::ALL, &opts().typ("dpop+jwt")).is_ok());
        assert!(
            verify_jws(
                &token,
                &jwk,
                &JwsAlg::ALL,
                &opts().typ("application/DPoP+JWT")
            )
            .is_ok()
        );
        assert_eq!(
            verify_jws(
                &token,
                &jwk,
                &JwsAlg::ALL,
                &opts().typ("oauth-authz-req+jwt")
            ),
            Err(KeyError::WrongType {
                expected: "oauth-authz-req+jwt".into(),
                found: Some("dpop+jwt".into())
            })
        );
        let token = sign(jsonwebtoken::Algorithm::EdDSA, &enc, &claims());
        assert!(matches!(
            verify_jws(&token, &jwk, &JwsAlg::ALL, &opts().typ("dpop+jwt")),
            Err(KeyError::WrongType { found: None, .. })
        ));
    }

    #[test]
    fn kid_in_header_must_match_the_key() {
        let (enc, jwk) = ec_key();
        let mut keyed = jwk.clone();
        keyed.common.key_id = Some("k1".into());
        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("k2".into());
        let token = encode(&h, &claims(), &enc).unwrap();
        assert!(matches!(
            verify_jws(&token, &keyed, &JwsAlg::ALL, &opts()),
            Err(KeyError::KeyMismatch(_))
        ));
        assert!(verify_jws(&token, &jwk, &JwsAlg::ALL, &opts()).is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        let (_, jwk) = ec_key();
        for t in [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "a.b.c.d.e",
            "eyJ.eyJ.eyJ",
            "%%%.%%%.%%%",
            &raw(&json!("str"), &claims(), b"x"),
            &raw(&json!({"alg": 5}), &claims(), b"x"),
            &raw(&json!({"alg": "ES256"}), &json!([1, 2]), &[0u8; 64]),
            &raw(&json!({"alg": "ES256"}), &json!({"exp": 1e300}), &[0u8; 64]),
            &raw(&json!({"alg": "ES256", "crit": []}), &claims(), &[0u8; 64]),
            &raw(&json!({"alg": "ES256", "crit": "x"}), &claims(), &[0u8; 64]),
        ] {
            assert!(verify_jws(t, &jwk, &JwsAlg::ALL, &opts()).is_err(), "{t}");
        }
        assert!(peek_header("a.b").is_err());
        assert!(peek_header(&raw(&json!([1]), &claims(), b"")).is_err());
    }

    #[test]
    fn dpop_style_flow_with_header_jwk() {
        // Caller peeks, checks the embedded key is public, verifies, and
        // derives cnf.jkt from it.
        let (enc, jwk) = ec_key();
        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(jwk.clone());
        let token = encode(
            &h,
            &json!({"iat": T0, "jti": "p1", "htm": "POST", "htu": "https://op.example/token"}),
            &enc,
        )
        .unwrap();
        let header = peek_header(&token).unwrap();
        let key = parse_public_jwk(&header["jwk"]).unwrap();
        let opts = VerifyOptions::new(T0)
            .without_exp()
            .max_iat_age(60)
            .typ("dpop+jwt")
            .require("htm")
            .require("htu")
            .require("jti");
        let v = verify_jws(&token, &key, &[JwsAlg::ES256, JwsAlg::PS256], &opts).unwrap();
        assert_eq!(v.claim_str("htm"), Some("POST"));
        assert_eq!(
            crate::keys::jwk_thumbprint(&header["jwk"]).unwrap(),
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap()
        );
    }
}

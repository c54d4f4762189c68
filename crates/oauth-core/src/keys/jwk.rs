//! JWK helpers: RFC 7638 thumbprints, public-key checks, and choosing a
//! verification key from a client's JWKS.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde_json::Value;

use super::{JwsAlg, KeyError};

/// JWK members that carry private or symmetric key material (RFC 7518
/// §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2). A public key must have none.
pub const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Minimum RSA modulus size we accept or produce (FAPI 2.0 Security Profile §5.4).
pub const MIN_RSA_BITS: usize = 2048;

/// `true` if the JWK object carries any private or symmetric member. A DPoP
/// proof's `jwk` header with one must be refused (RFC 9449 §4.3 check 7).
pub fn has_private_members(jwk: &Value) -> bool {
    match jwk.as_object() {
        Some(obj) => PRIVATE_JWK_MEMBERS.iter().any(|m| obj.contains_key(*m)),
        None => false,
    }
}

/// RFC 7638 §3 JWK SHA-256 thumbprint, base64url without padding: SHA-256
/// over the required members of the key type, lexicographically ordered,
/// without whitespace. Used for our `kid`s and for DPoP `jkt` (RFC 9449 §6.1).
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, KeyError> {
    let obj = jwk
        .as_object()
        .ok_or_else(|| KeyError::Malformed("JWK is not a JSON object".into()))?;
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| KeyError::Malformed("JWK has no kty".into()))?;
    // RFC 7638 §3.2 required members per key type (RFC 7518 §6, RFC 8037 §2).
    let members: &[&str] = match kty {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        other => return Err(KeyError::Malformed(format!("unknown JWK kty {other:?}"))),
    };
    let mut canonical = BTreeMap::new();
    for m in members {
        let v = obj
            .get(*m)
            .and_then(Value::as_str)
            .ok_or_else(|| KeyError::Malformed(format!("JWK member {m:?} missing")))?;
        canonical.insert(*m, v);
    }
    // BTreeMap serialises in key order with no whitespace: exactly the
    // RFC 7638 §3.3 form for these all-ASCII members.
    let json = serde_json::to_vec(&canonical).map_err(|e| KeyError::Encode(e.to_string()))?;
    Ok(crate::secret::sha256_b64url(&json))
}

/// [`jwk_thumbprint`] of a parsed JWK.
pub fn jwk_thumbprint_of(jwk: &Jwk) -> Result<String, KeyError> {
    let v = serde_json::to_value(jwk).map_err(|e| KeyError::Encode(e.to_string()))?;
    jwk_thumbprint(&v)
}

/// Parses a JWK that must be a public key of a type we can verify with:
/// refuses private members (checked on the JSON, because typed parsing would
/// silently drop them), symmetric keys and unknown key types.
pub fn parse_public_jwk(jwk: &Value) -> Result<Jwk, KeyError> {
    if !jwk.is_object() {
        return Err(KeyError::Malformed("JWK is not a JSON object".into()));
    }
    if has_private_members(jwk) {
        return Err(KeyError::Malformed(
            "JWK contains private key members".into(),
        ));
    }
    match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA" | "EC" | "OKP") => {}
        Some(other) => return Err(KeyError::KeyMismatch(format!("unsupported kty {other:?}"))),
        None => return Err(KeyError::Malformed("JWK has no kty".into())),
    }
    serde_json::from_value(jwk.clone()).map_err(|e| KeyError::Malformed(format!("JWK: {e}")))
}

fn b64_member(s: &str, what: &str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| KeyError::Malformed(format!("JWK {what} is not base64url")))
}

/// Checks that `jwk` can verify `alg` signatures: the key type and curve fit
/// (RSA → PS256, EC P-256 → ES256, OKP Ed25519 → EdDSA), an RSA modulus has
/// at least [`MIN_RSA_BITS`], and the JWK's own `alg`, `use` and `key_ops`
/// (RFC 7517 §4.2–4.4), when present, permit it.
pub fn key_fits(jwk: &Jwk, alg: JwsAlg) -> Result<(), KeyError> {
    let mismatch = |why: String| Err(KeyError::KeyMismatch(why));
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(rsa), JwsAlg::PS256) => {
            let n = b64_member(&rsa.n, "n")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < MIN_RSA_BITS {
                return mismatch(format!("RSA key shorter than {MIN_RSA_BITS} bits"));
            }
        }
        (AlgorithmParameters::EllipticCurve(ec), JwsAlg::ES256) => {
            if ec.curve != EllipticCurve::P256 {
                return mismatch("ES256 needs a P-256 key".into());
            }
            if b64_member(&ec.x, "x")?.len() != 32 || b64_member(&ec.y, "y")?.len() != 32 {
                return Err(KeyError::Malformed(
                    "P-256 coordinates must be 32 bytes".into(),
                ));
            }
        }
        (AlgorithmParameters::OctetKeyPair(okp), JwsAlg::EdDSA) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return mismatch("EdDSA needs an Ed25519 key".into());
            }
            if b64_member(&okp.x, "x")?.len() != 32 {
                return Err(KeyError::Malformed("Ed25519 key must be 32 bytes".into()));
            }
        }
        (_, alg) => return mismatch(format!("{alg} needs a {} key", alg.key_type())),
    }
    if let Some(key_alg) = jwk.common.key_algorithm
        && key_alg != KeyAlgorithm::from(alg.to_jsonwebtoken())
    {
        return mismatch(format!("key is for {key_alg}, not {alg}"));
    }
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return mismatch("key is not a signature key".into()),
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return mismatch("key_ops does not include verify".into());
    }
    Ok(())
}

/// Every key in `jwks` that could verify an `alg` signature with key id
/// `kid`: keys for encryption, keys with private members, keys of the wrong
/// type/curve/`alg` are skipped; when `kid` is given only keys with exactly
/// that `kid` qualify.
pub fn candidate_keys(jwks: &Value, kid: Option<&str>, alg: JwsAlg) -> Vec<Jwk> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| match kid {
            Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid),
            None => true,
        })
        .filter_map(|k| parse_public_jwk(k).ok())
        .filter(|k| key_fits(k, alg).is_ok())
        .collect()
}

/// The key in a client's JWKS (RFC 7517 §5) to verify an `alg` signature
/// whose header names `kid`. With a `kid` the key must carry exactly that
/// `kid`; without one, the JWKS must hold exactly one suitable key, because
/// guessing among several would let any of them sign. Keys with `use` =
/// `enc` are never chosen.
pub fn select_key(jwks: &Value, kid: Option<&str>, alg: JwsAlg) -> Option<Jwk> {
    let mut found = candidate_keys(jwks, kid, alg);
    if found.len() == 1 { found.pop() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1; the extra members must not change the result.
        let jwk =
            json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
        assert_eq!(
            jwk_thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let parsed: Jwk = serde_json::from_value(jwk).unwrap();
        assert_eq!(
            jwk_thumbprint_of(&parsed).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_agrees_with_jsonwebtoken_for_ec() {
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
        assert_eq!(
            jwk_thumbprint(&jwk).unwrap(),
            parsed
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap()
        );
        assert!(jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256"})).is_err());
        assert!(jwk_thumbprint(&json!("nope")).is_err());
    }

    #[test]
    fn private_members_are_detected() {
        assert!(!has_private_members(
            &json!({"kty": "EC", "x": "a", "y": "b", "crv": "P-256"})
        ));
        for m in PRIVATE_JWK_MEMBERS {
            let mut v = json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"});
            v[m] = json!("secret");
            assert!(has_private_members(&v), "{m}");
            assert!(matches!(parse_public_jwk(&v), Err(KeyError::Malformed(_))));
        }
        assert!(matches!(
            parse_public_jwk(&json!({"kty": "oct", "k": "c2VjcmV0"})),
            Err(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn select_key_prefers_exact_kid_and_skips_enc() {
        let ec = |kid: &str, usage: &str| {
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": usage,
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
        };
        let rsa = json!({"kty": "RSA", "kid": "r1", "n": RFC7638_N, "e": "AQAB"});
        let jwks = json!({"keys": [ec("e-enc", "enc"), ec("e1", "sig"), rsa, ec("e2", "sig")]});

        let k = select_key(&jwks, Some("e2"), JwsAlg::ES256).unwrap();
        assert_eq!(k.common.key_id.as_deref(), Some("e2"));
        assert!(select_key(&jwks, Some("e-enc"), JwsAlg::ES256).is_none());
        assert!(select_key(&jwks, Some("r1"), JwsAlg::ES256).is_none());
        assert_eq!(
            select_key(&jwks, Some("r1"), JwsAlg::PS256)
                .unwrap()
                .common
                .key_id
                .as_deref(),
            Some("r1")
        );
        // No kid and two ES256 signing keys: ambiguous.
        assert!(select_key(&jwks, None, JwsAlg::ES256).is_none());
        assert_eq!(candidate_keys(&jwks, None, JwsAlg::ES256).len(), 2);
        // No kid, one RSA key: unambiguous.
        assert!(select_key(&jwks, None, JwsAlg::PS256).is_some());
        assert!(select_key(&json!({"nokeys": []}), None, JwsAlg::PS256).is_none());
    }

    #[test]
    fn key_fits_checks_type_size_alg_and_use() {
        let rsa: Jwk =
            serde_json::from_value(json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})).unwrap();
        assert!(key_fits(&rsa, JwsAlg::PS256).is_ok());
        assert!(matches!(
            key_fits(&rsa, JwsAlg::ES256),
            Err(KeyError::KeyMismatch(_))
        ));
        assert!(matches!(
            key_fits(&rsa, JwsAlg::EdDSA),
            Err(KeyError::KeyMismatch(_))
        ));

        let small: Jwk = serde_json::from_value(
            json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"}),
        )
        .unwrap();
        assert!(matches!(
            key_fits(&small, JwsAlg::PS256),
            Err(KeyError::KeyMismatch(_))
        ));

        let rs256: Jwk = serde_json::from_value(
            json!({"kty": "RSA", "alg": "RS256", "n": RFC7638_N, "e": "AQAB"}),
        )
        .unwrap();
        assert!(matches!(
            key_fits(&rs256, JwsAlg::PS256),
            Err(KeyError::KeyMismatch(_))
        ));

        let enc: Jwk = serde_json::from_value(
            json!({"kty": "RSA", "use": "enc", "n": RFC7638_N, "e": "AQAB"}),
        )
        .unwrap();
        assert!(matches!(
            key_fits(&enc, JwsAlg::PS256),
            Err(KeyError::KeyMismatch(_))
        ));
    }
}

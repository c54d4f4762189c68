//! Generating the provider's keys and deriving their public JWKs.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::jwk::{MIN_RSA_BITS, jwk_thumbprint};
use super::{KeyEncryptionKey, KeyError, ProviderAlg};
use crate::storage::KeyRecord;

/// A parsed private key of ours, ready to sign (or, for the encryption key,
/// to derive its public half).
pub(crate) enum PrivateKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl PrivateKey {
    /// Parses a PKCS#8 private key as a key for `alg`. The error is a reason
    /// for [`KeyError::InvalidRecord`].
    pub(crate) fn parse(alg: ProviderAlg, pkcs8: &[u8]) -> Result<PrivateKey, String> {
        match alg {
            ProviderAlg::PS256 | ProviderAlg::RsaOaep256 | ProviderAlg::RsaOaep => {
                let kp = RsaKeyPair::from_pkcs8(pkcs8)
                    .map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?;
                if kp.public_modulus_len() * 8 < MIN_RSA_BITS {
                    return Err(format!("RSA key shorter than {MIN_RSA_BITS} bits"));
                }
                Ok(PrivateKey::Rsa(kp))
            }
            ProviderAlg::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map(PrivateKey::Ec)
                .map_err(|e| format!("not a P-256 PKCS#8 key: {e}")),
        }
    }

    /// The public key's JWK members (RFC 7518 §6.2.1, §6.3.1) and nothing
    /// else: no private member can leak from here into the JWKS.
    pub(crate) fn public_members(&self) -> Result<Map<String, Value>, KeyError> {
        let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
        let mut m = Map::new();
        match self {
            PrivateKey::Rsa(kp) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), b64(strip_leading_zeros(&c.n)));
                m.insert("e".into(), b64(strip_leading_zeros(&c.e)));
            }
            PrivateKey::Ec(kp) => {
                // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
                let point = kp.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(KeyError::Crypto(
                        "unexpected P-256 public key encoding".into(),
                    ));
                }
                m.insert("kty".into(), "EC".into());
                m.insert("crv".into(), "P-256".into());
                m.insert("x".into(), b64(&point[1..33]));
                m.insert("y".into(), b64(&point[33..]));
            }
        }
        Ok(m)
    }
}

// RFC 7518 §6.3.1.1: n and e are unsigned big-endian without leading zeros.
fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|x| *x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// The published JWK for a key: public members plus `kid` (its RFC 7638
/// thumbprint), `use` and `alg` (RFC 7517 §4). Returns `(kid, jwk)`.
pub(crate) fn public_jwk(
    alg: ProviderAlg,
    mut members: Map<String, Value>,
) -> Result<(String, Value), KeyError> {
    let kid = jwk_thumbprint(&Value::Object(members.clone()))?;
    members.insert("kid".into(), Value::String(kid.clone()));
    members.insert("use".into(), alg.key_use().into());
    members.insert("alg".into(), alg.as_str().into());
    Ok((kid, Value::Object(members)))
}

fn generate_pkcs8(alg: ProviderAlg) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let failed = |what: &str| KeyError::Crypto(format!("{what} key generation failed"));
    match alg {
        ProviderAlg::PS256 | ProviderAlg::RsaOaep256 | ProviderAlg::RsaOaep => {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| failed("RSA"))?;
            let der: Pkcs8V1Der<'static> = kp.as_der().map_err(|_| failed("RSA"))?;
            Ok(Zeroizing::new(der.as_ref().to_vec()))
        }
        ProviderAlg::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| failed("P-256"))?;
            Ok(Zeroizing::new(doc.as_ref().to_vec()))
        }
    }
}

/// Generates a new key for `alg` (RSA 2048 for PS256, RSA-OAEP-256 and RSA-OAEP, P-256
/// for ES256) with aws-lc-rs, sealed under `kek`, active from `now` and
/// neither retired nor expiring. Rotation moves `active_from` later.
///
/// `kid` is the RFC 7638 §3 SHA-256 thumbprint of the public key, so it is
/// stable across restarts and distinct between keys.
pub fn generate_key(
    alg: ProviderAlg,
    kek: &KeyEncryptionKey,
    now: i64,
) -> Result<KeyRecord, KeyError> {
    let pkcs8 = generate_pkcs8(alg)?;
    // Derive the public half through the same parser KeySet uses, so a key
    // we generate is a key we can load.
    let parsed = PrivateKey::parse(alg, &pkcs8).map_err(KeyError::Crypto)?;
    let (kid, jwk) = public_jwk(alg, parsed.public_members()?)?;
    let private_sealed = kek.seal(&kid, alg, &pkcs8)?;
    Ok(KeyRecord {
        kid,
        alg: alg.as_str().to_owned(),
        key_use: alg.key_use().to_owned(),
        private_sealed,
        public_jwk: jwk.to_string(),
        created_at: now,
        active_from: now,
        retired_at: None,
        expires_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::{fixture, kek};

    #[test]
    fn generated_records_are_sealed_and_public_only() {
        let f = fixture();
        for (alg, rec) in [
            (ProviderAlg::PS256, &f.ps256),
            (ProviderAlg::ES256, &f.es256),
            (ProviderAlg::RsaOaep256, &f.enc),
        ] {
            assert_eq!(rec.alg, alg.as_str());
            assert_eq!(rec.key_use, alg.key_use());
            assert_eq!(rec.active_from, rec.created_at);
            assert_eq!(rec.retired_at, None);
            assert_eq!(rec.expires_at, None);
            let jwk: Value = serde_json::from_str(&rec.public_jwk).unwrap();
            assert_eq!(jwk["kid"], rec.kid.as_str());
            assert_eq!(jwk["use"], alg.key_use());
            assert_eq!(jwk["alg"], alg.as_str());
            assert!(!crate::keys::has_private_members(&jwk));
            assert_eq!(jwk_thumbprint(&jwk).unwrap(), rec.kid);
            let pkcs8 = kek().open(&rec.kid, alg, &rec.private_sealed).unwrap();
            assert!(PrivateKey::parse(alg, &pkcs8).is_ok());
        }
        assert_ne!(f.ps256.kid, f.enc.kid);
    }

    #[test]
    fn rsa_keys_are_at_least_2048_bits() {
        let f = fixture();
        for rec in [&f.ps256, &f.enc] {
            let jwk: Value = serde_json::from_str(&rec.public_jwk).unwrap();
            let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
            assert_ne!(n[0], 0);
            assert!(n.len() * 8 >= 2048);
            assert_eq!(jwk["e"], "AQAB");
        }
    }

    #[test]
    fn rsa_key_cannot_be_parsed_as_ec() {
        let f = fixture();
        let pkcs8 = kek()
            .open(&f.ps256.kid, ProviderAlg::PS256, &f.ps256.private_sealed)
            .unwrap();
        assert!(PrivateKey::parse(ProviderAlg::ES256, &pkcs8).is_err());
        assert!(PrivateKey::parse(ProviderAlg::PS256, b"garbage").is_err());
    }
}

//! JWEs Strongroom makes to a client's encryption key: the nested JWT of an
//! encrypted id_token (OIDC Core §10.2, §16.14; OIDC Registration §2
//! `id_token_encrypted_response_alg` / `_enc`), the signed token inside.
//!
//! The same algorithms as [`super::decrypt`] opens, so that one list is
//! advertised for both directions: key management RSA-OAEP-256 or RSA-OAEP
//! (RFC 7518 §4.3), content encryption A256GCM or A128CBC-HS256. The key is
//! the client's RSA key published with `use: enc` (RFC 7517 §4.2) — never a
//! signing key, which a client may hold under a different custody — and,
//! where the key names an `alg`, only for that one.

use josekit::jwe::JweHeader;
use josekit::jwe::alg::rsaes::{RsaesJweAlgorithm, RsaesJweEncrypter};
use serde_json::Value;

use super::KeyError;
use super::decrypt::{JWE_ALGS, JWE_ENCS};

/// The client's key and the algorithms to encrypt to it with, chosen once
/// per issuance.
pub struct ClientEncrypter {
    alg: &'static str,
    enc: &'static str,
    kid: Option<String>,
    inner: RsaesJweEncrypter,
}

impl std::fmt::Debug for ClientEncrypter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientEncrypter")
            .field("alg", &self.alg)
            .field("enc", &self.enc)
            .field("kid", &self.kid)
            .finish()
    }
}

impl ClientEncrypter {
    /// An encrypter for `alg`/`enc` to the first RSA `use: enc` key in
    /// `jwks` that fits `alg`; `Ok(None)` when the set holds none.
    pub fn from_jwks(jwks: &Value, alg: &str, enc: &str) -> Result<Option<Self>, KeyError> {
        let alg = supported(&JWE_ALGS, alg)?;
        let enc = supported(&JWE_ENCS, enc)?;
        let Some(jwk) = encryption_key(jwks, alg) else {
            return Ok(None);
        };
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        let jwk = josekit::jwk::Jwk::from_map(jwk.as_object().cloned().unwrap_or_default())
            .map_err(|e| KeyError::Malformed(format!("client encryption key: {e}")))?;
        #[allow(deprecated)] // RSA-OAEP (SHA-1) is what FAPI 1.0 / UK OB list first.
        let algorithm = if alg == "RSA-OAEP" {
            RsaesJweAlgorithm::RsaOaep
        } else {
            RsaesJweAlgorithm::RsaOaep256
        };
        let inner = algorithm
            .encrypter_from_jwk(&jwk)
            .map_err(|e| KeyError::KeyMismatch(format!("client encryption key: {e}")))?;
        Ok(Some(ClientEncrypter {
            alg,
            enc,
            kid,
            inner,
        }))
    }

    /// `jws` as the payload of a JWE with `cty: JWT` (RFC 7519 §5.2), the
    /// form OIDC Core §10.2 prescribes for a signed-then-encrypted token.
    pub fn encrypt_jwt(&self, jws: &str) -> Result<String, KeyError> {
        self.encrypt(jws.as_bytes(), Some("JWT"))
    }

    /// `claims` as the JSON payload of a JWE, unsigned: the UserInfo
    /// response "encrypted without also being signed" (OIDC Core §5.3.2).
    pub fn encrypt_claims(&self, claims: &Value) -> Result<String, KeyError> {
        self.encrypt(claims.to_string().as_bytes(), None)
    }

    fn encrypt(&self, payload: &[u8], cty: Option<&str>) -> Result<String, KeyError> {
        let mut header = JweHeader::new();
        header.set_content_encryption(self.enc);
        if let Some(cty) = cty {
            header.set_content_type(cty);
        }
        if let Some(kid) = &self.kid {
            header.set_key_id(kid);
        }
        josekit::jwe::serialize_compact(payload, &header, &self.inner)
            .map_err(|e| KeyError::Malformed(format!("JWE encryption ({}): {e}", self.alg)))
    }
}

fn supported(list: &[&'static str], value: &str) -> Result<&'static str, KeyError> {
    list.iter()
        .copied()
        .find(|v| *v == value)
        .ok_or_else(|| KeyError::UnsupportedAlg(value.to_owned()))
}

/// Whether `jwk` is an RSA public key published for encryption that may be
/// used with `alg` (any, when the key names none).
fn is_encryption_key(jwk: &Value, alg: &str) -> bool {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    s("kty") == Some("RSA")
        && s("use") == Some("enc")
        && s("alg").is_none_or(|a| a == alg)
        && jwk.get("d").is_none()
}

/// The client's key to encrypt to with `alg`, if its JWK Set has one.
pub fn encryption_key<'a>(jwks: &'a Value, alg: &str) -> Option<&'a Value> {
    jwks.get("keys")
        .and_then(Value::as_array)?
        .iter()
        .find(|k| is_encryption_key(k, alg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::{T0, fixture, kek};
    use crate::keys::{KeySet, Keys};
    use serde_json::json;

    fn keys() -> Keys {
        Keys::new(KeySet::build(fixture().records(), &kek(), T0).unwrap())
    }

    fn jwk(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn header(jwe: &str) -> Value {
        use base64::Engine as _;
        let first = jwe.split('.').next().unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(first)
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn a_signed_token_encrypted_to_the_clients_enc_key_opens_with_its_private_key() {
        let f = fixture();
        // The fixture's encryption keys stand in for the client's; `Keys`
        // holds their private halves and opens with josekit.
        let k = keys();
        let signed = k
            .sign(
                crate::keys::JwsAlg::PS256,
                Some("JWT"),
                &json!({"sub": "alice", "exp": T0 + 300}),
            )
            .unwrap();
        for (alg, rec) in [("RSA-OAEP-256", &f.enc), ("RSA-OAEP", &f.enc_oaep)] {
            let jwks = json!({"keys": [jwk(&f.ps256.public_jwk), jwk(&rec.public_jwk)]});
            for enc in JWE_ENCS {
                let e = ClientEncrypter::from_jwks(&jwks, alg, enc)
                    .unwrap()
                    .unwrap();
                let jwe = e.encrypt_jwt(&signed).unwrap();
                let h = header(&jwe);
                assert_eq!(h["alg"], alg);
                assert_eq!(h["enc"], enc);
                assert_eq!(h["cty"], "JWT");
                assert_eq!(h["kid"], rec.kid.as_str());
                let inner = String::from_utf8(k.decrypt(&jwe).unwrap()).unwrap();
                assert_eq!(inner, signed, "{alg} {enc}");
                let claims = k
                    .verify_own(&inner, &crate::keys::VerifyOptions::new(T0).typ("JWT"))
                    .unwrap();
                assert_eq!(claims["sub"], "alice");
            }
        }
    }

    #[test]
    fn only_an_rsa_enc_key_for_the_alg_is_chosen() {
        let f = fixture();
        // A signing key, an EC key and a key for the other alg are no
        // encryption key for RSA-OAEP-256.
        let jwks = json!({"keys": [
            jwk(&f.ps256.public_jwk),
            jwk(&f.es256.public_jwk),
            jwk(&f.enc_oaep.public_jwk),
        ]});
        assert!(
            ClientEncrypter::from_jwks(&jwks, "RSA-OAEP-256", "A256GCM")
                .unwrap()
                .is_none()
        );
        let mut no_use = jwk(&f.enc.public_jwk);
        no_use.as_object_mut().unwrap().remove("use");
        assert!(encryption_key(&json!({"keys": [no_use]}), "RSA-OAEP-256").is_none());
        assert!(encryption_key(&json!({}), "RSA-OAEP-256").is_none());
        let mut no_alg = jwk(&f.enc.public_jwk);
        no_alg.as_object_mut().unwrap().remove("alg");
        assert!(encryption_key(&json!({"keys": [no_alg]}), "RSA-OAEP").is_some());
    }

    #[test]
    fn unsupported_algorithms_are_refused() {
        let f = fixture();
        let jwks = json!({"keys": [jwk(&f.enc.public_jwk)]});
        for (alg, enc) in [
            ("RSA1_5", "A256GCM"),
            ("dir", "A256GCM"),
            ("RSA-OAEP-256", "A128GCM"),
        ] {
            assert!(
                matches!(
                    ClientEncrypter::from_jwks(&jwks, alg, enc),
                    Err(KeyError::UnsupportedAlg(_))
                ),
                "{alg} {enc}"
            );
        }
    }
}

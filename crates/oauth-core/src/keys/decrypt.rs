//! JWEs made to our encryption keys (`use: enc` in our JWKS): encrypted
//! request objects (RFC 9101 §6.1, FAPI 1.0 Advanced §5.2.2 item 1, the UK
//! Open Banking security profile), nested JWS inside.
//!
//! Key management RSA-OAEP-256 or RSA-OAEP (RFC 7518 §4.3), each to the
//! key published for it, content encryption A256GCM or A128CBC-HS256 (§5.3, §5.2.3); no
//! `zip` (a decompression bomb is not ours to open), no `crit`. The JWE is
//! opened with josekit (the workspace's one JWE crate), the key chosen by
//! the header's `kid` (or, without one, every encryption key we hold).
//! Retired encryption keys still decrypt until they expire; only the JWKS
//! stops offering them.

use josekit::jwe::JweDecrypter;
use josekit::jwe::alg::rsaes::{RsaesJweAlgorithm, RsaesJweDecrypter};
use serde_json::{Map, Value};

use super::{KeyError, ProviderAlg};

/// Key management algorithms accepted (discovery:
/// `request_object_encryption_alg_values_supported`).
pub const JWE_ALGS: [&str; 2] = ["RSA-OAEP", "RSA-OAEP-256"];
/// Content encryption accepted (`…_enc_values_supported`).
pub const JWE_ENCS: [&str; 2] = ["A256GCM", "A128CBC-HS256"];

/// One encryption key, for the one key-management algorithm it is
/// published with.
pub(crate) struct Decrypter {
    pub(crate) kid: String,
    alg: &'static str,
    inner: RsaesJweDecrypter,
}

impl Decrypter {
    /// From the key's PKCS#8 DER.
    pub(crate) fn new(kid: &str, alg: ProviderAlg, pkcs8: &[u8]) -> Result<Decrypter, String> {
        #[allow(deprecated)] // RSA-OAEP (SHA-1) is what FAPI 1.0 / UK OB list first.
        let algorithm = match alg {
            ProviderAlg::RsaOaep => RsaesJweAlgorithm::RsaOaep,
            ProviderAlg::RsaOaep256 => RsaesJweAlgorithm::RsaOaep256,
            other => return Err(format!("{other} is not an encryption key")),
        };
        let inner = algorithm
            .decrypter_from_der(pkcs8)
            .map_err(|e| format!("{alg} decrypter: {e}"))?;
        Ok(Decrypter {
            kid: kid.to_owned(),
            alg: alg.as_str(),
            inner,
        })
    }

    fn for_alg(&self, alg: &str) -> Option<&dyn JweDecrypter> {
        (alg == self.alg).then_some(&self.inner as &dyn JweDecrypter)
    }
}

/// Whether `token` has the five parts of a compact JWE (RFC 7516 §7.1).
pub fn is_compact_jwe(token: &str) -> bool {
    token.split('.').count() == 5
}

fn protected_header(jwe: &str) -> Result<Map<String, Value>, KeyError> {
    use base64::Engine as _;
    let first = jwe.split('.').next().unwrap_or_default();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first)
        .map_err(|_| KeyError::Malformed("JWE header is not base64url".into()))?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(KeyError::Malformed(
            "JWE header is not a JSON object".into(),
        )),
    }
}

/// The `alg` of a compact JWE's protected header, if it has one.
pub fn jwe_alg(jwe: &str) -> Option<String> {
    protected_header(jwe)
        .ok()?
        .get("alg")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Opens `jwe` with one of `keys`; the plaintext.
pub(crate) fn decrypt(keys: &[Decrypter], jwe: &str) -> Result<Vec<u8>, KeyError> {
    if !is_compact_jwe(jwe) {
        return Err(KeyError::Malformed("not a compact JWE".into()));
    }
    let header = protected_header(jwe)?;
    let s = |k: &str| header.get(k).and_then(Value::as_str);
    let alg = s("alg").ok_or_else(|| KeyError::Malformed("JWE header has no alg".into()))?;
    if !JWE_ALGS.contains(&alg) {
        return Err(KeyError::UnsupportedAlg(alg.to_owned()));
    }
    let enc = s("enc").ok_or_else(|| KeyError::Malformed("JWE header has no enc".into()))?;
    if !JWE_ENCS.contains(&enc) {
        return Err(KeyError::UnsupportedAlg(enc.to_owned()));
    }
    if header.contains_key("zip") {
        return Err(KeyError::UnsupportedCrit("zip".into()));
    }
    if let Some(crit) = header.get("crit") {
        return Err(KeyError::UnsupportedCrit(crit.to_string()));
    }
    let candidates: Vec<&Decrypter> = match header.get("kid") {
        Some(Value::String(kid)) => keys.iter().filter(|k| &k.kid == kid).collect(),
        None => keys.iter().collect(),
        Some(_) => return Err(KeyError::Malformed("JWE kid must be a string".into())),
    };
    let candidates: Vec<&Decrypter> = candidates
        .into_iter()
        .filter(|k| k.for_alg(alg).is_some())
        .collect();
    if candidates.is_empty() {
        return Err(KeyError::UnknownKid(
            s("kid").unwrap_or_default().to_owned(),
        ));
    }
    // Every candidate is tried even after a failure, so the time taken does
    // not tell which key it was for.
    let mut opened = None;
    for key in candidates {
        let Some(d) = key.for_alg(alg) else { continue };
        if let Ok((plain, _)) = josekit::jwe::deserialize_compact(jwe, d)
            && opened.is_none()
        {
            opened = Some(plain);
        }
    }
    opened.ok_or(KeyError::DecryptionFailed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::test_support::{T0, fixture, kek};
    use crate::keys::{KeySet, Keys};
    use josekit::jwe::{JweHeader, alg::rsaes::RsaesJweAlgorithm::*};
    use josekit::jwk::Jwk;

    /// `plain` encrypted as a client does, to the public JWK of `rec` (as
    /// our JWKS publishes it), with these header members.
    #[allow(deprecated)]
    pub(crate) fn encrypt_to(
        public_jwk: &str,
        alg: &str,
        enc: &str,
        kid: Option<&str>,
        plain: &[u8],
    ) -> String {
        let jwk = Jwk::from_bytes(public_jwk.as_bytes()).unwrap();
        let encrypter = match alg {
            "RSA-OAEP" => RsaOaep.encrypter_from_jwk(&jwk).unwrap(),
            _ => RsaOaep256.encrypter_from_jwk(&jwk).unwrap(),
        };
        let mut h = JweHeader::new();
        h.set_content_encryption(enc);
        h.set_content_type("JWT");
        if let Some(k) = kid {
            h.set_key_id(k);
        }
        josekit::jwe::serialize_compact(plain, &h, &encrypter).unwrap()
    }

    fn keys() -> Keys {
        Keys::new(KeySet::build(fixture().records(), &kek(), T0).unwrap())
    }

    #[test]
    fn request_objects_encrypted_to_our_key_open_with_both_algs_and_encs() {
        let f = fixture();
        let k = keys();
        for (alg, rec) in [("RSA-OAEP-256", &f.enc), ("RSA-OAEP", &f.enc_oaep)] {
            for enc in JWE_ENCS {
                for kid in [Some(rec.kid.as_str()), None] {
                    let jwe = encrypt_to(&rec.public_jwk, alg, enc, kid, b"a.b.c");
                    assert_eq!(k.decrypt(&jwe).unwrap(), b"a.b.c", "{alg} {enc} {kid:?}");
                }
            }
        }
    }

    #[test]
    fn what_does_not_open_is_refused() {
        let f = fixture();
        let k = keys();
        let good = encrypt_to(
            &f.enc.public_jwk,
            "RSA-OAEP-256",
            "A256GCM",
            Some(&f.enc.kid),
            b"x",
        );
        // A tampered tag, ciphertext or encrypted key.
        let parts: Vec<&str> = good.split('.').collect();
        for i in [1, 3, 4] {
            let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            let flipped = if p[i].starts_with('A') { "B" } else { "A" };
            p[i].replace_range(0..1, flipped);
            assert_eq!(
                k.decrypt(&p.join(".")),
                Err(KeyError::DecryptionFailed),
                "part {i}"
            );
        }
        // Another key than ours (a signing key's kid, an unknown one), or
        // our key with the algorithm of the other one.
        let other = encrypt_to(
            &f.enc.public_jwk,
            "RSA-OAEP-256",
            "A256GCM",
            Some(&f.ps256.kid),
            b"x",
        );
        assert!(matches!(k.decrypt(&other), Err(KeyError::UnknownKid(_))));
        let mut no_alg: serde_json::Value = serde_json::from_str(&f.enc.public_jwk).unwrap();
        no_alg.as_object_mut().unwrap().remove("alg");
        let crossed = encrypt_to(
            &no_alg.to_string(),
            "RSA-OAEP",
            "A256GCM",
            Some(&f.enc.kid),
            b"x",
        );
        assert!(matches!(k.decrypt(&crossed), Err(KeyError::UnknownKid(_))));
        // Algorithms we do not take, zip, and what is not a JWE at all.
        let a128gcm = encrypt_to(&f.enc.public_jwk, "RSA-OAEP-256", "A128GCM", None, b"x");
        assert!(matches!(
            k.decrypt(&a128gcm),
            Err(KeyError::UnsupportedAlg(_))
        ));
        let b64 = |v: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
        };
        for header in [
            r#"{"alg":"dir","enc":"A256GCM"}"#,
            r#"{"alg":"RSA1_5","enc":"A256GCM"}"#,
            r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","zip":"DEF"}"#,
            r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","crit":["x"],"x":1}"#,
            r#"{"enc":"A256GCM"}"#,
            r#"[]"#,
        ] {
            let forged = format!("{}.{}", b64(header), parts[1..].join("."));
            assert!(k.decrypt(&forged).is_err(), "{header}");
        }
        for garbage in ["", "a.b.c", "a.b.c.d.e", "%%.%%.%%.%%.%%"] {
            assert!(k.decrypt(garbage).is_err(), "{garbage:?}");
        }
    }
}

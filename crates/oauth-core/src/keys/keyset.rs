//! The provider's loaded keys: [`KeySet`] (immutable, built once from the
//! key table) and [`Keys`] (the shared handle the server swaps on reload).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::RSA_PSS_SHA256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::Serialize;
use serde_json::{Map, Value};

use super::generate::{PrivateKey, public_jwk};
use super::jwk::jwk_thumbprint;
use super::verify::{VerifyOptions, header_alg, peek_header, verify_with_key};
use super::{JwsAlg, KeyEncryptionKey, KeyError, ProviderAlg};
use crate::policy::Profile;
use crate::storage::KeyRecord;

struct Signer {
    kid: String,
    alg: JwsAlg,
    key: PrivateKey,
}

struct Verifier {
    alg: JwsAlg,
    key: DecodingKey,
}

/// The JOSE header of everything we sign (RFC 7515 §4.1): `alg`, `kid` so
/// relying parties pick the right key after a rotation, and `typ` for
/// explicit typing (RFC 8725 §3.11).
#[derive(Serialize)]
struct OwnHeader<'a> {
    alg: &'static str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
}

/// The provider's keys as of one point in time, parsed once.
///
/// Built from the key table with [`KeySet::build`]: every private key is
/// opened and parsed into an aws-lc-rs key pair here, so signing costs one
/// signature and no parsing; the JWKS document is rendered here, so serving
/// it costs a reference-count increment.
pub struct KeySet {
    /// The current signer per algorithm, at most one each.
    signers: Vec<Signer>,
    /// Every signing key that is not expired, by `kid`, including keys
    /// scheduled for later (another instance's clock may be ahead) and
    /// retired ones (tokens they signed are still live).
    verifiers: HashMap<String, Verifier>,
    /// Every live encryption key, retired ones too (they decrypt until
    /// they expire).
    decrypters: Vec<super::decrypt::Decrypter>,
    jwks: Arc<[u8]>,
    /// The JWKS as each profile's relying parties see it
    /// ([`KeySet::jwks_json_for`]), in [`Profile::ALL`] order.
    profile_jwks: [Arc<[u8]>; 4],
    next_change: Option<i64>,
    fingerprint: [u8; 32],
}

fn is_live(rec: &KeyRecord, now: i64) -> bool {
    rec.expires_at.is_none_or(|e| e > now)
}

/// Signing now: activated and not yet retired.
pub(crate) fn is_active(rec: &KeyRecord, now: i64) -> bool {
    rec.active_from <= now && rec.retired_at.is_none_or(|r| r > now)
}

fn invalid(rec: &KeyRecord, reason: impl Into<String>) -> KeyError {
    KeyError::InvalidRecord {
        kid: rec.kid.clone(),
        reason: reason.into(),
    }
}

/// Digest of the records a set is built from, to tell whether the table
/// changed since.
fn fingerprint(records: &[KeyRecord], now: i64) -> [u8; 32] {
    let mut live: Vec<&KeyRecord> = records.iter().filter(|r| is_live(r, now)).collect();
    live.sort_by(|a, b| a.kid.cmp(&b.kid));
    let mut ctx = digest::Context::new(&digest::SHA256);
    let opt = |v: Option<i64>| {
        v.map_or([0xff; 9], |x| {
            let mut b = [0u8; 9];
            b[1..].copy_from_slice(&x.to_be_bytes());
            b
        })
    };
    for r in live {
        for field in [
            r.kid.as_bytes(),
            r.alg.as_bytes(),
            r.key_use.as_bytes(),
            r.public_jwk.as_bytes(),
            &r.private_sealed,
        ] {
            ctx.update(&(field.len() as u64).to_be_bytes());
            ctx.update(field);
        }
        ctx.update(&r.active_from.to_be_bytes());
        ctx.update(&opt(r.retired_at));
        ctx.update(&opt(r.expires_at));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn decoding_key(members: &Map<String, Value>) -> Result<DecodingKey, KeyError> {
    let s = |k: &str| members.get(k).and_then(Value::as_str).unwrap_or_default();
    let key = match s("kty") {
        "RSA" => DecodingKey::from_rsa_components(s("n"), s("e")),
        "EC" => DecodingKey::from_ec_components(s("x"), s("y")),
        other => return Err(KeyError::Crypto(format!("no decoding key for kty {other}"))),
    };
    key.map_err(|e| KeyError::Crypto(format!("decoding key: {e}")))
}

impl KeySet {
    /// Builds the set from the key table as of `now`.
    ///
    /// Records expired at `now` are ignored. Every other record is opened
    /// with `kek` and checked: its `alg`/`use` are ours, the private key
    /// parses, its `kid` is the RFC 7638 thumbprint of that key and of the
    /// stored public JWK. Any failure fails the whole build, so a server
    /// never runs with half its keys; [`KeyError::WrongKek`] means the
    /// configured key-encryption key is not the one the keys were sealed
    /// with.
    ///
    /// The current signer for each algorithm is the key with the latest
    /// `active_from` among those active at `now` (ties: later `created_at`,
    /// then greater `kid`). The JWKS (RFC 7517 §5) lists every live signing
    /// key, including ones scheduled for later activation and retired ones
    /// still within retention, and the encryption keys not yet retired:
    /// a retired encryption key stays usable for decryption until it
    /// expires but is withdrawn from the JWKS so clients stop encrypting to it.
    pub fn build(
        records: impl AsRef<[KeyRecord]>,
        kek: &KeyEncryptionKey,
        now: i64,
    ) -> Result<KeySet, KeyError> {
        let records = records.as_ref();
        let mut seen = HashSet::new();
        let mut verifiers = HashMap::new();
        let mut signer_candidates: Vec<(&KeyRecord, JwsAlg, PrivateKey)> = Vec::new();
        let mut published: Vec<(&KeyRecord, ProviderAlg, Value)> = Vec::new();
        let mut decrypters = Vec::new();
        let mut next_change: Option<i64> = None;

        for rec in records.iter().filter(|r| is_live(r, now)) {
            if !seen.insert(rec.kid.as_str()) {
                return Err(invalid(rec, "duplicate kid"));
            }
            let alg = ProviderAlg::parse(&rec.alg)
                .map_err(|_| invalid(rec, format!("unknown alg {:?}", rec.alg)))?;
            if rec.key_use != alg.key_use() {
                return Err(invalid(
                    rec,
                    format!("use {:?} does not fit {alg}", rec.key_use),
                ));
            }
            let pkcs8 = kek.open(&rec.kid, alg, &rec.private_sealed)?;
            let key = PrivateKey::parse(alg, &pkcs8).map_err(|r| invalid(rec, r))?;
            let members = key.public_members()?;
            let (kid, jwk) = public_jwk(alg, members.clone())?;
            if kid != rec.kid {
                return Err(invalid(rec, "kid is not the thumbprint of the private key"));
            }
            let stored: Value = serde_json::from_str(&rec.public_jwk)
                .map_err(|_| invalid(rec, "public_jwk is not JSON"))?;
            if jwk_thumbprint(&stored).ok().as_deref() != Some(kid.as_str()) {
                return Err(invalid(rec, "public_jwk does not match the private key"));
            }

            for t in [Some(rec.active_from), rec.retired_at, rec.expires_at]
                .into_iter()
                .flatten()
            {
                if t > now {
                    next_change = Some(next_change.map_or(t, |n| n.min(t)));
                }
            }

            match alg.signing() {
                Some(jws) => {
                    verifiers.insert(
                        kid,
                        Verifier {
                            alg: jws,
                            key: decoding_key(&members)?,
                        },
                    );
                    published.push((rec, alg, jwk));
                    if is_active(rec, now) {
                        signer_candidates.push((rec, jws, key));
                    }
                }
                None => {
                    decrypters.push(
                        super::decrypt::Decrypter::new(&rec.kid, alg, &pkcs8)
                            .map_err(|r| invalid(rec, r))?,
                    );
                    if rec.retired_at.is_none_or(|r| r > now) {
                        published.push((rec, alg, jwk));
                    }
                }
            }
        }

        signer_candidates
            .sort_by_cached_key(|(r, _, _)| Reverse((r.active_from, r.created_at, r.kid.clone())));
        let mut signers: Vec<Signer> = Vec::new();
        for (rec, alg, key) in signer_candidates {
            if !signers.iter().any(|s| s.alg == alg) {
                signers.push(Signer {
                    kid: rec.kid.clone(),
                    alg,
                    key,
                });
            }
        }
        signers.sort_by_key(|s| s.alg);

        // Current signers first, then by algorithm (signing before
        // encryption), newest first: relying parties that take the first
        // matching key get the right one.
        let is_signer = |kid: &str| signers.iter().any(|s| s.kid == kid);
        published.sort_by_cached_key(|(r, alg, _)| {
            (
                !is_signer(&r.kid),
                *alg,
                Reverse(r.active_from),
                r.kid.clone(),
            )
        });
        let render = |profile: Option<Profile>| -> Result<Arc<[u8]>, KeyError> {
            let keys: Vec<Value> = published
                .iter()
                .filter(|(_, alg, _)| profile.is_none_or(|p| p.publishes_key(*alg)))
                .map(|(_, alg, jwk)| {
                    let mut jwk = jwk.clone();
                    if let (Some(p), Some(members)) = (profile, jwk.as_object_mut())
                        && alg.signing().is_none()
                        && !p.names_encryption_key_alg()
                    {
                        members.remove("alg");
                    }
                    jwk
                })
                .collect();
            serde_json::to_vec(&serde_json::json!({ "keys": keys }))
                .map(Arc::from)
                .map_err(|e| KeyError::Encode(e.to_string()))
        };
        let jwks = render(None)?;
        let profile_jwks = [
            render(Some(Profile::ALL[0]))?,
            render(Some(Profile::ALL[1]))?,
            render(Some(Profile::ALL[2]))?,
            render(Some(Profile::ALL[3]))?,
        ];

        Ok(KeySet {
            signers,
            verifiers,
            decrypters,
            jwks,
            profile_jwks,
            next_change,
            fingerprint: fingerprint(records, now),
        })
    }

    /// Opens a compact JWE made to one of our encryption keys
    /// ([`super::decrypt`]); the plaintext.
    pub fn decrypt(&self, jwe: &str) -> Result<Vec<u8>, KeyError> {
        super::decrypt::decrypt(&self.decrypters, jwe)
    }

    /// Signs `claims` as a compact JWS (RFC 7515 §7.1) with the current
    /// `alg` key; the header carries `alg`, `kid` and, if given, `typ`
    /// (e.g. `at+jwt`, RFC 9068 §2.1). `claims` must serialise to a JSON
    /// object (RFC 7519 §7.1).
    pub fn sign<T: Serialize + ?Sized>(
        &self,
        alg: JwsAlg,
        typ: Option<&str>,
        claims: &T,
    ) -> Result<String, KeyError> {
        let signer = self
            .signers
            .iter()
            .find(|s| s.alg == alg)
            .ok_or(KeyError::NoSigningKey(alg))?;
        let header = serde_json::to_vec(&OwnHeader {
            alg: alg.as_str(),
            kid: &signer.kid,
            typ,
        })
        .map_err(|e| KeyError::Encode(e.to_string()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Encode(e.to_string()))?;
        if payload.first() != Some(&b'{') {
            return Err(KeyError::Encode("claims must be a JSON object".into()));
        }

        let mut out = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 350 + 4);
        URL_SAFE_NO_PAD.encode_string(&header, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let signature = sign_bytes(&signer.key, out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut out);
        Ok(out)
    }

    /// Verifies a JWS we signed: the header's `kid` must be one of our live
    /// signing keys and its `alg` that key's algorithm; then `checks` apply.
    /// Returns the claims.
    pub fn verify(&self, token: &str, checks: &VerifyOptions) -> Result<Value, KeyError> {
        let header = peek_header(token)?;
        let alg = header_alg(&header)?;
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| KeyError::Malformed("header has no kid".into()))?;
        let verifier = self
            .verifiers
            .get(kid)
            .ok_or_else(|| KeyError::UnknownKid(kid.to_owned()))?;
        if verifier.alg != alg {
            return Err(KeyError::KeyMismatch(format!(
                "key {kid} is for {}, not {alg}",
                verifier.alg
            )));
        }
        verify_with_key(token, header, alg, &verifier.key, checks).map(|v| v.claims)
    }

    /// Algorithms we can sign with now, in [`JwsAlg`] order (discovery
    /// `*_signing_alg_values_supported`).
    pub fn signing_algs(&self) -> Vec<JwsAlg> {
        self.signers.iter().map(|s| s.alg).collect()
    }

    /// The `kid` that signs `alg` now.
    pub fn signing_kid(&self, alg: JwsAlg) -> Option<&str> {
        self.signers
            .iter()
            .find(|s| s.alg == alg)
            .map(|s| s.kid.as_str())
    }

    /// Whether `kid` is one of the keys our tokens are verified with.
    pub fn has_verification_key(&self, kid: &str) -> bool {
        self.verifiers.contains_key(kid)
    }

    /// The JWKS document (`jwks_uri`, RFC 7517 §5), rendered at build time.
    pub fn jwks_json(&self) -> Arc<[u8]> {
        Arc::clone(&self.jwks)
    }

    /// The JWKS as `profile`'s relying parties see it: only the keys that
    /// profile signs and decrypts with ([`Profile::publishes_key`]), each
    /// with `use`, and `alg` where the profile's parsers take it
    /// ([`Profile::names_encryption_key_alg`]). Rendered at build time.
    pub fn jwks_json_for(&self, profile: Profile) -> Arc<[u8]> {
        let i = Profile::ALL
            .iter()
            .position(|p| *p == profile)
            .unwrap_or_default();
        Arc::clone(&self.profile_jwks[i])
    }

    /// The earliest future time at which this set goes stale (a scheduled
    /// key activates, a key retires or expires), if any.
    pub fn next_change(&self) -> Option<i64> {
        self.next_change
    }

    /// `true` once `now` has reached [`next_change`](Self::next_change):
    /// rebuild the set from the same records.
    pub fn needs_refresh(&self, now: i64) -> bool {
        self.next_change.is_some_and(|t| t <= now)
    }

    /// `true` if this set is what [`build`](Self::build) would produce from
    /// `records` at `now`: nothing changed in the table (another instance
    /// may have rotated) and no scheduled change is due. The periodic
    /// reload uses it to skip needless rebuilds.
    pub fn is_current(&self, records: &[KeyRecord], now: i64) -> bool {
        !self.needs_refresh(now) && fingerprint(records, now) == self.fingerprint
    }
}

fn sign_bytes(key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
    match key {
        PrivateKey::Rsa(kp) => {
            let mut sig = vec![0u8; kp.public_modulus_len()];
            kp.sign(&RSA_PSS_SHA256, &SystemRandom::new(), msg, &mut sig)
                .map_err(|_| KeyError::Crypto("RSA-PSS signing failed".into()))?;
            Ok(sig)
        }
        PrivateKey::Ec(kp) => kp
            .sign(&SystemRandom::new(), msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Crypto("ECDSA signing failed".into())),
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signers: Vec<(JwsAlg, &str)> = self
            .signers
            .iter()
            .map(|s| (s.alg, s.kid.as_str()))
            .collect();
        let mut verifiers: Vec<&str> = self.verifiers.keys().map(String::as_str).collect();
        verifiers.sort_unstable();
        f.debug_struct("KeySet")
            .field("signers", &signers)
            .field("verifiers", &verifiers)
            .field("next_change", &self.next_change)
            .finish()
    }
}

/// The shared handle to the current [`KeySet`]: workers read it without a
/// lock (`arc_swap`), the key-reload task swaps in a new set.
pub struct Keys {
    set: ArcSwap<KeySet>,
}

impl Keys {
    /// Wraps the first set.
    pub fn new(set: KeySet) -> Keys {
        Keys {
            set: ArcSwap::from_pointee(set),
        }
    }

    /// Replaces the set; requests already holding the old one finish with it.
    pub fn reload(&self, set: KeySet) {
        self.set.store(Arc::new(set));
    }

    /// The current set, for several operations on one consistent snapshot.
    pub fn current(&self) -> Arc<KeySet> {
        self.set.load_full()
    }

    /// The JWKS document bytes.
    pub fn jwks_json(&self) -> Arc<[u8]> {
        self.set.load().jwks_json()
    }

    /// See [`KeySet::jwks_json_for`].
    pub fn jwks_json_for(&self, profile: Profile) -> Arc<[u8]> {
        self.set.load().jwks_json_for(profile)
    }

    /// See [`KeySet::sign`].
    pub fn sign<T: Serialize + ?Sized>(
        &self,
        alg: JwsAlg,
        typ: Option<&str>,
        claims: &T,
    ) -> Result<String, KeyError> {
        self.set.load().sign(alg, typ, claims)
    }

    /// Verifies a token we issued; see [`KeySet::verify`]. The expected
    /// `typ` goes in [`VerifyOptions::typ`].
    /// [`KeySet::decrypt`] with the current set.
    pub fn decrypt(&self, jwe: &str) -> Result<Vec<u8>, KeyError> {
        self.current().decrypt(jwe)
    }

    pub fn verify_own(&self, token: &str, checks: &VerifyOptions) -> Result<Value, KeyError> {
        self.set.load().verify(token, checks)
    }

    /// See [`KeySet::signing_algs`].
    pub fn signing_algs(&self) -> Vec<JwsAlg> {
        self.set.load().signing_algs()
    }

    /// See [`KeySet::next_change`].
    pub fn next_change(&self) -> Option<i64> {
        self.set.load().next_change()
    }

    /// See [`KeySet::needs_refresh`].
    pub fn needs_refresh(&self, now: i64) -> bool {
        self.set.load().needs_refresh(now)
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Keys").field(&*self.set.load()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::{T0, fixture, kek};
    use crate::keys::{has_private_members, verify::VerifyOptions};
    use serde_json::json;

    fn claims(exp: i64) -> Value {
        json!({"iss": "https://op.example", "sub": "u1", "exp": exp})
    }

    #[test]
    fn sign_verify_round_trip_with_kid() {
        let f = fixture();
        let keys = Keys::new(KeySet::build(f.records(), &kek(), T0).unwrap());
        assert_eq!(keys.signing_algs(), vec![JwsAlg::PS256, JwsAlg::ES256]);
        for (alg, rec) in [(JwsAlg::PS256, &f.ps256), (JwsAlg::ES256, &f.es256)] {
            let token = keys.sign(alg, Some("at+jwt"), &claims(T0 + 300)).unwrap();
            let header = peek_header(&token).unwrap();
            assert_eq!(
                header,
                json!({"alg": alg.as_str(), "kid": rec.kid, "typ": "at+jwt"})
            );
            let opts = VerifyOptions::new(T0)
                .typ("at+jwt")
                .issuer("https://op.example");
            let got = keys.verify_own(&token, &opts).unwrap();
            assert_eq!(got, claims(T0 + 300));
            // The public JWK alone (as a relying party has it) verifies it too.
            let jwk =
                crate::keys::parse_public_jwk(&serde_json::from_str(&rec.public_jwk).unwrap())
                    .unwrap();
            assert!(crate::keys::verify_jws(&token, &jwk, &[alg], &opts).is_ok());
            assert_eq!(
                keys.verify_own(&token, &VerifyOptions::new(T0 + 400)),
                Err(KeyError::Expired)
            );
        }
        assert_eq!(
            keys.sign(JwsAlg::EdDSA, None, &claims(T0)),
            Err(KeyError::NoSigningKey(JwsAlg::EdDSA))
        );
        assert!(matches!(
            keys.sign(JwsAlg::ES256, None, &[1, 2]),
            Err(KeyError::Encode(_))
        ));
    }

    #[test]
    fn verify_own_refuses_foreign_and_confused_tokens() {
        let f = fixture();
        let set = KeySet::build(f.records(), &kek(), T0).unwrap();
        let token = set.sign(JwsAlg::ES256, None, &claims(T0 + 60)).unwrap();
        let opts = VerifyOptions::new(T0);
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());

        // Our ES256 kid with alg PS256 in the header.
        let h = b64(&json!({"alg": "PS256", "kid": f.es256.kid}));
        assert!(matches!(
            set.verify(&format!("{h}.{}.{}", parts[1], parts[2]), &opts),
            Err(KeyError::KeyMismatch(_))
        ));
        // Unknown kid, and the encryption key's kid.
        for kid in ["nope", f.enc.kid.as_str()] {
            let h = b64(&json!({"alg": "ES256", "kid": kid}));
            assert_eq!(
                set.verify(&format!("{h}.{}.{}", parts[1], parts[2]), &opts),
                Err(KeyError::UnknownKid(kid.into()))
            );
        }
        // HS256 with our public key as the secret.
        let h = b64(&json!({"alg": "HS256", "kid": f.es256.kid}));
        let msg = format!("{h}.{}", parts[1]);
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, f.es256.public_jwk.as_bytes()),
            msg.as_bytes(),
        );
        let forged = format!("{msg}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert_eq!(
            set.verify(&forged, &opts),
            Err(KeyError::UnsupportedAlg("HS256".into()))
        );
        // alg none, no kid.
        let h = b64(&json!({"alg": "none"}));
        assert_eq!(
            set.verify(&format!("{h}.{}.", parts[1]), &opts),
            Err(KeyError::UnsupportedAlg("none".into()))
        );
        // Tampered payload.
        let p = b64(&claims(T0 + 999_999));
        assert_eq!(
            set.verify(&format!("{}.{p}.{}", parts[0], parts[2]), &opts),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn restart_gives_same_kids_and_verifies_old_tokens() {
        let f = fixture();
        let first = KeySet::build(f.records(), &kek(), T0).unwrap();
        let ps = first.sign(JwsAlg::PS256, None, &claims(T0 + 3600)).unwrap();
        let es = first.sign(JwsAlg::ES256, None, &claims(T0 + 3600)).unwrap();
        drop(first);

        let again = KeySet::build(f.records(), &kek(), T0 + 10).unwrap();
        assert_eq!(again.signing_kid(JwsAlg::PS256), Some(f.ps256.kid.as_str()));
        assert_eq!(again.signing_kid(JwsAlg::ES256), Some(f.es256.kid.as_str()));
        let opts = VerifyOptions::new(T0 + 10);
        assert!(again.verify(&ps, &opts).is_ok());
        assert!(again.verify(&es, &opts).is_ok());
        assert!(again.is_current(&f.records(), T0 + 20));
    }

    #[test]
    fn wrong_kek_fails_the_build() {
        let f = fixture();
        let other = KeyEncryptionKey::from_bytes([8u8; 32]);
        assert_eq!(
            KeySet::build(f.records(), &other, T0).unwrap_err(),
            KeyError::WrongKek
        );
    }

    #[test]
    fn tampered_records_fail_the_build() {
        let f = fixture();
        // Sealed blob moved to another record.
        let mut recs = f.records();
        recs[1].private_sealed = f.ps256.private_sealed.clone();
        assert!(matches!(
            KeySet::build(&recs, &kek(), T0),
            Err(KeyError::SealBroken { .. })
        ));
        // Public JWK swapped for another key's.
        let mut recs = f.records();
        recs[0].public_jwk = f.enc.public_jwk.clone();
        assert!(matches!(
            KeySet::build(&recs, &kek(), T0),
            Err(KeyError::InvalidRecord { .. })
        ));
        // Use flipped.
        let mut recs = f.records();
        recs[2].key_use = "sig".into();
        assert!(matches!(
            KeySet::build(&recs, &kek(), T0),
            Err(KeyError::InvalidRecord { .. })
        ));
        // Duplicate.
        let mut recs = f.records();
        recs.push(f.ps256.clone());
        assert!(matches!(
            KeySet::build(&recs, &kek(), T0),
            Err(KeyError::InvalidRecord { .. })
        ));
        // Unknown algorithm.
        let mut recs = f.records();
        recs[0].alg = "RS256".into();
        assert!(matches!(
            KeySet::build(&recs, &kek(), T0),
            Err(KeyError::InvalidRecord { .. })
        ));
    }

    #[test]
    fn jwks_is_public_complete_and_labelled() {
        let f = fixture();
        let keys = Keys::new(KeySet::build(f.records(), &kek(), T0).unwrap());
        let jwks: Value = serde_json::from_slice(&keys.jwks_json()).unwrap();
        let list = jwks["keys"].as_array().unwrap();
        assert_eq!(list.len(), 4);
        for k in list {
            for m in ["kid", "use", "alg", "kty"] {
                assert!(k[m].is_string(), "{m} missing in {k}");
            }
            assert!(!has_private_members(k));
            assert_eq!(jwk_thumbprint(k).unwrap(), k["kid"].as_str().unwrap());
            if k["kty"] == "RSA" {
                let n = URL_SAFE_NO_PAD.decode(k["n"].as_str().unwrap()).unwrap();
                assert!(n.len() * 8 >= 2048);
            }
        }
        let algs: Vec<&str> = list.iter().map(|k| k["alg"].as_str().unwrap()).collect();
        assert_eq!(algs, ["PS256", "ES256", "RSA-OAEP-256", "RSA-OAEP"]);
        assert_eq!(list[2]["use"], "enc");
        assert_eq!(list[2]["kid"], f.enc.kid.as_str());
        assert_eq!(list[3]["use"], "enc");
        assert_eq!(list[3]["kid"], f.enc_oaep.kid.as_str());
        // Rendered once: the same allocation every time.
        assert!(Arc::ptr_eq(&keys.jwks_json(), &keys.jwks_json()));
    }

    #[test]
    fn each_profile_sees_the_keys_it_uses() {
        let f = fixture();
        let set = KeySet::build(f.records(), &kek(), T0).unwrap();
        let view = |p: Profile| -> Vec<Value> {
            let v: Value = serde_json::from_slice(&set.jwks_json_for(p)).unwrap();
            v["keys"].as_array().unwrap().clone()
        };
        // FAPI 2.0 and FAPI 1.0 see every key, as the full JWKS has it.
        let full: Value = serde_json::from_slice(&set.jwks_json()).unwrap();
        for p in [
            Profile::Fapi2,
            Profile::Fapi2MessageSigning,
            Profile::Fapi1Advanced,
        ] {
            assert_eq!(&view(p), full["keys"].as_array().unwrap(), "{p:?}");
        }
        // UK: RSA only; the signing key with use and alg PS256, the
        // RSA-OAEP-256 key with use enc and no alg; no EC key, no RSA-OAEP.
        let uk = view(Profile::UkOpenBanking);
        assert_eq!(uk.len(), 2, "{uk:?}");
        assert!(uk.iter().all(|k| k["kty"] == "RSA" && k["use"].is_string()));
        assert_eq!(uk[0]["kid"], f.ps256.kid.as_str());
        assert_eq!(
            (&uk[0]["use"], &uk[0]["alg"]),
            (&json!("sig"), &json!("PS256"))
        );
        assert_eq!(uk[1]["kid"], f.enc.kid.as_str());
        assert_eq!(uk[1]["use"], "enc");
        assert!(uk[1].get("alg").is_none(), "{}", uk[1]);
        // The key is the same: its thumbprint is still its kid.
        assert_eq!(jwk_thumbprint(&uk[1]).unwrap(), f.enc.kid);
        // An id_token signed for a UK client verifies with the UK view.
        let token = set.sign(JwsAlg::PS256, None, &claims(T0 + 60)).unwrap();
        let key = crate::keys::parse_public_jwk(&uk[0]).unwrap();
        assert!(
            crate::keys::verify_jws(&token, &key, &[JwsAlg::PS256], &VerifyOptions::new(T0))
                .is_ok()
        );
    }

    #[test]
    fn reload_swaps_the_set() {
        let f = fixture();
        let only_es: Vec<KeyRecord> = vec![f.es256.clone()];
        let keys = Keys::new(KeySet::build(&only_es, &kek(), T0).unwrap());
        assert_eq!(keys.signing_algs(), vec![JwsAlg::ES256]);
        let held = keys.current();
        keys.reload(KeySet::build(f.records(), &kek(), T0).unwrap());
        assert_eq!(keys.signing_algs(), vec![JwsAlg::PS256, JwsAlg::ES256]);
        assert_eq!(held.signing_algs(), vec![JwsAlg::ES256]);
        assert!(!held.is_current(&f.records(), T0));
        assert!(format!("{keys:?}").contains(&f.es256.kid));
    }
}

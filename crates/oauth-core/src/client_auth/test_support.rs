//! Test fixtures shared by the client authentication and sender-constraint
//! tests: an in-memory store, signing keys that can produce any header
//! (including ones a well-behaved library refuses to write), and
//! certificates.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::cert::PeerCertificate;
use crate::client::{Client, ClientMetadata};
use crate::keys::ProviderAlg;
use crate::keys::test_support::{fixture, kek};
use crate::storage::{ClientRecord, ClientRepository, ReplayCache, ReplayEntry, StoreResult};

pub(crate) use crate::keys::test_support::T0;

pub(crate) const ISSUER: &str = "https://op.example";
pub(crate) const TOKEN_URL: &str = "https://op.example/token";
pub(crate) const PAR_URL: &str = "https://op.example/par";

pub(crate) fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

// ------------------------------------------------------------------ store

/// Clients and a replay cache in memory, with the same one-winner semantics
/// as token-store.
#[derive(Default)]
pub(crate) struct MemStore {
    clients: Mutex<HashMap<String, ClientRecord>>,
    replay: Mutex<HashMap<String, i64>>,
}

impl MemStore {
    pub(crate) fn with_clients(clients: &[&Client]) -> MemStore {
        let s = MemStore::default();
        for c in clients {
            s.clients
                .lock()
                .unwrap()
                .insert(c.id().to_owned(), c.to_record("static", T0));
        }
        s
    }
}

impl ReplayCache for MemStore {
    async fn consume_all(&self, entries: Vec<ReplayEntry>, now: i64) -> StoreResult<Option<usize>> {
        let mut m = self.replay.lock().unwrap();
        let key = |e: &ReplayEntry| format!("{}:{}", e.kind.as_str(), e.value);
        if let Some(i) = entries
            .iter()
            .position(|e| m.get(&key(e)).is_some_and(|exp| *exp > now))
        {
            return Ok(Some(i));
        }
        for e in &entries {
            m.insert(key(e), e.expires_at);
        }
        Ok(None)
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        let mut m = self.replay.lock().unwrap();
        let before = m.len();
        m.retain(|_, exp| *exp > now);
        Ok((before - m.len()) as u64)
    }
}

impl ClientRepository for MemStore {
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        Ok(self.clients.lock().unwrap().get(client_id).cloned())
    }

    async fn put_client(&self, client: ClientRecord) -> StoreResult<()> {
        self.clients
            .lock()
            .unwrap()
            .insert(client.client_id.clone(), client);
        Ok(())
    }

    async fn delete_client(&self, client_id: &str, _now: i64) -> StoreResult<bool> {
        Ok(self.clients.lock().unwrap().remove(client_id).is_some())
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        Ok(self.clients.lock().unwrap().values().cloned().collect())
    }
}

// ------------------------------------------------------------------ clients

/// A client from metadata given as JSON (RFC parameter names).
pub(crate) fn client(meta: Value, secret_hash: Option<String>) -> Client {
    let m: ClientMetadata = serde_json::from_value(meta).unwrap();
    Client::new(m, secret_hash).unwrap()
}

// ------------------------------------------------------------------ keys

enum Signer {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A signing key with its public JWK.
pub(crate) struct TestKey {
    signer: Signer,
    /// The public JWK (with `kid` when one was given).
    pub jwk: Value,
    /// The private members, for tests that leak them on purpose.
    pub private_d: String,
}

impl TestKey {
    pub(crate) fn ec(kid: Option<&str>) -> TestKey {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let p = kp.public_key().as_ref().to_vec();
        let mut jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])});
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        TestKey {
            signer: Signer::Ec(kp),
            jwk,
            private_d: b64(&[1u8; 32]),
        }
    }

    pub(crate) fn ed(kid: Option<&str>) -> TestKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let mut jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())});
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        TestKey {
            signer: Signer::Ed(kp),
            jwk,
            private_d: b64(&[2u8; 32]),
        }
    }

    /// The shared RSA-2048 fixture key (generating RSA keys is slow).
    pub(crate) fn rsa(kid: Option<&str>) -> TestKey {
        let f = fixture();
        let der = kek()
            .open(&f.ps256.kid, ProviderAlg::PS256, &f.ps256.private_sealed)
            .unwrap();
        let kp = RsaKeyPair::from_pkcs8(&der).unwrap();
        let full: Value = serde_json::from_str(&f.ps256.public_jwk).unwrap();
        let mut jwk = json!({"kty": "RSA", "n": full["n"], "e": full["e"]});
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        TestKey {
            signer: Signer::Rsa(kp),
            jwk,
            private_d: b64(&[3u8; 64]),
        }
    }

    /// The natural algorithm of the key.
    pub(crate) fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Ec(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
            Signer::Rsa(_) => "PS256",
        }
    }

    /// Signs `claims` with `header` (an object; `alg` is set to `alg`).
    /// `alg` may be anything: `RS256` signs PKCS#1 v1.5 with the RSA key,
    /// `HS256` MACs with the public JWK as secret (the confusion attack),
    /// `none` leaves the signature empty.
    pub(crate) fn sign_as(&self, alg: &str, header: Value, claims: &Value) -> String {
        let mut h = header;
        h["alg"] = json!(alg);
        let input = format!(
            "{}.{}",
            b64(h.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig: Vec<u8> = match (alg, &self.signer) {
            ("ES256", Signer::Ec(kp)) => kp.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            ("EdDSA", Signer::Ed(kp)) => kp.sign(input.as_bytes()).as_ref().to_vec(),
            ("PS256" | "RS256", Signer::Rsa(kp)) => {
                let mut out = vec![0u8; kp.public_modulus_len()];
                let enc: &'static dyn aws_lc_rs::signature::RsaEncoding = if alg == "PS256" {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                kp.sign(enc, &rng, input.as_bytes(), &mut out).unwrap();
                out
            }
            ("HS256", _) => {
                let key = aws_lc_rs::hmac::Key::new(
                    aws_lc_rs::hmac::HMAC_SHA256,
                    self.jwk.to_string().as_bytes(),
                );
                aws_lc_rs::hmac::sign(&key, input.as_bytes())
                    .as_ref()
                    .to_vec()
            }
            ("none", _) => Vec::new(),
            (other, _) => panic!("test key cannot sign {other}"),
        };
        format!("{input}.{}", b64(&sig))
    }

    /// Signs with the key's own algorithm and `kid` (if any) in the header.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut h = json!({});
        if let Some(kid) = self.jwk.get("kid") {
            h["kid"] = kid.clone();
        }
        self.sign_as(self.alg(), h, claims)
    }
}

// ------------------------------------------------------------------ certificates

/// A CA that issues client certificates.
pub(crate) struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Issuing CA");
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf with this subject (in certificate order) and these SANs, as
    /// the server would hand it over after verifying the chain.
    pub(crate) fn issue(
        &self,
        subject: &[(rcgen::DnType, &str)],
        sans: Vec<rcgen::SanType>,
    ) -> PeerCertificate {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in subject {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.subject_alt_names = sans;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        PeerCertificate::from_der(cert.der(), 2, true).unwrap()
    }
}

/// A self-signed P-256 certificate and the public JWK of its key.
pub(crate) fn self_signed_cert(cn: &str) -> (PeerCertificate, Value) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    let p = key.public_key_raw();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])});
    (
        PeerCertificate::from_der(cert.der(), 1, false).unwrap(),
        jwk,
    )
}

// ------------------------------------------------------------------ authentication runs

/// A fresh `jti`.
pub(crate) fn jti() -> String {
    crate::secret::random_token(12)
}

/// Assertion claims for `client_id`, accepted under every profile at `T0`.
pub(crate) fn assertion_claims(client_id: &str) -> Value {
    json!({
        "iss": client_id, "sub": client_id, "aud": ISSUER,
        "exp": T0 + 60, "iat": T0, "jti": jti(),
    })
}

/// A request at the token endpoint carrying `assertion`.
pub(crate) fn assertion_request(assertion: &str) -> crate::client_auth::ClientAuthRequest<'_> {
    crate::client_auth::ClientAuthRequest {
        endpoint: crate::client_auth::Endpoint::Token,
        endpoint_url: TOKEN_URL,
        token_endpoint_urls: &[TOKEN_URL],
        client_assertion_type: Some(crate::client_auth::JWT_BEARER_ASSERTION_TYPE),
        client_assertion: Some(assertion),
        ..Default::default()
    }
}

/// The error code string of a failed call.
pub(crate) fn code<T: std::fmt::Debug>(r: Result<T, crate::error::OAuthError>) -> &'static str {
    r.expect_err("expected a failure").code.as_str()
}

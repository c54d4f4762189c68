//! Client-side JOSE, keys, certificates and small encodings, written here
//! from independent crates (jsonwebtoken, aws-lc-rs, rcgen): nothing of
//! Strongroom's own code builds or checks a message.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

pub fn sha256_b64(data: &[u8]) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

pub fn random(n: usize) -> String {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).expect("CSPRNG");
    b64(&buf)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Shannon entropy of `s` (bits per character from the character
/// frequencies) times its length, as the OIDF suite estimates it.
pub fn entropy_bits(s: &str) -> f64 {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return 0.0;
    }
    let mut freq: HashMap<char, usize> = HashMap::new();
    for c in &chars {
        *freq.entry(*c).or_default() += 1;
    }
    let n = chars.len() as f64;
    let per_char: f64 = freq
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_char * n
}

/// RFC 6749 Appendix A: VSCHAR = %x20-7E.
pub fn is_vschar(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// RFC 6749 §5.2 error / error_description charset.
pub fn is_error_charset(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// A signing key of a suite client, with its public JWK.
#[derive(Clone)]
pub struct ClientKey {
    pub alg: Algorithm,
    pub kid: String,
    pub pem: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl ClientKey {
    pub fn generate(alg: Algorithm, kid: &str) -> ClientKey {
        let kp = match alg {
            Algorithm::ES256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            _ => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256),
        }
        .expect("key generation");
        Self::from_pem(&kp.serialize_pem(), alg, kid)
    }

    pub fn from_pem(pem: &str, alg: Algorithm, kid: &str) -> ClientKey {
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .expect("PEM key");
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).expect("jwk"))
            .expect("jwk json");
        let obj = jwk.as_object_mut().expect("object");
        obj.retain(|k, _| ["kty", "crv", "x", "y", "n", "e"].contains(&k.as_str()));
        obj.insert("kid".into(), kid.into());
        obj.insert("use".into(), "sig".into());
        obj.insert(
            "alg".into(),
            match alg {
                Algorithm::ES256 => "ES256",
                _ => "PS256",
            }
            .into(),
        );
        ClientKey {
            alg,
            kid: kid.to_string(),
            pem: pem.to_string(),
            encoding,
            jwk,
        }
    }

    /// The same key material used with another JWS algorithm (RS256 probes).
    pub fn with_alg(&self, alg: Algorithm) -> ClientKey {
        let mut k = self.clone();
        k.alg = alg;
        k
    }

    pub fn sign(&self, typ: Option<&str>, claims: &Value) -> String {
        self.sign_with(typ, claims, |_| {})
    }

    pub fn sign_with(
        &self,
        typ: Option<&str>,
        claims: &Value,
        edit: impl FnOnce(&mut Header),
    ) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = typ.map(str::to_string);
        edit(&mut header);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("JWS signing")
    }

    /// RFC 7638 thumbprint, computed here.
    pub fn thumbprint(&self) -> String {
        let j = &self.jwk;
        let s = |k: &str| j[k].as_str().unwrap_or_default().to_string();
        let canonical = match j["kty"].as_str() {
            Some("EC") => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                s("crv"),
                s("x"),
                s("y")
            ),
            _ => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
        };
        sha256_b64(canonical.as_bytes())
    }

    /// The public JWK as it goes into a DPoP header.
    pub fn public_jwk(&self) -> Value {
        let mut j = self.jwk.clone();
        if let Some(o) = j.as_object_mut() {
            o.remove("kid");
            o.remove("use");
            o.remove("alg");
        }
        j
    }

    /// The private JWK (for the OIDF suite's plan configuration); EC keys
    /// only, which is what the kit generates.
    pub fn private_jwk(&self) -> Option<Value> {
        if self.alg != Algorithm::ES256 {
            return None;
        }
        let der = KeyPair::from_pem(&self.pem).ok()?.serialize_der();
        // PKCS#8 for P-256: the 32-byte private scalar follows the OCTET
        // STRING header `04 20` inside the ECPrivateKey.
        let pos = der.windows(2).position(|w| w == [0x04, 0x20])?;
        let mut j = self.jwk.clone();
        j["d"] = json!(b64(der.get(pos + 2..pos + 34)?));
        Some(j)
    }
}

/// Builds a DPoP proof (RFC 9449 §4.2) with `key`.
pub fn dpop_proof(key: &ClientKey, claims: &Value) -> String {
    let jwk: Jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
    key.sign_with(Some("dpop+jwt"), claims, |h| {
        h.kid = None;
        h.jwk = Some(jwk);
    })
}

pub fn dpop_claims(htm: &str, htu: &str, access_token: Option<&str>) -> Value {
    let mut c = json!({"jti": random(16), "htm": htm, "htu": htu, "iat": now()});
    if let Some(t) = access_token {
        c["ath"] = json!(sha256_b64(t.as_bytes()));
    }
    c
}

/// A compact JWE with `dir` / `A256GCM` (RFC 7516 §7.1, RFC 7518 §4.5 and
/// §5.3): the encrypted-key part is empty, the AAD is the encoded header.
/// This is the bank's result token of docs/hooks.md §5 in encrypted mode.
pub fn jwe_dir_a256gcm(key: &[u8; 32], claims: &Value) -> String {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let header = b64(json!({"alg": "dir", "enc": "A256GCM", "typ": "JWT"})
        .to_string()
        .as_bytes());
    let mut iv = [0u8; 12];
    aws_lc_rs::rand::fill(&mut iv).expect("CSPRNG");
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("AES-256 key"));
    let mut data = claims.to_string().into_bytes();
    let tag = k
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header.as_bytes()),
            &mut data,
        )
        .expect("AES-GCM");
    format!(
        "{header}..{}.{}.{}",
        b64(&iv),
        b64(&data),
        b64(tag.as_ref())
    )
}

/// Opens a compact JWE made with `dir` / `A256GCM` under `key` (the
/// inverse of [`jwe_dir_a256gcm`]): the header must name exactly that, the
/// encrypted-key part must be empty. Returns the JSON plaintext. This is
/// how the bank reads Strongroom's hand-off tokens (docs/hooks.md §4).
pub fn jwe_dir_a256gcm_open(key: &[u8; 32], jwe: &str) -> Result<Value, String> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let p: Vec<&str> = jwe.split('.').collect();
    if p.len() != 5 {
        return Err(format!("a JWE has 5 parts, this has {}", p.len()));
    }
    let header: Value = b64_decode(p[0])
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or("JWE header is not base64url JSON")?;
    if header["alg"] != "dir" || header["enc"] != "A256GCM" {
        return Err(format!("JWE header {header}: expected dir / A256GCM"));
    }
    if !p[1].is_empty() {
        return Err("dir JWE with an encrypted key".into());
    }
    let iv: [u8; 12] = b64_decode(p[2])
        .and_then(|v| v.try_into().ok())
        .ok_or("JWE IV is not 96 bits")?;
    let mut data = b64_decode(p[3]).ok_or("JWE ciphertext not base64url")?;
    data.extend(b64_decode(p[4]).ok_or("JWE tag not base64url")?);
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| "AES-256 key")?);
    let plain = k
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(p[0].as_bytes()),
            &mut data,
        )
        .map_err(|_| "JWE does not decrypt with the shared secret")?;
    serde_json::from_slice(plain).map_err(|e| format!("JWE plaintext is not JSON: {e}"))
}

/// Decodes a compact JWS part without verifying.
pub fn jwt_part(jwt: &str, n: usize) -> Option<Value> {
    let part = jwt.split('.').nth(n)?;
    serde_json::from_slice(&b64_decode(part)?).ok()
}

/// Verifies a JWS against the server JWKS: the alg must be a FAPI 2.0 alg
/// (PS256, ES256, EdDSA) and the `kid` must resolve. Returns the claims.
pub fn verify_server_jws(jwt: &str, jwks: &Value) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| format!("JWS header: {e}"))?;
    if !matches!(
        header.alg,
        Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA
    ) {
        return Err(format!(
            "JWS alg {:?} is not a FAPI 2.0 algorithm",
            header.alg
        ));
    }
    let kid = header.kid.ok_or("JWS header has no kid")?;
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| format!("JWKS: {e}"))?;
    let jwk = set
        .find(&kid)
        .ok_or(format!("kid {kid} not in the server JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWK {kid}: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| format!("JWS signature does not verify: {e}"))
}

/// A generated certificate authority for client and server certificates.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    /// RFC 4514 form, for tls_client_auth_subject_dn.
    pub subject_dn: String,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Strongroom conformance CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A TLS server certificate for `hosts` (ECDSA P-256); `rsa`: an RSA
    /// 2048 key instead, for the FAPI 1.0 / FAPI-CIBA TLS 1.2 suites, which
    /// are all `*_RSA_*`.
    pub fn server(&self, hosts: &[&str], rsa: bool) -> Identity {
        let key = KeyPair::generate_for(if rsa {
            &rcgen::PKCS_RSA_SHA256
        } else {
            &rcgen::PKCS_ECDSA_P256_SHA256
        })
        .expect("key");
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("SANs");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, hosts[0]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            subject_dn: format!("CN={}", hosts[0]),
        }
    }

    /// A client certificate with subject CN=`cn`, O=`org`, C=GB.
    pub fn client(&self, cn: &str, org: &str) -> Identity {
        self.client_dn(&[
            (DnType::CountryName, "GB"),
            (DnType::OrganizationName, org),
            (DnType::CommonName, cn),
        ])
    }

    /// A client certificate with these subject attributes, in this order
    /// (C, O, OU, CN are named in `subject_dn`; UK Open Banking transport
    /// certificates carry OU = org_id, CN = software_id).
    pub fn client_dn(&self, dn: &[(DnType, &str)]) -> Identity {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            subject_dn: dn
                .iter()
                .rev()
                .map(|(t, v)| {
                    let name = match t {
                        DnType::CountryName => "C",
                        DnType::OrganizationName => "O",
                        DnType::OrganizationalUnitName => "OU",
                        _ => "CN",
                    };
                    format!("{name}={v}")
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// An HTTPS client on the aws-lc-rs provider trusting `ca_pem`, optionally
/// presenting a client certificate; never follows redirects.
pub fn https_client(ca_pem: &str, identity: Option<&Identity>, cookies: bool) -> reqwest::Client {
    let jar = cookies.then(|| std::sync::Arc::new(reqwest::cookie::Jar::default()));
    https_client_at(ca_pem, identity, jar, None)
}

/// [`https_client`] keeping its cookies in `jar` (a browser's, which
/// another client may share), and whose `localhost` is `at` (the URL's port
/// is kept): one instance of several that share an issuer, as a load
/// balancer would route to it.
pub fn https_client_at(
    ca_pem: &str,
    identity: Option<&Identity>,
    jar: Option<std::sync::Arc<reqwest::cookie::Jar>>,
    at: Option<std::net::IpAddr>,
) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten() {
        let _ = roots.add(cert);
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                    .flatten()
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    let mut builder = reqwest::Client::builder();
    if let Some(ip) = at {
        builder = builder.resolve("localhost", std::net::SocketAddr::new(ip, 0));
    }
    if let Some(jar) = jar {
        builder = builder.cookie_provider(jar);
    }
    builder
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        // Below the server's keep-alive (actix's default, 5 s): the modules
        // share these clients, and a pooled connection reused just as the
        // server closes it for idleness fails before the request is sent
        // ("error sending request"), which once failed a module in CI.
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_estimate_separates_random_from_repetitive() {
        assert_eq!(entropy_bits(""), 0.0);
        assert_eq!(entropy_bits("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 0.0);
        assert!(entropy_bits(&random(32)) >= 96.0);
        assert!(entropy_bits("abababababababababababab") < 96.0);
    }

    #[test]
    fn error_charset_excludes_quote_and_backslash() {
        assert!(is_error_charset("invalid_request the value is bad!"));
        assert!(!is_error_charset("bad \"quote\""));
        assert!(!is_error_charset("back\\slash"));
        assert!(!is_error_charset("line\nbreak"));
        assert!(is_vschar("abc~ !"));
        assert!(!is_vschar("tab\t"));
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let mut k = ClientKey::generate(Algorithm::PS256, "t");
        k.jwk = json!({"kty": "RSA", "e": "AQAB", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            k.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn server_jws_must_use_a_fapi_alg_and_a_known_kid() {
        let key = ClientKey::generate(Algorithm::ES256, "k1");
        let jwks = json!({"keys": [key.jwk]});
        let jwt = key.sign(None, &json!({"a": 1}));
        assert_eq!(verify_server_jws(&jwt, &jwks).unwrap()["a"], 1);
        let other = ClientKey::generate(Algorithm::ES256, "k1");
        assert!(verify_server_jws(&other.sign(None, &json!({})), &jwks).is_err());
        let unknown = ClientKey::generate(Algorithm::ES256, "k2");
        assert!(verify_server_jws(&unknown.sign(None, &json!({})), &jwks).is_err());
        let rs = ClientKey::generate(Algorithm::PS256, "k3").with_alg(Algorithm::RS256);
        let jwks = json!({"keys": [rs.jwk]});
        assert!(
            verify_server_jws(&rs.sign(None, &json!({})), &jwks)
                .unwrap_err()
                .contains("FAPI")
        );
    }

    #[test]
    fn jwe_dir_a256gcm_decrypts_with_the_key() {
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key = [7u8; 32];
        let jwe = jwe_dir_a256gcm(&key, &json!({"a": 1}));
        let p: Vec<&str> = jwe.split('.').collect();
        assert_eq!(p.len(), 5);
        assert!(p[1].is_empty());
        let hdr: Value = serde_json::from_slice(&b64_decode(p[0]).unwrap()).unwrap();
        assert_eq!(hdr["alg"], "dir");
        assert_eq!(hdr["enc"], "A256GCM");
        let mut data = b64_decode(p[3]).unwrap();
        data.extend(b64_decode(p[4]).unwrap());
        let iv: [u8; 12] = b64_decode(p[2]).unwrap().try_into().unwrap();
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
        let plain = k
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(p[0].as_bytes()),
                &mut data,
            )
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(plain).unwrap()["a"], 1);
    }

    #[test]
    fn jwe_dir_a256gcm_opens_what_it_sealed_and_nothing_else() {
        let key = [9u8; 32];
        let jwe = jwe_dir_a256gcm(&key, &json!({"purpose": "login"}));
        assert_eq!(
            jwe_dir_a256gcm_open(&key, &jwe).unwrap()["purpose"],
            "login"
        );
        assert!(jwe_dir_a256gcm_open(&[8u8; 32], &jwe).is_err());
        let mut parts: Vec<String> = jwe.split('.').map(str::to_string).collect();
        parts[3] = b64(b"tampered");
        assert!(jwe_dir_a256gcm_open(&key, &parts.join(".")).is_err());
        let other = b64(json!({"alg": "A256KW", "enc": "A256GCM"})
            .to_string()
            .as_bytes());
        parts[0] = other;
        assert!(jwe_dir_a256gcm_open(&key, &parts.join(".")).is_err());
    }

    #[test]
    fn private_jwk_round_trips_for_ec() {
        let key = ClientKey::generate(Algorithm::ES256, "k");
        let jwk = key.private_jwk().unwrap();
        assert_eq!(b64_decode(jwk["d"].as_str().unwrap()).unwrap().len(), 32);
        // d must be the private scalar of the published public point.
        let mut point = vec![4u8];
        point.extend(b64_decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(b64_decode(jwk["y"].as_str().unwrap()).unwrap());
        let d = b64_decode(jwk["d"].as_str().unwrap()).unwrap();
        assert!(
            aws_lc_rs::signature::EcdsaKeyPair::from_private_key_and_public_key(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &d,
                &point
            )
            .is_ok()
        );
    }
}

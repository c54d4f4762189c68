//! A third-party provider as the tests see it, built only from independent
//! crates (jsonwebtoken, aws-lc-rs, reqwest, rcgen): no Strongroom code
//! builds or checks a protocol message here, so a bug shared by both sides
//! cannot pass unnoticed.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};

use crate::harness::TestServer;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn sha256_b64(data: &[u8]) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

pub fn random(n: usize) -> String {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).unwrap();
    b64(&buf)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A signing key of the TPP's (ES256 or PS256) with its public JWK.
#[derive(Clone)]
pub struct TppKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TppKey {
    pub fn es256(kid: &str) -> TppKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self::from_pem(&kp.serialize_pem(), Algorithm::ES256, kid)
    }

    pub fn ps256(kid: &str) -> TppKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        Self::from_pem(&kp.serialize_pem(), Algorithm::PS256, kid)
    }

    pub fn from_pem(pem: &str, alg: Algorithm, kid: &str) -> TppKey {
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        };
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        let obj = jwk.as_object_mut().unwrap();
        obj.insert("kid".into(), kid.into());
        obj.insert("use".into(), "sig".into());
        obj.retain(|k, _| !["key_ops", "x5u", "x5c", "x5t", "x5t#S256"].contains(&k.as_str()));
        TppKey {
            alg,
            kid: kid.to_string(),
            encoding,
            jwk,
        }
    }

    pub fn sign(&self, typ: Option<&str>, claims: &Value) -> String {
        self.sign_with_header(typ, claims, |_| {})
    }

    pub fn sign_with_header(
        &self,
        typ: Option<&str>,
        claims: &Value,
        edit: impl FnOnce(&mut Header),
    ) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = typ.map(str::to_string);
        edit(&mut header);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// RFC 7638 thumbprint, computed here independently.
    pub fn thumbprint(&self) -> String {
        let j = &self.jwk;
        let canonical = match j["kty"].as_str().unwrap() {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                j["crv"].as_str().unwrap(),
                j["x"].as_str().unwrap(),
                j["y"].as_str().unwrap()
            ),
            "RSA" => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                j["e"].as_str().unwrap(),
                j["n"].as_str().unwrap()
            ),
            other => panic!("kty {other}"),
        };
        sha256_b64(canonical.as_bytes())
    }

    /// The public JWK without kid/use, as it goes into a DPoP header.
    pub fn public_jwk(&self) -> Value {
        let mut j = self.jwk.clone();
        let o = j.as_object_mut().unwrap();
        o.remove("kid");
        o.remove("use");
        o.remove("alg");
        j
    }
}

/// A TPP client registered at the server.
pub struct Tpp {
    pub client_id: String,
    pub key: TppKey,
    pub dpop: TppKey,
    pub redirect_uri: String,
    /// PEM certificate and key for mTLS clients.
    pub identity: Option<(String, String)>,
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let verifier = random(32);
        let challenge = sha256_b64(verifier.as_bytes());
        Pkce {
            verifier,
            challenge,
        }
    }
}

impl Tpp {
    pub fn new(client_id: &str) -> Tpp {
        Tpp {
            client_id: client_id.into(),
            key: TppKey::es256(&format!("{client_id}-sig")),
            dpop: TppKey::es256(&format!("{client_id}-dpop")),
            redirect_uri: format!("https://{client_id}.example/cb"),
            identity: None,
        }
    }

    /// Metadata for a private_key_jwt + DPoP client.
    pub fn pkjwt_metadata(&self) -> Value {
        json!({
            "client_id": self.client_id,
            "client_name": format!("TPP {}", self.client_id),
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scope": "openid profile email accounts payments offline_access",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "jwks": {"keys": [self.key.jwk]},
            "dpop_bound_access_tokens": true,
        })
    }

    /// Metadata for a tls_client_auth + mTLS-bound client.
    pub fn mtls_metadata(&self, subject_dn: &str) -> Value {
        json!({
            "client_id": self.client_id,
            "client_name": format!("TPP {}", self.client_id),
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scope": "openid profile accounts",
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": subject_dn,
            "jwks": {"keys": [self.key.jwk]},
            "tls_client_certificate_bound_access_tokens": true,
        })
    }

    pub fn assertion_claims(&self, aud: Value) -> Value {
        let t = now();
        json!({"iss": self.client_id, "sub": self.client_id, "aud": aud, "iat": t, "exp": t + 60, "jti": random(16)})
    }

    /// A fresh private_key_jwt assertion for `aud` (FAPI 2.0: the issuer).
    pub fn assertion(&self, aud: &str) -> String {
        self.key.sign(None, &self.assertion_claims(json!(aud)))
    }

    /// Form fields that authenticate with private_key_jwt.
    pub fn auth_fields(&self, srv: &TestServer) -> Vec<(String, String)> {
        vec![
            ("client_id".into(), self.client_id.clone()),
            ("client_assertion_type".into(), ASSERTION_TYPE.into()),
            ("client_assertion".into(), self.assertion(&srv.issuer)),
        ]
    }

    /// PAR (RFC 9126) of the authorization parameters `form` on the main
    /// listener, with this client's private_key_jwt authentication and a
    /// fresh DPoP proof; the answer as it came.
    pub async fn par(&self, srv: &TestServer, mut form: Vec<(String, String)>) -> Answer {
        form.extend(self.auth_fields(srv));
        let url = srv.url("/par");
        post_form(
            &srv.client(None),
            &url,
            &form,
            Some(self.dpop_proof("POST", &url, None)),
        )
        .await
    }

    /// [`Tpp::par`] that must succeed; the `request_uri`.
    pub async fn push(&self, srv: &TestServer, form: Vec<(String, String)>) -> String {
        let a = self.par(srv, form).await;
        assert_eq!(a.status, 201, "PAR: {}", a.json);
        a.json["request_uri"].as_str().unwrap().to_string()
    }

    pub fn dpop_claims(htm: &str, htu: &str, ath: Option<&str>) -> Value {
        let mut c = json!({"jti": random(16), "htm": htm, "htu": htu, "iat": now()});
        if let Some(ath) = ath {
            c["ath"] = json!(ath);
        }
        c
    }

    /// A DPoP proof (RFC 9449 §4.2) with this client's DPoP key.
    pub fn dpop_proof(&self, htm: &str, htu: &str, access_token: Option<&str>) -> String {
        let ath = access_token.map(|t| sha256_b64(t.as_bytes()));
        self.dpop_proof_claims(&Self::dpop_claims(htm, htu, ath.as_deref()))
    }

    pub fn dpop_proof_claims(&self, claims: &Value) -> String {
        let jwk: Jwk = serde_json::from_value(self.dpop.public_jwk()).unwrap();
        self.dpop.sign_with_header(Some("dpop+jwt"), claims, |h| {
            h.kid = None;
            h.jwk = Some(jwk);
        })
    }

    /// Parameters of a typical authorization request (without `client_id`,
    /// which the client-authentication fields carry).
    pub fn authz_params(&self, pkce: &Pkce, scope: &str) -> Vec<(String, String)> {
        vec![
            ("response_type".into(), "code".into()),
            ("redirect_uri".into(), self.redirect_uri.clone()),
            ("scope".into(), scope.into()),
            ("state".into(), random(12)),
            ("nonce".into(), random(12)),
            ("code_challenge".into(), pkce.challenge.clone()),
            ("code_challenge_method".into(), "S256".into()),
        ]
    }
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

pub fn set_param(params: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    params.retain(|(k, _)| k != name);
    if let Some(v) = value {
        params.push((name.into(), v.into()));
    }
}

/// A response as status + JSON body (+ headers).
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub headers: reqwest::header::HeaderMap,
}

/// An OAuth error answer: the status, one of `codes`, an
/// `error_description` in RFC 6749 §5.2's character set, and `no-store`.
pub fn assert_error(a: &Answer, status: u16, codes: &[&str]) {
    assert_eq!(a.status, status, "status for {}", a.json);
    let code = a.json["error"].as_str().unwrap_or_default();
    assert!(
        codes.contains(&code),
        "expected one of {codes:?}, got {}",
        a.json
    );
    if let Some(d) = a.json.get("error_description").and_then(Value::as_str) {
        assert!(
            d.chars()
                .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')),
            "error_description charset: {d}"
        );
    }
    if status == 400 || status == 401 {
        assert!(
            a.headers
                .get("cache-control")
                .is_some_and(|v| v.to_str().unwrap().contains("no-store"))
        );
    }
}

pub async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        json,
        headers,
    }
}

pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(String, String)],
    dpop: Option<String>,
) -> Answer {
    let mut req = http.post(url).form(form);
    if let Some(p) = dpop {
        req = req.header("DPoP", p);
    }
    answer(req.send().await.unwrap()).await
}

/// The front-channel `/authorize` URL for a pushed request (RFC 9126 §4).
pub fn authorize_url(srv: &TestServer, client_id: &str, request_uri: &str) -> String {
    format!(
        "{}?client_id={}&request_uri={}",
        srv.url("/authorize"),
        urlenc(client_id),
        urlenc(request_uri)
    )
}

/// Drives the built-in login and consent pages as plain HTML forms, the way
/// a browser would, and returns the final redirect to the client.
pub async fn browser_flow(
    srv: &TestServer,
    browser: &reqwest::Client,
    client_id: &str,
    request_uri: &str,
    username: &str,
    password: &str,
    approve: bool,
) -> String {
    let url = authorize_url(srv, client_id, request_uri);
    let res = browser.get(&url).send().await.unwrap();
    assert_eq!(
        res.status(),
        303,
        "authorize: {}",
        res.text().await.unwrap_or_default()
    );
    let mut next = location(&res);
    if next.ends_with("/login") {
        let page = browser.get(srv.url(&next)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""));
        let res = submit_login(browser, &srv.url(&next), username, password).await;
        assert_eq!(
            res.status(),
            303,
            "login: {}",
            res.text().await.unwrap_or_default()
        );
        next = location(&res);
    }
    assert!(next.ends_with("/consent"), "{next}");
    let page = browser.get(srv.url(&next)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("value=\"approve\""), "{html}");
    let res = browser
        .post(srv.url(&next))
        .form(&[("action", if approve { "approve" } else { "deny" })])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}

/// Posts the built-in login form at `url` (an absolute URL) as a browser
/// would.
pub async fn submit_login(
    browser: &reqwest::Client,
    url: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post(url)
        .form(&[
            ("username", username),
            ("password", password),
            ("action", "login"),
        ])
        .send()
        .await
        .unwrap()
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_string()
}

pub fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The query parameters of a redirect URL.
pub fn query(url: &str) -> HashMap<String, String> {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs().into_owned().collect()
}

/// Decodes a JWT payload without verifying (for assertions on claims that
/// the RP library already verified).
pub fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

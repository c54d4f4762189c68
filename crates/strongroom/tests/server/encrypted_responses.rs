//! Encrypted id_tokens and UserInfo responses (OIDC Core §10.2, §5.3.2;
//! OIDC Registration §2 `id_token_encrypted_response_alg`/`_enc`,
//! `userinfo_signed_response_alg`, `userinfo_encrypted_response_alg`)
//! through the running server: a FAPI 1.0 client holding an RSA `use: enc`
//! key gets the hybrid flow's id_token, the token endpoint's (code and
//! refresh) and its UserInfo as JWEs it opens with its private key
//! (josekit), each inner JWS verified against the published JWKS
//! (jsonwebtoken), so no Strongroom code checks what Strongroom made.

use std::collections::HashMap;

use josekit::jwe::alg::rsaes::RsaesJweAlgorithm;
use serde_json::{Value, json};

use crate::fapi::{PASSWORD, USER, demo_user, verify_with_jwks};
use crate::harness::{BACKENDS, Backend, Setup, TestServer};
use crate::hybrid::{
    INTENT, check_front_channel_id_token, fragment, half_sha256, hybrid_metadata, hybrid_params,
    redeem, signed,
};
use crate::tpp::*;

/// The client's RSA encryption key pair: the public JWK it registers, and
/// what opens the JWEs made to it.
struct EncKey {
    public: Value,
    decrypter: josekit::jwe::alg::rsaes::RsaesJweDecrypter,
}

#[allow(deprecated)] // RSA-OAEP (SHA-1) is on FAPI 1.0 / UK OB's list.
fn enc_key(alg: &str, kid: &str) -> EncKey {
    let algorithm = match alg {
        "RSA-OAEP" => RsaesJweAlgorithm::RsaOaep,
        _ => RsaesJweAlgorithm::RsaOaep256,
    };
    let pair = algorithm.generate_key_pair(2048).unwrap();
    let mut public: Value = serde_json::from_str(&pair.to_jwk_public_key().to_string()).unwrap();
    public["use"] = json!("enc");
    public["alg"] = json!(alg);
    public["kid"] = json!(kid);
    let decrypter = algorithm
        .decrypter_from_jwk(&pair.to_jwk_private_key())
        .unwrap();
    EncKey { public, decrypter }
}

/// Opens a compact JWE: its protected header and plaintext.
fn open(key: &EncKey, jwe: &str) -> (Value, String) {
    assert_eq!(jwe.split('.').count(), 5, "a compact JWE: {jwe}");
    let (plain, header) = josekit::jwe::deserialize_compact(jwe, &key.decrypter).unwrap();
    let header: Value = serde_json::from_str(&header.to_string()).unwrap();
    (header, String::from_utf8(plain).unwrap())
}

/// A signed UserInfo response: verified with the published key, no `exp`
/// required (OIDC Core §5.3.2 asks only for `iss` and `aud`).
async fn verify_userinfo_jws(srv: &TestServer, jws: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = srv
        .client(None)
        .get(srv.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(jws).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_exp = false;
    v.set_required_spec_claims::<&str>(&[]);
    v.set_audience(&[jwk_client(srv)]);
    v.set_issuer(&[srv.issuer.as_str()]);
    jsonwebtoken::decode::<Value>(jws, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("signed with a published key, for the client, by the issuer")
        .claims
}

const CLIENT: &str = "tpp-enc";

fn jwk_client(_: &TestServer) -> &'static str {
    CLIENT
}

async fn userinfo(srv: &TestServer, tpp: &Tpp, access: &str) -> reqwest::Response {
    let url = srv.url("/userinfo");
    srv.client(None)
        .get(&url)
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", tpp.dpop_proof("GET", &url, Some(access)))
        .send()
        .await
        .unwrap()
}

async fn encrypted_everywhere(backend: Backend) {
    let tpp = Tpp::new(CLIENT);
    let id_key = enc_key("RSA-OAEP-256", "enc-id");
    let ui_key = enc_key("RSA-OAEP", "enc-ui");
    let mut m = hybrid_metadata(&tpp, None, &["code id_token"]);
    m["jwks"]["keys"]
        .as_array_mut()
        .unwrap()
        .extend([id_key.public.clone(), ui_key.public.clone()]);
    m["id_token_encrypted_response_alg"] = json!("RSA-OAEP-256");
    m["id_token_encrypted_response_enc"] = json!("A256GCM");
    m["userinfo_signed_response_alg"] = json!("PS256");
    m["userinfo_encrypted_response_alg"] = json!("RSA-OAEP");
    let mut setup = Setup::new(backend);
    setup.clients = vec![m];
    setup.users = vec![demo_user()];
    setup.tweak = Some(|c| c.profile = strongroom::config::Profile::Fapi1Advanced);
    let srv = setup.start().await;

    let meta = srv.discovery().await;
    assert_eq!(
        meta["id_token_encryption_alg_values_supported"],
        json!(["RSA-OAEP", "RSA-OAEP-256"])
    );
    assert_eq!(
        meta["id_token_encryption_enc_values_supported"],
        json!(["A256GCM", "A128CBC-HS256"])
    );
    assert_eq!(
        meta["userinfo_signing_alg_values_supported"],
        json!(["PS256", "ES256"])
    );
    assert_eq!(
        meta["userinfo_encryption_alg_values_supported"],
        json!(["RSA-OAEP", "RSA-OAEP-256"])
    );

    // The hybrid flow's id_token: encrypted to the id_token key, a
    // detached signature inside.
    let pkce = Pkce::new();
    let params = hybrid_params(&tpp, &pkce, &[]);
    let request_uri = tpp.push(&srv, signed(&srv, &tpp, &params)).await;
    let back = browser_flow(
        &srv,
        &srv.browser(),
        &tpp.client_id,
        &request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    let mut f: HashMap<String, String> = fragment(&back);
    let (h, inner) = open(&id_key, &f["id_token"]);
    assert_eq!(
        (&h["alg"], &h["enc"], &h["cty"], &h["kid"]),
        (
            &json!("RSA-OAEP-256"),
            &json!("A256GCM"),
            &json!("JWT"),
            &json!("enc-id")
        )
    );
    assert!(
        josekit::jwe::deserialize_compact(&f["id_token"], &ui_key.decrypter).is_err(),
        "encrypted to the id_token key only"
    );
    f.insert("id_token".into(), inner);
    let front = check_front_channel_id_token(&srv, &tpp, &f, &params, "PS256").await;

    // The token endpoint's: the same, with at_hash.
    let a = redeem(&srv, &tpp, &f["code"], &pkce).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let (h, inner) = open(&id_key, a.json["id_token"].as_str().unwrap());
    assert_eq!(h["cty"], "JWT");
    let back_channel = verify_with_jwks(&srv, &inner).await;
    assert_eq!(back_channel["sub"], front["sub"]);
    assert_eq!(back_channel["openbanking_intent_id"], INTENT);
    let access = a.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(back_channel["at_hash"], half_sha256(&access));

    // UserInfo: signed (iss, aud) then encrypted to the userinfo key with
    // the default enc, as application/jwt.
    let res = userinfo(&srv, &tpp, &access).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/jwt");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = res.text().await.unwrap();
    let (h, inner) = open(&ui_key, &body);
    assert_eq!(
        (&h["alg"], &h["enc"], &h["cty"]),
        (&json!("RSA-OAEP"), &json!("A128CBC-HS256"), &json!("JWT"))
    );
    assert_eq!(
        jsonwebtoken::decode_header(&inner).unwrap().alg,
        jsonwebtoken::Algorithm::PS256
    );
    let claims = verify_userinfo_jws(&srv, &inner).await;
    assert_eq!(claims["sub"], front["sub"]);

    // A refreshed id_token is encrypted too.
    let url = srv.url("/token");
    let mut form = tpp.auth_fields(&srv);
    form.extend([
        ("grant_type".to_string(), "refresh_token".to_string()),
        (
            "refresh_token".into(),
            a.json["refresh_token"].as_str().unwrap().into(),
        ),
    ]);
    let r = post_form(
        &srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let (_, inner) = open(&id_key, r.json["id_token"].as_str().unwrap());
    assert_eq!(verify_with_jwks(&srv, &inner).await["sub"], front["sub"]);
    srv.stop().await;
}

#[actix_web::test]
async fn id_tokens_and_userinfo_are_encrypted_to_the_clients_key() {
    for backend in BACKENDS {
        encrypted_everywhere(backend).await;
    }
}

/// A client registering encryption without a key to encrypt to is refused
/// with the file's other mistakes, before the server starts.
#[test]
fn encryption_without_an_enc_key_is_refused_in_configuration() {
    let tpp = Tpp::new("tpp-nokey");
    let mut m = tpp.pkjwt_metadata();
    m["id_token_encrypted_response_alg"] = json!("RSA-OAEP-256");
    let mut cfg = strongroom::config::Config {
        issuer: "https://localhost:8443".into(),
        dev_mode: true,
        ..Default::default()
    };
    cfg.clients = vec![serde_json::from_value(m).unwrap()];
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("needs an RSA key with use enc"), "{err}");
}

/// A client with a `jwks_uri` whose set holds no encryption key (it is
/// only found out at issuance): the hybrid flow ends with
/// `invalid_request` in the fragment and no code or id_token, and the
/// token endpoint refuses a JARM flow's code with `invalid_request`
/// before it is redeemed, rather than send an id_token in clear.
#[actix_web::test]
async fn no_enc_key_at_the_jwks_uri_means_no_id_token() {
    let tpp = Tpp::new("tpp-uri");
    let mut setup = Setup::new(Backend::Sqlite);
    setup.dev_ca();
    let jwks_uri = crate::admin::serve_https_jwks(&setup, json!({"keys": [tpp.key.jwk]}));
    let mut m = hybrid_metadata(&tpp, None, &["code id_token", "code"]);
    m.as_object_mut().unwrap().remove("jwks");
    m["jwks_uri"] = json!(jwks_uri);
    m["id_token_encrypted_response_alg"] = json!("RSA-OAEP-256");
    setup.clients = vec![m];
    setup.users = vec![demo_user()];
    setup.tweak = Some(|c| c.profile = strongroom::config::Profile::Fapi1Advanced);
    let srv = setup.start().await;

    let params = hybrid_params(&tpp, &Pkce::new(), &[]);
    let request_uri = tpp.push(&srv, signed(&srv, &tpp, &params)).await;
    let back = browser_flow(
        &srv,
        &srv.browser(),
        &tpp.client_id,
        &request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    let f = fragment(&back);
    assert_eq!(f["error"], "invalid_request", "{back}");
    assert!(f["error_description"].contains("use enc"), "{back}");
    assert_eq!(f["state"], param(&params, "state"));
    assert!(!f.contains_key("code") && !f.contains_key("id_token"));

    // A JARM flow's code (the consent given in the browser), redeemed.
    let jarm_redeemed = async |extra: &[(&str, Option<&str>)]| {
        let pkce = Pkce::new();
        let mut overrides = vec![
            ("response_type", Some("code")),
            ("response_mode", Some("jwt")),
        ];
        overrides.extend_from_slice(extra);
        let params = hybrid_params(&tpp, &pkce, &overrides);
        let request_uri = tpp.push(&srv, signed(&srv, &tpp, &params)).await;
        let back = browser_flow(
            &srv,
            &srv.browser(),
            &tpp.client_id,
            &request_uri,
            USER,
            PASSWORD,
            true,
        )
        .await;
        let response = query(&back)["response"].clone();
        let code = jwt_claims(&response)["code"].as_str().unwrap().to_owned();
        redeem(&srv, &tpp, &code, &pkce).await
    };
    let a = jarm_redeemed(&[]).await;
    assert_error(&a, 400, &["invalid_request"]);
    assert!(a.json.get("id_token").is_none());

    // Without `openid` no id_token is issued, so the missing key is no
    // reason to refuse: the code redeems.
    let a = jarm_redeemed(&[
        ("scope", Some("accounts")),
        ("nonce", None),
        ("claims", None),
    ])
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert!(a.json["access_token"].is_string());
    assert!(a.json.get("id_token").is_none());
    srv.stop().await;
}

/// A `tls_client_auth` client registered for encrypted UserInfo whose
/// `jwks_uri` holds no encryption key: its certificate-bound token,
/// presented as `Bearer` on the mTLS listener, is refused with
/// `invalid_request` in a `Bearer` challenge (not a DPoP one, and no
/// claims in clear).
#[actix_web::test]
async fn userinfo_refusal_keeps_the_bearer_scheme() {
    let mut setup = Setup::new(Backend::Sqlite);
    let (ca, ca_key) = setup.dev_ca();
    let mtls = crate::fapi::mtls_tpp(&ca, &ca_key);
    let jwks_uri = crate::admin::serve_https_jwks(&setup, json!({"keys": [mtls.key.jwk]}));
    let mut m = mtls.mtls_metadata("CN=tpp-mtls,O=Example TPP Ltd,C=GB");
    m.as_object_mut().unwrap().remove("jwks");
    m["jwks_uri"] = json!(jwks_uri);
    m["userinfo_encrypted_response_alg"] = json!("RSA-OAEP-256");
    setup.clients = vec![m];
    setup.users = vec![demo_user()];
    let srv = setup.start().await;
    let w = crate::fapi::World {
        srv,
        dpop: Tpp::new("unused-dpop"),
        other: Tpp::new("unused-other"),
        mtls,
    };
    let http = w.mtls_http();
    let tokens = crate::binding::mtls_tokens(&w, &http).await;
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap();
    let res = http
        .get(w.srv.mtls_url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(res.status(), 400, "{challenge}");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_request""#),
        "{challenge}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(body.get("sub").is_none(), "{body}");
    w.srv.stop().await;
}

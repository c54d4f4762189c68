//! Every FAPI 2.0 rule broken on purpose, through the running server: the
//! spec's error code and status, and no partial state left behind.

use serde_json::{Value, json};

use crate::fapi::{PASSWORD, USER, World, world};
use crate::harness::{BACKENDS, Backend, TestServer};
use crate::tpp::*;

/// PAR with the DPoP client, `edit` changing the parameters; returns the answer.
async fn par_with(w: &World, edit: impl FnOnce(&mut Vec<(String, String)>)) -> Answer {
    let tpp = &w.dpop;
    let pkce = Pkce::new();
    let mut form = tpp.authz_params(&pkce, "openid accounts");
    form.extend(tpp.auth_fields(&w.srv));
    edit(&mut form);
    // Authentication fields are in `form` already, so `edit` can change them.
    let url = w.srv.url("/par");
    post_form(
        &w.srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await
}

/// A complete authorization with the DPoP client up to the code; returns
/// (code, pkce).
pub async fn code_for(w: &World, tpp: &Tpp) -> (String, Pkce) {
    let pkce = Pkce::new();
    let (request_uri, _) = w.push_dpop(tpp, &pkce, "openid accounts").await;
    let back = browser_flow(
        &w.srv,
        &w.srv.browser(),
        &tpp.client_id,
        &request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    (query(&back)["code"].clone(), pkce)
}

/// The code exchange's form: `tpp`'s client authentication, the code, its
/// redirect URI and, when given, the PKCE verifier.
fn code_form(
    srv: &TestServer,
    tpp: &Tpp,
    code: &str,
    verifier: Option<&str>,
) -> Vec<(String, String)> {
    let mut form = tpp.auth_fields(srv);
    form.push(("grant_type".into(), "authorization_code".into()));
    form.push(("code".into(), code.into()));
    form.push(("redirect_uri".into(), tpp.redirect_uri.clone()));
    if let Some(v) = verifier {
        form.push(("code_verifier".into(), v.into()));
    }
    form
}

pub async fn redeem(
    w: &World,
    tpp: &Tpp,
    code: &str,
    verifier: Option<&str>,
    dpop_key: &Tpp,
) -> Answer {
    let url = w.srv.url("/token");
    post_form(
        &w.srv.client(None),
        &url,
        &code_form(&w.srv, tpp, code, verifier),
        Some(dpop_key.dpop_proof("POST", &url, None)),
    )
    .await
}

async fn introspect(w: &World, token: &str) -> Value {
    let mut form = w.dpop.auth_fields(&w.srv);
    form.push(("token".into(), token.into()));
    post_form(&w.srv.client(None), &w.srv.url("/introspect"), &form, None)
        .await
        .json
}

#[actix_web::test]
async fn authorization_requests_must_be_pushed() {
    let w = world(Backend::Sqlite).await;
    let pkce = Pkce::new();
    let params = w.dpop.authz_params(&pkce, "openid accounts");
    let qs: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}&", urlenc(v)))
        .collect();
    let res = w
        .srv
        .browser()
        .get(format!("{}?{qs}", w.srv.url("/authorize")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("invalid_request"));
    w.srv.stop().await;
}

#[actix_web::test]
async fn par_refuses_bad_requests() {
    let w = world(Backend::Sqlite).await;
    // PKCE missing, plain, malformed.
    let a = par_with(&w, |f| set_param(f, "code_challenge", None)).await;
    assert_error(&a, 400, &["invalid_request"]);
    let a = par_with(&w, |f| set_param(f, "code_challenge_method", Some("plain"))).await;
    assert_error(&a, 400, &["invalid_request"]);
    let a = par_with(&w, |f| set_param(f, "code_challenge_method", None)).await;
    assert_error(&a, 400, &["invalid_request"]);
    // redirect_uri not registered, or missing.
    let a = par_with(&w, |f| {
        set_param(f, "redirect_uri", Some("https://attacker.example/cb"))
    })
    .await;
    assert_error(&a, 400, &["invalid_request", "invalid_redirect_uri"]);
    let a = par_with(&w, |f| set_param(f, "redirect_uri", None)).await;
    assert_error(&a, 400, &["invalid_request"]);
    // response types other than code.
    let a = par_with(&w, |f| set_param(f, "response_type", Some("code id_token"))).await;
    assert_error(&a, 400, &["unsupported_response_type", "invalid_request"]);
    let a = par_with(&w, |f| set_param(f, "response_type", Some("token"))).await;
    assert_error(&a, 400, &["unsupported_response_type", "invalid_request"]);
    // A request_uri sent to PAR itself (RFC 9126 §2.1).
    let a = par_with(&w, |f| {
        set_param(
            f,
            "request_uri",
            Some("urn:ietf:params:oauth:request_uri:x"),
        )
    })
    .await;
    assert_error(&a, 400, &["invalid_request"]);
    // A scope the client may not have.
    let a = par_with(&w, |f| {
        set_param(f, "scope", Some("openid fundsconfirmations"))
    })
    .await;
    assert_error(&a, 400, &["invalid_scope"]);
    // Repeated parameters.
    let a = par_with(&w, |f| f.push(("scope".into(), "openid".into()))).await;
    assert_error(&a, 400, &["invalid_request"]);
    // dpop_jkt that is not the proof's key.
    let a = par_with(&w, |f| {
        set_param(f, "dpop_jkt", Some(&w.other.dpop.thumbprint()))
    })
    .await;
    assert_error(&a, 400, &["invalid_request", "invalid_dpop_proof"]);
    // GET is not PAR.
    let res = w
        .srv
        .client(None)
        .get(w.srv.url("/par"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    w.srv.stop().await;
}

#[actix_web::test]
async fn client_assertions_are_checked() {
    let w = world(Backend::Sqlite).await;
    let srv = &w.srv;
    let tpp = &w.dpop;
    let with_assertion = |assertion: String| {
        move |f: &mut Vec<(String, String)>| set_param(f, "client_assertion", Some(&assertion))
    };
    // FAPI 2.0: aud must be exactly the issuer — not the endpoint, not an array.
    for aud in [
        json!(srv.url("/par")),
        json!(srv.url("/token")),
        json!([srv.issuer.clone()]),
    ] {
        let a = par_with(
            &w,
            with_assertion(tpp.key.sign(None, &tpp.assertion_claims(aud.clone()))),
        )
        .await;
        assert_error(&a, 401, &["invalid_client"]);
    }
    // A reused jti.
    let assertion = tpp.assertion(&srv.issuer);
    let a = par_with(&w, with_assertion(assertion.clone())).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let a = par_with(&w, with_assertion(assertion)).await;
    assert_error(&a, 401, &["invalid_client"]);
    // Expired, or valid too far ahead.
    let mut c = tpp.assertion_claims(json!(srv.issuer));
    c["exp"] = json!(now() - 300);
    let a = par_with(&w, with_assertion(tpp.key.sign(None, &c))).await;
    assert_error(&a, 401, &["invalid_client"]);
    let mut c = tpp.assertion_claims(json!(srv.issuer));
    c["iat"] = json!(now() + 70);
    c["nbf"] = json!(now() + 70);
    c["exp"] = json!(now() + 130);
    let a = par_with(&w, with_assertion(tpp.key.sign(None, &c))).await;
    assert_error(&a, 401, &["invalid_client", "invalid_request"]);
    // Clock skew: iat/nbf 8 s ahead is fine.
    let mut c = tpp.assertion_claims(json!(srv.issuer));
    c["iat"] = json!(now() + 8);
    c["nbf"] = json!(now() + 8);
    let a = par_with(&w, with_assertion(tpp.key.sign(None, &c))).await;
    assert_eq!(a.status, 201, "8 s skew: {}", a.json);
    // No sub; signed with another client's key; RS256.
    let mut c = tpp.assertion_claims(json!(srv.issuer));
    c.as_object_mut().unwrap().remove("sub");
    let a = par_with(&w, with_assertion(tpp.key.sign(None, &c))).await;
    assert_error(&a, 401, &["invalid_client"]);
    let a = par_with(
        &w,
        with_assertion(
            w.other
                .key
                .sign(None, &tpp.assertion_claims(json!(srv.issuer))),
        ),
    )
    .await;
    assert_error(&a, 401, &["invalid_client"]);
    let rsa = TppKey::ps256(&tpp.key.kid);
    let rs256 = TppKey {
        alg: jsonwebtoken::Algorithm::RS256,
        ..rsa
    };
    let a = par_with(
        &w,
        with_assertion(rs256.sign(None, &tpp.assertion_claims(json!(srv.issuer)))),
    )
    .await;
    assert_error(&a, 401, &["invalid_client"]);
    // No client authentication at all.
    let a = par_with(&w, |f| {
        set_param(f, "client_assertion", None);
        set_param(f, "client_assertion_type", None);
    })
    .await;
    assert_error(&a, 401, &["invalid_client", "invalid_request"]);
    w.srv.stop().await;
}

#[actix_web::test]
async fn signed_request_objects_are_checked() {
    let w = world(Backend::Sqlite).await;
    let srv = &w.srv;
    let tpp = &w.dpop;
    let pkce = Pkce::new();
    let base = |exp_off: i64, nbf_off: i64| {
        let t = now();
        let mut c = json!({"iss": tpp.client_id, "client_id": tpp.client_id, "aud": srv.issuer, "exp": t + exp_off, "nbf": t + nbf_off, "iat": t, "jti": random(8)});
        for (k, v) in tpp.authz_params(&pkce, "openid accounts") {
            c[k] = json!(v);
        }
        c
    };
    let push = |jwt: String| {
        let mut form = tpp.auth_fields(srv);
        form.push(("request".into(), jwt));
        let url = srv.url("/par");
        let proof = tpp.dpop_proof("POST", &url, None);
        let http = srv.client(None);
        async move { post_form(&http, &url, &form, Some(proof)).await }
    };
    let a = push(tpp.key.sign(Some("oauth-authz-req+jwt"), &base(300, 0))).await;
    assert_eq!(a.status, 201, "valid request object: {}", a.json);
    let a = push(tpp.key.sign(Some("oauth-authz-req+jwt"), &base(-60, -300))).await;
    assert_error(&a, 400, &["invalid_request_object"]);
    let a = push(tpp.key.sign(Some("oauth-authz-req+jwt"), &base(70 * 60, 0))).await;
    assert_error(&a, 400, &["invalid_request_object"]);
    let a = push(tpp.key.sign(Some("oauth-authz-req+jwt"), &base(300, 8))).await;
    assert_eq!(a.status, 201, "nbf 8 s ahead: {}", a.json);
    let mut c = base(300, 0);
    c["aud"] = json!("https://other.example");
    let a = push(tpp.key.sign(Some("oauth-authz-req+jwt"), &c)).await;
    assert_error(&a, 400, &["invalid_request_object"]);
    // alg none, HS256, RS256.
    let claims = base(300, 0);
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"oauth-authz-req+jwt"}"#),
        b64(serde_json::to_string(&claims).unwrap().as_bytes())
    );
    let a = push(none).await;
    assert_error(&a, 400, &["invalid_request_object"]);
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"a shared secret of no one"),
    )
    .unwrap();
    let a = push(hs).await;
    assert_error(&a, 400, &["invalid_request_object"]);
    let rsa = TppKey::ps256(&tpp.key.kid);
    let rs = TppKey {
        alg: jsonwebtoken::Algorithm::RS256,
        ..rsa
    };
    let a = push(rs.sign(Some("oauth-authz-req+jwt"), &claims)).await;
    assert_error(&a, 400, &["invalid_request_object"]);
    w.srv.stop().await;
}

/// The signed request object, encrypted as a UK TPP does (josekit) to the
/// `use: enc` key of our JWKS published for `alg` (or, in the UK view,
/// which names no encryption algorithm, its one `use: enc` key).
#[allow(deprecated)]
pub fn encrypt_to_published(jwks: &Value, alg: &str, enc: &str, signed: &str) -> String {
    use josekit::jwe::alg::rsaes::RsaesJweAlgorithm;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["use"] == "enc" && (k["alg"] == alg || k.get("alg").is_none()))
        .unwrap_or_else(|| panic!("no {alg} key in {jwks}"));
    let jwk = josekit::jwk::Jwk::from_bytes(key.to_string().as_bytes()).unwrap();
    let encrypter = match alg {
        "RSA-OAEP" => RsaesJweAlgorithm::RsaOaep.encrypter_from_jwk(&jwk),
        _ => RsaesJweAlgorithm::RsaOaep256.encrypter_from_jwk(&jwk),
    }
    .unwrap();
    let mut h = josekit::jwe::JweHeader::new();
    h.set_content_encryption(enc);
    h.set_content_type("JWT");
    h.set_key_id(key["kid"].as_str().unwrap());
    josekit::jwe::serialize_compact(signed.as_bytes(), &h, &encrypter).unwrap()
}

#[actix_web::test]
async fn encrypted_request_objects_are_opened_at_par() {
    let w = world(Backend::Sqlite).await;
    let srv = &w.srv;
    let tpp = &w.dpop;
    let http = srv.client(None);
    let meta = srv.discovery().await;
    assert_eq!(
        meta["request_object_encryption_alg_values_supported"],
        json!(["RSA-OAEP", "RSA-OAEP-256"])
    );
    assert_eq!(
        meta["request_object_encryption_enc_values_supported"],
        json!(["A256GCM", "A128CBC-HS256"])
    );
    let jwks: Value = http
        .get(meta["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pkce = Pkce::new();
    let signed = || {
        let t = now();
        let mut c = json!({"iss": tpp.client_id, "client_id": tpp.client_id, "aud": srv.issuer,
                           "exp": t + 300, "nbf": t, "iat": t, "jti": random(8)});
        for (k, v) in tpp.authz_params(&pkce, "openid accounts") {
            c[k] = json!(v);
        }
        tpp.key.sign(Some("oauth-authz-req+jwt"), &c)
    };
    let push = |request: String| {
        let mut form = tpp.auth_fields(srv);
        form.push(("request".into(), request));
        let url = srv.url("/par");
        let proof = tpp.dpop_proof("POST", &url, None);
        let http = srv.client(None);
        async move { post_form(&http, &url, &form, Some(proof)).await }
    };
    for (alg, enc) in [
        ("RSA-OAEP-256", "A256GCM"),
        ("RSA-OAEP", "A256GCM"),
        ("RSA-OAEP-256", "A128CBC-HS256"),
    ] {
        let a = push(encrypt_to_published(&jwks, alg, enc, &signed())).await;
        assert_eq!(a.status, 201, "{alg} {enc}: {}", a.json);
        assert!(a.json["request_uri"].is_string());
    }
    // A tampered tag; an unsigned object inside; an enc we do not take.
    let jwe = encrypt_to_published(&jwks, "RSA-OAEP-256", "A256GCM", &signed());
    let (head, tag) = jwe.rsplit_once('.').unwrap();
    let flipped = format!(
        "{head}.{}{}",
        if tag.starts_with('A') { "B" } else { "A" },
        &tag[1..]
    );
    assert_error(&push(flipped).await, 400, &["invalid_request_object"]);
    let t = now();
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(
            json!({"iss": tpp.client_id, "aud": srv.issuer, "exp": t + 60})
                .to_string()
                .as_bytes()
        )
    );
    let a = push(encrypt_to_published(
        &jwks,
        "RSA-OAEP-256",
        "A256GCM",
        &unsigned,
    ))
    .await;
    assert_error(&a, 400, &["invalid_request_object"]);
    let a = push(encrypt_to_published(
        &jwks,
        "RSA-OAEP-256",
        "A128GCM",
        &signed(),
    ))
    .await;
    assert_error(&a, 400, &["invalid_request_object"]);
    w.srv.stop().await;
}

#[actix_web::test]
async fn codes_are_single_use_and_bound() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let tpp = &w.dpop;
        // Missing and wrong verifier.
        let (code, _) = code_for(&w, tpp).await;
        assert_error(
            &redeem(&w, tpp, &code, None, tpp).await,
            400,
            &["invalid_grant"],
        );
        let (code, _) = code_for(&w, tpp).await;
        assert_error(
            &redeem(&w, tpp, &code, Some(&Pkce::new().verifier), tpp).await,
            400,
            &["invalid_grant"],
        );
        // Another client's code.
        let (code, pkce) = code_for(&w, tpp).await;
        let a = redeem(&w, &w.other, &code, Some(&pkce.verifier), &w.other).await;
        assert!(a.status == 400 || a.status == 401);
        assert_error(&a, a.status, &["invalid_grant", "invalid_client"]);
        // A DPoP key other than the one the code is bound to (PAR proof).
        let (code, pkce) = code_for(&w, tpp).await;
        let a = redeem(&w, tpp, &code, Some(&pkce.verifier), &w.other).await;
        assert_error(
            &a,
            400,
            &["invalid_grant", "invalid_dpop_proof", "invalid_request"],
        );
        // Reuse: the second redemption fails and revokes the first tokens.
        let (code, pkce) = code_for(&w, tpp).await;
        let first = redeem(&w, tpp, &code, Some(&pkce.verifier), tpp).await;
        assert_eq!(first.status, 200, "{}", first.json);
        let access = first.json["access_token"].as_str().unwrap().to_string();
        assert_eq!(introspect(&w, &access).await["active"], true);
        let again = redeem(&w, tpp, &code, Some(&pkce.verifier), tpp).await;
        assert_error(&again, 400, &["invalid_grant"]);
        assert_eq!(
            introspect(&w, &access).await,
            json!({"active": false}),
            "{backend:?}: first tokens revoked"
        );
        w.srv.stop().await;
    }
}

/// `value` with the millisecond clock that leads it moved by `ms`.
fn moved_clock(value: &str, ms: i64) -> String {
    let clock = i64::from_str_radix(&value[..11], 16).expect("a clock-led value");
    format!("{:011x}{}", clock + ms, &value[11..])
}

/// `value` with its last character changed (inside the random part).
fn last_char_changed(value: &str) -> String {
    let (head, last) = value.split_at(value.len() - 1);
    format!("{head}{}", if last == "A" { "B" } else { "A" })
}

/// Codes and tokens lead with the clock of their issue, and their stored
/// keys with the same digits: a value whose clock or random part was
/// altered finds nothing, and the genuine one still works.
#[actix_web::test]
async fn altered_codes_and_tokens_are_refused() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let tpp = &w.dpop;
        let (code, pkce) = code_for(&w, tpp).await;
        assert_eq!(code.len(), 54, "clock digits + 256 random bits: {code}");
        for bad in [
            moved_clock(&code, 1),
            moved_clock(&code, -1),
            last_char_changed(&code),
        ] {
            let a = redeem(&w, tpp, &bad, Some(&pkce.verifier), tpp).await;
            assert_error(&a, 400, &["invalid_grant"]);
        }
        let ok = redeem(&w, tpp, &code, Some(&pkce.verifier), tpp).await;
        assert_eq!(ok.status, 200, "{backend:?}: {}", ok.json);
        let access = ok.json["access_token"].as_str().unwrap().to_string();
        assert_eq!(access.len(), 54, "{access}");
        for bad in [moved_clock(&access, 1), last_char_changed(&access)] {
            assert_eq!(
                introspect(&w, &bad).await,
                json!({"active": false}),
                "{backend:?}"
            );
        }
        assert_eq!(introspect(&w, &access).await["active"], true, "{backend:?}");
        w.srv.stop().await;
    }
}

#[actix_web::test]
async fn request_uris_are_single_use() {
    let w = world(Backend::Sqlite).await;
    let tpp = &w.dpop;
    let pkce = Pkce::new();
    let (request_uri, _) = w.push_dpop(tpp, &pkce, "openid accounts").await;
    // Visiting /authorize twice before login completes is fine.
    let browser = w.srv.browser();
    let url = authorize_url(&w.srv, &tpp.client_id, &request_uri);
    assert_eq!(browser.get(&url).send().await.unwrap().status(), 303);
    let back = browser_flow(
        &w.srv,
        &browser,
        &tpp.client_id,
        &request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    assert!(query(&back).contains_key("code"));
    // After completion it is spent.
    let res = w.srv.browser().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("invalid_request_uri"));
    // Another client cannot use a request_uri.
    let (request_uri, _) = w.push_dpop(tpp, &Pkce::new(), "openid accounts").await;
    let url = authorize_url(&w.srv, &w.other.client_id, &request_uri);
    assert_eq!(
        w.srv.browser().get(&url).send().await.unwrap().status(),
        400
    );
    w.srv.stop().await;
}

#[actix_web::test]
async fn denial_goes_back_with_access_denied() {
    let w = world(Backend::Sqlite).await;
    let tpp = &w.dpop;
    let pkce = Pkce::new();
    let (request_uri, params) = w.push_dpop(tpp, &pkce, "openid accounts").await;
    let back = browser_flow(
        &w.srv,
        &w.srv.browser(),
        &tpp.client_id,
        &request_uri,
        USER,
        PASSWORD,
        false,
    )
    .await;
    let q = query(&back);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], param(&params, "state"));
    assert_eq!(q["iss"], w.srv.issuer);
    for k in q.keys() {
        assert!(
            ["error", "error_description", "error_uri", "state", "iss"].contains(&k.as_str()),
            "{k}"
        );
    }
    w.srv.stop().await;
}

#[actix_web::test]
async fn dpop_proofs_are_checked() {
    let w = world(Backend::Sqlite).await;
    let srv = &w.srv;
    let tpp = &w.dpop;
    let (code, pkce) = code_for(&w, tpp).await;
    let url = srv.url("/token");
    let token_form = |code: &str, verifier: &str| code_form(srv, tpp, code, Some(verifier));
    let http = srv.client(None);
    // The code exchange with `proof`.
    let exchange = |code: &str, verifier: &str, proof: String| {
        let (http, url, form) = (&http, &url, token_form(code, verifier));
        async move { post_form(http, url, &form, Some(proof)).await }
    };
    // Wrong htm, wrong htu, stale iat: refused without spending the code.
    for claims in [
        Tpp::dpop_claims("GET", &url, None),
        Tpp::dpop_claims("POST", &srv.url("/par"), None),
        json!({"jti": random(8), "htm": "POST", "htu": url, "iat": now() - 3600}),
    ] {
        let a = exchange(&code, &pkce.verifier, tpp.dpop_proof_claims(&claims)).await;
        assert_error(&a, 400, &["invalid_dpop_proof"]);
    }
    // htu differing only in case and default port is the same URL.
    let odd = url.replace("https://localhost", "HTTPS://LOCALHOST");
    let proof = tpp.dpop_proof_claims(&Tpp::dpop_claims("POST", &odd, None));
    let ok = exchange(&code, &pkce.verifier, proof.clone()).await;
    assert_eq!(ok.status, 200, "normalised htu: {}", ok.json);
    let access = ok.json["access_token"].as_str().unwrap().to_string();
    // The same proof again (jti replay).
    let (code2, pkce2) = code_for(&w, tpp).await;
    let a = exchange(&code2, &pkce2.verifier, proof).await;
    assert_error(&a, 400, &["invalid_dpop_proof"]);
    // A fresh proof with a client assertion used before (at PAR): refused
    // as invalid_client by the code's redemption, the write that records
    // both jtis, which is undone whole: neither the proof nor the code is
    // spent.
    let used = tpp.assertion(&srv.issuer);
    let a = par_with(&w, |f| set_param(f, "client_assertion", Some(&used))).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let mut replayed = token_form(&code2, &pkce2.verifier);
    set_param(&mut replayed, "client_assertion", Some(&used));
    let fresh = tpp.dpop_proof("POST", &url, None);
    let a = post_form(&http, &url, &replayed, Some(fresh.clone())).await;
    assert_error(&a, 401, &["invalid_client"]);
    let ok = exchange(&code2, &pkce2.verifier, fresh.clone()).await;
    assert_eq!(
        ok.status, 200,
        "the proof was spent by a refused request: {}",
        ok.json
    );
    // …and now it is spent.
    let (code3, pkce3) = code_for(&w, tpp).await;
    let a = exchange(&code3, &pkce3.verifier, fresh).await;
    assert_error(&a, 400, &["invalid_dpop_proof"]);
    // Resource side: wrong ath, no proof, Bearer scheme, another key.
    let ui = srv.url("/userinfo");
    let res = http
        .get(&ui)
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", tpp.dpop_proof("GET", &ui, Some("not-the-token")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("DPoP")
    );
    let res = http
        .get(&ui)
        .header("Authorization", format!("DPoP {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .get(&ui)
        .header("Authorization", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .get(&ui)
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", w.other.dpop_proof("GET", &ui, Some(&access)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Scheme names are case-insensitive (RFC 9110 §11.1).
    let proof = tpp.dpop_proof("GET", &ui, Some(&access));
    let res = http
        .get(&ui)
        .header("Authorization", format!("dpop {access}"))
        .header("DPoP", proof.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The same proof again (RFC 9449 §11.1): refused, and no claims.
    let res = http
        .get(&ui)
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    assert!(body.get("sub").is_none(), "{body}");
    // The access token in the query string is refused.
    let res = http
        .get(format!("{ui}?access_token={access}"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    w.srv.stop().await;
}

#[actix_web::test]
async fn mtls_bound_tokens_need_the_same_certificate() {
    let w = world(Backend::Sqlite).await;
    let srv = &w.srv;
    let tpp = &w.mtls;
    let http = w.mtls_http();
    let form = vec![
        ("client_id".to_string(), tpp.client_id.clone()),
        ("grant_type".into(), "client_credentials".into()),
        ("scope".into(), "accounts".into()),
    ];
    let a = post_form(&http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert!(a.json.get("refresh_token").is_none() && a.json.get("id_token").is_none());
    let access = a.json["access_token"].as_str().unwrap().to_string();
    // Another certificate from the same CA (another subject).
    let (ca, key) = {
        let dir = &srv.data_dir;
        (
            std::fs::read_to_string(dir.join("dev-ca.pem")).unwrap(),
            std::fs::read_to_string(dir.join("dev-ca-key.pem")).unwrap(),
        )
    };
    use strongroom::devcerts::{DnType, KeyAlg, issue_client_cert};
    let (c2, k2) = issue_client_cert(
        &ca,
        &key,
        &[(DnType::CommonName, "someone-else")],
        &[],
        KeyAlg::EcdsaP256,
    )
    .unwrap();
    let other = srv.client(Some((&c2, &k2)));
    let res = other
        .get(srv.mtls_url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // tls_client_auth with that certificate is not this client either. The
    // client hears nothing more; the log names the DN presented, so an
    // operator can fix a registration (issue 22 §6).
    let a = post_form(&other, &srv.mtls_url("/token"), &form, None).await;
    assert_error(&a, 401, &["invalid_client"]);
    assert_eq!(a.json["error_description"], "client authentication failed");
    let logged = crate::harness::logged();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("client authentication failed")
                && l.contains("client_id=\"tpp-mtls\"")
                && l.contains("registered subject")
                && l.contains("presented_subject_dn=CN=someone-else")),
        "{logged:#?}"
    );
    // No certificate at all.
    let a = post_form(&srv.client(None), &srv.mtls_url("/token"), &form, None).await;
    assert_error(&a, 401, &["invalid_client"]);
    w.srv.stop().await;
}

#[actix_web::test]
async fn refresh_cannot_widen_scope_or_change_hands() {
    let w = world(Backend::Sqlite).await;
    let tpp = &w.dpop;
    let (code, pkce) = code_for(&w, tpp).await;
    let t = redeem(&w, tpp, &code, Some(&pkce.verifier), tpp).await;
    let rt = t.json["refresh_token"].as_str().unwrap().to_string();
    let url = w.srv.url("/token");
    let refresh = |who: &Tpp, dpop: &Tpp, scope: Option<&str>| {
        let mut form = who.auth_fields(&w.srv);
        form.push(("grant_type".into(), "refresh_token".into()));
        form.push(("refresh_token".into(), rt.clone()));
        if let Some(s) = scope {
            form.push(("scope".into(), s.into()));
        }
        let proof = dpop.dpop_proof("POST", &url, None);
        let http = w.srv.client(None);
        let url = url.clone();
        async move { post_form(&http, &url, &form, Some(proof)).await }
    };
    assert_error(
        &refresh(tpp, tpp, Some("openid accounts payments")).await,
        400,
        &["invalid_scope"],
    );
    let a = refresh(&w.other, &w.other, None).await;
    assert_error(&a, 400, &["invalid_grant"]);
    // Another client's DPoP key does not make it another client's token
    // (RFC 9449 §5: bound to the client's authentication; the new access
    // token is bound to the key presented, crates/strongroom/tests/server/binding.rs).
    let a = refresh(tpp, &w.other, None).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let a = refresh(tpp, tpp, None).await;
    assert_eq!(a.status, 200, "{}", a.json);
    w.srv.stop().await;
}

#[actix_web::test]
async fn token_endpoint_error_shapes() {
    let w = world(Backend::Sqlite).await;
    let tpp = &w.dpop;
    let url = w.srv.url("/token");
    let http = w.srv.client(None);
    let mut form = tpp.auth_fields(&w.srv);
    form.push(("grant_type".into(), "password".into()));
    let a = post_form(&http, &url, &form, Some(tpp.dpop_proof("POST", &url, None))).await;
    assert_error(&a, 400, &["unsupported_grant_type"]);
    let form = tpp.auth_fields(&w.srv);
    let a = post_form(&http, &url, &form, Some(tpp.dpop_proof("POST", &url, None))).await;
    assert_error(&a, 400, &["invalid_request"]);
    let mut form = tpp.auth_fields(&w.srv);
    form.push(("grant_type".into(), "authorization_code".into()));
    form.push(("code".into(), "no-such-code".into()));
    form.push(("redirect_uri".into(), tpp.redirect_uri.clone()));
    form.push(("code_verifier".into(), Pkce::new().verifier));
    let a = post_form(&http, &url, &form, Some(tpp.dpop_proof("POST", &url, None))).await;
    assert_error(&a, 400, &["invalid_grant"]);
    w.srv.stop().await;
}

#[actix_web::test]
async fn expired_request_uris_are_refused_but_slow_logins_finish() {
    let w =
        crate::fapi::world_with(Backend::Sqlite, Some(|c| c.tokens.par_lifetime_secs = 10)).await;
    let tpp = &w.dpop;
    let (request_uri, _) = w.push_dpop(tpp, &Pkce::new(), "openid accounts").await;
    // The customer starts in time, then takes longer than the PAR lifetime.
    let browser = w.srv.browser();
    let url = authorize_url(&w.srv, &tpp.client_id, &request_uri);
    let res = browser.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let login = location(&res);
    actix_web::rt::time::sleep(std::time::Duration::from_secs(11)).await;
    let res = submit_login(&browser, &w.srv.url(&login), USER, PASSWORD).await;
    assert_eq!(res.status(), 303);
    let consent = location(&res);
    let res = browser
        .post(w.srv.url(&consent))
        .form(&[("action", "approve")])
        .send()
        .await
        .unwrap();
    assert!(
        query(&location(&res)).contains_key("code"),
        "a slow login still completes"
    );
    // Presenting an expired request_uri is refused.
    let (late, _) = w.push_dpop(tpp, &Pkce::new(), "openid accounts").await;
    actix_web::rt::time::sleep(std::time::Duration::from_secs(11)).await;
    let url = authorize_url(&w.srv, &tpp.client_id, &late);
    let res = w.srv.browser().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("invalid_request_uri"));
    w.srv.stop().await;
}

#[actix_web::test]
async fn interactions_are_bound_to_the_browser() {
    let w = world(Backend::Sqlite).await;
    let tpp = &w.dpop;
    let (request_uri, _) = w.push_dpop(tpp, &Pkce::new(), "openid accounts").await;
    let url = authorize_url(&w.srv, &tpp.client_id, &request_uri);
    let res = w.srv.browser().get(&url).send().await.unwrap();
    let login = location(&res);
    // Another browser (no interaction cookie) cannot continue it.
    let res = submit_login(&w.srv.browser(), &w.srv.url(&login), USER, PASSWORD).await;
    assert_eq!(res.status(), 400);
    // A wrong password keeps the customer on the login page.
    let browser = w.srv.browser();
    let res = browser.get(&url).send().await.unwrap();
    let login = location(&res);
    let res = submit_login(&browser, &w.srv.url(&login), USER, "not-it").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("not correct"));
    w.srv.stop().await;
}

/// A consent form submitted twice at once (a double click) ends the
/// interaction once: one code, and the other submit gets an error page
/// (the sign-in is already completed, or already gone, depending on which
/// step it reached when the first one won).
#[actix_web::test]
async fn a_consent_is_submitted_once() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let (srv, tpp) = (&w.srv, &w.dpop);
        let browser = srv.browser();
        // The first journey signs the customer in; the second starts at
        // the consent page.
        let (request_uri, _) = w.push_dpop(tpp, &Pkce::new(), "openid accounts").await;
        browser_flow(
            srv,
            &browser,
            &tpp.client_id,
            &request_uri,
            USER,
            PASSWORD,
            true,
        )
        .await;
        let pkce = Pkce::new();
        let (request_uri, _) = w.push_dpop(tpp, &pkce, "openid accounts").await;
        let url = authorize_url(srv, &tpp.client_id, &request_uri);
        let res = browser.get(&url).send().await.unwrap();
        let consent = srv.url(&location(&res));
        assert!(consent.ends_with("/consent"), "{consent}");
        assert_eq!(browser.get(&consent).send().await.unwrap().status(), 200);
        let submit = || browser.post(&consent).form(&[("action", "approve")]).send();
        let (a, b) = tokio::join!(submit(), submit());
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        if a.status() != 303 {
            std::mem::swap(&mut a, &mut b);
        }
        assert_eq!(a.status(), 303, "{backend:?}");
        assert_eq!(b.status(), 400, "{backend:?}");
        let page = b.text().await.unwrap();
        assert!(
            page.contains("already completed") || page.contains("expired or is unknown"),
            "{page}"
        );
        let code = query(&location(&a))["code"].clone();
        let t = redeem(&w, tpp, &code, Some(&pkce.verifier), tpp).await;
        assert_eq!(t.status, 200, "{backend:?}: {}", t.json);
        w.srv.stop().await;
    }
}

/// A request that passes client authentication but is refused on its
/// content, before anything is written, still spends its client assertion
/// and DPoP proof: neither can be replayed with another body.
#[actix_web::test]
async fn a_refused_request_still_spends_its_assertion_and_proof() {
    let w = world(Backend::Sqlite).await;
    let (srv, tpp) = (&w.srv, &w.dpop);
    let (code, pkce) = code_for(&w, tpp).await;
    let url = srv.url("/token");
    let http = srv.client(None);
    let full = || code_form(srv, tpp, &code, Some(&pkce.verifier));
    // No code: invalid_request.
    let mut form = full();
    let assertion = param(&form, "client_assertion").to_string();
    set_param(&mut form, "code", None);
    let proof = tpp.dpop_proof("POST", &url, None);
    let a = post_form(&http, &url, &form, Some(proof.clone())).await;
    assert_error(&a, 400, &["invalid_request"]);
    // The same assertion with the full body: a replay.
    let mut replayed = full();
    set_param(&mut replayed, "client_assertion", Some(&assertion));
    let a = post_form(
        &http,
        &url,
        &replayed,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await;
    assert_error(&a, 401, &["invalid_client"]);
    // The same proof with a fresh assertion: a replay too.
    let a = post_form(&http, &url, &full(), Some(proof)).await;
    assert_error(&a, 400, &["invalid_dpop_proof"]);
    // None of these spent the code.
    let ok = redeem(&w, tpp, &code, Some(&pkce.verifier), tpp).await;
    assert_eq!(ok.status, 200, "{}", ok.json);

    // At PAR: a request without PKCE is refused, and its assertion spent.
    let assertion = tpp.assertion(&srv.issuer);
    let a = par_with(&w, |f| {
        set_param(f, "client_assertion", Some(&assertion));
        set_param(f, "code_challenge", None);
    })
    .await;
    assert_error(&a, 400, &["invalid_request"]);
    let a = par_with(&w, |f| set_param(f, "client_assertion", Some(&assertion))).await;
    assert_error(&a, 401, &["invalid_client"]);
    w.srv.stop().await;
}

/// RFC 7523 §3 and RFC 9449 §11.1 across a restart: a client assertion and
/// a DPoP proof used before the server stopped are still refused by the
/// server that starts next on the same database and addresses (on SQLite
/// the claim reloads them from the log into memory; on PostgreSQL they are
/// in the shared table), each with its own error, while a fresh pair works.
#[actix_web::test]
async fn assertions_and_proofs_stay_spent_across_a_restart() {
    for backend in BACKENDS {
        let mut setup = crate::harness::Setup::new(backend);
        let tpp = Tpp::new("tpp-restart");
        setup.clients = vec![tpp.pkjwt_metadata()];
        let request = |assertion: &str| {
            vec![
                ("grant_type".to_string(), "client_credentials".to_string()),
                ("scope".into(), "accounts".into()),
                ("client_id".into(), tpp.client_id.clone()),
                ("client_assertion_type".into(), ASSERTION_TYPE.into()),
                ("client_assertion".into(), assertion.to_string()),
            ]
        };

        let first = setup.start().await;
        let url = first.url("/token");
        let assertion = tpp.assertion(&first.issuer);
        let proof = tpp.dpop_proof("POST", &url, None);
        let http = first.client(None);
        let a = post_form(&http, &url, &request(&assertion), Some(proof.clone())).await;
        assert_eq!(a.status, 200, "{backend:?}: {}", a.json);
        let (main_port, mtls_port) = (first.main_port, first.mtls_port);
        first.stop().await;

        let second = setup.start_at(main_port, mtls_port).await;
        assert_eq!(second.url("/token"), url, "the same addresses");
        let http = second.client(None);
        let fresh_proof = tpp.dpop_proof("POST", &url, None);
        let a = post_form(&http, &url, &request(&assertion), Some(fresh_proof)).await;
        assert_error(&a, 401, &["invalid_client"]);
        let fresh_assertion = tpp.assertion(&second.issuer);
        let a = post_form(&http, &url, &request(&fresh_assertion), Some(proof)).await;
        assert_error(&a, 400, &["invalid_dpop_proof"]);
        // A fresh pair is served.
        let a = post_form(
            &http,
            &url,
            &request(&tpp.assertion(&second.issuer)),
            Some(tpp.dpop_proof("POST", &url, None)),
        )
        .await;
        assert_eq!(a.status, 200, "{backend:?}: {}", a.json);
        second.stop().await;
    }
}

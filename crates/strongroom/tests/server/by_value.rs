//! FAPI 1.0 Advanced request objects by value at `/authorize` (RFC 9101
//! §5.1; FAPI 1.0 Advanced §5.2.2) under `profile = "uk-ob"`, the way UK
//! TPPs send them (Open Banking Connector: no PAR, no PKCE, `kid` only in
//! the header, `exp` = now + 300 s, `max_age` 86400, an essential intent id
//! and acr), signed and encrypted, through the running server; and what is
//! refused, on an error page or in the fragment.

use serde_json::{Value, json};

use crate::fapi::{PASSWORD, USER, demo_user, verify_with_jwks};
use crate::fapi_errors::encrypt_to_published;
use crate::harness::{BACKENDS, Backend, Setup, TestServer};
use crate::hybrid::{fragment, half_sha256};
use crate::tpp::*;
use crate::uk::{obc_auth_fields, uk_metadata, uk_tpp};

const INTENT: &str = "intent-by-value-1";
const SCA: &str = "urn:openbanking:psd2:sca";

async fn uk_world(backend: Backend) -> (TestServer, Tpp) {
    let mut setup = Setup::new(backend);
    let tpp = uk_tpp(&setup, "tpp-uk", "0015800001041REAAY");
    setup.clients = vec![uk_metadata(&tpp)];
    setup.users = vec![demo_user()];
    setup.tweak = Some(|c| {
        c.profile = strongroom::config::Profile::UkOpenBanking;
        c.login.acr = SCA.into();
    });
    (setup.start().await, tpp)
}

/// A FAPI 2.0 deployment with a UK client (`fapi_profile = "uk-ob"`) and
/// a FAPI 2.0 one.
async fn mixed_world(backend: Backend) -> (TestServer, Tpp, Tpp) {
    let mut setup = Setup::new(backend);
    let (uk, fapi2) = (
        uk_tpp(&setup, "tpp-uk", "0015800001041REAAY"),
        Tpp::new("tpp-fapi2"),
    );
    let mut m = uk_metadata(&uk);
    m["fapi_profile"] = json!("uk-ob");
    setup.clients = vec![m, fapi2.pkjwt_metadata()];
    setup.users = vec![demo_user()];
    setup.tweak = Some(|c| c.login.acr = SCA.into());
    (setup.start().await, uk, fapi2)
}

/// The request object's claims, as a UK TPP builds them.
fn uk_claims(srv: &TestServer, tpp: &Tpp) -> Value {
    let t = now();
    json!({
        "iss": tpp.client_id, "aud": srv.issuer, "client_id": tpp.client_id,
        "iat": t, "nbf": t, "exp": t + 300, "jti": random(16),
        "response_type": "code id_token", "redirect_uri": tpp.redirect_uri,
        "scope": "openid accounts", "state": random(12), "nonce": random(12),
        "max_age": 86400,
        "claims": {
            "id_token": {
                "openbanking_intent_id": {"value": INTENT, "essential": true},
                "acr": {"essential": true, "values": [SCA, "urn:openbanking:psd2:ca"]}
            },
            "userinfo": {"openbanking_intent_id": {"value": INTENT, "essential": true}}
        }
    })
}

/// `/authorize` with the OIDC copies outside and the object in `request`.
fn by_value_url(srv: &TestServer, tpp: &Tpp, request: &str, extra: &[(&str, &str)]) -> String {
    let mut q = vec![
        ("client_id", tpp.client_id.as_str()),
        ("response_type", "code id_token"),
        ("scope", "openid accounts"),
        ("request", request),
    ];
    q.extend_from_slice(extra);
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(q)
        .finish();
    format!("{}?{query}", srv.url("/authorize"))
}

/// Login and consent from a 303 to `/interaction/…/login`; the final
/// redirect to the client.
async fn sign_in(srv: &TestServer, browser: &reqwest::Client, res: reqwest::Response) -> String {
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let login = srv.url(&location(&res));
    assert!(login.ends_with("/login"), "{login}");
    let res = submit_login(browser, &login, USER, PASSWORD).await;
    let consent = srv.url(&location(&res));
    let res = browser
        .post(&consent)
        .form(&[("action", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}

/// Redeems without PKCE, as OBC does: over mTLS, the assertion's `aud`
/// the token endpoint URL.
async fn redeem(srv: &TestServer, tpp: &Tpp, code: &str) -> Answer {
    let url = srv.mtls_url("/token");
    let mut form = obc_auth_fields(tpp, &url);
    form.extend([
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".into(), code.into()),
        ("redirect_uri".into(), tpp.redirect_uri.clone()),
    ]);
    let (cert, key) = tpp.identity.as_ref().unwrap();
    post_form(&srv.client(Some((cert, key))), &url, &form, None).await
}

async fn uk_tpp_by_value(backend: Backend) {
    let (srv, tpp) = uk_world(backend).await;
    uk_flows(&srv, &tpp).await;
    srv.stop().await;
}

/// The UK TPP's flow, signed then encrypted, to the end.
async fn uk_flows(srv: &TestServer, tpp: &Tpp) {
    let jwks: Value = srv
        .client(None)
        .get(srv.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for encrypted in [false, true] {
        let claims = uk_claims(srv, tpp);
        let signed = tpp.key.sign(None, &claims);
        let request = if encrypted {
            encrypt_to_published(&jwks, "RSA-OAEP-256", "A256GCM", &signed)
        } else {
            signed
        };
        let browser = srv.browser();
        let res = browser
            .get(by_value_url(srv, tpp, &request, &[]))
            .send()
            .await
            .unwrap();
        let back = sign_in(srv, &browser, res).await;
        assert!(
            back.starts_with(&format!("{}#", tpp.redirect_uri)),
            "{back}"
        );
        let f = fragment(&back);
        assert_eq!(f["state"], claims["state"].as_str().unwrap());
        assert_eq!(f["iss"], srv.issuer);
        let front = verify_with_jwks(srv, &f["id_token"]).await;
        assert_eq!(front["c_hash"], half_sha256(&f["code"]));
        assert_eq!(front["s_hash"], half_sha256(&f["state"]));
        assert_eq!(front["nonce"], claims["nonce"]);
        assert_eq!(front["acr"], SCA);
        assert_eq!(front["openbanking_intent_id"], INTENT);
        assert_eq!(front["aud"], json!(tpp.client_id));

        let a = redeem(srv, tpp, &f["code"]).await;
        assert_eq!(a.status, 200, "encrypted {encrypted}: {}", a.json);
        let id_token = verify_with_jwks(srv, a.json["id_token"].as_str().unwrap()).await;
        assert_eq!(id_token["openbanking_intent_id"], INTENT);
        assert_eq!(id_token["nonce"], claims["nonce"]);
        assert_eq!(id_token["sub"], front["sub"]);
        assert_eq!(a.json["scope"], "openid accounts");
        assert_eq!(a.json["token_type"], "Bearer");

        // The request object is spent with its code: the same one again
        // is refused.
        let res = srv
            .browser()
            .get(by_value_url(srv, tpp, &request, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.text().await.unwrap().contains("invalid_request_object"));
    }
}

#[actix_web::test]
async fn a_uk_tpp_sends_its_request_object_by_value_signed_or_encrypted() {
    for backend in BACKENDS {
        uk_tpp_by_value(backend).await;
    }
}

#[actix_web::test]
async fn a_uk_client_of_a_fapi2_deployment_follows_its_own_profile() {
    for backend in BACKENDS {
        let (srv, uk, fapi2) = mixed_world(backend).await;
        uk_flows(&srv, &uk).await;
        // The FAPI 2.0 client of the same deployment: PAR only, code only.
        let request = fapi2.key.sign(None, &uk_claims(&srv, &fapi2));
        let res = srv
            .browser()
            .get(by_value_url(&srv, &fapi2, &request, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let html = res.text().await.unwrap();
        assert!(
            html.contains("pushed authorization requests are required"),
            "{html}"
        );
        assert_eq!(
            fapi2
                .par(&srv, fapi2.authz_params(&Pkce::new(), "openid accounts"))
                .await
                .status,
            201
        );
        let mut p = fapi2.authz_params(&Pkce::new(), "openid accounts");
        set_param(&mut p, "response_type", Some("code id_token"));
        assert_error(
            &fapi2.par(&srv, p).await,
            400,
            &["unsupported_response_type"],
        );
        // The deployment's discovery stays FAPI 2.0's.
        assert_eq!(
            srv.discovery().await["response_types_supported"],
            json!(["code"])
        );
        srv.stop().await;
    }
}

#[actix_web::test]
async fn bad_request_objects_by_value_are_refused() {
    let (srv, tpp) = uk_world(Backend::Sqlite).await;
    let get = |url: String| {
        let browser = srv.browser();
        async move { browser.get(url).send().await.unwrap() }
    };
    // Before the redirect URI is known to be the client's: an error page.
    let page = |res: reqwest::Response, code: &'static str| async move {
        assert_eq!(res.status(), 400);
        assert!(res.headers().get("location").is_none());
        let html = res.text().await.unwrap();
        assert!(html.contains(code), "{code}: {html}");
    };
    let plain = format!(
        "{}?client_id={}&response_type=code+id_token&scope=openid&redirect_uri={}&nonce=n",
        srv.url("/authorize"),
        tpp.client_id,
        urlenc(&tpp.redirect_uri)
    );
    page(get(plain).await, "invalid_request").await;
    let edit = |f: fn(&mut Value)| {
        let mut c = uk_claims(&srv, &tpp);
        f(&mut c);
        tpp.key.sign(None, &c)
    };
    for (what, request) in [
        ("expired", edit(|c| c["exp"] = json!(now() - 60))),
        (
            "another audience",
            edit(|c| c["aud"] = json!("https://other.example")),
        ),
        ("nbf too old", edit(|c| c["nbf"] = json!(now() - 3700))),
        (
            "lifetime over 60 minutes",
            edit(|c| c["exp"] = json!(now() + 3700)),
        ),
        (
            "no redirect_uri inside",
            edit(|c| {
                c.as_object_mut().unwrap().remove("redirect_uri");
            }),
        ),
        (
            "signed by another key",
            TppKey::es256(&tpp.key.kid).sign(None, &uk_claims(&srv, &tpp)),
        ),
        ("not a JWT", "not-a-jwt".into()),
    ] {
        let res = get(by_value_url(&srv, &tpp, &request, &[])).await;
        assert_eq!(res.status(), 400, "{what}");
        let html = res.text().await.unwrap();
        assert!(html.contains("invalid_request_object"), "{what}: {html}");
    }
    // Tampered JWE tag.
    let jwks: Value = srv
        .client(None)
        .get(srv.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwe = encrypt_to_published(&jwks, "RSA-OAEP", "A256GCM", &edit(|_| {}));
    let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
    parts[4] = b64(&[0u8; 16]);
    page(
        get(by_value_url(&srv, &tpp, &parts.join("."), &[])).await,
        "invalid_request_object",
    )
    .await;

    // After: to the client, in the fragment, with the inside state.
    let redirected = |res: reqwest::Response| {
        assert_eq!(res.status(), 303);
        let back = location(&res);
        assert!(
            back.starts_with(&format!("{}#", tpp.redirect_uri)),
            "{back}"
        );
        fragment(&back)
    };
    let claims = uk_claims(&srv, &tpp);
    let request = tpp.key.sign(None, &claims);
    let f = redirected(get(by_value_url(&srv, &tpp, &request, &[("nonce", "other")])).await);
    assert_eq!(f["error"], "invalid_request", "nonce differs outside");
    assert_eq!(f["state"], claims["state"].as_str().unwrap());
    assert_eq!(f["iss"], srv.issuer);
    let f = redirected(
        get(by_value_url(
            &srv,
            &tpp,
            &edit(|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            &[],
        ))
        .await,
    );
    assert_eq!(f["error"], "invalid_request", "no nonce");
    // The OIDC copy of response_type is required outside.
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", tpp.client_id.as_str()),
            ("scope", "openid accounts"),
            ("request", edit(|_| {}).as_str()),
        ])
        .finish();
    let f = redirected(get(format!("{}?{query}", srv.url("/authorize"))).await);
    assert_eq!(f["error"], "invalid_request", "no response_type outside");
    srv.stop().await;
}

#[actix_web::test]
async fn fapi2_keeps_par_required() {
    let mut setup = Setup::new(Backend::Sqlite);
    let tpp = Tpp::new("tpp-2");
    setup.clients = vec![tpp.pkjwt_metadata()];
    let srv = setup.start().await;
    let request = tpp.key.sign(None, &uk_claims(&srv, &tpp));
    let res = srv
        .browser()
        .get(by_value_url(&srv, &tpp, &request, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("pushed authorization requests are required")
    );
    let meta = srv.discovery().await;
    assert_eq!(meta["require_pushed_authorization_requests"], true);
    srv.stop().await;
}

//! The subject a client is shown (issue 25 item 6; OIDC Core §8), through
//! the running server beside the demo bank, on SQLite and PostgreSQL: a
//! client registered for the consent id as `sub` sees the intent id in its
//! id_tokens (code and refresh), at userinfo and in introspection, while
//! the bank's hooks and APIs still name the customer; a pairwise client
//! sees a stable identifier of its own, not the customer's id; and a
//! `sector_identifier_uri` that does not list a redirect URI is refused at
//! registration. (The UK example config's default, sub = intent id in the
//! front-channel and token id_tokens, is checked by the UK walkthrough in
//! `uk.rs`.)

use serde_json::{Value, json};

use crate::consent_bridge::{Demo, SCA, demo_with};
use crate::harness::{BACKENDS, Backend, Setup};
use crate::tpp::*;

/// Strongroom wired to the demo bank with its token-claims hook, which
/// answers only for a customer it knows (so its claims in the tokens show
/// that the bank was asked about the customer, not the client's `sub`).
async fn world(backend: Backend) -> Demo {
    demo_with(backend, None, |h, bank| {
        h.claims_url = format!("{bank}/internal/token-claims");
        h.claims_acr_values = vec![SCA.into()];
    })
    .await
}

/// A consent of `tpp` approved by the customer (mia, `cust-0001`) at the
/// bank's pages, and the code redeemed.
async fn approve(d: &Demo, tpp: &Tpp) -> (String, Answer) {
    let intent = d.create_consent(tpp).await;
    let pkce = Pkce::new();
    let ru = d.push(tpp, &pkce, &intent).await;
    let browser = d.srv.browser();
    let result = d.bank_login(&browser, tpp, &ru).await;
    let back = d.bank_consent(&browser, &result, true).await;
    let code = query(&back)
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {back}"));
    let a = d.redeem(tpp, &code, &pkce).await;
    assert_eq!(a.status, 200, "token: {}", a.json);
    (intent, a)
}

async fn userinfo(d: &Demo, tpp: &Tpp, access: &str) -> Value {
    let url = d.srv.url("/userinfo");
    let res = d
        .srv
        .client(None)
        .get(&url)
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", tpp.dpop_proof("GET", &url, Some(access)))
        .send()
        .await
        .unwrap();
    let a = answer(res).await;
    assert_eq!(a.status, 200, "userinfo: {}", a.json);
    a.json
}

/// The bank's own listing of a consent's grants (`/bank/grants`).
async fn bank_grants(d: &Demo, q: &str) -> Value {
    let res = d
        .srv
        .client(None)
        .get(d.srv.url(&format!("/bank/grants?{q}")))
        .bearer_auth(&d.bank_cfg.bank_api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn tokens(a: &Answer) -> (Value, String, String) {
    (
        jwt_claims(a.json["id_token"].as_str().unwrap()),
        a.json["access_token"].as_str().unwrap().to_owned(),
        a.json["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn consent_subject(backend: Backend) {
    let d = world(backend).await;
    let tpp = &d.consent_tpp;
    let (intent, a) = approve(&d, tpp).await;
    let (id_token, access, refresh) = tokens(&a);
    assert_eq!(id_token["sub"], intent.as_str(), "{id_token}");
    assert_eq!(id_token["openbanking_intent_id"], intent.as_str());
    // The token-claims hook was asked about the customer: it answers only
    // for one it knows.
    assert_eq!(id_token["customer_segment"], "retail", "{id_token}");

    let u = userinfo(&d, tpp, &access).await;
    assert_eq!(u["sub"], intent.as_str(), "{u}");
    assert_eq!(
        u["name"], "Mia Santos",
        "the bank's claims for its customer: {u}"
    );
    let i = d.introspect(&access).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(
        i["sub"],
        intent.as_str(),
        "RFC 7662 sub as the client sees it: {i}"
    );
    assert_eq!(i["consent_id"], intent.as_str());
    assert_eq!(i["consent_status"], "Authorised", "{i}");

    let r = d.refresh(tpp, &refresh).await;
    assert_eq!(r.status, 200, "refresh: {}", r.json);
    let refreshed = jwt_claims(r.json["id_token"].as_str().unwrap());
    assert_eq!(
        refreshed["sub"],
        intent.as_str(),
        "OIDC Core §12.2: the same sub"
    );
    let access2 = r.json["access_token"].as_str().unwrap();
    assert_eq!(d.introspect(access2).await["sub"], intent.as_str());

    // The bank's side keeps its customer.
    let g = bank_grants(&d, &format!("consent_id={}", urlenc(&intent))).await;
    assert_eq!(g["grants"].as_array().unwrap().len(), 1, "{g}");
    assert_eq!(g["grants"][0]["sub"], "cust-0001", "{g}");
    assert_eq!(g["grants"][0]["client_id"], tpp.client_id.as_str());
    let by_customer = bank_grants(&d, "sub=cust-0001").await;
    assert!(
        by_customer["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["consent_id"] == intent.as_str()),
        "{by_customer}"
    );
    let by_intent_as_sub = bank_grants(&d, &format!("sub={}", urlenc(&intent))).await;
    assert_eq!(by_intent_as_sub["grants"], json!([]), "{by_intent_as_sub}");

    // A client without a subject of its own still sees the customer.
    let (_, a) = approve(&d, &d.tpp).await;
    assert_eq!(tokens(&a).0["sub"], "cust-0001");
    d.srv.stop().await;
}

#[actix_web::test]
async fn a_consent_subject_client_sees_the_intent_id_and_the_bank_its_customer() {
    for backend in BACKENDS {
        consent_subject(backend).await;
    }
}

async fn pairwise(backend: Backend) {
    let d = world(backend).await;
    let tpp = &d.pairwise_tpp;
    let (_, a) = approve(&d, tpp).await;
    let (first, access, _) = tokens(&a);
    let sub = first["sub"].as_str().unwrap().to_owned();
    assert_ne!(sub, "cust-0001");
    assert_eq!(sub.len(), 43, "base64url SHA-256: {sub}");
    assert_eq!(
        first["customer_segment"], "retail",
        "the bank asked about its customer"
    );
    // OIDC Core §8.1: over the sector (the redirect URI's host), the
    // customer's id and the deployment's salt, derived from the
    // key-encryption key in the data dir (dev mode).
    let kek = oauth_core::keys::KeyEncryptionKey::from_base64url(
        std::fs::read_to_string(d.srv.data_dir.join("key-encryption-key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(
        sub,
        oauth_core::subject::pairwise_subject(
            "tpp-pairwise.example",
            "cust-0001",
            &strongroom::startup::pairwise_salt(&kek)
        )
    );
    assert_eq!(userinfo(&d, tpp, &access).await["sub"], sub.as_str());
    assert_eq!(d.introspect(&access).await["sub"], sub.as_str());

    // Stable: another consent, another login, the same pairwise sub.
    let (_, a) = approve(&d, tpp).await;
    assert_eq!(tokens(&a).0["sub"], sub.as_str());
    // A public client sees the customer's id for the same customer.
    let (_, a) = approve(&d, &d.tpp).await;
    let (public, access, _) = tokens(&a);
    assert_eq!(public["sub"], "cust-0001");
    assert_eq!(d.introspect(&access).await["sub"], "cust-0001");

    let discovery = d.srv.discovery().await;
    assert_eq!(
        discovery["subject_types_supported"],
        json!(["public", "pairwise"])
    );
    d.srv.stop().await;
}

#[actix_web::test]
async fn a_pairwise_client_sees_its_own_stable_sub() {
    for backend in BACKENDS {
        pairwise(backend).await;
    }
}

async fn sector_identifier(backend: Backend) {
    const TOKEN: &str = "initial-access-token-for-subject-tests-0123";
    let mut setup = Setup::new(backend);
    let _ = setup.dev_ca();
    let listed_one =
        crate::admin::serve_https_json(&setup, "/sector.json", json!(["https://a.rp.example/cb"]));
    let listed_both = crate::admin::serve_https_json(
        &setup,
        "/sector.json",
        json!(["https://a.rp.example/cb", "https://b.rp.example/cb"]),
    );
    let not_an_array =
        crate::admin::serve_https_json(&setup, "/sector.json", json!({"redirect_uris": []}));
    let srv = crate::dcr::start_with(
        &mut setup,
        Vec::new(),
        Some(json!({"initial_access_tokens_sha256": [sha256_b64(TOKEN.as_bytes())], "initial_access_scopes": ["openid"]})),
    )
    .await;
    let tpp = Tpp::new("unused");
    let body = |extra: Value| {
        let mut b = json!({
            "redirect_uris": ["https://a.rp.example/cb", "https://b.rp.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["authorization_code"],
            "jwks": {"keys": [tpp.key.jwk]},
            "dpop_bound_access_tokens": true,
            "scope": "openid",
            "subject_type": "pairwise",
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let http = srv.client(None);
    let url = srv.url("/register");
    for (extra, says) in [
        (
            json!({"sector_identifier_uri": listed_one}),
            "https://b.rp.example/cb is not listed",
        ),
        (
            json!({"sector_identifier_uri": not_an_array}),
            "not a JSON array",
        ),
        (
            json!({"sector_identifier_uri": "https://127.0.0.1:1/sector.json"}),
            "could not be read",
        ),
        (json!({}), "several hosts needs a sector_identifier_uri"),
        (json!({"subject_type": "consent"}), "public or pairwise"),
        (json!({"subject": "nobody"}), "subject nobody is not known"),
    ] {
        let a = crate::dcr::post_json(&http, &url, &body(extra.clone()), Some(TOKEN)).await;
        assert_eq!(
            (a.status, a.json["error"].as_str()),
            (400, Some("invalid_client_metadata")),
            "{extra}: {}",
            a.json
        );
        let d = a.json["error_description"].as_str().unwrap();
        assert!(d.contains(says), "{extra}: {d}");
    }
    assert_eq!(crate::dcr::dynamic_clients(&srv).await, 0);

    let a = crate::dcr::post_json(
        &http,
        &url,
        &body(json!({"sector_identifier_uri": listed_both})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(a.json["subject_type"], "pairwise");
    assert_eq!(a.json["sector_identifier_uri"], listed_both.as_str());
    srv.stop().await;
}

#[actix_web::test]
async fn a_sector_identifier_uri_must_list_every_redirect_uri() {
    for backend in BACKENDS {
        sector_identifier(backend).await;
    }
}

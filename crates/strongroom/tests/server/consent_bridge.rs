//! The consent bridge end to end (issue 4), on SQLite and PostgreSQL: a TPP
//! creates a consent at the demo bank (running in-process on an ephemeral
//! port), pushes a request naming it, the customer logs in and approves at
//! the bank's own pages, the id_token and introspection carry the consent id,
//! and revoking the consent at the bank kills the access and refresh token.
//! Then every failure: bad intents, tampered / expired / replayed /
//! other-session results, the consent service down or slow.

use std::cell::RefCell;
use std::net::TcpListener;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consent_bridge::HooksConfig;
use serde_json::{Value, json};

use crate::harness::{BACKENDS, Backend, Setup, TestServer};
use crate::tpp::*;

const SECRET: [u8; 32] = [0x42; 32];
pub(crate) const SCA: &str = "urn:openbanking:psd2:sca";

thread_local! {
    static HOOKS: RefCell<Option<HooksConfig>> = const { RefCell::new(None) };
}

fn apply_hooks(cfg: &mut strongroom::config::Config) {
    cfg.hooks = HOOKS.with(|h| h.borrow().clone());
}

fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) struct Demo {
    pub(crate) srv: TestServer,
    pub(crate) bank: String,
    pub(crate) tpp: Tpp,
    pub(crate) other: Tpp,
    /// Shown the consent id as `sub` (client metadata `subject`).
    pub(crate) consent_tpp: Tpp,
    /// Registered `subject_type` pairwise.
    pub(crate) pairwise_tpp: Tpp,
    pub(crate) bank_cfg: demo_bank::BankConfig,
}

/// Strongroom wired to the demo bank; `service` overrides the consent
/// service URL (to simulate it down or slow).
async fn demo(backend: Backend, service: Option<String>) -> Demo {
    demo_with(backend, service, |_, _| {}).await
}

/// [`demo`], with `tweak(hooks, bank_url)` applied to the hooks section.
pub(crate) async fn demo_with(
    backend: Backend,
    service: Option<String>,
    tweak: impl FnOnce(&mut HooksConfig, &str),
) -> Demo {
    let mut setup = Setup::new(backend);
    let _ = setup.dev_ca();
    let bank_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let bank = format!(
        "http://127.0.0.1:{}",
        bank_listener.local_addr().unwrap().port()
    );
    let tpp = Tpp::new("tpp-hook");
    let other = Tpp::new("tpp-other");
    let consent_tpp = Tpp::new("tpp-consent");
    let pairwise_tpp = Tpp::new("tpp-pairwise");
    let placeholder = demo_bank::BankConfig::demo("https://unused");
    let mut consent_metadata = consent_tpp.pkjwt_metadata();
    consent_metadata["subject"] = json!("consent");
    let mut pairwise_metadata = pairwise_tpp.pkjwt_metadata();
    pairwise_metadata["subject_type"] = json!("pairwise");
    setup.clients = vec![
        tpp.pkjwt_metadata(),
        other.pkjwt_metadata(),
        consent_metadata,
        pairwise_metadata,
        json!({
            "client_id": placeholder.introspection_client_id,
            "client_name": "Demo Bank gateway",
            "token_endpoint_auth_method": "client_secret_basic",
            "fapi": false,
            "grant_types": ["client_credentials"],
            "scope": "accounts",
            "client_secret_sha256": oauth_core::secret::hash_secret(&placeholder.introspection_client_secret),
        }),
        // The demo TPP of config/demo.toml (tls_client_auth).
        json!({
            "client_id": demo_bank::walkthrough::CLIENT_ID,
            "client_name": "Demo TPP",
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=demo-tpp,O=Demo TPP",
            "tls_client_certificate_bound_access_tokens": true,
            "redirect_uris": [demo_bank::walkthrough::REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scope": "openid accounts",
        }),
    ];
    let mut hooks = HooksConfig {
        login_url: format!("{bank}/hooks/login"),
        consent_url: format!("{bank}/hooks/consent"),
        consent_service_url: service.unwrap_or_else(|| format!("{bank}/internal/intents")),
        consent_service_token: placeholder.service_token.clone(),
        shared_secret: URL_SAFE_NO_PAD.encode(SECRET),
        bank_issuer: placeholder.issuer.clone(),
        timeout_ms: 500,
        clients: vec![
            tpp.client_id.clone(),
            other.client_id.clone(),
            consent_tpp.client_id.clone(),
            pairwise_tpp.client_id.clone(),
            demo_bank::walkthrough::CLIENT_ID.into(),
        ],
        bank_api_token_sha256: sha256_hex(&placeholder.bank_api_token),
        ..HooksConfig::default()
    };
    tweak(&mut hooks, &bank);
    HOOKS.with(|h| *h.borrow_mut() = Some(hooks));
    setup.tweak = Some(apply_hooks);
    let srv = setup.start().await;
    let mut bank_cfg = demo_bank::BankConfig::demo(&srv.issuer);
    bank_cfg.strongroom_ca = Some(srv.dev_ca());
    bank_cfg.shared_secret = SECRET;
    let server = demo_bank::serve(
        demo_bank::Bank::new(bank_cfg.clone()).unwrap(),
        bank_listener,
    )
    .unwrap();
    actix_web::rt::spawn(server);
    Demo {
        srv,
        bank,
        tpp,
        other,
        consent_tpp,
        pairwise_tpp,
        bank_cfg,
    }
}

impl Demo {
    /// client_credentials token, then POST account-access-consents.
    pub(crate) async fn create_consent(&self, tpp: &Tpp) -> String {
        let http = self.srv.client(None);
        let url = self.srv.url("/token");
        let mut form = tpp.auth_fields(&self.srv);
        form.push(("grant_type".into(), "client_credentials".into()));
        form.push(("scope".into(), "accounts".into()));
        let a = post_form(&http, &url, &form, Some(tpp.dpop_proof("POST", &url, None))).await;
        assert_eq!(a.status, 200, "client_credentials: {}", a.json);
        let at = a.json["access_token"].as_str().unwrap().to_string();
        let res = http
            .post(format!("{}{}", self.bank, demo_bank::CONSENTS_PATH))
            .header("Authorization", format!("DPoP {at}"))
            .json(&json!({"Data": {"Permissions": ["ReadAccountsBasic", "ReadBalances"]}, "Risk": {}}))
            .send()
            .await
            .unwrap();
        let a = answer(res).await;
        assert_eq!(a.status, 201, "create consent: {}", a.json);
        assert_eq!(a.json["Data"]["Status"], "AwaitingAuthorisation");
        a.json["Data"]["ConsentId"].as_str().unwrap().to_string()
    }

    /// PAR naming `intent` (claims.id_token.openbanking_intent_id).
    pub(crate) async fn push(&self, tpp: &Tpp, pkce: &Pkce, intent: &str) -> String {
        let mut form = tpp.authz_params(pkce, "openid accounts offline_access");
        let claims = json!({"id_token": {
            "openbanking_intent_id": {"value": intent, "essential": true},
            "acr": {"essential": true, "values": [SCA]},
        }});
        form.push(("claims".into(), claims.to_string()));
        tpp.push(&self.srv, form).await
    }

    pub(crate) fn abs(&self, loc: &str) -> String {
        if loc.starts_with('/') {
            self.srv.url(loc)
        } else {
            loc.to_string()
        }
    }

    /// `/authorize` up to the bank's login page; returns the Location.
    pub(crate) async fn authorize(
        &self,
        browser: &reqwest::Client,
        tpp: &Tpp,
        request_uri: &str,
    ) -> reqwest::Response {
        let url = authorize_url(&self.srv, &tpp.client_id, request_uri);
        browser.get(&url).send().await.unwrap()
    }

    /// Through the bank's login page; returns the result URL back to Strongroom.
    pub(crate) async fn bank_login(
        &self,
        browser: &reqwest::Client,
        tpp: &Tpp,
        request_uri: &str,
    ) -> String {
        let res = self.authorize(browser, tpp, request_uri).await;
        assert_eq!(
            res.status(),
            303,
            "authorize: {}",
            res.text().await.unwrap_or_default()
        );
        let res = browser.get(self.abs(&location(&res))).send().await.unwrap();
        assert_eq!(res.status(), 303);
        let bank_login = location(&res);
        assert!(
            bank_login.starts_with(&format!("{}/hooks/login?handoff=", self.bank)),
            "{bank_login}"
        );
        let html = browser
            .get(&bank_login)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("name=\"password\"") && html.contains(&format!("TPP {}", tpp.client_id)),
            "{html}"
        );
        let handoff = query(&bank_login)["handoff"].clone();
        let res = browser
            .post(format!("{}/hooks/login", self.bank))
            .form(&[
                ("handoff", handoff.as_str()),
                ("username", "mia"),
                ("password", "correct horse"),
                ("action", "login"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        let back = location(&res);
        assert!(
            back.starts_with(&self.srv.url("/interaction/"))
                && back.contains("/hook/login?result="),
            "{back}"
        );
        back
    }

    /// From the login result through the bank's consent page (approve or
    /// deny); returns the redirect to the client.
    pub(crate) async fn bank_consent(
        &self,
        browser: &reqwest::Client,
        login_result: &str,
        approve: bool,
    ) -> String {
        let res = browser.get(login_result).send().await.unwrap();
        assert_eq!(res.status(), 303);
        let consent = self.abs(&location(&res));
        assert!(consent.ends_with("/consent"), "{consent}");
        let res = browser.get(&consent).send().await.unwrap();
        assert_eq!(res.status(), 303);
        let bank_consent = location(&res);
        assert!(bank_consent.starts_with(&format!("{}/hooks/consent?handoff=", self.bank)));
        let html = browser
            .get(&bank_consent)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("ReadBalances") && html.contains("acc-1001") && html.contains("acc-1002"),
            "{html}"
        );
        let handoff = query(&bank_consent)["handoff"].clone();
        let res = browser
            .post(format!("{}/hooks/consent", self.bank))
            .form(&[
                ("handoff", handoff.as_str()),
                ("accounts", "acc-1001"),
                ("action", if approve { "approve" } else { "deny" }),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        let back = location(&res);
        let res = browser.get(&back).send().await.unwrap();
        assert_eq!(
            res.status(),
            303,
            "{}",
            res.text().await.unwrap_or_default()
        );
        location(&res)
    }

    pub(crate) async fn redeem(&self, tpp: &Tpp, code: &str, pkce: &Pkce) -> Answer {
        let url = self.srv.url("/token");
        let mut form = tpp.auth_fields(&self.srv);
        form.extend([
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".into(), code.into()),
            ("redirect_uri".into(), tpp.redirect_uri.clone()),
            ("code_verifier".into(), pkce.verifier.clone()),
        ]);
        post_form(
            &self.srv.client(None),
            &url,
            &form,
            Some(tpp.dpop_proof("POST", &url, None)),
        )
        .await
    }

    /// Introspection as the bank's gateway (client_secret_basic).
    pub(crate) async fn introspect(&self, token: &str) -> Value {
        let res = self
            .srv
            .client(None)
            .post(self.srv.url("/introspect"))
            .basic_auth(
                &self.bank_cfg.introspection_client_id,
                Some(&self.bank_cfg.introspection_client_secret),
            )
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub(crate) async fn refresh(&self, tpp: &Tpp, refresh_token: &str) -> Answer {
        let proof = tpp.dpop_proof("POST", &self.srv.url("/token"), None);
        self.refresh_with(tpp, refresh_token, proof).await
    }

    pub(crate) async fn refresh_with(
        &self,
        tpp: &Tpp,
        refresh_token: &str,
        proof: String,
    ) -> Answer {
        let mut form = tpp.auth_fields(&self.srv);
        form.push(("grant_type".into(), "refresh_token".into()));
        form.push(("refresh_token".into(), refresh_token.into()));
        post_form(
            &self.srv.client(None),
            &self.srv.url("/token"),
            &form,
            Some(proof),
        )
        .await
    }

    /// Nothing issued: the pushed request is spent and no grant exists.
    pub(crate) async fn assert_no_grant(&self, intent: &str) {
        let res = self
            .srv
            .client(None)
            .get(
                self.srv
                    .url(&format!("/bank/grants?consent_id={}", urlenc(intent))),
            )
            .bearer_auth(&self.bank_cfg.bank_api_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["grants"], json!([]), "no grant may exist: {v}");
    }
}

/// A base URL on which nothing listens: port 1 on loopback. (A port that
/// was free a moment ago could meanwhile be taken by another test's server.)
fn nobody_listening() -> String {
    "http://127.0.0.1:1".to_owned()
}

fn error_of(url: &str) -> String {
    query(url).get("error").cloned().unwrap_or_default()
}

async fn happy_path(backend: Backend) {
    let d = demo(backend, None).await;
    let tpp = &d.tpp;
    let discovery: Value = d
        .srv
        .client(None)
        .get(d.srv.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        discovery["acr_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(SCA)),
        "{discovery}"
    );

    let intent = d.create_consent(tpp).await;
    let pkce = Pkce::new();
    let request_uri = d.push(tpp, &pkce, &intent).await;
    let browser = d.srv.browser();
    let login_result = d.bank_login(&browser, tpp, &request_uri).await;
    let back = d.bank_consent(&browser, &login_result, true).await;
    assert!(back.starts_with(&tpp.redirect_uri), "{back}");
    let code = query(&back)
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {back}"));

    let a = d.redeem(tpp, &code, &pkce).await;
    assert_eq!(a.status, 200, "token: {}", a.json);
    let id_token = jwt_claims(a.json["id_token"].as_str().unwrap());
    assert_eq!(id_token["openbanking_intent_id"], intent.as_str());
    assert_eq!(id_token["acr"], SCA);
    assert_eq!(id_token["sub"], "cust-0001");
    assert_eq!(id_token["amr"], json!(["pwd", "otp"]));
    let access = a.json["access_token"].as_str().unwrap().to_string();
    let refresh = a.json["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();

    let i = d.introspect(&access).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["consent_id"], intent.as_str());
    assert_eq!(i["accounts"], json!(["acc-1001"]));
    assert_eq!(i["acr"], SCA);
    // The bank's consent is now Authorised: a second authorisation is refused.
    let pkce2 = Pkce::new();
    let ru = d.push(tpp, &pkce2, &intent).await;
    let res = d.authorize(&d.srv.browser(), tpp, &ru).await;
    assert_eq!(res.status(), 303);
    let loc = location(&res);
    assert!(loc.starts_with(&tpp.redirect_uri), "{loc}");
    assert_eq!(error_of(&loc), "invalid_request");

    // The bank lists the grant, then the customer revokes at the bank.
    let res = d
        .srv
        .client(None)
        .get(
            d.srv
                .url(&format!("/bank/grants?consent_id={}", urlenc(&intent))),
        )
        .bearer_auth(&d.bank_cfg.bank_api_token)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["grants"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["grants"][0]["sub"], "cust-0001");
    let res = d
        .srv
        .client(None)
        .get(d.srv.url("/bank/grants?sub=cust-0001"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let customer = d.srv.browser();
    let res = customer
        .post(format!("{}/my/login", d.bank))
        .form(&[("username", "mia"), ("password", "correct horse")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let html = customer
        .get(format!("{}/my/consents", d.bank))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&intent) && html.contains("Authorised"),
        "{html}"
    );
    let res = customer
        .post(format!("{}/my/consents/{intent}/revoke", d.bank))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let html = customer
        .get(format!("{}/my/consents", d.bank))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Revoked"), "{html}");

    assert_eq!(d.introspect(&access).await, json!({"active": false}));
    let a = d.refresh(tpp, &refresh).await;
    assert_eq!(a.status, 400, "{}", a.json);
    assert_eq!(a.json["error"], "invalid_grant");
    d.srv.stop().await;
}

#[actix_web::test]
async fn consent_bridge_end_to_end() {
    for backend in BACKENDS {
        happy_path(backend).await;
    }
}

async fn bad_intents(backend: Backend) {
    let d = demo(backend, None).await;
    let tpp = &d.tpp;
    // Unknown intent, and another client's intent: refused before any page.
    let others = d.create_consent(&d.other).await;
    for intent in ["urn-demobank-intent-doesnotexist", others.as_str()] {
        let pkce = Pkce::new();
        let ru = d.push(tpp, &pkce, intent).await;
        let res = d.authorize(&d.srv.browser(), tpp, &ru).await;
        assert_eq!(res.status(), 303);
        let loc = location(&res);
        assert!(loc.starts_with(&tpp.redirect_uri), "{loc}");
        assert_eq!(error_of(&loc), "invalid_request", "{loc}");
        // The pushed request is spent.
        let res = d.authorize(&d.srv.browser(), tpp, &ru).await;
        assert_eq!(res.status(), 400);
    }
    // No intent at all.
    let pkce = Pkce::new();
    let mut form = tpp.authz_params(&pkce, "openid accounts");
    form.extend(tpp.auth_fields(&d.srv));
    let url = d.srv.url("/par");
    let a = post_form(
        &d.srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await;
    let ru = a.json["request_uri"].as_str().unwrap();
    let loc = location(&d.authorize(&d.srv.browser(), tpp, ru).await);
    assert_eq!(error_of(&loc), "invalid_request", "{loc}");
    d.srv.stop().await;
}

#[actix_web::test]
async fn bad_intents_are_refused_before_the_customer_sees_anything() {
    for backend in BACKENDS {
        bad_intents(backend).await;
    }
}

/// Re-encrypts a result token after `edit` (the test knows the secret).
fn reseal(result_url: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut u = url::Url::parse(result_url).unwrap();
    let token = query(result_url)["result"].clone();
    let mut v = consent_bridge::token::decrypt(&SECRET, &token).unwrap();
    edit(&mut v);
    let t = consent_bridge::token::encrypt(&SECRET, &v).unwrap();
    u.query_pairs_mut().clear().append_pair("result", &t);
    u.to_string()
}

async fn bad_results(backend: Backend) {
    let d = demo(backend, None).await;
    let tpp = &d.tpp;
    type Spoil = fn(&str) -> String;
    let cases: [(&str, Spoil); 4] = [
        ("tampered", |u| {
            // Flip the first character of the JWE ciphertext.
            let token = query(u)["result"].clone();
            let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
            let first = parts[3].remove(0);
            parts[3].insert(0, if first == 'A' { 'B' } else { 'A' });
            let mut url = url::Url::parse(u).unwrap();
            url.query_pairs_mut()
                .clear()
                .append_pair("result", &parts.join("."));
            url.to_string()
        }),
        ("expired", |u| {
            reseal(u, |v| {
                let t = now();
                v["iat"] = json!(t - 400);
                v["exp"] = json!(t - 100);
            })
        }),
        ("wrong audience", |u| {
            reseal(u, |v| v["aud"] = json!("https://evil.example"))
        }),
        ("other purpose", |u| {
            reseal(u, |v| v["purpose"] = json!("consent"))
        }),
    ];
    for (what, spoil) in cases {
        let intent = d.create_consent(tpp).await;
        let pkce = Pkce::new();
        let ru = d.push(tpp, &pkce, &intent).await;
        let browser = d.srv.browser();
        let result = d.bank_login(&browser, tpp, &ru).await;
        let res = browser.get(spoil(&result)).send().await.unwrap();
        assert_eq!(res.status(), 303, "{what}");
        let loc = location(&res);
        assert!(loc.starts_with(&tpp.redirect_uri), "{what}: {loc}");
        assert_eq!(error_of(&loc), "access_denied", "{what}");
        d.assert_no_grant(&intent).await;
    }

    // Replayed: a good result used twice (the second time in a fresh
    // interaction of the same browser would also fail: it is bound).
    let intent = d.create_consent(tpp).await;
    let pkce = Pkce::new();
    let ru = d.push(tpp, &pkce, &intent).await;
    let browser = d.srv.browser();
    let result = d.bank_login(&browser, tpp, &ru).await;
    let res = browser.get(&result).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).ends_with("/consent"));
    let res = browser.get(&result).send().await.unwrap();
    assert_eq!(error_of(&location(&res)), "access_denied", "replay");
    d.assert_no_grant(&intent).await;

    // Other session: customer A's result delivered into customer B's interaction.
    let intent_a = d.create_consent(tpp).await;
    let intent_b = d.create_consent(tpp).await;
    let (pa, pb) = (Pkce::new(), Pkce::new());
    let (ra, rb) = (
        d.push(tpp, &pa, &intent_a).await,
        d.push(tpp, &pb, &intent_b).await,
    );
    let (ba, bb) = (d.srv.browser(), d.srv.browser());
    let result_a = d.bank_login(&ba, tpp, &ra).await;
    let result_b = d.bank_login(&bb, tpp, &rb).await;
    let id_b = result_b
        .split("/interaction/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let id_a = result_a
        .split("/interaction/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let stolen = result_a.replace(id_a, id_b);
    let res = bb.get(&stolen).send().await.unwrap();
    assert_eq!(error_of(&location(&res)), "access_denied", "other session");
    d.assert_no_grant(&intent_b).await;
    d.srv.stop().await;
}

#[actix_web::test]
async fn tampered_expired_replayed_and_other_session_results_are_denied() {
    for backend in BACKENDS {
        bad_results(backend).await;
    }
}

async fn denied_by_customer(backend: Backend) {
    let d = demo(backend, None).await;
    let intent = d.create_consent(&d.tpp).await;
    let pkce = Pkce::new();
    let ru = d.push(&d.tpp, &pkce, &intent).await;
    let browser = d.srv.browser();
    let result = d.bank_login(&browser, &d.tpp, &ru).await;
    let back = d.bank_consent(&browser, &result, false).await;
    assert_eq!(error_of(&back), "access_denied");
    d.assert_no_grant(&intent).await;
    d.srv.stop().await;
}

#[actix_web::test]
async fn a_denied_consent_issues_nothing() {
    for backend in BACKENDS {
        denied_by_customer(backend).await;
    }
}

async fn service_unavailable(backend: Backend) {
    // Down: nothing listens. Slow: a socket that accepts and never answers.
    let down = format!("{}/intents", nobody_listening());
    let slow_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = format!(
        "http://127.0.0.1:{}/intents",
        slow_listener.local_addr().unwrap().port()
    );
    for service in [down, slow] {
        let d = demo(backend, Some(service.clone())).await;
        let pkce = Pkce::new();
        let ru = d.push(&d.tpp, &pkce, "urn-demobank-intent-any").await;
        let started = std::time::Instant::now();
        let res = d.authorize(&d.srv.browser(), &d.tpp, &ru).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the timeout applies"
        );
        assert_eq!(res.status(), 503, "{service}");
        let html = res.text().await.unwrap();
        assert!(html.contains("unavailable"), "{html}");
        assert!(
            html.contains("error=temporarily_unavailable") && html.contains(&d.tpp.redirect_uri),
            "{html}"
        );
        // Nothing half-written: the pushed request is spent.
        let res = d.authorize(&d.srv.browser(), &d.tpp, &ru).await;
        assert_eq!(res.status(), 400);
        d.srv.stop().await;
    }
    drop(slow_listener);
}

#[actix_web::test]
async fn consent_service_down_or_slow_is_temporarily_unavailable() {
    for backend in BACKENDS {
        service_unavailable(backend).await;
    }
}

/// Through the bank's pages to an approved code; returns the intent and the
/// token response.
async fn approved_tokens(d: &Demo) -> (String, Answer, Pkce, String) {
    let intent = d.create_consent(&d.tpp).await;
    let pkce = Pkce::new();
    let ru = d.push(&d.tpp, &pkce, &intent).await;
    let browser = d.srv.browser();
    let result = d.bank_login(&browser, &d.tpp, &ru).await;
    let back = d.bank_consent(&browser, &result, true).await;
    let code = query(&back)
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {back}"));
    let a = d.redeem(&d.tpp, &code, &pkce).await;
    (intent, a, pkce, code)
}

async fn userinfo(d: &Demo, access: &str) -> Answer {
    let url = d.srv.url("/userinfo");
    let res = d
        .srv
        .client(None)
        .get(&url)
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", d.tpp.dpop_proof("GET", &url, Some(access)))
        .send()
        .await
        .unwrap();
    answer(res).await
}

async fn revoke(d: &Demo, token: &str) {
    let url = d.srv.url("/revoke");
    let mut form = d.tpp.auth_fields(&d.srv);
    form.push(("token".into(), token.into()));
    let a = post_form(&d.srv.client(None), &url, &form, None).await;
    assert_eq!(a.status, 200, "revoke: {}", a.json);
}

/// The notices the demo bank received from the revocation webhook.
async fn notices(d: &Demo) -> Vec<Value> {
    let res = d
        .srv
        .client(None)
        .get(format!("{}/internal/revocations", d.bank))
        .bearer_auth(&d.bank_cfg.webhook_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["notices"].as_array().cloned().unwrap_or_default()
}

async fn claims_and_webhook(backend: Backend) {
    let webhook_token = demo_bank::BankConfig::demo("https://unused").webhook_token;
    let d = demo_with(backend, None, |h, bank| {
        h.claims_url = format!("{bank}/internal/token-claims");
        h.claims_acr_values = vec![SCA.into()];
        h.revocation_webhook_url = format!("{bank}/internal/revocations");
        h.revocation_webhook_token = webhook_token;
    })
    .await;
    let (intent, a, _, _) = approved_tokens(&d).await;
    assert_eq!(a.status, 200, "token: {}", a.json);
    let id_token = jwt_claims(a.json["id_token"].as_str().unwrap());
    assert_eq!(id_token["customer_segment"], "retail", "{id_token}");
    assert_eq!(id_token["openbanking_intent_id"], intent.as_str());
    assert_eq!(id_token["sub"], "cust-0001");
    let access = a.json["access_token"].as_str().unwrap().to_string();
    let refresh = a.json["refresh_token"].as_str().unwrap().to_string();

    let i = d.introspect(&access).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["consent_status"], "Authorised", "{i}");
    assert_eq!(
        i["permissions"],
        json!(["ReadAccountsBasic", "ReadBalances"])
    );
    assert_eq!(
        i["consent_id"],
        intent.as_str(),
        "ours are never overridden"
    );

    let u = userinfo(&d, &access).await;
    assert_eq!(u.status, 200, "{}", u.json);
    assert_eq!(u.json["name"], "Mia Santos", "{}", u.json);
    assert_eq!(u.json["sub"], "cust-0001");

    // Refresh asks again: the new tokens are enriched too.
    let proof = d.tpp.dpop_proof("POST", &d.srv.url("/token"), None);
    let r = d.refresh_with(&d.tpp, &refresh, proof.clone()).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        jwt_claims(r.json["id_token"].as_str().unwrap())["customer_segment"],
        "retail"
    );
    let access2 = r.json["access_token"].as_str().unwrap().to_string();
    // The same DPoP proof again: a replay, refused (its jti is settled
    // before the bank is asked for claims).
    let again = d.refresh_with(&d.tpp, &refresh, proof).await;
    assert_eq!(again.status, 400, "{}", again.json);
    assert_eq!(again.json["error"], "invalid_dpop_proof");
    assert!(again.json.get("access_token").is_none());
    assert_eq!(d.introspect(&access2).await["consent_status"], "Authorised");

    // The TPP revokes its access token: the bank hears of it, by consent id.
    assert!(notices(&d).await.is_empty());
    revoke(&d, &access2).await;
    assert_eq!(d.introspect(&access2).await, json!({"active": false}));
    let mut got = Vec::new();
    for _ in 0..50 {
        got = notices(&d).await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "token_revoked");
    assert_eq!(got[0]["consent_id"], intent.as_str());
    assert_eq!(got[0]["client_id"], d.tpp.client_id.as_str());
    assert_eq!(got[0]["token_type"], "access_token");
    // An unknown token: RFC 7009 success, and no notice.
    revoke(&d, "no-such-token").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(notices(&d).await.len(), 1);
    d.srv.stop().await;
}

#[actix_web::test]
async fn claims_hook_enriches_tokens_and_tpp_revocation_notifies_the_bank() {
    for backend in BACKENDS {
        claims_and_webhook(backend).await;
    }
}

async fn claims_hook_down(backend: Backend) {
    let dead = nobody_listening();
    let d = demo_with(backend, None, |h, _| {
        h.claims_url = format!("{dead}/claims");
        h.claims_clients = vec!["tpp-hook".into()];
    })
    .await;
    let (intent, a, pkce, code) = approved_tokens(&d).await;
    assert_eq!(a.status, 503, "{}", a.json);
    assert_eq!(a.json["error"], "temporarily_unavailable");
    assert!(a.json.get("access_token").is_none());
    // Nothing issued, and the code is not spent (the bank was asked
    // before the one write): a retry meets the same outage, not a replay.
    let again = d.redeem(&d.tpp, &code, &pkce).await;
    assert_eq!(again.status, 503, "{}", again.json);
    assert_eq!(again.json["error"], "temporarily_unavailable");
    let res = d
        .srv
        .client(None)
        .get(
            d.srv
                .url(&format!("/bank/grants?consent_id={}", urlenc(&intent))),
        )
        .bearer_auth(&d.bank_cfg.bank_api_token)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert!(
        v["grants"][0]["revoked_at"].is_null(),
        "no replay, the grant stands: {v}"
    );
    d.srv.stop().await;
}

#[actix_web::test]
async fn claims_hook_down_fails_the_token_request_and_issues_nothing() {
    for backend in BACKENDS {
        claims_hook_down(backend).await;
    }
}

/// Serves `{"keys": [jwk]}` on an ephemeral port: the bank's JWKS in signed
/// mode. Returns its URL.
fn serve_jwks(jwks: Value) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/jwks", l.local_addr().unwrap().port());
    let server = actix_web::HttpServer::new(move || {
        let body = jwks.clone();
        actix_web::App::new().route(
            "/jwks",
            actix_web::web::get().to(move || {
                let body = body.clone();
                async move { actix_web::HttpResponse::Ok().json(body) }
            }),
        )
    })
    .workers(1)
    .listen(l)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    url
}

/// Verifies a signed hand-off with Strongroom's `/jwks`, independently
/// (jsonwebtoken), as a bank would; returns its claims.
async fn verify_handoff(d: &Demo, handoff: &str, purpose: &str) -> Value {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let header = decode_header(handoff).unwrap();
    assert_eq!(header.typ.as_deref(), Some("hook+jwt"));
    let jwks: JwkSet = d
        .srv
        .client(None)
        .get(d.srv.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in /jwks");
    let mut v = Validation::new(header.alg);
    v.set_audience(&["demo-bank"]);
    v.set_issuer(&[d.srv.issuer.as_str()]);
    let claims = decode::<Value>(handoff, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("the hand-off verifies against Strongroom's JWKS")
        .claims;
    assert_eq!(claims["purpose"], purpose);
    assert!(
        claims["return_uri"]
            .as_str()
            .unwrap()
            .starts_with(&d.srv.url("/interaction/"))
    );
    claims
}

fn signed_result(key: &TppKey, handoff: &Value, issuer: &str, extra: Value) -> String {
    let t = now();
    let mut claims = json!({
        "iss": "demo-bank", "aud": issuer, "iat": t, "exp": t + 60, "jti": random(16),
        "sid": handoff["sid"], "purpose": handoff["purpose"],
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    key.sign(Some("hook+jwt"), &claims)
}

/// Follows Strongroom's redirect to the bank's app; returns the hand-off.
async fn handoff_at(d: &Demo, browser: &reqwest::Client, url: &str, app: &str) -> String {
    let res = browser.get(d.abs(url)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let loc = location(&res);
    assert!(
        loc.starts_with(&format!("{}/hooks/{app}?handoff=", d.bank)),
        "{loc}"
    );
    query(&loc)["handoff"].clone()
}

async fn signed_mode(backend: Backend) {
    let bank_key = TppKey::es256("bank-sig-1");
    let jwks_url = serve_jwks(json!({"keys": [bank_key.jwk.clone()]}));
    let d = demo_with(backend, None, move |h, _| {
        h.token_mode = consent_bridge::TokenMode::Signed;
        h.shared_secret = String::new();
        h.bank_jwks_url = jwks_url;
    })
    .await;
    let tpp = &d.tpp;
    let intent = d.create_consent(tpp).await;
    let pkce = Pkce::new();
    let ru = d.push(tpp, &pkce, &intent).await;
    let browser = d.srv.browser();
    let res = d.authorize(&browser, tpp, &ru).await;
    assert_eq!(res.status(), 303);
    let login = handoff_at(&d, &browser, &location(&res), "login").await;
    let h = verify_handoff(&d, &login, "login").await;
    assert_eq!(h["client_id"], tpp.client_id.as_str());
    assert_eq!(h["intent_id"], intent.as_str());
    let result = signed_result(
        &bank_key,
        &h,
        &d.srv.issuer,
        json!({"sub": "cust-0001", "acr": SCA, "amr": ["pwd", "hwk"], "auth_time": now()}),
    );
    let ret = h["return_uri"].as_str().unwrap();
    let res = browser
        .get(format!("{ret}?result={}", urlenc(&result)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let consent = handoff_at(&d, &browser, &location(&res), "consent").await;
    let h = verify_handoff(&d, &consent, "consent").await;
    assert_eq!(h["sub"], "cust-0001");
    let result = signed_result(
        &bank_key,
        &h,
        &d.srv.issuer,
        json!({"status": "approved", "consent_id": intent, "accounts": ["acc-1002"]}),
    );
    let ret = h["return_uri"].as_str().unwrap();
    let res = browser
        .get(format!("{ret}?result={}", urlenc(&result)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = location(&res);
    let code = query(&back)
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {back}"));
    let a = d.redeem(tpp, &code, &pkce).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let id_token = jwt_claims(a.json["id_token"].as_str().unwrap());
    assert_eq!(id_token["openbanking_intent_id"], intent.as_str());
    assert_eq!(id_token["amr"], json!(["pwd", "hwk"]));
    let i = d.introspect(a.json["access_token"].as_str().unwrap()).await;
    assert_eq!(i["accounts"], json!(["acc-1002"]));

    // A result signed by a key not in the bank's JWKS (same kid), and one
    // encrypted with a shared secret instead of signed: access_denied.
    let impostor = TppKey::es256("bank-sig-1");
    for forged in ["impostor", "encrypted"] {
        let intent = d.create_consent(tpp).await;
        let pkce = Pkce::new();
        let ru = d.push(tpp, &pkce, &intent).await;
        let browser = d.srv.browser();
        let res = d.authorize(&browser, tpp, &ru).await;
        let login = handoff_at(&d, &browser, &location(&res), "login").await;
        let h = verify_handoff(&d, &login, "login").await;
        let sub = json!({"sub": "cust-0001", "acr": SCA});
        let result = match forged {
            "impostor" => signed_result(&impostor, &h, &d.srv.issuer, sub),
            _ => {
                let mut c = jwt_claims(&signed_result(&bank_key, &h, &d.srv.issuer, sub));
                c["jti"] = json!(random(16));
                consent_bridge::token::encrypt(&SECRET, &c).unwrap()
            }
        };
        let ret = h["return_uri"].as_str().unwrap();
        let res = browser
            .get(format!("{ret}?result={}", urlenc(&result)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{forged}");
        assert_eq!(error_of(&location(&res)), "access_denied", "{forged}");
        d.assert_no_grant(&intent).await;
    }
    d.srv.stop().await;
}

#[actix_web::test]
async fn signed_mode_handoffs_verify_at_our_jwks_and_results_at_the_banks() {
    for backend in BACKENDS {
        signed_mode(backend).await;
    }
}

async fn bank_api_by_certificate(backend: Backend) {
    const DN: &str = "CN=demo-bank-gateway,O=Demo Bank,C=GB";
    let d = demo_with(backend, None, |h, _| {
        h.bank_api_subject_dn = DN.into();
    })
    .await;
    let (intent, a, _, _) = approved_tokens(&d).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let access = a.json["access_token"].as_str().unwrap().to_string();
    let read = |name: &str| std::fs::read_to_string(d.srv.data_dir.join(name)).unwrap();
    let (ca, ca_key) = (read("dev-ca.pem"), read("dev-ca-key.pem"));
    use strongroom::devcerts::{DnType, KeyAlg, issue_client_cert};
    let subject = [
        (DnType::CountryName, "GB"),
        (DnType::OrganizationName, "Demo Bank"),
        (DnType::CommonName, "demo-bank-gateway"),
    ];
    let (cert, key) = issue_client_cert(&ca, &ca_key, &subject, &[], KeyAlg::EcdsaP256).unwrap();
    let (other_cert, other_key) = issue_client_cert(
        &ca,
        &ca_key,
        &[(DnType::CommonName, "someone-else")],
        &[],
        KeyAlg::EcdsaP256,
    )
    .unwrap();
    // The same subject from a CA the server does not trust.
    let rogue_dir = tempfile::tempdir().unwrap();
    let rogue = strongroom::devcerts::ensure_dev_certs(rogue_dir.path()).unwrap();
    let (rogue_cert, rogue_key) = issue_client_cert(
        &std::fs::read_to_string(rogue.ca_cert).unwrap(),
        &std::fs::read_to_string(rogue.ca_key).unwrap(),
        &subject,
        &[],
        KeyAlg::EcdsaP256,
    )
    .unwrap();
    let list = d
        .srv
        .mtls_url(&format!("/bank/grants?consent_id={}", urlenc(&intent)));
    let revoke = d
        .srv
        .mtls_url(&format!("/bank/consents/{}/revoke", urlenc(&intent)));
    for (what, c, k) in [
        ("other subject", &other_cert, &other_key),
        ("untrusted CA", &rogue_cert, &rogue_key),
    ] {
        let http = d.srv.client(Some((c, k)));
        let res = http.get(&list).send().await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        let res = http.post(&revoke).send().await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
    }
    // No certificate and no token at all.
    let res = d.srv.client(None).get(&list).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(d.introspect(&access).await["active"], true);

    let bank = d.srv.client(Some((&cert, &key)));
    let res = bank.get(&list).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["grants"].as_array().unwrap().len(), 1, "{v}");
    let res = bank.post(&revoke).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["revoked_grants"], 1, "{v}");
    assert_eq!(d.introspect(&access).await, json!({"active": false}));
    d.srv.stop().await;
}

#[actix_web::test]
async fn bank_api_accepts_the_ca_verified_bank_certificate_only() {
    for backend in BACKENDS {
        bank_api_by_certificate(backend).await;
    }
}

async fn walkthrough(backend: Backend) {
    let d = demo_with(backend, None, |h, bank| {
        h.claims_url = format!("{bank}/internal/token-claims");
        h.claims_acr_values = vec![SCA.into()];
    })
    .await;
    let opts = demo_bank::walkthrough::Options {
        issuer: d.srv.issuer.clone(),
        mtls_base: d.srv.mtls_base.clone(),
        bank: d.bank.clone(),
        data_dir: d.srv.data_dir.clone(),
        auto: true,
        username: "noah".into(),
        password: "battery staple".into(),
    };
    let r = demo_bank::walkthrough::run(&opts)
        .await
        .unwrap_or_else(|e| panic!("walkthrough: {e}"));
    assert_eq!(r.id_token["openbanking_intent_id"], r.consent_id.as_str());
    assert_eq!(r.id_token["sub"], "cust-0002");
    assert_eq!(r.id_token["acr"], SCA);
    assert_eq!(r.id_token["customer_segment"], "retail");
    assert_eq!(r.introspection["active"], true);
    assert_eq!(r.introspection["consent_id"], r.consent_id.as_str());
    assert_eq!(r.introspection["accounts"], json!(["acc-2001", "acc-2002"]));
    assert!(
        r.introspection["cnf"]["x5t#S256"].is_string(),
        "{}",
        r.introspection
    );
    assert_eq!(r.access_after_revocation, json!({"active": false}));
    assert_eq!(r.refresh_after_revocation, json!({"active": false}));
    // A second run reuses the certificate written on the first.
    assert!(d.srv.data_dir.join("demo-tpp.pem").exists());
    demo_bank::walkthrough::run(&opts)
        .await
        .unwrap_or_else(|e| panic!("second walkthrough: {e}"));
    d.srv.stop().await;
}

#[actix_web::test]
async fn demo_tpp_walkthrough_runs_end_to_end() {
    for backend in BACKENDS {
        walkthrough(backend).await;
    }
}

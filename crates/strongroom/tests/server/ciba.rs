//! CIBA end to end (issue 24), on SQLite and PostgreSQL: a TPP starts a
//! signed backchannel request for a customer the bank resolves, polls
//! (`authorization_pending`, `slow_down`), the bank's app back end decides
//! through the decision API, and the TPP redeems DPoP-bound tokens with the
//! consent id in the id_token and at introspection. Then the refusals.
//!
//! The bank's resolve and notify hooks are a small actix receiver here.

use std::cell::RefCell;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consent_bridge::HooksConfig;
use serde_json::{Value, json};

use crate::harness::{BACKENDS, Backend, Setup, TestServer};
use crate::tpp::*;

const SECRET: [u8; 32] = [0x24; 32];
const BANK_ISSUER: &str = "https://bank.example";
const SERVICE_TOKEN: &str = "ciba-service-token";
const BANK_API_TOKEN: &str = "bank-api-token";
const GRANT: &str = "urn:openid:params:grant-type:ciba";
const SCA: &str = "urn:openbanking:psd2:sca";

thread_local! {
    static CONFIG: RefCell<Option<(HooksConfig, ciba::CibaConfig)>> = const { RefCell::new(None) };
}

/// Plain RFC 7591 registration with this initial access token.
const INITIAL_ACCESS_TOKEN: &str = "ciba-initial-access-token-0123456789";

fn apply(cfg: &mut strongroom::config::Config) {
    let (h, c) = CONFIG.with(|c| c.borrow().clone()).unwrap();
    cfg.hooks = Some(h);
    cfg.ciba = Some(c);
    cfg.registration = serde_json::from_value(json!({
        "initial_access_tokens_sha256": [oauth_core::secret::sha256_b64url(INITIAL_ACCESS_TOKEN.as_bytes())],
        "initial_access_scopes": ["openid", "accounts"],
    }))
    .unwrap();
}

fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the bank's hooks received.
#[derive(Default)]
struct Bank {
    notices: Mutex<Vec<Value>>,
    resolves: Mutex<Vec<Value>>,
    /// While set, the notify hook answers 503 (and counts the notices).
    notify_down: std::sync::atomic::AtomicBool,
    refused_notices: std::sync::atomic::AtomicUsize,
    /// Token-claims hook queries (docs/hooks.md §6a).
    claims: Mutex<Vec<Value>>,
    /// Client notification endpoint hits: (path, Authorization, body).
    deliveries: Mutex<Vec<(String, String, Value)>>,
}

/// The TPPs' notification endpoints (https): `/ok` answers 204, `/flaky`
/// 500 on its first hit then 204, `/refuse` 401.
async fn deliver(
    bank: web::Data<Arc<Bank>>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let path = req.path().to_string();
    let mut hits = bank.deliveries.lock().unwrap();
    let before = hits.iter().filter(|(p, _, _)| *p == path).count();
    hits.push((path.clone(), auth, body.0.clone()));
    match path.as_str() {
        "/refuse" => HttpResponse::Unauthorized().finish(),
        "/flaky" if before == 0 => HttpResponse::InternalServerError().finish(),
        _ => HttpResponse::NoContent().finish(),
    }
}

/// An https receiver with Strongroom's dev certificate (issued by the dev
/// CA, which Strongroom's outbound client trusts in dev mode).
fn tls_receiver(setup: &Setup, bank: Arc<Bank>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dev = strongroom::devcerts::ensure_dev_certs(&setup.data_dir).unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&dev.server_chain)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&dev.server_key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let data = web::Data::new(bank);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/{path}", web::post().to(deliver))
    })
    .workers(1)
    .listen_rustls_0_23(listener, tls)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    port
}

/// Whether the bank's hooks were called with Strongroom's service token.
fn with_service_token(req: &HttpRequest) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {SERVICE_TOKEN}").as_str())
}

async fn resolve(
    bank: web::Data<Arc<Bank>>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if !with_service_token(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    bank.resolves.lock().unwrap().push(body.0.clone());
    if body.get("user_code").is_some_and(|c| c != "1234") {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_user_code"}));
    }
    match body["hint"].as_str() {
        Some("alice") => HttpResponse::Ok().json(json!({"sub": "cust-alice"})),
        Some("bob") => HttpResponse::Ok().json(json!({"sub": "cust-bob"})),
        Some("garbled") => HttpResponse::BadRequest()
            .json(json!({"error": "invalid_request", "error_description": "unusable hint"})),
        _ => HttpResponse::NotFound().json(json!({"error": "unknown_user_id"})),
    }
}

async fn notify(
    bank: web::Data<Arc<Bank>>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if !with_service_token(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    if bank.notify_down.load(std::sync::atomic::Ordering::SeqCst) {
        bank.refused_notices
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return HttpResponse::ServiceUnavailable().finish();
    }
    bank.notices.lock().unwrap().push(body.0.clone());
    HttpResponse::NoContent().finish()
}

/// The bank's token-claims hook (docs/hooks.md §6a), for tpp-ciba.
async fn claims(
    bank: web::Data<Arc<Bank>>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if !with_service_token(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    bank.claims.lock().unwrap().push(body.0.clone());
    HttpResponse::Ok().json(json!({
        "id_token": {"customer_segment": "retail", "auth_time": 1},
        "introspection": {"consent_status": "Authorised"},
    }))
}

/// The bank's consent service (docs/hooks.md §3): three intents.
async fn intent(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    if !with_service_token(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    let (client, status) = match path.as_str() {
        "consent-77" => ("tpp-ciba", "AwaitingAuthorisation"),
        "consent-of-other" => ("tpp-ciba-other", "AwaitingAuthorisation"),
        "consent-done" => ("tpp-ciba", "Authorised"),
        "consent-sub" => (CONSENT_SUBJECT, "AwaitingAuthorisation"),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .json(json!({"ConsentId": path.as_str(), "ClientId": client, "Status": status}))
}

struct World {
    srv: TestServer,
    bank: Arc<Bank>,
    tpp: Tpp,
    other: Tpp,
    /// Ping clients whose endpoints answer 204, 500-then-204, 401.
    pingers: [Tpp; 3],
    coded: Tpp,
    consent_subject: Tpp,
    setup: Setup,
}

const PUSH_CLIENT: &str = "tpp-push";
/// A client shown the consent id as `sub` (client metadata `subject`).
const CONSENT_SUBJECT: &str = "tpp-ciba-consent";
/// A client registered with `backchannel_user_code_parameter`.
const CODED: &str = "tpp-coded";
const PUSH_SECRET: &str = "push-client-secret";

fn ciba_client(tpp: &Tpp, mode: &str) -> Value {
    let mut m = tpp.pkjwt_metadata();
    m["grant_types"] = json!([GRANT, "refresh_token"]);
    m["backchannel_token_delivery_mode"] = json!(mode);
    m["backchannel_authentication_request_signing_alg"] = json!("ES256");
    m["logo_uri"] = json!(format!("https://{}.example/logo.png", tpp.client_id));
    m["policy_uri"] = json!(format!("https://{}.example/privacy", tpp.client_id));
    m.as_object_mut().unwrap().remove("redirect_uris");
    m
}

async fn world(backend: Backend) -> World {
    let mut setup = Setup::new(backend);
    let bank = Arc::new(Bank::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let data = web::Data::new(bank.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/resolve", web::post().to(resolve))
            .route("/notify", web::post().to(notify))
            .route("/intents/{id}", web::get().to(intent))
            .route("/claims", web::post().to(claims))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    let tpp = Tpp::new("tpp-ciba");
    let other = Tpp::new("tpp-ciba-other");
    let port = tls_receiver(&setup, bank.clone());
    let pingers = [
        Tpp::new("tpp-ping"),
        Tpp::new("tpp-flaky"),
        Tpp::new("tpp-refused"),
    ];
    setup.clients = vec![ciba_client(&tpp, "poll"), ciba_client(&other, "poll")];
    let coded = Tpp::new(CODED);
    let mut m = ciba_client(&coded, "poll");
    m["backchannel_user_code_parameter"] = json!(true);
    setup.clients.push(m);
    let consent_subject = Tpp::new(CONSENT_SUBJECT);
    let mut m = ciba_client(&consent_subject, "poll");
    m["subject"] = json!("consent");
    setup.clients.push(m);
    for (p, path) in pingers.iter().zip(["ok", "flaky", "refuse"]) {
        let mut m = ciba_client(p, "ping");
        m["backchannel_client_notification_endpoint"] =
            json!(format!("https://127.0.0.1:{port}/{path}"));
        setup.clients.push(m);
    }
    setup.clients.push(json!({
        "client_id": PUSH_CLIENT,
        "client_name": "Push TPP",
        "token_endpoint_auth_method": "client_secret_basic",
        "fapi": false,
        "grant_types": [GRANT],
        "scope": "openid accounts",
        "backchannel_token_delivery_mode": "push",
        "backchannel_client_notification_endpoint": format!("https://127.0.0.1:{port}/push"),
        "client_secret_sha256": oauth_core::secret::hash_secret(PUSH_SECRET),
    }));
    let hooks = HooksConfig {
        login_url: "https://bank.example/login".into(),
        consent_url: "https://bank.example/consent".into(),
        shared_secret: URL_SAFE_NO_PAD.encode(SECRET),
        bank_issuer: BANK_ISSUER.into(),
        require_intent: false,
        consent_service_url: format!("{base}/intents"),
        consent_service_token: SERVICE_TOKEN.into(),
        claims_url: format!("{base}/claims"),
        claims_clients: vec!["tpp-ciba".into()],
        bank_api_token_sha256: sha256_hex(BANK_API_TOKEN),
        ..HooksConfig::default()
    };
    let c = ciba::CibaConfig {
        resolve_url: format!("{base}/resolve"),
        notify_url: format!("{base}/notify"),
        service_token: SERVICE_TOKEN.into(),
        interval_secs: 1,
        timeout_ms: 1000,
        ..ciba::CibaConfig::default()
    };
    CONFIG.with(|x| *x.borrow_mut() = Some((hooks, c)));
    setup.tweak = Some(apply);
    let srv = setup.start().await;
    World {
        srv,
        bank,
        tpp,
        other,
        pingers,
        coded,
        consent_subject,
        setup,
    }
}

/// The claims of a signed authentication request (CIBA §7.1.1).
fn request_claims(w: &World, tpp: &Tpp, hint: &str) -> Value {
    let t = now();
    json!({
        "iss": tpp.client_id, "aud": w.srv.issuer, "iat": t, "nbf": t, "exp": t + 300,
        "jti": random(16), "scope": "openid accounts", "login_hint": hint,
        "binding_message": "W4SCT", "acr_values": SCA,
    })
}

async fn bc_authorize_form(w: &World, tpp: &Tpp, mut form: Vec<(String, String)>) -> Answer {
    form.extend(tpp.auth_fields(&w.srv));
    post_form(
        &w.srv.client(None),
        &w.srv.url("/bc-authorize"),
        &form,
        None,
    )
    .await
}

async fn bc_authorize(w: &World, tpp: &Tpp, claims: &Value) -> Answer {
    let jwt = tpp.key.sign(None, claims);
    bc_authorize_form(w, tpp, vec![("request".into(), jwt)]).await
}

async fn start(w: &World, tpp: &Tpp) -> String {
    let a = bc_authorize(w, tpp, &request_claims(w, tpp, "alice")).await;
    assert_eq!(a.status, 200, "bc-authorize: {}", a.json);
    a.json["auth_req_id"].as_str().unwrap().to_string()
}

async fn poll(w: &World, tpp: &Tpp, auth_req_id: &str) -> Answer {
    let url = w.srv.url("/token");
    let mut form = tpp.auth_fields(&w.srv);
    form.push(("grant_type".into(), GRANT.into()));
    form.push(("auth_req_id".into(), auth_req_id.into()));
    post_form(
        &w.srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await
}

/// The notice the bank received for the `n`-th request (waits for it).
async fn notice(w: &World, n: usize) -> Value {
    for _ in 0..100 {
        if let Some(v) = w.bank.notices.lock().unwrap().get(n) {
            return v.clone();
        }
        actix_web::rt::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no notice #{n} reached the bank");
}

/// A decision token as the bank's app back end makes it (docs/hooks.md §10c).
fn decision_token(w: &World, handle: &str, extra: Value) -> String {
    let t = now();
    let mut claims = json!({
        "iss": BANK_ISSUER, "aud": w.srv.issuer, "iat": t, "exp": t + 60, "jti": random(12),
        "purpose": "ciba", "handle": handle,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    consent_bridge::token::encrypt(&SECRET, &claims).unwrap()
}

fn approval() -> Value {
    json!({"status": "approved", "sub": "cust-alice", "acr": SCA, "amr": ["pwd", "hwk"],
           "consent_id": "consent-77", "accounts": ["acc-1"]})
}

async fn decide(w: &World, handle: &str, token: &str) -> Answer {
    let res = w
        .srv
        .client(None)
        .post(w.srv.url(&format!("/bank/ciba/{handle}/decision")))
        .bearer_auth(BANK_API_TOKEN)
        .json(&json!({"result": token}))
        .send()
        .await
        .unwrap();
    answer(res).await
}

async fn introspect(w: &World, token: &str) -> Value {
    let mut form = w.tpp.auth_fields(&w.srv);
    form.push(("token".into(), token.into()));
    post_form(&w.srv.client(None), &w.srv.url("/introspect"), &form, None)
        .await
        .json
}

#[actix_web::test]
async fn poll_flow_gives_bound_tokens_with_the_consent() {
    // The process's metrics recorder (the internal listener installs it).
    let metrics = strongroom::telemetry::recorder();
    for backend in BACKENDS {
        let w = world(backend).await;
        // Discovery says what is served.
        let meta = w.srv.discovery().await;
        assert_eq!(
            meta["backchannel_authentication_endpoint"],
            w.srv.url("/bc-authorize")
        );
        assert_eq!(
            meta["mtls_endpoint_aliases"]["backchannel_authentication_endpoint"],
            w.srv.mtls_url("/bc-authorize")
        );
        assert_eq!(
            meta["backchannel_token_delivery_modes_supported"],
            json!(["poll", "ping", "push"])
        );
        assert_eq!(
            meta["backchannel_authentication_request_signing_alg_values_supported"],
            json!(["PS256", "ES256"])
        );
        assert!(
            meta["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(GRANT))
        );
        assert_eq!(meta["backchannel_user_code_parameter_supported"], true);

        let a = bc_authorize(&w, &w.tpp, &request_claims(&w, &w.tpp, "alice")).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let auth_req_id = a.json["auth_req_id"].as_str().unwrap().to_string();
        // ≥ 160 bits of base64url.
        assert!(auth_req_id.len() >= 27, "{auth_req_id}");
        assert_eq!(a.json["expires_in"], 300);
        assert_eq!(a.json["interval"], 1);
        assert_eq!(
            w.bank.resolves.lock().unwrap()[0],
            json!({
            "client_id": "tpp-ciba", "hint_type": "login_hint", "hint": "alice"})
        );

        let n = notice(&w, 0).await;
        assert_eq!(n["sub"], "cust-alice");
        assert_eq!(n["client_id"], "tpp-ciba");
        assert_eq!(n["client_name"], "TPP tpp-ciba");
        assert_eq!(n["logo_uri"], "https://tpp-ciba.example/logo.png");
        assert_eq!(n["policy_uri"], "https://tpp-ciba.example/privacy");
        assert_eq!(n["binding_message"], "W4SCT");
        assert_eq!(n["scope"], json!(["openid", "accounts"]));
        assert_eq!(n["acr_values"], json!([SCA]));
        let handle = n["handle"].as_str().unwrap().to_string();
        assert_ne!(handle, auth_req_id);
        assert!(!n.to_string().contains(&auth_req_id));

        assert_error(
            &poll(&w, &w.tpp, &auth_req_id).await,
            400,
            &["authorization_pending"],
        );
        // At once again: too fast, and the interval grows (1 s + 5 s).
        assert_error(&poll(&w, &w.tpp, &auth_req_id).await, 400, &["slow_down"]);
        actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
        assert_error(&poll(&w, &w.tpp, &auth_req_id).await, 400, &["slow_down"]);
        // Another client's poll: invalid_grant, and nothing changes.
        assert_error(
            &poll(&w, &w.other, &auth_req_id).await,
            400,
            &["invalid_grant"],
        );

        // The bank's app approves; a second decision is refused, state unchanged.
        let approve = decision_token(&w, &handle, approval());
        let a = decide(&w, &handle, &approve).await;
        assert_eq!(a.status, 204, "{}", a.json);
        let deny = decision_token(&w, &handle, json!({"status": "denied"}));
        let a = decide(&w, &handle, &deny).await;
        assert_eq!(a.status, 409);
        assert_eq!(a.json["error"], "already_decided");
        // Each result token is spent, the refused one too (its jti rides
        // with the decision's write, or is recorded on its own when the
        // request refuses before writing): sent again, it is a replay.
        for token in [&approve, &deny] {
            let a = decide(&w, &handle, token).await;
            assert_error(&a, 400, &["invalid_request"]);
        }
        let a = decide(&w, "no-such-handle", &deny).await;
        assert_eq!(a.status, 404);

        // Polled within the grown interval is still too fast; after it, tokens.
        actix_web::rt::time::sleep(Duration::from_millis(6100)).await;
        let a = poll(&w, &w.tpp, &auth_req_id).await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.json["token_type"], "DPoP");
        let at = a.json["access_token"].as_str().unwrap().to_string();
        assert!(a.json["refresh_token"].is_string());
        let id = jwt_claims(a.json["id_token"].as_str().unwrap());
        assert_eq!(id["sub"], "cust-alice");
        assert_eq!(id["aud"], "tpp-ciba");
        assert_eq!(id["acr"], SCA);
        assert_eq!(id["amr"], json!(["pwd", "hwk"]));
        assert_eq!(id["openbanking_intent_id"], "consent-77");
        assert_eq!(
            id["urn:openid:params:jwt:claim:auth_req_id"],
            json!(auth_req_id)
        );
        // The token-claims hook was asked once, for this CIBA grant; its
        // claim is in, its attempt at a protocol claim is not.
        assert_eq!(
            *w.bank.claims.lock().unwrap(),
            vec![
                json!({"grant_type": GRANT, "client_id": "tpp-ciba", "sub": "cust-alice",
                        "scope": "openid accounts", "consent_id": "consent-77", "acr": SCA,
                        "accounts": ["acc-1"]})
            ]
        );
        assert_eq!(id["customer_segment"], "retail");
        assert_ne!(id["auth_time"], 1);
        let i = introspect(&w, &at).await;
        assert_eq!(i["active"], true, "{i}");
        assert_eq!(i["consent_status"], "Authorised");
        assert_eq!(i["consent_id"], "consent-77");
        assert_eq!(i["cnf"]["jkt"], json!(w.tpp.dpop.thumbprint()));

        // Redeemed once: the second gets invalid_grant, the first tokens live on.
        assert_error(
            &poll(&w, &w.tpp, &auth_req_id).await,
            400,
            &["invalid_grant"],
        );
        assert_eq!(introspect(&w, &at).await["active"], true);
        // The bank's hooks were timed (docs/operations.md).
        let text = metrics.render();
        for target in ["ciba_resolve", "ciba_notify"] {
            assert!(
                text.contains(&format!("target=\"{target}\",outcome=\"2xx\""))
                    || text.contains(&format!("outcome=\"2xx\",target=\"{target}\"")),
                "{target} not timed: {text}"
            );
        }
        w.srv.stop().await;
        drop(w.setup);
    }
}

#[actix_web::test]
async fn ciba_clients_register_through_dcr_and_the_metadata_is_checked() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let tpp = Tpp::new("unused");
        let body = json!({
            "client_name": "Registered CIBA TPP",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "grant_types": [GRANT],
            "jwks": {"keys": [tpp.key.jwk]},
            "dpop_bound_access_tokens": true,
            "scope": "openid accounts",
            "backchannel_token_delivery_mode": "ping",
            "backchannel_client_notification_endpoint": "https://tpp-dcr.example/ciba",
            "backchannel_authentication_request_signing_alg": "ES256",
            "backchannel_user_code_parameter": false,
        });
        let http = w.srv.client(None);
        let register = |b: Value| {
            let http = http.clone();
            let url = w.srv.url("/register");
            async move {
                let res = http
                    .post(url)
                    .bearer_auth(INITIAL_ACCESS_TOKEN)
                    .json(&b)
                    .send()
                    .await
                    .unwrap();
                answer(res).await
            }
        };
        // What FAPI-CIBA and CIBA §4 refuse: invalid_client_metadata each.
        let bad: [(&str, Value); 5] = [
            (
                "push for a FAPI client",
                json!({"backchannel_token_delivery_mode": "push"}),
            ),
            (
                "ping without endpoint",
                json!({"backchannel_client_notification_endpoint": null}),
            ),
            (
                "http endpoint",
                json!({"backchannel_client_notification_endpoint": "http://tpp-dcr.example/ciba"}),
            ),
            (
                "unknown mode",
                json!({"backchannel_token_delivery_mode": "carrier-pigeon"}),
            ),
            (
                "signing alg not offered",
                json!({"backchannel_authentication_request_signing_alg": "RS256"}),
            ),
        ];
        for (what, edit) in bad {
            let mut b = body.clone();
            for (k, v) in edit.as_object().unwrap() {
                if v.is_null() {
                    b.as_object_mut().unwrap().remove(k);
                } else {
                    b[k] = v.clone();
                }
            }
            let a = register(b).await;
            assert_eq!(a.status, 400, "{what}: {}", a.json);
            assert_eq!(a.json["error"], "invalid_client_metadata", "{what}");
        }
        let a = register(body.clone()).await;
        assert_eq!(a.status, 201, "{}", a.json);
        for k in [
            "backchannel_token_delivery_mode",
            "backchannel_client_notification_endpoint",
            "backchannel_authentication_request_signing_alg",
            "grant_types",
        ] {
            assert_eq!(a.json[k], body[k], "{k} echoed");
        }
        let client_id = a.json["client_id"].as_str().unwrap().to_string();
        // The registered client starts a request at once; the bank is told
        // its registered name.
        let reg = Tpp {
            key: tpp.key.clone(),
            ..Tpp::new(&client_id)
        };
        let mut c = request_claims(&w, &reg, "alice");
        c["client_notification_token"] = json!("dcr-notification-token");
        let a = bc_authorize(&w, &reg, &c).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let n = notice(&w, 0).await;
        assert_eq!(n["client_id"], json!(client_id));
        assert_eq!(n["client_name"], "Registered CIBA TPP");
        // Without its notification token, a ping request is refused.
        let a = bc_authorize(&w, &reg, &request_claims(&w, &reg, "alice")).await;
        assert_error(&a, 400, &["invalid_request"]);
        w.srv.stop().await;
        drop(w.setup);
    }
}

/// The request's claims naming `intent` as an essential id_token claim.
fn naming(w: &World, intent: &str) -> Value {
    let mut c = request_claims(w, &w.tpp, "alice");
    c["claims"] = json!({"id_token": {
        "openbanking_intent_id": {"value": intent, "essential": true},
    }});
    c
}

#[actix_web::test]
async fn the_intent_is_checked_and_the_approval_must_name_it() {
    for backend in BACKENDS {
        let w = world(backend).await;
        // Unknown, another client's, already authorised: the consent
        // service's answer refuses each before the bank hears of it.
        for bad in ["consent-missing", "consent-of-other", "consent-done"] {
            let a = bc_authorize(&w, &w.tpp, &naming(&w, bad)).await;
            assert_error(&a, 400, &["invalid_request"]);
        }
        assert!(
            w.bank.resolves.lock().unwrap().is_empty(),
            "nothing resolved"
        );
        assert!(
            w.bank.notices.lock().unwrap().is_empty(),
            "nothing notified"
        );

        let a = bc_authorize(&w, &w.tpp, &naming(&w, "consent-77")).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let auth_req_id = a.json["auth_req_id"].as_str().unwrap().to_string();
        let n = notice(&w, 0).await;
        assert_eq!(n["intent_id"], "consent-77");
        let handle = n["handle"].as_str().unwrap().to_string();

        // An approval naming another consent, or none, is refused and
        // changes nothing: the request stays pending.
        for consent in [json!("consent-99"), Value::Null] {
            let mut ap = approval();
            ap["consent_id"] = consent;
            let a = decide(&w, &handle, &decision_token(&w, &handle, ap)).await;
            assert_eq!(a.status, 400, "{}", a.json);
            assert_eq!(a.json["error"], "invalid_request");
        }
        assert_error(
            &poll(&w, &w.tpp, &auth_req_id).await,
            400,
            &["authorization_pending"],
        );
        let a = decide(&w, &handle, &decision_token(&w, &handle, approval())).await;
        assert_eq!(a.status, 204, "{}", a.json);
        actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
        let a = poll(&w, &w.tpp, &auth_req_id).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let id = jwt_claims(a.json["id_token"].as_str().unwrap());
        assert_eq!(id["openbanking_intent_id"], "consent-77");
        let at = a.json["access_token"].as_str().unwrap();
        assert_eq!(introspect(&w, at).await["consent_id"], "consent-77");
        w.srv.stop().await;
        drop(w.setup);
    }
}

#[actix_web::test]
async fn denial_gives_access_denied_and_expiry_expired_token() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let auth_req_id = start(&w, &w.tpp).await;
        let handle = notice(&w, 0).await["handle"].as_str().unwrap().to_string();
        let deny = decision_token(&w, &handle, json!({"status": "denied"}));
        assert_eq!(decide(&w, &handle, &deny).await.status, 204);
        assert_error(
            &poll(&w, &w.tpp, &auth_req_id).await,
            400,
            &["access_denied"],
        );
        // A later approval does not turn it round.
        let a = decide(&w, &handle, &decision_token(&w, &handle, approval())).await;
        assert_eq!(a.json["error"], "already_decided");
        actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
        assert_error(
            &poll(&w, &w.tpp, &auth_req_id).await,
            400,
            &["access_denied"],
        );

        // requested_expiry 1: expired a moment later, for the TPP and the bank.
        let mut claims = request_claims(&w, &w.tpp, "alice");
        claims["requested_expiry"] = json!("1");
        let a = bc_authorize(&w, &w.tpp, &claims).await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.json["expires_in"], 1);
        let auth_req_id = a.json["auth_req_id"].as_str().unwrap().to_string();
        let handle = notice(&w, 1).await["handle"].as_str().unwrap().to_string();
        actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
        assert_error(
            &poll(&w, &w.tpp, &auth_req_id).await,
            400,
            &["expired_token"],
        );
        let a = decide(&w, &handle, &decision_token(&w, &handle, approval())).await;
        assert_eq!(a.status, 409);
        assert_eq!(a.json["error"], "expired_token");
        assert_error(
            &poll(&w, &w.tpp, &auth_req_id).await,
            400,
            &["expired_token"],
        );
        w.srv.stop().await;
        drop(w.setup);
    }
}

/// The deliveries to `path` so far, waiting until there are `n`.
async fn deliveries(w: &World, path: &str, n: usize) -> Vec<(String, Value)> {
    for _ in 0..200 {
        let hits: Vec<(String, Value)> = w
            .bank
            .deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, a, b)| (a.clone(), b.clone()))
            .collect();
        if hits.len() >= n {
            return hits;
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} deliveries to {path}");
}

#[actix_web::test]
async fn ping_is_delivered_retried_and_never_breaks_polling() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let mut ids = Vec::new();
        for (i, p) in w.pingers.iter().enumerate() {
            let mut claims = request_claims(&w, p, "alice");
            // Without a notification token a ping client is refused.
            let a = bc_authorize(&w, p, &claims).await;
            assert_error(&a, 400, &["invalid_request"]);
            claims["client_notification_token"] = json!(format!("cnt-{i}-{}", random(12)));
            claims["jti"] = json!(random(16));
            let a = bc_authorize(&w, p, &claims).await;
            assert_eq!(a.status, 200, "{}", a.json);
            assert_eq!(a.json["interval"], 1);
            let auth_req_id = a.json["auth_req_id"].as_str().unwrap().to_string();
            let handle = notice(&w, i).await["handle"].as_str().unwrap().to_string();
            let d = decide(&w, &handle, &decision_token(&w, &handle, approval())).await;
            assert_eq!(d.status, 204, "{}", d.json);
            let token = claims["client_notification_token"].as_str().unwrap();
            ids.push((auth_req_id, format!("Bearer {token}")));
        }
        // /ok: one ping, the token as Bearer, only the auth_req_id.
        let hits = deliveries(&w, "/ok", 1).await;
        assert_eq!(
            hits[0],
            (ids[0].1.clone(), json!({"auth_req_id": ids[0].0}))
        );
        // /flaky: 500, then retried and delivered.
        let hits = deliveries(&w, "/flaky", 2).await;
        assert_eq!(hits[0], hits[1]);
        assert_eq!(
            hits[1],
            (ids[1].1.clone(), json!({"auth_req_id": ids[1].0}))
        );
        // /refuse: 401 once, never retried.
        let hits = deliveries(&w, "/refuse", 1).await;
        assert_eq!(
            hits[0],
            (ids[2].1.clone(), json!({"auth_req_id": ids[2].0}))
        );
        actix_web::rt::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(deliveries(&w, "/refuse", 1).await.len(), 1);
        // Each auth_req_id redeems at the token endpoint, the refused one too.
        for (p, (auth_req_id, _)) in w.pingers.iter().zip(&ids) {
            let a = poll(&w, p, auth_req_id).await;
            assert_eq!(a.status, 200, "{}", a.json);
            assert_eq!(a.json["token_type"], "DPoP");
            let id = jwt_claims(a.json["id_token"].as_str().unwrap());
            assert_eq!(
                id["urn:openid:params:jwt:claim:auth_req_id"],
                json!(auth_req_id)
            );
        }

        // Push (a non-FAPI client): the tokens come to the endpoint, unbound.
        let mut form = vec![
            ("scope".to_string(), "openid accounts".to_string()),
            ("login_hint".into(), "alice".into()),
            ("binding_message".into(), "PUSH-1".into()),
            ("client_notification_token".into(), "push-cnt".into()),
        ];
        let res = w
            .srv
            .client(None)
            .post(w.srv.url("/bc-authorize"))
            .basic_auth(PUSH_CLIENT, Some(PUSH_SECRET))
            .form(&form)
            .send()
            .await
            .unwrap();
        let a = answer(res).await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert!(a.json.get("interval").is_none(), "{}", a.json);
        let auth_req_id = a.json["auth_req_id"].as_str().unwrap().to_string();
        let handle = notice(&w, 3).await["handle"].as_str().unwrap().to_string();
        assert_eq!(
            decide(&w, &handle, &decision_token(&w, &handle, approval()))
                .await
                .status,
            204
        );
        // A push client does not poll (CIBA §11), before or after delivery.
        let push_poll = || async {
            let res = w
                .srv
                .client(None)
                .post(w.srv.url("/token"))
                .basic_auth(PUSH_CLIENT, Some(PUSH_SECRET))
                .form(&[("grant_type", GRANT), ("auth_req_id", auth_req_id.as_str())])
                .send()
                .await
                .unwrap();
            answer(res).await
        };
        assert_error(&push_poll().await, 400, &["unauthorized_client"]);
        let hits = deliveries(&w, "/push", 1).await;
        assert_error(&push_poll().await, 400, &["unauthorized_client"]);
        assert_eq!(hits[0].0, "Bearer push-cnt");
        assert_eq!(hits[0].1["auth_req_id"], json!(auth_req_id));
        assert_eq!(hits[0].1["token_type"], "Bearer");
        assert!(hits[0].1["access_token"].is_string());
        let id = jwt_claims(hits[0].1["id_token"].as_str().unwrap());
        assert_eq!(id["openbanking_intent_id"], "consent-77");
        form.clear();
        w.srv.stop().await;
        drop(w.setup);
    }
}

#[actix_web::test]
async fn bad_requests_get_the_ciba_codes_and_store_nothing() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let t = now();
        let tpp = &w.tpp;
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut c = request_claims(&w, tpp, "alice");
            edit(&mut c);
            c
        };
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "no hint",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("login_hint");
                }),
                "invalid_request",
            ),
            (
                "two hints",
                with(&|c| c["login_hint_token"] = json!("lht")),
                "invalid_request",
            ),
            (
                "id_token_hint not ours",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("login_hint");
                    c["id_token_hint"] =
                        json!(tpp.key.sign(None, &json!({"iss": "x", "sub": "alice"})));
                }),
                "invalid_request",
            ),
            (
                "binding_message too long",
                with(&|c| c["binding_message"] = json!("x".repeat(65))),
                "invalid_binding_message",
            ),
            (
                "binding_message markup",
                with(&|c| c["binding_message"] = json!("<b>pay</b>")),
                "invalid_binding_message",
            ),
            (
                "requested_expiry zero",
                with(&|c| c["requested_expiry"] = json!("0")),
                "invalid_request",
            ),
            (
                "requested_expiry negative",
                with(&|c| c["requested_expiry"] = json!(-5)),
                "invalid_request",
            ),
            (
                "requested_expiry text",
                with(&|c| c["requested_expiry"] = json!("soon")),
                "invalid_request",
            ),
            (
                "requested_expiry fraction",
                with(&|c| c["requested_expiry"] = json!(1.5)),
                "invalid_request",
            ),
            (
                "requested_expiry above max",
                with(&|c| c["requested_expiry"] = json!(601)),
                "invalid_request",
            ),
            (
                "no openid",
                with(&|c| c["scope"] = json!("accounts")),
                "invalid_scope",
            ),
            (
                "wrong aud",
                with(&|c| c["aud"] = json!("https://other.example")),
                "invalid_request",
            ),
            (
                "expired",
                with(&|c| {
                    c["iat"] = json!(t - 600);
                    c["nbf"] = json!(t - 600);
                    c["exp"] = json!(t - 300);
                }),
                "invalid_request",
            ),
            (
                "exp 70 minutes ahead",
                with(&|c| c["exp"] = json!(t + 70 * 60)),
                "invalid_request",
            ),
            (
                "nbf in the future",
                with(&|c| c["nbf"] = json!(t + 600)),
                "invalid_request",
            ),
            (
                "no jti",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
                "invalid_request",
            ),
            (
                "no iat",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("iat");
                }),
                "invalid_request",
            ),
            (
                "iss another client",
                with(&|c| c["iss"] = json!("tpp-ciba-other")),
                "invalid_request",
            ),
        ];
        for (what, claims, code) in &cases {
            let a = bc_authorize(&w, tpp, claims).await;
            assert_eq!(a.status, 400, "{what}: {}", a.json);
            assert_eq!(a.json["error"], *code, "{what}: {}", a.json);
        }
        // Signed by another client's key.
        let jwt = w.other.key.sign(None, &request_claims(&w, tpp, "alice"));
        let a = bc_authorize_form(&w, tpp, vec![("request".into(), jwt)]).await;
        assert_error(&a, 400, &["invalid_request"]);
        // Unsigned where a signature is required.
        let a = bc_authorize_form(
            &w,
            tpp,
            vec![
                ("scope".into(), "openid accounts".into()),
                ("login_hint".into(), "alice".into()),
                ("binding_message".into(), "W4SCT".into()),
            ],
        )
        .await;
        assert_error(&a, 400, &["invalid_request"]);
        // No request reached the bank, nothing was stored.
        assert!(w.bank.resolves.lock().unwrap().is_empty());
        assert!(w.bank.notices.lock().unwrap().is_empty());

        // The bank's answers: unknown customer, unusable hint.
        let a = bc_authorize(&w, tpp, &request_claims(&w, tpp, "mallory")).await;
        assert_error(&a, 400, &["unknown_user_id"]);
        let a = bc_authorize(&w, tpp, &request_claims(&w, tpp, "garbled")).await;
        assert_error(&a, 400, &["invalid_request"]);
        // A replayed request object: the second is refused.
        let jwt = tpp.key.sign(None, &request_claims(&w, tpp, "alice"));
        let a = bc_authorize_form(&w, tpp, vec![("request".into(), jwt.clone())]).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let a = bc_authorize_form(&w, tpp, vec![("request".into(), jwt)]).await;
        assert_error(&a, 400, &["invalid_request"]);
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(w.bank.notices.lock().unwrap().len(), 1);
        // user_code: required for the client registered for it, checked by the bank.
        let a = bc_authorize(&w, &w.coded, &request_claims(&w, &w.coded, "alice")).await;
        assert_error(&a, 400, &["missing_user_code"]);
        let mut claims = request_claims(&w, &w.coded, "alice");
        claims["user_code"] = json!("9999");
        assert_error(
            &bc_authorize(&w, &w.coded, &claims).await,
            400,
            &["invalid_user_code"],
        );
        claims["user_code"] = json!("1234");
        claims["jti"] = json!(random(16));
        let a = bc_authorize(&w, &w.coded, &claims).await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(
            w.bank.resolves.lock().unwrap().last().unwrap()["user_code"],
            "1234"
        );
        // Garbage auth_req_ids at the token endpoint.
        assert_error(&poll(&w, tpp, "nope").await, 400, &["invalid_grant"]);
        w.srv.stop().await;
        drop(w.setup);
    }
}

#[actix_web::test]
async fn a_pending_request_survives_a_restart() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let auth_req_id = start(&w, &w.tpp).await;
        let handle = notice(&w, 0).await["handle"].as_str().unwrap().to_string();
        // A second request whose notice the bank cannot take yet: the
        // instance that stored it stops after its first attempt.
        use std::sync::atomic::Ordering::SeqCst;
        w.bank.notify_down.store(true, SeqCst);
        let mut c = request_claims(&w, &w.tpp, "bob");
        c["binding_message"] = json!("AFTER-RESTART");
        let a = bc_authorize(&w, &w.tpp, &c).await;
        assert_eq!(a.status, 200, "{}", a.json);
        for _ in 0..100 {
            if w.bank.refused_notices.load(SeqCst) > 0 {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(w.bank.refused_notices.load(SeqCst) > 0, "a first attempt");
        let (main, mtls) = (w.srv.main_port, w.srv.mtls_port);
        let World {
            srv,
            bank,
            tpp,
            other,
            pingers,
            coded,
            consent_subject,
            setup,
        } = w;
        srv.stop().await;
        let srv = setup.start_at(main, mtls).await;
        let w = World {
            srv,
            bank,
            tpp,
            other,
            pingers,
            coded,
            consent_subject,
            setup,
        };
        assert_error(
            &poll(&w, &w.tpp, &auth_req_id).await,
            400,
            &["authorization_pending"],
        );
        // The bank is back: the new instance's outbox delivers the notice
        // the stopped one could not, once.
        w.bank.notify_down.store(false, SeqCst);
        let n = notice(&w, 1).await;
        assert_eq!(n["binding_message"], "AFTER-RESTART");
        assert_eq!(n["sub"], "cust-bob");
        actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(w.bank.notices.lock().unwrap().len(), 2, "delivered once");
        let a = decide(&w, &handle, &decision_token(&w, &handle, approval())).await;
        assert_eq!(a.status, 204, "{}", a.json);
        actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
        let a = poll(&w, &w.tpp, &auth_req_id).await;
        assert_eq!(a.status, 200, "{}", a.json);
        w.srv.stop().await;
        drop(w.setup);
    }
}

/// docs/hooks.md §10b: a notice the bank never takes is attempted 4 times
/// in all (0.5 s, 1 s, 2 s between), then given up, never sent later; the
/// request stays pending and pollable.
#[actix_web::test]
async fn a_notice_the_bank_never_takes_is_given_up_after_four_attempts() {
    use std::sync::atomic::Ordering::SeqCst;
    let w = world(Backend::Sqlite).await;
    w.bank.notify_down.store(true, SeqCst);
    let auth_req_id = start(&w, &w.tpp).await;
    // 3.5 s of backoff, the sweeper's 250 ms and margin.
    actix_web::rt::time::sleep(Duration::from_millis(5000)).await;
    assert_eq!(
        w.bank.refused_notices.load(SeqCst),
        4,
        "four attempts in all"
    );
    w.bank.notify_down.store(false, SeqCst);
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.bank.refused_notices.load(SeqCst), 4);
    assert!(
        w.bank.notices.lock().unwrap().is_empty(),
        "given up: not sent later"
    );
    assert_error(
        &poll(&w, &w.tpp, &auth_req_id).await,
        400,
        &["authorization_pending"],
    );
    w.srv.stop().await;
    drop(w.setup);
}

/// Issue 25 item 6: a CIBA client shown the consent id as `sub` gets it in
/// the CIBA id_token and from introspection, while the bank's notice and
/// decision name the customer; such an id_token cannot be an
/// `id_token_hint` (its `sub` does not name the customer to the bank).
#[actix_web::test]
async fn a_consent_subject_ciba_client_sees_the_intent_id() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let tpp = &w.consent_subject;
        let mut c = request_claims(&w, tpp, "alice");
        c["claims"] = json!({"id_token": {
            "openbanking_intent_id": {"value": "consent-sub", "essential": true},
        }});
        let a = bc_authorize(&w, tpp, &c).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let auth_req_id = a.json["auth_req_id"].as_str().unwrap().to_string();
        let n = notice(&w, 0).await;
        assert_eq!(n["sub"], "cust-alice", "the bank hears of its customer");
        let handle = n["handle"].as_str().unwrap().to_string();
        let mut ap = approval();
        ap["consent_id"] = json!("consent-sub");
        let a = decide(&w, &handle, &decision_token(&w, &handle, ap)).await;
        assert_eq!(a.status, 204, "{}", a.json);
        actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
        let a = poll(&w, tpp, &auth_req_id).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let id_token = a.json["id_token"].as_str().unwrap().to_string();
        let id = jwt_claims(&id_token);
        assert_eq!(id["sub"], "consent-sub", "{id}");
        assert_eq!(id["openbanking_intent_id"], "consent-sub");
        let at = a.json["access_token"].as_str().unwrap();
        let mut form = tpp.auth_fields(&w.srv);
        form.push(("token".into(), at.into()));
        let i = post_form(&w.srv.client(None), &w.srv.url("/introspect"), &form, None)
            .await
            .json;
        assert_eq!(i["sub"], "consent-sub", "{i}");

        // Its id_token as a hint: refused before the bank is asked.
        let resolves = w.bank.resolves.lock().unwrap().len();
        let mut c = request_claims(&w, tpp, "alice");
        c.as_object_mut().unwrap().remove("login_hint");
        c["id_token_hint"] = json!(id_token);
        let a = bc_authorize(&w, tpp, &c).await;
        assert_error(&a, 400, &["invalid_request"]);
        assert!(
            a.json["error_description"]
                .as_str()
                .unwrap()
                .contains("consent subject"),
            "{}",
            a.json
        );
        assert_eq!(w.bank.resolves.lock().unwrap().len(), resolves);
        w.srv.stop().await;
        drop(w.setup);
    }
}

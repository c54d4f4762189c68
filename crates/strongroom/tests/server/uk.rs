//! The UK Open Banking deployment as a UK TPP's strict parsers see it
//! (issue 25 item 6): discovery and the JWKS under `profile = "uk-ob"`
//! hold only what Open Banking Connector can deserialise (its enums are
//! re-stated here from its source, see
//! ../shared/specs/open-banking-connector.md), while a FAPI 2.0
//! deployment keeps its EC keys, JARM modes and DPoP; and what the UK view
//! leaves out is refused.

use serde_json::{Value, json};

use crate::fapi::demo_user;
use crate::fapi_errors::encrypt_to_published;
use crate::harness::{Backend, Setup, TestServer};
use crate::tpp::*;

/// A UK TPP as Open Banking Connector is one: private_key_jwt with a PS256
/// key, `code id_token`, tokens bound to its transport certificate (from
/// the dev CA, OBWAC-shaped), no DPoP.
pub fn uk_tpp(setup: &Setup, client_id: &str, org_id: &str) -> Tpp {
    use strongroom::devcerts::{DnType, KeyAlg, issue_client_cert};
    let (ca, ca_key) = setup.dev_ca();
    let mut tpp = Tpp::new(client_id);
    tpp.key = TppKey::ps256(&format!("{client_id}-sig"));
    let ident = format!("PSDGB-OB-{org_id}");
    tpp.identity = Some(
        issue_client_cert(
            &ca,
            &ca_key,
            &[
                (DnType::CountryName, "GB"),
                (DnType::OrganizationName, "Test TPP Ltd"),
                (DnType::CustomDnType(vec![2, 5, 4, 97]), &ident),
                (DnType::CommonName, org_id),
            ],
            &[],
            KeyAlg::EcdsaP256,
        )
        .unwrap(),
    );
    tpp
}

/// [`uk_tpp`]'s client metadata.
pub fn uk_metadata(tpp: &Tpp) -> Value {
    let mut m = tpp.pkjwt_metadata();
    m["response_types"] = json!(["code id_token"]);
    m["token_endpoint_auth_signing_alg"] = json!("PS256");
    m["id_token_signed_response_alg"] = json!("PS256");
    m["request_object_signing_alg"] = json!("PS256");
    m["dpop_bound_access_tokens"] = json!(false);
    m["tls_client_certificate_bound_access_tokens"] = json!(true);
    m
}

/// Form fields that authenticate with private_key_jwt the way OBC does:
/// the assertion's `aud` is the token endpoint URL, `exp` = now + 300 s.
pub fn obc_auth_fields(tpp: &Tpp, token_url: &str) -> Vec<(String, String)> {
    let mut claims = tpp.assertion_claims(json!(token_url));
    claims["exp"] = json!(now() + 300);
    vec![
        ("client_id".into(), tpp.client_id.clone()),
        ("client_assertion_type".into(), ASSERTION_TYPE.into()),
        ("client_assertion".into(), tpp.key.sign(None, &claims)),
    ]
}

// Open Banking Connector's parsers of discovery and the JWKS, as the UK
// walkthrough models them (`Models/Fapi/OpenIdConfiguration.cs`,
// `Models/Fapi/IdToken.cs`).
use demo_bank::walkthrough::uk::{
    check_discovery as obc_parses_discovery, check_jwks as obc_parses_jwks,
};

async fn jwks(srv: &TestServer) -> Value {
    srv.client(None)
        .get(srv.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn uk_setup(backend: Backend) -> (Setup, Tpp) {
    let mut setup = Setup::new(backend);
    let tpp = uk_tpp(&setup, "tpp-uk-view", "0015800001041REAAY");
    setup.clients = vec![uk_metadata(&tpp)];
    setup.users = vec![demo_user()];
    setup.tweak = Some(|c| {
        c.profile = strongroom::config::Profile::UkOpenBanking;
        c.login.acr = "urn:openbanking:psd2:sca".into();
    });
    (setup, tpp)
}

#[actix_web::test]
async fn a_uk_deployment_shows_a_fapi1_tpp_only_what_it_knows() {
    let (setup, _) = uk_setup(Backend::Sqlite);
    let srv = setup.start().await;
    let d = srv.discovery().await;
    obc_parses_discovery(&d).unwrap();
    assert_eq!(
        d["response_modes_supported"],
        json!(["fragment", "form_post"])
    );
    assert_eq!(d["response_types_supported"], json!(["code id_token"]));
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt", "tls_client_auth"])
    );
    for absent in [
        "dpop_signing_alg_values_supported",
        "authorization_signing_alg_values_supported",
    ] {
        assert!(d.get(absent).is_none(), "{absent}: {d}");
    }
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["PS256"]));
    assert_eq!(
        d["request_object_encryption_alg_values_supported"],
        json!(["RSA-OAEP-256"])
    );
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], true);

    let keys = jwks(&srv).await;
    obc_parses_jwks(&keys).unwrap();
    let list = keys["keys"].as_array().unwrap();
    assert!(
        list.iter()
            .all(|k| k["kty"] == "RSA" && k["use"].is_string())
    );
    let sig: Vec<&Value> = list.iter().filter(|k| k["use"] == "sig").collect();
    assert!(!sig.is_empty());
    assert!(sig.iter().all(|k| k["alg"] == "PS256"), "{keys}");
    let enc: Vec<&Value> = list.iter().filter(|k| k["use"] == "enc").collect();
    assert_eq!(enc.len(), 1, "{keys}");
    assert!(enc[0].get("alg").is_none(), "{keys}");
    srv.stop().await;
}

#[actix_web::test]
async fn a_fapi2_deployment_keeps_its_full_view() {
    let srv = Setup::new(Backend::Sqlite).start().await;
    let d = srv.discovery().await;
    assert_eq!(
        d["dpop_signing_alg_values_supported"],
        json!(["PS256", "ES256", "EdDSA"])
    );
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        json!(["PS256", "ES256"])
    );
    assert_eq!(
        d["request_object_encryption_alg_values_supported"],
        json!(["RSA-OAEP", "RSA-OAEP-256"])
    );
    // This is what breaks a UK TPP's parser: JARM modes, EC keys, JWE algs.
    assert!(obc_parses_discovery(&d).unwrap_err().contains("jwt"));
    let keys = jwks(&srv).await;
    let err = obc_parses_jwks(&keys).unwrap_err();
    assert!(err.contains("\"EC\"") || err.contains("RSA-OAEP"), "{err}");
    let list = keys["keys"].as_array().unwrap();
    assert!(list.iter().any(|k| k["kty"] == "EC" && k["alg"] == "ES256"));
    assert!(
        list.iter()
            .filter(|k| k["use"] == "enc")
            .all(|k| k["alg"].is_string())
    );
    srv.stop().await;
}

/// What the UK view does not advertise is refused: DPoP proofs and
/// `dpop_jkt` anywhere, RSA-OAEP request objects (no key is published for
/// it); the certificate-bound Bearer token is what a UK TPP gets.
#[actix_web::test]
async fn a_uk_deployment_refuses_what_its_view_leaves_out() {
    let (setup, tpp) = uk_setup(Backend::Sqlite);
    let srv = setup.start().await;
    let (cert, key) = tpp.identity.clone().unwrap();
    let http = srv.client(Some((&cert, &key)));
    let token_url = srv.mtls_url("/token");
    let cc = |auth: Vec<(String, String)>| {
        let mut f = auth;
        f.push(("grant_type".into(), "client_credentials".into()));
        f.push(("scope".into(), "accounts".into()));
        f
    };
    // A DPoP proof at the token endpoint.
    let a = post_form(
        &http,
        &token_url,
        &cc(obc_auth_fields(&tpp, &token_url)),
        Some(tpp.dpop_proof("POST", &token_url, None)),
    )
    .await;
    assert_error(&a, 400, &["invalid_request"]);
    assert!(
        a.json["error_description"]
            .as_str()
            .unwrap()
            .contains("DPoP is not offered under the uk-ob profile"),
        "{}",
        a.json
    );
    // Without it: a Bearer token bound to the certificate.
    let a = post_form(
        &http,
        &token_url,
        &cc(obc_auth_fields(&tpp, &token_url)),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["token_type"], "Bearer");
    // PAR with a DPoP proof, and dpop_jkt in a PAR request.
    let par_url = srv.mtls_url("/par");
    let t = now();
    let ro = |extra: Value| {
        let mut c = json!({
            "iss": tpp.client_id, "aud": srv.issuer, "client_id": tpp.client_id,
            "iat": t, "nbf": t, "exp": t + 300, "jti": random(16),
            "response_type": "code id_token", "redirect_uri": tpp.redirect_uri,
            "scope": "openid accounts", "state": random(8), "nonce": random(8),
            // PKCE is required with PAR under FAPI 1.0 (§5.2.2-18).
            "code_challenge": Pkce::new().challenge, "code_challenge_method": "S256",
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        tpp.key.sign(None, &c)
    };
    let mut form = obc_auth_fields(&tpp, &par_url);
    form.push(("request".into(), ro(json!({}))));
    let a = post_form(
        &http,
        &par_url,
        &form,
        Some(tpp.dpop_proof("POST", &par_url, None)),
    )
    .await;
    assert_error(&a, 400, &["invalid_request"]);
    let mut form = obc_auth_fields(&tpp, &par_url);
    form.push((
        "request".into(),
        ro(json!({"dpop_jkt": tpp.dpop.thumbprint()})),
    ));
    let a = post_form(&http, &par_url, &form, None).await;
    assert_error(&a, 400, &["invalid_request"]);
    assert!(
        a.json["error_description"]
            .as_str()
            .unwrap()
            .contains("DPoP is not offered"),
        "{}",
        a.json
    );
    // The same request object without dpop_jkt is accepted.
    let mut form = obc_auth_fields(&tpp, &par_url);
    form.push(("request".into(), ro(json!({}))));
    assert_eq!(post_form(&http, &par_url, &form, None).await.status, 201);

    // An RSA-OAEP request object by value: our RSA-OAEP key is not in the
    // UK view, so it is refused (the redirect URI is not yet known: an
    // error page).
    let full_jwks = {
        // The key a FAPI 1.0 TPP would have found in a full JWKS: the UK
        // one's only enc key, with the algorithm it is not published for.
        let mut k = jwks(&srv).await;
        for key in k["keys"].as_array_mut().unwrap() {
            if key["use"] == "enc" {
                key["alg"] = json!("RSA-OAEP");
            }
        }
        k
    };
    let jwe = encrypt_to_published(&full_jwks, "RSA-OAEP", "A256GCM", &ro(json!({})));
    let url = format!(
        "{}?client_id={}&response_type=code+id_token&scope=openid+accounts&request={}",
        srv.url("/authorize"),
        tpp.client_id,
        urlenc(&jwe)
    );
    let res = srv.browser().get(url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("invalid_request_object"), "{html}");
    assert!(html.contains("RSA-OAEP is not offered"), "{html}");
    srv.stop().await;
}

// ------------------------------------------------ the UK TPP walkthrough

/// The bank's organisation id in config/examples/uk-ob.toml (`aspsp_id`).
const ASPSP_ID: &str = "0015800000jfwxXAAQ";
const SOFTWARE_ID: &str = "tppUkDemo01";
const ORG_ID: &str = "0015800001041REAAY";
const ORG_NAME: &str = "Demo UK TPP Ltd";

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// config/examples/uk-ob.toml as shipped, started on one ephemeral
/// listener with its bank URLs moved to the in-process demo bank (what
/// `make demo-uk` does with sed), beside that bank.
async fn uk_example(backend: Backend) -> (Setup, TestServer, String) {
    let setup = Setup::new(backend);
    let _ = setup.dev_ca();
    let main = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = main.local_addr().unwrap().port();
    let bank_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bank = format!(
        "http://127.0.0.1:{}",
        bank_listener.local_addr().unwrap().port()
    );
    let path = repo("config/examples/uk-ob.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("http://127.0.0.1:8070/", &format!("{bank}/"));
    let mut cfg = strongroom::config::Config::parse(&text, &path).unwrap();
    assert_eq!(cfg.profile, strongroom::config::Profile::UkOpenBanking);
    cfg.issuer = format!("https://localhost:{port}");
    let srv = setup.start_single(cfg, main).await;
    let mut bank_cfg = demo_bank::BankConfig::demo(&srv.issuer);
    bank_cfg.strongroom_ca = Some(srv.dev_ca());
    let server = demo_bank::serve(demo_bank::Bank::new(bank_cfg).unwrap(), bank_listener).unwrap();
    actix_web::rt::spawn(server);
    (setup, srv, bank)
}

/// `strongroom-directory issue --uk` with the example's directory key.
fn issue_uk_material(srv: &TestServer, out: &std::path::Path) {
    let key = repo("config/demo-directory-key.pem");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom-directory"))
        .args(["issue", "--uk", "--out"])
        .arg(out)
        .arg("--data")
        .arg(&srv.data_dir)
        .arg("--directory-key")
        .arg(&key)
        .args([
            "--software-id",
            SOFTWARE_ID,
            "--org-id",
            ORG_ID,
            "--org-name",
            ORG_NAME,
            "--redirect-uri",
            demo_bank::walkthrough::uk::REDIRECT_URI,
            "--role",
            "AISP",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Node's jose (tests/browser) checks the front-channel id_token too, when
/// the browser tests' packages are installed: the detached signature
/// against the published JWKS, c_hash and s_hash (scripts/uk-id-token.mjs).
fn node_check(r: &demo_bank::walkthrough::uk::UkReport, srv: &TestServer, dir: &std::path::Path) {
    let modules = repo("tests/browser/node_modules/jose");
    let node = std::process::Command::new("node").arg("--version").output();
    if !modules.exists() || node.is_err() {
        eprintln!(
            "uk walkthrough: no node or tests/browser/node_modules; the jose check is in make test-browser"
        );
        return;
    }
    let input = dir.join("front-channel.json");
    std::fs::write(
        &input,
        json!({
            "id_token": r.front_id_token, "code": r.code, "state": r.state,
            "nonce": r.nonce, "jwks": r.jwks, "issuer": srv.issuer,
            "client_id": r.client_id, "intent": r.consent_id,
        })
        .to_string(),
    )
    .unwrap();
    let o = std::process::Command::new("node")
        .arg(repo("tests/browser/lib/uk-id-token.mjs"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "jose: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    print!("{}", String::from_utf8_lossy(&o.stdout));
    // And it is a check that can fail: a tampered state is refused.
    let mut v: Value = serde_json::from_slice(&std::fs::read(&input).unwrap()).unwrap();
    v["state"] = json!(format!("{}x", r.state));
    std::fs::write(&input, v.to_string()).unwrap();
    let o = std::process::Command::new("node")
        .arg(repo("tests/browser/lib/uk-id-token.mjs"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("s_hash"));
}

async fn uk_walkthrough(backend: Backend) {
    let (setup, srv, bank) = uk_example(backend).await;
    // The example's discovery: one listener, so no mtls_endpoint_aliases;
    // registration and token where a UK TPP calls them.
    let d = srv.discovery().await;
    assert!(d.get("mtls_endpoint_aliases").is_none(), "{d}");
    assert_eq!(d["registration_endpoint"], srv.url("/register"));
    let dir = setup.tmp.as_ref().unwrap().path().join("tpp");
    issue_uk_material(&srv, &dir);
    for encrypt_request in [false, true] {
        let opts = demo_bank::walkthrough::uk::UkOptions {
            base: demo_bank::walkthrough::Options {
                issuer: srv.issuer.clone(),
                mtls_base: srv.issuer.clone(),
                bank: bank.clone(),
                data_dir: srv.data_dir.clone(),
                auto: true,
                username: "noah".into(),
                password: "battery staple".into(),
            },
            directory: dir.clone(),
            software_id: SOFTWARE_ID.into(),
            org_id: ORG_ID.into(),
            org_name: ORG_NAME.into(),
            aspsp_id: ASPSP_ID.into(),
            encrypt_request,
        };
        let r = demo_bank::walkthrough::uk::run(&opts)
            .await
            .unwrap_or_else(|e| panic!("UK walkthrough (encrypted {encrypt_request}): {e}"));
        assert_eq!(r.registration["fapi_profile"], "uk-ob");
        assert_eq!(r.registration["response_types"], json!(["code id_token"]));
        assert_eq!(
            r.front_claims["openbanking_intent_id"],
            r.consent_id.as_str()
        );
        assert_eq!(r.front_claims["acr"], "urn:openbanking:psd2:sca");
        assert_eq!(r.front_claims["aud"], r.client_id.as_str());
        assert_eq!(
            r.token_claims["openbanking_intent_id"],
            r.consent_id.as_str()
        );
        // OBC's default: sub is the consent id, from both endpoints
        // (the example's [subject] profiles uk-ob = consent).
        assert_eq!(r.front_claims["sub"], r.consent_id.as_str());
        assert_eq!(r.token_claims["sub"], r.front_claims["sub"]);
        assert_eq!(r.token_response["token_type"], "Bearer");
        assert_eq!(r.token_response["scope"], "openid accounts");
        assert_eq!(
            r.accounts["Data"]["Account"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["AccountId"].clone())
                .collect::<Vec<_>>(),
            [json!("acc-2001"), json!("acc-2002")]
        );
        assert_eq!(r.refreshed["token_type"], "Bearer");
        // The same sub at userinfo (over mTLS, the token is bound to the
        // transport certificate) and in introspection, as the bank's
        // gateway sees it; the bank's grant listing still names its customer.
        let access = r.refreshed["access_token"].as_str().unwrap();
        let read =
            |f: &str| std::fs::read_to_string(dir.join(format!("{SOFTWARE_ID}-{f}"))).unwrap();
        let (cert, key) = (read("transport.pem"), read("transport-key.pem"));
        let res = srv
            .client(Some((&cert, &key)))
            .get(srv.url("/userinfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let u: Value = res.json().await.unwrap();
        assert_eq!(u["sub"], r.consent_id.as_str(), "{u}");
        assert_eq!(u["openbanking_intent_id"], r.consent_id.as_str(), "{u}");
        let res = srv
            .client(None)
            .post(srv.url("/introspect"))
            .basic_auth("demo-bank", Some("demo-bank-introspection-secret"))
            .form(&[("token", access)])
            .send()
            .await
            .unwrap();
        let i: Value = res.json().await.unwrap();
        assert_eq!(i["active"], true, "{i}");
        assert_eq!(i["sub"], r.consent_id.as_str(), "{i}");
        let res = srv
            .client(None)
            .get(srv.url(&format!("/bank/grants?consent_id={}", r.consent_id)))
            .bearer_auth("demo-bank-api-token")
            .send()
            .await
            .unwrap();
        let g: Value = res.json().await.unwrap();
        assert_eq!(
            g["grants"][0]["sub"], "cust-0002",
            "the bank's customer noah: {g}"
        );
        node_check(&r, &srv, &dir);
    }
    srv.stop().await;
}

/// Issue 25 item 8: the UK TPP walkthrough (what Open Banking Connector
/// does) against config/examples/uk-ob.toml as shipped and the demo bank,
/// signed and encrypted request objects, on SQLite and PostgreSQL.
#[actix_web::test]
async fn the_uk_example_config_serves_the_uk_tpp_walkthrough() {
    for backend in crate::harness::BACKENDS {
        uk_walkthrough(backend).await;
    }
}

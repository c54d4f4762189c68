//! Dynamic client registration through the running server, on SQLite and
//! PostgreSQL: a TPP with a software statement from a test directory
//! registers over mTLS (UK Open Banking DCR v3.3), completes the FAPI 2.0
//! flow with its new client, and manages the registration (RFC 7592);
//! every bad registration is refused with the RFC 7591 error and leaves no
//! client behind. The OBIE DCR conformance scenarios are named where they
//! are covered (DCR-001 … DCR-011).
//!
//! SSAs and registration requests are built here with jsonwebtoken, not
//! with Strongroom code.

use std::sync::LazyLock;

use jsonwebtoken::Algorithm;
use oauth_core::storage::ClientRepository;
use serde_json::{Value, json};
use strongroom::config::Config;
use strongroom::devcerts::{DnType, KeyAlg, issue_client_cert};

use crate::fapi::{PASSWORD, USER, demo_user};
use crate::harness::{BACKENDS, Backend, Setup, TestServer};
use crate::tpp::*;

const DIR_ISS: &str = "Strongroom Test Directory";
const DIR_KID: &str = "test-directory-1";

/// The test directory's signing key (one per test process).
static DIRECTORY: LazyLock<TppKey> = LazyLock::new(|| TppKey::ps256(DIR_KID));

pub(crate) fn directory_config() -> Value {
    json!({
        "name": "test",
        "issuer": DIR_ISS,
        "jwks": {"keys": [DIRECTORY.jwk]},
        "max_ssa_age_secs": 600,
        "base_scopes": ["openid", "profile"],
        "role_scopes": {"AISP": ["accounts"], "PISP": ["payments"], "CBPII": ["fundsconfirmations"]},
        "rules": "uk-ob",
    })
}

pub fn with_directory(cfg: &mut Config) {
    cfg.directories = vec![serde_json::from_value(directory_config()).unwrap()];
}

fn with_low_rate_limit(cfg: &mut Config) {
    with_directory(cfg);
    cfg.registration.rate_limit_per_software = 2;
}

/// A TPP's software as the directory knows it, with its transport
/// certificate (OU = org id, CN = software id) and signing key.
pub(crate) struct Software {
    software_id: String,
    org_id: String,
    key: TppKey,
    cert: (String, String),
    redirect_uris: Vec<String>,
    roles: Vec<&'static str>,
}

impl Software {
    pub(crate) fn new(setup: &Setup, software_id: &str) -> Software {
        let (ca, ca_key) = setup.dev_ca();
        let org_id = "0015800001041REAAY".to_string();
        let cert = issue_client_cert(
            &ca,
            &ca_key,
            &[
                (DnType::CountryName, "GB"),
                (DnType::OrganizationName, "OpenBanking"),
                (DnType::OrganizationalUnitName, &org_id),
                (DnType::CommonName, software_id),
            ],
            &[],
            KeyAlg::EcdsaP256,
        )
        .unwrap();
        Software {
            software_id: software_id.into(),
            org_id,
            key: TppKey::es256(&format!("{software_id}-sig")),
            cert,
            redirect_uris: vec![
                format!("https://{software_id}.example/cb"),
                format!("https://{software_id}.example/cb2"),
            ],
            roles: vec!["AISP"],
        }
    }

    fn subject_dn(&self) -> String {
        format!(
            "CN={},OU={},O=OpenBanking,C=GB",
            self.software_id, self.org_id
        )
    }

    fn ssa_claims(&self) -> Value {
        json!({
            "iss": DIR_ISS,
            "iat": now(),
            "jti": random(12),
            "software_id": self.software_id,
            "software_client_name": "Test AISP",
            "software_client_uri": "https://tpp.example",
            "software_version": "1.0",
            "software_environment": "sandbox",
            "software_mode": "Test",
            "software_redirect_uris": self.redirect_uris,
            "software_roles": self.roles,
            "software_jwks": {"keys": [self.key.jwk]},
            "org_id": self.org_id,
            "org_name": "Test TPP Ltd",
            "org_status": "Active",
        })
    }

    fn ssa(&self) -> String {
        DIRECTORY.sign(Some("JWT"), &self.ssa_claims())
    }

    pub(crate) fn request_claims(&self, srv: &TestServer) -> Value {
        let t = now();
        json!({
            "iss": self.software_id,
            "aud": srv.issuer,
            "iat": t,
            "exp": t + 300,
            "jti": random(16),
            "redirect_uris": [self.redirect_uris[0]],
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": self.subject_dn(),
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "scope": "openid accounts",
            "id_token_signed_response_alg": "PS256",
            "application_type": "web",
            "software_statement": self.ssa(),
        })
    }

    fn sign(&self, claims: &Value) -> String {
        self.key.sign(Some("JWT"), claims)
    }

    fn http(&self, srv: &TestServer) -> reqwest::Client {
        srv.client(Some((&self.cert.0, &self.cert.1)))
    }
}

async fn post_jwt(http: &reqwest::Client, url: &str, jwt: &str) -> Answer {
    answer(
        http.post(url)
            .header("content-type", "application/jwt")
            .header("accept", "application/json")
            .body(jwt.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub(crate) async fn register(srv: &TestServer, sw: &Software, claims: &Value) -> Answer {
    post_jwt(&sw.http(srv), &srv.mtls_url("/register"), &sw.sign(claims)).await
}

pub(crate) async fn dynamic_clients(srv: &TestServer) -> usize {
    let store = token_store::Store::connect(&srv.database_url, 1).unwrap();
    store
        .list_clients()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.origin == "dynamic")
        .count()
}

async fn cc_token(srv: &TestServer, http: &reqwest::Client, client_id: &str) -> String {
    let form = vec![
        ("client_id".to_string(), client_id.to_string()),
        ("grant_type".into(), "client_credentials".into()),
        ("scope".into(), "accounts".into()),
    ];
    let a = post_form(http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(a.status, 200, "client_credentials: {}", a.json);
    a.json["access_token"].as_str().unwrap().to_string()
}

async fn manage(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    jwt: Option<String>,
) -> Answer {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(jwt) = jwt {
        req = req.header("content-type", "application/jwt").body(jwt);
    }
    answer(req.send().await.unwrap()).await
}

async fn register_flow_manage(backend: Backend) {
    let mut setup = Setup::new(backend);
    setup.users = vec![demo_user()];
    setup.tweak = Some(with_directory);
    let sw = Software::new(&setup, "tppSoftware001");
    let srv = setup.start().await;
    let http = sw.http(&srv);

    // DCR-001: registration_endpoint in discovery (and its mTLS alias).
    let meta: Value = srv
        .client(None)
        .get(srv.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["registration_endpoint"], srv.url("/register"));
    assert_eq!(
        meta["mtls_endpoint_aliases"]["registration_endpoint"],
        srv.mtls_url("/register")
    );

    // DCR-002: register, 201.
    let a = register(&srv, &sw, &sw.request_claims(&srv)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(a.headers["cache-control"], "no-store");
    let client_id = a.json["client_id"].as_str().unwrap().to_string();
    assert!(client_id.len() <= 36);
    assert_eq!(a.json["token_endpoint_auth_method"], "tls_client_auth");
    assert_eq!(a.json["software_id"], sw.software_id);
    assert_eq!(a.json["org_id"], sw.org_id, "SSA claims flattened");
    assert_eq!(a.json["scope"], "openid accounts");
    assert_eq!(a.json["redirect_uris"], json!([sw.redirect_uris[0]]));
    assert!(a.json["client_id_issued_at"].is_i64());
    let reg_uri = a.json["registration_client_uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(reg_uri, srv.mtls_url(&format!("/register/{client_id}")));
    assert!(
        a.json.get("registration_access_token").is_none(),
        "UK: management uses client_credentials tokens"
    );
    assert!(a.json.get("fapi").is_none());
    assert_eq!(dynamic_clients(&srv).await, 1);

    // The new client completes the FAPI 2.0 flow like a static one.
    let tpp = Tpp {
        client_id: client_id.clone(),
        key: sw.key.clone(),
        dpop: TppKey::es256("unused"),
        redirect_uri: sw.redirect_uris[0].clone(),
        identity: Some(sw.cert.clone()),
    };
    let pkce = Pkce::new();
    let mut form = tpp.authz_params(&pkce, "openid accounts");
    form.push(("client_id".into(), client_id.clone()));
    let a = post_form(&http, &srv.mtls_url("/par"), &form, None).await;
    assert_eq!(a.status, 201, "PAR: {}", a.json);
    let request_uri = a.json["request_uri"].as_str().unwrap().to_string();
    let back = browser_flow(
        &srv,
        &srv.browser(),
        &client_id,
        &request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    let q = query(&back);
    assert!(
        back.starts_with(&sw.redirect_uris[0].to_lowercase()),
        "{back}"
    );
    let form = vec![
        ("client_id".to_string(), client_id.clone()),
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), q["code"].clone()),
        ("redirect_uri".into(), tpp.redirect_uri.clone()),
        ("code_verifier".into(), pkce.verifier.clone()),
    ];
    let a = post_form(&http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(a.status, 200, "token: {}", a.json);
    let at = a.json["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        jwt_claims(a.json["id_token"].as_str().unwrap())["aud"],
        client_id
    );
    let res = http
        .get(srv.mtls_url("/userinfo"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // DCR-005: retrieve with a client_credentials token of the client.
    let cc = cc_token(&srv, &http, &client_id).await;
    let a = manage(&http, reqwest::Method::GET, &reg_uri, &cc, None).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["client_id"], client_id);
    assert_eq!(a.json["tls_client_auth_subject_dn"], sw.subject_dn());

    // DCR-007: an invalid token → 401.
    let a = manage(&http, reqwest::Method::GET, &reg_uri, "not-a-token", None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json["error"], "invalid_token");
    assert!(a.headers.contains_key("www-authenticate"));
    // The user's access token (not client_credentials) is refused too.
    let a = manage(&http, reqwest::Method::GET, &reg_uri, &at, None).await;
    assert_eq!(a.status, 401);

    // A token of this client against another client id: 401 and revoked.
    let cc2 = cc_token(&srv, &http, &client_id).await;
    let other = srv.mtls_url("/register/someone-else");
    let a = manage(&http, reqwest::Method::GET, &other, &cc2, None).await;
    assert_eq!(a.status, 401);
    let a = manage(&http, reqwest::Method::GET, &reg_uri, &cc2, None).await;
    assert_eq!(a.status, 401, "the mismatched token was revoked");

    // DCR-008: update with the full signed metadata (another SSA redirect URI).
    let mut claims = sw.request_claims(&srv);
    claims["redirect_uris"] = json!(sw.redirect_uris);
    let a = manage(
        &http,
        reqwest::Method::PUT,
        &reg_uri,
        &cc,
        Some(sw.sign(&claims)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["redirect_uris"], json!(sw.redirect_uris));
    assert_eq!(a.json["client_id"], client_id);
    // PUT re-validates: a redirect URI outside the SSA is refused.
    let mut bad = sw.request_claims(&srv);
    bad["redirect_uris"] = json!(["https://evil.example/cb"]);
    let a = manage(
        &http,
        reqwest::Method::PUT,
        &reg_uri,
        &cc,
        Some(sw.sign(&bad)),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json["error"], "invalid_redirect_uri");
    // Long-lived tokens survive an update.
    let res = http
        .get(srv.mtls_url("/userinfo"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "PUT must not invalidate tokens");

    // A customer is at the login page when the client is deleted: the
    // journey ends on an error page, with no way back to a code.
    let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
    form.push(("client_id".into(), client_id.clone()));
    let a = post_form(&http, &srv.mtls_url("/par"), &form, None).await;
    assert_eq!(a.status, 201, "PAR: {}", a.json);
    let request_uri = a.json["request_uri"].as_str().unwrap().to_string();
    let browser = srv.browser();
    let res = browser
        .get(authorize_url(&srv, &client_id, &request_uri))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let login = srv.url(&location(&res));
    assert!(login.ends_with("/login"), "{login}");

    // DCR-003: delete → 204; tokens revoked.
    let a = manage(&http, reqwest::Method::DELETE, &reg_uri, &cc, None).await;
    assert_eq!(a.status, 204, "{}", a.json);
    for res in [
        browser.get(&login).send().await.unwrap(),
        submit_login(&browser, &login, USER, PASSWORD).await,
    ] {
        assert_eq!(res.status(), 400, "the deleted client's journey ends");
        assert!(res.headers().get("location").is_none());
        assert!(res.text().await.unwrap().contains("invalid_request"));
    }
    let res = browser
        .get(authorize_url(&srv, &client_id, &request_uri))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "nor can it start again");
    assert_eq!(dynamic_clients(&srv).await, 0);
    let res = http
        .get(srv.mtls_url("/userinfo"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "DELETE revokes the client's tokens");
    // DCR-010: retrieve deleted client → 401; DCR-009: update → 401.
    let a = manage(&http, reqwest::Method::GET, &reg_uri, &cc, None).await;
    assert_eq!(a.status, 401);
    let a = manage(
        &http,
        reqwest::Method::PUT,
        &reg_uri,
        &cc,
        Some(sw.sign(&sw.request_claims(&srv))),
    )
    .await;
    assert_eq!(a.status, 401);
    // The client is gone from the token endpoint too.
    let form = vec![
        ("client_id".to_string(), client_id.clone()),
        ("grant_type".into(), "client_credentials".into()),
    ];
    let a = post_form(&http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(a.json["error"], "invalid_client");
    srv.stop().await;
}

#[actix_web::test]
async fn dcr_uk_register_fapi2_flow_and_manage() {
    for backend in BACKENDS {
        register_flow_manage(backend).await;
    }
}

/// The test directory naming the bank's own OB organisation id.
const ASPSP_ID: &str = "0015800000jfwxXAAQ";

fn with_directory_and_aspsp_id(cfg: &mut Config) {
    let mut d = directory_config();
    d["aspsp_id"] = json!(ASPSP_ID);
    cfg.directories = vec![serde_json::from_value(d).unwrap()];
}

/// An OBWAC-shaped transport certificate (CN = org id, no OU,
/// organizationIdentifier naming `org_in_identifier`).
fn obwac(setup: &Setup, org_id: &str, org_in_identifier: &str) -> (String, String) {
    let (ca, ca_key) = setup.dev_ca();
    let ident = format!("PSDGB-OB-Unknown{org_in_identifier}");
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
    .unwrap()
}

#[actix_web::test]
async fn dcr_uk_obwac_certificates_and_the_aspsp_id_as_aud() {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Some(with_directory_and_aspsp_id);
    let mut sw = Software::new(&setup, "tppObwac001");
    sw.cert = obwac(&setup, &sw.org_id, &sw.org_id);
    let srv = setup.start().await;
    let obwac_dn = format!(
        "CN={},organizationIdentifier=PSDGB-OB-Unknown{},O=Test TPP Ltd,C=GB",
        sw.org_id, sw.org_id
    );
    let claims = |aud: &str| {
        let mut c = sw.request_claims(&srv);
        c["aud"] = json!(aud);
        c["tls_client_auth_subject_dn"] = json!(obwac_dn);
        c
    };
    // The OBWAC, with the bank's organisation id as aud (what OBC sends).
    let a = register(&srv, &sw, &claims(ASPSP_ID)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(a.json["tls_client_auth_subject_dn"], json!(obwac_dn));
    // Another aud.
    let a = register(&srv, &sw, &claims("0015800000someoneelse")).await;
    assert_error(&a, 400, &["invalid_client_metadata"]);
    assert!(
        a.json["error_description"]
            .as_str()
            .unwrap()
            .contains("aud")
    );
    // An OBWAC of another organisation (CN, or organizationIdentifier).
    for (cn, ident) in [
        ("0015800009otherORG", sw.org_id.as_str()),
        (sw.org_id.as_str(), "0015800009otherORG"),
    ] {
        let mut other = Software::new(&setup, "tppObwac001");
        other.key = sw.key.clone();
        other.cert = obwac(&setup, cn, ident);
        let a = register(&srv, &other, &claims(&srv.issuer)).await;
        assert_error(&a, 400, &["invalid_client_metadata"]);
        let d = a.json["error_description"].as_str().unwrap();
        assert!(d.contains("OU = org_id, CN = software_id, or"), "{d}");
    }
    srv.stop().await;
}

async fn bad_registrations(backend: Backend) {
    let mut setup = Setup::new(backend);
    setup.tweak = Some(with_directory);
    let sw = Software::new(&setup, "tppSoftware002");
    let (ca, ca_key) = setup.dev_ca();
    let srv = setup.start().await;
    let http = sw.http(&srv);
    let url = srv.mtls_url("/register");

    type Edit = Box<dyn Fn(&Software, &TestServer, &mut Value) -> Option<String>>;
    let ssa_with = |f: fn(&mut Value)| -> Edit {
        Box::new(move |sw: &Software, _srv: &TestServer, c: &mut Value| {
            let mut s = sw.ssa_claims();
            f(&mut s);
            c["software_statement"] = json!(DIRECTORY.sign(Some("JWT"), &s));
            None
        })
    };
    let set = |k: &'static str, v: Value| -> Edit {
        Box::new(move |_: &Software, _: &TestServer, c: &mut Value| {
            c[k] = v.clone();
            None
        })
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "SSA with a bad signature",
            Box::new(|sw: &Software, _: &TestServer, c: &mut Value| {
                let forger = TppKey::ps256(DIR_KID);
                c["software_statement"] = json!(forger.sign(Some("JWT"), &sw.ssa_claims()));
                None
            }),
            "invalid_software_statement",
        ),
        (
            "SSA with an unknown kid",
            Box::new(|sw: &Software, _: &TestServer, c: &mut Value| {
                let other = TppKey::ps256("unknown-kid");
                c["software_statement"] = json!(other.sign(Some("JWT"), &sw.ssa_claims()));
                None
            }),
            "invalid_software_statement",
        ),
        (
            "SSA from an untrusted issuer",
            ssa_with(|s| s["iss"] = json!("Some Other Directory")),
            "unapproved_software_statement",
        ),
        (
            "SSA too old",
            ssa_with(|s| s["iat"] = json!(now() - 3600)),
            "invalid_software_statement",
        ),
        (
            "SSA expired",
            ssa_with(|s| {
                s["iat"] = json!(now() - 120);
                s["exp"] = json!(now() - 60)
            }),
            "invalid_software_statement",
        ),
        (
            "SSA of a revoked organisation",
            ssa_with(|s| s["org_status"] = json!("Revoked")),
            "unapproved_software_statement",
        ),
        (
            "SSA that is not a JWT",
            set("software_statement", json!("not-a-jwt")),
            "invalid_software_statement",
        ),
        (
            "request signed with a key not in the software JWKS",
            Box::new(|_: &Software, _: &TestServer, c: &mut Value| {
                Some(TppKey::es256("tppSoftware002-sig").sign(Some("JWT"), c))
            }),
            "invalid_client_metadata",
        ),
        (
            "DCR-004 request signed with RS256",
            Box::new(|_: &Software, _: &TestServer, c: &mut Value| {
                let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
                let rs = TppKey::from_pem(&kp.serialize_pem(), Algorithm::RS256, "rs");
                Some(rs.sign(Some("JWT"), c))
            }),
            "invalid_client_metadata",
        ),
        (
            "request with a wrong aud",
            set("aud", json!("https://other-bank.example")),
            "invalid_client_metadata",
        ),
        (
            "DCR-004 expired request",
            Box::new(|_: &Software, _: &TestServer, c: &mut Value| {
                c["iat"] = json!(now() - 7200);
                c["exp"] = json!(now() - 3600);
                None
            }),
            "invalid_client_metadata",
        ),
        (
            "DCR-004 iss not the software id",
            set("iss", json!("foo.is/invalid")),
            "invalid_client_metadata",
        ),
        (
            "DCR-004 empty iss",
            set("iss", json!("")),
            "invalid_client_metadata",
        ),
        (
            "DCR-004 over-long iss",
            set("iss", json!("a".repeat(30))),
            "invalid_client_metadata",
        ),
        (
            "redirect URI outside the SSA",
            set("redirect_uris", json!(["https://elsewhere.example/cb"])),
            "invalid_redirect_uri",
        ),
        (
            "http redirect URI",
            set("redirect_uris", json!(["http://tppSoftware002.example/cb"])),
            "invalid_redirect_uri",
        ),
        (
            "unsupported auth method",
            set("token_endpoint_auth_method", json!("client_secret_basic")),
            "invalid_client_metadata",
        ),
        (
            "unsupported id_token alg",
            set("id_token_signed_response_alg", json!("RS256")),
            "invalid_client_metadata",
        ),
        (
            "subject DN not the connection's certificate",
            set(
                "tls_client_auth_subject_dn",
                json!("CN=someone-else,OU=0015800001041REAAY,O=OpenBanking,C=GB"),
            ),
            "invalid_client_metadata",
        ),
        (
            "scope beyond the roles",
            set("scope", json!("openid accounts payments")),
            "invalid_client_metadata",
        ),
        (
            "DCR-011 unsupported response_types",
            set("response_types", json!(["id_token", "token"])),
            "invalid_client_metadata",
        ),
        (
            "unsupported grant type",
            set("grant_types", json!(["implicit"])),
            "invalid_client_metadata",
        ),
        (
            "jwks by value",
            set("jwks", json!({"keys": []})),
            "invalid_client_metadata",
        ),
        (
            "software_id differs from the SSA",
            set("software_id", json!("anotherSoftware")),
            "invalid_client_metadata",
        ),
    ];
    for (name, edit, code) in cases {
        let mut claims = sw.request_claims(&srv);
        let jwt = edit(&sw, &srv, &mut claims).unwrap_or_else(|| sw.sign(&claims));
        let a = post_jwt(&http, &url, &jwt).await;
        assert_eq!(a.status, 400, "{name}: {}", a.json);
        assert_eq!(a.json["error"], code, "{name}: {}", a.json);
        assert!(
            a.json["error_description"]
                .as_str()
                .is_some_and(|d| d.len() > 10),
            "{name}: a helpful description"
        );
    }

    // Malformed bodies, no certificate, an untrusted certificate, too big.
    let a = post_jwt(&http, &url, "not-a-jwt").await;
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
    let a = answer(
        http.post(&url)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.json);
    let a = answer(
        http.post(&url)
            .header("content-type", "application/json")
            .body(json!({"software_statement": sw.ssa()}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        a.status, 400,
        "UK directory expects a signed request: {}",
        a.json
    );
    let a = post_jwt(&srv.client(None), &url, &sw.sign(&sw.request_claims(&srv))).await;
    assert_eq!(a.status, 400, "no client certificate: {}", a.json);
    assert_eq!(a.json["error"], "invalid_request");
    let a = answer(
        http.post(&url)
            .header("content-type", "application/jwt")
            .body("a".repeat(70 * 1024))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400, "oversized body: {}", a.json);
    // A certificate for another software (CN) is refused even with a matching DN.
    let (cert, key) = issue_client_cert(
        &ca,
        &ca_key,
        &[
            (DnType::CountryName, "GB"),
            (DnType::OrganizationName, "OpenBanking"),
            (DnType::OrganizationalUnitName, "0015800001041REAAY"),
            (DnType::CommonName, "otherSoftware"),
        ],
        &[],
        KeyAlg::EcdsaP256,
    )
    .unwrap();
    let mut claims = sw.request_claims(&srv);
    claims["tls_client_auth_subject_dn"] =
        json!("CN=otherSoftware,OU=0015800001041REAAY,O=OpenBanking,C=GB");
    let a = post_jwt(&srv.client(Some((&cert, &key))), &url, &sw.sign(&claims)).await;
    assert_eq!(a.status, 400, "{}", a.json);
    assert_eq!(a.json["error"], "invalid_client_metadata");
    assert_eq!(dynamic_clients(&srv).await, 0, "nothing was created");

    // A reused jti: the first registration passes, the replay does not.
    let jwt = sw.sign(&sw.request_claims(&srv));
    let a = post_jwt(&http, &url, &jwt).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let a = post_jwt(&http, &url, &jwt).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json["error"], "invalid_client_metadata");
    assert!(
        a.json["error_description"]
            .as_str()
            .unwrap()
            .contains("jti")
    );
    assert_eq!(dynamic_clients(&srv).await, 1);
    srv.stop().await;
}

#[actix_web::test]
async fn dcr_bad_registrations_are_refused_and_create_nothing() {
    for backend in BACKENDS {
        bad_registrations(backend).await;
    }
}

async fn rate_limited(backend: Backend) {
    let mut setup = Setup::new(backend);
    setup.tweak = Some(with_low_rate_limit);
    let sw = Software::new(&setup, "tppSoftware003");
    let srv = setup.start().await;
    for _ in 0..2 {
        let a = register(&srv, &sw, &sw.request_claims(&srv)).await;
        assert_eq!(a.status, 201, "{}", a.json);
    }
    let a = register(&srv, &sw, &sw.request_claims(&srv)).await;
    assert_eq!(a.status, 429, "{}", a.json);
    assert!(a.headers.contains_key("retry-after"));
    assert_eq!(dynamic_clients(&srv).await, 2);
    srv.stop().await;
}

#[actix_web::test]
async fn dcr_registrations_are_rate_limited_per_software() {
    for backend in BACKENDS {
        rate_limited(backend).await;
    }
}

#[actix_web::test]
async fn dcr_not_advertised_without_directory() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let meta: Value = srv
        .client(None)
        .get(srv.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta.get("registration_endpoint").is_none());
    let a = answer(
        srv.client(None)
            .post(srv.mtls_url("/register"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400);
    srv.stop().await;
}

// ---------------------------------------------------------------------------
// Brazil Open Finance, directory JWKS by URL, initial access tokens.
// Mirrors the OIDF Brazil DCR modules (brazildcr-happy-flow,
// -update-client-config, -client-delete, -invalid-registration-access-token,
// brazil-dcr-invalid-*): /work/shared/conformance/oidf-modules.md §4.
// ---------------------------------------------------------------------------

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const BR_ISS: &str = "Open Banking Open Banking Brasil production SSA issuer";
const BR_ORG: &str = "74e929d9-33b6-4d85-8ba7-c146c867a817";

thread_local! {
    /// The directories and `[registration]` of the next server started on
    /// this thread (the harness's tweak is a plain `fn`, and the directory
    /// URLs carry ephemeral ports).
    static NEXT: RefCell<(Vec<Value>, Option<Value>)> = const { RefCell::new((Vec::new(), None)) };
}

fn from_thread(cfg: &mut Config) {
    NEXT.with(|n| {
        let (dirs, reg) = &*n.borrow();
        cfg.directories = dirs
            .iter()
            .map(|d| serde_json::from_value(d.clone()).unwrap())
            .collect();
        if let Some(r) = reg {
            cfg.registration = serde_json::from_value(r.clone()).unwrap();
        }
    });
}

/// Starts a server whose configuration holds `dirs` and `registration`.
pub(crate) async fn start_with(
    setup: &mut Setup,
    dirs: Vec<Value>,
    registration: Option<Value>,
) -> TestServer {
    NEXT.with(|n| *n.borrow_mut() = (dirs, registration));
    setup.tweak = Some(from_thread);
    // `start` reads the configuration before its first await.
    setup.start().await
}

/// What the key host serves.
struct HostState {
    directory: Mutex<Value>,
    software: Mutex<Vec<(String, Value)>>,
    up: AtomicBool,
    directory_fetches: AtomicUsize,
}

/// A tiny HTTPS server (the setup's dev-CA localhost certificate, which the
/// server trusts in dev mode) publishing the directory's JWKS at
/// `/directory/jwks` and software JWKS at `/software/{id}/application.jwks`.
struct KeyHost {
    base: String,
    state: Arc<HostState>,
    handle: actix_web::dev::ServerHandle,
}

async fn serve_keys(
    req: actix_web::HttpRequest,
    state: actix_web::web::Data<HostState>,
) -> actix_web::HttpResponse {
    if !state.up.load(Ordering::SeqCst) {
        return actix_web::HttpResponse::ServiceUnavailable().finish();
    }
    let path = req.path();
    let body = if path == "/directory/jwks" {
        state.directory_fetches.fetch_add(1, Ordering::SeqCst);
        Some(state.directory.lock().unwrap().clone())
    } else {
        state
            .software
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
    };
    match body {
        Some(v) => actix_web::HttpResponse::Ok()
            .content_type("application/jwk-set+json")
            .body(v.to_string()),
        None => actix_web::HttpResponse::NotFound().finish(),
    }
}

impl KeyHost {
    fn start(setup: &Setup, directory_keys: &[&TppKey]) -> KeyHost {
        let dev = strongroom::devcerts::ensure_dev_certs(&setup.data_dir).unwrap();
        let tls = strongroom::tls::ServerTls::build(
            strongroom::tls::TlsProfile::Fapi2,
            &dev.server_chain,
            &dev.server_key,
        )
        .unwrap();
        let state = Arc::new(HostState {
            directory: Mutex::new(jwks_of(directory_keys)),
            software: Mutex::new(Vec::new()),
            up: AtomicBool::new(true),
            directory_fetches: AtomicUsize::new(0),
        });
        let data = actix_web::web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .default_service(actix_web::web::to(serve_keys))
        })
        .workers(1)
        .listen_rustls_0_23(listener, tls.browser())
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        KeyHost {
            base: format!("https://localhost:{port}"),
            state,
            handle,
        }
    }

    fn directory_jwks_uri(&self) -> String {
        format!("{}/directory/jwks", self.base)
    }

    /// Publishes a software JWKS; returns its URL.
    fn publish_software(&self, software_id: &str, key: &TppKey) -> String {
        let path = format!("/software/{software_id}/application.jwks");
        self.state
            .software
            .lock()
            .unwrap()
            .push((path.clone(), jwks_of(&[key])));
        format!("{}{path}", self.base)
    }

    fn set_directory_keys(&self, keys: &[&TppKey]) {
        *self.state.directory.lock().unwrap() = jwks_of(keys);
    }

    fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    fn directory_fetches(&self) -> usize {
        self.state.directory_fetches.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

fn jwks_of(keys: &[&TppKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

fn brazil_directory(jwks_uri: &str) -> Value {
    json!({
        "name": "br",
        "issuer": BR_ISS,
        "jwks_uri": jwks_uri,
        "algs": ["PS256"],
        "role_scopes": {"DADOS": ["accounts"], "PAGTO": ["payments"]},
        "rules": "brazil",
    })
}

/// A Brazil TPP: ICP-Brasil-style certificate (OU = org id, UID = software
/// id), a PS256 signing key published at `software_jwks_uri`.
struct BrSoftware {
    software_id: String,
    key: TppKey,
    cert: (String, String),
    jwks_uri: String,
    redirect_uris: Vec<String>,
}

impl BrSoftware {
    fn new(setup: &Setup, host: &KeyHost, software_id: &str) -> BrSoftware {
        Self::with_uid(setup, host, software_id, software_id)
    }

    /// `uid` is the software id written in the certificate.
    fn with_uid(setup: &Setup, host: &KeyHost, software_id: &str, uid: &str) -> BrSoftware {
        let (ca, ca_key) = setup.dev_ca();
        let cert = issue_client_cert(
            &ca,
            &ca_key,
            &[
                (DnType::CountryName, "BR"),
                (DnType::OrganizationName, "Banco Teste SA"),
                (DnType::OrganizationalUnitName, BR_ORG),
                (
                    DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
                    uid,
                ),
            ],
            &[],
            KeyAlg::EcdsaP256,
        )
        .unwrap();
        let key = TppKey::ps256(&format!("{software_id}-sig"));
        let jwks_uri = host.publish_software(software_id, &key);
        BrSoftware {
            software_id: software_id.into(),
            key,
            cert,
            jwks_uri,
            redirect_uris: vec![
                format!("https://{software_id}.example/cb"),
                format!("https://{software_id}.example/cb2"),
            ],
        }
    }

    fn subject_dn(&self) -> String {
        format!("UID={},OU={BR_ORG},O=Banco Teste SA,C=BR", self.software_id)
    }

    /// SSA claims as the Brazil directory issues them.
    fn ssa_claims(&self) -> Value {
        json!({
            "iss": BR_ISS,
            "iat": now(),
            "jti": random(12),
            "software_id": self.software_id,
            "software_client_name": "TPP Brasil",
            "software_redirect_uris": self.redirect_uris,
            "software_roles": ["DADOS"],
            "software_jwks_uri": self.jwks_uri,
            "software_mode": "Live",
            "org_id": BR_ORG,
            "org_name": "Banco Teste SA",
            "org_status": "Active",
        })
    }

    fn ssa_signed_by(&self, key: &TppKey) -> String {
        key.sign(Some("JWT"), &self.ssa_claims())
    }

    /// brazildcr-happy-flow's registration body (mTLS client).
    fn body(&self, ssa: &str) -> Value {
        json!({
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": self.subject_dn(),
            "response_types": ["code"],
            "redirect_uris": [self.redirect_uris[0]],
            "jwks_uri": self.jwks_uri,
            "scope": "openid accounts",
            "software_statement": ssa,
        })
    }

    fn http(&self, srv: &TestServer) -> reqwest::Client {
        srv.client(Some((&self.cert.0, &self.cert.1)))
    }
}

pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    bearer: Option<&str>,
) -> Answer {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    answer(req.send().await.unwrap()).await
}

async fn put_json(http: &reqwest::Client, url: &str, body: &Value, bearer: &str) -> Answer {
    answer(
        http.put(url)
            .header("content-type", "application/json")
            .bearer_auth(bearer)
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// PAR, the built-in login/consent pages, and the code exchange for an mTLS
/// client; returns the access token.
async fn mtls_code_flow(
    srv: &TestServer,
    http: &reqwest::Client,
    client_id: &str,
    redirect_uri: &str,
) -> String {
    let pkce = Pkce::new();
    let tpp = Tpp {
        redirect_uri: redirect_uri.into(),
        ..Tpp::new(client_id)
    };
    let mut form = tpp.authz_params(&pkce, "openid accounts");
    form.push(("client_id".into(), client_id.into()));
    let a = post_form(http, &srv.mtls_url("/par"), &form, None).await;
    assert_eq!(a.status, 201, "PAR: {}", a.json);
    let request_uri = a.json["request_uri"].as_str().unwrap().to_string();
    let back = browser_flow(
        srv,
        &srv.browser(),
        client_id,
        &request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    assert!(back.starts_with(&redirect_uri.to_lowercase()), "{back}");
    let q = query(&back);
    let form = vec![
        ("client_id".to_string(), client_id.to_string()),
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), q["code"].clone()),
        ("redirect_uri".into(), redirect_uri.into()),
        ("code_verifier".into(), pkce.verifier.clone()),
    ];
    let a = post_form(http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(a.status, 200, "token: {}", a.json);
    a.json["access_token"].as_str().unwrap().to_string()
}

async fn brazil_register_flow_manage(backend: Backend) {
    let directory = TppKey::ps256("br-dir-1");
    let mut setup = Setup::new(backend);
    setup.users = vec![demo_user()];
    let host = KeyHost::start(&setup, &[&directory]);
    let sw = BrSoftware::new(&setup, &host, "brSoftware001");
    let srv = start_with(
        &mut setup,
        vec![brazil_directory(&host.directory_jwks_uri())],
        None,
    )
    .await;
    let http = sw.http(&srv);
    let url = srv.mtls_url("/register");

    // brazildcr-happy-flow: register → 201 with the RFC 7592 credentials.
    let a = post_json(&http, &url, &sw.body(&sw.ssa_signed_by(&directory)), None).await;
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(a.headers["cache-control"], "no-store");
    let reg = a.json.clone();
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    let rat = reg["registration_access_token"]
        .as_str()
        .expect("Brazil: RFC 7592 registration access token")
        .to_string();
    let reg_uri = reg["registration_client_uri"].as_str().unwrap().to_string();
    assert_eq!(reg_uri, srv.mtls_url(&format!("/register/{client_id}")));
    assert_eq!(reg["jwks_uri"], sw.jwks_uri, "the SSA's software_jwks_uri");
    assert_eq!(reg["redirect_uris"], json!([sw.redirect_uris[0]]));
    assert_eq!(reg["tls_client_auth_subject_dn"], sw.subject_dn());
    assert_eq!(reg["scope"], "openid accounts");
    assert!(
        reg.get("org_id").is_none(),
        "Brazil does not flatten the SSA"
    );
    assert_eq!(dynamic_clients(&srv).await, 1);
    assert_eq!(
        host.directory_fetches(),
        1,
        "SSA verified with the directory JWKS by URL"
    );

    // GET twice: the same document, the same token and URI.
    let g1 = manage(&http, reqwest::Method::GET, &reg_uri, &rat, None).await;
    assert_eq!(g1.status, 200, "{}", g1.json);
    assert_eq!(g1.headers["content-type"], "application/json");
    let g2 = manage(&http, reqwest::Method::GET, &reg_uri, &rat, None).await;
    assert_eq!(g2.status, 200);
    assert_eq!(g1.json, g2.json);
    for k in [
        "client_id",
        "redirect_uris",
        "registration_client_uri",
        "registration_access_token",
        "jwks_uri",
        "token_endpoint_auth_method",
        "scope",
    ] {
        assert_eq!(g1.json[k], reg[k], "{k} as registered");
    }

    // The registered client completes the FAPI 2.0 flow.
    mtls_code_flow(&srv, &http, &client_id, &sw.redirect_uris[0]).await;

    // brazildcr-update-client-config: PUT the registration response with
    // another redirect URI → 200; the flow works with the new URI only.
    let mut update = reg.clone();
    update["redirect_uris"] = json!([sw.redirect_uris[1]]);
    let a = put_json(&http, &reg_uri, &update, &rat).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["redirect_uris"], json!([sw.redirect_uris[1]]));
    assert_eq!(a.json["registration_access_token"], rat);
    let g = manage(&http, reqwest::Method::GET, &reg_uri, &rat, None).await;
    assert_eq!(g.json["redirect_uris"], json!([sw.redirect_uris[1]]));
    mtls_code_flow(&srv, &http, &client_id, &sw.redirect_uris[1]).await;
    let pkce = Pkce::new();
    let tpp = Tpp {
        redirect_uri: sw.redirect_uris[0].clone(),
        ..Tpp::new(&client_id)
    };
    let mut form = tpp.authz_params(&pkce, "openid accounts");
    form.push(("client_id".into(), client_id.clone()));
    let a = post_form(&http, &srv.mtls_url("/par"), &form, None).await;
    assert_eq!(a.status, 400, "the old redirect URI is gone: {}", a.json);
    // PUT re-validates: jwks by value and a foreign redirect URI are refused.
    let mut bad = reg.clone();
    bad["jwks"] = json!({"keys": [sw.key.jwk]});
    let a = put_json(&http, &reg_uri, &bad, &rat).await;
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
    let mut bad = reg.clone();
    bad["redirect_uris"] = json!(["https://elsewhere.example/cb"]);
    let a = put_json(&http, &reg_uri, &bad, &rat).await;
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (400, Some("invalid_redirect_uri"))
    );

    // brazildcr-invalid-registration-access-token: 401, no client data.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let a = manage(&http, method.clone(), &reg_uri, "wrong-token", None).await;
        assert_eq!(a.status, 401, "{method}: {}", a.json);
        assert_eq!(a.json["error"], "invalid_token");
        assert!(a.json.get("client_id").is_none() && a.json.get("redirect_uris").is_none());
    }
    assert_eq!(
        dynamic_clients(&srv).await,
        1,
        "a bad token deletes nothing"
    );

    // A private_key_jwt client: the software JWKS is fetched by URL.
    let mut body = sw.body(&sw.ssa_signed_by(&directory));
    body["token_endpoint_auth_method"] = json!("private_key_jwt");
    body["token_endpoint_auth_signing_alg"] = json!("PS256");
    body.as_object_mut()
        .unwrap()
        .remove("tls_client_auth_subject_dn");
    let a = post_json(&http, &url, &body, None).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let pk_id = a.json["client_id"].as_str().unwrap().to_string();
    let tpp = Tpp {
        key: sw.key.clone(),
        ..Tpp::new(&pk_id)
    };
    let mut form = tpp.auth_fields(&srv);
    form.push(("grant_type".into(), "client_credentials".into()));
    let a = post_form(&http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(
        a.status, 200,
        "private_key_jwt with the software JWKS: {}",
        a.json
    );

    // brazildcr-client-delete: DELETE → 204; GET → 401; client_credentials
    // with that client → invalid_client.
    let a = manage(&http, reqwest::Method::DELETE, &reg_uri, &rat, None).await;
    assert_eq!(a.status, 204, "{}", a.json);
    let a = manage(&http, reqwest::Method::GET, &reg_uri, &rat, None).await;
    assert_eq!(a.status, 401);
    assert!(a.json.get("client_id").is_none());
    let form = vec![
        ("client_id".to_string(), client_id.clone()),
        ("grant_type".into(), "client_credentials".into()),
    ];
    let a = post_form(&http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(a.json["error"], "invalid_client", "{}", a.json);
    assert_eq!(
        dynamic_clients(&srv).await,
        1,
        "only the private_key_jwt client is left"
    );
    srv.stop().await;
    host.stop().await;
}

#[actix_web::test]
async fn dcr_brazil_register_flow_and_rfc7592_management() {
    for backend in BACKENDS {
        brazil_register_flow_manage(backend).await;
    }
}

async fn brazil_bad_registrations(backend: Backend) {
    let directory = TppKey::ps256("br-dir-1");
    let mut setup = Setup::new(backend);
    let host = KeyHost::start(&setup, &[&directory]);
    let sw = BrSoftware::new(&setup, &host, "brSoftware002");
    let impostor = BrSoftware::with_uid(&setup, &host, "brSoftware002", "someOtherSoftware");
    let srv = start_with(
        &mut setup,
        vec![brazil_directory(&host.directory_jwks_uri())],
        None,
    )
    .await;
    let http = sw.http(&srv);
    let url = srv.mtls_url("/register");

    let ssa_at = |age: i64| {
        let mut c = sw.ssa_claims();
        c["iat"] = json!(now() - age);
        directory.sign(Some("JWT"), &c)
    };
    type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "SSA iat older than 5 minutes (+30 s clock-skew leeway)",
            Box::new(|b: &mut Value| b["software_statement"] = json!(ssa_at(360))),
            "invalid_software_statement",
        ),
        (
            "SSA signed by another key with the directory's kid",
            Box::new(|b: &mut Value| {
                b["software_statement"] = json!(sw.ssa_signed_by(&TppKey::ps256("br-dir-1")))
            }),
            "invalid_software_statement",
        ),
        (
            "SSA signed ES256 (Brazil: PS256 only)",
            Box::new(|b: &mut Value| {
                b["software_statement"] = json!(sw.ssa_signed_by(&TppKey::es256("br-dir-1")))
            }),
            "invalid_software_statement",
        ),
        (
            "jwks by value",
            Box::new(|b: &mut Value| b["jwks"] = json!({"keys": [sw.key.jwk]})),
            "invalid_client_metadata",
        ),
        (
            "jwks_uri not the directory-hosted one",
            Box::new(|b: &mut Value| b["jwks_uri"] = json!("https://brSoftware002.example/jwks")),
            "invalid_client_metadata",
        ),
        (
            "redirect URI not in software_redirect_uris",
            Box::new(|b: &mut Value| {
                b["redirect_uris"] = json!(["https://brSoftware002.example/other"])
            }),
            "invalid_redirect_uri",
        ),
        (
            "tls_client_auth without tls_client_auth_subject_dn",
            Box::new(|b: &mut Value| {
                b.as_object_mut()
                    .unwrap()
                    .remove("tls_client_auth_subject_dn");
            }),
            "invalid_client_metadata",
        ),
        (
            "subject DN not the connection's certificate",
            Box::new(|b: &mut Value| {
                b["tls_client_auth_subject_dn"] =
                    json!(format!("UID=x,OU={BR_ORG},O=Banco Teste SA,C=BR"))
            }),
            "invalid_client_metadata",
        ),
        (
            "no software statement (its values in the body)",
            Box::new(|b: &mut Value| {
                let ssa = sw.ssa_claims();
                let o = b.as_object_mut().unwrap();
                o.remove("software_statement");
                for (k, v) in ssa.as_object().unwrap() {
                    o.insert(k.clone(), v.clone());
                }
            }),
            "invalid_software_statement",
        ),
    ];
    for (name, edit, code) in cases {
        let mut body = sw.body(&sw.ssa_signed_by(&directory));
        edit(&mut body);
        let a = post_json(&http, &url, &body, None).await;
        assert_eq!(a.status, 400, "{name}: {}", a.json);
        assert_eq!(a.json["error"], code, "{name}: {}", a.json);
        assert!(
            a.json["error_description"]
                .as_str()
                .is_some_and(|d| d.len() > 10),
            "{name}: a helpful description"
        );
    }
    // brazil-dcr-no-mtls / -bad-mtls: no certificate, or one for another software.
    let body = sw.body(&sw.ssa_signed_by(&directory));
    let a = post_json(&srv.client(None), &url, &body, None).await;
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (400, Some("invalid_request")),
        "{}",
        a.json
    );
    let mut body = sw.body(&sw.ssa_signed_by(&directory));
    body["tls_client_auth_subject_dn"] = json!(format!(
        "UID=someOtherSoftware,OU={BR_ORG},O=Banco Teste SA,C=BR"
    ));
    let a = post_json(&impostor.http(&srv), &url, &body, None).await;
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "certificate UID ≠ software_id: {}",
        a.json
    );
    // A signed request JWT where the directory expects RFC 7591 JSON.
    let a = post_jwt(&http, &url, &sw.key.sign(Some("JWT"), &body)).await;
    assert_eq!(a.status, 400, "{}", a.json);
    assert_eq!(dynamic_clients(&srv).await, 0, "nothing was created");

    // Within the 5 minutes the SSA is fine.
    let mut body = sw.body(&ssa_at(240));
    body["redirect_uris"] = json!(sw.redirect_uris);
    let a = post_json(&http, &url, &body, None).await;
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(dynamic_clients(&srv).await, 1);
    srv.stop().await;
    host.stop().await;
}

#[actix_web::test]
async fn dcr_brazil_bad_registrations_are_refused_and_create_nothing() {
    for backend in BACKENDS {
        brazil_bad_registrations(backend).await;
    }
}

/// The Strongroom JWKS resolver refetches a set at most once per 30 s.
const MIN_REFETCH_SECS: u64 = 30;

async fn directory_outage_and_rotation(backend: Backend) {
    let k1 = TppKey::ps256("br-dir-1");
    let k2 = TppKey::ps256("br-dir-2");
    let mut setup = Setup::new(backend);
    let host = KeyHost::start(&setup, &[&k1]);
    let sw = BrSoftware::new(&setup, &host, "brSoftware003");
    // A second directory whose JWKS endpoint nobody listens on: port 1 on
    // loopback. (An ephemeral port freed a moment ago was once taken by
    // another test's key host meanwhile, which answered with other keys.)
    let mut down = brazil_directory("https://localhost:1/jwks");
    down["name"] = json!("down");
    down["issuer"] = json!("Unreachable Directory");
    let srv = start_with(
        &mut setup,
        vec![brazil_directory(&host.directory_jwks_uri()), down],
        None,
    )
    .await;
    let http = sw.http(&srv);
    let url = srv.mtls_url("/register");
    let register_with = |key: &TppKey, iss: &str| {
        let mut c = sw.ssa_claims();
        c["iss"] = json!(iss);
        sw.body(&key.sign(Some("JWT"), &c))
    };

    // Nothing cached and the directory unreachable: 503, nothing created.
    let a = post_json(
        &http,
        &url,
        &register_with(&k1, "Unreachable Directory"),
        None,
    )
    .await;
    assert_eq!(a.status, 503, "{}", a.json);
    assert_eq!(a.json["error"], "temporarily_unavailable");
    assert!(
        a.json["error_description"]
            .as_str()
            .unwrap()
            .contains("down"),
        "{}",
        a.json
    );
    assert_eq!(dynamic_clients(&srv).await, 0);

    // Fetched once, then cached: registration keeps working while the
    // directory is down.
    let a = post_json(&http, &url, &register_with(&k1, BR_ISS), None).await;
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(host.directory_fetches(), 1);
    host.set_up(false);
    let a = post_json(&http, &url, &register_with(&k1, BR_ISS), None).await;
    assert_eq!(a.status, 201, "the cached directory keys: {}", a.json);
    // An unknown kid while down: a clean refusal, not a crash.
    let a = post_json(&http, &url, &register_with(&k2, BR_ISS), None).await;
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (400, Some("invalid_software_statement")),
        "{}",
        a.json
    );
    assert_eq!(dynamic_clients(&srv).await, 2);

    // The directory rotates to k2; once the refetch interval has passed, an
    // SSA signed with the new kid triggers exactly one refetch.
    host.set_directory_keys(&[&k1, &k2]);
    host.set_up(true);
    actix_web::rt::time::sleep(std::time::Duration::from_secs(MIN_REFETCH_SECS + 1)).await;
    let before = host.directory_fetches();
    let a = post_json(&http, &url, &register_with(&k2, BR_ISS), None).await;
    assert_eq!(a.status, 201, "the new kid after one refetch: {}", a.json);
    assert_eq!(host.directory_fetches(), before + 1, "one refetch");
    let a = post_json(&http, &url, &register_with(&k2, BR_ISS), None).await;
    assert_eq!(a.status, 201, "{}", a.json);
    // Another unknown kid right away: refused without hammering the directory.
    let a = post_json(
        &http,
        &url,
        &register_with(&TppKey::ps256("br-dir-9"), BR_ISS),
        None,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.json);
    assert_eq!(
        host.directory_fetches(),
        before + 1,
        "refetches are rate-limited"
    );
    assert_eq!(dynamic_clients(&srv).await, 4);
    srv.stop().await;
    host.stop().await;
}

#[actix_web::test]
async fn dcr_directory_jwks_outage_cache_and_kid_refetch() {
    // Both backends at once: each waits out the refetch interval.
    tokio::join!(
        directory_outage_and_rotation(Backend::Sqlite),
        directory_outage_and_rotation(Backend::Postgres),
    );
}

async fn initial_access_token(backend: Backend) {
    const TOKEN: &str = "initial-access-token-for-tests-0123456789";
    let mut setup = Setup::new(backend);
    let srv = start_with(
        &mut setup,
        Vec::new(),
        Some(json!({"initial_access_tokens_sha256": [sha256_b64(TOKEN.as_bytes())], "initial_access_scopes": ["openid", "profile"]})),
    )
    .await;
    let meta: Value = srv
        .client(None)
        .get(srv.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["registration_endpoint"], srv.url("/register"));

    let tpp = Tpp::new("unused");
    let body = json!({
        "redirect_uris": ["https://rp7591.example/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "grant_types": ["authorization_code"],
        "jwks": {"keys": [tpp.key.jwk]},
        "dpop_bound_access_tokens": true,
        "scope": "openid profile",
        "client_name": "Plain RFC 7591 client",
    });
    let http = srv.client(None);
    let url = srv.url("/register");
    // Required and missing, or wrong: 401 invalid_token, nothing created.
    for bearer in [None, Some("not-the-initial-access-token")] {
        let a = post_json(&http, &url, &body, bearer).await;
        assert_eq!(a.status, 401, "{bearer:?}: {}", a.json);
        assert_eq!(a.json["error"], "invalid_token");
        assert!(a.headers.contains_key("www-authenticate"));
    }
    // Scope beyond what initial-access-token clients may have.
    let mut wide = body.clone();
    wide["scope"] = json!("openid accounts");
    let a = post_json(&http, &url, &wide, Some(TOKEN)).await;
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
    assert_eq!(dynamic_clients(&srv).await, 0);

    let a = post_json(&http, &url, &body, Some(TOKEN)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let client_id = a.json["client_id"].as_str().unwrap().to_string();
    let rat = a.json["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rat, TOKEN);
    assert_eq!(a.json["client_name"], "Plain RFC 7591 client");
    assert!(a.json.get("software_statement").is_none());
    assert_eq!(dynamic_clients(&srv).await, 1);
    // The registration access token manages it; the initial one does not.
    let reg_uri = a.json["registration_client_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let g = manage(&http, reqwest::Method::GET, &reg_uri, &rat, None).await;
    assert_eq!(g.status, 200, "{}", g.json);
    assert_eq!(g.json["client_id"], client_id);
    assert_eq!(g.json["registration_access_token"], rat);
    let g = manage(&http, reqwest::Method::GET, &reg_uri, TOKEN, None).await;
    assert_eq!(g.status, 401);

    // The client works: PAR with private_key_jwt.
    let tpp = Tpp {
        key: tpp.key.clone(),
        redirect_uri: "https://rp7591.example/cb".into(),
        ..Tpp::new(&client_id)
    };
    let mut form = tpp.authz_params(&Pkce::new(), "openid profile");
    form.extend(tpp.auth_fields(&srv));
    let a = post_form(&http, &srv.url("/par"), &form, None).await;
    assert_eq!(a.status, 201, "PAR with the registered client: {}", a.json);
    srv.stop().await;
}

#[actix_web::test]
async fn dcr_rfc7591_json_with_initial_access_token() {
    for backend in BACKENDS {
        initial_access_token(backend).await;
    }
}

/// A self-signed certificate (PEM cert, PEM key) and its key as a TPP key.
fn self_signed_identity(cn: &str, kid: &str) -> (String, String, TppKey) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&kp).unwrap();
    let key = TppKey::from_pem(&kp.serialize_pem(), Algorithm::ES256, kid);
    (cert.pem(), kp.serialize_pem(), key)
}

/// RFC 8705 §2.2 at registration (issue 22 §4): a
/// `self_signed_tls_client_auth` client registers over mTLS with its own
/// self-signed certificate, which chains to no CA, and is accepted when the
/// certificate's key is among the keys it registers (`jwks`, or the set at
/// its `jwks_uri`); then it authenticates with that certificate.
async fn self_signed_registration(backend: Backend) {
    const TOKEN: &str = "initial-access-token-for-tests-0123456789";
    let mut setup = Setup::new(backend);
    let host = KeyHost::start(&setup, &[]);
    let srv = start_with(
        &mut setup,
        Vec::new(),
        Some(json!({"initial_access_tokens_sha256": [sha256_b64(TOKEN.as_bytes())], "initial_access_scopes": ["openid"]})),
    )
    .await;
    let url = srv.mtls_url("/register");
    let (cert, key, cert_key) = self_signed_identity("self-signed-rp", "ss-1");
    let http = srv.client(Some((&cert, &key)));
    let unrelated = TppKey::es256("unrelated");
    let redirect_uri = "https://selfsigned.example/cb";
    let body = |keys: Value| {
        let mut b = json!({
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "grant_types": ["authorization_code"],
            "tls_client_certificate_bound_access_tokens": true,
            "scope": "openid",
            "client_name": "Self-signed RFC 8705 client",
        });
        for (k, v) in keys.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let inline = body(json!({"jwks": jwks_of(&[&unrelated, &cert_key])}));

    // Refused, with what to fix: the certificate's key is not registered,
    // there is no certificate, or (for tls_client_auth) it is not CA-issued.
    let not_ours = body(json!({"jwks": jwks_of(&[&unrelated])}));
    let a = post_json(&http, &url, &not_ours, Some(TOKEN)).await;
    assert_error(&a, 400, &["invalid_client_metadata"]);
    let d = a.json["error_description"].as_str().unwrap();
    assert!(d.contains("not among the keys registered in jwks"), "{d}");
    let a = post_json(&srv.client(None), &url, &inline, Some(TOKEN)).await;
    assert_error(&a, 400, &["invalid_client_metadata"]);
    let pki = json!({
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "CN=self-signed-rp",
        "jwks": jwks_of(&[&unrelated]),
        "scope": "openid",
    });
    let a = post_json(&http, &url, &pki, Some(TOKEN)).await;
    assert_error(&a, 400, &["invalid_client_metadata"]);
    let d = a.json["error_description"].as_str().unwrap();
    assert!(d.contains("trusted CA"), "{d}");
    assert_eq!(dynamic_clients(&srv).await, 0);

    // Accepted with the key inline, and with the key at a jwks_uri.
    let a = post_json(&http, &url, &inline, Some(TOKEN)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(
        a.json["token_endpoint_auth_method"],
        "self_signed_tls_client_auth"
    );
    let inline_id = a.json["client_id"].as_str().unwrap().to_string();
    let (cert2, key2, cert_key2) = self_signed_identity("self-signed-rp", "ss-2");
    let http2 = srv.client(Some((&cert2, &key2)));
    let jwks_uri = host.publish_software("self-signed-rp", &cert_key2);
    let by_uri = body(json!({"jwks_uri": jwks_uri}));
    let a = post_json(&http, &url, &by_uri, Some(TOKEN)).await;
    assert_error(&a, 400, &["invalid_client_metadata"]);
    let d = a.json["error_description"].as_str().unwrap();
    assert!(d.contains("jwks_uri"), "{d}");
    let a = post_json(&http2, &url, &by_uri, Some(TOKEN)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let uri_id = a.json["client_id"].as_str().unwrap().to_string();
    assert_eq!(dynamic_clients(&srv).await, 2);

    // Each client authenticates with its certificate (PAR over mTLS), and
    // not with the other's.
    for (client_id, ok, other) in [(&inline_id, &http, &http2), (&uri_id, &http2, &http)] {
        let par = |http: &reqwest::Client| {
            let mut form = Tpp {
                redirect_uri: redirect_uri.into(),
                ..Tpp::new(client_id)
            }
            .authz_params(&Pkce::new(), "openid");
            form.push(("client_id".into(), client_id.to_string()));
            let (http, url) = (http.clone(), srv.mtls_url("/par"));
            async move { post_form(&http, &url, &form, None).await }
        };
        let a = par(ok).await;
        assert_eq!(a.status, 201, "PAR as {client_id}: {}", a.json);
        assert_error(&par(other).await, 401, &["invalid_client"]);
    }
    srv.stop().await;
    host.stop().await;
}

#[actix_web::test]
async fn dcr_self_signed_tls_client_auth_registers_with_its_certificate() {
    for backend in BACKENDS {
        self_signed_registration(backend).await;
    }
}

/// The commented `[[directories]]` / `[registration]` example of the shipped
/// configuration, once uncommented, is valid and enables registration.
#[test]
fn dcr_shipped_config_example_is_valid_when_uncommented() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/strongroom.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let shipped = Config::parse(&text, &path).unwrap();
    assert!(shipped.directories.is_empty(), "off as shipped");
    assert!(
        strongroom::registration::registrar(&shipped)
            .unwrap()
            .is_none()
    );
    let mut inside = false;
    let enabled: Vec<String> = text
        .lines()
        .map(|l| {
            if l == "# [[directories]]" {
                inside = true;
            } else if l.starts_with("# --- end of dynamic client registration") {
                inside = false;
            }
            match l.strip_prefix("# ") {
                Some(rest) if inside && !rest.starts_with('#') && !rest.starts_with("---") => {
                    rest.to_string()
                }
                _ => l.to_string(),
            }
        })
        .collect();
    let cfg = Config::parse(&enabled.join("\n"), &path).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.directories.len(), 2);
    assert_eq!(cfg.directories[1].rules, dcr::RulePack::Brazil);
    assert_eq!(cfg.registration.rate_limit_per_software, 20);
    assert!(strongroom::registration::registrar(&cfg).unwrap().is_some());
}

/// UK registrations on a FAPI 1.0 deployment follow the UK profile: the
/// registration answers `fapi_profile = "uk-ob"` and `code id_token`
/// (UK DCR 3.3's default); a `code` registration is refused there, since
/// the UK profile does not serve it.
#[actix_web::test]
async fn dcr_uk_registrations_on_fapi1_get_the_uk_profile() {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Some(|c| {
        with_directory(c);
        c.profile = strongroom::config::Profile::Fapi1Advanced;
    });
    let sw = Software::new(&setup, "tppSoftware001");
    let srv = setup.start().await;
    let mut claims = sw.request_claims(&srv);
    claims.as_object_mut().unwrap().remove("response_types");
    let a = register(&srv, &sw, &claims).await;
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(a.json["fapi_profile"], "uk-ob");
    assert_eq!(a.json["response_types"], json!(["code id_token"]));
    let mut claims = sw.request_claims(&srv);
    claims["response_types"] = json!(["code"]);
    let a = register(&srv, &sw, &claims).await;
    assert_error(&a, 400, &["invalid_client_metadata"]);
    assert!(
        a.json["error_description"]
            .as_str()
            .unwrap()
            .contains("response_type code"),
        "{}",
        a.json
    );
    srv.stop().await;
}

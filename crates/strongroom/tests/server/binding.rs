//! What refresh tokens are bound to, through the running server, on SQLite
//! and PostgreSQL (issue 22 §5). A confidential client's refresh token is
//! bound to the client's authentication, not to a certificate or DPoP key
//! (RFC 8705 §4, RFC 9449 §5): a TPP that renews its transport certificate,
//! or rotates its DPoP key, keeps its customers' authorizations, and each new
//! access token is bound to the certificate or key presented on that refresh.

use serde_json::Value;
use strongroom::devcerts::{DnType, KeyAlg, issue_client_cert};

use crate::fapi::{PASSWORD, USER, World, world, world_with};
use crate::fapi_errors::{code_for, redeem};
use crate::harness::{BACKENDS, Backend, TestServer};
use crate::tpp::*;

/// The subject of the World's tls_client_auth TPP, as its certificates carry it.
const MTLS_SUBJECT: [(DnType, &str); 3] = [
    (DnType::CountryName, "GB"),
    (DnType::OrganizationName, "Example TPP Ltd"),
    (DnType::CommonName, "tpp-mtls"),
];

/// A client certificate for `subject` from the server's dev CA.
fn dev_ca_certificate(srv: &TestServer, subject: &[(DnType, &str)]) -> (String, String) {
    let ca = std::fs::read_to_string(srv.dev_ca()).unwrap();
    let ca_key = std::fs::read_to_string(srv.data_dir.join("dev-ca-key.pem")).unwrap();
    issue_client_cert(&ca, &ca_key, subject, &[], KeyAlg::EcdsaP256).unwrap()
}

/// The TPP's next transport certificate: same subject, new key, same CA.
fn renewed_certificate(srv: &TestServer) -> (String, String) {
    dev_ca_certificate(srv, &MTLS_SUBJECT)
}

fn thumbprint(cert_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    sha256_b64(&der)
}

/// PAR, login and consent, and the code exchange for the tls_client_auth
/// TPP over `http`; returns the token response.
pub(crate) async fn mtls_tokens(w: &World, http: &reqwest::Client) -> Value {
    let (srv, tpp) = (&w.srv, &w.mtls);
    let pkce = Pkce::new();
    let mut form = tpp.authz_params(&pkce, "openid accounts");
    form.push(("client_id".into(), tpp.client_id.clone()));
    let a = post_form(http, &srv.mtls_url("/par"), &form, None).await;
    assert_eq!(a.status, 201, "PAR: {}", a.json);
    let request_uri = a.json["request_uri"].as_str().unwrap();
    let back = browser_flow(
        srv,
        &srv.browser(),
        &tpp.client_id,
        request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    let form = vec![
        ("client_id".to_string(), tpp.client_id.clone()),
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), query(&back)["code"].clone()),
        ("redirect_uri".into(), tpp.redirect_uri.clone()),
        ("code_verifier".into(), pkce.verifier),
    ];
    let a = post_form(http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(a.status, 200, "code exchange: {}", a.json);
    a.json
}

/// A refresh over `http`, authenticated by its certificate (tls_client_auth).
async fn mtls_refresh(w: &World, http: &reqwest::Client, refresh_token: &str) -> Answer {
    let form = vec![
        ("client_id".to_string(), w.mtls.client_id.clone()),
        ("grant_type".into(), "refresh_token".into()),
        ("refresh_token".into(), refresh_token.into()),
    ];
    post_form(http, &w.srv.mtls_url("/token"), &form, None).await
}

async fn mtls_introspect(w: &World, http: &reqwest::Client, token: &str) -> Value {
    let form = vec![
        ("client_id".to_string(), w.mtls.client_id.clone()),
        ("token".into(), token.into()),
    ];
    let a = post_form(http, &w.srv.mtls_url("/introspect"), &form, None).await;
    assert_eq!(a.status, 200, "introspection: {}", a.json);
    a.json
}

async fn userinfo_status(w: &World, http: &reqwest::Client, access_token: &str) -> u16 {
    http.get(w.srv.mtls_url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn with_rotation(cfg: &mut strongroom::config::Config) {
    cfg.tokens.rotate_refresh_tokens = true;
}

/// A tls_client_auth TPP refreshes, renews its transport certificate, and
/// refreshes again with the new one; with and without refresh-token
/// rotation (RFC 9700 §4.14.2), so the stored replacement is unbound too.
async fn certificate_renewal_between_refreshes(backend: Backend, rotate: bool) {
    let w = match rotate {
        true => world_with(backend, Some(with_rotation)).await,
        false => world(backend).await,
    };
    let old_cert = w.mtls.identity.clone().unwrap();
    let old_http = w.mtls_http();
    let t = mtls_tokens(&w, &old_http).await;
    let mut refresh_token = t["refresh_token"].as_str().unwrap().to_string();

    let a = mtls_refresh(&w, &old_http, &refresh_token).await;
    assert_eq!(
        a.status, 200,
        "refresh over the old certificate: {}",
        a.json
    );
    assert_eq!(a.json["token_type"], "Bearer");
    let first = a.json["access_token"].as_str().unwrap().to_string();
    let i = mtls_introspect(&w, &old_http, &first).await;
    assert_eq!(i["cnf"]["x5t#S256"], thumbprint(&old_cert.0), "{i}");
    if rotate {
        refresh_token = a.json["refresh_token"].as_str().unwrap().to_string();
    }

    // The TPP renews its certificate (same subject, new key): its refresh
    // token still works, and the new access token is bound to the new one.
    let (new_cert, new_key) = renewed_certificate(&w.srv);
    assert_ne!(thumbprint(&new_cert), thumbprint(&old_cert.0));
    let new_http = w.srv.client(Some((&new_cert, &new_key)));
    let a = mtls_refresh(&w, &new_http, &refresh_token).await;
    assert_eq!(
        a.status, 200,
        "refresh over the renewed certificate: {}",
        a.json
    );
    assert_eq!(a.json["token_type"], "Bearer");
    let second = a.json["access_token"].as_str().unwrap().to_string();
    let i = mtls_introspect(&w, &new_http, &second).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["cnf"]["x5t#S256"], thumbprint(&new_cert), "{i}");
    assert_eq!(userinfo_status(&w, &new_http, &second).await, 200);
    assert_eq!(userinfo_status(&w, &old_http, &second).await, 401);
    // The token issued before the renewal stays bound to the old certificate.
    assert_eq!(userinfo_status(&w, &new_http, &first).await, 401);
    if rotate {
        refresh_token = a.json["refresh_token"].as_str().unwrap().to_string();
    }

    // Still the client's authentication: another client's certificate, or
    // none, gets nothing.
    let (c, k) = dev_ca_certificate(&w.srv, &[(DnType::CommonName, "someone-else")]);
    let a = mtls_refresh(&w, &w.srv.client(Some((&c, &k))), &refresh_token).await;
    assert_error(&a, 401, &["invalid_client"]);
    let a = mtls_refresh(&w, &w.srv.client(None), &refresh_token).await;
    assert_error(&a, 401, &["invalid_client"]);
    w.srv.stop().await;
}

#[actix_web::test]
async fn refresh_survives_a_tpp_certificate_renewal() {
    for backend in BACKENDS {
        for rotate in [false, true] {
            certificate_renewal_between_refreshes(backend, rotate).await;
        }
    }
}

/// The private_key_jwt + DPoP TPP refreshes with a new DPoP key: the new
/// access token is bound to that key. Without a DPoP proof the refresh is
/// refused (the client's tokens are DPoP-bound, FAPI 2.0 §5.3.2.1).
async fn dpop_key_rotation_between_refreshes(backend: Backend) {
    let w = world(backend).await;
    let (srv, tpp) = (&w.srv, &w.dpop);
    let url = srv.url("/token");
    let http = srv.client(None);
    let (code, pkce) = code_for(&w, tpp).await;
    let a = redeem(&w, tpp, &code, Some(&pkce.verifier), tpp).await;
    assert_eq!(a.status, 200, "code exchange: {}", a.json);
    let refresh_token = a.json["refresh_token"].as_str().unwrap().to_string();

    let refresh = |proof: Option<String>| {
        let mut form = tpp.auth_fields(srv);
        form.push(("grant_type".into(), "refresh_token".into()));
        form.push(("refresh_token".into(), refresh_token.clone()));
        let (http, url) = (http.clone(), url.clone());
        async move { post_form(&http, &url, &form, proof).await }
    };
    let rotated = Tpp {
        dpop: TppKey::es256("tpp-dpop-next"),
        ..Tpp::new(&tpp.client_id)
    };
    let a = refresh(Some(rotated.dpop_proof("POST", &url, None))).await;
    assert_eq!(a.status, 200, "refresh with a new DPoP key: {}", a.json);
    assert_eq!(a.json["token_type"], "DPoP");
    let access = a.json["access_token"].as_str().unwrap().to_string();
    let mut form = tpp.auth_fields(srv);
    form.push(("token".into(), access.clone()));
    let i = post_form(&http, &srv.url("/introspect"), &form, None).await;
    assert_eq!(
        i.json["cnf"]["jkt"],
        rotated.dpop.thumbprint(),
        "{}",
        i.json
    );
    let a = refresh(None).await;
    assert_error(&a, 400, &["invalid_request"]);
    w.srv.stop().await;
}

#[actix_web::test]
async fn refresh_binds_the_new_access_token_to_a_new_dpop_key() {
    for backend in BACKENDS {
        dpop_key_rotation_between_refreshes(backend).await;
    }
}

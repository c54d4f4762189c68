//! The FAPI 2.0 authorization code flow end to end, through the running
//! server, on SQLite and PostgreSQL: PAR → authorize → login → consent →
//! token → userinfo → introspect → refresh → revoke, once with
//! private_key_jwt + DPoP and once with tls_client_auth + mTLS-bound tokens.
//! Discovery, the token exchange and id_token verification go through the
//! `openidconnect` crate as the relying party.

use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClientId, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeVerifier, RedirectUrl, TokenResponse, TokenUrl,
};
use serde_json::{Value, json};

use crate::harness::{BACKENDS, Backend, Setup, TestServer};
use crate::tpp::*;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";

pub fn demo_user() -> Value {
    json!({
        "username": USER,
        "password": PASSWORD,
        "sub": "sub-alice-0001",
        "claims": {"name": "Alice Liddell", "given_name": "Alice", "family_name": "Liddell",
                   "email": "alice@example.com", "email_verified": true}
    })
}

/// A server with a private_key_jwt + DPoP client, a second such client, and
/// a tls_client_auth client with a certificate from the dev CA.
pub struct World {
    pub srv: TestServer,
    pub dpop: Tpp,
    pub other: Tpp,
    pub mtls: Tpp,
}

pub async fn world(backend: Backend) -> World {
    world_with(backend, None).await
}

pub async fn world_with(
    backend: Backend,
    tweak: Option<fn(&mut strongroom::config::Config)>,
) -> World {
    let mut setup = Setup::new(backend);
    let (ca, ca_key) = setup.dev_ca();
    let dpop = Tpp::new("tpp-dpop");
    let other = Tpp::new("tpp-other");
    let mtls = mtls_tpp(&ca, &ca_key);
    // RFC 4514 order: the most significant RDN last.
    // Matched semantically: case and spacing differ from the certificate.
    let mtls_dn = "cn=TPP-MTLS, o=Example TPP Ltd, c=GB";
    setup.clients = vec![
        dpop.pkjwt_metadata(),
        other.pkjwt_metadata(),
        mtls.mtls_metadata(mtls_dn),
    ];
    setup.users = vec![demo_user()];
    setup.tweak = tweak;
    let srv = setup.start().await;
    World {
        srv,
        dpop,
        other,
        mtls,
    }
}

/// The `tls_client_auth` TPP `tpp-mtls`, with a client certificate from
/// the dev CA (`C=GB, O=Example TPP Ltd, CN=tpp-mtls`).
pub fn mtls_tpp(ca: &str, ca_key: &str) -> Tpp {
    use strongroom::devcerts::{DnType, KeyAlg, issue_client_cert};
    let mut mtls = Tpp::new("tpp-mtls");
    let (cert, key) = issue_client_cert(
        ca,
        ca_key,
        &[
            (DnType::CountryName, "GB"),
            (DnType::OrganizationName, "Example TPP Ltd"),
            (DnType::CommonName, "tpp-mtls"),
        ],
        &[],
        KeyAlg::EcdsaP256,
    )
    .unwrap();
    mtls.identity = Some((cert, key));
    mtls
}

impl World {
    pub fn mtls_http(&self) -> reqwest::Client {
        let (c, k) = self.mtls.identity.as_ref().unwrap();
        self.srv.client(Some((c, k)))
    }

    /// PAR for the DPoP client; returns (request_uri, params sent).
    pub async fn push_dpop(
        &self,
        tpp: &Tpp,
        pkce: &Pkce,
        scope: &str,
    ) -> (String, Vec<(String, String)>) {
        let params = tpp.authz_params(pkce, scope);
        (tpp.push(&self.srv, params.clone()).await, params)
    }
}

async fn rp_client(
    srv: &TestServer,
    tpp: &Tpp,
) -> (
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    CoreProviderMetadata,
) {
    let http = srv.client(None);
    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(srv.issuer.clone()).unwrap(), &http)
            .await
            .expect("discovery through openidconnect");
    let client = CoreClient::from_provider_metadata(
        meta.clone(),
        ClientId::new(tpp.client_id.clone()),
        None,
    )
    .set_redirect_uri(RedirectUrl::new(tpp.redirect_uri.clone()).unwrap())
    .set_auth_type(AuthType::RequestBody);
    (client, meta)
}

async fn full_flow_private_key_jwt_dpop(backend: Backend) {
    let w = world(backend).await;
    let srv = &w.srv;
    let tpp = &w.dpop;
    let pkce = Pkce::new();
    let (request_uri, params) = w.push_dpop(tpp, &pkce, "openid profile accounts").await;
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    let browser = srv.browser();
    let back = browser_flow(
        srv,
        &browser,
        &tpp.client_id,
        &request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    assert!(back.starts_with(&tpp.redirect_uri), "{back}");
    let q = query(&back);
    assert_eq!(q["iss"], srv.issuer, "RFC 9207 iss");
    assert_eq!(q["state"], param(&params, "state"));
    let code = q["code"].clone();
    assert!(code.len() >= 22, "code carries at least 128 bits");

    // Token exchange through the openidconnect RP, with the DPoP proof and
    // client assertion added to its request.
    let (client, _) = rp_client(srv, tpp).await;
    let http = srv.client(None);
    let token_url = srv.url("/token");
    let dpop_http = |mut req: openidconnect::HttpRequest| {
        let proof = tpp.dpop_proof(req.method().as_str(), &token_url, None);
        req.headers_mut().insert("DPoP", proof.parse().unwrap());
        let http = http.clone();
        async move { openidconnect::AsyncHttpClient::call(&http, req).await }
    };
    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new(pkce.verifier.clone()))
        .add_extra_param("client_assertion_type", ASSERTION_TYPE)
        .add_extra_param("client_assertion", tpp.assertion(&srv.issuer))
        .request_async(&dpop_http)
        .await
        .expect("token exchange");
    // openidconnect lowercases the type; the raw JSON is checked at refresh.
    assert!(token.token_type().as_ref().eq_ignore_ascii_case("DPoP"));
    let access_token = token.access_token().secret().clone();
    assert!(access_token.len() >= 22);
    let refresh_token = token
        .refresh_token()
        .expect("a refresh token")
        .secret()
        .clone();
    let id_token = token.id_token().expect("an id_token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(param(&params, "nonce").to_string()))
        .expect("id_token verifies (signature, iss, aud, exp, nonce)");
    assert_eq!(claims.subject().as_str(), "sub-alice-0001");
    let expected_hash = AccessTokenHash::from_token(
        token.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash), "at_hash");
    let raw = jwt_claims(&id_token.to_string());
    assert!(raw["auth_time"].is_i64());
    assert_eq!(raw["acr"], "urn:strongroom:password");

    // Userinfo with the DPoP-bound token.
    let ui = srv.url("/userinfo");
    let res = http
        .get(&ui)
        .header("Authorization", format!("DPoP {access_token}"))
        .header("DPoP", tpp.dpop_proof("GET", &ui, Some(&access_token)))
        .send()
        .await
        .unwrap();
    let a = answer(res).await;
    assert_eq!(a.status, 200, "userinfo: {}", a.json);
    assert_eq!(a.json["sub"], "sub-alice-0001");
    assert_eq!(a.json["name"], "Alice Liddell");
    assert!(a.json.get("email").is_none(), "email scope not granted");
    // The same token as Bearer is refused (RFC 9449 §7.2).
    let res = http
        .get(&ui)
        .header("Authorization", format!("Bearer {access_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Introspection.
    let intro = srv.url("/introspect");
    let mut form = tpp.auth_fields(srv);
    form.push(("token".into(), access_token.clone()));
    let a = post_form(&http, &intro, &form, None).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["active"], true);
    assert_eq!(a.json["client_id"], tpp.client_id);
    assert_eq!(a.json["sub"], "sub-alice-0001");
    assert_eq!(a.json["cnf"]["jkt"], tpp.dpop.thumbprint());
    assert!(a.json["scope"].as_str().unwrap().contains("accounts"));
    // The endpoint reads the token before it authenticates the caller, and
    // must tell a caller that fails nothing about it: the same assertion
    // again, no client authentication, another client's name.
    let replayed = form.clone();
    let unauthenticated = vec![
        ("client_id".to_string(), tpp.client_id.clone()),
        ("token".into(), access_token.clone()),
    ];
    let mut other = tpp.auth_fields(srv);
    other[0].1 = "someone-else".into();
    other.push(("token".into(), access_token.clone()));
    for (what, f) in [
        ("replayed assertion", &replayed),
        ("no authentication", &unauthenticated),
        ("another client_id", &other),
    ] {
        let a = post_form(&http, &intro, f, None).await;
        assert_eq!(
            (a.status, a.json["error"].as_str()),
            (401, Some("invalid_client")),
            "{what}: {}",
            a.json
        );
        assert!(a.json.get("active").is_none(), "{what}: {}", a.json);
        assert!(!a.json.to_string().contains("sub-alice"), "{what}");
    }
    // Authenticated, but without a token, with an empty one, or with the
    // token twice (RFC 7662 §2.1: one `token`, required): 400, and nothing
    // about the token. The same bad token parameter from a caller that
    // fails authentication: 401 first.
    let with = |extra: &[(&str, &str)], authenticated: bool| {
        let mut f = if authenticated {
            tpp.auth_fields(srv)
        } else {
            vec![("client_id".to_string(), tpp.client_id.clone())]
        };
        f.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        f
    };
    let twice = [
        ("token", access_token.as_str()),
        ("token", access_token.as_str()),
    ];
    for (what, f, status, error) in [
        ("no token", with(&[], true), 400, "invalid_request"),
        (
            "empty token",
            with(&[("token", "")], true),
            400,
            "invalid_request",
        ),
        ("token twice", with(&twice, true), 400, "invalid_request"),
        (
            "token twice, unauthenticated",
            with(&twice, false),
            401,
            "invalid_client",
        ),
    ] {
        let a = post_form(&http, &intro, &f, None).await;
        assert_eq!(
            (a.status, a.json["error"].as_str()),
            (status, Some(error)),
            "{what}: {}",
            a.json
        );
        assert!(a.json.get("active").is_none(), "{what}: {}", a.json);
    }
    // A request refused for its token parameter still spends its
    // assertion: the same assertion with a good token is a replay.
    let spent = with(&[], true);
    let a = post_form(&http, &intro, &spent, None).await;
    assert_eq!(a.status, 400, "{}", a.json);
    // Replayed without a token: the caller's failure is answered first.
    let a = post_form(&http, &intro, &spent, None).await;
    assert_error(&a, 401, &["invalid_client"]);
    let mut again = spent.clone();
    again.push(("token".into(), access_token.clone()));
    let a = post_form(&http, &intro, &again, None).await;
    assert_error(&a, 401, &["invalid_client"]);
    assert!(a.json.get("active").is_none(), "{}", a.json);

    // Refresh (a new access token bound to the DPoP key of this request),
    // narrower scope allowed.
    let mut form = tpp.auth_fields(srv);
    form.push(("grant_type".into(), "refresh_token".into()));
    form.push(("refresh_token".into(), refresh_token.clone()));
    form.push(("scope".into(), "openid accounts".into()));
    let a = post_form(
        &http,
        &token_url,
        &form,
        Some(tpp.dpop_proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(a.status, 200, "refresh: {}", a.json);
    assert_eq!(a.json["token_type"], "DPoP");
    assert!(
        a.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    let new_access = a.json["access_token"].as_str().unwrap().to_string();
    assert_ne!(new_access, access_token);

    // Revoke the refresh token: its grant's tokens go with it.
    let mut form = tpp.auth_fields(srv);
    form.push(("token".into(), refresh_token.clone()));
    let a = post_form(&http, &srv.url("/revoke"), &form, None).await;
    assert_eq!(a.status, 200);
    for t in [&access_token, &new_access, &refresh_token] {
        let mut form = tpp.auth_fields(srv);
        form.push(("token".into(), t.to_string()));
        let a = post_form(&http, &intro, &form, None).await;
        assert_eq!(a.json, json!({"active": false}), "after revocation");
    }
    w.srv.stop().await;
}

async fn full_flow_tls_client_auth_mtls(backend: Backend) {
    let w = world(backend).await;
    let srv = &w.srv;
    let tpp = &w.mtls;
    let http = w.mtls_http();
    let pkce = Pkce::new();
    let params = tpp.authz_params(&pkce, "openid profile accounts");
    let mut form = params.clone();
    form.push(("client_id".into(), tpp.client_id.clone()));
    let a = post_form(&http, &srv.mtls_url("/par"), &form, None).await;
    assert_eq!(a.status, 201, "PAR over mTLS: {}", a.json);
    assert_eq!(a.json["expires_in"], 60);
    let request_uri = a.json["request_uri"].as_str().unwrap().to_string();
    let browser = srv.browser();
    let back = browser_flow(
        srv,
        &browser,
        &tpp.client_id,
        &request_uri,
        USER,
        PASSWORD,
        true,
    )
    .await;
    let q = query(&back);
    assert_eq!(q["iss"], srv.issuer);

    let (client, meta) = rp_client(srv, tpp).await;
    let alias = meta
        .token_endpoint()
        .unwrap()
        .url()
        .as_str()
        .replace(&srv.issuer, &srv.mtls_base);
    let client = client.set_token_uri(TokenUrl::new(alias).unwrap());
    let token = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce.verifier.clone()))
        .request_async(&http)
        .await
        .expect("token exchange over mTLS");
    assert_eq!(token.token_type().as_ref().to_ascii_lowercase(), "bearer");
    let id_token = token.id_token().unwrap();
    id_token
        .claims(
            &client.id_token_verifier(),
            &Nonce::new(param(&params, "nonce").to_string()),
        )
        .expect("id_token verifies");
    let access_token = token.access_token().secret().clone();
    let refresh_token = token.refresh_token().unwrap().secret().clone();

    // Userinfo with the certificate-bound token, over the same certificate.
    let ui = srv.mtls_url("/userinfo");
    let res = http
        .get(&ui)
        .bearer_auth(&access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["sub"], "sub-alice-0001");
    // Without the certificate (or over the browser listener) it is refused.
    let res = srv
        .client(None)
        .get(srv.url("/userinfo"))
        .bearer_auth(&access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let mut form = vec![
        ("client_id".to_string(), tpp.client_id.clone()),
        ("token".into(), access_token.clone()),
    ];
    let a = post_form(&http, &srv.mtls_url("/introspect"), &form, None).await;
    assert_eq!(a.json["active"], true, "{}", a.json);
    let thumb = a.json["cnf"]["x5t#S256"]
        .as_str()
        .expect("cnf x5t#S256")
        .to_string();
    let (cert_pem, _) = w.mtls.identity.as_ref().unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    assert_eq!(
        thumb,
        sha256_b64(&der),
        "cnf is the SHA-256 of the client certificate"
    );

    form = vec![
        ("client_id".into(), tpp.client_id.clone()),
        ("grant_type".into(), "refresh_token".into()),
        ("refresh_token".into(), refresh_token.clone()),
    ];
    let a = post_form(&http, &srv.mtls_url("/token"), &form, None).await;
    assert_eq!(a.status, 200, "refresh over mTLS: {}", a.json);

    let form = vec![
        ("client_id".to_string(), tpp.client_id.clone()),
        ("token".into(), refresh_token.clone()),
    ];
    let a = post_form(&http, &srv.mtls_url("/revoke"), &form, None).await;
    assert_eq!(a.status, 200);
    let form = vec![
        ("client_id".to_string(), tpp.client_id.clone()),
        ("token".into(), access_token),
    ];
    let a = post_form(&http, &srv.mtls_url("/introspect"), &form, None).await;
    assert_eq!(a.json["active"], false);
    w.srv.stop().await;
}

use rustls::pki_types::pem::PemObject as _;

#[actix_web::test]
async fn fapi2_flow_private_key_jwt_with_dpop() {
    for backend in BACKENDS {
        full_flow_private_key_jwt_dpop(backend).await;
    }
}

#[actix_web::test]
async fn fapi2_flow_tls_client_auth_with_mtls_bound_tokens() {
    for backend in BACKENDS {
        full_flow_tls_client_auth_mtls(backend).await;
    }
}

#[actix_web::test]
async fn discovery_advertises_what_is_served() {
    let w = world(Backend::Sqlite).await;
    let srv = &w.srv;
    let (_, meta) = rp_client(srv, &w.dpop).await;
    let raw: Value = srv
        .client(None)
        .get(srv.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta.issuer().as_str(), srv.issuer);
    assert_eq!(
        raw["pushed_authorization_request_endpoint"],
        srv.url("/par")
    );
    assert_eq!(raw["require_pushed_authorization_requests"], true);
    assert_eq!(raw["authorization_response_iss_parameter_supported"], true);
    assert_eq!(raw["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(raw["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        raw["mtls_endpoint_aliases"]["token_endpoint"],
        srv.mtls_url("/token")
    );
    for m in [
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    ] {
        assert!(
            raw["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(m))
        );
    }
    for key in [
        "token_endpoint_auth_signing_alg_values_supported",
        "dpop_signing_alg_values_supported",
        "id_token_signing_alg_values_supported",
    ] {
        let algs = raw[key].as_array().unwrap();
        assert!(
            algs.contains(&json!("PS256")) && algs.contains(&json!("ES256")),
            "{key}"
        );
        assert!(
            !algs
                .iter()
                .any(|a| a == "RS256" || a == "none" || a.as_str().unwrap().starts_with("HS"))
        );
    }
    // Nothing that is not built yet.
    for absent in [
        "registration_endpoint",
        "backchannel_authentication_endpoint",
    ] {
        assert!(raw.get(absent).is_none(), "{absent} advertised");
    }
    w.srv.stop().await;
}

/// PAR + browser flow for the DPoP client with extra parameters; returns the
/// redirect back to the client and the parameters sent.
pub async fn flow_with(
    w: &World,
    extra: &[(&str, &str)],
    approve: bool,
) -> (String, Vec<(String, String)>, Pkce) {
    let tpp = &w.dpop;
    let pkce = Pkce::new();
    let mut params = tpp.authz_params(&pkce, "openid accounts");
    for (k, v) in extra {
        set_param(&mut params, k, Some(v));
    }
    let mut form = params.clone();
    form.extend(tpp.auth_fields(&w.srv));
    let url = w.srv.url("/par");
    let a = post_form(
        &w.srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await;
    assert_eq!(a.status, 201, "PAR: {}", a.json);
    let request_uri = a.json["request_uri"].as_str().unwrap();
    let back = browser_flow(
        &w.srv,
        &w.srv.browser(),
        &tpp.client_id,
        request_uri,
        USER,
        PASSWORD,
        approve,
    )
    .await;
    (back, params, pkce)
}

pub async fn redeem_code(w: &World, code: &str, pkce: &Pkce) -> Answer {
    let tpp = &w.dpop;
    let url = w.srv.url("/token");
    let mut form = tpp.auth_fields(&w.srv);
    form.extend([
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".into(), code.into()),
        ("redirect_uri".into(), tpp.redirect_uri.clone()),
        ("code_verifier".into(), pkce.verifier.clone()),
    ]);
    post_form(
        &w.srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await
}

/// Verifies a JWT from the server against its published JWKS, independently.
pub async fn verify_with_jwks(srv: &TestServer, jwt: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = srv
        .client(None)
        .get(srv.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid is published");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "iss"]);
    jsonwebtoken::decode::<Value>(jwt, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("signature verifies with the published key")
        .claims
}

#[actix_web::test]
async fn jarm_responses_are_signed_jwts() {
    let w = world(Backend::Sqlite).await;
    let (back, params, pkce) = flow_with(&w, &[("response_mode", "jwt")], true).await;
    let q = query(&back);
    assert_eq!(q.len(), 1, "only `response` in the query: {back}");
    let claims = verify_with_jwks(&w.srv, &q["response"]).await;
    assert_eq!(claims["iss"], w.srv.issuer);
    assert_eq!(claims["aud"], w.dpop.client_id);
    assert_eq!(claims["state"], param(&params, "state"));
    assert!(claims["exp"].as_i64().unwrap() <= now() + 600);
    let code = claims["code"].as_str().unwrap();
    assert_eq!(redeem_code(&w, code, &pkce).await.status, 200);
    // A denial comes back as a JARM error response too.
    let (back, _, _) = flow_with(&w, &[("response_mode", "jwt")], false).await;
    let claims = verify_with_jwks(&w.srv, &query(&back)["response"]).await;
    assert_eq!(claims["error"], "access_denied");
    assert!(claims.get("code").is_none());
    w.srv.stop().await;
}

#[actix_web::test]
async fn prompt_none_without_a_session_returns_login_required() {
    let w = world(Backend::Sqlite).await;
    let tpp = &w.dpop;
    let pkce = Pkce::new();
    let mut form = tpp.authz_params(&pkce, "openid accounts");
    form.push(("prompt".into(), "none".into()));
    let state = param(&form, "state").to_string();
    form.extend(tpp.auth_fields(&w.srv));
    let url = w.srv.url("/par");
    let a = post_form(
        &w.srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await;
    let request_uri = a.json["request_uri"].as_str().unwrap();
    let authz = authorize_url(&w.srv, &tpp.client_id, request_uri);
    let res = w.srv.browser().get(&authz).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let q = query(&location(&res));
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], state);
    assert_eq!(q["iss"], w.srv.issuer);
    w.srv.stop().await;
}

#[actix_web::test]
async fn intent_and_authorization_details_reach_tokens_and_introspection() {
    for backend in BACKENDS {
        let w = world(backend).await;
        let details = json!([{"type": "account_information", "actions": ["read_balances"]}]);
        let claims = json!({"id_token": {"openbanking_intent_id": {"value": "intent-4711", "essential": true}}});
        let (back, params, pkce) = flow_with(
            &w,
            &[
                ("authorization_details", &details.to_string()),
                ("claims", &claims.to_string()),
            ],
            true,
        )
        .await;
        let a = redeem_code(&w, &query(&back)["code"], &pkce).await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.json["authorization_details"], details, "RFC 9396 §7");
        let id_claims = verify_with_jwks(&w.srv, a.json["id_token"].as_str().unwrap()).await;
        assert_eq!(id_claims["openbanking_intent_id"], "intent-4711");
        assert_eq!(id_claims["nonce"], param(&params, "nonce"));
        let mut form = w.dpop.auth_fields(&w.srv);
        form.push((
            "token".into(),
            a.json["access_token"].as_str().unwrap().to_string(),
        ));
        let i = post_form(&w.srv.client(None), &w.srv.url("/introspect"), &form, None).await;
        assert_eq!(i.json["active"], true);
        assert_eq!(i.json["consent_id"], "intent-4711", "{}", i.json);
        assert_eq!(i.json["authorization_details"], details);
        w.srv.stop().await;
    }
}

#[actix_web::test]
async fn an_essential_acr_the_login_cannot_meet_ends_in_access_denied() {
    let w = world(Backend::Sqlite).await;
    // OIDC Core §5.5.1.1: the built-in password login is not SCA.
    let sca =
        json!({"id_token": {"acr": {"essential": true, "value": "urn:openbanking:psd2:sca"}}});
    let (back, params, _) = flow_with(&w, &[("claims", &sca.to_string())], true).await;
    let q = query(&back);
    assert_eq!(q["error"], "access_denied", "{back}");
    assert_eq!(q["state"], param(&params, "state"));
    assert!(!q.contains_key("code"));
    // The acr it does reach, asked for as essential, is met.
    let pwd =
        json!({"id_token": {"acr": {"essential": true, "values": ["urn:strongroom:password"]}}});
    let (back, _, pkce) = flow_with(&w, &[("claims", &pwd.to_string())], true).await;
    let a = redeem_code(&w, &query(&back)["code"], &pkce).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let id = verify_with_jwks(&w.srv, a.json["id_token"].as_str().unwrap()).await;
    assert_eq!(id["acr"], "urn:strongroom:password");
    w.srv.stop().await;
}

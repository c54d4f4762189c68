//! The FAPI 1.0 Advanced hybrid flow (`response_type=code id_token`, OIDC
//! Core §3.3) through the running server under `profile =
//! "fapi1-advanced"`: the response in the fragment or as a form post, its
//! id_token a detached signature over the code and the state. The id_token
//! is verified here with `jsonwebtoken` against the published JWKS, and
//! `c_hash` / `s_hash` computed by hand (aws-lc-rs SHA-256), so no
//! Strongroom code checks what Strongroom made.

use serde_json::{Value, json};

use crate::fapi::{PASSWORD, USER, demo_user, verify_with_jwks};
use crate::harness::{BACKENDS, Backend, Setup, TestServer};
use crate::tpp::*;

const INTENT: &str = "intent-hybrid-1";

struct Hybrid {
    srv: TestServer,
    /// PS256 id_tokens (the default).
    ps: Tpp,
    /// Registered `id_token_signed_response_alg` ES256.
    es: Tpp,
    /// Registered for `code` only.
    code_only: Tpp,
}

fn hybrid_metadata(tpp: &Tpp, id_token_alg: Option<&str>, types: &[&str]) -> Value {
    let mut m = tpp.pkjwt_metadata();
    m["response_types"] = json!(types);
    if let Some(alg) = id_token_alg {
        m["id_token_signed_response_alg"] = json!(alg);
    }
    m
}

async fn hybrid_world(backend: Backend) -> Hybrid {
    let mut setup = Setup::new(backend);
    let (ps, es, code_only) = (Tpp::new("tpp-ps"), Tpp::new("tpp-es"), Tpp::new("tpp-code"));
    setup.clients = vec![
        hybrid_metadata(&ps, None, &["code id_token"]),
        hybrid_metadata(&es, Some("ES256"), &["code id_token", "code"]),
        hybrid_metadata(&code_only, None, &["code"]),
    ];
    setup.users = vec![demo_user()];
    setup.tweak = Some(|c| c.profile = strongroom::config::Profile::Fapi1Advanced);
    let srv = setup.start().await;
    Hybrid {
        srv,
        ps,
        es,
        code_only,
    }
}

/// A hybrid request with an essential intent id, and extra parameters.
fn hybrid_params(tpp: &Tpp, pkce: &Pkce, extra: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut p = tpp.authz_params(pkce, "openid accounts");
    set_param(&mut p, "response_type", Some("code id_token"));
    let claims = json!({"id_token": {"openbanking_intent_id": {"value": INTENT, "essential": true},
        "acr": {"essential": true}}});
    p.push(("claims".into(), claims.to_string()));
    for (k, v) in extra {
        set_param(&mut p, k, *v);
    }
    p
}

/// FAPI 1.0 Advanced §5.2.2-1: the parameters pushed as a signed request
/// object, the only thing in the PAR body besides client authentication.
pub fn signed(srv: &TestServer, tpp: &Tpp, params: &[(String, String)]) -> Vec<(String, String)> {
    let t = now();
    let mut claims = json!({
        "iss": tpp.client_id, "aud": srv.issuer, "client_id": tpp.client_id,
        "iat": t, "nbf": t, "exp": t + 300, "jti": random(16),
    });
    for (k, v) in params {
        claims[k] = if k == "claims" {
            serde_json::from_str(v).unwrap()
        } else {
            json!(v)
        };
    }
    vec![("request".into(), tpp.key.sign(None, &claims))]
}

/// The fragment parameters of a redirect URL (none in its query beyond the
/// registered ones).
pub fn fragment(url: &str) -> std::collections::HashMap<String, String> {
    let u = url::Url::parse(url).unwrap();
    assert_eq!(u.query(), None, "nothing in the query: {url}");
    url::form_urlencoded::parse(u.fragment().expect("a fragment").as_bytes())
        .into_owned()
        .collect()
}

/// OIDC Core §3.3.2.11: the left half of SHA-256 of the ASCII value.
pub fn half_sha256(v: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes());
    b64(&d.as_ref()[..16])
}

async fn redeem(srv: &TestServer, tpp: &Tpp, code: &str, pkce: &Pkce) -> Answer {
    let url = srv.url("/token");
    let mut form = tpp.auth_fields(srv);
    form.extend([
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".into(), code.into()),
        ("redirect_uri".into(), tpp.redirect_uri.clone()),
        ("code_verifier".into(), pkce.verifier.clone()),
    ]);
    post_form(
        &srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await
}

/// The front-channel id_token, checked as a FAPI 1.0 client would.
async fn check_front_channel_id_token(
    srv: &TestServer,
    tpp: &Tpp,
    back: &std::collections::HashMap<String, String>,
    params: &[(String, String)],
    alg: &str,
) -> Value {
    let id_token = &back["id_token"];
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(format!("{:?}", header.alg), alg);
    let claims = verify_with_jwks(srv, id_token).await;
    assert_eq!(claims["iss"], srv.issuer);
    assert_eq!(claims["aud"], json!(tpp.client_id), "aud a single string");
    assert_eq!(claims["sub"], "sub-alice-0001");
    assert_eq!(claims["nonce"], param(params, "nonce"));
    assert_eq!(claims["c_hash"], half_sha256(&back["code"]));
    assert_eq!(claims["s_hash"], half_sha256(param(params, "state")));
    assert_eq!(claims["openbanking_intent_id"], INTENT);
    assert_eq!(claims["acr"], "urn:strongroom:password");
    let now = now();
    assert!(claims["exp"].as_i64().unwrap() > now);
    assert!((claims["iat"].as_i64().unwrap() - now).abs() < 60);
    assert!(claims["auth_time"].as_i64().unwrap() <= now);
    assert!(claims.get("at_hash").is_none(), "no access token yet");
    claims
}

async fn hybrid_flow_in_the_fragment(backend: Backend) {
    let w = hybrid_world(backend).await;
    let srv = &w.srv;
    for (tpp, alg) in [(&w.ps, "PS256"), (&w.es, "ES256")] {
        let pkce = Pkce::new();
        // OIDF sends long values; state must come back byte for byte.
        let state = format!("{}&=+/ %é", random(40));
        let params = hybrid_params(tpp, &pkce, &[("state", Some(&state))]);
        let request_uri = tpp.push(srv, signed(srv, tpp, &params)).await;
        let back = browser_flow(
            srv,
            &srv.browser(),
            &tpp.client_id,
            &request_uri,
            USER,
            PASSWORD,
            true,
        )
        .await;
        assert!(
            back.starts_with(&format!("{}#", tpp.redirect_uri)),
            "{back}"
        );
        let f = fragment(&back);
        let mut names: Vec<&str> = f.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["code", "id_token", "iss", "state"]);
        assert_eq!(f["state"], state);
        assert_eq!(f["iss"], srv.issuer, "RFC 9207");
        let front = check_front_channel_id_token(srv, tpp, &f, &params, alg).await;

        // The token endpoint's id_token: same subject, same nonce.
        let a = redeem(srv, tpp, &f["code"], &pkce).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let back_channel = verify_with_jwks(srv, a.json["id_token"].as_str().unwrap()).await;
        assert_eq!(back_channel["sub"], front["sub"]);
        assert_eq!(back_channel["nonce"], front["nonce"]);
        assert_eq!(back_channel["openbanking_intent_id"], INTENT);
        assert!(back_channel.get("c_hash").is_none());
        assert_eq!(
            back_channel["at_hash"],
            half_sha256(a.json["access_token"].as_str().unwrap())
        );
    }
    w.srv.stop().await;
}

#[actix_web::test]
async fn hybrid_flow_returns_a_detached_id_token_in_the_fragment() {
    for backend in BACKENDS {
        hybrid_flow_in_the_fragment(backend).await;
    }
}

#[actix_web::test]
async fn hybrid_flow_as_a_form_post() {
    let w = hybrid_world(Backend::Sqlite).await;
    let srv = &w.srv;
    let tpp = &w.ps;
    let pkce = Pkce::new();
    let params = hybrid_params(tpp, &pkce, &[("response_mode", Some("form_post"))]);
    let request_uri = tpp.push(srv, signed(srv, tpp, &params)).await;
    let browser = srv.browser();
    // Through login and consent by hand: the last step is a page, not a
    // redirect.
    let res = browser
        .get(authorize_url(srv, &tpp.client_id, &request_uri))
        .send()
        .await
        .unwrap();
    let login = srv.url(&location(&res));
    let res = submit_login(&browser, &login, USER, PASSWORD).await;
    let consent = srv.url(&location(&res));
    let res = browser
        .post(&consent)
        .form(&[("action", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("form-action 'self' {}", tpp.redirect_uri)),
        "{csp}"
    );
    let html = res.text().await.unwrap();
    // The one inline script runs by its hash, nothing else.
    let script = html
        .split("<script>")
        .nth(1)
        .and_then(|s| s.split("</script>").next())
        .unwrap();
    let hash = {
        use base64::Engine as _;
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, script.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(d.as_ref())
    };
    assert!(
        csp.contains(&format!("script-src 'sha256-{hash}';")),
        "{csp}"
    );
    assert!(
        html.contains(&format!(
            "<form id=\"response\" method=\"post\" action=\"{}\">",
            tpp.redirect_uri
        )),
        "{html}"
    );
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("{name}: {html}"))
            + marker.len();
        html[start..].split('"').next().unwrap().to_owned()
    };
    let back: std::collections::HashMap<String, String> = ["code", "id_token", "state", "iss"]
        .iter()
        .map(|n| (n.to_string(), field(n)))
        .collect();
    assert_eq!(back["state"], param(&params, "state"));
    assert_eq!(back["iss"], srv.issuer);
    check_front_channel_id_token(srv, tpp, &back, &params, "PS256").await;
    let a = redeem(srv, tpp, &back["code"], &pkce).await;
    assert_eq!(a.status, 200, "{}", a.json);
    w.srv.stop().await;
}

#[actix_web::test]
async fn hybrid_errors_go_to_the_fragment_once_the_redirect_uri_is_known() {
    let w = hybrid_world(Backend::Sqlite).await;
    let srv = &w.srv;
    let tpp = &w.ps;
    // The customer denies: access_denied in the fragment, with state and iss.
    let pkce = Pkce::new();
    let params = hybrid_params(tpp, &pkce, &[]);
    let request_uri = tpp.push(srv, signed(srv, tpp, &params)).await;
    let back = browser_flow(
        srv,
        &srv.browser(),
        &tpp.client_id,
        &request_uri,
        USER,
        PASSWORD,
        false,
    )
    .await;
    let f = fragment(&back);
    assert_eq!(f["error"], "access_denied");
    assert_eq!(f["state"], param(&params, "state"));
    assert_eq!(f["iss"], srv.issuer);
    assert!(!f.contains_key("id_token") && !f.contains_key("code"));

    // PAR answers in JSON (RFC 9126 §2.3).
    for (what, extra, tpp, code) in [
        ("no nonce", vec![("nonce", None)], &w.ps, "invalid_request"),
        (
            "query mode",
            vec![("response_mode", Some("query"))],
            &w.ps,
            "invalid_request_object",
        ),
        (
            "not registered for code id_token",
            vec![],
            &w.code_only,
            "unauthorized_client",
        ),
        (
            "plain code without JARM",
            vec![("response_type", Some("code"))],
            &w.es,
            "invalid_request",
        ),
    ] {
        let params = hybrid_params(tpp, &Pkce::new(), &extra);
        let a = tpp.par(srv, signed(srv, tpp, &params)).await;
        assert_error(&a, 400, &[code]);
        assert!(a.json["error"] == code, "{what}: {}", a.json);
    }
    // Code with JARM is the other FAPI 1.0 response.
    let p = hybrid_params(
        &w.es,
        &Pkce::new(),
        &[
            ("response_type", Some("code")),
            ("response_mode", Some("jwt")),
        ],
    );
    assert_eq!(w.es.par(srv, signed(srv, &w.es, &p)).await.status, 201);
    // Plain parameters: FAPI 1.0 wants them signed.
    let a = w.ps.par(srv, hybrid_params(&w.ps, &Pkce::new(), &[])).await;
    assert_error(&a, 400, &["invalid_request"]);
    w.srv.stop().await;
}

#[actix_web::test]
async fn discovery_says_what_each_profile_serves() {
    use strongroom::config::Profile;
    for (profile, types, modes) in [
        (
            Profile::Fapi2,
            json!(["code"]),
            json!(["query", "jwt", "query.jwt"]),
        ),
        (
            Profile::Fapi1Advanced,
            json!(["code id_token", "code"]),
            json!(["fragment", "form_post", "jwt", "query.jwt"]),
        ),
        (
            Profile::UkOpenBanking,
            json!(["code id_token"]),
            json!(["fragment", "form_post"]),
        ),
    ] {
        let mut setup = Setup::new(Backend::Sqlite);
        setup.tweak = Some(match profile {
            Profile::Fapi2 => |c| c.profile = Profile::Fapi2,
            Profile::Fapi1Advanced => |c| c.profile = Profile::Fapi1Advanced,
            _ => |c| c.profile = Profile::UkOpenBanking,
        });
        let srv = setup.start().await;
        let meta = srv.discovery().await;
        assert_eq!(meta["response_types_supported"], types, "{profile:?}");
        assert_eq!(meta["response_modes_supported"], modes, "{profile:?}");
        srv.stop().await;
    }
}

//! Hostile input through the real server (issue 22 §1, §2, §6): request
//! headers that name another host never become the URL a DPoP proof or a
//! client assertion is checked against, on either listener and under every
//! profile; control characters and badly encoded text in any parameter,
//! path segment or JWT claim get the spec's error and never a 5xx, on
//! SQLite and PostgreSQL.

use oauth_core::policy::Profile;
use serde_json::{Value, json};
use strongroom::config::Config;

use crate::fapi::{World, world_with};
use crate::harness::{BACKENDS, Backend};
use crate::tpp::*;

/// Header sets that name another server, as an attacker would forge them
/// or a misconfigured proxy would pass them on.
fn forgeries(host: &str) -> Vec<Vec<(&'static str, String)>> {
    vec![
        vec![("host", host.to_owned())],
        vec![("x-forwarded-host", host.to_owned())],
        vec![
            ("x-forwarded-host", host.to_owned()),
            ("x-forwarded-proto", "https".into()),
            ("x-forwarded-port", "443".into()),
        ],
        vec![
            ("x-forwarded-proto", "http".into()),
            ("x-forwarded-port", "80".into()),
        ],
        vec![("forwarded", format!("host={host};proto=https"))],
        vec![("forwarded", format!("for=192.0.2.1;host=\"{host}\""))],
    ]
}

async fn post_with(
    http: &reqwest::Client,
    url: &str,
    form: &[(String, String)],
    dpop: Option<String>,
    headers: &[(&'static str, String)],
) -> Answer {
    let mut req = http.post(url).form(form);
    if let Some(p) = dpop {
        req = req.header("DPoP", p);
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    answer(req.send().await.unwrap()).await
}

/// A client_credentials request at `token_url` with an assertion for `aud`,
/// a DPoP proof for `htu`, and `headers`.
async fn cc_token(
    http: &reqwest::Client,
    tpp: &Tpp,
    token_url: &str,
    aud: Value,
    htu: &str,
    headers: &[(&'static str, String)],
) -> Answer {
    let proof = tpp.dpop_proof("POST", htu, None);
    post_with(http, token_url, &cc_form(tpp, aud), Some(proof), headers).await
}

fn cc_form(tpp: &Tpp, aud: Value) -> Vec<(String, String)> {
    vec![
        ("grant_type".into(), "client_credentials".into()),
        ("scope".into(), "accounts".into()),
        ("client_id".into(), tpp.client_id.clone()),
        ("client_assertion_type".into(), ASSERTION_TYPE.into()),
        (
            "client_assertion".into(),
            tpp.key.sign(None, &tpp.assertion_claims(aud)),
        ),
    ]
}

/// A change to the configuration before the server starts.
type Tweak = fn(&mut Config);

const PROFILES: [(Profile, Tweak); 4] = [
    (Profile::Fapi2, |c| c.profile = Profile::Fapi2),
    (Profile::Fapi2MessageSigning, |c| {
        c.profile = Profile::Fapi2MessageSigning;
    }),
    (Profile::Fapi1Advanced, |c| {
        c.profile = Profile::Fapi1Advanced
    }),
    (Profile::UkOpenBanking, |c| {
        c.profile = Profile::UkOpenBanking;
        // No DPoP under the UK profile: its clients' tokens are bound to
        // their certificates.
        for cl in &mut c.clients {
            if cl.metadata.dpop_bound_access_tokens {
                cl.metadata.dpop_bound_access_tokens = false;
                cl.metadata.tls_client_certificate_bound_access_tokens = true;
            }
        }
    }),
];

/// RFC 9449 §4.3 check 9 and RFC 7523 §3 item 3 against forged hosts.
async fn forged_hosts_under(w: &World, profile: Profile) {
    let srv = &w.srv;
    let tpp = &w.dpop;
    let http = srv.client(None);
    // What the profile's discovery offers for client authentication (the
    // UK profile: no self_signed_tls_client_auth).
    let meta = srv.discovery().await;
    let mut methods = vec!["private_key_jwt", "tls_client_auth"];
    if profile != Profile::UkOpenBanking {
        methods.push("self_signed_tls_client_auth");
    }
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(methods),
        "{profile:?}"
    );
    let evil = "evil.example";
    for base in [srv.issuer.clone(), srv.mtls_base.clone()] {
        let token_url = format!("{base}/token");
        let aud = if profile.is_fapi2() {
            json!(srv.issuer)
        } else {
            json!(token_url)
        };
        let uk = profile == Profile::UkOpenBanking;
        for headers in forgeries(evil) {
            if uk {
                // No DPoP here at all, whatever the proof says; the
                // certificate binds, and the URL is still this server's.
                let a = cc_token(&http, tpp, &token_url, aud.clone(), &token_url, &headers).await;
                assert_error(&a, 400, &["invalid_request"]);
                let d = a.json["error_description"].as_str().unwrap();
                assert!(
                    d.contains("DPoP is not offered under the uk-ob profile"),
                    "{d}"
                );
                if base == srv.mtls_base {
                    let form = cc_form(tpp, aud.clone());
                    let a = post_with(&w.mtls_http(), &token_url, &form, None, &headers).await;
                    assert_eq!(a.status, 200, "{headers:?} at {token_url}: {}", a.json);
                    assert_eq!(a.json["token_type"], "Bearer");
                }
                continue;
            }
            // A proof made for another server's token endpoint.
            let a = cc_token(
                &http,
                tpp,
                &token_url,
                aud.clone(),
                &format!("https://{evil}/token"),
                &headers,
            )
            .await;
            assert_error(&a, 400, &["invalid_dpop_proof"]);
            assert!(
                a.json["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("htu"),
                "{profile:?} {headers:?}: {}",
                a.json
            );
            // The same headers on a proof for this server: still this
            // server's URL, so it passes.
            let a = cc_token(&http, tpp, &token_url, aud.clone(), &token_url, &headers).await;
            assert_eq!(
                a.status, 200,
                "{profile:?} {headers:?} at {token_url}: {}",
                a.json
            );
        }
        // A client assertion made for another authorization server, sent
        // with headers that name that server.
        let other = "other-bank.example";
        for headers in forgeries(other) {
            let form = cc_form(tpp, json!(format!("https://{other}/token")));
            let proof = (!uk).then(|| tpp.dpop_proof("POST", &token_url, None));
            let a = post_with(&http, &token_url, &form, proof, &headers).await;
            assert_error(&a, 401, &["invalid_client"]);
            // Also the PAR endpoint's audience (FAPI 1.0 accepts the URL of
            // the endpoint in use).
            let par_url = format!("{base}/par");
            let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
            form.push(("client_id".into(), tpp.client_id.clone()));
            form.push(("client_assertion_type".into(), ASSERTION_TYPE.into()));
            form.push((
                "client_assertion".into(),
                tpp.key.sign(
                    None,
                    &tpp.assertion_claims(json!(format!("https://{other}/par"))),
                ),
            ));
            let proof = (!uk).then(|| tpp.dpop_proof("POST", &par_url, None));
            let a = post_with(&http, &par_url, &form, proof, &headers).await;
            assert_error(&a, 401, &["invalid_client"]);
        }
    }
}

#[actix_web::test]
async fn forged_host_headers_do_not_make_the_request_url() {
    for (profile, tweak) in PROFILES {
        let w = world_with(Backend::Sqlite, Some(tweak)).await;
        forged_hosts_under(&w, profile).await;
        w.srv.stop().await;
    }
}

/// Behind a trusted proxy (here: the test client's own address), the
/// forwarded host may pick the other configured URL, and nothing else.
#[actix_web::test]
async fn a_trusted_proxy_only_picks_between_configured_urls() {
    let w = world_with(
        Backend::Sqlite,
        Some(|c| c.tls.trusted_proxies = vec!["127.0.0.1".into()]),
    )
    .await;
    forged_hosts_under(&w, Profile::Fapi2).await;
    let srv = &w.srv;
    let tpp = &w.dpop;
    let http = srv.client(None);
    let mtls_authority = srv.mtls_base.trim_start_matches("https://").to_owned();
    let main_token = srv.url("/token");
    let mtls_token = srv.mtls_url("/token");
    for headers in [
        vec![("x-forwarded-host", mtls_authority.clone())],
        vec![("forwarded", format!("host=\"{mtls_authority}\""))],
    ] {
        // Arriving at the main listener, forwarded for the mTLS name: the
        // proof for the mTLS URL passes, the main listener's own does not.
        let issuer = json!(srv.issuer);
        let a = cc_token(
            &http,
            tpp,
            &main_token,
            issuer.clone(),
            &mtls_token,
            &headers,
        )
        .await;
        assert_eq!(a.status, 200, "{headers:?}: {}", a.json);
        let a = cc_token(&http, tpp, &main_token, issuer, &main_token, &headers).await;
        assert_error(&a, 400, &["invalid_dpop_proof"]);
    }
    w.srv.stop().await;
}

/// Strings no identifier may hold: NUL alone and inside, other C0
/// controls, DEL and a C1 control.
const CONTROLS: [&str; 7] = [
    "\u{0}",
    "tpp-dpop\u{0}",
    "\u{1}",
    "\u{1b}[2J",
    "\u{1f}",
    "\u{7f}",
    "\u{85}",
];

/// The same, percent-encoded for a URL or form, plus encodings that are not
/// UTF-8 (an encoded lone surrogate, an overlong NUL, a stray byte).
fn encoded_controls() -> Vec<String> {
    let mut v: Vec<String> = CONTROLS.iter().map(|c| urlenc(c)).collect();
    v.extend([
        "%ED%A0%80".into(),
        "%C0%80".into(),
        "%FF".into(),
        "x%ED%B0%80y".into(),
    ]);
    v
}

/// A pushed authorization request with a fresh DPoP proof.
async fn push(
    http: &reqwest::Client,
    tpp: &Tpp,
    par_url: &str,
    form: &[(String, String)],
) -> Answer {
    post_form(
        http,
        par_url,
        form,
        Some(tpp.dpop_proof("POST", par_url, None)),
    )
    .await
}

fn not_5xx(a: &Answer, what: &str) {
    assert!(a.status < 500, "{what}: {} {}", a.status, a.json);
}

async fn get(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> Answer {
    let mut req = http.get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    answer(req.send().await.unwrap()).await
}

async fn post_raw(
    http: &reqwest::Client,
    url: &str,
    body: String,
    content_type: &str,
    dpop: Option<String>,
) -> Answer {
    let mut req = http
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(p) = dpop {
        req = req.header("DPoP", p);
    }
    answer(req.send().await.unwrap()).await
}

fn form_body(form: &[(String, String)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", urlenc(k), urlenc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn control_characters_on(backend: Backend) {
    let w = world_with(backend, Some(crate::dcr::with_directory)).await;
    let srv = &w.srv;
    let tpp = &w.dpop;
    let http = srv.client(None);
    let token_url = srv.url("/token");
    let par_url = srv.url("/par");
    for bad in encoded_controls() {
        // Query parameters of the browser's front door: the error page.
        for url in [
            format!("{}?client_id={bad}&request_uri=x", srv.url("/authorize")),
            format!(
                "{}?client_id=tpp-dpop&request_uri={bad}",
                srv.url("/authorize")
            ),
            format!(
                "{}?client_id=tpp-dpop&request_uri=x&{bad}=1",
                srv.url("/authorize")
            ),
        ] {
            let res = http.get(&url).send().await.unwrap();
            let status = res.status().as_u16();
            let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
            let page = res.text().await.unwrap();
            assert_eq!(status, 400, "{url}: {page}");
            assert!(ct.starts_with("text/html"), "{url}: {ct}");
            assert!(page.contains("invalid_request"), "{url}: {page}");
        }
        // Path segments: no such resource; on the browser's routes, the
        // error page.
        for path in [
            format!("/register/{bad}"),
            format!("/bank/consents/{bad}/revoke"),
        ] {
            let a = get(&http, &srv.url(&path), Some("some-token")).await;
            assert_eq!(a.status, 404, "{path}: {}", a.json);
        }
        let path = format!("/interaction/{bad}/login");
        let res = http.get(srv.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        assert!(res.text().await.unwrap().contains("no such page"), "{path}");
        let a = get(
            &http,
            &format!("{}?consent_id={bad}", srv.url("/bank/grants")),
            None,
        )
        .await;
        assert_error(&a, 400, &["invalid_request"]);
        // Form parameters at every back-channel endpoint.
        for (name, endpoint) in [
            ("client_id", "/par"),
            ("client_id", "/token"),
            ("scope", "/token"),
            ("token", "/introspect"),
            ("token", "/revoke"),
            ("client_assertion", "/token"),
        ] {
            let url = srv.url(endpoint);
            let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
            form.extend(tpp.auth_fields(srv));
            let mut body = form_body(&form);
            body.push_str(&format!("&{name}={bad}"));
            let a = post_raw(
                &http,
                &url,
                body,
                "application/x-www-form-urlencoded",
                Some(tpp.dpop_proof("POST", &url, None)),
            )
            .await;
            not_5xx(&a, &format!("{name} at {endpoint} = {bad}"));
            assert_error(&a, 400, &["invalid_request"]);
        }
        // HTTP Basic credentials (RFC 6749 §2.3.1 form-encodes both parts).
        let basic = b64_std(&format!("{bad}:secret"));
        let a = answer(
            http.post(&token_url)
                .header("authorization", format!("Basic {basic}"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(&a, 401, &["invalid_client"]);
    }
    for bad in CONTROLS {
        // Claims of a client assertion: the issuer (the client's key in the
        // store) and, for a real client, the jti (a single-use key).
        let mut claims = tpp.assertion_claims(json!(srv.issuer));
        claims["iss"] = json!(bad);
        claims["sub"] = json!(bad);
        let forged = tpp.key.sign(None, &claims);
        let mut claims = tpp.assertion_claims(json!(srv.issuer));
        claims["jti"] = json!(format!("jti{bad}"));
        let bad_jti = tpp.key.sign(None, &claims);
        for assertion in [forged, bad_jti] {
            for endpoint in ["/token", "/par", "/introspect", "/revoke"] {
                let url = srv.url(endpoint);
                let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
                form.extend([
                    ("grant_type".into(), "client_credentials".into()),
                    ("token".into(), "x".into()),
                    ("client_assertion_type".into(), ASSERTION_TYPE.into()),
                    ("client_assertion".into(), assertion.clone()),
                ]);
                let proof = tpp.dpop_proof("POST", &url, None);
                let a = post_form(&http, &url, &form, Some(proof)).await;
                not_5xx(&a, &format!("assertion claim {bad:?} at {endpoint}"));
                assert_error(&a, 401, &["invalid_client"]);
            }
        }
        // A DPoP proof whose jti or htm holds one.
        for claim in ["jti", "htm", "htu"] {
            for url in [&token_url, &par_url] {
                let mut claims = Tpp::dpop_claims("POST", url, None);
                claims[claim] = json!(format!("{}{bad}", claims[claim].as_str().unwrap()));
                let proof = tpp.dpop_proof_claims(&claims);
                let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
                form.push(("grant_type".into(), "client_credentials".into()));
                form.extend(tpp.auth_fields(srv));
                let a = post_form(&http, url, &form, Some(proof)).await;
                not_5xx(&a, &format!("DPoP {claim} {bad:?} at {url}"));
                assert_error(&a, 400, &["invalid_dpop_proof"]);
            }
        }
        // A registration request (RFC 7591 §3.2.2 invalid_client_metadata),
        // before anything is looked up.
        for field in ["software_id", "client_name", "jwks_uri"] {
            let body = json!({"redirect_uris": ["https://tpp.example/cb"], field: bad}).to_string();
            let a = post_raw(
                &http,
                &srv.mtls_url("/register"),
                body,
                "application/json",
                None,
            )
            .await;
            not_5xx(&a, &format!("registration {field} {bad:?}"));
            assert_error(&a, 400, &["invalid_client_metadata"]);
        }
        // A signed request object whose state, or a claim inside its
        // claims object, holds one (RFC 9101 §6.3).
        for edit in [
            |c: &mut Value, bad: &str| c["state"] = json!(bad),
            |c: &mut Value, bad: &str| {
                c["claims"] = json!({"id_token": {"acr": {"values": [bad]}}});
            },
        ] {
            let t = now();
            let mut c = json!({"iss": tpp.client_id, "client_id": tpp.client_id, "aud": srv.issuer,
                "exp": t + 300, "nbf": t, "iat": t, "jti": random(8)});
            for (k, v) in tpp.authz_params(&Pkce::new(), "openid accounts") {
                c[k] = json!(v);
            }
            edit(&mut c, bad);
            let mut form = tpp.auth_fields(srv);
            form.push((
                "request".into(),
                tpp.key.sign(Some("oauth-authz-req+jwt"), &c),
            ));
            let a = push(&http, tpp, &par_url, &form).await;
            not_5xx(&a, &format!("request object {bad:?}"));
            assert_error(&a, 400, &["invalid_request_object"]);
        }
        // The claims parameter: JSON whitespace is allowed, control
        // characters inside its strings are not.
        let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
        form.extend(tpp.auth_fields(srv));
        form.push((
            "claims".into(),
            json!({"id_token": {"openbanking_intent_id": {"value": format!("intent{bad}"), "essential": true}}})
                .to_string(),
        ));
        let a = push(&http, tpp, &par_url, &form).await;
        not_5xx(&a, &format!("claims {bad:?}"));
        assert_error(&a, 400, &["invalid_request"]);
    }
    // What was refused left the genuine client working.
    let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
    form.extend(tpp.auth_fields(srv));
    form.push(("claims".into(), "{\n\t\"id_token\": {}\r\n}".into()));
    let a = push(&http, tpp, &par_url, &form).await;
    assert_eq!(a.status, 201, "{}", a.json);
    w.srv.stop().await;
}

#[actix_web::test]
async fn control_characters_get_the_specs_error_and_never_a_5xx() {
    for backend in BACKENDS {
        control_characters_on(backend).await;
    }
}

#[actix_web::test]
async fn a_repeated_authorize_parameter_is_the_error_page() {
    let w = world_with(Backend::Sqlite, None).await;
    let srv = &w.srv;
    let http = srv.client(None);
    for q in [
        "client_id=tpp-dpop&client_id=tpp-dpop&request_uri=x",
        "client_id=tpp-dpop&request_uri=x&request_uri=y",
    ] {
        let res = http
            .get(format!("{}?{q}", srv.url("/authorize")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        let page = res.text().await.unwrap();
        assert!(ct.starts_with("text/html"), "{ct}");
        assert!(page.contains("invalid_request"), "{page}");
        assert!(page.contains("repeated"), "{page}");
        assert!(!page.contains("deserialize"), "{page}");
    }
    w.srv.stop().await;
}

fn b64_std(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `[limits]` (crate::limits): per client after authentication, per source
/// address before it; 429 with Retry-After and temporarily_unavailable;
/// another client's share untouched; the share comes back with time.
#[actix_web::test]
async fn rate_limits_answer_429_with_retry_after() {
    let w = world_with(
        Backend::Sqlite,
        Some(|c| {
            c.limits.per_client_per_sec = 2;
            c.limits.per_client_burst = 2;
        }),
    )
    .await;
    let http = w.srv.client(None);
    let url = w.srv.url("/token");
    let aud = json!(w.srv.issuer);
    async fn ask(http: &reqwest::Client, tpp: &Tpp, url: &str, aud: &Value) -> Answer {
        cc_token(http, tpp, url, aud.clone(), url, &[]).await
    }
    for i in 0..2 {
        let a = ask(&http, &w.dpop, &url, &aud).await;
        assert_eq!(a.status, 200, "request {i}: {}", a.json);
    }
    let a = ask(&http, &w.dpop, &url, &aud).await;
    assert_eq!(a.status, 429, "{}", a.json);
    assert_eq!(a.json["error"], "temporarily_unavailable");
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(a.headers["cache-control"], "no-store");
    // Another client is not held back by this one.
    assert_eq!(ask(&http, &w.other, &url, &aud).await.status, 200);
    // The share refills at the configured rate.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(ask(&http, &w.dpop, &url, &aud).await.status, 200);
    // A refused revocation request wrote nothing: its assertion is good
    // once the share is back, and then spent.
    let revoke = w.srv.url("/revoke");
    let mut form = vec![("token".to_owned(), "not-a-token".to_owned())];
    form.extend(w.other.auth_fields(&w.srv));
    let mut refused = None;
    for _ in 0..4 {
        let a = post_with(&http, &revoke, &form, None, &[]).await;
        if a.status == 429 {
            refused = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{}", a.json);
        form.truncate(1);
        form.extend(w.other.auth_fields(&w.srv));
    }
    let a = refused.expect("the revocation requests reached the limit");
    assert!(a.headers.contains_key("retry-after"));
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    let a = post_with(&http, &revoke, &form, None, &[]).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let a = post_with(&http, &revoke, &form, None, &[]).await;
    assert_error(&a, 401, &["invalid_client"]);
    w.srv.stop().await;

    // Per source: counted before authentication, so even requests that
    // would fail it are held back once the address's share is spent.
    let w = world_with(
        Backend::Sqlite,
        Some(|c| {
            c.limits.per_source_per_sec = 1;
            c.limits.per_source_burst = 2;
        }),
    )
    .await;
    let http = w.srv.client(None);
    let url = w.srv.url("/token");
    let bad = vec![
        ("grant_type".to_string(), "client_credentials".to_string()),
        ("client_id".into(), "tpp-dpop".into()),
    ];
    let a = post_with(&http, &url, &bad, None, &[]).await;
    assert_eq!(a.status, 401, "{}", a.json);
    let garbage_proof = Some("not.a.proof".to_string());
    let a = post_with(&http, &url, &bad, garbage_proof.clone(), &[]).await;
    assert_error(&a, 400, &["invalid_dpop_proof"]);
    // Over the share: refused before the DPoP proof is even looked at.
    let a = post_with(&http, &url, &bad, garbage_proof, &[]).await;
    assert_eq!(a.status, 429, "{}", a.json);
    assert!(a.headers.contains_key("retry-after"));
    // PAR and registration share the address's count.
    let a = post_with(&http, &w.srv.url("/par"), &bad, None, &[]).await;
    assert_eq!(a.status, 429, "{}", a.json);
    w.srv.stop().await;
}

/// `header.payload.signature` from raw JSON texts, the signature garbage:
/// what an attacker sends without the client's key.
fn raw_jws(header: &str, payload: &str) -> String {
    use base64::Engine as _;
    let b = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b(header.as_bytes()),
        b(payload.as_bytes()),
        b(&[7u8; 64])
    )
}

/// JSON nested `depth` arrays deep around `inner`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// The issue's "bad input" list at the back-channel endpoints, through the
/// real server: an oversized JWT header or payload, JSON nested deeper
/// than any parser should follow (in a JWT's header or payload, a request
/// object, the `claims` parameter, a registration body), 10 000 form
/// fields, 10 000 copies of one, bytes that are not UTF-8. Each gets a 4xx
/// with the spec's error, quickly, and the genuine client goes on working.
async fn oversized_and_nested_on(backend: Backend) {
    use std::time::{Duration, Instant};
    let w = world_with(backend, Some(crate::dcr::with_directory)).await;
    let srv = &w.srv;
    let tpp = &w.dpop;
    let http = srv.client(None);
    let token_url = srv.url("/token");
    let par_url = srv.url("/par");
    // Deeper than serde_json follows (128), and still under the caps on a
    // client assertion's (16 KiB) and a DPoP proof's (8 KiB) length.
    let deep_jwt = 2_000;
    // Under the 256 KiB body limit (more is a 413 before any parsing).
    let deep = 20_000;
    let big = "A".repeat(100 * 1024);
    let claims = tpp.assertion_claims(json!(srv.issuer));
    let alg = format!("{:?}", tpp.key.alg);
    let header = format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, tpp.key.kid);
    let assertions = [
        (
            "an oversized header",
            raw_jws(
                &format!(r#"{{"alg":"{alg}","kid":"{}","x":"{big}"}}"#, tpp.key.kid),
                &claims.to_string(),
            ),
        ),
        ("an oversized payload", {
            let mut c = claims.clone();
            c["x"] = json!(big);
            tpp.key.sign(None, &c)
        }),
        (
            "a deeply nested header",
            raw_jws(
                &format!(r#"{{"alg":"{alg}","x":{}}}"#, nested(deep_jwt, "1")),
                &claims.to_string(),
            ),
        ),
        (
            "a deeply nested payload",
            raw_jws(
                &header,
                &format!(
                    r#"{{"iss":"{}","sub":"{}","x":{}}}"#,
                    tpp.client_id,
                    tpp.client_id,
                    nested(deep_jwt, "1")
                ),
            ),
        ),
    ];
    let timed = |what: &str, t0: Instant| {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{what} took {:?}",
            t0.elapsed()
        );
    };
    for (what, assertion) in &assertions {
        for url in [&token_url, &par_url] {
            let mut form = if *url == token_url {
                vec![
                    ("grant_type".to_owned(), "client_credentials".to_owned()),
                    ("scope".into(), "accounts".into()),
                ]
            } else {
                tpp.authz_params(&Pkce::new(), "openid accounts")
            };
            form.extend([
                ("client_id".into(), tpp.client_id.clone()),
                ("client_assertion_type".into(), ASSERTION_TYPE.into()),
                ("client_assertion".into(), assertion.clone()),
            ]);
            let t0 = Instant::now();
            let a = post_form(&http, url, &form, Some(tpp.dpop_proof("POST", url, None))).await;
            timed(what, t0);
            not_5xx(&a, &format!("assertion with {what} at {url}"));
            assert_eq!(a.status, 401, "assertion with {what} at {url}: {}", a.json);
            assert_error(&a, 401, &["invalid_client"]);
        }
    }
    // DPoP proofs with the same, at the token endpoint: over the proof's
    // 8 KiB cap (over about 128 KiB, HTTP itself refuses the header: 431).
    let big = "A".repeat(12 * 1024);
    let proof_claims = Tpp::dpop_claims("POST", &token_url, None);
    let jwk = tpp.dpop.public_jwk();
    let proofs = [
        (
            "an oversized header",
            raw_jws(
                &format!(r#"{{"typ":"dpop+jwt","alg":"{alg}","jwk":{jwk},"x":"{big}"}}"#),
                &proof_claims.to_string(),
            ),
        ),
        ("an oversized payload", {
            let mut c = proof_claims.clone();
            c["x"] = json!(big);
            tpp.dpop_proof_claims(&c)
        }),
        (
            "a deeply nested header",
            raw_jws(
                &format!(
                    r#"{{"typ":"dpop+jwt","alg":"{alg}","jwk":{}}}"#,
                    nested(deep_jwt, "1")
                ),
                &proof_claims.to_string(),
            ),
        ),
        (
            "a deeply nested payload",
            raw_jws(
                &format!(r#"{{"typ":"dpop+jwt","alg":"{alg}","jwk":{jwk}}}"#),
                &format!(r#"{{"htm":"POST","x":{}}}"#, nested(deep_jwt, "1")),
            ),
        ),
    ];
    for (what, proof) in proofs {
        let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
        form.extend(tpp.auth_fields(srv));
        let t0 = Instant::now();
        let a = post_form(&http, &token_url, &form, Some(proof)).await;
        timed(what, t0);
        not_5xx(&a, &format!("DPoP proof with {what}"));
        assert_eq!(a.status, 400, "DPoP proof with {what}: {}", a.json);
        assert_error(&a, 400, &["invalid_dpop_proof"]);
    }
    let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
    form.extend(tpp.auth_fields(srv));
    for n in [100, 200] {
        // A connection of its own: a 431 closes it. The server answers as
        // soon as the head is too large and closes, so the client may meet
        // the closed socket while it still writes the body (a broken pipe
        // before it reads the 431): the head was refused either way.
        let once = srv.client(None);
        let sent = once
            .post(&token_url)
            .form(&form)
            .header("DPoP", "A".repeat(n * 1024))
            .send()
            .await;
        let a = match sent {
            Ok(res) => answer(res).await,
            Err(e) if e.is_request() && !e.is_timeout() => continue,
            Err(e) => panic!("a {n} KiB DPoP header: {e}"),
        };
        match a.status {
            400 => assert_error(&a, 400, &["invalid_dpop_proof"]),
            431 => {}
            s => panic!("a {n} KiB DPoP header: {s} {}", a.json),
        }
    }
    // A request object nested deep, and the claims parameter.
    let t = now();
    let ro = raw_jws(
        &format!(
            r#"{{"alg":"{alg}","typ":"oauth-authz-req+jwt","kid":"{}"}}"#,
            tpp.key.kid
        ),
        &format!(
            r#"{{"iss":"{}","aud":"{}","exp":{},"nbf":{t},"claims":{}}}"#,
            tpp.client_id,
            srv.issuer,
            t + 60,
            nested(deep, "1")
        ),
    );
    let mut form = tpp.auth_fields(srv);
    form.push(("request".into(), ro));
    let t0 = Instant::now();
    let a = push(&http, tpp, &par_url, &form).await;
    timed("a nested request object", t0);
    not_5xx(&a, "a nested request object");
    assert_error(&a, 400, &["invalid_request_object"]);
    let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
    form.extend(tpp.auth_fields(srv));
    form.push((
        "claims".into(),
        format!(r#"{{"id_token":{}}}"#, nested(deep, "{}")),
    ));
    let t0 = Instant::now();
    let a = push(&http, tpp, &par_url, &form).await;
    timed("a nested claims parameter", t0);
    not_5xx(&a, "a nested claims parameter");
    assert_error(&a, 400, &["invalid_request"]);
    // A registration body nested deep, and a software statement.
    for body in [
        format!(
            r#"{{"redirect_uris":{}}}"#,
            nested(deep, "\"https://x.example/cb\"")
        ),
        format!(
            r#"{{"redirect_uris":["https://x.example/cb"],"software_statement":"{}"}}"#,
            raw_jws(
                r#"{"alg":"PS256","kid":"x"}"#,
                &format!(r#"{{"x":{}}}"#, nested(deep, "1"))
            )
        ),
    ] {
        let t0 = Instant::now();
        let a = post_raw(
            &http,
            &srv.mtls_url("/register"),
            body,
            "application/json",
            None,
        )
        .await;
        timed("a nested registration", t0);
        not_5xx(&a, "a nested registration");
        assert!(
            [400, 401].contains(&a.status),
            "a nested registration: {} {}",
            a.status,
            a.json
        );
    }
    // 10 000 form fields: unknown ones, then one parameter 10 000 times;
    // and a parameter twice (RFC 6749 §3.1).
    for (what, extra) in [
        (
            "10 000 unknown fields",
            (0..10_000)
                .map(|i| format!("&f{i}=v{i}"))
                .collect::<String>(),
        ),
        ("10 000 scopes", "&scope=accounts".repeat(10_000)),
        ("two scopes", "&scope=accounts".repeat(2)),
    ] {
        for url in [&token_url, &par_url] {
            let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
            form.retain(|(k, _)| k != "scope");
            form.push(("grant_type".into(), "client_credentials".into()));
            form.extend(tpp.auth_fields(srv));
            let mut body = form_body(&form);
            body.push_str(&extra);
            let t0 = Instant::now();
            let a = post_raw(
                &http,
                url,
                body,
                "application/x-www-form-urlencoded",
                Some(tpp.dpop_proof("POST", url, None)),
            )
            .await;
            timed(what, t0);
            not_5xx(&a, &format!("{what} at {url}"));
            assert_eq!(a.status, 400, "{what} at {url}: {}", a.json);
            assert_error(&a, 400, &["invalid_request"]);
        }
    }
    // Bytes that are not UTF-8, unescaped, in a form body.
    for url in [&token_url, &par_url] {
        let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
        form.push(("grant_type".into(), "client_credentials".into()));
        form.extend(tpp.auth_fields(srv));
        let mut body = form_body(&form).into_bytes();
        body.extend_from_slice(b"&state=\xff\xfe\xc0\x80");
        let a = answer(
            http.post(url.as_str())
                .header("content-type", "application/x-www-form-urlencoded")
                .header("DPoP", tpp.dpop_proof("POST", url, None))
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        not_5xx(&a, &format!("raw bytes at {url}"));
        assert_error(&a, 400, &["invalid_request"]);
    }
    // A body above a route's own limit (256 KiB; the server's, 2 MiB, in
    // connections::a_declared_oversized_body_is_refused_before_it_is_read):
    // 413 with the OAuth error object.
    for path in ["/token", "/par", "/introspect", "/revoke"] {
        let url = srv.url(path);
        let body = format!("grant_type=client_credentials&x={}", "A".repeat(300 * 1024));
        let a = post_raw(&http, &url, body, "application/x-www-form-urlencoded", None).await;
        assert_eq!(a.status, 413, "300 KiB at {path}: {}", a.json);
        assert_eq!(a.json["error"], "invalid_request", "300 KiB at {path}");
    }
    // What was refused left the genuine client working.
    let mut form = tpp.authz_params(&Pkce::new(), "openid accounts");
    form.extend(tpp.auth_fields(srv));
    let a = push(&http, tpp, &par_url, &form).await;
    assert_eq!(a.status, 201, "{}", a.json);
    w.srv.stop().await;
}

#[actix_web::test]
async fn oversized_and_nested_input_gets_the_specs_error_quickly() {
    for backend in BACKENDS {
        oversized_and_nested_on(backend).await;
    }
}

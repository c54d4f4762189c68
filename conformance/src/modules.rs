//! One test per OIDF module of the FAPI 2.0 plans, named after it, and the
//! table of modules per plan and variant. FAPI-CIBA (ciba.rs) and FAPI 1.0
//! Advanced (fapi1.rs) have their own tables and `run`; the registration
//! plans are still pending ([`PENDING_PLANS`]).

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::ensure;
use crate::flow::{AuthzOutcome, Client, Env, Params, R, Variant, check_error, get, set};
use crate::jose::{self, dpop_claims, dpop_proof, now, random};

/// When a module applies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    All,
    /// Only with signed request objects (Message Signing plan).
    Ms,
    Openid,
    Dpop,
    Pkjwt,
    /// client_auth_type=mtls only.
    Mtls,
    /// ciba_mode=ping only.
    Ping,
    /// FAPI 1.0: fapi_auth_request_method=pushed only.
    Pushed,
    /// FAPI 1.0: fapi_auth_request_method=by_value only.
    ByValue,
    /// FAPI 1.0: pushed and private_key_jwt.
    PushedPkjwt,
    /// FAPI 1.0: fapi_response_mode=plain_response only (`code id_token`).
    PlainResponse,
    /// fapi_profile=openbanking_uk only.
    Uk,
    /// Not run; the reason is printed.
    Skip(&'static str),
}

pub struct Module {
    pub name: &'static str,
    pub cond: Cond,
    /// Waits out a lifetime (runs outside the concurrency limit).
    pub slow: bool,
}

const fn m(name: &'static str, cond: Cond) -> Module {
    Module {
        name,
        cond,
        slow: false,
    }
}
const fn slow(name: &'static str, cond: Cond) -> Module {
    Module {
        name,
        cond,
        slow: true,
    }
}

const UK: Cond = Cond::Skip(
    "fapi_profile=openbanking_uk only (this run is plain_fapi; UK intents are not built yet)",
);
const BR: Cond = Cond::Skip(
    "fapi_profile=openbanking_brazil only (this run is plain_fapi; Brazil payment consents are not built)",
);
const CONNECTID: Cond =
    Cond::Skip("fapi_profile=connectid_au only (this run is plain_fapi; ConnectID is not built)");

/// The FAPI 2.0 Message Signing (final) module list; the Security Profile
/// plan is the same minus the `Cond::Ms` modules (oidf-modules.md §1).
pub const FAPI2_MODULES: &[Module] = &[
    m("discovery-end-point-verification", Cond::All),
    m("happy-flow", Cond::All),
    m("user-rejects-authentication", Cond::All),
    m("ensure-request-object-with-multiple-aud-succeeds", Cond::Ms),
    m(
        "ensure-authorization-request-without-state-success",
        Cond::All,
    ),
    m(
        "ensure-authorization-request-without-nonce-success",
        Cond::Openid,
    ),
    m(
        "ensure-authorization-request-with-64-char-nonce-success",
        Cond::Openid,
    ),
    m("ensure-other-scope-order-succeeds", Cond::Openid),
    m("test-claims-parameter-identity-claims", Cond::Openid),
    m("access-token-type-header-case-sensitivity", Cond::All),
    m(
        "ensure-request-object-with-nbf-8-seconds-in-the-future-is-accepted",
        Cond::Ms,
    ),
    m("check-dpop-proof-nbf-exp", Cond::Dpop),
    m(
        "ensure-dpopproof-with-iat-10seconds-before-succeeds",
        Cond::Dpop,
    ),
    m(
        "ensure-dpopproof-with-iat-10seconds-after-succeeds",
        Cond::Dpop,
    ),
    m("ensure-mismatched-dpop-jkt-fails", Cond::Dpop),
    m(
        "ensure-token-endpoint-fails-with-mismatched-dpop-proof-jkt",
        Cond::Dpop,
    ),
    m(
        "ensure-token-endpoint-fails-with-mismatched-dpop-jkt",
        Cond::Dpop,
    ),
    m(
        "ensure-dpopproof-at-par-endpoint-binding-success",
        Cond::Dpop,
    ),
    m("ensure-dpop-auth-code-binding-success", Cond::Dpop),
    m("dpop-negative-tests", Cond::Dpop),
    m(
        "ensure-different-nonce-inside-and-outside-request-object",
        Cond::Openid,
    ),
    m(
        "ensure-different-state-inside-and-outside-request-object",
        Cond::All,
    ),
    m("ensure-authorization-request-with-long-nonce", Cond::Openid),
    m("ensure-authorization-request-with-long-state", Cond::All),
    m("ensure-request-object-without-exp-fails", Cond::Ms),
    m("ensure-request-object-without-nbf-fails", Cond::Ms),
    m("state-only-outside-request-object-not-used", Cond::All),
    m(
        "ensure-request-object-without-redirect-uri-fails",
        Cond::All,
    ),
    m("ensure-expired-request-object-fails", Cond::Ms),
    m("ensure-request-object-with-bad-aud-fails", Cond::Ms),
    m("ensure-request-object-with-exp-over-60-fails", Cond::Ms),
    m(
        "australia-connectid-ensure-request-object-with-exp-over-10-fails",
        CONNECTID,
    ),
    m("ensure-request-object-with-nbf-over-60-fails", Cond::Ms),
    m(
        "australia-connectid-ensure-request-object-with-nbf-over-15-fails",
        CONNECTID,
    ),
    m("ensure-signed-request-object-with-RS256-fails", Cond::Ms),
    m(
        "ensure-request-object-signature-algorithm-is-not-none",
        Cond::Ms,
    ),
    m(
        "ensure-request-object-with-invalid-signature-fails",
        Cond::Ms,
    ),
    m("ensure-matching-key-in-authorization-request", Cond::Ms),
    m("ensure-unsigned-request-at-par-endpoint-fails", Cond::Ms),
    m("ensure-registered-redirect-uri", Cond::All),
    m("plain-fapi-tolerate-unregistered-redirect-uri", Cond::All),
    m(
        "ensure-unsigned-authorization-request-without-using-par-fails",
        Cond::All,
    ),
    m("ensure-redirect-uri-in-authorization-request", Cond::All),
    m("ensure-response-type-code-idtoken-fails", Cond::All),
    m("ensure-response-type-token-fails", Cond::All),
    m(
        "australia-connectid-ensure-invalid-purpose-fails",
        CONNECTID,
    ),
    m("ensure-client-id-in-token-endpoint", Cond::All),
    m("ensure-holder-of-key-required", Cond::All),
    m("ensure-authorization-code-is-bound-to-client", Cond::All),
    m(
        "attempt-reuse-authorization-code-after-one-second",
        Cond::All,
    ),
    slow(
        "ensure-token-endpoint-fails-with-expired-auth-code",
        Cond::All,
    ),
    m(
        "ensure-signed-client-assertion-with-RS256-fails",
        Cond::Pkjwt,
    ),
    m("ensure-client-assertion-in-token-endpoint", Cond::Pkjwt),
    m(
        "ensure-client-assertion-with-exp-is-5-minutes-in-past-fails",
        Cond::Pkjwt,
    ),
    m("ensure-client-assertion-with-wrong-aud-fails", Cond::Pkjwt),
    m("ensure-client-assertion-with-no-sub-fails", Cond::Pkjwt),
    m("refresh-token", Cond::All),
    m("ensure-server-handles-non-matching-intent-id", UK),
    m("test-essential-acr-sca-claim", UK),
    m("brazil-ensure-bad-payment-signature-fails", BR),
    m(
        "australia-connectid-test-claims-parameter-idtoken-identity-claims",
        CONNECTID,
    ),
    m(
        "par-ensure-reused-request-uri-prior-to-auth-completion-succeeds",
        Cond::All,
    ),
    m("par-attempt-reuse-request_uri", Cond::All),
    slow("par-attempt-to-use-expired-request_uri", Cond::All),
    m(
        "par-ensure-jwt-client-assertions-nbf-8-seconds-in-the-future-is-accepted",
        Cond::Pkjwt,
    ),
    m(
        "par-ensure-jwt-client-assertions-nbf-over-60-seconds-in-the-future-fails",
        Cond::Pkjwt,
    ),
    m(
        "par-attempt-to-use-request_uri-for-different-client",
        Cond::All,
    ),
    m(
        "par-authorization-request-containing-request_uri-form-param",
        Cond::All,
    ),
    m("par-attempt-invalid-http-method", Cond::All),
    m("par-ensure-pkce-required", Cond::All),
    m("ensure-pkce-code-verifier-required", Cond::All),
    m("incorrect-pkce-code-verifier-rejected", Cond::All),
    m("par-plain-pkce-rejected", Cond::All),
    m("par-authorization-request-containing-request_uri", Cond::Ms),
    m("par-without-duplicate-parameters", Cond::All),
    m("par-test-array-as-audience-fails", Cond::Pkjwt),
    m("par-test-par-endpoint-url-as-audience-fails", Cond::Pkjwt),
    m("par-test-token-endpoint-url-as-audience-fails", Cond::Pkjwt),
];

/// Plans whose features are not built yet: listed so the table shows them.
pub const PENDING_PLANS: &[(&str, &str)] = &[
    (
        "fapi2-security-profile-final-brazil-dcr-test-plan",
        "dynamic client registration plans are not mirrored yet (registration itself is tested black-box in crates/strongroom/tests/server/dcr.rs; the Brazil plan also needs a Brazil directory)",
    ),
    (
        "oidcc-dynamic-certification-test-plan",
        "dynamic client registration plans are not mirrored yet (registration itself is tested black-box in crates/strongroom/tests/server/dcr.rs; the Brazil plan also needs a Brazil directory)",
    ),
];

/// Whether `module` runs in variant `v` (None: not instantiated there).
pub fn applies(module: &Module, v: &Variant) -> bool {
    match module.cond {
        Cond::All | Cond::Skip(_) => true,
        Cond::Ms => v.signed(),
        Cond::Openid => v.openid,
        Cond::Dpop => v.dpop(),
        Cond::Pkjwt => !v.mtls,
        Cond::Mtls => v.mtls,
        Cond::Ping => v.ping,
        Cond::Pushed => v.pushed,
        Cond::ByValue => !v.pushed,
        Cond::PushedPkjwt => v.pushed && !v.mtls,
        Cond::PlainResponse => !v.jarm_mode,
        Cond::Uk => v.uk,
    }
}

/// The text of an HTML page, tags stripped (for "error page" checks, which
/// the real suite does with a screenshot and a human).
pub fn page_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The page the authorization server shows instead of redirecting: must be
/// a 4xx with an error text (checked here instead of a screenshot).
pub fn check_error_page(status: u16, body: &str, expected: &[&str]) -> R {
    ensure!(
        (400..500).contains(&status),
        "error page with HTTP {status}"
    );
    let text = page_text(body);
    ensure!(
        expected.iter().any(|e| text.contains(e)),
        "error page does not name any of {expected:?}: {}",
        text.chars().take(200).collect::<String>()
    );
    Ok(())
}

/// The "error-or-page" outcome (oidf-modules.md preamble): refused at PAR
/// with one of `par_errors`, or, if PAR accepted it, refused at the
/// authorization endpoint by an error page or an error redirect.
pub async fn expect_refused(
    env: &Env,
    c: &Client,
    par: R<crate::flow::Answer>,
    par_errors: &[&str],
    authz_errors: &[&str],
    state: Option<&str>,
) -> R {
    let a = par?;
    if a.status != 201 {
        ensure!(
            (400..500).contains(&a.status),
            "PAR refused with HTTP {} (expected 4xx)",
            a.status
        );
        return check_par_error(&a, par_errors);
    }
    let uri = a.json["request_uri"]
        .as_str()
        .ok_or("PAR 201 without request_uri")?;
    match env.authorize(c, uri, &vec![], true).await? {
        AuthzOutcome::Page(status, body) => check_error_page(status, &body, authz_errors),
        AuthzOutcome::Redirect(q) => {
            ensure!(
                q.contains_key("error"),
                "the request was ACCEPTED: PAR 201 and the authorization succeeded ({q:?})"
            );
            env.check_authz_error(&q, state, authz_errors)
        }
    }
}

/// A PAR error: 400 (or 401 for invalid_client), JSON, expected code.
pub fn check_par_error(a: &crate::flow::Answer, expected: &[&str]) -> R {
    ensure!(
        a.status != 201,
        "PAR ACCEPTED the request (expected {expected:?})"
    );
    let e = a.error();
    ensure!(
        expected.contains(&e),
        "PAR error {e:?}, expected one of {expected:?}: {}",
        a.brief()
    );
    ensure!(
        a.status == 400 || a.status == 401,
        "PAR error with HTTP {}",
        a.status
    );
    ensure!(
        jose::is_error_charset(e),
        "error outside the RFC 6749 charset"
    );
    Ok(())
}

const RO_PAR_ERRORS: &[&str] = &["invalid_request_object", "invalid_request"];
const RO_AUTHZ_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_request_uri",
    "invalid_request_object",
    "access_denied",
];

/// A PAR whose request object is edited (MS) or whose parameters are
/// edited (SP); the DPoP proof and client authentication as usual.
async fn par_edited(
    env: &Env,
    v: &Variant,
    c: &Client,
    params: &Params,
    edit: impl FnOnce(&mut Value),
) -> R<crate::flow::Answer> {
    let mut claims = env.request_object_claims(c, params);
    edit(&mut claims);
    par_signed(env, v, c, &c.key, &claims, |_| {}).await
}

async fn par_signed(
    env: &Env,
    v: &Variant,
    c: &Client,
    key: &jose::ClientKey,
    claims: &Value,
    header: impl FnOnce(&mut jsonwebtoken::Header),
) -> R<crate::flow::Answer> {
    let mut form: Params = vec![(
        "request".into(),
        key.sign_with(Some("oauth-authz-req+jwt"), claims, header),
    )];
    form.extend(c.auth_fields(&env.issuer));
    env.par_raw(c, &form, env.par_dpop(v, c)).await
}

/// Request-object negative: edit the claims; must be refused.
async fn ro_negative(env: &Env, v: &Variant, edit: impl FnOnce(&mut Value)) -> R {
    let (c, _) = env.clients(v);
    let (p, _) = env.auth_params(v, c);
    let a = par_edited(env, v, c, &p, edit).await;
    expect_refused(env, c, a, RO_PAR_ERRORS, RO_AUTHZ_ERRORS, get(&p, "state")).await
}

/// Authorization-parameter negative on either plan: edit the parameters
/// (they go into the request object on MS, the form on SP).
async fn param_negative(
    env: &Env,
    v: &Variant,
    edit: impl FnOnce(&mut Params),
    par_errors: &[&str],
    authz_errors: &[&str],
) -> R {
    let (c, _) = env.clients(v);
    let (mut p, _) = env.auth_params(v, c);
    edit(&mut p);
    let a = env
        .par_raw(c, &env.par_form(v, c, &p), env.par_dpop(v, c))
        .await;
    expect_refused(env, c, a, par_errors, authz_errors, get(&p, "state")).await
}

/// A positive module: the flow with edited parameters must succeed.
async fn param_positive(
    env: &Env,
    v: &Variant,
    edit: impl FnOnce(&mut Params),
) -> R<crate::flow::Flow> {
    let (c, _) = env.clients(v);
    let (mut p, verifier) = env.auth_params(v, c);
    edit(&mut p);
    env.flow_with(v, c, p, verifier).await
}

/// A PAR with a client assertion built from `claims` (pkjwt only).
async fn par_with_assertion(
    env: &Env,
    v: &Variant,
    c: &Client,
    assertion: String,
) -> R<crate::flow::Answer> {
    let (p, _) = env.auth_params(v, c);
    let mut form = env.par_form(v, c, &p);
    set(&mut form, "client_assertion", Some(&assertion));
    env.par_raw(c, &form, env.par_dpop(v, c)).await
}

/// A token request for a fresh code with a replaced client assertion.
async fn token_with_assertion(
    env: &Env,
    v: &Variant,
    assertion: Option<String>,
) -> R<crate::flow::Answer> {
    let (c, _) = env.clients(v);
    let (_, verifier, code) = env.code(v, c).await?;
    let mut form = env.code_form(c, &code, Some(&verifier), &c.redirect_uri);
    set(&mut form, "client_assertion", assertion.as_deref());
    if assertion.is_none() {
        set(&mut form, "client_assertion_type", None);
    }
    env.token_raw(c, &form, Some(env.token_dpop(c, &c.dpop)))
        .await
}

/// A TLS probe with `openssl s_client`: does a handshake with these
/// arguments succeed against host:port?
async fn tls_handshake(hostport: &str, args: &[&str]) -> R<bool> {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.arg("s_client").arg("-connect").arg(hostport).args(args);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .map_err(|_| "openssl s_client timed out".to_string())?
        .map_err(|e| format!("openssl s_client: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(out.status.success() && (text.contains("Cipher is ") && !text.contains("Cipher is (NONE)")))
}

/// §5.8 on the host:port of `url`. `backchannel`: disallowed TLS 1.2
/// suites must also be refused.
pub async fn check_tls(url: &str, backchannel: bool) -> R {
    check_tls_as(url, backchannel, false).await
}

/// [`check_tls`] with the FAPI 1.0 rules when `fapi1` (FAPI 1.0 Part 2
/// §8.5, oidf-modules.md §5.8): TLS 1.2 only with
/// `TLS_{DHE,ECDHE}_RSA_WITH_AES_{128_GCM_SHA256,256_GCM_SHA384}`.
pub async fn check_tls_as(url: &str, backchannel: bool, fapi1: bool) -> R {
    let u = url::Url::parse(url).map_err(|e| e.to_string())?;
    let hostport = format!("127.0.0.1:{}", u.port_or_known_default().unwrap_or(443));
    let sni = u.host_str().unwrap_or("localhost").to_string();
    let base = ["-servername", sni.as_str()];
    for (v, name) in [("-tls1", "TLS 1.0"), ("-tls1_1", "TLS 1.1")] {
        let args = [&base[..], &[v, "-cipher", "DEFAULT:@SECLEVEL=0"]].concat();
        ensure!(
            !tls_handshake(&hostport, &args).await?,
            "{name} handshake accepted at {url}"
        );
    }
    let permitted = if fapi1 {
        "DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
    } else {
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
    };
    let args = [&base[..], &["-tls1_2", "-cipher", permitted]].concat();
    ensure!(
        tls_handshake(&hostport, &args).await?,
        "TLS 1.2 with a permitted suite refused at {url}"
    );
    let args = [&base[..], &["-tls1_3"]].concat();
    ensure!(
        tls_handshake(&hostport, &args).await?,
        "TLS 1.3 not offered at {url} (recommended)"
    );
    if backchannel {
        let bad = if fapi1 {
            "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:DHE-RSA-AES128-SHA:DES-CBC3-SHA"
        } else {
            "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:DHE-RSA-AES128-SHA:DES-CBC3-SHA"
        };
        let args = [&base[..], &["-tls1_2", "-cipher", bad]].concat();
        ensure!(
            !tls_handshake(&hostport, &args).await?,
            "a non-RFC 9325 TLS 1.2 suite was accepted at {url}"
        );
    }
    Ok(())
}

/// §5.1 + §5.2.
async fn discovery(env: &Env, v: &Variant) -> R {
    let d = &env.discovery;
    // Through the openidconnect RP as well: the document must parse as
    // OpenID Provider Metadata and its issuer must match.
    if v.openid {
        let issuer =
            openidconnect::IssuerUrl::new(env.issuer.clone()).map_err(|e| e.to_string())?;
        openidconnect::core::CoreProviderMetadata::discover_async(issuer, &env.http)
            .await
            .map_err(|e| format!("openidconnect discovery: {e}"))?;
    }
    ensure!(
        d["issuer"] == json!(env.issuer),
        "issuer {} ≠ the URL prefix {}",
        d["issuer"],
        env.issuer
    );
    let iss = url::Url::parse(&env.issuer).map_err(|e| e.to_string())?;
    ensure!(
        iss.scheme() == "https" && iss.query().is_none() && iss.fragment().is_none(),
        "issuer must be https without query/fragment"
    );
    let has = |k: &str, val: &str| d[k].as_array().is_some_and(|a| a.iter().any(|x| x == val));
    let fapi_alg = |k: &str| {
        ["PS256", "ES256", "EdDSA", "Ed25519"]
            .iter()
            .any(|a| has(k, a))
    };
    ensure!(
        has("response_types_supported", "code"),
        "response_types_supported lacks code"
    );
    ensure!(
        d["pushed_authorization_request_endpoint"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "no https pushed_authorization_request_endpoint"
    );
    if let Some(r) = d.get("require_pushed_authorization_requests") {
        ensure!(
            r.is_boolean(),
            "require_pushed_authorization_requests not a boolean"
        );
    }
    if v.jarm() {
        ensure!(
            has("response_modes_supported", "jwt"),
            "response_modes_supported lacks jwt"
        );
        for k in [
            "authorization_signing_alg_values_supported",
            "authorization_encryption_alg_values_supported",
            "authorization_encryption_enc_values_supported",
        ] {
            ensure!(d.get(k).is_none_or(Value::is_array), "{k} not an array");
        }
        ensure!(
            fapi_alg("request_object_signing_alg_values_supported"),
            "request_object_signing_alg_values_supported has no FAPI alg"
        );
    } else {
        ensure!(
            d["authorization_response_iss_parameter_supported"] == json!(true),
            "authorization_response_iss_parameter_supported must be true"
        );
    }
    ensure!(
        has("code_challenge_methods_supported", "S256"),
        "code_challenge_methods_supported lacks S256"
    );
    let auth_ok = if v.mtls {
        has("token_endpoint_auth_methods_supported", "tls_client_auth")
            || has(
                "token_endpoint_auth_methods_supported",
                "self_signed_tls_client_auth",
            )
    } else {
        has("token_endpoint_auth_methods_supported", "private_key_jwt")
    };
    ensure!(
        auth_ok,
        "token_endpoint_auth_methods_supported lacks the variant's method"
    );
    if has("token_endpoint_auth_methods_supported", "private_key_jwt") {
        ensure!(
            fapi_alg("token_endpoint_auth_signing_alg_values_supported"),
            "token_endpoint_auth_signing_alg_values_supported has no FAPI alg"
        );
    }
    if v.openid {
        ensure!(
            fapi_alg("id_token_signing_alg_values_supported"),
            "id_token_signing_alg_values_supported has no FAPI alg"
        );
        ensure!(
            has("scopes_supported", "openid"),
            "scopes_supported lacks openid"
        );
        ensure!(
            d["subject_types_supported"].is_array(),
            "subject_types_supported missing"
        );
    }
    if d.get("userinfo_signing_alg_values_supported").is_some() {
        ensure!(
            fapi_alg("userinfo_signing_alg_values_supported"),
            "userinfo_signing_alg_values_supported has no FAPI alg"
        );
    }
    if v.dpop() {
        ensure!(
            fapi_alg("dpop_signing_alg_values_supported"),
            "dpop_signing_alg_values_supported has no FAPI alg"
        );
    } else {
        ensure!(
            d["tls_client_certificate_bound_access_tokens"] == json!(true),
            "tls_client_certificate_bound_access_tokens must be true"
        );
    }
    ensure!(
        d["jwks_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "jwks_uri must be https"
    );
    if let Some(r) = d.get("registration_endpoint") {
        ensure!(
            r.as_str().is_some_and(|u| u.starts_with("https://")),
            "registration_endpoint must be https"
        );
    }
    ensure!(
        has("grant_types_supported", "authorization_code"),
        "grant_types_supported lacks authorization_code"
    );
    check_jwks(env)
}

/// §5.2 server keys.
pub fn check_jwks(env: &Env) -> R {
    let keys = env.jwks["keys"]
        .as_array()
        .ok_or("JWKS has no keys array")?;
    ensure!(!keys.is_empty(), "JWKS is empty");
    let mut kids = std::collections::HashSet::new();
    for k in keys {
        let kid = k["kid"].as_str().ok_or("a JWKS key without kid")?;
        ensure!(kids.insert(kid.to_string()), "duplicate kid {kid}");
        ensure!(
            k.get("d").is_none() && k.get("p").is_none(),
            "JWKS publishes private key material ({kid})"
        );
        match k["kty"].as_str() {
            Some("RSA") => {
                let n = jose::b64_decode(k["n"].as_str().unwrap_or_default()).unwrap_or_default();
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                ensure!(bits >= 2048, "RSA key {kid} has {bits} bits");
            }
            Some("EC") => {
                let crv = k["crv"].as_str().unwrap_or_default();
                ensure!(
                    ["P-256", "P-384", "P-521"].contains(&crv),
                    "EC key {kid} on {crv}"
                );
            }
            Some("OKP") => {}
            other => return Err(format!("key {kid} of kty {other:?}")),
        }
    }
    Ok(())
}

/// Runs module `name` in variant `v`.
pub async fn run(env: &Env, v: &Variant, name: &str) -> R {
    let (c1, c2) = env.clients(v);
    match name {
        "discovery-end-point-verification" => discovery(env, v).await,
        "happy-flow" => {
            let f1 = env.flow(v, c1).await?;
            let f2 = env.flow(v, c2).await?;
            if v.openid {
                rp_verify_id_token(env, c1, &f1)?;
                rp_verify_id_token(env, c2, &f2)?;
                let sub = |f: &crate::flow::Flow| {
                    jose::jwt_part(f.token.json["id_token"].as_str().unwrap_or_default(), 1)
                        .map(|c| c["sub"].clone())
                };
                ensure!(
                    sub(&f1) == sub(&f2),
                    "the same user got different sub values for the two clients"
                );
            }
            // client1's binding with client2's token must be refused.
            let a = if v.dpop() {
                let proof = env.resource_dpop(c2, &c1.dpop, &f2.access_token);
                env.resource_raw(c2, "DPoP", &f2.access_token, Some(proof), &[])
                    .await?
            } else {
                env.resource_raw(c1, "Bearer", &f2.access_token, None, &[])
                    .await?
            };
            ensure!(
                (400..500).contains(&a.status),
                "client2's token with client1's key/cert was accepted: {}",
                a.brief()
            );
            for (url, back) in [
                (env.ep(c1, "token_endpoint"), true),
                (env.ep(c1, "userinfo_endpoint"), true),
                (env.ep(c1, "pushed_authorization_request_endpoint"), true),
                (
                    env.discovery["authorization_endpoint"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    false,
                ),
            ] {
                check_tls(&url, back).await?;
            }
            Ok(())
        }
        "user-rejects-authentication" => {
            let (p, _) = env.auth_params(v, c1);
            let uri = env.par(v, c1, &p).await?;
            match env.authorize(c1, &uri, &vec![], false).await? {
                AuthzOutcome::Redirect(q) => {
                    env.check_authz_error(&q, get(&p, "state"), &["access_denied"])?;
                    if !v.jarm() {
                        ensure!(
                            q.get("iss") == Some(&env.issuer),
                            "error redirect without iss"
                        );
                    }
                    Ok(())
                }
                AuthzOutcome::Page(s, _) => Err(format!(
                    "expected a redirect with access_denied, got a page (HTTP {s})"
                )),
            }
        }
        "ensure-request-object-with-multiple-aud-succeeds" => {
            let (p, verifier) = env.auth_params(v, c1);
            let mut claims = env.request_object_claims(c1, &p);
            claims["aud"] = json!([env.issuer, "https://other.example/"]);
            let a = par_signed(env, v, c1, &c1.key, &claims, |_| {}).await?;
            let uri = env.check_par(&a)?;
            finish_flow(env, v, c1, &p, &verifier, &uri).await
        }
        "ensure-request-object-with-nbf-8-seconds-in-the-future-is-accepted" => {
            let (p, verifier) = env.auth_params(v, c1);
            let mut claims = env.request_object_claims(c1, &p);
            claims["nbf"] = json!(now() + 8);
            let a = par_signed(env, v, c1, &c1.key, &claims, |_| {}).await?;
            let uri = env.check_par(&a)?;
            finish_flow(env, v, c1, &p, &verifier, &uri).await
        }
        "ensure-authorization-request-without-state-success" => {
            let (p, verifier) = env.auth_params(v, c1);
            let mut p = p;
            set(&mut p, "state", None);
            let uri = env.par(v, c1, &p).await?;
            finish_flow(env, v, c1, &p, &verifier, &uri).await
        }
        "ensure-authorization-request-without-nonce-success" => {
            param_positive(env, v, |p| set(p, "nonce", None))
                .await
                .map(drop)
        }
        "ensure-authorization-request-with-64-char-nonce-success" => {
            let n: String = random(48).chars().take(64).collect();
            ensure!(n.len() == 64, "nonce generation");
            param_positive(env, v, |p| set(p, "nonce", Some(&n)))
                .await
                .map(drop)
        }
        "ensure-other-scope-order-succeeds" => {
            let reversed: String = env.scope(v).split(' ').rev().collect::<Vec<_>>().join(" ");
            param_positive(env, v, |p| set(p, "scope", Some(&reversed)))
                .await
                .map(drop)
        }
        "test-claims-parameter-identity-claims" => {
            if env.discovery["claims_parameter_supported"] != json!(true) {
                return Ok(());
            }
            let supported: Vec<String> = env.discovery["claims_supported"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let mut want = serde_json::Map::new();
            for c in &supported {
                want.insert(c.clone(), Value::Null);
            }
            want.insert("urn:conformance:unknown-claim".into(), Value::Null);
            let claims = json!({"id_token": want, "userinfo": want});
            let f = param_positive(env, v, |p| {
                set(p, "claims", Some(&claims.to_string()));
                set(p, "scope", Some("openid profile email accounts"));
            })
            .await?;
            let idt = jose::jwt_part(f.token.json["id_token"].as_str().unwrap_or_default(), 1)
                .unwrap_or_default();
            ensure!(
                idt.get("urn:conformance:unknown-claim").is_none(),
                "an unknown requested claim was returned"
            );
            Ok(())
        }
        "access-token-type-header-case-sensitivity" => {
            let f = env.flow(v, c1).await?;
            let scheme = if v.dpop() { "dPOP" } else { "bEARER" };
            let dpop = v
                .dpop()
                .then(|| env.resource_dpop(c1, &c1.dpop, &f.access_token));
            let a = env
                .resource_raw(c1, scheme, &f.access_token, dpop, &[])
                .await?;
            env.resource_ok(v, &a)
                .map_err(|e| format!("scheme {scheme}: {e}"))
        }
        "check-dpop-proof-nbf-exp" => {
            let (_, verifier, code) = env.code(v, c1).await?;
            let mut claims = dpop_claims("POST", &env.ep(c1, "token_endpoint"), None);
            claims["nbf"] = json!(now());
            claims["exp"] = json!(now() + 300);
            let a = env
                .token_raw(
                    c1,
                    &env.code_form(c1, &code, Some(&verifier), &c1.redirect_uri),
                    Some(dpop_proof(&c1.dpop, &claims)),
                )
                .await?;
            let at = env.check_token(v, c1, &a, None, false).or_else(|e| {
                if e.contains("id_token") {
                    Ok(a.json["access_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string())
                } else {
                    Err(e)
                }
            })?;
            let mut claims = dpop_claims("GET", &env.ep(c1, "userinfo_endpoint"), Some(&at));
            claims["nbf"] = json!(now());
            claims["exp"] = json!(now() + 300);
            let r = env
                .resource_raw(c1, "DPoP", &at, Some(dpop_proof(&c1.dpop, &claims)), &[])
                .await?;
            env.resource_ok(v, &r)
        }
        "ensure-dpopproof-with-iat-10seconds-before-succeeds"
        | "ensure-dpopproof-with-iat-10seconds-after-succeeds" => {
            let shift = if name.contains("before") { -10 } else { 10 };
            let iat = |mut c: Value| {
                c["iat"] = json!(now() + shift);
                c
            };
            let (p, verifier) = env.auth_params(v, c1);
            let proof = dpop_proof(
                &c1.dpop,
                &iat(dpop_claims(
                    "POST",
                    &env.ep(c1, "pushed_authorization_request_endpoint"),
                    None,
                )),
            );
            let a = env
                .par_raw(c1, &env.par_form(v, c1, &p), Some(proof))
                .await?;
            let uri = env.check_par(&a)?;
            let code = authz_code(env, v, c1, &p, &uri).await?;
            let proof = dpop_proof(
                &c1.dpop,
                &iat(dpop_claims("POST", &env.ep(c1, "token_endpoint"), None)),
            );
            let a = env
                .token_raw(
                    c1,
                    &env.code_form(c1, &code, Some(&verifier), &c1.redirect_uri),
                    Some(proof),
                )
                .await?;
            let at = env.check_token(v, c1, &a, get(&p, "nonce"), v.openid)?;
            let proof = dpop_proof(
                &c1.dpop,
                &iat(dpop_claims(
                    "GET",
                    &env.ep(c1, "userinfo_endpoint"),
                    Some(&at),
                )),
            );
            let r = env.resource_raw(c1, "DPoP", &at, Some(proof), &[]).await?;
            env.resource_ok(v, &r)
        }
        "ensure-mismatched-dpop-jkt-fails" => {
            let (mut p, _) = env.auth_params(v, c1);
            set(&mut p, "dpop_jkt", Some(&c2.dpop.thumbprint()));
            let a = env
                .par_raw(c1, &env.par_form(v, c1, &p), env.par_dpop(v, c1))
                .await?;
            check_par_error(&a, &["invalid_request", "invalid_dpop_proof"])
        }
        "ensure-token-endpoint-fails-with-mismatched-dpop-proof-jkt" => {
            let (_, verifier, code) = env.code(v, c1).await?;
            let a = env
                .token_raw(
                    c1,
                    &env.code_form(c1, &code, Some(&verifier), &c1.redirect_uri),
                    Some(env.token_dpop(c1, &c2.dpop)),
                )
                .await?;
            check_error(
                &a,
                &["invalid_request", "invalid_grant", "invalid_dpop_proof"],
            )
        }
        "ensure-token-endpoint-fails-with-mismatched-dpop-jkt" => {
            // dpop_jkt in the request, no DPoP proof at PAR; another key at the token endpoint.
            let (mut p, verifier) = env.auth_params(v, c1);
            set(&mut p, "dpop_jkt", Some(&c1.dpop.thumbprint()));
            let a = env.par_raw(c1, &env.par_form(v, c1, &p), None).await?;
            let uri = env.check_par(&a)?;
            let code = authz_code(env, v, c1, &p, &uri).await?;
            let a = env
                .token_raw(
                    c1,
                    &env.code_form(c1, &code, Some(&verifier), &c1.redirect_uri),
                    Some(env.token_dpop(c1, &c2.dpop)),
                )
                .await?;
            check_error(
                &a,
                &["invalid_request", "invalid_grant", "invalid_dpop_proof"],
            )
        }
        "ensure-dpopproof-at-par-endpoint-binding-success" => env.flow(v, c1).await.map(drop),
        "ensure-dpop-auth-code-binding-success" => {
            let (mut p, verifier) = env.auth_params(v, c1);
            set(&mut p, "dpop_jkt", Some(&c1.dpop.thumbprint()));
            env.flow_with(v, c1, p, verifier).await.map(drop)
        }
        "dpop-negative-tests" => dpop_negative(env, v, c1, c2).await,
        "ensure-different-nonce-inside-and-outside-request-object" => {
            let (p, verifier) = env.auth_params(v, c1);
            let uri = env.par(v, c1, &p).await?;
            let outside: Params = vec![("nonce".into(), random(12))];
            either_error_or_inside(env, v, c1, &p, &verifier, &uri, &outside).await
        }
        "ensure-different-state-inside-and-outside-request-object" => {
            let (p, verifier) = env.auth_params(v, c1);
            let uri = env.par(v, c1, &p).await?;
            let outside: Params = vec![("state".into(), random(12))];
            either_error_or_inside(env, v, c1, &p, &verifier, &uri, &outside).await
        }
        "ensure-authorization-request-with-long-nonce"
        | "ensure-authorization-request-with-long-state" => {
            let key = if name.ends_with("nonce") {
                "nonce"
            } else {
                "state"
            };
            let long: String = std::iter::repeat_with(|| random(48))
                .take(6)
                .collect::<String>()
                .chars()
                .take(384)
                .collect();
            let (mut p, verifier) = env.auth_params(v, c1);
            set(&mut p, key, Some(&long));
            let a = env
                .par_raw(c1, &env.par_form(v, c1, &p), env.par_dpop(v, c1))
                .await?;
            if a.status != 201 {
                return check_par_error(&a, &["invalid_request", "invalid_request_object"]);
            }
            let uri = env.check_par(&a)?;
            match env.authorize(c1, &uri, &vec![], true).await? {
                AuthzOutcome::Page(s, body) => check_error_page(s, &body, &["invalid_request"]),
                AuthzOutcome::Redirect(q) if q.contains_key("error") => env.check_authz_error(
                    &q,
                    if key == "state" {
                        Some(long.as_str())
                    } else {
                        get(&p, "state")
                    },
                    &["invalid_request"],
                ),
                AuthzOutcome::Redirect(q) => {
                    let code = env.check_authz_success(v, &q, get(&p, "state"))?;
                    let t = env.redeem(v, c1, &code, &verifier).await?;
                    env.check_token(v, c1, &t, get(&p, "nonce"), v.openid)
                        .map(drop)
                }
            }
        }
        "ensure-request-object-without-exp-fails" => {
            ro_negative(env, v, |c| drop(c.as_object_mut().map(|o| o.remove("exp")))).await
        }
        "ensure-request-object-without-nbf-fails" => {
            ro_negative(env, v, |c| drop(c.as_object_mut().map(|o| o.remove("nbf")))).await
        }
        "ensure-expired-request-object-fails" => {
            ro_negative(env, v, |c| {
                c["exp"] = json!(now() - 60);
                c["iat"] = json!(now() - 360);
                c["nbf"] = json!(now() - 360);
            })
            .await
        }
        "ensure-request-object-with-bad-aud-fails" => {
            ro_negative(env, v, |c| {
                c["aud"] = json!("https://not-the-issuer.example/")
            })
            .await
        }
        "ensure-request-object-with-exp-over-60-fails" => {
            ro_negative(env, v, |c| c["exp"] = json!(now() + 70 * 60)).await
        }
        "ensure-request-object-with-nbf-over-60-fails" => {
            ro_negative(env, v, |c| {
                c["nbf"] = json!(now() - 70 * 60);
                c["iat"] = json!(now() - 70 * 60);
            })
            .await
        }
        "ensure-signed-request-object-with-RS256-fails" => {
            let (p, _) = env.auth_params(v, c2);
            let claims = env.request_object_claims(c2, &p);
            // client2's key is RSA: the same key, RS256.
            let a = par_signed(
                env,
                v,
                c2,
                &c2.key.with_alg(Algorithm::RS256),
                &claims,
                |_| {},
            )
            .await;
            expect_refused(env, c2, a, RO_PAR_ERRORS, RO_AUTHZ_ERRORS, get(&p, "state")).await
        }
        "ensure-request-object-signature-algorithm-is-not-none" => {
            let (p, _) = env.auth_params(v, c1);
            let claims = env.request_object_claims(c1, &p);
            let jwt = format!(
                "{}.{}.",
                jose::b64(br#"{"alg":"none","typ":"oauth-authz-req+jwt"}"#),
                jose::b64(claims.to_string().as_bytes())
            );
            let mut form: Params = vec![("request".into(), jwt)];
            form.extend(c1.auth_fields(&env.issuer));
            let a = env.par_raw(c1, &form, env.par_dpop(v, c1)).await;
            expect_refused(env, c1, a, RO_PAR_ERRORS, RO_AUTHZ_ERRORS, get(&p, "state")).await
        }
        "ensure-request-object-with-invalid-signature-fails" => {
            let (p, _) = env.auth_params(v, c1);
            let claims = env.request_object_claims(c1, &p);
            let jwt = c1.key.sign(Some("oauth-authz-req+jwt"), &claims);
            let (head, sig) = jwt.rsplit_once('.').ok_or("jws")?;
            let mut sig = jose::b64_decode(sig).ok_or("sig")?;
            sig[5] ^= 0x5a;
            let mut form: Params = vec![("request".into(), format!("{head}.{}", jose::b64(&sig)))];
            form.extend(c1.auth_fields(&env.issuer));
            let a = env.par_raw(c1, &form, env.par_dpop(v, c1)).await;
            expect_refused(env, c1, a, RO_PAR_ERRORS, RO_AUTHZ_ERRORS, get(&p, "state")).await
        }
        "ensure-matching-key-in-authorization-request" => {
            let (p, _) = env.auth_params(v, c1);
            let claims = env.request_object_claims(c1, &p);
            let a = par_signed(env, v, c1, &c2.key, &claims, |h| {
                h.kid = Some(c1.key.kid.clone())
            })
            .await;
            expect_refused(env, c1, a, RO_PAR_ERRORS, RO_AUTHZ_ERRORS, get(&p, "state")).await
        }
        "ensure-unsigned-request-at-par-endpoint-fails" => {
            let (p, _) = env.auth_params(v, c1);
            let mut form = p.clone();
            form.extend(c1.auth_fields(&env.issuer));
            let a = env.par_raw(c1, &form, env.par_dpop(v, c1)).await;
            expect_refused(env, c1, a, RO_PAR_ERRORS, RO_AUTHZ_ERRORS, get(&p, "state")).await
        }
        "par-authorization-request-containing-request_uri" => {
            ro_negative(env, v, |c| {
                c["request_uri"] = json!("urn:ietf:params:oauth:request_uri:abcdefghijklmnop")
            })
            .await
        }
        "state-only-outside-request-object-not-used" => {
            let (mut p, verifier) = env.auth_params(v, c1);
            set(&mut p, "state", None);
            let uri = env.par(v, c1, &p).await?;
            let outside: Params = vec![("state".into(), random(12))];
            match env.authorize(c1, &uri, &outside, true).await? {
                AuthzOutcome::Page(s, body) => check_error_page(s, &body, &["invalid_request"]),
                AuthzOutcome::Redirect(q) if q.contains_key("error") => Ok(()),
                AuthzOutcome::Redirect(q) => {
                    ensure!(
                        !q.contains_key("state") && !q.contains_key("s_hash"),
                        "the state from outside the request was used: {q:?}"
                    );
                    let code = env.check_authz_success(v, &q, None)?;
                    let t = env.redeem(v, c1, &code, &verifier).await?;
                    env.check_token(v, c1, &t, get(&p, "nonce"), v.openid)
                        .map(drop)
                }
            }
        }
        "ensure-request-object-without-redirect-uri-fails"
        | "ensure-redirect-uri-in-authorization-request" => {
            // One URI is registered: an error redirect is allowed too.
            param_negative(
                env,
                v,
                |p| set(p, "redirect_uri", None),
                &["invalid_request", "invalid_request_object"],
                &[
                    "invalid_request",
                    "invalid_request_object",
                    "invalid_request_uri",
                ],
            )
            .await
        }
        "ensure-registered-redirect-uri" => {
            let (mut p, _) = env.auth_params(v, c1);
            set(&mut p, "redirect_uri", Some("https://attacker.example/cb"));
            let a = env
                .par_raw(c1, &env.par_form(v, c1, &p), env.par_dpop(v, c1))
                .await?;
            if a.status != 201 {
                return check_par_error(
                    &a,
                    &[
                        "invalid_request",
                        "invalid_request_object",
                        "invalid_redirect_uri",
                    ],
                );
            }
            let uri = a.json["request_uri"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            must_not_redirect(env, c1, &uri, "https://attacker.example/").await
        }
        "plain-fapi-tolerate-unregistered-redirect-uri" => {
            let (mut p, _) = env.auth_params(v, c1);
            set(
                &mut p,
                "redirect_uri",
                Some("https://unregistered.example/cb"),
            );
            let a = env
                .par_raw(c1, &env.par_form(v, c1, &p), env.par_dpop(v, c1))
                .await?;
            if a.status != 201 {
                // An error is acceptable; it must be well formed.
                return check_par_error(
                    &a,
                    &[
                        "invalid_request",
                        "invalid_request_object",
                        "invalid_redirect_uri",
                    ],
                );
            }
            env.check_par(&a).map(drop)
        }
        "ensure-unsigned-authorization-request-without-using-par-fails" => {
            let (p, _) = env.auth_params(v, c1);
            let browser = jose::https_client(&env.ca_pem, None, true);
            let mut url = url::Url::parse(
                env.discovery["authorization_endpoint"]
                    .as_str()
                    .unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?;
            url.query_pairs_mut().append_pair("client_id", &c1.id);
            for (k, val) in &p {
                url.query_pairs_mut().append_pair(k, val);
            }
            match env.browse(&browser, c1, url.as_str(), true).await? {
                AuthzOutcome::Page(s, body) => check_error_page(s, &body, &["invalid_request"]),
                AuthzOutcome::Redirect(q) => {
                    env.check_authz_error(&q, get(&p, "state"), &["invalid_request"])
                }
            }
        }
        "ensure-response-type-code-idtoken-fails" | "ensure-response-type-token-fails" => {
            let rt = if name.contains("idtoken") {
                "code id_token"
            } else {
                "token"
            };
            param_negative(
                env,
                v,
                |p| set(p, "response_type", Some(rt)),
                &[
                    "unsupported_response_type",
                    "invalid_request",
                    "invalid_request_object",
                ],
                &["unsupported_response_type", "invalid_request"],
            )
            .await
        }
        "ensure-client-id-in-token-endpoint" => {
            let (_, verifier, code) = env.code(v, c1).await?;
            let dpop = v.dpop().then(|| env.token_dpop(c2, &c2.dpop));
            let a = env
                .token_raw(
                    c2,
                    &env.code_form(c2, &code, Some(&verifier), &c1.redirect_uri),
                    dpop,
                )
                .await?;
            check_error(&a, &["invalid_client", "invalid_grant"])
        }
        "ensure-authorization-code-is-bound-to-client" => {
            let (_, verifier, code) = env.code(v, c1).await?;
            let dpop = v.dpop().then(|| env.token_dpop(c2, &c2.dpop));
            let a = env
                .token_raw(
                    c2,
                    &env.code_form(c2, &code, Some(&verifier), &c2.redirect_uri),
                    dpop,
                )
                .await?;
            check_error(&a, &["invalid_grant"])
        }
        "ensure-holder-of-key-required" => {
            for url in [
                env.discovery["authorization_endpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                env.ep(c1, "token_endpoint"),
                env.ep(c1, "userinfo_endpoint"),
                // Registration, when the server offers it.
                env.ep(c1, "registration_endpoint"),
            ] {
                if !url.is_empty() {
                    check_tls(&url, !url.contains("/authorize")).await?;
                }
            }
            let (_, verifier, code) = env.code(v, c1).await?;
            if v.mtls {
                // The same request without the client certificate.
                let form = env.code_form(c1, &code, Some(&verifier), &c1.redirect_uri);
                let res = env
                    .http
                    .post(env.ep(c1, "token_endpoint"))
                    .form(&form)
                    .send()
                    .await;
                match res {
                    Err(_) => Ok(()), // refused in the TLS handshake
                    Ok(r) => {
                        let a = crate::flow::answer(Ok(r)).await?;
                        check_error(&a, &["invalid_client", "invalid_request", "invalid_grant"])
                    }
                }
            } else {
                let a = env
                    .token_raw(
                        c1,
                        &env.code_form(c1, &code, Some(&verifier), &c1.redirect_uri),
                        None,
                    )
                    .await?;
                check_error(
                    &a,
                    &[
                        "invalid_client",
                        "invalid_request",
                        "invalid_grant",
                        "invalid_dpop_proof",
                    ],
                )
            }
        }
        "attempt-reuse-authorization-code-after-one-second" => {
            let (p, verifier, code) = env.code(v, c1).await?;
            let a = env.redeem(v, c1, &code, &verifier).await?;
            env.check_token(v, c1, &a, get(&p, "nonce"), v.openid)?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let b = env.redeem(v, c1, &code, &verifier).await?;
            check_error(&b, &["invalid_grant"])
        }
        "ensure-token-endpoint-fails-with-expired-auth-code" => {
            let (_, verifier, code) = env.code(v, c1).await?;
            tokio::time::sleep(Duration::from_secs(62)).await;
            let a = env.redeem(v, c1, &code, &verifier).await?;
            check_error(&a, &["invalid_grant"])
        }
        "ensure-signed-client-assertion-with-RS256-fails" => {
            let assertion = c2
                .key
                .with_alg(Algorithm::RS256)
                .sign(None, &c2.assertion_claims(json!(env.issuer)));
            let (_, verifier, code) = env.code(v, c2).await?;
            let mut form = env.code_form(c2, &code, Some(&verifier), &c2.redirect_uri);
            set(&mut form, "client_assertion", Some(&assertion));
            let a = env
                .token_raw(c2, &form, Some(env.token_dpop(c2, &c2.dpop)))
                .await?;
            check_error(&a, &["invalid_client"])
        }
        "ensure-client-assertion-in-token-endpoint" => {
            let a = token_with_assertion(env, v, None).await?;
            check_error(&a, &["invalid_client", "invalid_request"])
        }
        "ensure-client-assertion-with-exp-is-5-minutes-in-past-fails" => {
            let mut claims = c1.assertion_claims(json!(env.issuer));
            claims["exp"] = json!(now() - 300);
            claims["iat"] = json!(now() - 360);
            let a = token_with_assertion(env, v, Some(c1.key.sign(None, &claims))).await?;
            check_error(&a, &["invalid_client"])
        }
        "ensure-client-assertion-with-wrong-aud-fails" => {
            let claims = c1.assertion_claims(json!("https://not-the-issuer.example/"));
            let a = token_with_assertion(env, v, Some(c1.key.sign(None, &claims))).await?;
            check_error(&a, &["invalid_client"])
        }
        "ensure-client-assertion-with-no-sub-fails" => {
            let mut claims = c1.assertion_claims(json!(env.issuer));
            claims.as_object_mut().map(|o| o.remove("sub"));
            let a = token_with_assertion(env, v, Some(c1.key.sign(None, &claims))).await?;
            check_error(&a, &["invalid_client"])
        }
        "refresh-token" => refresh_token(env, v, c1, c2).await,
        "par-ensure-reused-request-uri-prior-to-auth-completion-succeeds" => {
            let (p, verifier) = env.auth_params(v, c1);
            let uri = env.par(v, c1, &p).await?;
            let browser = jose::https_client(&env.ca_pem, None, true);
            let url = format!(
                "{}?client_id={}&request_uri={}",
                env.discovery["authorization_endpoint"]
                    .as_str()
                    .unwrap_or_default(),
                enc(&c1.id),
                enc(&uri)
            );
            let first = browser.get(&url).send().await.map_err(|e| e.to_string())?;
            ensure!(
                first.status().is_redirection(),
                "first visit: HTTP {}",
                first.status()
            );
            finish_flow(env, v, c1, &p, &verifier, &uri).await
        }
        "par-attempt-reuse-request_uri" => {
            let (p, verifier) = env.auth_params(v, c1);
            let uri = env.par(v, c1, &p).await?;
            finish_flow(env, v, c1, &p, &verifier, &uri).await?;
            match env.authorize(c1, &uri, &vec![], true).await? {
                AuthzOutcome::Page(s, body) => {
                    check_error_page(s, &body, &["invalid_request_uri", "invalid_request"])
                }
                AuthzOutcome::Redirect(q) => {
                    ensure!(
                        q.contains_key("error"),
                        "a used request_uri was accepted again: {q:?}"
                    );
                    env.check_authz_error(
                        &q,
                        get(&p, "state"),
                        &["invalid_request_uri", "invalid_request"],
                    )
                }
            }
        }
        "par-attempt-to-use-expired-request_uri" => {
            let (p, _) = env.auth_params(v, c1);
            let a = env
                .par_raw(c1, &env.par_form(v, c1, &p), env.par_dpop(v, c1))
                .await?;
            let uri = env.check_par(&a)?;
            let exp = a.json["expires_in"].as_u64().unwrap_or(60);
            ensure!(exp <= 600, "expires_in {exp} s is too long to wait out");
            tokio::time::sleep(Duration::from_secs(exp + 2)).await;
            match env.authorize(c1, &uri, &vec![], true).await? {
                AuthzOutcome::Page(s, body) => {
                    check_error_page(s, &body, &["invalid_request_uri", "invalid_request"])
                }
                AuthzOutcome::Redirect(q) => {
                    ensure!(
                        q.contains_key("error"),
                        "an expired request_uri was accepted: {q:?}"
                    );
                    env.check_authz_error(
                        &q,
                        get(&p, "state"),
                        &["invalid_request_uri", "invalid_request"],
                    )
                }
            }
        }
        "par-ensure-jwt-client-assertions-nbf-8-seconds-in-the-future-is-accepted" => {
            let mut claims = c1.assertion_claims(json!(env.issuer));
            claims["iat"] = json!(now() + 8);
            claims["nbf"] = json!(now() + 8);
            let a = par_with_assertion(env, v, c1, c1.key.sign(None, &claims)).await?;
            env.check_par(&a).map(drop)
        }
        "par-ensure-jwt-client-assertions-nbf-over-60-seconds-in-the-future-fails" => {
            let mut claims = c1.assertion_claims(json!(env.issuer));
            claims["iat"] = json!(now() + 70);
            claims["nbf"] = json!(now() + 70);
            claims["exp"] = json!(now() + 130);
            let a = par_with_assertion(env, v, c1, c1.key.sign(None, &claims)).await?;
            check_par_error(&a, &["invalid_request", "invalid_client"])
        }
        "par-test-array-as-audience-fails"
        | "par-test-par-endpoint-url-as-audience-fails"
        | "par-test-token-endpoint-url-as-audience-fails" => {
            let aud = match name {
                "par-test-array-as-audience-fails" => json!([env.issuer, "https://dummy.example/"]),
                "par-test-par-endpoint-url-as-audience-fails" => {
                    json!(env.ep(c1, "pushed_authorization_request_endpoint"))
                }
                _ => json!(env.ep(c1, "token_endpoint")),
            };
            let a = par_with_assertion(env, v, c1, c1.key.sign(None, &c1.assertion_claims(aud)))
                .await?;
            check_par_error(&a, &["invalid_request", "invalid_client"])
        }
        "par-attempt-to-use-request_uri-for-different-client" => {
            let (p, _) = env.auth_params(v, c1);
            let uri = env.par(v, c1, &p).await?;
            match env.authorize(c2, &uri, &vec![], true).await? {
                AuthzOutcome::Page(s, body) => check_error_page(
                    s,
                    &body,
                    &["invalid_request_uri", "invalid_request", "invalid_client"],
                ),
                AuthzOutcome::Redirect(q) => {
                    ensure!(
                        q.contains_key("error"),
                        "client2 used client1's request_uri: {q:?}"
                    );
                    Ok(())
                }
            }
        }
        "par-authorization-request-containing-request_uri-form-param" => {
            let (p, _) = env.auth_params(v, c1);
            let mut form = env.par_form(v, c1, &p);
            form.push((
                "request_uri".into(),
                "urn:ietf:params:oauth:request_uri:abcdefghijklmnop".into(),
            ));
            let a = env.par_raw(c1, &form, env.par_dpop(v, c1)).await?;
            ensure!(
                (400..500).contains(&a.status),
                "PAR with a request_uri parameter: {}",
                a.brief()
            );
            check_par_error(
                &a,
                &[
                    "invalid_request",
                    "invalid_request_object",
                    "request_uri_not_supported",
                ],
            )
        }
        "par-attempt-invalid-http-method" => {
            let a = crate::flow::answer(
                c1.http
                    .get(env.ep(c1, "pushed_authorization_request_endpoint"))
                    .send()
                    .await,
            )
            .await?;
            ensure!(a.status >= 400, "GET on the PAR endpoint: {}", a.brief());
            Ok(())
        }
        "par-ensure-pkce-required" => {
            param_negative(
                env,
                v,
                |p| {
                    set(p, "code_challenge", None);
                    set(p, "code_challenge_method", None);
                },
                &["invalid_request", "invalid_request_object"],
                &["invalid_request"],
            )
            .await
        }
        "par-plain-pkce-rejected" => {
            let plain = random(32);
            param_negative(
                env,
                v,
                |p| {
                    set(p, "code_challenge", Some(&plain));
                    set(p, "code_challenge_method", Some("plain"));
                },
                &["invalid_request", "invalid_request_object"],
                &["invalid_request"],
            )
            .await
        }
        "ensure-pkce-code-verifier-required" | "incorrect-pkce-code-verifier-rejected" => {
            let (_, _, code) = env.code(v, c1).await?;
            let wrong = random(32);
            let verifier = name.starts_with("incorrect").then_some(wrong.as_str());
            let dpop = v.dpop().then(|| env.token_dpop(c1, &c1.dpop));
            let a = env
                .token_raw(
                    c1,
                    &env.code_form(c1, &code, verifier, &c1.redirect_uri),
                    dpop,
                )
                .await?;
            check_error(&a, &["invalid_grant"])
        }
        "par-without-duplicate-parameters" => env.flow(v, c1).await.map(drop),
        other => Err(format!("no test for module {other}")),
    }
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Authorization for a pushed request; returns the code.
async fn authz_code(env: &Env, v: &Variant, c: &Client, p: &Params, uri: &str) -> R<String> {
    match env.authorize(c, uri, &vec![], true).await? {
        AuthzOutcome::Redirect(q) => env.check_authz_success(v, &q, get(p, "state")),
        AuthzOutcome::Page(s, body) => Err(format!(
            "authorization ended on a page: HTTP {s} {}",
            page_text(&body)
        )),
    }
}

/// Authorization, token and resource for an already pushed request.
async fn finish_flow(
    env: &Env,
    v: &Variant,
    c: &Client,
    p: &Params,
    verifier: &str,
    uri: &str,
) -> R {
    let code = authz_code(env, v, c, p, uri).await?;
    let t = env.redeem(v, c, &code, verifier).await?;
    let at = env.check_token(v, c, &t, get(p, "nonce"), v.openid)?;
    env.check_resource(v, c, &at).await
}

/// Different value outside the (pushed) request: an error, or success
/// using the inside value.
async fn either_error_or_inside(
    env: &Env,
    v: &Variant,
    c: &Client,
    p: &Params,
    verifier: &str,
    uri: &str,
    outside: &Params,
) -> R {
    match env.authorize(c, uri, outside, true).await? {
        AuthzOutcome::Page(s, body) => check_error_page(s, &body, &["invalid_request"]),
        AuthzOutcome::Redirect(q) if q.contains_key("error") => {
            env.check_authz_error(&q, get(p, "state"), &["invalid_request"])
        }
        AuthzOutcome::Redirect(q) => {
            // check_authz_success insists on the inside state; check_token on the inside nonce.
            let code = env.check_authz_success(v, &q, get(p, "state"))?;
            let t = env.redeem(v, c, &code, verifier).await?;
            env.check_token(v, c, &t, get(p, "nonce"), v.openid)
                .map(drop)
        }
    }
}

/// The authorization endpoint must not send the browser to `bad_prefix`.
pub async fn must_not_redirect(env: &Env, c: &Client, uri: &str, bad_prefix: &str) -> R {
    let url = format!(
        "{}?client_id={}&request_uri={}",
        env.discovery["authorization_endpoint"]
            .as_str()
            .unwrap_or_default(),
        enc(&c.id),
        enc(uri)
    );
    must_not_redirect_from(env, url, bad_prefix).await
}

/// [`must_not_redirect`] from the authorization URL `url`.
pub async fn must_not_redirect_from(env: &Env, url: String, bad_prefix: &str) -> R {
    let browser = jose::https_client(&env.ca_pem, None, true);
    let mut next = url;
    for _ in 0..6 {
        let res = browser.get(&next).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_redirection() {
            let s = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            return check_error_page(
                s,
                &body,
                &[
                    "invalid_request",
                    "invalid_redirect_uri",
                    "invalid_request_uri",
                ],
            );
        }
        let loc = res
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_string();
        ensure!(
            !loc.starts_with(bad_prefix),
            "the browser was redirected to the unregistered URI {loc}"
        );
        if loc.contains("/login") || loc.contains("/consent") {
            return Err(format!(
                "an unregistered redirect_uri was accepted (the user is asked to log in: {loc})"
            ));
        }
        next = url::Url::parse(&env.issuer)
            .and_then(|b| b.join(&loc))
            .map_err(|e| e.to_string())?
            .to_string();
    }
    Err("too many redirects".into())
}

async fn refresh_token(env: &Env, v: &Variant, c1: &Client, c2: &Client) -> R {
    let f1 = env.flow(v, c1).await?;
    let f2 = env.flow(v, c2).await?;
    refresh_checks(env, v, c1, &f1, &f2).await
}

/// The refresh-token module after one flow of each client (`f1` by `c1`,
/// `f2` by the other): refresh works, the refresh token is bound to its
/// client, and needs client authentication and proof of possession.
pub async fn refresh_checks(
    env: &Env,
    v: &Variant,
    c1: &Client,
    f1: &crate::flow::Flow,
    f2: &crate::flow::Flow,
) -> R {
    let rt1 = f1.token.json["refresh_token"]
        .as_str()
        .ok_or("no refresh_token issued (offline_access was requested)")?
        .to_string();
    let rt2 = f2.token.json["refresh_token"]
        .as_str()
        .ok_or("client2: no refresh_token")?
        .to_string();
    let d = &env.discovery;
    ensure!(
        d["grant_types_supported"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("refresh_token"))),
        "refresh tokens issued but grant_types_supported lacks refresh_token"
    );
    let form = |c: &Client, rt: &str, auth: bool| {
        let mut f: Params = vec![
            ("grant_type".into(), "refresh_token".into()),
            ("refresh_token".into(), rt.into()),
        ];
        if auth {
            f.extend(env.auth_fields(c, "token_endpoint"));
        } else {
            f.push(("client_id".into(), c.id.clone()));
        }
        f
    };
    let dpop = |c: &Client| v.dpop().then(|| env.token_dpop(c, &c.dpop));
    // Refresh works.
    let a = env.token_raw(c1, &form(c1, &rt1, true), dpop(c1)).await?;
    let at = env.check_token(v, c1, &a, None, v.openid).or_else(|e| {
        if e.contains("nonce") {
            Ok(a.json["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string())
        } else {
            Err(e)
        }
    })?;
    if v.openid
        && let (Some(old), Some(new)) = (
            jose::jwt_part(f1.token.json["id_token"].as_str().unwrap_or_default(), 1),
            a.json["id_token"]
                .as_str()
                .and_then(|t| jose::jwt_part(t, 1)),
        )
    {
        ensure!(
            old["sub"] == new["sub"] && old["iss"] == new["iss"],
            "refreshed id_token sub/iss differ"
        );
    }
    env.check_resource(v, c1, &at).await?;
    // Bound to the client: client1 cannot use client2's refresh token.
    let b = env.token_raw(c1, &form(c1, &rt2, true), dpop(c1)).await?;
    check_error(&b, &["invalid_grant", "invalid_client", "invalid_request"])
        .map_err(|e| format!("client1 with client2's refresh token: {e}"))?;
    let rt1 = a.json["refresh_token"]
        .as_str()
        .map(str::to_string)
        .unwrap_or(rt1);
    // Without client authentication (private_key_jwt only: with mTLS the certificate authenticates).
    if !v.mtls {
        let b = env.token_raw(c1, &form(c1, &rt1, false), dpop(c1)).await?;
        check_error(&b, &["invalid_client", "invalid_request", "invalid_grant"])
            .map_err(|e| format!("refresh without client authentication: {e}"))?;
    }
    // Without proof of possession: no DPoP proof, or no certificate for
    // certificate-bound tokens.
    let b = if !v.dpop() {
        match env
            .http
            .post(env.ep(c1, "token_endpoint"))
            .form(&form(c1, &rt1, true))
            .send()
            .await
        {
            Err(_) => None,
            Ok(r) => Some(crate::flow::answer(Ok(r)).await?),
        }
    } else {
        Some(env.token_raw(c1, &form(c1, &rt1, true), None).await?)
    };
    if let Some(b) = b {
        check_error(
            &b,
            &[
                "invalid_client",
                "invalid_request",
                "invalid_grant",
                "invalid_dpop_proof",
            ],
        )
        .map_err(|e| format!("refresh without proof of possession: {e}"))?;
    }
    Ok(())
}

/// dpop-negative-tests: at the resource server.
async fn dpop_negative(env: &Env, v: &Variant, c1: &Client, c2: &Client) -> R {
    let f = env.flow(v, c1).await?;
    let at = f.access_token.clone();
    let url = env.ep(c1, "userinfo_endpoint");
    let good = || dpop_claims("GET", &url, Some(&at));
    let key = &c1.dpop;
    let send = |proofs: Vec<String>, scheme: &'static str, header_name: &'static str| {
        let at = at.clone();
        let url = url.clone();
        async move {
            let mut req = c1
                .http
                .get(&url)
                .header("Authorization", format!("{scheme} {at}"));
            for p in proofs {
                req = req.header(header_name, p);
            }
            crate::flow::answer(req.send().await).await
        }
    };
    let with_header = |claims: Value, edit: &dyn Fn(&mut jsonwebtoken::Header)| {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
        key.sign_with(Some("dpop+jwt"), &claims, |h| {
            h.kid = None;
            h.jwk = Some(jwk);
            edit(h);
        })
    };
    let without = |k: &str| {
        let mut c = good();
        c.as_object_mut().map(|o| o.remove(k));
        dpop_proof(key, &c)
    };
    let with = |k: &str, val: Value| {
        let mut c = good();
        c[k] = val;
        dpop_proof(key, &c)
    };
    let raw = |header: Value, claims: Value| {
        // Hand-built JWS (for header fields jsonwebtoken cannot express).
        let signing_input = format!(
            "{}.{}",
            jose::b64(header.to_string().as_bytes()),
            jose::b64(claims.to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key.encoding, key.alg)
            .unwrap_or_default();
        format!("{signing_input}.{sig}")
    };
    let base_header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
    let header_edit = |f: &dyn Fn(&mut Value)| {
        let mut h = base_header.clone();
        f(&mut h);
        raw(h, good())
    };
    let mut private_jwk = key.public_jwk();
    private_jwk["d"] = json!(jose::b64(&[7u8; 32]));
    let bad_sig = {
        let p = dpop_proof(key, &good());
        let (head, sig) = p.rsplit_once('.').unwrap_or_default();
        let mut s = jose::b64_decode(sig).unwrap_or_default();
        if let Some(b) = s.get_mut(3) {
            *b ^= 0x33;
        }
        format!("{head}.{}", jose::b64(&s))
    };
    let rejects: Vec<(&str, Vec<String>, &'static str)> = vec![
        (
            "two DPoP headers",
            vec![dpop_proof(key, &good()), dpop_proof(key, &good())],
            "DPoP",
        ),
        ("proof not a JWT", vec!["not-a-jwt".into()], "DPoP"),
        (
            "missing typ",
            vec![header_edit(&|h| {
                drop(h.as_object_mut().map(|o| o.remove("typ")))
            })],
            "DPoP",
        ),
        (
            "missing alg",
            vec![header_edit(&|h| {
                drop(h.as_object_mut().map(|o| o.remove("alg")))
            })],
            "DPoP",
        ),
        (
            "missing jwk",
            vec![header_edit(&|h| {
                drop(h.as_object_mut().map(|o| o.remove("jwk")))
            })],
            "DPoP",
        ),
        (
            "wrong typ",
            vec![header_edit(&|h| h["typ"] = json!("jwt"))],
            "DPoP",
        ),
        (
            "jwk with private key",
            vec![header_edit(&|h| h["jwk"] = private_jwk.clone())],
            "DPoP",
        ),
        ("missing jti", vec![without("jti")], "DPoP"),
        ("missing htm", vec![without("htm")], "DPoP"),
        ("missing htu", vec![without("htu")], "DPoP"),
        ("missing iat", vec![without("iat")], "DPoP"),
        ("missing ath", vec![without("ath")], "DPoP"),
        (
            "alg none",
            vec![format!(
                "{}.{}.",
                jose::b64(
                    json!({"typ":"dpop+jwt","alg":"none","jwk":key.public_jwk()})
                        .to_string()
                        .as_bytes()
                ),
                jose::b64(good().to_string().as_bytes())
            )],
            "DPoP",
        ),
        ("bad signature", vec![bad_sig], "DPoP"),
        ("wrong htm", vec![with("htm", json!("POST"))], "DPoP"),
        (
            "wrong htu",
            vec![with("htu", json!("https://other.example/userinfo"))],
            "DPoP",
        ),
        (
            "iat 1 h ago",
            vec![with("iat", json!(now() - 3600))],
            "DPoP",
        ),
        (
            "iat 1 h ahead",
            vec![with("iat", json!(now() + 3600))],
            "DPoP",
        ),
        (
            "wrong ath",
            vec![with("ath", json!(jose::sha256_b64(b"another token")))],
            "DPoP",
        ),
        (
            "signed by another key",
            vec![dpop_proof(&c2.dpop, &good())],
            "DPoP",
        ),
        ("no DPoP proof", vec![], "DPoP"),
        ("no proof, scheme Bearer", vec![], "Bearer"),
    ];
    for (what, proofs, scheme) in rejects {
        let a = send(proofs, scheme, "DPoP").await?;
        ensure!(
            a.status == 400 || a.status == 401,
            "{what}: expected 400/401, got {}",
            a.brief()
        );
    }
    let mut upper_htu = url::Url::parse(&url).map_err(|e| e.to_string())?;
    let upper = format!(
        "HTTPS://{}{}",
        upper_htu.host_str().unwrap_or_default().to_uppercase(),
        match upper_htu.port() {
            Some(p) => format!(":{p}{}", upper_htu.path()),
            None => upper_htu.path().to_string(),
        }
    );
    let default_port = if upper_htu.port().is_none() {
        let _ = upper_htu.set_port(Some(443));
        format!(
            "{}:443{}",
            url.split('/').take(3).collect::<Vec<_>>().join("/"),
            upper_htu.path()
        )
    } else {
        url.clone()
    };
    let accepts: Vec<(&str, Vec<String>, &'static str)> = vec![
        // Control: the hand-built JWS used for the header cases above.
        (
            "hand-built proof (control)",
            vec![raw(base_header.clone(), good())],
            "DPoP",
        ),
        ("header name DPOP", vec![dpop_proof(key, &good())], "DPOP"),
        (
            "htu with query and fragment",
            vec![with("htu", json!(format!("{url}?foo=bar#frag")))],
            "DPoP",
        ),
        (
            "extra header and claims",
            vec![{
                let mut c = good();
                c["extra"] = json!("claim");
                with_header(c, &|h| h.cty = Some("extra".into()))
            }],
            "DPoP",
        ),
        (
            "htu with upper-case scheme and host",
            vec![with("htu", json!(upper))],
            "DPoP",
        ),
        (
            "htu with explicit default port",
            vec![with("htu", json!(default_port))],
            "DPoP",
        ),
    ];
    for (what, proofs, header_name) in accepts {
        let a = send(proofs, "DPoP", header_name).await?;
        env.resource_ok(v, &a)
            .map_err(|e| format!("{what} must be accepted: {e}"))?;
    }
    Ok(())
}

/// The id_token once more through the openidconnect crate as the relying
/// party (signature against the JWKS, iss, aud, exp, nonce, at_hash).
pub fn rp_verify_id_token(env: &Env, c: &Client, f: &crate::flow::Flow) -> R {
    use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
    use openidconnect::{AccessToken, AccessTokenHash, ClientId, IssuerUrl, Nonce};
    let jwks: CoreJsonWebKeySet =
        serde_json::from_value(env.jwks.clone()).map_err(|e| format!("openidconnect JWKS: {e}"))?;
    let issuer = IssuerUrl::new(env.issuer.clone()).map_err(|e| e.to_string())?;
    let verifier =
        CoreIdTokenVerifier::new_public_client(ClientId::new(c.id.clone()), issuer, jwks)
            .set_allowed_algs(vec![
                openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPssSha256,
                openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                openidconnect::core::CoreJwsSigningAlgorithm::EdDsa,
            ]);
    let raw = f.token.json["id_token"].as_str().ok_or("no id_token")?;
    let idt: CoreIdToken = raw
        .parse()
        .map_err(|e| format!("openidconnect: id_token does not parse: {e}"))?;
    let nonce = Nonce::new(get(&f.params, "nonce").unwrap_or_default().to_string());
    let claims = idt
        .claims(&verifier, &nonce)
        .map_err(|e| format!("openidconnect rejects the id_token: {e}"))?;
    if let Some(expected) = claims.access_token_hash() {
        let alg = idt.signing_alg().map_err(|e| e.to_string())?;
        let key = idt.signing_key(&verifier).map_err(|e| e.to_string())?;
        let actual =
            AccessTokenHash::from_token(&AccessToken::new(f.access_token.clone()), alg, key)
                .map_err(|e| e.to_string())?;
        ensure!(&actual == expected, "openidconnect: at_hash does not match");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_strips_tags() {
        assert_eq!(
            page_text(
                "<html><body><h1>Error</h1><p>invalid_request: bad\n thing</p></body></html>"
            ),
            "Error invalid_request: bad thing"
        );
        assert!(
            check_error_page(400, "<p>invalid_request_uri</p>", &["invalid_request_uri"]).is_ok()
        );
        assert!(
            check_error_page(200, "<p>invalid_request_uri</p>", &["invalid_request_uri"]).is_err()
        );
        assert!(check_error_page(400, "<p>oops</p>", &["invalid_request"]).is_err());
    }

    #[test]
    fn module_table_matches_the_oidf_plans() {
        let names: std::collections::HashSet<_> = FAPI2_MODULES.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), FAPI2_MODULES.len(), "duplicate module");
        // oidf-modules.md §1: 78 MS modules, 16 of them signed-only.
        assert_eq!(FAPI2_MODULES.len(), 78);
        let ms_only = FAPI2_MODULES
            .iter()
            .filter(|m| {
                m.cond == Cond::Ms
                    || m.name
                        .starts_with("australia-connectid-ensure-request-object")
            })
            .count();
        assert_eq!(ms_only, 16);
    }

    #[test]
    fn applicability_follows_the_variant() {
        let v = |mtls, openid| Variant::of(crate::flow::Plan::Sp, mtls, openid, false);
        let dpop = FAPI2_MODULES
            .iter()
            .find(|m| m.name == "dpop-negative-tests")
            .unwrap();
        assert!(applies(dpop, &v(false, true)) && !applies(dpop, &v(true, true)));
        let nonce = FAPI2_MODULES
            .iter()
            .find(|m| m.name.ends_with("without-nonce-success"))
            .unwrap();
        assert!(!applies(nonce, &v(false, false)));
        let signed = FAPI2_MODULES
            .iter()
            .find(|m| m.name == "ensure-expired-request-object-fails")
            .unwrap();
        assert!(!applies(signed, &v(false, true)));
    }
}

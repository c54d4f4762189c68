//! The client side: the browser steps of a flow (split at the consent so
//! that racers can be held there), token requests, introspection.

use std::net::IpAddr;
use std::sync::Arc;

use conformance::flow::{
    Answer, AuthzOutcome, Client, Env, PASSWORD, Params, Plan, USER, Variant, answer, get,
};
use conformance::jose::{self, dpop_claims, dpop_proof};
use reqwest::cookie::Jar;
use serde_json::json;

use crate::cluster::R;

/// private_key_jwt with DPoP-bound tokens, OpenID (the FAPI 2.0 default).
pub const DPOP: Variant = Variant {
    plan: Plan::Sp,
    mtls: false,
    openid: true,
    ping: false,
    uk: false,
    pushed: false,
    jarm_mode: false,
};

/// A fresh browser (its own cookies) that reaches the instance at `ip`.
pub fn browser(env: &Env, ip: IpAddr) -> reqwest::Client {
    browser_with(env, ip, Arc::new(Jar::default()))
}

/// A browser with the cookies of `jar` (the same customer's browser, sent
/// to another instance).
pub fn browser_with(env: &Env, ip: IpAddr, jar: Arc<Jar>) -> reqwest::Client {
    jose::https_client_at(&env.ca_pem, None, Some(jar), Some(ip))
}

fn location(res: &reqwest::Response, base: &url::Url) -> R<url::Url> {
    let loc = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or(format!("HTTP {} without Location", res.status()))?;
    base.join(loc).map_err(|e| e.to_string())
}

/// GET /authorize with `request_uri`, sign in at the login page, and stop
/// at the consent page: its URL.
pub async fn to_consent(
    env: &Env,
    b: &reqwest::Client,
    c: &Client,
    request_uri: &str,
) -> R<url::Url> {
    to_consent_signing_in(env, b, c, request_uri)
        .await
        .map(|(u, _)| u)
}

/// [`to_consent`], and whether the login page was on the way (no session).
pub async fn to_consent_signing_in(
    env: &Env,
    b: &reqwest::Client,
    c: &Client,
    request_uri: &str,
) -> R<(url::Url, bool)> {
    let mut signed_in = false;
    let base = url::Url::parse(&env.issuer).map_err(|e| e.to_string())?;
    let mut url = url::Url::parse(
        env.discovery["authorization_endpoint"]
            .as_str()
            .unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("client_id", &c.id)
        .append_pair("request_uri", request_uri);
    let mut res = b
        .get(url.as_str())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..8 {
        if !res.status().is_redirection() {
            return Err(format!(
                "authorization stopped before the consent page: HTTP {}",
                res.status()
            ));
        }
        let next = location(&res, &base)?;
        if next.path().ends_with("/consent") {
            return Ok((next, signed_in));
        }
        res = if next.path().ends_with("/login") {
            signed_in = true;
            b.post(next.as_str())
                .form(&[
                    ("username", USER),
                    ("password", PASSWORD),
                    ("action", "login"),
                ])
                .send()
                .await
        } else {
            b.get(next.as_str()).send().await
        }
        .map_err(|e| e.to_string())?;
    }
    Err("too many redirects before the consent page".into())
}

/// Approves at the consent page and follows the redirects back to the client.
pub async fn approve(
    env: &Env,
    b: &reqwest::Client,
    c: &Client,
    consent: &url::Url,
) -> R<AuthzOutcome> {
    let base = url::Url::parse(&env.issuer).map_err(|e| e.to_string())?;
    let mut res = b
        .post(consent.as_str())
        .form(&[("action", "approve")])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..8 {
        if !res.status().is_redirection() {
            let status = res.status().as_u16();
            return Ok(AuthzOutcome::Page(
                status,
                res.text().await.unwrap_or_default(),
            ));
        }
        let next = location(&res, &base)?;
        if next.host_str() != base.host_str() {
            return env
                .redirect_params(c, next.as_str())
                .map(AuthzOutcome::Redirect);
        }
        res = b
            .get(next.as_str())
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    Err("too many redirects after the consent".into())
}

/// PAR → authorize → login → consent at the instance `ip`: (params,
/// code_verifier, code).
pub async fn code_at(env: &Env, ip: IpAddr) -> R<(Params, String, String)> {
    let c = &env.pkjwt[0];
    let (p, verifier) = env.auth_params(&DPOP, c);
    let uri = env.par(&DPOP, c, &p).await?;
    let b = browser(env, ip);
    let consent = to_consent(env, &b, c, &uri).await?;
    match approve(env, &b, c, &consent).await? {
        AuthzOutcome::Redirect(q) => {
            let code = env.check_authz_success(&DPOP, &q, get(&p, "state"))?;
            Ok((p, verifier, code))
        }
        AuthzOutcome::Page(s, body) => Err(format!(
            "authorization ended on a page: HTTP {s} {}",
            body.chars().take(200).collect::<String>()
        )),
    }
}

/// A full flow in browser `b` (its cookies kept) up to a token response:
/// whether the login page was shown on the way.
pub async fn flow_in(env: &Env, b: &reqwest::Client) -> R<bool> {
    let c = &env.pkjwt[0];
    let (p, verifier) = env.auth_params(&DPOP, c);
    let uri = env.par(&DPOP, c, &p).await?;
    let (consent, signed_in) = to_consent_signing_in(env, b, c, &uri).await?;
    let code = match approve(env, b, c, &consent).await? {
        AuthzOutcome::Redirect(q) => env.check_authz_success(&DPOP, &q, get(&p, "state"))?,
        AuthzOutcome::Page(s, _) => return Err(format!("authorization ended on a page: HTTP {s}")),
    };
    token_pair(&env.redeem(&DPOP, c, &code, &verifier).await?)?;
    Ok(signed_in)
}

/// A full flow up to the tokens: (access_token, refresh_token).
pub async fn tokens_at(env: &Env, ip: IpAddr) -> R<(String, String)> {
    let (_, verifier, code) = code_at(env, ip).await?;
    let a = env.redeem(&DPOP, &env.pkjwt[0], &code, &verifier).await?;
    token_pair(&a)
}

pub fn token_pair(a: &Answer) -> R<(String, String)> {
    if a.status != 200 {
        return Err(format!("token request: {}", a.brief()));
    }
    let at = a.json["access_token"].as_str().ok_or("no access_token")?;
    let rt = a.json["refresh_token"].as_str().ok_or("no refresh_token")?;
    Ok((at.to_string(), rt.to_string()))
}

/// A DPoP proof for the token endpoint.
pub fn token_proof(env: &Env) -> String {
    let c = &env.pkjwt[0];
    dpop_proof(
        &c.dpop,
        &dpop_claims("POST", &env.ep(c, "token_endpoint"), None),
    )
}

/// A fresh `client_assertion` for pkjwt[0].
pub fn assertion(env: &Env) -> String {
    let c = &env.pkjwt[0];
    c.key.sign(None, &c.assertion_claims(json!(env.issuer)))
}

/// A client-credentials token request with these credentials.
pub fn client_credentials(env: &Env, assertion: &str) -> Params {
    let c = &env.pkjwt[0];
    vec![
        ("grant_type".into(), "client_credentials".into()),
        ("scope".into(), "accounts".into()),
        ("client_id".into(), c.id.clone()),
        (
            "client_assertion_type".into(),
            conformance::flow::ASSERTION_TYPE.into(),
        ),
        ("client_assertion".into(), assertion.into()),
    ]
}

pub fn refresh_form(env: &Env, refresh_token: &str) -> Params {
    let c = &env.pkjwt[0];
    let mut f: Params = vec![
        ("grant_type".into(), "refresh_token".into()),
        ("refresh_token".into(), refresh_token.into()),
    ];
    f.extend(c.auth_fields(&env.issuer));
    f
}

/// RFC 7662 `active` of `token`, asked by the client it was issued to
/// (another client is told that a refresh token is inactive).
pub async fn active(env: &Env, token: &str) -> R<bool> {
    let c = &env.pkjwt[0];
    let mut form: Params = vec![("token".into(), token.into())];
    form.extend(c.auth_fields(&env.issuer));
    let a = env
        .post(c, &env.ep(c, "introspection_endpoint"), &form, None)
        .await?;
    if a.status != 200 {
        return Err(format!("introspection: {}", a.brief()));
    }
    a.json["active"]
        .as_bool()
        .ok_or(format!("introspection without active: {}", a.brief()))
}

/// GET `path` on the instance: the status.
pub async fn probe(env: &Env, path: &str) -> Result<u16, String> {
    answer(env.http.get(format!("{}{path}", env.issuer)).send().await)
        .await
        .map(|a| a.status)
}

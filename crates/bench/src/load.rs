//! The load driver: N workers, each on its own HTTP/1.1 keep-alive
//! connection, loop one case's request (or scripted flow) for a fixed time;
//! latencies go into HDR histograms, the server's CPU and RSS come from /proc.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::ciba::{BankSide, binding_message_of};
use crate::h1::{self, H1};
use crate::limits::SigWork;
use crate::setup::{ASSERTION_TYPE, PASSWORD, Provision, Registrant, SCOPE, Tpp, USER};
use crate::stock::{Kind, Stock};
use oauth_core::secret::{random_token, sha256_b64url};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    Discovery,
    Jwks,
    TokenPrivateKeyJwt,
    TokenTlsClientAuth,
    Par,
    Introspection,
    UserinfoDpop,
    FullFlow,
    Registration,
    Ciba,
}

pub const ALL_CASES: [Case; 10] = [
    Case::Discovery,
    Case::Jwks,
    Case::TokenPrivateKeyJwt,
    Case::TokenTlsClientAuth,
    Case::Par,
    Case::Introspection,
    Case::UserinfoDpop,
    Case::FullFlow,
    Case::Registration,
    Case::Ciba,
];

impl Case {
    pub fn parse(name: &str) -> Option<Case> {
        Some(match name {
            "discovery" => Case::Discovery,
            "jwks" => Case::Jwks,
            "token" => Case::TokenPrivateKeyJwt,
            "mtls" => Case::TokenTlsClientAuth,
            "par" => Case::Par,
            "introspection" => Case::Introspection,
            "userinfo" => Case::UserinfoDpop,
            "flow" => Case::FullFlow,
            "registration" => Case::Registration,
            "ciba" => Case::Ciba,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Case::Discovery => "discovery",
            Case::Jwks => "JWKS",
            Case::TokenPrivateKeyJwt => "token client_credentials, private_key_jwt + DPoP",
            Case::TokenTlsClientAuth => "token client_credentials, tls_client_auth (mTLS)",
            Case::Par => "PAR, private_key_jwt + DPoP",
            Case::Introspection => "introspection, private_key_jwt",
            Case::UserinfoDpop => "userinfo, DPoP-bound token",
            Case::FullFlow => "full flow PAR→authorize→consent→token (session)",
            Case::Registration => "registration, UK OB (signed request + SSA, mTLS)",
            Case::Ciba => "CIBA poll: signed request, one pending poll, approval, redemption",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Case::Discovery => "discovery",
            Case::Jwks => "jwks",
            Case::TokenPrivateKeyJwt => "token pkjwt",
            Case::TokenTlsClientAuth => "token mTLS",
            Case::Par => "PAR",
            Case::Introspection => "introspect",
            Case::UserinfoDpop => "userinfo",
            Case::FullFlow => "full flow",
            Case::Registration => "register",
            Case::Ciba => "CIBA",
        }
    }

    /// The signatures Strongroom verifies/creates per request (per flow):
    /// client assertions and DPoP proofs are ES256 here, the id_token PS256.
    pub fn sig_work(self) -> SigWork {
        let v = |n| SigWork {
            es256_verify: n,
            ps256_sign: 0,
        };
        match self {
            Case::Discovery | Case::Jwks | Case::TokenTlsClientAuth => SigWork::default(),
            Case::TokenPrivateKeyJwt | Case::Par | Case::Registration => v(2),
            Case::Introspection | Case::UserinfoDpop => v(1),
            Case::FullFlow => SigWork {
                es256_verify: 4,
                ps256_sign: 1,
            },
            // Request: assertion + request object; poll and redemption:
            // assertion + DPoP proof each; the id_token.
            Case::Ciba => SigWork {
                es256_verify: 6,
                ps256_sign: 1,
            },
        }
    }
}

/// A server under load as the driver sees it.
pub struct Target {
    pub name: &'static str,
    pub issuer: String,
    pub pid: u32,
    pub discovery: Value,
    pub cases: Vec<Case>,
    pub prov: Arc<ProvisionRef>,
    /// The endpoints, read from discovery once.
    pub urls: Urls,
    /// The driver's signatures for the cell being run, made ahead of its
    /// measured window.
    pub stock: Stock,
    /// Strongroom's CIBA hooks, answered by the driver; `None`: the peer,
    /// which approves through its own `POST /bench/ciba/decision`.
    pub bank: Option<Arc<BankSide>>,
}

#[derive(Default)]
pub struct Urls {
    pub discovery: String,
    pub jwks: String,
    pub token: String,
    pub mtls_token: String,
    pub par: String,
    pub introspection: String,
    pub userinfo: String,
    pub authorize: String,
    pub registration: String,
    pub bc_authorize: String,
}

/// What workers need from the provisioning.
pub struct ProvisionRef {
    pub ca_pem: std::path::PathBuf,
    pub pkjwt: Arc<Tpp>,
    pub mtls: Arc<Tpp>,
    pub mtls_identity: (String, String),
    pub registrant: Arc<Registrant>,
}

impl ProvisionRef {
    pub fn from(p: &Provision) -> ProvisionRef {
        ProvisionRef {
            ca_pem: p.ca_pem.clone(),
            pkjwt: p.pkjwt.clone(),
            mtls: p.mtls.clone(),
            mtls_identity: p.mtls_identity.clone(),
            registrant: p.registrant.clone(),
        }
    }
}

impl Target {
    /// A fresh signature of `kind`, by the private_key_jwt client (or the
    /// registrant): one made ahead of the window if any is left.
    fn signed(&self, kind: Kind) -> String {
        self.stock
            .take(kind, &self.prov.pkjwt, &self.prov.registrant)
    }

    fn endpoint(&self, name: &str) -> Result<String, String> {
        self.discovery[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{}: discovery has no {name}", self.name))
    }

    fn mtls_endpoint(&self, name: &str) -> Result<String, String> {
        self.discovery["mtls_endpoint_aliases"][name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{}: discovery has no mtls alias for {name}", self.name))
    }
}

/// A TLS client configuration on aws-lc-rs trusting `ca`, with a client
/// certificate when `identity` is given.
pub fn tls_config(
    ca: &Path,
    identity: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("CA file: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("CA file: {e}"))?)
            .map_err(|e| format!("CA: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// One worker: its connection, used by the TPP and, in the flow, by the
/// customer's browser too (so that a journey stays on one connection, which
/// under Node's cluster module means on one worker and its in-memory
/// store); the browser's cookies; and the access token this connection
/// obtained for the introspection and userinfo cases.
struct Worker {
    h1: H1,
    jar: h1::Jar,
    token: Option<String>,
}

fn check(status: u16, body: &[u8], want: u16, what: &str) -> Result<(), String> {
    if status == want {
        return Ok(());
    }
    Err(format!(
        "{what}: HTTP {status}: {}",
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
    ))
}

/// A POST by the private_key_jwt client: `fields` after its client_id and a
/// fresh assertion, with a fresh DPoP proof when `dpop`; the response body
/// when the status is `want`.
async fn tpp_post(
    t: &Target,
    h1: &mut H1,
    url: &str,
    fields: &[(&str, &str)],
    dpop: bool,
    want: u16,
    what: &str,
) -> Result<bytes::Bytes, String> {
    let tpp = &t.prov.pkjwt;
    let assertion = t.signed(Kind::Assertion {
        aud: t.issuer.clone(),
    });
    let mut form = vec![
        ("client_id", tpp.client_id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", &assertion),
    ];
    form.extend_from_slice(fields);
    let proof = dpop.then(|| {
        t.signed(Kind::Dpop {
            htm: "POST",
            htu: url.to_string(),
            token: None,
        })
    });
    let headers: &[(&str, &str)] = match &proof {
        Some(p) => &[("dpop", p)],
        None => &[],
    };
    let (status, body) = h1
        .request("POST", url, headers, Some(h1::form(&form)))
        .await?;
    check(status, &body, want, what)?;
    Ok(body)
}

/// A client_credentials request with private_key_jwt + DPoP; returns the
/// response body.
async fn token_pkjwt_h1(t: &Target, h1: &mut H1) -> Result<bytes::Bytes, String> {
    let fields = [("grant_type", "client_credentials"), ("scope", "accounts")];
    tpp_post(t, h1, &t.urls.token, &fields, true, 200, "token").await
}

/// A pushed authorization request with private_key_jwt + DPoP, and
/// `prompt` when given; returns the response body and the PKCE
/// code_verifier.
async fn par_h1(
    t: &Target,
    h1: &mut H1,
    prompt: Option<&str>,
) -> Result<(bytes::Bytes, String), String> {
    let tpp = &t.prov.pkjwt;
    let verifier = random_token(32);
    let (state, nonce, challenge) = (
        random_token(12),
        random_token(12),
        sha256_b64url(verifier.as_bytes()),
    );
    let mut fields = vec![
        ("response_type", "code"),
        ("redirect_uri", tpp.redirect_uri.as_str()),
        ("scope", SCOPE),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(p) = prompt {
        fields.push(("prompt", p));
    }
    let body = tpp_post(t, h1, &t.urls.par, &fields, true, 201, "PAR").await?;
    Ok((body, verifier))
}

/// A browser request: the jar's cookies go out, the response's come back.
async fn browse(
    h1: &mut H1,
    jar: &mut h1::Jar,
    method: &str,
    url: &str,
    form: Option<String>,
    what: &str,
) -> Result<(u16, hyper::HeaderMap, bytes::Bytes), String> {
    let cookie = jar.header();
    let headers: &[(&str, &str)] = if cookie.is_empty() {
        &[]
    } else {
        &[("cookie", &cookie)]
    };
    let r = h1
        .request_h(method, url, headers, form)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    jar.store(&r.1);
    Ok(r)
}

fn location_h(headers: &hyper::HeaderMap, status: u16, what: &str) -> Result<String, String> {
    headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| format!("{what}: HTTP {status} without Location"))
}

/// The redirect journey (PAR, authorize, a login only when the browser has
/// no session yet, the consent page, the approval), then the code exchange
/// with private_key_jwt + DPoP. Returns the DPoP-bound access token.
///
/// Strongroom's built-in pages are `/interaction/{id}/login` and
/// `…/consent`;
/// node-oidc-provider's development interactions are `/interaction/{uid}`
/// (a login or a consent form, each posted back to the same URL) and resume
/// at `/auth/{uid}`. Both journeys ask for consent every time
/// (`prompt=consent`), as a bank's does for each new access.
async fn flow_h1(t: &Target, h1: &mut H1, jar: &mut h1::Jar) -> Result<String, String> {
    let tpp = &t.prov.pkjwt;
    let (body, verifier) = par_h1(t, h1, Some("consent")).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("PAR: {e}"))?;
    let request_uri = v["request_uri"].as_str().ok_or("PAR: no request_uri")?;
    let mut url = url::Url::parse(&t.urls.authorize).map_err(|e| format!("authorize URL: {e}"))?;
    url.query_pairs_mut()
        .append_pair("client_id", &tpp.client_id)
        .append_pair("request_uri", request_uri);
    let (status, headers, _) = browse(h1, jar, "GET", url.as_str(), None, "authorize").await?;
    let mut next = absolute(&t.issuer, &location_h(&headers, status, "authorize")?)?;
    let mut consented = false;
    let mut steps = 0;
    let code = loop {
        steps += 1;
        if steps > 8 {
            return Err(format!(
                "the journey did not come back to the client: {next}"
            ));
        }
        if next.starts_with(&tpp.redirect_uri) {
            if !consented {
                return Err(format!("back at the client without consent: {next}"));
            }
            break query_param(&next, "code").ok_or_else(|| format!("no code in {next}"))?;
        }
        let path = url::Url::parse(&next)
            .map(|u| u.path().to_string())
            .map_err(|e| format!("{next}: {e}"))?;
        let (status, headers, _) = if path.ends_with("/login") {
            let form = h1::form(&[
                ("username", USER),
                ("password", PASSWORD),
                ("action", "login"),
            ]);
            browse(h1, jar, "POST", &next, Some(form), "login").await?
        } else if path.ends_with("/consent") {
            let (status, _, page) = browse(h1, jar, "GET", &next, None, "consent page").await?;
            check(status, &page, 200, "consent page")?;
            if !contains(&page, b"approve") {
                return Err("consent page without an approve button".into());
            }
            consented = true;
            let form = h1::form(&[("action", "approve")]);
            browse(h1, jar, "POST", &next, Some(form), "consent").await?
        } else if path.starts_with("/interaction/") {
            let (status, _, page) = browse(h1, jar, "GET", &next, None, "interaction").await?;
            check(status, &page, 200, "interaction page")?;
            if contains(&page, b"value=\"login\"") {
                let form =
                    h1::form(&[("prompt", "login"), ("login", USER), ("password", PASSWORD)]);
                browse(h1, jar, "POST", &next, Some(form), "login").await?
            } else if contains(&page, b"value=\"consent\"") {
                consented = true;
                let form = h1::form(&[("prompt", "consent")]);
                browse(h1, jar, "POST", &next, Some(form), "consent").await?
            } else {
                return Err("interaction page is neither login nor consent".into());
            }
        } else {
            browse(h1, jar, "GET", &next, None, "redirect").await?
        };
        next = absolute(&next, &location_h(&headers, status, &path)?)?;
    };
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", &tpp.redirect_uri),
        ("code_verifier", &verifier),
    ];
    let body = tpp_post(t, h1, &t.urls.token, &fields, true, 200, "code exchange").await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("code exchange: {e}"))?;
    if v["id_token"].as_str().is_none() {
        return Err("code exchange: no id_token".into());
    }
    v["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "code exchange: no access_token".into())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn absolute(base: &str, loc: &str) -> Result<String, String> {
    url::Url::parse(base)
        .and_then(|b| b.join(loc))
        .map(String::from)
        .map_err(|e| format!("Location {loc}: {e}"))
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn one(t: &Target, case: Case, w: &mut Worker) -> Result<(), String> {
    let Worker { h1, jar, token } = w;
    match case {
        Case::Discovery => {
            let (status, body) = h1.request("GET", &t.urls.discovery, &[], None).await?;
            check(status, &body, 200, "discovery")
        }
        Case::Jwks => {
            let (status, body) = h1.request("GET", &t.urls.jwks, &[], None).await?;
            check(status, &body, 200, "jwks")
        }
        Case::TokenPrivateKeyJwt => token_pkjwt_h1(t, h1).await.map(drop),
        Case::TokenTlsClientAuth => {
            let body = h1::form(&[
                ("client_id", &t.prov.mtls.client_id),
                ("grant_type", "client_credentials"),
                ("scope", "accounts"),
            ]);
            let (status, body) = h1
                .request("POST", &t.urls.mtls_token, &[], Some(body))
                .await?;
            check(status, &body, 200, "token (mTLS)")
        }
        Case::Par => par_h1(t, h1, None).await.map(drop),
        Case::Introspection => {
            let token = token.as_deref().ok_or("no token to introspect")?;
            let url = &t.urls.introspection;
            let body =
                tpp_post(t, h1, url, &[("token", token)], false, 200, "introspection").await?;
            // The token was issued on this connection (under Node's
            // cluster module: by this worker), so both servers must find it.
            if !contains(&body, b"\"active\":true") {
                return Err("introspection: token not active".into());
            }
            Ok(())
        }
        Case::UserinfoDpop => {
            let token = token.as_deref().ok_or("no user token")?;
            let url = &t.urls.userinfo;
            let auth = format!("DPoP {token}");
            let proof = t.signed(Kind::Dpop {
                htm: "GET",
                htu: url.clone(),
                token: Some(token.to_string()),
            });
            let (status, body) = h1
                .request(
                    "GET",
                    url,
                    &[("authorization", &auth), ("dpop", &proof)],
                    None,
                )
                .await?;
            check(status, &body, 200, "userinfo")
        }
        Case::Registration => {
            let jwt = t.signed(Kind::Registration {
                aud: t.issuer.clone(),
            });
            let (status, body) = h1
                .request(
                    "POST",
                    &t.urls.registration,
                    &[("content-type", "application/jwt")],
                    Some(jwt),
                )
                .await?;
            check(status, &body, 201, "registration")
        }
        Case::FullFlow => flow_h1(t, h1, jar).await.map(drop),
        Case::Ciba => ciba_h1(t, h1).await,
    }
}

/// One decoupled journey (the module doc of `ciba`).
async fn ciba_h1(t: &Target, h1: &mut H1) -> Result<(), String> {
    let request = t.signed(Kind::CibaRequest {
        aud: t.issuer.clone(),
    });
    let msg = binding_message_of(&request)?;
    let body = tpp_post(
        t,
        h1,
        &t.urls.bc_authorize,
        &[("request", &request)],
        false,
        200,
        "backchannel authentication",
    )
    .await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("bc-authorize: {e}"))?;
    let auth_req_id = v["auth_req_id"]
        .as_str()
        .ok_or("bc-authorize: no auth_req_id")?;
    let poll = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", auth_req_id),
    ];
    let pending = tpp_post(t, h1, &t.urls.token, &poll, true, 400, "first poll").await?;
    if !contains(&pending, b"authorization_pending") {
        return Err(format!("first poll: {}", String::from_utf8_lossy(&pending)));
    }
    // The customer approves on the phone; the bank's back end tells the OP.
    let (status, body) = match &t.bank {
        Some(bank) => {
            let handle = bank.handle(&msg).await?;
            let url = format!("{}/bank/ciba/{handle}/decision", t.issuer);
            let auth = format!("Bearer {}", crate::ciba::BANK_API_TOKEN);
            h1.request(
                "POST",
                &url,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                Some(bank.approval(&t.issuer, &handle)?),
            )
            .await?
        }
        None => {
            let url = format!("{}/bench/ciba/decision", t.issuer);
            h1.request(
                "POST",
                &url,
                &[],
                Some(h1::form(&[("binding_message", &msg)])),
            )
            .await?
        }
    };
    check(status, &body, 204, "approval")?;
    let body = tpp_post(t, h1, &t.urls.token, &poll, true, 200, "redemption").await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("redemption: {e}"))?;
    if v["access_token"].as_str().is_none() || v["id_token"].as_str().is_none() {
        return Err("redemption: no access_token or id_token".into());
    }
    Ok(())
}

/// Prepares a target: reads its discovery.
pub async fn prepare(
    name: &'static str,
    issuer: &str,
    pid: u32,
    prov: Arc<ProvisionRef>,
    cases: Vec<Case>,
    bank: Option<Arc<BankSide>>,
) -> Result<Target, String> {
    let tls = tls_config(&prov.ca_pem, None)?;
    let mut api = H1::connect(issuer, tls).await?;
    let discovery_url = format!("{issuer}/.well-known/openid-configuration");
    let (status, body) = api.request("GET", &discovery_url, &[], None).await?;
    check(status, &body, 200, "discovery")?;
    let discovery: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{name} discovery: {e}"))?;
    let mut t = Target {
        name,
        issuer: issuer.to_string(),
        pid,
        discovery,
        cases,
        prov,
        urls: Urls::default(),
        stock: Stock::default(),
        bank,
    };
    let opt = |name: &str| t.endpoint(name).unwrap_or_default();
    t.urls = Urls {
        discovery: discovery_url,
        jwks: opt("jwks_uri"),
        token: opt("token_endpoint"),
        // A server with one listener for both has no alias.
        mtls_token: t
            .mtls_endpoint("token_endpoint")
            .unwrap_or_else(|_| opt("token_endpoint")),
        par: opt("pushed_authorization_request_endpoint"),
        introspection: opt("introspection_endpoint"),
        userinfo: opt("userinfo_endpoint"),
        authorize: opt("authorization_endpoint"),
        registration: t
            .mtls_endpoint("registration_endpoint")
            .unwrap_or_else(|_| opt("registration_endpoint")),
        bc_authorize: opt("backchannel_authentication_endpoint"),
    };
    Ok(t)
}

/// One repetition of one case at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub requests: u64,
    pub errors: u64,
    pub req_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_percent: f64,
    pub peak_rss_mib: f64,
    /// Signatures the driver made inside the window, when what it signed
    /// ahead ran out (`stock`).
    pub signed_in_window: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

struct WorkerOut {
    hist: Histogram<u64>,
    /// Answered requests that count towards throughput.
    done: u64,
    errors: u64,
    first_error: Option<String>,
}

/// How a run offers its load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Every connection sends its next request as soon as the last one is
    /// answered: the server's throughput, and its latency at saturation
    /// (where, with N requests always in flight, the mean latency is
    /// N ÷ throughput whatever the server does).
    Saturate,
    /// A fixed total of requests/s, spread evenly over the connections and
    /// scheduled in advance; each latency is counted from the request's
    /// scheduled start, so a server that falls behind is charged for the
    /// wait (no coordinated omission).
    Paced(f64),
}

/// When a worker's next request starts. Saturated (`next` is `None`): now.
/// Paced: its scheduled start, which may already have passed when the
/// server is behind; the schedule moves on by `interval`.
async fn next_start(next: &mut Option<Instant>, interval: Option<Duration>) -> Instant {
    match (*next, interval) {
        (Some(at), Some(iv)) => {
            *next = Some(at + iv);
            tokio::time::sleep_until(at.into()).await;
            at
        }
        _ => Instant::now(),
    }
}

/// How long the driver may sign ahead of a window; what it has not made by
/// then is signed on demand. Well under the servers' keep-alive timeouts
/// (5 s), which the waiting connections would otherwise meet.
const SIGN_AHEAD_BUDGET: Duration = Duration::from_secs(3);

pub async fn run(
    t: &Arc<Target>,
    case: Case,
    conns: usize,
    load: Load,
    warmup: Duration,
    measure: Duration,
    sign_ahead: bool,
) -> Result<Run, String> {
    let mut workers = Vec::with_capacity(conns);
    let tls = match case {
        Case::TokenTlsClientAuth => {
            let (c, k) = &t.prov.mtls_identity;
            tls_config(&t.prov.ca_pem, Some((c, k)))?
        }
        Case::Registration => {
            let (c, k) = &t.prov.registrant.transport;
            tls_config(&t.prov.ca_pem, Some((c, k)))?
        }
        _ => tls_config(&t.prov.ca_pem, None)?,
    };
    for _ in 0..conns {
        let url = match case {
            Case::TokenTlsClientAuth => &t.urls.mtls_token,
            Case::Registration => &t.urls.registration,
            _ => &t.issuer,
        };
        let mut w = Worker {
            h1: H1::connect(url, tls.clone()).await?,
            jar: h1::Jar::default(),
            token: None,
        };
        // Untimed set-up on this connection: the customer logs in once (the
        // flow measures a customer who already has a session), or the
        // token this connection will introspect or present.
        match case {
            Case::FullFlow => {
                flow_h1(t, &mut w.h1, &mut w.jar).await?;
            }
            Case::UserinfoDpop => {
                w.token = Some(flow_h1(t, &mut w.h1, &mut w.jar).await?);
            }
            Case::Introspection => {
                let body = token_pkjwt_h1(t, &mut w.h1).await?;
                let v: Value = serde_json::from_slice(&body).map_err(|e| format!("token: {e}"))?;
                w.token = Some(
                    v["access_token"]
                        .as_str()
                        .ok_or("token response without access_token")?
                        .to_string(),
                );
            }
            _ => {}
        }
        workers.push(w);
    }
    // What the set-up signed is not the window's.
    t.stock.reset();
    let begin = Instant::now();
    let warm_end = begin + warmup;
    // Paced: each connection's interval, and its first request offset so
    // that the connections' schedules interleave.
    let interval = match load {
        Load::Saturate => None,
        Load::Paced(rate) if rate > 0.0 => Some(Duration::from_secs_f64(conns as f64 / rate)),
        Load::Paced(_) => return Err("a paced run needs a positive rate".into()),
    };
    let offset = move |from: Instant, i: usize| {
        interval.map(|iv| from + iv.mul_f64(i as f64 / conns as f64))
    };
    // Every connection warms up, then waits while the driver signs ahead
    // what the window will need (`stock`); the window starts for all at once.
    let warmed = Arc::new(tokio::sync::Barrier::new(conns + 1));
    let (go_tx, go_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let mut tasks = Vec::with_capacity(conns);
    for (i, mut w) in workers.into_iter().enumerate() {
        let t = t.clone();
        let warmed = warmed.clone();
        let mut go = go_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = WorkerOut {
                hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
                done: 0,
                errors: 0,
                first_error: None,
            };
            let mut next = offset(begin, i);
            loop {
                let t0 = next_start(&mut next, interval).await;
                if t0 >= warm_end {
                    break;
                }
                // Unmeasured.
                let _ = one(&t, case, &mut w).await;
            }
            warmed.wait().await;
            let Ok(start) = go
                .wait_for(Option::is_some)
                .await
                .map(|s| s.expect("a start"))
            else {
                return out;
            };
            let end = start + measure;
            let mut next = offset(start, i);
            loop {
                let t0 = next_start(&mut next, interval).await;
                if t0 >= end {
                    break;
                }
                let r = one(&t, case, &mut w).await;
                let t1 = Instant::now();
                match r {
                    Ok(()) => {
                        // Every request started inside the window is in
                        // the latencies, also one answered after it ends
                        // (a stall reaching past the end is not left out).
                        // Throughput counts, when saturated, what was
                        // answered inside the window; when paced, what was
                        // scheduled inside it.
                        let us = (t1 - t0).as_micros().clamp(1, 120_000_000) as u64;
                        out.hist.saturating_record(us);
                        if interval.is_some() || t1 <= end {
                            out.done += 1;
                        }
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e);
                        // Back off a little so a broken case does not spin.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            out
        }));
    }
    warmed.wait().await;
    if sign_ahead && !warmup.is_zero() {
        // The window's rate can be well above the warm-up's: the driver no
        // longer signs in it, and the first warm-up meets a cold server.
        // Three times the warm-up's rate; a kind that runs out is signed on
        // demand (and counted).
        let scale = measure.as_secs_f64() / warmup.as_secs_f64() * 3.0;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let t2 = t.clone();
        tokio::task::spawn_blocking(move || {
            t2.stock.fill(
                scale,
                threads,
                SIGN_AHEAD_BUDGET,
                &t2.prov.pkjwt,
                &t2.prov.registrant,
            )
        })
        .await
        .map_err(|e| format!("signing ahead: {e}"))?;
    }
    let start = Instant::now();
    let end = start + measure;
    let _ = go_tx.send(Some(start));
    let cpu0 = procstat::sample_tree(t.pid).cpu_secs;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let rss = tokio::spawn(procstat::peak_rss_while(t.pid, stop_rx));
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = procstat::sample_tree(t.pid).cpu_secs;
    let signed_in_window = t.stock.signed_in_window();
    let _ = stop_tx.send(());
    let peak = rss.await.map_err(|e| format!("RSS sampler: {e}"))?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let mut done = 0;
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let out = task.await.map_err(|e| format!("worker: {e}"))?;
        hist.add(&out.hist).map_err(|e| format!("histogram: {e}"))?;
        done += out.done;
        errors += out.errors;
        if first_error.is_none() {
            first_error = out.first_error;
        }
    }
    // A paced run lasts until its last scheduled request is answered: a
    // server that fell behind served fewer per second than were offered.
    let secs = match load {
        Load::Saturate => measure.as_secs_f64(),
        Load::Paced(_) => (Instant::now() - start)
            .as_secs_f64()
            .max(measure.as_secs_f64()),
    };
    let ms = |q| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Run {
        requests: done,
        errors,
        req_per_sec: done as f64 / secs,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        server_cpu_percent: (cpu1 - cpu0) / measure.as_secs_f64() * 100.0,
        peak_rss_mib: peak as f64 / (1024.0 * 1024.0),
        signed_in_window,
        first_error,
    })
}

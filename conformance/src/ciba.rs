//! The FAPI-CIBA OP plan (`fapi-ciba-id1-test-plan`, oidf-modules.md §3):
//! signed backchannel authentication requests, poll and ping, MTLS-bound
//! tokens. The mirror plays every other party itself: the TPP, the bank
//! behind Strongroom's CIBA hooks (resolve and notify receivers, and the
//! decision API called with a `dir`/`A256GCM` result token, docs/hooks.md
//! §5), and the TPP's client notification endpoint over HTTPS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ensure;
use crate::flow::{ASSERTION_TYPE, Answer, Client, Env, Params, R, Variant, answer, check_error};
use crate::jose::{self, ClientKey, Identity, now, random};
use crate::modules::{Cond, Module, check_tls};
use crate::server::Running;

pub const GRANT: &str = "urn:openid:params:grant-type:ciba";
const AUTH_REQ_ID_CLAIM: &str = "urn:openid:params:jwt:claim:auth_req_id";
const ACR: &str = "urn:openbanking:psd2:sca";
/// The configured polling interval (the server's `[ciba] interval_secs`).
const INTERVAL: i64 = 2;

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

const BR: Cond = Cond::Skip(
    "fapi_ciba_profile=openbanking_brazil only (this run is plain_fapi; Brazil is not built)",
);

/// oidf-modules.md §3: the 45 modules outside ConnectID, then the 21
/// ConnectID-only modules in one row. The happy flow is the plan's own
/// name (`fapi-ciba-id1`).
pub const MODULES: &[Module] = &[
    m("discovery-end-point-verification", Cond::All),
    m("brazil-discovery-end-point-verification", BR),
    m("fapi-ciba-id1", Cond::All),
    m("user-rejects-authentication", Cond::All),
    m("multiple-call-to-token-endpoint", Cond::All),
    slow("auth-req-id-expired", Cond::All),
    m(
        "ensure-authorization-request-with-binding-message-succeeds",
        Cond::All,
    ),
    m("ensure-other-scope-order-succeeds", Cond::All),
    m("ensure-requested-expiry-as-string-succeeds", Cond::All),
    m("ensure-requested-expiry-is-ignored-for-brazil", BR),
    m(
        "ensure-authorization-request-with-potentially-bad-binding-message",
        Cond::All,
    ),
    m("ensure-request-object-missing-aud-fails", Cond::All),
    m("ensure-request-object-bad-aud-fails", Cond::All),
    m("ensure-request-object-missing-iss-fails", Cond::All),
    m("ensure-request-object-bad-iss-fails", Cond::All),
    m("ensure-request-object-missing-exp-fails", Cond::All),
    m("ensure-request-object-expired-exp-fails", Cond::All),
    m(
        "ensure-request-object-exp-is-70-minutes-in-future-fails",
        Cond::All,
    ),
    m("ensure-request-object-missing-iat-fails", Cond::All),
    m("ensure-request-object-missing-nbf-fails", Cond::All),
    m(
        "ensure-request-object-nbf-is-10-minutes-in-future-fails",
        Cond::All,
    ),
    m(
        "ensure-request-object-nbf-is-70-minutes-in-past-fails",
        Cond::All,
    ),
    m("ensure-request-object-missing-jti-fails", Cond::All),
    m(
        "ensure-request-object-signature-algorithm-is-none-fails",
        Cond::All,
    ),
    m(
        "ensure-request-object-signature-algorithm-is-bad-fails",
        Cond::All,
    ),
    m(
        "ensure-request-object-signature-algorithm-is-RS256-fails",
        Cond::All,
    ),
    m(
        "ensure-request-object-signed-by-other-client-fails",
        Cond::All,
    ),
    m(
        "ensure-authorization-request-with-multiple-hints-fails",
        Cond::All,
    ),
    m(
        "ensure-wrong-auth-req-id-in-token-endpoint-request",
        Cond::All,
    ),
    m(
        "ensure-different-client-id-and-issuer-in-backchannel-authorization-request",
        Cond::Mtls,
    ),
    m(
        "ensure-wrong-client-id-in-token-endpoint-request",
        Cond::Mtls,
    ),
    m(
        "ensure-wrong-client-id-in-backchannel-authorization-request",
        Cond::Mtls,
    ),
    m(
        "ensure-without-client-assertion-in-token-endpoint-request",
        Cond::Pkjwt,
    ),
    m(
        "ensure-without-client-assertion-in-backchannel-authorization-request",
        Cond::Pkjwt,
    ),
    m(
        "ensure-client-assertion-signature-algorithm-in-backchannel-authorization-request-is-RS256-fails",
        Cond::Pkjwt,
    ),
    m(
        "ensure-client-assertion-signature-algorithm-in-token-endpoint-request-is-RS256-fails",
        Cond::Pkjwt,
    ),
    m(
        "ensure-client-assertion-with-iss-aud-to-token-endpoint-succeeds",
        Cond::Pkjwt,
    ),
    m(
        "ping-backchannel-notification-endpoint-response-has-body",
        Cond::Ping,
    ),
    m(
        "ping-backchannel-notification-endpoint-response-401",
        Cond::Ping,
    ),
    m(
        "ping-backchannel-notification-endpoint-response-403",
        Cond::Ping,
    ),
    slow(
        "ping-with-mtls-ciba-notification-endpoint-response-401-and-require-server-does-not-retry",
        Cond::Ping,
    ),
    slow(
        "ping-backchannel-notification-endpoint-return-redirect-request",
        Cond::Ping,
    ),
    m(
        "ensure-unsigned-backchannel-authorization-request-fails",
        Cond::All,
    ),
    m("refresh-token", Cond::All),
    m("ensure-mtls-holder-of-key-required", Cond::All),
    m(
        "australia-connectid-* (21 modules)",
        Cond::Skip(
            "fapi_ciba_profile=connectid_au only (purpose in binding_message, txn, card-PAN login_hint, 3DS authorization_details); ConnectID is not built",
        ),
    ),
];

/// The plan's variants: client_auth_type × ciba_mode, fapi_ciba_profile =
/// plain_fapi, client_registration = static_client.
pub fn variants() -> Vec<Variant> {
    [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .map(|(mtls, ping)| Variant::of(crate::flow::Plan::Ciba, mtls, true, ping))
        .collect()
}

// ---------------------------------------------------------------------------
// The bank and the TPP's notification endpoint.

/// How the client notification endpoint answers a ping.
#[derive(Clone)]
struct Behaviour {
    status: u16,
    body: String,
    location: Option<String>,
}

/// A request that reached the client notification endpoint.
#[derive(Clone, Debug)]
pub struct Ping {
    path: String,
    authorization: String,
    body: Value,
}

#[derive(Default)]
struct State {
    /// Notify hook calls, by `sub`.
    notifications: HashMap<String, Value>,
    /// Resolve hook calls.
    resolves: Vec<Value>,
    pings: Vec<Ping>,
    /// Ping answers by client_notification_token.
    behaviours: HashMap<String, Behaviour>,
    /// Hook calls that broke the contract (bad bearer, bad JSON).
    problems: Vec<String>,
}

/// Everything the CIBA modules need beyond [`Env`].
pub struct Side {
    service_token: String,
    shared_secret: [u8; 32],
    bank_token: String,
    bank_issuer: String,
    pub ping_pkjwt: [Client; 2],
    pub ping_mtls: [Client; 2],
    ping_base: String,
    state: Mutex<State>,
}

impl Side {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// (status, extra header lines, JSON body) for (method, path, headers,
/// body), answered with the state `T` of the party that listens.
pub type Handler<T> =
    fn(&T, &str, &str, &HashMap<String, String>, &[u8]) -> (u16, Vec<String>, String);

/// One HTTP/1.1 exchange (Connection: close), enough for hook calls.
pub async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin, T>(
    mut s: S,
    side: Arc<T>,
    handler: Handler<T>,
) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let end = loop {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 1 << 16 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&tmp[..n]),
        }
    }
    let (status, extra, text) = handler(&side, &method, &path, &headers, &body);
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    if !text.is_empty() {
        out.push_str("Content-Type: application/json\r\n");
    }
    for h in extra {
        out.push_str(&h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&text);
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// The bank's side of the hooks: resolve (hint → customer) and notify.
fn bank_handler(
    side: &Side,
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, Vec<String>, String) {
    let mut st = side.lock();
    let bearer = format!("Bearer {}", side.service_token);
    if headers.get("authorization") != Some(&bearer) {
        st.problems.push(format!(
            "{method} {path} without the service token as bearer"
        ));
        return (401, vec![], r#"{"error":"invalid_token"}"#.into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        st.problems
            .push(format!("{method} {path}: body is not JSON"));
        return (400, vec![], r#"{"error":"invalid_request"}"#.into());
    };
    match (method, path) {
        ("POST", "/internal/ciba/resolve") => {
            st.resolves.push(v.clone());
            let hint = v["hint"].as_str().unwrap_or_default().to_string();
            if v["hint_type"] != json!("login_hint") || hint.is_empty() {
                (400, vec![], r#"{"error":"invalid_request"}"#.into())
            } else if hint.starts_with("unknown-") {
                (404, vec![], r#"{"error":"unknown_user_id"}"#.into())
            } else {
                (200, vec![], json!({"sub": hint}).to_string())
            }
        }
        ("POST", "/internal/ciba/notify") => {
            let sub = v["sub"].as_str().unwrap_or_default().to_string();
            st.notifications.insert(sub, v);
            (204, vec![], String::new())
        }
        _ => (404, vec![], r#"{"error":"not_found"}"#.into()),
    }
}

/// The TPPs' client notification endpoints (`/cb/{client_id}`), and the
/// target of the 301 module (`/redirected/…`).
fn ping_handler(
    side: &Side,
    _method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, Vec<String>, String) {
    let mut st = side.lock();
    let authorization = headers.get("authorization").cloned().unwrap_or_default();
    st.pings.push(Ping {
        path: path.to_string(),
        authorization: authorization.clone(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
    let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
    match st.behaviours.get(token) {
        Some(b) if path.starts_with("/cb/") => (
            b.status,
            b.location
                .iter()
                .map(|l| format!("Location: {l}"))
                .collect(),
            b.body.clone(),
        ),
        _ => (204, vec![], String::new()),
    }
}

async fn listen_plain(side: Arc<Side>, l: tokio::net::TcpListener) {
    while let Ok((s, _)) = l.accept().await {
        tokio::spawn(serve_conn(s, side.clone(), bank_handler));
    }
}

async fn listen_tls(side: Arc<Side>, l: tokio::net::TcpListener, tls: tokio_rustls::TlsAcceptor) {
    while let Ok((s, _)) = l.accept().await {
        let (side, tls) = (side.clone(), tls.clone());
        tokio::spawn(async move {
            if let Ok(s) = tls.accept(s).await {
                serve_conn(s, side, ping_handler).await;
            }
        });
    }
}

fn tls_acceptor(id: &Identity) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
            .flatten()
            .collect();
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// A CIBA client: every one holds a certificate (FAPI-CIBA binds tokens
/// to it); `mtls` says whether it also authenticates with it.
fn ciba_client(pki: &jose::Pki, id: &str, mtls: bool, second: bool) -> Client {
    Client::generate_with_certificate(id, mtls, second, pki)
}

fn ciba_metadata(c: &Client, ping_base: Option<&str>) -> Value {
    let alg = match c.key.alg {
        Algorithm::ES256 => "ES256",
        _ => "PS256",
    };
    let mut m = json!({
        "client_id": c.id,
        "client_name": format!("Conformance {}", c.id),
        "logo_uri": format!("https://{}.example/logo.png", c.id),
        "policy_uri": format!("https://{}.example/privacy", c.id),
        "tos_uri": format!("https://{}.example/terms", c.id),
        "grant_types": [GRANT, "refresh_token"],
        "scope": "openid profile email accounts offline_access",
        "jwks": {"keys": [c.key.jwk]},
        "tls_client_certificate_bound_access_tokens": true,
        "backchannel_token_delivery_mode": if ping_base.is_some() { "ping" } else { "poll" },
        "backchannel_authentication_request_signing_alg": alg,
    });
    if let Some(base) = ping_base {
        m["backchannel_client_notification_endpoint"] = json!(format!("{base}/cb/{}", c.id));
    }
    if c.mtls {
        m["token_endpoint_auth_method"] = json!("tls_client_auth");
        m["tls_client_auth_subject_dn"] = json!(c.identity.as_ref().map(|i| i.subject_dn.clone()));
    } else {
        m["token_endpoint_auth_method"] = json!("private_key_jwt");
        m["token_endpoint_auth_signing_alg"] = json!(alg);
    }
    m
}

/// Starts the bank receiver, the notification endpoint and a Strongroom
/// with `[ciba]` and `[hooks]` pointing at them.
pub async fn start(postgres: bool) -> Result<Running, String> {
    let mut p = crate::server::prepare("ciba", postgres, true)?;
    let (side, pkjwt, mtls) = configure(&mut p).await?;
    crate::server::launch(p, pkjwt, mtls, Some(side)).await
}

/// The CIBA side of a prepared configuration: starts the bank receiver and
/// the notification endpoint, adds `[ciba]`, `[hooks]`, the FAPI 1.0
/// Advanced profile and the CIBA clients to `p.cfg`, and returns the side
/// and the poll clients (private_key_jwt, tls_client_auth).
pub async fn configure(
    p: &mut crate::server::Prepared,
) -> Result<(Arc<Side>, [Client; 2], [Client; 2]), String> {
    let bank_l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let ping_l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let bank_port = bank_l.local_addr().map_err(|e| e.to_string())?.port();
    let ping_port = ping_l.local_addr().map_err(|e| e.to_string())?.port();
    let ping_base = format!("https://localhost:{ping_port}");
    let bank = format!("http://127.0.0.1:{bank_port}");
    let pki = &p.pki;
    let mk = |id: &str, mtls, second| ciba_client(pki, id, mtls, second);
    let pkjwt = [
        mk("conf-ciba-pkjwt-poll-1", false, false),
        mk("conf-ciba-pkjwt-poll-2", false, true),
    ];
    let mtls = [
        mk("conf-ciba-mtls-poll-1", true, false),
        mk("conf-ciba-mtls-poll-2", true, true),
    ];
    let ping_pkjwt = [
        mk("conf-ciba-pkjwt-ping-1", false, false),
        mk("conf-ciba-pkjwt-ping-2", false, true),
    ];
    let ping_mtls = [
        mk("conf-ciba-mtls-ping-1", true, false),
        mk("conf-ciba-mtls-ping-2", true, true),
    ];
    let mut clients: Vec<Value> = pkjwt
        .iter()
        .chain(mtls.iter())
        .map(|c| ciba_metadata(c, None))
        .collect();
    clients.extend(
        ping_pkjwt
            .iter()
            .chain(ping_mtls.iter())
            .map(|c| ciba_metadata(c, Some(&ping_base))),
    );
    let acceptor = tls_acceptor(&pki.server(&["localhost", "127.0.0.1"], false))?;
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| "CSPRNG")?;
    let bank_token = random(24);
    let side = Arc::new(Side {
        service_token: random(24),
        shared_secret: secret,
        bank_issuer: "conformance-bank".into(),
        bank_token: bank_token.clone(),
        ping_pkjwt,
        ping_mtls,
        ping_base,
        state: Mutex::new(State::default()),
    });
    // Outbound HTTPS of a dev-mode Strongroom trusts {data_dir}/dev-ca.pem:
    // the suite's CA, which signed the notification endpoint's certificate.
    let data = p.dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    std::fs::write(data.join("dev-ca.pem"), &pki.ca_pem).map_err(|e| e.to_string())?;
    p.cfg["profile"] = json!("fapi1-advanced");
    p.cfg["clients"] = json!(clients);
    p.cfg["ciba"] = json!({
        "resolve_url": format!("{bank}/internal/ciba/resolve"),
        "notify_url": format!("{bank}/internal/ciba/notify"),
        "service_token": side.service_token,
        "default_expiry_secs": 120,
        "max_expiry_secs": 600,
        "interval_secs": INTERVAL,
        "timeout_ms": 3000,
    });
    p.cfg["hooks"] = json!({
        "login_url": format!("{bank}/hooks/login"),
        "consent_url": format!("{bank}/hooks/consent"),
        "token_mode": "encrypted",
        "shared_secret": jose::b64(&secret),
        "bank_issuer": side.bank_issuer,
        "require_intent": false,
        "bank_api_token_sha256": hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bank_token.as_bytes()).as_ref()),
    });
    tokio::spawn(listen_plain(side.clone(), bank_l));
    tokio::spawn(listen_tls(side.clone(), ping_l, acceptor));
    Ok((side, pkjwt, mtls))
}

// ---------------------------------------------------------------------------
// The TPP's side.

/// A started backchannel authentication request.
pub struct Pending {
    sub: String,
    token: Option<String>,
    pub auth_req_id: String,
    expires_in: i64,
    interval: i64,
    binding_message: Option<String>,
}

fn clients<'a>(env: &'a Env, side: &'a Side, v: &Variant) -> (&'a Client, &'a Client) {
    let pair = match (v.mtls, v.ping) {
        (false, false) => &env.pkjwt,
        (true, false) => &env.mtls,
        (false, true) => &side.ping_pkjwt,
        (true, true) => &side.ping_mtls,
    };
    (&pair[0], &pair[1])
}

const SCOPE: &str = "openid accounts offline_access";

/// The request object the OIDF suite sends (§3 preamble): iat, exp, nbf,
/// jti, aud, iss, scope, one hint, binding_message; ping adds the
/// client_notification_token.
pub fn request_claims(env: &Env, c: &Client, sub: &str, token: Option<&str>) -> Value {
    let t = now();
    let mut claims = json!({
        "iss": c.id, "aud": env.issuer, "iat": t, "nbf": t, "exp": t + 300, "jti": random(16),
        "scope": SCOPE, "login_hint": sub, "binding_message": format!("CONF {}", t % 10000),
    });
    if let Some(tok) = token {
        claims["client_notification_token"] = json!(tok);
    }
    claims
}

fn assertion(c: &Client, key: &ClientKey, aud: &str) -> String {
    key.sign(None, &c.assertion_claims(json!(aud)))
}

pub fn bc_form(env: &Env, c: &Client, request: String) -> Params {
    let mut f: Params = vec![("request".into(), request)];
    f.extend(c.auth_fields(&env.issuer));
    f
}

async fn bc_raw(env: &Env, c: &Client, form: &Params) -> R<Answer> {
    env.post(
        c,
        &env.ep(c, "backchannel_authentication_endpoint"),
        form,
        None,
    )
    .await
}

/// CIBA §7.3 successful authentication response.
fn check_bc_ok(a: &Answer) -> R<(String, i64, i64)> {
    ensure!(
        a.status == 200,
        "backchannel authentication request refused: {}",
        a.brief()
    );
    let ct = a.header("content-type").unwrap_or_default();
    ensure!(
        ct.starts_with("application/json"),
        "backchannel response content-type {ct}"
    );
    let id = a.json["auth_req_id"]
        .as_str()
        .ok_or(format!("no auth_req_id: {}", a.brief()))?;
    ensure!(
        id.len() >= 22 && jose::entropy_bits(id) >= 96.0 && jose::is_vschar(id),
        "auth_req_id too short, low entropy or outside VSCHAR: {id}"
    );
    let exp = a.json["expires_in"]
        .as_i64()
        .ok_or("expires_in missing or not an integer")?;
    ensure!(exp > 0, "expires_in {exp} not positive");
    let interval = match a.json.get("interval") {
        None => 5,
        Some(i) => i.as_i64().ok_or("interval not an integer")?,
    };
    ensure!(interval >= 0, "negative interval");
    Ok((id.to_string(), exp, interval))
}

/// CIBA §13: HTTP 400 (401 for invalid_client), JSON, a valid error.
fn check_bc_error(a: &Answer, expected: &[&str]) -> R {
    ensure!(
        a.status != 200,
        "the backchannel request was ACCEPTED (expected {expected:?}): {}",
        a.brief()
    );
    let ct = a.header("content-type").unwrap_or_default();
    ensure!(
        ct.starts_with("application/json"),
        "error response content-type {ct}: {}",
        a.brief()
    );
    if let Some(u) = a.json.get("error_uri") {
        ensure!(
            u.as_str().is_some_and(|u| url::Url::parse(u).is_ok()),
            "error_uri not a URI"
        );
    }
    check_error(a, expected)
}

/// Sends a backchannel request whose claims `edit` may change; returns the
/// raw answer and what it was sent with.
async fn send(
    env: &Env,
    v: &Variant,
    c: &Client,
    edit: impl FnOnce(&mut Value),
) -> R<(Answer, String, Option<String>, Value)> {
    let sub = format!("cust-{}", random(9));
    let token = v.ping.then(|| random(24));
    let mut claims = request_claims(env, c, &sub, token.as_deref());
    edit(&mut claims);
    let token = claims["client_notification_token"]
        .as_str()
        .map(str::to_string);
    let a = bc_raw(env, c, &bc_form(env, c, c.key.sign(None, &claims))).await?;
    Ok((a, sub, token, claims))
}

/// A request that must be accepted.
async fn start_req(
    env: &Env,
    v: &Variant,
    c: &Client,
    edit: impl FnOnce(&mut Value),
) -> R<Pending> {
    let (a, sub, token, claims) = send(env, v, c, edit).await?;
    let (auth_req_id, expires_in, interval) = check_bc_ok(&a)?;
    Ok(Pending {
        sub: claims["login_hint"].as_str().unwrap_or(&sub).to_string(),
        token,
        auth_req_id,
        expires_in,
        interval,
        binding_message: claims["binding_message"].as_str().map(str::to_string),
    })
}

/// A request whose claims are edited must be refused with one of `expected`.
async fn negative(env: &Env, v: &Variant, c: &Client, edit: impl FnOnce(&mut Value)) -> R {
    let (a, ..) = send(env, v, c, edit).await?;
    check_bc_error(&a, &["invalid_request"])
}

/// Waits for the notify hook for this request and checks what the bank is told.
async fn await_notify(side: &Side, c: &Client, p: &Pending) -> R<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(n) = side.lock().notifications.get(&p.sub).cloned() {
            ensure!(
                n["client_id"] == json!(c.id),
                "notify hook client_id {}",
                n["client_id"]
            );
            ensure!(
                n["handle"].as_str().is_some_and(|h| !h.is_empty()),
                "notify hook without a handle: {n}"
            );
            ensure!(
                n["handle"] != json!(p.auth_req_id),
                "the notify hook's handle is the auth_req_id itself (the bank must not hold the TPP's credential)"
            );
            ensure!(
                n["scope"]
                    .as_array()
                    .is_some_and(|s| s.contains(&json!("openid"))),
                "notify hook scope {}",
                n["scope"]
            );
            ensure!(
                n["binding_message"].as_str() == p.binding_message.as_deref(),
                "notify hook binding_message {} ≠ the request's {:?}",
                n["binding_message"],
                p.binding_message
            );
            ensure!(
                n["client_name"] == json!(format!("Conformance {}", c.id)),
                "notify hook client_name {}",
                n["client_name"]
            );
            return Ok(n);
        }
        if let Some(pb) = side.lock().problems.first() {
            return Err(format!("hook contract broken: {pb}"));
        }
        ensure!(
            Instant::now() < deadline,
            "the bank's notify hook was not called within 15 s for {}",
            p.sub
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bank's app approves or denies: the decision API with a result token.
async fn decide(env: &Env, side: &Side, handle: &str, sub: &str, approve: bool) -> R<Answer> {
    let t = now();
    let mut claims = json!({
        "iss": side.bank_issuer, "aud": env.issuer, "iat": t, "exp": t + 120, "jti": random(16),
        "purpose": "ciba", "handle": handle, "status": if approve { "approved" } else { "denied" },
    });
    if approve {
        claims["sub"] = json!(sub);
        claims["acr"] = json!(ACR);
        claims["amr"] = json!(["hwk", "pin"]);
        claims["consent_id"] = json!(format!("consent-{}", random(9)));
        claims["accounts"] = json!(["acc-0001", "acc-0002"]);
    }
    let token = jose::jwe_dir_a256gcm(&side.shared_secret, &claims);
    let url = format!(
        "{}/bank/ciba/{}/decision",
        env.issuer,
        url::form_urlencoded::byte_serialize(handle.as_bytes()).collect::<String>()
    );
    answer(
        env.http
            .post(&url)
            .bearer_auth(&side.bank_token)
            .json(&json!({"result": token}))
            .send()
            .await,
    )
    .await
}

async fn notify_and_decide(env: &Env, side: &Side, c: &Client, p: &Pending, approve: bool) -> R {
    let n = await_notify(side, c, p).await?;
    let a = decide(
        env,
        side,
        n["handle"].as_str().unwrap_or_default(),
        &p.sub,
        approve,
    )
    .await?;
    ensure!(a.status == 204, "decision API: {}", a.brief());
    Ok(())
}

/// The CIBA token request (§10.1) for `auth_req_id`, with `c`'s authentication.
pub fn token_form(env: &Env, c: &Client, auth_req_id: &str) -> Params {
    let mut f: Params = vec![
        ("grant_type".into(), GRANT.into()),
        ("auth_req_id".into(), auth_req_id.into()),
    ];
    f.extend(c.auth_fields(&env.issuer));
    f
}

async fn poll(env: &Env, c: &Client, auth_req_id: &str) -> R<Answer> {
    env.token_raw(c, &token_form(env, c, auth_req_id), None)
        .await
}

/// A token request before the customer decided.
fn check_waiting(a: &Answer) -> R {
    check_error(a, &["authorization_pending", "slow_down"])
        .map_err(|e| format!("token request before the decision: {e}"))
}

/// Polls (honouring `interval`, +5 s per slow_down) until the answer is
/// no longer authorization_pending.
async fn poll_until_final(env: &Env, c: &Client, p: &mut Pending) -> R<Answer> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(p.interval as u64 * 1000 + 500)).await;
        let a = poll(env, c, &p.auth_req_id).await?;
        match a.error() {
            "authorization_pending" => {}
            "slow_down" => {
                return Err(format!(
                    "slow_down although the client waited the interval ({} s) since its last request",
                    p.interval
                ));
            }
            _ => return Ok(a),
        }
        ensure!(
            Instant::now() < deadline,
            "still authorization_pending after 60 s"
        );
    }
}

/// Ping mode: waits for the callback for `p` and checks it (CIBA §10.2).
async fn await_ping(side: &Side, c: &Client, p: &Pending, secs: u64) -> R<Ping> {
    let token = p.token.as_deref().ok_or("no client_notification_token")?;
    let path = format!("/cb/{}", c.id);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let found = side
            .lock()
            .pings
            .iter()
            .find(|x| x.body["auth_req_id"] == json!(p.auth_req_id))
            .cloned();
        if let Some(ping) = found {
            ensure!(
                ping.path == path,
                "ping sent to {} instead of {path}",
                ping.path
            );
            ensure!(
                ping.authorization == format!("Bearer {token}"),
                "ping without the client_notification_token as bearer: {:?}",
                ping.authorization
            );
            ensure!(
                ping.body.as_object().is_some_and(|o| o.len() == 1),
                "ping body has more than auth_req_id: {}",
                ping.body
            );
            return Ok(ping);
        }
        ensure!(
            Instant::now() < deadline,
            "no ping at the client notification endpoint within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pings_for(side: &Side, token: &str) -> Vec<Ping> {
    side.lock()
        .pings
        .iter()
        .filter(|x| x.authorization == format!("Bearer {token}"))
        .cloned()
        .collect()
}

/// After the decision: poll mode polls; ping mode waits for the ping and
/// then makes one token request.
async fn final_answer(
    env: &Env,
    side: &Side,
    v: &Variant,
    c: &Client,
    p: &mut Pending,
) -> R<Answer> {
    if v.ping {
        await_ping(side, c, p, 20).await?;
        poll(env, c, &p.auth_req_id).await
    } else {
        poll_until_final(env, c, p).await
    }
}

/// §5.5 + §5.6 with the CIBA specifics; returns the access token and the
/// id_token claims.
fn check_ciba_token(
    env: &Env,
    v: &Variant,
    c: &Client,
    a: &Answer,
    p: &Pending,
) -> R<(String, Value)> {
    let at = env.check_token(v, c, a, None, true)?;
    let idt = a.json["id_token"].as_str().unwrap_or_default();
    let alg = jsonwebtoken::decode_header(idt)
        .map_err(|e| e.to_string())?
        .alg;
    ensure!(
        matches!(alg, Algorithm::PS256 | Algorithm::ES256),
        "id_token alg {alg:?} (FAPI-CIBA: PS256 or ES256)"
    );
    let claims = jose::verify_server_jws(idt, &env.jwks)?;
    ensure!(
        claims[AUTH_REQ_ID_CLAIM] == json!(p.auth_req_id),
        "id_token {AUTH_REQ_ID_CLAIM} is {} (expected the auth_req_id)",
        claims[AUTH_REQ_ID_CLAIM]
    );
    for k in ["c_hash", "s_hash"] {
        ensure!(claims.get(k).is_none(), "CIBA id_token carries {k}");
    }
    if let (Some(h), Some(rt)) = (claims.get("rt_hash"), a.json["refresh_token"].as_str()) {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, rt.as_bytes());
        ensure!(
            h == &json!(jose::b64(&d.as_ref()[..16])),
            "rt_hash does not match the refresh token"
        );
    }
    ensure!(
        claims["sub"] == json!(p.sub),
        "id_token sub {} (the bank approved as {})",
        claims["sub"],
        p.sub
    );
    ensure!(
        claims["acr"] == json!(ACR),
        "id_token acr {} (the bank reported {ACR})",
        claims["acr"]
    );
    Ok((at, claims))
}

struct Done {
    token: Answer,
    access_token: String,
}

/// The whole journey: request, wait state, the bank approves, tokens,
/// resource call.
async fn journey(
    env: &Env,
    side: &Side,
    v: &Variant,
    c: &Client,
    edit: impl FnOnce(&mut Value),
) -> R<Done> {
    let mut p = start_req(env, v, c, edit).await?;
    await_notify(side, c, &p).await?;
    check_waiting(&poll(env, c, &p.auth_req_id).await?)?;
    // The wait state: the customer takes a moment on the phone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    notify_and_decide(env, side, c, &p, true).await?;
    let a = final_answer(env, side, v, c, &mut p).await?;
    let (at, _) = check_ciba_token(env, v, c, &a, &p)?;
    env.check_resource(v, c, &at).await?;
    Ok(Done {
        token: a,
        access_token: at,
    })
}

/// An approved request, tokens not yet fetched.
pub async fn approved(env: &Env, side: &Side, v: &Variant, c: &Client) -> R<Pending> {
    let p = start_req(env, v, c, |_| {}).await?;
    notify_and_decide(env, side, c, &p, true).await?;
    if v.ping {
        await_ping(side, c, &p, 20).await?;
    } else {
        tokio::time::sleep(Duration::from_millis(p.interval as u64 * 1000 + 500)).await;
    }
    Ok(p)
}

/// §5.1 (CIBA) + §5.2.
fn discovery(env: &Env, v: &Variant) -> R {
    let d = &env.discovery;
    ensure!(
        d["issuer"] == json!(env.issuer),
        "issuer {} ≠ {}",
        d["issuer"],
        env.issuer
    );
    let has = |k: &str, val: &str| d[k].as_array().is_some_and(|a| a.iter().any(|x| x == val));
    let bc = d["backchannel_authentication_endpoint"]
        .as_str()
        .ok_or("no backchannel_authentication_endpoint")?;
    ensure!(
        bc.starts_with("https://"),
        "backchannel_authentication_endpoint not https"
    );
    ensure!(
        d["mtls_endpoint_aliases"]["backchannel_authentication_endpoint"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "mtls_endpoint_aliases lacks backchannel_authentication_endpoint"
    );
    let mode = if v.ping { "ping" } else { "poll" };
    ensure!(
        has("backchannel_token_delivery_modes_supported", mode),
        "backchannel_token_delivery_modes_supported lacks {mode}: {}",
        d["backchannel_token_delivery_modes_supported"]
    );
    ensure!(
        has("grant_types_supported", GRANT),
        "grant_types_supported lacks {GRANT}"
    );
    let algs = d["backchannel_authentication_request_signing_alg_values_supported"]
        .as_array()
        .ok_or("backchannel_authentication_request_signing_alg_values_supported missing")?;
    ensure!(
        !algs.is_empty() && algs.iter().all(|a| a == "PS256" || a == "ES256"),
        "backchannel_authentication_request_signing_alg_values_supported {algs:?} (FAPI-CIBA: PS256, ES256)"
    );
    if let Some(u) = d.get("backchannel_user_code_parameter_supported") {
        ensure!(
            u.is_boolean(),
            "backchannel_user_code_parameter_supported not a boolean"
        );
    }
    let method = if v.mtls {
        "tls_client_auth"
    } else {
        "private_key_jwt"
    };
    ensure!(
        has("token_endpoint_auth_methods_supported", method),
        "token_endpoint_auth_methods_supported lacks {method}"
    );
    if !v.mtls {
        ensure!(
            has("token_endpoint_auth_signing_alg_values_supported", "PS256")
                || has("token_endpoint_auth_signing_alg_values_supported", "ES256"),
            "token_endpoint_auth_signing_alg_values_supported lacks PS256/ES256"
        );
    }
    ensure!(
        has("id_token_signing_alg_values_supported", "PS256")
            || has("id_token_signing_alg_values_supported", "ES256"),
        "id_token_signing_alg_values_supported lacks PS256/ES256"
    );
    ensure!(
        d["tls_client_certificate_bound_access_tokens"] == json!(true),
        "tls_client_certificate_bound_access_tokens must be true"
    );
    ensure!(
        has("scopes_supported", "openid"),
        "scopes_supported lacks openid"
    );
    ensure!(
        d["token_endpoint"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "token_endpoint not https"
    );
    crate::modules::check_jwks(env)
}

/// Runs CIBA module `name` in variant `v`.
pub async fn run(r: &Running, v: &Variant, name: &str) -> R {
    let env = &r.env;
    let side = r.ciba.as_deref().ok_or("no CIBA side")?;
    let (c1, c2) = clients(env, side, v);
    match name {
        "discovery-end-point-verification" => discovery(env, v),
        "fapi-ciba-id1" => {
            let _f1 = journey(env, side, v, c1, |_| {}).await?;
            let f2 = journey(env, side, v, c2, |_| {}).await?;
            // client1's certificate with client2's token must be refused.
            let a = env
                .resource_raw(c1, "Bearer", &f2.access_token, None, &[])
                .await?;
            ensure!(
                (400..500).contains(&a.status),
                "client2's token with client1's certificate was accepted: {}",
                a.brief()
            );
            for ep in [
                "backchannel_authentication_endpoint",
                "token_endpoint",
                "userinfo_endpoint",
            ] {
                check_tls(&env.ep(c1, ep), true).await?;
            }
            Ok(())
        }
        "user-rejects-authentication" => {
            let mut p = start_req(env, v, c1, |_| {}).await?;
            notify_and_decide(env, side, c1, &p, false).await?;
            let a = final_answer(env, side, v, c1, &mut p).await?;
            check_error(&a, &["access_denied"])
        }
        "multiple-call-to-token-endpoint" => {
            let mut p = start_req(env, v, c1, |_| {}).await?;
            await_notify(side, c1, &p).await?;
            let mut slowed = false;
            for _ in 0..2 {
                let a = poll(env, c1, &p.auth_req_id).await?;
                check_waiting(&a)?;
                if a.error() == "slow_down" {
                    slowed = true;
                    p.interval += 5;
                }
            }
            // CIBA §7.3 / the issue: polling faster than `interval` is slow_down.
            ensure!(
                slowed || v.ping,
                "two token requests in the same second, both authorization_pending (expected slow_down)"
            );
            notify_and_decide(env, side, c1, &p, true).await?;
            let a = final_answer(env, side, v, c1, &mut p).await?;
            check_ciba_token(env, v, c1, &a, &p).map(drop)
        }
        "auth-req-id-expired" => {
            let mut p = start_req(env, v, c1, |c| c["requested_expiry"] = json!(10)).await?;
            ensure!(
                p.expires_in <= 10,
                "requested_expiry=10 but expires_in {}",
                p.expires_in
            );
            await_notify(side, c1, &p).await?;
            tokio::time::sleep(Duration::from_secs(p.expires_in as u64 + 2)).await;
            p.interval = 0;
            let a = poll(env, c1, &p.auth_req_id).await?;
            check_error(&a, &["expired_token"])?;
            // The bank's late approval must not revive it.
            let n = await_notify(side, c1, &p).await?;
            let d = decide(
                env,
                side,
                n["handle"].as_str().unwrap_or_default(),
                &p.sub,
                true,
            )
            .await?;
            ensure!(
                d.status != 204,
                "the decision API accepted an approval for an expired request"
            );
            Ok(())
        }
        "ensure-authorization-request-with-binding-message-succeeds" => {
            journey(env, side, v, c1, |c| c["binding_message"] = json!("1234"))
                .await
                .map(drop)
        }
        "ensure-other-scope-order-succeeds" => {
            let reversed: String = SCOPE.split(' ').rev().collect::<Vec<_>>().join(" ");
            journey(env, side, v, c1, |c| c["scope"] = json!(reversed))
                .await
                .map(drop)
        }
        "ensure-requested-expiry-as-string-succeeds" => {
            let p = start_req(env, v, c1, |c| c["requested_expiry"] = json!("30")).await?;
            ensure!(
                p.expires_in <= 30,
                "requested_expiry=\"30\" but expires_in {}",
                p.expires_in
            );
            let mut p = p;
            notify_and_decide(env, side, c1, &p, true).await?;
            let a = final_answer(env, side, v, c1, &mut p).await?;
            check_ciba_token(env, v, c1, &a, &p).map(drop)
        }
        "ensure-authorization-request-with-potentially-bad-binding-message" => {
            let msg = "Transaktion bestätigen: 1.234,56 € an Zoë Ørsted — 確認してください ✓ — pour la société Ångström & Fils, référence 0815-4711-2342 / ÆØÅ ĳ ſ ŋ";
            let (a, sub, token, claims) =
                send(env, v, c1, |c| c["binding_message"] = json!(msg)).await?;
            if a.status != 200 {
                return check_bc_error(&a, &["invalid_binding_message"]);
            }
            let (auth_req_id, expires_in, interval) = check_bc_ok(&a)?;
            let mut p = Pending {
                sub,
                token,
                auth_req_id,
                expires_in,
                interval,
                binding_message: claims["binding_message"].as_str().map(str::to_string),
            };
            // Accepted: it must reach the customer's device unchanged.
            notify_and_decide(env, side, c1, &p, true).await?;
            let a = final_answer(env, side, v, c1, &mut p).await?;
            check_ciba_token(env, v, c1, &a, &p).map(drop)
        }
        "ensure-request-object-missing-aud-fails" => {
            negative(env, v, c1, |c| {
                drop(c.as_object_mut().map(|o| o.remove("aud")))
            })
            .await
        }
        "ensure-request-object-bad-aud-fails" => {
            negative(env, v, c1, |c| {
                c["aud"] = json!("https://not-the-issuer.example/")
            })
            .await
        }
        "ensure-request-object-missing-iss-fails" => {
            negative(env, v, c1, |c| {
                drop(c.as_object_mut().map(|o| o.remove("iss")))
            })
            .await
        }
        "ensure-request-object-bad-iss-fails" => {
            negative(env, v, c1, |c| c["iss"] = json!("not-this-client")).await
        }
        "ensure-request-object-missing-exp-fails" => {
            negative(env, v, c1, |c| {
                drop(c.as_object_mut().map(|o| o.remove("exp")))
            })
            .await
        }
        "ensure-request-object-expired-exp-fails" => {
            negative(env, v, c1, |c| {
                c["iat"] = json!(now() - 600);
                c["nbf"] = json!(now() - 600);
                c["exp"] = json!(now() - 300);
            })
            .await
        }
        "ensure-request-object-exp-is-70-minutes-in-future-fails" => {
            negative(env, v, c1, |c| c["exp"] = json!(now() + 70 * 60)).await
        }
        "ensure-request-object-missing-iat-fails" => {
            negative(env, v, c1, |c| {
                drop(c.as_object_mut().map(|o| o.remove("iat")))
            })
            .await
        }
        "ensure-request-object-missing-nbf-fails" => {
            negative(env, v, c1, |c| {
                drop(c.as_object_mut().map(|o| o.remove("nbf")))
            })
            .await
        }
        "ensure-request-object-nbf-is-10-minutes-in-future-fails" => {
            negative(env, v, c1, |c| {
                c["nbf"] = json!(now() + 600);
                c["exp"] = json!(now() + 900);
            })
            .await
        }
        "ensure-request-object-nbf-is-70-minutes-in-past-fails" => {
            negative(env, v, c1, |c| {
                c["nbf"] = json!(now() - 70 * 60);
                c["iat"] = json!(now() - 70 * 60);
            })
            .await
        }
        "ensure-request-object-missing-jti-fails" => {
            negative(env, v, c1, |c| {
                drop(c.as_object_mut().map(|o| o.remove("jti")))
            })
            .await
        }
        "ensure-request-object-signature-algorithm-is-none-fails" => {
            let claims = request_claims(env, c1, &format!("cust-{}", random(9)), Some(&random(24)));
            let jwt = format!(
                "{}.{}.",
                jose::b64(br#"{"alg":"none"}"#),
                jose::b64(claims.to_string().as_bytes())
            );
            check_bc_error(
                &bc_raw(env, c1, &bc_form(env, c1, jwt)).await?,
                &["invalid_request"],
            )
        }
        "ensure-request-object-signature-algorithm-is-bad-fails" => {
            let claims = request_claims(
                env,
                c1,
                &format!("cust-{}", random(9)),
                v.ping.then(|| random(24)).as_deref(),
            );
            let jwt = c1.key.sign(None, &claims);
            let (head, sig) = jwt.rsplit_once('.').ok_or("JWS")?;
            let mut sig = jose::b64_decode(sig).ok_or("signature")?;
            sig[5] ^= 0x5a;
            let bad = format!("{head}.{}", jose::b64(&sig));
            check_bc_error(
                &bc_raw(env, c1, &bc_form(env, c1, bad)).await?,
                &["invalid_request"],
            )
        }
        "ensure-request-object-signature-algorithm-is-RS256-fails" => {
            // client2's RSA key (registered for PS256) with RS256.
            let claims = request_claims(
                env,
                c2,
                &format!("cust-{}", random(9)),
                v.ping.then(|| random(24)).as_deref(),
            );
            let jwt = c2.key.with_alg(Algorithm::RS256).sign(None, &claims);
            check_bc_error(
                &bc_raw(env, c2, &bc_form(env, c2, jwt)).await?,
                &["invalid_request"],
            )
        }
        "ensure-request-object-signed-by-other-client-fails" => {
            let claims = request_claims(
                env,
                c1,
                &format!("cust-{}", random(9)),
                v.ping.then(|| random(24)).as_deref(),
            );
            let jwt = c2.key.sign(None, &claims);
            check_bc_error(
                &bc_raw(env, c1, &bc_form(env, c1, jwt)).await?,
                &["invalid_request"],
            )
        }
        "ensure-authorization-request-with-multiple-hints-fails" => {
            negative(env, v, c1, |c| {
                c["login_hint_token"] = json!("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
            })
            .await
        }
        "ensure-wrong-auth-req-id-in-token-endpoint-request" => {
            let mut p = approved(env, side, v, c1).await?;
            let a = poll(env, c2, &p.auth_req_id).await?;
            check_error(&a, &["invalid_grant"])
                .map_err(|e| format!("client2 redeeming client1's auth_req_id: {e}"))?;
            // Nothing changed for client1.
            p.interval = 0;
            let a = poll(env, c1, &p.auth_req_id).await?;
            check_ciba_token(env, v, c1, &a, &p).map(drop)
        }
        "ensure-different-client-id-and-issuer-in-backchannel-authorization-request" => {
            // client1's certificate and request object, client2's client_id.
            let claims = request_claims(
                env,
                c1,
                &format!("cust-{}", random(9)),
                v.ping.then(|| random(24)).as_deref(),
            );
            let form: Params = vec![
                ("request".into(), c1.key.sign(None, &claims)),
                ("client_id".into(), c2.id.clone()),
            ];
            check_bc_error(&bc_raw(env, c1, &form).await?, &["invalid_client"])
        }
        "ensure-wrong-client-id-in-backchannel-authorization-request" => {
            let claims = request_claims(
                env,
                c1,
                &format!("cust-{}", random(9)),
                v.ping.then(|| random(24)).as_deref(),
            );
            let form: Params = vec![
                ("request".into(), c1.key.sign(None, &claims)),
                ("client_id".into(), format!("unknown-{}", random(6))),
            ];
            check_bc_error(
                &bc_raw(env, c1, &form).await?,
                &["access_denied", "invalid_request", "invalid_client"],
            )
        }
        "ensure-wrong-client-id-in-token-endpoint-request" => {
            let p = approved(env, side, v, c1).await?;
            let form: Params = vec![
                ("grant_type".into(), GRANT.into()),
                ("auth_req_id".into(), p.auth_req_id.clone()),
                ("client_id".into(), c2.id.clone()),
            ];
            check_error(&env.token_raw(c1, &form, None).await?, &["invalid_client"])
        }
        "ensure-without-client-assertion-in-token-endpoint-request" => {
            let p = approved(env, side, v, c1).await?;
            let form: Params = vec![
                ("grant_type".into(), GRANT.into()),
                ("auth_req_id".into(), p.auth_req_id.clone()),
                ("client_id".into(), c1.id.clone()),
            ];
            check_error(
                &env.token_raw(c1, &form, None).await?,
                &["invalid_client", "invalid_request"],
            )
        }
        "ensure-without-client-assertion-in-backchannel-authorization-request" => {
            let claims = request_claims(
                env,
                c1,
                &format!("cust-{}", random(9)),
                v.ping.then(|| random(24)).as_deref(),
            );
            let form: Params = vec![
                ("request".into(), c1.key.sign(None, &claims)),
                ("client_id".into(), c1.id.clone()),
            ];
            check_bc_error(
                &bc_raw(env, c1, &form).await?,
                &["invalid_client", "invalid_request"],
            )
        }
        "ensure-client-assertion-signature-algorithm-in-backchannel-authorization-request-is-RS256-fails" =>
        {
            let claims = request_claims(
                env,
                c2,
                &format!("cust-{}", random(9)),
                v.ping.then(|| random(24)).as_deref(),
            );
            let mut form = bc_form(env, c2, c2.key.sign(None, &claims));
            crate::flow::set(
                &mut form,
                "client_assertion",
                Some(&assertion(
                    c2,
                    &c2.key.with_alg(Algorithm::RS256),
                    &env.issuer,
                )),
            );
            check_bc_error(&bc_raw(env, c2, &form).await?, &["invalid_client"])
        }
        "ensure-client-assertion-signature-algorithm-in-token-endpoint-request-is-RS256-fails" => {
            let p = approved(env, side, v, c2).await?;
            let mut form = token_form(env, c2, &p.auth_req_id);
            crate::flow::set(
                &mut form,
                "client_assertion",
                Some(&assertion(
                    c2,
                    &c2.key.with_alg(Algorithm::RS256),
                    &env.issuer,
                )),
            );
            check_error(&env.token_raw(c2, &form, None).await?, &["invalid_client"])
        }
        "ensure-client-assertion-with-iss-aud-to-token-endpoint-succeeds" => {
            let p = approved(env, side, v, c1).await?;
            let mut form = token_form(env, c1, &p.auth_req_id);
            crate::flow::set(&mut form, "client_assertion_type", Some(ASSERTION_TYPE));
            crate::flow::set(
                &mut form,
                "client_assertion",
                Some(&assertion(c1, &c1.key, &env.issuer)),
            );
            let a = env.token_raw(c1, &form, None).await?;
            check_ciba_token(env, v, c1, &a, &p).map(drop)
        }
        "ping-backchannel-notification-endpoint-response-has-body"
        | "ping-backchannel-notification-endpoint-response-401"
        | "ping-backchannel-notification-endpoint-response-403" => {
            let status = match name.rsplit('-').next() {
                Some("401") => 401,
                Some("403") => 403,
                _ => 200,
            };
            ping_edge(env, side, v, c1, status, None).await
        }
        "ping-with-mtls-ciba-notification-endpoint-response-401-and-require-server-does-not-retry" => {
            ping_edge(env, side, v, c1, 401, None).await
        }
        "ping-backchannel-notification-endpoint-return-redirect-request" => {
            let target = format!("{}/redirected/{}", side.ping_base, random(9));
            ping_edge(env, side, v, c1, 301, Some(target)).await
        }
        "ensure-unsigned-backchannel-authorization-request-fails" => {
            let sub = format!("cust-{}", random(9));
            let mut form: Params = vec![
                ("scope".into(), SCOPE.into()),
                ("login_hint".into(), sub),
                ("binding_message".into(), "CONF 1".into()),
            ];
            if v.ping {
                form.push(("client_notification_token".into(), random(24)));
            }
            form.extend(c1.auth_fields(&env.issuer));
            check_bc_error(&bc_raw(env, c1, &form).await?, &["invalid_request"])
        }
        "refresh-token" => refresh(env, side, v, c1, c2).await,
        "ensure-mtls-holder-of-key-required" => {
            for ep in ["backchannel_authentication_endpoint", "token_endpoint"] {
                check_tls(&env.ep(c1, ep), true).await?;
            }
            let p = approved(env, side, v, c1).await?;
            // The same request without the certificate.
            let res = env
                .http
                .post(env.ep(c1, "token_endpoint"))
                .form(&token_form(env, c1, &p.auth_req_id))
                .send()
                .await;
            if let Ok(res) = res {
                let a = answer(Ok(res)).await?;
                check_error(&a, &["invalid_client", "invalid_request", "invalid_grant"])
                    .map_err(|e| format!("token request without the client certificate: {e}"))?;
            }
            // The request is still redeemable with the certificate.
            let a = poll(env, c1, &p.auth_req_id).await?;
            check_ciba_token(env, v, c1, &a, &p).map(drop)
        }
        other => Err(format!("no test for module {other}")),
    }
}

/// The notification endpoint answers `status` (200 with a body, 401, 403,
/// or 301 to `location`): the client still gets its tokens; no retry
/// after 401; a 301 is not followed.
async fn ping_edge(
    env: &Env,
    side: &Side,
    v: &Variant,
    c: &Client,
    status: u16,
    location: Option<String>,
) -> R {
    let token = random(24);
    side.lock().behaviours.insert(
        token.clone(),
        Behaviour {
            status,
            body: if status == 200 {
                r#"{"received":true,"note":"a body the OP must ignore"}"#.into()
            } else if status == 301 {
                String::new()
            } else {
                r#"{"error":"unauthorized"}"#.into()
            },
            location: location.clone(),
        },
    );
    let tok = token.clone();
    let mut p = start_req(env, v, c, move |cl| {
        cl["client_notification_token"] = json!(tok)
    })
    .await?;
    notify_and_decide(env, side, c, &p, true).await?;
    await_ping(side, c, &p, 20).await?;
    if status == 401 || status == 301 {
        // Longer than a first retry with backoff would take.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let n = pings_for(side, &token)
            .iter()
            .filter(|x| x.path.starts_with("/cb/"))
            .count();
        ensure!(
            n == 1,
            "the notification endpoint answered {status}, and the OP sent the ping {n} times"
        );
    }
    if let Some(l) = &location {
        let path = l.trim_start_matches(&side.ping_base);
        let followed = side.lock().pings.iter().any(|x| x.path == path);
        ensure!(!followed, "the OP followed the 301 to {l}");
    }
    let a = poll(env, c, &p.auth_req_id).await?;
    p.interval = 0;
    check_ciba_token(env, v, c, &a, &p).map(drop)
}

/// refresh-token: works, bound to the client, needs client authentication
/// (private_key_jwt) and the certificate; token response without caching.
async fn refresh(env: &Env, side: &Side, v: &Variant, c1: &Client, c2: &Client) -> R {
    let f1 = journey(env, side, v, c1, |_| {}).await?;
    let f2 = journey(env, side, v, c2, |_| {}).await?;
    let rt = |f: &Done| {
        f.token.json["refresh_token"]
            .as_str()
            .map(str::to_string)
            .ok_or("no refresh_token (offline_access was requested)".to_string())
    };
    let (rt1, rt2) = (rt(&f1)?, rt(&f2)?);
    ensure!(
        env.discovery["grant_types_supported"]
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
            f.extend(c.auth_fields(&env.issuer));
        } else {
            f.push(("client_id".into(), c.id.clone()));
        }
        f
    };
    let a = env.token_raw(c1, &form(c1, &rt1, true), None).await?;
    let at = env.check_token(v, c1, &a, None, a.json.get("id_token").is_some())?;
    if let (Some(old), Some(new)) = (
        jose::jwt_part(f1.token.json["id_token"].as_str().unwrap_or_default(), 1),
        a.json["id_token"]
            .as_str()
            .and_then(|t| jose::jwt_part(t, 1)),
    ) {
        ensure!(
            old["sub"] == new["sub"] && old["iss"] == new["iss"],
            "refreshed id_token sub/iss differ"
        );
    }
    env.check_resource(v, c1, &at).await?;
    let b = env.token_raw(c1, &form(c1, &rt2, true), None).await?;
    check_error(&b, &["invalid_grant", "invalid_client", "invalid_request"])
        .map_err(|e| format!("client1 with client2's refresh token: {e}"))?;
    let rt1 = a.json["refresh_token"]
        .as_str()
        .map(str::to_string)
        .unwrap_or(rt1);
    if !v.mtls {
        let b = env.token_raw(c1, &form(c1, &rt1, false), None).await?;
        check_error(&b, &["invalid_client", "invalid_request", "invalid_grant"])
            .map_err(|e| format!("refresh without client authentication: {e}"))?;
    }
    // Without the certificate (no proof of possession).
    if let Ok(res) = env
        .http
        .post(env.ep(c1, "token_endpoint"))
        .form(&form(c1, &rt1, true))
        .send()
        .await
    {
        let b = answer(Ok(res)).await?;
        check_error(&b, &["invalid_client", "invalid_request", "invalid_grant"])
            .map_err(|e| format!("refresh without the client certificate: {e}"))?;
    }
    // mTLS: another client's certificate does not authenticate client1. (With
    // private_key_jwt the assertion authenticates the client, and RFC 8705
    // §4 lets a confidential client present a new certificate at refresh.)
    if v.mtls {
        let b = env.token_raw(c2, &form(c1, &rt1, true), None).await?;
        check_error(&b, &["invalid_client", "invalid_request", "invalid_grant"])
            .map_err(|e| format!("refresh with another client's certificate: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_table_matches_the_oidf_plan() {
        let names: std::collections::HashSet<_> = MODULES.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), MODULES.len(), "duplicate module");
        // oidf-modules.md §3: 66 modules, 21 ConnectID-only (one row here).
        assert_eq!(MODULES.len(), 66 - 21 + 1);
    }
}

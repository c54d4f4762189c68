//! `strongroom try`: a dev client walked through the built-in flow against a
//! running server, so a newcomer sees a token within a minute of `make run`.
//!
//! Two halves. The server's ([`ensure_dev_client`]): in dev mode, on every
//! start, the dev client's key, its certificate from the dev CA and a
//! certificate for its callback listener are made (once) in
//! `data_dir/dev-client/`, and the client is declared like a `[[clients]]`
//! entry; outside dev mode it is not declared, so the start-up sync of
//! static clients removes it. The command's ([`run`]): PAR over the mTLS
//! listener (RFC 9126), the authorize URL for a browser, a local HTTPS
//! callback listener, then the code exchange, the id_token checked against
//! the JWKS and the access token introspected.
//!
//! The client is what the default profile asks of a FAPI 2.0 client:
//! `tls_client_auth` (RFC 8705 §2.1) with certificate-bound access tokens
//! (RFC 8705 §3), PAR and PKCE S256. It does not sign request objects, so
//! the `fapi2-message-signing` profile is refused with a message.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::config::{Config, StaticClient};
use crate::devcerts::{self, DnType, KeyAlg};

/// The dev client's `client_id`.
pub const CLIENT_ID: &str = "strongroom-dev";
/// The callback listener's default port.
pub const DEFAULT_PORT: u16 = 8445;
/// The scope asked for by default: what the built-in login releases for the
/// demo user.
pub const DEFAULT_SCOPE: &str = "openid profile";
/// The default wait for the browser's redirect.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

const DIR: &str = "dev-client";
const SUBJECT_O: &str = "Strongroom Dev";
/// RFC 4514 order (most significant RDN last), as registered.
const SUBJECT_DN: &str = "CN=strongroom-dev,O=Strongroom Dev";

/// The dev client's files in the data dir.
#[derive(Debug, Clone)]
pub struct DevClientFiles {
    pub dir: PathBuf,
    /// The client certificate (leaf, then the dev CA) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The callback listener's certificate (leaf, then the dev CA) and key.
    pub callback_cert: PathBuf,
    pub callback_key: PathBuf,
    /// The registered redirect URI, one line.
    pub redirect_uri: PathBuf,
    /// The dev CA: the only root the `try` client trusts.
    pub ca: PathBuf,
}

impl DevClientFiles {
    pub fn in_data_dir(data_dir: &Path) -> DevClientFiles {
        let dir = data_dir.join(DIR);
        DevClientFiles {
            cert: dir.join("client.pem"),
            key: dir.join("client-key.pem"),
            callback_cert: dir.join("callback.pem"),
            callback_key: dir.join("callback-key.pem"),
            redirect_uri: dir.join("redirect_uri"),
            ca: data_dir.join("dev-ca.pem"),
            dir,
        }
    }
}

/// The redirect URI of the callback listener on `port`.
///
/// Why a fixed port registered at first start rather than any port: FAPI
/// clients must use https redirect URIs (FAPI 2.0 §5.3.2.2-7) and
/// Strongroom compares them as exact strings (RFC 9700 §4.1.3), so the
/// port-agnostic loopback matching of RFC 8252 §7.3 (for `http` loopback
/// URIs of native apps) is neither available nor wanted here. `try --port N`
/// therefore changes the registration file, and the server picks it up at
/// its next start: a running server on SQLite keeps registrations in memory
/// as the database's only writer (token-store's client cache), so writing
/// the store from this process would not reach it.
pub fn redirect_uri_for(port: u16) -> String {
    format!("https://localhost:{port}/callback")
}

/// The dev client's registration.
pub fn dev_client_metadata(redirect_uri: &str) -> StaticClient {
    serde_json::from_value(json!({
        "client_id": CLIENT_ID,
        "client_name": "Strongroom dev client (strongroom try)",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid profile email offline_access accounts",
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": SUBJECT_DN,
        "tls_client_certificate_bound_access_tokens": true,
    }))
    .expect("the dev client's metadata is well-formed")
}

/// Server side, dev mode: makes the dev client's files where missing (or
/// issued by another CA than the current dev CA) and returns the client to
/// declare. Needs the dev CA in `data_dir` (`devcerts::ensure_dev_certs`).
pub fn ensure_dev_client(data_dir: &Path) -> Result<StaticClient, String> {
    let files = DevClientFiles::in_data_dir(data_dir);
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let ca = read(&files.ca)?;
    let ca_key = read(&data_dir.join("dev-ca-key.pem"))?;
    std::fs::create_dir_all(&files.dir).map_err(|e| format!("{}: {e}", files.dir.display()))?;
    let current = |cert: &Path, key: &Path| {
        std::fs::read_to_string(cert).is_ok_and(|c| c.contains(ca.trim())) && key.exists()
    };
    let write = |path: &Path, text: &str, private: bool| {
        devcerts::write_file(path, text.as_bytes(), private).map_err(|e| e.to_string())
    };
    if !current(&files.cert, &files.key) {
        let (leaf, key) = devcerts::issue_client_cert(
            &ca,
            &ca_key,
            &[
                (DnType::OrganizationName, SUBJECT_O),
                (DnType::CommonName, CLIENT_ID),
            ],
            &[],
            KeyAlg::EcdsaP256,
        )
        .map_err(|e| e.to_string())?;
        write(&files.key, &key, true)?;
        write(
            &files.cert,
            &format!("{}\n{}\n", leaf.trim_end(), ca.trim_end()),
            false,
        )?;
    }
    if !current(&files.callback_cert, &files.callback_key) {
        let (chain, key) = devcerts::issue_localhost_cert(&ca, &ca_key, KeyAlg::EcdsaP256)
            .map_err(|e| e.to_string())?;
        write(&files.callback_key, &key, true)?;
        write(&files.callback_cert, &chain, false)?;
    }
    let redirect_uri = match std::fs::read_to_string(&files.redirect_uri) {
        Ok(uri) => uri.trim().to_string(),
        Err(_) => {
            let uri = redirect_uri_for(DEFAULT_PORT);
            write(&files.redirect_uri, &format!("{uri}\n"), false)?;
            uri
        }
    };
    let client = dev_client_metadata(&redirect_uri);
    client.metadata.validate().map_err(|e| {
        format!(
            "{}: {}",
            files.redirect_uri.display(),
            e.safe_description().unwrap_or_default()
        )
    })?;
    Ok(client)
}

/// What `strongroom try` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The callback listener's port: `https://localhost:<port>/callback`.
    pub port: u16,
    /// Open the authorize URL with `xdg-open`.
    pub open: bool,
    /// How long to wait for the browser's redirect.
    pub timeout: Duration,
    /// `prompt` for the PAR request (OIDC Core §3.1.2.1), e.g. `login`.
    pub prompt: Option<String>,
    pub scope: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: DEFAULT_PORT,
            open: true,
            timeout: DEFAULT_TIMEOUT,
            prompt: None,
            scope: DEFAULT_SCOPE.into(),
        }
    }
}

/// Why `try` did not end with a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryError {
    /// Configuration or usage (exit 2).
    Usage(String),
    /// The authorization server answered with an OAuth error (exit 1).
    Refused {
        error: String,
        error_description: Option<String>,
    },
    /// Anything else went wrong on the way (exit 1).
    Failed(String),
}

impl TryError {
    /// The process exit code for this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            TryError::Usage(_) => 2,
            TryError::Refused { .. } | TryError::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for TryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryError::Usage(m) | TryError::Failed(m) => f.write_str(m),
            TryError::Refused {
                error,
                error_description,
            } => {
                write!(f, "error: {error}")?;
                if let Some(d) = error_description {
                    write!(f, "\nerror_description: {d}")?;
                }
                Ok(())
            }
        }
    }
}

fn failed(what: &str) -> impl Fn(reqwest::Error) -> TryError + '_ {
    move |e| TryError::Failed(format!("{what}: {e}"))
}

/// What the flow ended with.
#[derive(Debug, Clone)]
pub struct Summary {
    pub token_type: String,
    pub expires_in: Option<i64>,
    pub scope: Option<String>,
    /// The id_token's claims, its signature checked against the JWKS.
    pub id_token_claims: Value,
    /// Introspection's `active` for the access token (RFC 7662 §2.2).
    pub active: bool,
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: Option<String>,
}

impl Summary {
    /// The lines printed; tokens only when `show_tokens`.
    pub fn render(&self, show_tokens: bool) -> String {
        let c = &self.id_token_claims;
        let claim = |k: &str| match &c[k] {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        let mut out = format!(
            "token_type: {}\nexpires_in: {}\nscope: {}\nid_token claims:\n  sub: {}\n  iss: {}\n  aud: {}\n  acr: {}\naccess token introspection: active = {}\n",
            self.token_type,
            self.expires_in.map_or("-".into(), |e| e.to_string()),
            self.scope.as_deref().unwrap_or("-"),
            claim("sub"),
            claim("iss"),
            claim("aud"),
            claim("acr"),
            self.active
        );
        if show_tokens {
            out.push_str(&format!("access_token: {}\n", self.access_token));
            out.push_str(&format!("id_token: {}\n", self.id_token));
            if let Some(r) = &self.refresh_token {
                out.push_str(&format!("refresh_token: {r}\n"));
            }
        } else {
            out.push_str("(tokens not shown; --show-tokens prints them)\n");
        }
        out
    }
}

/// Prints the authorize URL (exactly one line on stdout, flushed) and, when
/// `open`, hands it to `xdg-open` without waiting for it.
pub fn announce(url: &str, open: bool) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "Open this URL in your browser: {url}");
    let _ = stdout.flush();
    if open {
        let spawned = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Ok(mut child) = spawned {
            std::thread::spawn(move || child.wait());
        }
    }
}

fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).expect("system randomness");
    URL_SAFE_NO_PAD.encode(b)
}

/// The dev client's HTTPS client: the dev CA as its only root, presenting
/// its certificate, no redirects followed.
fn http_client(files: &DevClientFiles) -> Result<reqwest::Client, TryError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let usage = |p: &Path| {
        let p = p.display().to_string();
        move |e: rustls_pki_types::pem::Error| TryError::Usage(format!("{p}: {e}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&files.ca).map_err(usage(&files.ca))? {
        roots
            .add(c.map_err(usage(&files.ca))?)
            .map_err(|e| TryError::Usage(format!("{}: {e}", files.ca.display())))?;
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(usage(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage(&files.cert))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(usage(&files.key))?;
    let provider = Arc::new(crate::tls::crypto_provider(crate::tls::TlsProfile::Fapi2));
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TryError::Failed(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TryError::Usage(format!("{}: {e}", files.key.display())))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(failed("HTTP client"))
}

async fn json_of(res: reqwest::Response, what: &str, want: u16) -> Result<Value, TryError> {
    let status = res.status().as_u16();
    let body = res.text().await.map_err(failed(what))?;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status == want {
        return if json.is_object() {
            Ok(json)
        } else {
            Err(TryError::Failed(format!("{what}: not a JSON object")))
        };
    }
    match json["error"].as_str() {
        Some(error) => Err(TryError::Refused {
            error: error.to_string(),
            error_description: json["error_description"].as_str().map(str::to_string),
        }),
        None => Err(TryError::Failed(format!("{what}: HTTP {status}"))),
    }
}

/// An endpoint from discovery, preferring its mTLS alias (RFC 8705 §5).
fn endpoint(meta: &Value, name: &str) -> Result<String, TryError> {
    meta["mtls_endpoint_aliases"][name]
        .as_str()
        .or_else(|| meta[name].as_str())
        .map(str::to_string)
        .ok_or_else(|| TryError::Failed(format!("discovery: no {name}")))
}

/// What the browser's redirect carried, and where to send the page's verdict.
type Callback = (Vec<(String, String)>, oneshot::Sender<Verdict>);
type Slot = Mutex<Option<oneshot::Sender<Callback>>>;

/// What the callback page tells the customer.
#[derive(Debug, Clone)]
enum Verdict {
    SignedIn,
    NotSignedIn(String),
}

/// Runs the flow for the dev client of `cfg`'s data dir against the server
/// `cfg` describes; `on_url` gets the authorize URL once it exists (the
/// command prints it with [`announce`]).
pub async fn run(
    cfg: &Config,
    opts: &Options,
    on_url: impl FnOnce(&str),
) -> Result<Summary, TryError> {
    if !cfg.dev_mode {
        return Err(TryError::Usage(
            "try works in dev mode only (dev_mode = true): the dev client exists only there".into(),
        ));
    }
    if cfg.profile == crate::config::Profile::Fapi2MessageSigning {
        return Err(TryError::Usage(
            "try does not sign request objects, which profile fapi2-message-signing requires"
                .into(),
        ));
    }
    if opts.port == 0 {
        return Err(TryError::Usage(
            "--port: give the port the redirect URI is registered with".into(),
        ));
    }
    let files = DevClientFiles::in_data_dir(&cfg.data_dir);
    if !files.redirect_uri.exists() {
        return Err(TryError::Usage(format!(
            "no dev client in {}: start the server in dev mode first (make run)",
            files.dir.display()
        )));
    }
    let redirect_uri = redirect_uri_for(opts.port);
    let http = http_client(&files)?;

    let discovery = format!("{}/.well-known/openid-configuration", cfg.issuer);
    let meta = json_of(
        http.get(&discovery).send().await.map_err(|e| {
            TryError::Failed(format!(
                "cannot reach the server at {} ({e}); is it running? (make run)",
                cfg.issuer
            ))
        })?,
        "discovery",
        200,
    )
    .await?;
    if meta["issuer"] != cfg.issuer.as_str() {
        return Err(TryError::Failed(format!(
            "discovery: issuer {} is not the configured {}",
            meta["issuer"], cfg.issuer
        )));
    }
    let par_endpoint = endpoint(&meta, "pushed_authorization_request_endpoint")?;
    let token_endpoint = endpoint(&meta, "token_endpoint")?;
    let introspection_endpoint = endpoint(&meta, "introspection_endpoint")?;
    let authorization_endpoint = meta["authorization_endpoint"]
        .as_str()
        .ok_or_else(|| TryError::Failed("discovery: no authorization_endpoint".into()))?;

    // Listening before the request is pushed: a taken port fails early.
    let (callbacks, server) = callback_listener(&files, opts.port)?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let client = Flow {
        cfg,
        opts,
        http: &http,
        at: Endpoints {
            par: &par_endpoint,
            token: &token_endpoint,
            introspection: &introspection_endpoint,
            authorization: authorization_endpoint,
            jwks: meta["jwks_uri"].as_str().unwrap_or_default(),
        },
        redirect_uri: &redirect_uri,
        files: &files,
    };
    let result = flow(&client, callbacks, on_url).await;
    handle.stop(true).await;
    result
}

struct Endpoints<'a> {
    par: &'a str,
    token: &'a str,
    introspection: &'a str,
    authorization: &'a str,
    jwks: &'a str,
}

/// The dev client at work: what it was told and found.
struct Flow<'a> {
    cfg: &'a Config,
    opts: &'a Options,
    http: &'a reqwest::Client,
    at: Endpoints<'a>,
    redirect_uri: &'a str,
    files: &'a DevClientFiles,
}

async fn flow(
    f: &Flow<'_>,
    callbacks: oneshot::Receiver<Callback>,
    on_url: impl FnOnce(&str),
) -> Result<Summary, TryError> {
    let Flow {
        opts,
        http,
        ref at,
        redirect_uri,
        files,
        ..
    } = *f;
    let verifier = random(32);
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    let (state, nonce) = (random(16), random(16));
    let mut form = vec![
        ("client_id", CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", redirect_uri),
        ("scope", opts.scope.as_str()),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(p) = &opts.prompt {
        form.push(("prompt", p));
    }
    let par = json_of(
        http.post(at.par)
            .form(&form)
            .send()
            .await
            .map_err(failed("PAR"))?,
        "PAR",
        201,
    )
    .await
    .map_err(|e| match e {
        TryError::Refused {
            error,
            error_description: Some(d),
        } if error == "invalid_request" && d.contains("redirect_uri") => {
            reregister(files, redirect_uri)
        }
        other => other,
    })?;
    let request_uri = par["request_uri"]
        .as_str()
        .ok_or_else(|| TryError::Failed("PAR: no request_uri".into()))?;
    let mut authorize = url::Url::parse(at.authorization)
        .map_err(|e| TryError::Failed(format!("discovery: authorization_endpoint: {e}")))?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("request_uri", request_uri);
    on_url(authorize.as_str());

    let (query, answer) = match tokio::time::timeout(opts.timeout, callbacks).await {
        Ok(Ok(cb)) => cb,
        Ok(Err(_)) => return Err(TryError::Failed("the callback listener stopped".into())),
        Err(_) => {
            return Err(TryError::Failed(format!(
                "no redirect from the browser within {} s",
                opts.timeout.as_secs()
            )));
        }
    };
    let result = redeem(f, &query, &state, &nonce, &verifier).await;
    let _ = answer.send(match &result {
        Ok(_) => Verdict::SignedIn,
        Err(TryError::Refused { error, .. }) => Verdict::NotSignedIn(error.clone()),
        Err(_) => Verdict::NotSignedIn("client_error".into()),
    });
    result
}

/// The running server does not accept `redirect_uri` (another `--port`
/// than the one it registered at its start): registers it for the next
/// start (see [`redirect_uri_for`]) and says so.
fn reregister(files: &DevClientFiles, redirect_uri: &str) -> TryError {
    if let Err(e) = devcerts::write_file(
        &files.redirect_uri,
        format!("{redirect_uri}\n").as_bytes(),
        false,
    ) {
        return TryError::Usage(e.to_string());
    }
    TryError::Usage(format!(
        "the running server does not know {redirect_uri} for the dev client; it is now registered for the server's next start: restart it (make run), then run try again"
    ))
}

async fn redeem(
    f: &Flow<'_>,
    query: &[(String, String)],
    state: &str,
    nonce: &str,
    verifier: &str,
) -> Result<Summary, TryError> {
    let Flow {
        cfg,
        http,
        ref at,
        redirect_uri,
        ..
    } = *f;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // RFC 6749 §10.12 (state) and RFC 9207 §2.4 (iss), before anything else
    // in the response is believed.
    if param("state") != Some(state) {
        return Err(TryError::Failed(
            "the redirect's state does not match the request's (not this flow's redirect)".into(),
        ));
    }
    if param("iss") != Some(cfg.issuer.as_str()) {
        return Err(TryError::Failed(format!(
            "the redirect's iss is {:?}, not the issuer {} (RFC 9207)",
            param("iss").unwrap_or("(missing)"),
            cfg.issuer
        )));
    }
    if let Some(error) = param("error") {
        return Err(TryError::Refused {
            error: error.to_string(),
            error_description: param("error_description").map(str::to_string),
        });
    }
    let code = param("code")
        .ok_or_else(|| TryError::Failed("the redirect carries neither code nor error".into()))?;
    let t = json_of(
        http.post(at.token)
            .form(&[
                ("client_id", CLIENT_ID),
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(failed("token"))?,
        "token",
        200,
    )
    .await?;
    let text = |k: &str| t[k].as_str().map(str::to_string);
    let access_token =
        text("access_token").ok_or_else(|| TryError::Failed("token: no access_token".into()))?;
    let id_token = text("id_token").ok_or_else(|| TryError::Failed("token: no id_token".into()))?;
    let id_token_claims = verify_id_token(http, at.jwks, &cfg.issuer, &id_token, nonce).await?;
    let introspection = json_of(
        http.post(at.introspection)
            .form(&[("client_id", CLIENT_ID), ("token", access_token.as_str())])
            .send()
            .await
            .map_err(failed("introspection"))?,
        "introspection",
        200,
    )
    .await?;
    Ok(Summary {
        token_type: text("token_type").unwrap_or_default(),
        expires_in: t["expires_in"].as_i64(),
        scope: text("scope"),
        id_token_claims,
        active: introspection["active"] == true,
        access_token,
        id_token,
        refresh_token: text("refresh_token"),
    })
}

/// Checks the id_token's signature against the provider's JWKS, and its
/// iss, aud, exp and nonce (OIDC Core §3.1.3.7); returns its claims.
async fn verify_id_token(
    http: &reqwest::Client,
    jwks_uri: &str,
    issuer: &str,
    id_token: &str,
    nonce: &str,
) -> Result<Value, TryError> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let bad = |e: &dyn std::fmt::Display| TryError::Failed(format!("id_token: {e}"));
    let header = decode_header(id_token).map_err(|e| bad(&e))?;
    // The algorithms the provider signs with; never what a header asks.
    if !matches!(
        header.alg,
        Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA
    ) {
        return Err(bad(&format!("unexpected alg {:?}", header.alg)));
    }
    let jwks = http.get(jwks_uri).send().await.map_err(failed("JWKS"))?;
    let jwks: JwkSet =
        serde_json::from_str(&jwks.text().await.map_err(failed("JWKS"))?).map_err(|e| bad(&e))?;
    let jwk = jwks
        .find(header.kid.as_deref().unwrap_or_default())
        .ok_or_else(|| bad(&"its kid is not in the JWKS"))?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&[CLIENT_ID]);
    v.set_issuer(&[issuer]);
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e))?;
    let claims = decode::<Value>(id_token, &key, &v)
        .map_err(|e| bad(&e))?
        .claims;
    if claims["nonce"] != nonce {
        return Err(bad(&"nonce mismatch"));
    }
    Ok(claims)
}

/// The HTTPS listener for the redirect URI, on 127.0.0.1 (and ::1 when it
/// can) at `port`; the first request to `/callback` is handed over once.
fn callback_listener(
    files: &DevClientFiles,
    port: u16,
) -> Result<(oneshot::Receiver<Callback>, actix_web::dev::Server), TryError> {
    use actix_web::{App, HttpServer, web};
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let usage = |p: &Path| {
        let p = p.display().to_string();
        move |e: rustls_pki_types::pem::Error| TryError::Usage(format!("{p}: {e}"))
    };
    let chain = CertificateDer::pem_file_iter(&files.callback_cert)
        .map_err(usage(&files.callback_cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage(&files.callback_cert))?;
    let key =
        PrivateKeyDer::from_pem_file(&files.callback_key).map_err(usage(&files.callback_key))?;
    let provider = Arc::new(crate::tls::crypto_provider(crate::tls::TlsProfile::Fapi2));
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TryError::Failed(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TryError::Usage(format!("{}: {e}", files.callback_cert.display())))?;
    let v4 = TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
        TryError::Usage(format!(
            "--port {port}: cannot listen on 127.0.0.1:{port} ({e})"
        ))
    })?;
    // Browsers may resolve localhost to ::1 first.
    let v6 = TcpListener::bind(("::1", port)).ok();
    let (tx, rx) = oneshot::channel();
    let slot: web::Data<Slot> = web::Data::new(Mutex::new(Some(tx)));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(slot.clone())
            .route("/callback", web::get().to(callback))
    })
    .workers(1)
    .shutdown_timeout(2)
    .keep_alive(actix_web::http::KeepAlive::Disabled)
    .listen_rustls_0_23(v4, tls.clone())
    .map_err(|e| TryError::Failed(format!("callback listener: {e}")))?;
    if let Some(v6) = v6 {
        server = server
            .listen_rustls_0_23(v6, tls)
            .map_err(|e| TryError::Failed(format!("callback listener: {e}")))?;
    }
    Ok((rx, server.disable_signals().run()))
}

async fn callback(
    req: actix_web::HttpRequest,
    slot: actix_web::web::Data<Slot>,
) -> actix_web::HttpResponse {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let verdict = match taken {
        None => Verdict::NotSignedIn("already_answered".into()),
        Some(tx) => {
            let (vtx, vrx) = oneshot::channel();
            if tx.send((query, vtx)).is_err() {
                Verdict::NotSignedIn("try_stopped".into())
            } else {
                match tokio::time::timeout(Duration::from_secs(60), vrx).await {
                    Ok(Ok(v)) => v,
                    _ => Verdict::NotSignedIn("try_stopped".into()),
                }
            }
        }
    };
    actix_web::HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        // The address carries the code.
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ))
        .body(page(&verdict))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page the browser ends on: no scripts, one `main` landmark, dark text
/// on white (contrast well above WCAG 2.1 AA's 4.5:1).
fn page(verdict: &Verdict) -> String {
    let (title, body) = match verdict {
        Verdict::SignedIn => (
            "Signed in",
            "<p>The dev client received a token. You can close this tab; the terminal shows the summary.</p>".to_string(),
        ),
        Verdict::NotSignedIn(code) => (
            "Not signed in",
            format!(
                "<p>The flow ended with the error <code>{}</code>. The terminal shows the details.</p>",
                escape(code)
            ),
        ),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · strongroom try</title>
<style>
body {{ margin: 0; font-family: system-ui, sans-serif; color: #1a1a1a; background: #ffffff; line-height: 1.5; }}
main {{ max-width: 40rem; margin: 3rem auto; padding: 0 1rem; }}
h1 {{ font-size: 1.75rem; margin: 0 0 1rem; }}
code {{ background: #f0f0f0; color: #1a1a1a; padding: 0 .25rem; border-radius: .2rem; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_the_error_code_and_carry_no_script() {
        let p = page(&Verdict::NotSignedIn("<script>x</script>".into()));
        assert!(p.contains("<h1>Not signed in</h1>"));
        assert!(p.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!p.contains("<script"));
        assert!(p.contains(r#"<html lang="en">"#) && p.contains("<main>"));
        let p = page(&Verdict::SignedIn);
        assert!(p.contains("<title>Signed in · strongroom try</title>"));
        assert!(p.contains("<h1>Signed in</h1>"));
    }

    #[test]
    fn the_dev_client_is_files_once_and_a_valid_fapi_client() {
        let dir = tempfile::tempdir().unwrap();
        crate::devcerts::ensure_dev_certs(dir.path()).unwrap();
        let first = ensure_dev_client(dir.path()).unwrap();
        assert_eq!(first.metadata.client_id, CLIENT_ID);
        assert_eq!(
            first.metadata.redirect_uris,
            [redirect_uri_for(DEFAULT_PORT)]
        );
        first.metadata.validate().unwrap();
        let files = DevClientFiles::in_data_dir(dir.path());
        let cert = std::fs::read(&files.cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for key in [&files.key, &files.callback_key] {
                let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        // Reused as long as the dev CA is the same; a new CA, new files.
        std::fs::write(&files.redirect_uri, "https://localhost:9999/callback\n").unwrap();
        let again = ensure_dev_client(dir.path()).unwrap();
        assert_eq!(std::fs::read(&files.cert).unwrap(), cert);
        assert_eq!(
            again.metadata.redirect_uris,
            ["https://localhost:9999/callback"]
        );
        std::fs::remove_file(dir.path().join("dev-ca.pem")).unwrap();
        crate::devcerts::ensure_dev_certs(dir.path()).unwrap();
        ensure_dev_client(dir.path()).unwrap();
        assert_ne!(std::fs::read(&files.cert).unwrap(), cert);
    }
}

//! `strongroom admin …`: the admin API (`/admin/v1`, docs/admin.md) from a
//! terminal or a script.
//!
//! The token: `STRONGROOM_ADMIN_TOKEN` (a JWT access token of a trusted
//! issuer, sent as a bearer token), or else a `client_credentials` login of
//! an admin client authenticating with its certificate (`tls_client_auth`
//! at the mTLS listener's token endpoint), bound to a fresh DPoP key that
//! signs a proof for every call. In dev mode the server makes such a client,
//! `dev-admin`, with its certificate in `data/dev-admin/`, so the commands
//! work against `make run` with no flags.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::DnType;
use serde_json::{Value, json};

use crate::config::{Config, StaticClient};
use crate::devcerts::{self, KeyAlg};

/// The dev admin client's `client_id`.
pub const DEV_ADMIN: &str = "dev-admin";
const DEV_ADMIN_DN: &str = "CN=dev-admin,O=Strongroom dev";

/// The scopes of the admin API, all of which the dev admin client has.
pub const ALL_SCOPES: &str = "admin:read admin:clients admin:directories admin:hooks admin:settings admin:keys admin:grants admin:audit";

fn dev_files(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("dev-admin");
    (dir.join("client.pem"), dir.join("client-key.pem"))
}

/// Server side, dev mode: the dev admin client's certificate (issued by the
/// dev CA, made where missing) and registration.
pub fn ensure_dev_admin(data_dir: &Path) -> Result<StaticClient, String> {
    let (cert, key) = dev_files(data_dir);
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let ca = read(&data_dir.join("dev-ca.pem"))?;
    if !(std::fs::read_to_string(&cert).is_ok_and(|c| c.contains(ca.trim())) && key.exists()) {
        let ca_key = read(&data_dir.join("dev-ca-key.pem"))?;
        let (leaf, pem) = devcerts::issue_client_cert(
            &ca,
            &ca_key,
            &[
                (DnType::OrganizationName, "Strongroom dev"),
                (DnType::CommonName, DEV_ADMIN),
            ],
            &[],
            KeyAlg::EcdsaP256,
        )
        .map_err(|e| e.to_string())?;
        if let Some(dir) = cert.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        devcerts::write_file(&key, pem.as_bytes(), true).map_err(|e| e.to_string())?;
        let chain = format!("{}\n{}\n", leaf.trim_end(), ca.trim_end());
        devcerts::write_file(&cert, chain.as_bytes(), false).map_err(|e| e.to_string())?;
    }
    serde_json::from_value(json!({
        "client_id": DEV_ADMIN,
        "client_name": "Strongroom dev admin (strongroom admin)",
        "grant_types": ["client_credentials"],
        "scope": ALL_SCOPES,
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": DEV_ADMIN_DN,
        "dpop_bound_access_tokens": true,
    }))
    .map_err(|e| e.to_string())
}

/// How the CLI reaches and authenticates to the admin API.
#[derive(Debug, Clone, Default)]
pub struct Login {
    pub client_id: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The CA that signed the server's certificate (default: the dev CA
    /// when it exists, else the system roots).
    pub ca: Option<PathBuf>,
    pub scope: Option<String>,
}

/// An authenticated admin API client.
pub struct Session {
    http: reqwest::Client,
    base: String,
    token: String,
    /// `None`: a bearer token (`STRONGROOM_ADMIN_TOKEN`).
    dpop: Option<EcdsaKeyPair>,
    dpop_jwk: Value,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn tls(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(crate::tls::crypto_provider(crate::tls::TlsProfile::Fapi2));
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())
        }
    }
}

impl Session {
    /// Logs in as `login` says against the server `cfg` describes.
    pub async fn open(cfg: &Config, login: &Login) -> Result<Session, String> {
        if cfg.server.admin_listen.is_empty() && cfg.admin.url.is_empty() {
            return Err("the admin API needs server.admin_listen (STRONGROOM_ADMIN_LISTEN)".into());
        }
        let base = cfg.admin_url();
        let dev_ca = cfg.data_dir.join("dev-ca.pem");
        let ca = login
            .ca
            .clone()
            .or_else(|| dev_ca.exists().then_some(dev_ca));
        let (dev_cert, dev_key) = dev_files(&cfg.data_dir);
        let cert = login.cert.clone().unwrap_or(dev_cert);
        let key = login.key.clone().unwrap_or(dev_key);
        let identity = (cert.exists() && key.exists()).then_some((cert.as_path(), key.as_path()));
        // The admin listener: plain, or `admin.tls` (the certificate is
        // presented there too, for admin.client_subject_dns).
        let admin_http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .use_preconfigured_tls(tls(ca.as_deref(), identity)?)
            .build()
            .map_err(|e| e.to_string())?;
        if let Ok(token) = std::env::var("STRONGROOM_ADMIN_TOKEN") {
            return Ok(Session {
                http: admin_http,
                base,
                token,
                dpop: None,
                dpop_jwk: Value::Null,
            });
        }
        let client_id = login.client_id.clone().unwrap_or_else(|| DEV_ADMIN.into());
        let mtls = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .use_preconfigured_tls(tls(ca.as_deref(), Some((&cert, &key)))?)
            .build()
            .map_err(|e| e.to_string())?;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "could not make a DPoP key")?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| "could not make a DPoP key")?;
        let point = pair.public_key().as_ref();
        let dpop_jwk =
            json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        let mut session = Session {
            http: admin_http,
            base,
            token: String::new(),
            dpop: Some(pair),
            dpop_jwk,
        };
        let token_url = format!(
            "{}/token",
            cfg.mtls_base_url()
                .unwrap_or_else(|| cfg.issuer.clone())
                .trim_end_matches('/')
        );
        let proof = session.proof("POST", &token_url, None)?;
        let scope = login.scope.clone().unwrap_or_else(|| ALL_SCOPES.into());
        let res = mtls
            .post(&token_url)
            .header("DPoP", proof)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("scope", scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("{token_url}: {e}"))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let Some(token) = body["access_token"]
            .as_str()
            .filter(|_| status.is_success())
        else {
            return Err(format!(
                "login as {client_id} at {token_url}: {status} {}",
                body["error_description"]
                    .as_str()
                    .or(body["error"].as_str())
                    .unwrap_or("")
            ));
        };
        session.token = token.to_owned();
        Ok(session)
    }

    /// A DPoP proof (RFC 9449 §4.2) for `htm` `htu`.
    fn proof(&self, htm: &str, htu: &str, ath_of: Option<&str>) -> Result<String, String> {
        let Some(pair) = &self.dpop else {
            return Err("no DPoP key".into());
        };
        let mut claims = json!({"jti": oauth_core::secret::random_token(16), "htm": htm, "htu": htu,
            "iat": oauth_core::secret::now()});
        if let Some(t) = ath_of {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes());
            claims["ath"] = json!(b64(d.as_ref()));
        }
        let header = json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": self.dpop_jwk});
        let mut input = b64(header.to_string().as_bytes());
        input.push('.');
        input.push_str(&b64(claims.to_string().as_bytes()));
        let sig = pair
            .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|_| "DPoP signature failed")?;
        input.push('.');
        input.push_str(&b64(sig.as_ref()));
        Ok(input)
    }

    /// One call: the status, the `ETag` and the JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
        if_match: Option<&str>,
    ) -> Result<(u16, Option<String>, Value), String> {
        let url = format!("{}/admin/v1{path}", self.base);
        let htu = url.split('?').next().unwrap_or(&url).to_owned();
        let mut req = self.http.request(method.clone(), &url);
        req = match &self.dpop {
            Some(_) => req
                .header("Authorization", format!("DPoP {}", self.token))
                .header(
                    "DPoP",
                    self.proof(method.as_str(), &htu, Some(&self.token))?,
                ),
            None => req.bearer_auth(&self.token),
        };
        if let Some((ct, b)) = body {
            req = req.header("Content-Type", ct).body(b.to_string());
        }
        if let Some(m) = if_match {
            req = req.header("If-Match", m);
        }
        let res = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = res.status().as_u16();
        let etag = res
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = res.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, etag, json))
    }

    /// [`Session::call`] that must answer `want`.
    pub async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
        if_match: Option<&str>,
        want: u16,
    ) -> Result<(Option<String>, Value), String> {
        let (status, etag, json) = self.call(method, path, body, if_match).await?;
        if status != want {
            return Err(format!(
                "{status} {}: {}",
                json["error"].as_str().unwrap_or(""),
                json["error_description"].as_str().unwrap_or("")
            ));
        }
        Ok((etag, json))
    }
}

/// A table of `rows` under `headers`, columns as wide as their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(headers.to_vec())];
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

/// A JSON value as a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `strongroom admin`: the admin API (docs/admin.md).
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// Print the API's JSON instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    /// The admin client to log in as (default: dev-admin, the dev-mode one)
    #[arg(long, global = true, value_name = "CLIENT_ID")]
    pub admin_client: Option<String>,
    /// Its certificate chain, PEM (tls_client_auth at the token endpoint)
    #[arg(long, global = true, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Its private key, PEM
    #[arg(long, global = true, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// The CA of the server's certificate (default: the dev CA if present)
    #[arg(long, global = true, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AdminCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCmd {
    /// Registrations
    #[command(subcommand)]
    Clients(ClientsCmd),
    /// Trust anchors of dynamic registration
    #[command(subcommand)]
    Directories(DirectoriesCmd),
    /// Lifetimes and token rules ([tokens])
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// The provider's keys
    #[command(subcommand)]
    Keys(KeysAdminCmd),
    /// Grants and consents
    #[command(subcommand)]
    Consents(ConsentsCmd),
    /// The audit log
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Print the API's OpenAPI 3.1 document (no server needed)
    Openapi,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClientsCmd {
    /// List registrations
    List {
        /// Only those of this origin: static, dynamic or admin
        #[arg(long)]
        origin: Option<String>,
    },
    /// Show one registration
    Show { client_id: String },
    /// Register a client from a metadata JSON file (`-`: standard input)
    Create { file: PathBuf },
    /// Delete a registration with its grants and tokens
    Delete { client_id: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum DirectoriesCmd {
    /// List the directories (the file's are file-owned)
    List,
    /// Add a directory from a JSON file with the fields of [[directories]]
    Add { file: PathBuf },
    /// Remove a directory added through the API
    Remove { name: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum SettingsCmd {
    /// The [tokens] in force and where they come from
    Show,
    /// Change [tokens] with a JSON merge patch, e.g. '{"access_token_lifetime_secs": 300}'
    Set { patch: String },
    /// Drop the changes made through the API: the file's [tokens] again
    Reset,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysAdminCmd {
    /// List the keys and their schedule
    List,
    /// Publish new keys now; they sign after keys.activation_delay_secs
    Rotate,
    /// Retire a key now (another of its algorithm must be active)
    Retire { kid: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum ConsentsCmd {
    /// Grants by consent id, client or subject
    Find {
        #[arg(long)]
        consent_id: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        sub: Option<String>,
    },
    /// Revoke a consent: every grant carrying it and their tokens
    Revoke { consent_id: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// The latest lines of the audit log (oldest first)
    Tail {
        /// How many lines
        #[arg(long, default_value_t = 20)]
        lines: usize,
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        actor: Option<String>,
    },
}

fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// Runs `args` against the server `cfg` describes; what to print.
pub async fn run(cfg: &Config, args: AdminArgs) -> Result<String, String> {
    use reqwest::Method;
    let login = Login {
        client_id: args.admin_client.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        ca: args.ca.clone(),
        scope: None,
    };
    if matches!(args.command, AdminCmd::Openapi) {
        return Ok(crate::admin::openapi_json());
    }
    let s = Session::open(cfg, &login).await?;
    let json_out = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let clients_table = |items: &[Value]| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|c| {
                vec![
                    cell(&c["client_id"]),
                    cell(&c["origin"]),
                    cell(&c["metadata"]["token_endpoint_auth_method"]),
                    cell(&c["metadata"]["client_name"]),
                ]
            })
            .collect();
        table(&["client_id", "origin", "auth", "name"], &rows)
    };
    match args.command {
        AdminCmd::Clients(ClientsCmd::List { origin }) => {
            let mut items = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let q = query_string(&[
                    ("limit", Some("200")),
                    ("origin", origin.as_deref()),
                    ("after", after.as_deref()),
                ]);
                let (_, page) = s
                    .expect(Method::GET, &format!("/clients{q}"), None, None, 200)
                    .await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(n) => after = Some(n.to_owned()),
                    None => break,
                }
            }
            Ok(if args.json {
                json_out(&Value::Array(items))
            } else {
                clients_table(&items)
            })
        }
        AdminCmd::Clients(ClientsCmd::Show { client_id }) => {
            let (_, c) = s
                .expect(
                    Method::GET,
                    &format!("/clients/{}", enc(&client_id)),
                    None,
                    None,
                    200,
                )
                .await?;
            Ok(json_out(&c))
        }
        AdminCmd::Clients(ClientsCmd::Create { file }) => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?
            };
            let body: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let (_, c) = s
                .expect(
                    Method::POST,
                    "/clients",
                    Some(("application/json", body)),
                    None,
                    201,
                )
                .await?;
            Ok(if args.json {
                json_out(&c)
            } else {
                let mut out = clients_table(std::slice::from_ref(&c));
                if let Some(secret) = c["client_secret"].as_str() {
                    out.push_str(&format!("\nclient_secret (shown once): {secret}"));
                }
                out
            })
        }
        AdminCmd::Clients(ClientsCmd::Delete { client_id }) => {
            let path = format!("/clients/{}", enc(&client_id));
            let (etag, _) = s.expect(Method::GET, &path, None, None, 200).await?;
            s.expect(Method::DELETE, &path, None, etag.as_deref(), 204)
                .await?;
            Ok(format!("deleted {client_id}"))
        }
        AdminCmd::Directories(DirectoriesCmd::List) => {
            let (_, v) = s
                .expect(Method::GET, "/directories", None, None, 200)
                .await?;
            if args.json {
                return Ok(json_out(&v));
            }
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    ["name", "issuer", "rules", "file_owned"]
                        .iter()
                        .map(|f| cell(&d[*f]))
                        .collect()
                })
                .collect();
            Ok(table(&["name", "issuer", "rules", "file_owned"], &rows))
        }
        AdminCmd::Directories(DirectoriesCmd::Add { file }) => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let body: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let (_, d) = s
                .expect(
                    Method::POST,
                    "/directories",
                    Some(("application/json", body)),
                    None,
                    201,
                )
                .await?;
            Ok(if args.json {
                json_out(&d)
            } else {
                format!("added {}", cell(&d["name"]))
            })
        }
        AdminCmd::Directories(DirectoriesCmd::Remove { name }) => {
            let path = format!("/directories/{}", enc(&name));
            let (etag, _) = s.expect(Method::GET, &path, None, None, 200).await?;
            s.expect(Method::DELETE, &path, None, etag.as_deref(), 204)
                .await?;
            Ok(format!("removed {name}"))
        }
        AdminCmd::Settings(cmd) => {
            let path = "/settings/tokens";
            let (etag, current) = s.expect(Method::GET, path, None, None, 200).await?;
            let (_, v) = match cmd {
                SettingsCmd::Show => (etag, current),
                SettingsCmd::Set { patch } => {
                    let patch: Value =
                        serde_json::from_str(&patch).map_err(|e| format!("the patch: {e}"))?;
                    s.expect(
                        Method::PATCH,
                        path,
                        Some(("application/merge-patch+json", patch)),
                        etag.as_deref(),
                        200,
                    )
                    .await?
                }
                SettingsCmd::Reset => {
                    s.expect(Method::DELETE, path, None, etag.as_deref(), 200)
                        .await?
                }
            };
            Ok(json_out(&v))
        }
        AdminCmd::Keys(cmd) => {
            let (_, v) = match &cmd {
                KeysAdminCmd::List => s.expect(Method::GET, "/keys", None, None, 200).await?,
                KeysAdminCmd::Rotate => {
                    s.expect(Method::POST, "/keys/rotate", None, None, 200)
                        .await?
                }
                KeysAdminCmd::Retire { kid } => {
                    let (e, k) = s
                        .expect(
                            Method::POST,
                            &format!("/keys/{}/retire", enc(kid)),
                            None,
                            None,
                            200,
                        )
                        .await?;
                    (e, json!({"items": [k]}))
                }
            };
            if args.json {
                return Ok(json_out(&v));
            }
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|k| {
                    [
                        "kid",
                        "alg",
                        "use",
                        "state",
                        "active_from",
                        "retired_at",
                        "expires_at",
                    ]
                    .iter()
                    .map(|f| cell(&k[*f]))
                    .collect()
                })
                .collect();
            Ok(table(
                &[
                    "kid",
                    "alg",
                    "use",
                    "state",
                    "active_from",
                    "retired_at",
                    "expires_at",
                ],
                &rows,
            ))
        }
        AdminCmd::Consents(ConsentsCmd::Find {
            consent_id,
            client_id,
            sub,
        }) => {
            let q = query_string(&[
                ("consent_id", consent_id.as_deref()),
                ("client_id", client_id.as_deref()),
                ("sub", sub.as_deref()),
            ]);
            let (_, v) = s
                .expect(Method::GET, &format!("/grants{q}"), None, None, 200)
                .await?;
            if args.json {
                return Ok(json_out(&v));
            }
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|g| {
                    [
                        "grant_id",
                        "client_id",
                        "sub",
                        "consent_id",
                        "scope",
                        "revoked_at",
                    ]
                    .iter()
                    .map(|f| cell(&g[*f]))
                    .collect()
                })
                .collect();
            Ok(table(
                &[
                    "grant_id",
                    "client_id",
                    "sub",
                    "consent_id",
                    "scope",
                    "revoked_at",
                ],
                &rows,
            ))
        }
        AdminCmd::Consents(ConsentsCmd::Revoke { consent_id }) => {
            let (_, v) = s
                .expect(
                    Method::POST,
                    &format!("/consents/{}/revoke", enc(&consent_id)),
                    None,
                    None,
                    200,
                )
                .await?;
            Ok(if args.json {
                json_out(&v)
            } else {
                format!(
                    "revoked {} grant(s) of consent {consent_id}",
                    cell(&v["revoked_grants"])
                )
            })
        }
        AdminCmd::Openapi => Ok(crate::admin::openapi_json()),
        AdminCmd::Audit(AuditCmd::Tail {
            lines,
            resource,
            actor,
        }) => {
            // Oldest first, paged: keep the last `lines`.
            let mut kept: std::collections::VecDeque<Value> = std::collections::VecDeque::new();
            let mut after: Option<String> = None;
            loop {
                let q = query_string(&[
                    ("limit", Some("200")),
                    ("resource", resource.as_deref()),
                    ("actor", actor.as_deref()),
                    ("after", after.as_deref()),
                ]);
                let (_, page) = s
                    .expect(Method::GET, &format!("/audit{q}"), None, None, 200)
                    .await?;
                for line in page["items"].as_array().cloned().unwrap_or_default() {
                    kept.push_back(line);
                    if kept.len() > lines {
                        kept.pop_front();
                    }
                }
                match page["next"].as_str() {
                    Some(n) => after = Some(n.to_owned()),
                    None => break,
                }
            }
            let items: Vec<Value> = kept.into_iter().collect();
            if args.json {
                return Ok(json_out(&Value::Array(items)));
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|l| {
                    [
                        "at_ms",
                        "actor",
                        "source",
                        "action",
                        "resource_id",
                        "status",
                    ]
                    .iter()
                    .map(|f| cell(&l[*f]))
                    .collect()
                })
                .collect();
            Ok(table(
                &[
                    "at_ms",
                    "actor",
                    "source",
                    "action",
                    "resource_id",
                    "status",
                ],
                &rows,
            ))
        }
    }
}

/// A path segment, percent-encoded.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

//! Configuration: one TOML file (`config/strongroom.toml` by default) plus the
//! environment overrides a container needs. Loaded and validated once at
//! start; a bad value is reported in one line naming the key, and the process
//! exits with code 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default configuration file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/strongroom.toml";

/// A configuration problem, rendered as one line: `<key>: <what is wrong>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

pub use oauth_core::policy::{AccessTokenFormat, Profile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Public issuer identifier (OIDC Discovery §3, RFC 8414 §2): https, no
    /// query, no fragment.
    pub issuer: String,
    pub profile: Profile,
    /// Where generated dev keys, certificates and the SQLite file live.
    pub data_dir: PathBuf,
    /// Development conveniences (generated key-encryption key, clear-text
    /// demo passwords). Never enable in production.
    pub dev_mode: bool,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub keys: KeysConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub tokens: TokensConfig,
    pub login: LoginConfig,
    /// Static clients, with RFC 7591 metadata names.
    pub clients: Vec<StaticClient>,
    /// Users of the built-in login page.
    pub users: Vec<UserConfig>,
    /// The consent bridge: the bank's login app, consent app and consent
    /// service behind interception hooks (docs/hooks.md). Absent: off.
    pub hooks: Option<consent_bridge::HooksConfig>,
    /// CIBA (docs/hooks.md §10): the bank's resolve and notify hooks, expiry
    /// and polling. Absent: no backchannel authentication endpoint.
    pub ciba: Option<ciba::CibaConfig>,
    /// Trusted software-statement issuers for dynamic client registration
    /// (docs/registration.md). None: registration needs an initial access token.
    pub directories: Vec<dcr::DirectoryConfig>,
    /// The registration endpoint (RFC 7591): limits, initial access tokens.
    pub registration: dcr::RegistrationConfig,
    /// Rate limits at the back-channel endpoints (off by default).
    pub limits: crate::limits::LimitsConfig,
    /// The customer pages' look: bank name, colour, logo, theme directory
    /// (docs/theming.md).
    pub ui: UiConfig,
    /// What the consent page says for each scope (`[scopes.NAME]`); the
    /// built-in scopes have default words, an unknown scope shows its name.
    pub scopes: std::collections::BTreeMap<String, ScopeConfig>,
    /// The admin API on the internal listener (docs/admin.md).
    pub admin: AdminConfig,
    /// `[subject]`: what clients are shown as `sub` when they choose
    /// nothing themselves (docs/fapi1.md, "The subject").
    pub subject: SubjectConfig,
    /// Directories added through the admin API (the database's), beside
    /// the file's `[[directories]]`: read at start, not from the file.
    #[serde(skip)]
    pub admin_directories: Vec<dcr::DirectoryConfig>,
}

/// `[admin]`: who may call the admin API (`/admin/v1` on
/// `server.admin_listen`) and how changes reach the other instances.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Clients of this provider whose `client_credentials` access tokens
    /// (sender-constrained, with `admin:*` scopes) the admin API accepts.
    /// Any other client's token is refused, whatever its scopes.
    pub clients: Vec<String>,
    /// The admin listener's base URL as callers address it: the `htu` of
    /// their DPoP proofs is compared with it. Default:
    /// `http://{server.admin_listen}`.
    pub url: String,
    /// How often every instance looks for admin changes made on another
    /// (keys, settings), in milliseconds. Registrations need no polling:
    /// they are read from the database on every request.
    pub propagation_ms: u64,
    /// The largest request body the admin API reads (413 beyond).
    pub max_body_bytes: usize,
    /// External issuers whose JWT access tokens (RFC 9068) the admin API
    /// accepts.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Serve the internal listener over TLS (the server certificate of
    /// `[tls]`), asking for client certificates: `/metrics` and the probes
    /// then need `https` too.
    pub tls: bool,
    /// Settings the admin API must not change, because the file owns them:
    /// `tokens`, `hooks`, `ciba`, `directories`. (Clients and directories declared in the
    /// file are always file-owned, one by one.)
    pub file_owned: Vec<String>,
    /// With `tls`: admin calls must also come over a connection with a
    /// certificate, verified by `tls.client_ca`, whose subject is one of
    /// these (RFC 4514). Empty: the token alone decides.
    pub client_subject_dns: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            clients: Vec::new(),
            url: String::new(),
            propagation_ms: 1000,
            max_body_bytes: 64 * 1024,
            trusted_issuers: Vec::new(),
            tls: false,
            client_subject_dns: Vec::new(),
            file_owned: Vec::new(),
        }
    }
}

/// `[[admin.trusted_issuers]]`: an authorization server of the bank whose
/// RFC 9068 access tokens carry `admin:*` scopes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The `iss` the tokens must carry, exactly.
    pub issuer: String,
    /// Where its signing keys are (https).
    pub jwks_uri: String,
    /// The `aud` the tokens must carry (RFC 9068 §4: this resource).
    pub audience: String,
    /// The JWS algorithms accepted (RS256 is refused).
    #[serde(default = "trusted_algs")]
    pub algorithms: Vec<String>,
}

fn trusted_algs() -> Vec<String> {
    vec!["PS256".into(), "ES256".into()]
}

/// `[ui]`: how the customer pages look (docs/theming.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Templates (`templates/*.html`), assets (`assets/*`) and message
    /// overrides (`messages/<lang>.toml`) that replace the built-in ones file
    /// by file. Relative to the working directory. None: built-in only.
    pub theme_dir: Option<PathBuf>,
    /// Shown in every page's header and title.
    pub bank_name: String,
    /// `#rrggbb`: the primary action, links and focus outlines; white text
    /// on it must reach 4.5:1 (WCAG 2.1 AA).
    pub primary_color: String,
    /// The header logo: an asset of the theme (`assets/<logo>`), or the
    /// built-in `logo.svg`.
    pub logo: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            theme_dir: None,
            bank_name: "Strongroom".into(),
            primary_color: "#0f4c81".into(),
            logo: "logo.svg".into(),
        }
    }
}

/// `[scopes.NAME]`: the words of one scope on the consent page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// What the customer reads, e.g. "See your balances".
    pub description: String,
    /// The description in other shipped languages (`fr = "…"`).
    #[serde(default)]
    pub translations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// RFC 9126 §2.2 `expires_in` of request URIs.
    pub par_lifetime_secs: i64,
    /// Authorization code lifetime (FAPI 2.0: at most 60 s).
    pub code_lifetime_secs: i64,
    pub access_token_lifetime_secs: i64,
    pub refresh_token_lifetime_secs: i64,
    pub id_token_lifetime_secs: i64,
    /// Issue a new refresh token at every refresh (FAPI 2.0 §5.3.2.1 advises against).
    pub rotate_refresh_tokens: bool,
    /// "opaque" (random, introspected) or "jwt" (RFC 9068).
    pub access_token_format: AccessTokenFormat,
    /// RFC 9449 §8: demand server nonces in DPoP proofs.
    pub require_dpop_nonce: bool,
    /// RFC 9449 §11.1: how far a DPoP proof's `iat` may lie from now.
    pub dpop_iat_window_secs: i64,
}

/// The defaults are the policy's own, so they are stated in one place.
impl Default for TokensConfig {
    fn default() -> Self {
        let p = oauth_core::policy::Policy::new("", Profile::default());
        Self {
            par_lifetime_secs: p.par_lifetime_secs,
            code_lifetime_secs: p.code_lifetime_secs,
            access_token_lifetime_secs: p.access_token_lifetime_secs,
            refresh_token_lifetime_secs: p.refresh_token_lifetime_secs,
            id_token_lifetime_secs: p.id_token_lifetime_secs,
            rotate_refresh_tokens: p.rotate_refresh_tokens,
            access_token_format: p.access_token_format,
            require_dpop_nonce: p.require_dpop_nonce,
            dpop_iat_window_secs: p.dpop_iat_window_secs,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Lifetime of the browser session after a login.
    pub session_lifetime_secs: i64,
    /// How long a customer has to finish login and consent.
    pub interaction_lifetime_secs: i64,
    /// The `acr` the built-in password login reports.
    pub acr: String,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            session_lifetime_secs: 3600,
            interaction_lifetime_secs: 600,
            acr: "urn:strongroom:password".into(),
        }
    }
}

/// A client declared in the file: RFC 7591 metadata, plus a secret for
/// non-FAPI clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticClient {
    #[serde(flatten)]
    pub metadata: oauth_core::client::ClientMetadata,
    /// SHA-256 (base64url) of the client secret, for `fapi = false` clients
    /// using client_secret_basic/post. Compute it with
    /// `strongroom hash-secret`.
    #[serde(default)]
    pub client_secret_sha256: Option<String>,
}

/// A user of the built-in login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// PHC-format argon2 hash (`strongroom hash-password`).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Clear-text password: accepted only in dev mode.
    #[serde(default)]
    pub password: Option<String>,
    /// The subject identifier; defaults to the username.
    #[serde(default)]
    pub sub: Option<String>,
    /// OpenID Connect claims released with the profile/email scopes.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Browser-facing listener (authorize, login, consent, discovery); it
    /// never asks for a client certificate.
    pub listen: String,
    /// Listener for endpoints that take client certificates (token, PAR,
    /// userinfo, introspection, revocation, registration). Empty: single
    /// listener mode, where `listen` also asks for (optional) certificates.
    pub mtls_listen: String,
    /// Public base URL of the mTLS listener, advertised in
    /// `mtls_endpoint_aliases` (RFC 8705 §5). Default: the issuer's scheme
    /// and host with the port of `mtls_listen`.
    pub mtls_base_url: String,
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    /// Seconds a client has to complete the TLS handshake after connecting.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's head (request line and
    /// headers), from connecting or from the previous response.
    pub request_head_timeout_secs: u64,
    /// Seconds a client has to send a request's body, from the end of its
    /// head; after that the request is answered 408 and the connection
    /// closed.
    pub request_body_timeout_secs: u64,
    /// Open connections per listener; more are closed at once. 0: derived
    /// from the open-file limit, less what the database pool and the
    /// server itself need, shared between the listeners.
    pub max_connections: usize,
    /// Open connections from one source address (an IPv6 /64), over both
    /// listeners; each new one beyond closes the address's oldest.
    /// `tls.trusted_proxies` are exempt. 0: a quarter of `max_connections`.
    pub max_connections_per_ip: usize,
    /// Seconds a SIGTERM gives requests in progress to finish: the
    /// listeners close at once, idle keep-alive connections are closed, and
    /// whatever is still running after this is cut (docs/operations.md).
    pub shutdown_timeout_secs: u64,
    /// The internal listener (plain HTTP): `/metrics`, later the admin API.
    /// Never an Internet-facing address; empty: off.
    pub admin_listen: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum TlsSuites {
    /// TLS 1.2 limited to the RFC 9325 ECDHE + AES-GCM suites (FAPI 2.0 §5.2.1).
    #[default]
    #[serde(rename = "fapi2")]
    Fapi2,
    /// TLS 1.2 limited to ECDHE-RSA + AES-GCM (FAPI 1.0 Part 2 §8.5): needs an
    /// RSA server certificate.
    #[serde(rename = "fapi1")]
    Fapi1,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub suites: TlsSuites,
    /// PEM certificate chain of the server; empty = generate a dev CA and a
    /// localhost certificate in the data dir on first start.
    pub certificate: String,
    /// PEM private key of the server certificate.
    pub private_key: String,
    /// PEM bundle of CAs that issue client certificates for
    /// `tls_client_auth` (RFC 8705 §2.1). Empty: the dev CA in dev mode.
    pub client_ca: String,
    /// Take the client certificate from this request header (RFC 9440
    /// `Client-Cert`) when a TLS-terminating proxy sits in front.
    pub client_cert_header: String,
    /// Addresses (IP or CIDR) whose `client_cert_header` is believed.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user:pass@host/db`. Empty:
    /// SQLite in the data dir.
    pub url: String,
    /// Pool size; unset: [`DatabaseConfig::pool_size`]'s default.
    pub max_connections: Option<u32>,
    /// Seconds between two sweeps of expired rows (one-time values,
    /// pushed requests, CIBA requests, tokens, sessions) by each instance;
    /// a row outlives its expiry by at most this long.
    pub purge_interval_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: None,
            purge_interval_secs: DEFAULT_PURGE_INTERVAL_SECS,
        }
    }
}

/// `database.purge_interval_secs` unless configured: often, so each sweep
/// is small (a minute's worth of expired rows at a time).
pub const DEFAULT_PURGE_INTERVAL_SECS: u64 = 60;

impl DatabaseConfig {
    /// The configured pool size, or the default for the backend: 4 on
    /// SQLite, whose reads are short and CPU-bound and whose connections
    /// each keep their own page cache (so more readers cost memory and
    /// context switches, not throughput), 16 on PostgreSQL, where a query
    /// waits on the network.
    #[must_use]
    pub fn pool_size(&self) -> u32 {
        self.max_connections
            .unwrap_or(if is_postgres(&self.url) { 16 } else { 4 })
    }
}

/// Whether a database URL names PostgreSQL (both of its schemes).
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Base64url 32-byte key that seals private keys at rest. Prefer the
    /// environment (`STRONGROOM_KEY_ENCRYPTION_KEY`). Empty in dev mode: one
    /// is generated into the data dir (with a warning).
    pub encryption_key: String,
    /// After `strongroom keys rotate`, new keys are published at once and
    /// sign only after this many seconds, so relying parties' JWKS caches
    /// have them first.
    pub activation_delay_secs: u64,
    /// How long a retired key stays published for verification (at least the
    /// longest lifetime of anything signed with it).
    pub retention_secs: u64,
    /// How often each instance re-reads the key table (rotation by another
    /// instance).
    pub reload_interval_secs: u64,
}

/// `[subject]`: the `sub` of clients that register neither `subject` nor
/// `subject_type` (`oauth_core::subject`): `customer` (the bank's id of the
/// customer, OIDC `public`) or `consent` (the grant's consent / intent id),
/// for every client (`default`) or for the clients of one profile
/// (`profiles`, by the client's own `fapi_profile` or the deployment's).
/// `pairwise` is a client's own choice (`subject_type = "pairwise"`): its
/// sector comes from its registration, which is checked for it there.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubjectConfig {
    pub default: Option<oauth_core::subject::SubjectKind>,
    pub profiles: std::collections::BTreeMap<String, oauth_core::subject::SubjectKind>,
}

impl SubjectConfig {
    /// The policy's form, checked: known profiles, no pairwise default.
    pub fn to_policy(&self) -> Result<oauth_core::subject::SubjectPolicy, ConfigError> {
        use oauth_core::subject::SubjectKind;
        let no_pairwise = |key: String, k: SubjectKind| {
            if k == SubjectKind::Pairwise {
                Err(ConfigError::new(
                    key,
                    "pairwise is chosen per client (subject_type = \"pairwise\"), whose registration names its sector; the default is customer or consent",
                ))
            } else {
                Ok(k)
            }
        };
        let default = self
            .default
            .map(|k| no_pairwise("subject.default".into(), k))
            .transpose()?;
        let mut profiles = Vec::new();
        for (name, kind) in &self.profiles {
            let key = format!("subject.profiles.{name}");
            let profile: Profile =
                serde_json::from_value(serde_json::json!(name)).map_err(|_| {
                    ConfigError::new(
                        key.clone(),
                        "not a profile (fapi2, fapi2-message-signing, fapi1-advanced or uk-ob)",
                    )
                })?;
            profiles.push((profile, no_pairwise(key, *kind)?));
        }
        Ok(oauth_core::subject::SubjectPolicy {
            default,
            profiles,
            salt: None,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `strongroom=debug,info`, …
    pub level: String,
    pub format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: "https://localhost:8443".into(),
            profile: Profile::Fapi2,
            data_dir: PathBuf::from("data"),
            dev_mode: false,
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            database: DatabaseConfig::default(),
            keys: KeysConfig::default(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            tokens: TokensConfig::default(),
            login: LoginConfig::default(),
            clients: Vec::new(),
            users: Vec::new(),
            hooks: None,
            ciba: None,
            directories: Vec::new(),
            registration: dcr::RegistrationConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
            ui: UiConfig::default(),
            scopes: std::collections::BTreeMap::new(),
            admin: AdminConfig::default(),
            subject: SubjectConfig::default(),
            admin_directories: Vec::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".into(),
            mtls_listen: "127.0.0.1:8444".into(),
            mtls_base_url: String::new(),
            workers: 0,
            tls_handshake_timeout_secs: 3,
            request_head_timeout_secs: 5,
            request_body_timeout_secs: 10,
            max_connections: 0,
            max_connections_per_ip: 0,
            shutdown_timeout_secs: 25,
            admin_listen: "127.0.0.1:9090".into(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            suites: TlsSuites::Fapi2,
            certificate: String::new(),
            private_key: String::new(),
            client_ca: String::new(),
            client_cert_header: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            encryption_key: String::new(),
            activation_delay_secs: 3600,
            retention_secs: 86_400,
            reload_interval_secs: 60,
        }
    }
}

/// Trace export (docs/operations.md §3). Off unless an endpoint is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OpenTelemetry collector's OTLP/HTTP receiver, e.g.
    /// `http://127.0.0.1:4318`: each request's span (and the spans under
    /// it) goes to `<base>/v1/traces` as protobuf, continuing the trace of
    /// a `traceparent` the request carries. Plain http only: the exporter
    /// has no TLS (a collector beside the instance). Empty: no export.
    pub otlp_endpoint: String,
}

impl TelemetryConfig {
    /// Where spans are posted (`<otlp_endpoint>/v1/traces`); `None` when
    /// export is off.
    ///
    /// # Errors
    ///
    /// The reason `otlp_endpoint` is unusable.
    pub fn traces_url(&self) -> Result<Option<String>, String> {
        if self.otlp_endpoint.is_empty() {
            return Ok(None);
        }
        let url = url::Url::parse(&self.otlp_endpoint).map_err(|e| format!("not a URL ({e})"))?;
        if url.scheme() != "http" {
            return Err("must be an http:// URL (the exporter has no TLS: use a collector beside the instance)".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must have no query or fragment".into());
        }
        let base = url.as_str().trim_end_matches('/');
        Ok(Some(format!("{base}/v1/traces")))
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// The environment variables that override the file.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for std::collections::HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|s| s.to_string())
    }
}

impl Config {
    /// Loads the configuration: the file named by `STRONGROOM_CONFIG` (or
    /// [`DEFAULT_CONFIG_PATH`] when it exists; built-in defaults otherwise),
    /// then the environment overrides, then validation.
    pub fn load(env: &impl Env) -> Result<Config, ConfigError> {
        let (path, required) = match env.var("STRONGROOM_CONFIG") {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let mut cfg = if path.exists() || required {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(
                    "STRONGROOM_CONFIG",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Self::parse(&text, &path)?
        } else {
            Config::default()
        };
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text; errors name the file, line and key.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => {
                    let line_no = text[..span.start].matches('\n').count() + 1;
                    let line_text = text.lines().nth(line_no - 1).unwrap_or("").trim();
                    let key = line_text.split('=').next().unwrap_or("").trim().to_string();
                    (line_no, key)
                }
                None => (0, String::new()),
            };
            let message = e.message().replace('\n', " ");
            let key = if key.is_empty() {
                "config".to_string()
            } else {
                key
            };
            ConfigError::new(
                format!("{}:{line}: {key}", path.display()),
                message.trim().to_string(),
            )
        })
    }

    fn apply_env(&mut self, env: &impl Env) -> Result<(), ConfigError> {
        if let Some(v) = env.var("STRONGROOM_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = env.var("STRONGROOM_MTLS_LISTEN") {
            self.server.mtls_listen = if v == "none" { String::new() } else { v };
        }
        if let Some(v) = env.var("STRONGROOM_ISSUER") {
            self.issuer = v;
        }
        if let Some(v) = env.var("STRONGROOM_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env.var("STRONGROOM_DATABASE_URL") {
            self.database.url = v;
        }
        if let Some(v) = env.var("STRONGROOM_ADMIN_LISTEN") {
            self.server.admin_listen = if v == "none" { String::new() } else { v };
        }
        if let Some(v) = env.var("STRONGROOM_KEY_ENCRYPTION_KEY") {
            self.keys.encryption_key = v;
        }
        if let Some(v) = env.var("STRONGROOM_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint = v;
        }
        if let Some(v) = env.var("STRONGROOM_LOG") {
            // `debug`, `json`, `debug,json`, `strongroom=trace,info,json`
            let mut levels = Vec::new();
            for part in v.split(',').map(str::trim) {
                match part {
                    "json" => self.log.format = LogFormat::Json,
                    "text" => self.log.format = LogFormat::Text,
                    "" => {}
                    other => levels.push(other),
                }
            }
            if !levels.is_empty() {
                self.log.level = levels.join(",");
            }
        }
        Ok(())
    }

    /// Checks every value that can be checked without touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Templates, catalogs and assets are read and rendered once here, so
        // that check-config fails on a broken theme as serve does.
        crate::theme::load_theme(&self.ui, &self.scopes)?;
        self.limits
            .validate()
            .map_err(|(k, p)| ConfigError::new(k, p))?;
        if let Some(h) = &self.hooks {
            h.validate().map_err(|e| match e.split_once(": ") {
                Some((k, p)) => ConfigError::new(k, p),
                None => ConfigError::new("hooks", e),
            })?;
        }
        if let Some(c) = &self.ciba {
            c.validate().map_err(|e| match e.split_once(": ") {
                Some((k, p)) => ConfigError::new(k, p),
                None => ConfigError::new("ciba", e),
            })?;
            if self.hooks.is_none() {
                return Err(ConfigError::new(
                    "ciba",
                    "needs [hooks]: the bank's decisions are result tokens under its key handling and bank API credentials",
                ));
            }
        }
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| ConfigError::new("issuer", format!("not a URL ({e})")))?;
        if issuer.scheme() != "https" {
            return Err(ConfigError::new("issuer", "must be an https URL"));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(ConfigError::new(
                "issuer",
                "must not have a query or fragment",
            ));
        }
        if self.issuer.ends_with('/') {
            return Err(ConfigError::new(
                "issuer",
                "must not end with '/' (it is compared as an exact string)",
            ));
        }
        parse_addr("server.listen", &self.server.listen)?;
        if !self.server.mtls_listen.is_empty() {
            let mtls = parse_addr("server.mtls_listen", &self.server.mtls_listen)?;
            if mtls == parse_addr("server.listen", &self.server.listen)? {
                return Err(ConfigError::new(
                    "server.mtls_listen",
                    "must differ from server.listen (leave it empty for single-listener mode)",
                ));
            }
        }
        for (key, secs) in [
            (
                "server.tls_handshake_timeout_secs",
                self.server.tls_handshake_timeout_secs,
            ),
            (
                "server.request_head_timeout_secs",
                self.server.request_head_timeout_secs,
            ),
            (
                "server.request_body_timeout_secs",
                self.server.request_body_timeout_secs,
            ),
        ] {
            // Zero would turn the deadline off, which is what issue 22 was.
            if !(1..=300).contains(&secs) {
                return Err(ConfigError::new(key, "must be between 1 and 300"));
            }
        }
        if !(1..=3600).contains(&self.server.shutdown_timeout_secs) {
            return Err(ConfigError::new(
                "server.shutdown_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        self.telemetry
            .traces_url()
            .map_err(|p| ConfigError::new("telemetry.otlp_endpoint", p))?;
        if !self.server.admin_listen.is_empty() {
            let admin = parse_addr("server.admin_listen", &self.server.admin_listen)?;
            let mut public = vec![parse_addr("server.listen", &self.server.listen)?];
            if !self.server.mtls_listen.is_empty() {
                public.push(parse_addr("server.mtls_listen", &self.server.mtls_listen)?);
            }
            if admin.port() != 0 && public.contains(&admin) {
                return Err(ConfigError::new(
                    "server.admin_listen",
                    "must differ from server.listen and server.mtls_listen (metrics never go on a public listener)",
                ));
            }
        }
        self.validate_admin()?;
        if self.server.max_connections_per_ip > 0
            && self.server.max_connections > 0
            && self.server.max_connections_per_ip > self.server.max_connections
        {
            return Err(ConfigError::new(
                "server.max_connections_per_ip",
                "must not exceed server.max_connections",
            ));
        }
        if !self.server.mtls_base_url.is_empty() {
            let u = url::Url::parse(&self.server.mtls_base_url).map_err(|e| {
                ConfigError::new("server.mtls_base_url", format!("not a URL ({e})"))
            })?;
            if u.scheme() != "https" {
                return Err(ConfigError::new(
                    "server.mtls_base_url",
                    "must be an https URL",
                ));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("data_dir", "must not be empty"));
        }
        if self.tls.certificate.is_empty() != self.tls.private_key.is_empty() {
            return Err(ConfigError::new(
                "tls.private_key",
                "tls.certificate and tls.private_key are set together or not at all",
            ));
        }
        if !self.tls.client_cert_header.is_empty() && self.tls.trusted_proxies.is_empty() {
            return Err(ConfigError::new(
                "tls.trusted_proxies",
                "must list the proxy addresses when tls.client_cert_header is set",
            ));
        }
        for p in &self.tls.trusted_proxies {
            p.parse::<crate::tls::IpCidr>().map_err(|_| {
                ConfigError::new(
                    "tls.trusted_proxies",
                    format!("'{p}' is not an IP address or CIDR"),
                )
            })?;
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite://") || is_postgres(&url)) {
            return Err(ConfigError::new(
                "database.url",
                "must start with sqlite://, postgres:// or postgresql://",
            ));
        }
        if self.database.max_connections == Some(0) {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if !(1..=3600).contains(&self.database.purge_interval_secs) {
            return Err(ConfigError::new(
                "database.purge_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.keys.encryption_key.is_empty() && !self.dev_mode {
            return Err(ConfigError::new(
                "keys.encryption_key",
                "required outside dev mode (set STRONGROOM_KEY_ENCRYPTION_KEY; `strongroom keys new-kek` makes one)",
            ));
        }
        if self.keys.reload_interval_secs == 0 {
            return Err(ConfigError::new(
                "keys.reload_interval_secs",
                "must be at least 1",
            ));
        }
        self.tokens.validate()?;
        for (key, v) in [
            (
                "login.session_lifetime_secs",
                self.login.session_lifetime_secs,
            ),
            (
                "login.interaction_lifetime_secs",
                self.login.interaction_lifetime_secs,
            ),
        ] {
            if v <= 0 {
                return Err(ConfigError::new(key, "must be positive"));
            }
        }
        self.subject.to_policy()?;
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("clients[{i}] ({})", c.metadata.client_id);
            if !seen.insert(c.metadata.client_id.clone()) {
                return Err(ConfigError::new(key, "duplicate client_id"));
            }
            c.metadata.validate_for(self.profile).map_err(|e| {
                ConfigError::new(key.clone(), e.safe_description().unwrap_or_default())
            })?;
            let secret_method = matches!(
                c.metadata.token_endpoint_auth_method,
                oauth_core::client::AuthMethod::ClientSecretBasic
                    | oauth_core::client::AuthMethod::ClientSecretPost
            );
            if secret_method != c.client_secret_sha256.is_some() {
                return Err(ConfigError::new(
                    key,
                    "client_secret_sha256 is required for client_secret_* methods and only for them",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}] ({})", u.username);
            if u.username.is_empty() || !seen.insert(u.username.clone()) {
                return Err(ConfigError::new(
                    key,
                    "username must be non-empty and unique",
                ));
            }
            match (&u.password_hash, &u.password) {
                (Some(h), None) => {
                    argon2::password_hash::phc::PasswordHash::new(h).map_err(|_| {
                        ConfigError::new(
                            key.clone(),
                            "password_hash is not a PHC string (use `strongroom hash-password`)",
                        )
                    })?;
                }
                (None, Some(_)) if self.dev_mode => {}
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        key,
                        "clear-text password is only allowed in dev mode; use password_hash",
                    ));
                }
                _ => {
                    return Err(ConfigError::new(
                        key,
                        "exactly one of password_hash or password",
                    ));
                }
            }
        }
        dcr::config::validate(&self.directories, &self.registration)
            .map_err(|(k, p)| ConfigError::new(k, p))?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::new("log.level", format!("invalid filter ({e})")))?;
        Ok(())
    }

    /// The database URL, defaulting to SQLite in the data dir.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("strongroom.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// The public base URL of the mTLS listener, when there is one.
    pub fn mtls_base_url(&self) -> Option<String> {
        if self.server.mtls_listen.is_empty() {
            return None;
        }
        if !self.server.mtls_base_url.is_empty() {
            return Some(self.server.mtls_base_url.trim_end_matches('/').to_string());
        }
        let mut u = url::Url::parse(&self.issuer).ok()?;
        let port = self
            .server
            .mtls_listen
            .rsplit(':')
            .next()?
            .parse::<u16>()
            .ok()?;
        u.set_port(Some(port)).ok()?;
        Some(u.as_str().trim_end_matches('/').to_string())
    }
}

impl TokensConfig {
    /// The rules of `[tokens]`, for the file and the admin API alike.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let min = oauth_core::sender_constraint::dpop::MIN_IAT_WINDOW_SECS;
        if !(min..=300).contains(&self.dpop_iat_window_secs) {
            return Err(ConfigError::new(
                "tokens.dpop_iat_window_secs",
                format!("must be between {min} and 300"),
            ));
        }
        if !(1..=60).contains(&self.code_lifetime_secs) {
            return Err(ConfigError::new(
                "tokens.code_lifetime_secs",
                "must be between 1 and 60 (FAPI 2.0 §5.3.2.1)",
            ));
        }
        if !(10..=600).contains(&self.par_lifetime_secs) {
            return Err(ConfigError::new(
                "tokens.par_lifetime_secs",
                "must be between 10 and 600",
            ));
        }
        for (key, v) in [
            (
                "tokens.access_token_lifetime_secs",
                self.access_token_lifetime_secs,
            ),
            (
                "tokens.refresh_token_lifetime_secs",
                self.refresh_token_lifetime_secs,
            ),
            ("tokens.id_token_lifetime_secs", self.id_token_lifetime_secs),
        ] {
            if v <= 0 {
                return Err(ConfigError::new(key, "must be positive"));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The admin listener's base URL (`admin.url`, else derived from
    /// `server.admin_listen`), without a trailing slash.
    pub fn admin_url(&self) -> String {
        if self.admin.url.is_empty() {
            let scheme = if self.admin.tls { "https" } else { "http" };
            format!("{scheme}://{}", self.server.admin_listen)
        } else {
            self.admin.url.trim_end_matches('/').to_owned()
        }
    }

    fn validate_admin(&self) -> Result<(), ConfigError> {
        if !(50..=60_000).contains(&self.admin.propagation_ms) {
            return Err(ConfigError::new(
                "admin.propagation_ms",
                "must be between 50 and 60000",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.admin.max_body_bytes) {
            return Err(ConfigError::new(
                "admin.max_body_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        if !self.admin.url.is_empty() {
            let u = url::Url::parse(&self.admin.url)
                .map_err(|e| ConfigError::new("admin.url", format!("not a URL ({e})")))?;
            if !matches!(u.scheme(), "http" | "https") || u.query().is_some() {
                return Err(ConfigError::new(
                    "admin.url",
                    "must be an http(s) URL without query",
                ));
            }
        }
        if !self.admin.client_subject_dns.is_empty() && !self.admin.tls {
            return Err(ConfigError::new(
                "admin.client_subject_dns",
                "needs admin.tls = true (certificates come with TLS)",
            ));
        }
        if let Some(s) = self.admin.file_owned.iter().find(|s| {
            !matches!(
                s.as_str(),
                "tokens" | "scopes" | "hooks" | "ciba" | "directories"
            )
        }) {
            return Err(ConfigError::new(
                "admin.file_owned",
                format!(
                    "{s}: only tokens, scopes, hooks, ciba and directories can be declared file-owned"
                ),
            ));
        }
        for dn in &self.admin.client_subject_dns {
            oauth_core::cert::DistinguishedName::parse_rfc4514(dn)
                .map_err(|e| ConfigError::new("admin.client_subject_dns", format!("{dn}: {e}")))?;
        }
        for (i, t) in self.admin.trusted_issuers.iter().enumerate() {
            let key = format!("admin.trusted_issuers[{i}]");
            if !t.jwks_uri.starts_with("https://") {
                return Err(ConfigError::new(&key, "jwks_uri must be an https URL"));
            }
            if t.issuer.is_empty() || t.audience.is_empty() {
                return Err(ConfigError::new(&key, "issuer and audience are required"));
            }
            if t.algorithms.is_empty()
                || t.algorithms
                    .iter()
                    .any(|a| oauth_core::keys::JwsAlg::parse(a).is_err())
            {
                return Err(ConfigError::new(
                    &key,
                    "algorithms must name PS256, ES256 or EdDSA",
                ));
            }
        }
        Ok(())
    }
}

fn parse_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse::<SocketAddr>()
        .map_err(|_| ConfigError::new(key, format!("'{v}' is not host:port (e.g. 0.0.0.0:8443)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_pool_size_defaults_by_backend_and_a_configured_one_wins() {
        let db = |url: &str, max: Option<u32>| DatabaseConfig {
            url: url.into(),
            max_connections: max,
            ..DatabaseConfig::default()
        };
        assert_eq!(db("", None).pool_size(), 4);
        assert_eq!(db("sqlite://data/op.db", None).pool_size(), 4);
        assert_eq!(db("postgres://op@db/op", None).pool_size(), 16);
        assert_eq!(db("postgresql://op@db/op", None).pool_size(), 16);
        assert_eq!(db("sqlite://data/op.db", Some(9)).pool_size(), 9);
        assert_eq!(db("postgres://op@db/op", Some(2)).pool_size(), 2);
    }

    #[test]
    fn the_shipped_config_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/strongroom.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg = Config::parse(&text, &path).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.issuer, "https://localhost:8443");
        assert!(cfg.dev_mode);
    }

    #[test]
    fn the_postgres_example_is_valid_once_a_kek_is_given() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/examples/production-postgres.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut cfg = Config::parse(&text, &path).unwrap();
        assert!(!cfg.dev_mode);
        assert!(cfg.database_url().starts_with("postgres://"));
        let env: HashMap<&str, &str> = [("STRONGROOM_KEY_ENCRYPTION_KEY", "x")]
            .into_iter()
            .collect();
        cfg.apply_env(&env).unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn trace_export_is_off_unless_an_http_endpoint_is_given() {
        let mut cfg = Config::default();
        assert_eq!(cfg.telemetry.traces_url(), Ok(None));
        let env: HashMap<&str, &str> = [("STRONGROOM_OTLP_ENDPOINT", "http://otel:4318/")]
            .into_iter()
            .collect();
        cfg.apply_env(&env).unwrap();
        assert_eq!(
            cfg.telemetry.traces_url(),
            Ok(Some("http://otel:4318/v1/traces".into()))
        );
        for bad in ["https://otel:4318", "otel:4318", "http://otel:4318/?x=1"] {
            cfg.telemetry.otlp_endpoint = bad.into();
            assert!(cfg.telemetry.traces_url().is_err(), "{bad}");
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/strongroom.toml");
        let mut shipped = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        shipped.telemetry.otlp_endpoint = "https://otel:4318".into();
        let err = shipped.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("telemetry.otlp_endpoint: must be an http"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_file_line_and_key() {
        let err = Config::parse(
            "issuer = \"https://a\"\nisuer = \"x\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with("c.toml:2: isuer:"), "{line}");
        assert!(line.contains("unknown field"), "{line}");
        assert!(!line.contains('\n'));
    }

    /// `[subject]`: per-profile and deployment defaults of customer or
    /// consent; a pairwise default or an unknown profile stops the start.
    #[test]
    fn subject_defaults_are_checked() {
        use oauth_core::subject::SubjectKind;
        let cfg = Config::parse(
            "[subject]\ndefault = \"customer\"\nprofiles = { \"uk-ob\" = \"consent\" }\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let p = cfg.subject.to_policy().unwrap();
        assert_eq!(p.default, Some(SubjectKind::Customer));
        assert_eq!(
            p.profiles,
            vec![(Profile::UkOpenBanking, SubjectKind::Consent)]
        );
        for (text, key) in [
            ("[subject]\ndefault = \"pairwise\"\n", "subject.default"),
            (
                "[subject]\nprofiles = { \"uk-ob\" = \"pairwise\" }\n",
                "subject.profiles.uk-ob",
            ),
            (
                "[subject]\nprofiles = { \"uk\" = \"consent\" }\n",
                "subject.profiles.uk",
            ),
        ] {
            let cfg =
                Config::parse(&format!("dev_mode = true\n{text}"), Path::new("c.toml")).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("{key}:")), "{text}: {err}");
        }
        let err = Config::parse("[subject]\ndefault = \"intent\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("default"), "{err}");
    }

    /// The UK example shows TPPs the consent id, as OBC expects by default.
    #[test]
    fn the_uk_example_shows_uk_tpps_the_consent_id() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples/uk-ob.toml");
        let cfg = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            cfg.subject.to_policy().unwrap().profiles,
            vec![(
                Profile::UkOpenBanking,
                oauth_core::subject::SubjectKind::Consent
            )]
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = Config::parse("[server]\nworkers = \"many\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().starts_with("c.toml:2: workers:"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut cfg = Config {
            dev_mode: true,
            ..Config::default()
        };
        let env: HashMap<&str, &str> = [
            ("STRONGROOM_LISTEN", "0.0.0.0:9443"),
            ("STRONGROOM_MTLS_LISTEN", "0.0.0.0:9444"),
            ("STRONGROOM_ISSUER", "https://op.bank.example"),
            ("STRONGROOM_DATA_DIR", "/var/lib/strongroom"),
            ("STRONGROOM_DATABASE_URL", "postgres://op@db/op"),
            ("STRONGROOM_LOG", "debug,json"),
        ]
        .into_iter()
        .collect();
        cfg.apply_env(&env).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.server.listen, "0.0.0.0:9443");
        assert_eq!(cfg.issuer, "https://op.bank.example");
        assert_eq!(cfg.database_url(), "postgres://op@db/op");
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.log.level, "debug");
        assert_eq!(cfg.mtls_base_url().unwrap(), "https://op.bank.example:9444");
    }

    #[test]
    fn bad_values_name_their_key() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.issuer = "http://op".into()), "issuer"),
            (Box::new(|c| c.issuer = "https://op/?x=1".into()), "issuer"),
            (Box::new(|c| c.issuer = "https://op/".into()), "issuer"),
            (
                Box::new(|c| c.server.listen = "localhost".into()),
                "server.listen",
            ),
            (
                Box::new(|c| c.server.mtls_listen = "127.0.0.1:8443".into()),
                "server.mtls_listen",
            ),
            (
                Box::new(|c| c.database.url = "mysql://x".into()),
                "database.url",
            ),
            (
                Box::new(|c| c.database.max_connections = Some(0)),
                "database.max_connections",
            ),
            (
                Box::new(|c| c.database.purge_interval_secs = 0),
                "database.purge_interval_secs",
            ),
            (
                Box::new(|c| c.database.purge_interval_secs = 3601),
                "database.purge_interval_secs",
            ),
            (
                Box::new(|c| c.tls.certificate = "a.pem".into()),
                "tls.private_key",
            ),
            (
                Box::new(|c| c.tls.client_cert_header = "Client-Cert".into()),
                "tls.trusted_proxies",
            ),
            (
                Box::new(|c| c.tls.trusted_proxies = vec!["10.0.0.0/99".into()]),
                "tls.trusted_proxies",
            ),
            (Box::new(|c| c.log.level = "info,[".into()), "log.level"),
            (
                Box::new(|c| c.server.request_body_timeout_secs = 0),
                "server.request_body_timeout_secs",
            ),
            (
                Box::new(|c| c.server.tls_handshake_timeout_secs = 301),
                "server.tls_handshake_timeout_secs",
            ),
            (
                Box::new(|c| c.server.request_head_timeout_secs = 0),
                "server.request_head_timeout_secs",
            ),
            (
                Box::new(|c| {
                    c.server.max_connections = 10;
                    c.server.max_connections_per_ip = 11;
                }),
                "server.max_connections_per_ip",
            ),
            (
                Box::new(|c| {
                    c.dev_mode = false;
                    c.keys.encryption_key.clear()
                }),
                "keys.encryption_key",
            ),
        ];
        for (mutate, key) in cases {
            let mut cfg = Config {
                dev_mode: true,
                ..Config::default()
            };
            mutate(&mut cfg);
            let err = cfg.validate().expect_err(key);
            assert_eq!(err.key, key, "{err}");
        }
    }

    #[test]
    fn missing_config_file_named_by_env_is_an_error() {
        let env: HashMap<&str, &str> = [("STRONGROOM_CONFIG", "/nonexistent/strongroom.toml")]
            .into_iter()
            .collect();
        let err = Config::load(&env).unwrap_err();
        assert_eq!(err.key, "STRONGROOM_CONFIG");
    }
}

//! Start-up: everything between a validated [`Config`] and a listening server.
//! Every failure here is a [`StartError`]: one line naming the problem, and
//! exit code 2 from `main`.

use oauth_core::client::AuthMethod;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, web};
use oauth_core::client::Client;
use oauth_core::discovery::{Capabilities, ProviderMetadata};
use oauth_core::jwks_resolver::JwksResolver;
use oauth_core::keys::{KeyEncryptionKey, KeySet, Keys};
use oauth_core::policy::Policy;
use oauth_core::secret::now;
use oauth_core::sender_constraint::nonce::DpopNonces;
use oauth_core::storage::{ClientRepository, KeyRepository, ReplayCache, TokenRepository};
use token_store::Store;

use crate::config::{Config, LogFormat, TlsSuites};
use crate::http::{self, AppState};
use crate::tls::{ClientCertSource, ClientCertTrust, ServerTls, TlsProfile};
use crate::users::UserDirectory;
use crate::{api, interaction};

/// A start-up failure, printed as one line.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

fn fail(what: impl std::fmt::Display) -> StartError {
    StartError(what.to_string().replace('\n', " "))
}

/// Sets up logging, and trace export when `[telemetry] otlp_endpoint` is
/// set (the pipeline returned must live until the server has stopped),
/// once; later calls are ignored (tests start several servers).
pub fn init_logging(cfg: &Config) -> Option<crate::otlp::Export> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Validated with the configuration; a client that cannot be built is
    // reported and the server runs without export.
    let pipeline = match cfg.telemetry.traces_url() {
        Ok(Some(url)) => crate::otlp::pipeline(&url)
            .inspect_err(|e| eprintln!("strongroom: no trace export: {e}"))
            .ok(),
        _ => None,
    };
    let (export, tracer) = pipeline.unzip();
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(ClientFaults)
        .with(tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t)));
    let installed = match cfg.log.format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json())
            .try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    }
    .is_ok();
    export.filter(|_| installed)
}

/// Connections that actix-http ended because of the client (malformed
/// HTTP, a reset, a timeout), counted instead of logged (see
/// [`ClientFaults`]).
static CLIENT_FAULTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many connections have ended with a client fault so far.
pub fn client_faults() -> u64 {
    CLIENT_FAULTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// actix-http logs every connection it ends on a client's fault as
/// `ERROR actix_http::h1::dispatcher: stream error: …` (a parse error, a
/// reset, a timeout): one line per hostile or broken client, at the level
/// that should mean the server is in trouble (issue 22 §6). This layer
/// drops exactly those events and counts them; the background task
/// reports the count at debug level once a minute. The dispatcher's other
/// errors (`Response payload stream error`, `Internal server error`) are
/// the server's and still logged.
struct ClientFaults;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ClientFaults {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        let meta = event.metadata();
        if meta.target() != "actix_http::h1::dispatcher" || *meta.level() != tracing::Level::ERROR {
            return true;
        }
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}").starts_with("stream error");
                }
            }
        }
        let mut m = Message(false);
        event.record(&mut m);
        if m.0 {
            CLIENT_FAULTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        !m.0
    }
}

/// Installs the one process-wide rustls crypto provider (aws-lc-rs), so no
/// code path can pick another at run time.
///
/// OpenSSL, which libpq uses for TLS to PostgreSQL and josekit for the
/// consent bridge's encrypted handoffs, is not touched here. On PostgreSQL,
/// token-store initialises it at start-up, before the first connection and
/// without the exit handler that crashed processes on their way out while
/// r2d2 was still connecting (`token_store::init_openssl`). On SQLite there
/// is no libpq, so whatever josekit's first use initialises is harmless, and
/// without encrypted handoffs OpenSSL is never initialised at all: that
/// keeps 1.7 MiB of libcrypto out of memory (measured: 21.6 → 19.9 MiB
/// resident at start).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Makes sure the data dir exists and can be written.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        fail(format_args!(
            "data_dir {}: cannot create ({e})",
            dir.display()
        ))
    })?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(|e| {
        fail(format_args!(
            "data_dir {}: not writable ({e})",
            dir.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The key-encryption key: from the configuration, or in dev mode generated
/// once into the data dir.
pub fn key_encryption_key(cfg: &Config) -> Result<KeyEncryptionKey, StartError> {
    if !cfg.keys.encryption_key.is_empty() {
        return KeyEncryptionKey::from_base64url(cfg.keys.encryption_key.trim())
            .map_err(|e| fail(format_args!("keys.encryption_key: {e}")));
    }
    let path = cfg.data_dir.join("key-encryption-key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return KeyEncryptionKey::from_base64url(text.trim())
            .map_err(|e| fail(format_args!("{}: {e}", path.display())));
    }
    let kek = KeyEncryptionKey::generate();
    write_private(&path, kek.to_base64url().as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "dev mode: generated a key-encryption key into the data dir; in production set STRONGROOM_KEY_ENCRYPTION_KEY"
    );
    Ok(kek)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), StartError> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| fail(format_args!("{}: cannot write ({e})", path.display())))?;
    f.write_all(data)
        .map_err(|e| fail(format_args!("{}: cannot write ({e})", path.display())))
}

/// How long a starting server waits for one that is stopping to release a
/// SQLite database ([`Store::claim_database`]).
const CLAIM_WAIT: Duration = Duration::from_secs(10);

/// Opens the database and applies pending migrations.
pub async fn open_store(cfg: &Config) -> Result<Store, StartError> {
    open(cfg, false).await
}

/// Opens the database; a server claims it ([`Store::claim_database`])
/// before it applies pending migrations, so a second server refused the
/// claim changes nothing.
async fn open(cfg: &Config, claim: bool) -> Result<Store, StartError> {
    let url = cfg.database_url();
    let mut store = Store::connect(&url, cfg.database.pool_size())
        .map_err(|e| fail(format_args!("database.url: {e}")))?;
    if claim {
        store
            .claim_database(CLAIM_WAIT)
            .await
            .map_err(|e| fail(format_args!("database.url: {e}")))?;
    }
    store
        .migrate()
        .await
        .map_err(|e| fail(format_args!("database migrations: {e}")))?;
    Ok(store)
}

/// Loads the provider's keys, generating any that are missing (first start).
pub async fn load_keys(store: &Store, kek: &KeyEncryptionKey) -> Result<KeySet, StartError> {
    let t = now();
    let existing = store
        .list_keys(t)
        .await
        .map_err(|e| fail(format_args!("loading keys: {e}")))?;
    let missing = oauth_core::keys::missing_keys(&existing, kek, t).map_err(key_error)?;
    let records = if missing.is_empty() {
        existing
    } else {
        for k in &missing {
            tracing::info!(
                target: "strongroom::security",
                event = "key_generated",
                kid = %k.kid,
                alg = %k.alg,
                active_from = k.active_from,
                "generated provider key"
            );
        }
        store
            .rotate_keys(missing, Vec::new())
            .await
            .map_err(|e| fail(format_args!("storing keys: {e}")))?;
        store
            .list_keys(t)
            .await
            .map_err(|e| fail(format_args!("loading keys: {e}")))?
    };
    KeySet::build(records, kek, t).map_err(key_error)
}

/// A wrong key-encryption key is a configuration error: name the key.
fn key_error(e: oauth_core::keys::KeyError) -> StartError {
    match e {
        oauth_core::keys::KeyError::WrongKek => fail(format_args!(
            "keys.encryption_key: {e} (use the key these keys were sealed with)"
        )),
        other => fail(format_args!("keys: {other}")),
    }
}

/// In dev mode, outbound HTTPS (client `jwks_uri`) also trusts the dev CA,
/// so TPP test servers with dev certificates work.
/// The key that seals CIBA's `auth_req_id` handles and outbox bodies.
pub fn ciba_delivery_key(kek: &KeyEncryptionKey) -> Vec<u8> {
    kek.derive_secret(b"strongroom ciba auth_req_id").to_vec()
}

pub(crate) fn material_dev_ca(cfg: &Config) -> Option<PathBuf> {
    let ca = cfg.data_dir.join("dev-ca.pem");
    (cfg.dev_mode && ca.exists()).then_some(ca)
}

/// Where the TLS material comes from.
pub struct TlsMaterial {
    pub chain: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The configured certificate, or dev certificates in the data dir.
pub fn tls_material(cfg: &Config) -> Result<TlsMaterial, StartError> {
    if !cfg.tls.certificate.is_empty() {
        return Ok(TlsMaterial {
            chain: PathBuf::from(&cfg.tls.certificate),
            key: PathBuf::from(&cfg.tls.private_key),
            client_ca: (!cfg.tls.client_ca.is_empty()).then(|| PathBuf::from(&cfg.tls.client_ca)),
        });
    }
    let dev = crate::devcerts::ensure_dev_certs(&cfg.data_dir)
        .map_err(|e| fail(format_args!("dev certificates: {e}")))?;
    if dev.created {
        tracing::warn!(ca = %dev.ca_cert.display(), "generated a dev CA and a localhost certificate; trust this CA file in your client");
    } else {
        tracing::info!(ca = %dev.ca_cert.display(), "using the dev certificate; its CA is this file");
    }
    let client_ca = if !cfg.tls.client_ca.is_empty() {
        Some(PathBuf::from(&cfg.tls.client_ca))
    } else if cfg.dev_mode {
        Some(dev.ca_cert.clone())
    } else {
        None
    };
    Ok(TlsMaterial {
        chain: dev.server_chain,
        key: dev.server_key,
        client_ca,
    })
}

/// The dev client of `strongroom try` ([`crate::try_flow`]): in dev mode,
/// when the generated dev CA is also the client CA (no configured server
/// certificate or client CA), so that its certificate is trusted. Declared
/// with the static clients; outside dev mode it is not, and the sync of
/// static clients removes it from the store.
fn dev_client(cfg: &Config) -> Result<Option<crate::config::StaticClient>, StartError> {
    use crate::try_flow::CLIENT_ID;
    if !cfg.dev_mode {
        return Ok(None);
    }
    if cfg
        .clients
        .iter()
        .any(|c| c.metadata.client_id == CLIENT_ID)
    {
        return Err(fail(format_args!(
            "clients ({CLIENT_ID}): this client_id is the dev client's in dev mode; choose another"
        )));
    }
    if !cfg.tls.certificate.is_empty() || !cfg.tls.client_ca.is_empty() {
        tracing::info!(
            "dev mode: no dev client for `strongroom try` (it needs the generated dev CA, and tls.certificate or tls.client_ca is set)"
        );
        return Ok(None);
    }
    let client = crate::try_flow::ensure_dev_client(&cfg.data_dir)
        .map_err(|e| fail(format_args!("dev client: {e}")))?;
    tracing::info!("dev mode: try the flow with: make try   (or: strongroom try)");
    Ok(Some(client))
}

/// The dev admin client of `strongroom admin` ([`crate::admin_cli`]): in
/// dev mode, with the internal listener on, under the same condition as
/// the dev client (its certificate is issued by the generated dev CA).
fn dev_admin_client(cfg: &Config) -> Result<Option<crate::config::StaticClient>, StartError> {
    use crate::admin_cli::DEV_ADMIN;
    if !cfg.dev_mode
        || cfg.server.admin_listen.is_empty()
        || !cfg.tls.certificate.is_empty()
        || !cfg.tls.client_ca.is_empty()
    {
        return Ok(None);
    }
    if cfg
        .clients
        .iter()
        .any(|c| c.metadata.client_id == DEV_ADMIN)
    {
        return Err(fail(format_args!(
            "clients ({DEV_ADMIN}): this client_id is the dev admin client's in dev mode; choose another"
        )));
    }
    let client = crate::admin_cli::ensure_dev_admin(&cfg.data_dir)
        .map_err(|e| fail(format_args!("dev admin client: {e}")))?;
    tracing::info!(
        "dev mode: the admin API answers `strongroom admin` (e.g. strongroom admin clients list)"
    );
    Ok(Some(client))
}

/// The protocol policy, derived once from the configuration.
pub fn policy(cfg: &Config, kek: &KeyEncryptionKey) -> Policy {
    policy_with(cfg, &cfg.tokens, kek)
}

/// The salt of pairwise subjects (OIDC Core §8.1), derived from the
/// key-encryption key: the same on every instance and after every
/// restart, and never stored.
pub fn pairwise_salt(kek: &KeyEncryptionKey) -> oauth_core::subject::PairwiseSalt {
    oauth_core::subject::PairwiseSalt::new(&kek.derive_secret(b"strongroom pairwise subject"))
}

/// [`policy`] with `tokens` in place of the file's `[tokens]` (the admin
/// API's change).
pub fn policy_with(
    cfg: &Config,
    tokens: &crate::config::TokensConfig,
    kek: &KeyEncryptionKey,
) -> Policy {
    let mut p = Policy::new(cfg.issuer.clone(), cfg.profile);
    // Checked by Config::validate at start.
    p.subject = cfg.subject.to_policy().unwrap_or_default();
    p.subject.salt = Some(pairwise_salt(kek));
    p.par_lifetime_secs = tokens.par_lifetime_secs;
    p.code_lifetime_secs = tokens.code_lifetime_secs;
    p.access_token_lifetime_secs = tokens.access_token_lifetime_secs;
    p.refresh_token_lifetime_secs = tokens.refresh_token_lifetime_secs;
    p.id_token_lifetime_secs = tokens.id_token_lifetime_secs;
    p.rotate_refresh_tokens = tokens.rotate_refresh_tokens;
    p.access_token_format = tokens.access_token_format;
    p.require_dpop_nonce = tokens.require_dpop_nonce;
    p.dpop_iat_window_secs = tokens.dpop_iat_window_secs;
    p
}

/// What the server offers, for discovery: exactly the routes mounted in
/// [`serve`] and the algorithms the key set and the allow-list support.
pub fn capabilities(cfg: &Config, policy: &Policy, keys: &Keys) -> Capabilities {
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let profile = policy.profile;
    let jws_algs = strs(&["PS256", "ES256", "EdDSA"]);
    let mut claims = strs(&[
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "at_hash",
        "name",
        "given_name",
        "family_name",
        "email",
        "email_verified",
    ]);
    claims.push(CONSENT_CLAIM.to_string());
    claims.extend(
        cfg.hooks
            .iter()
            .map(|h| h.consent_claim.clone())
            .filter(|c| c != CONSENT_CLAIM),
    );
    let mut grant_types = strs(&["authorization_code", "refresh_token", "client_credentials"]);
    let ciba_on = cfg.ciba.is_some();
    if ciba_on {
        grant_types.push(ciba::GRANT_TYPE.to_string());
    }
    Capabilities {
        jwks_path: http::JWKS_PATH.into(),
        backchannel_path: ciba_on.then(|| crate::ciba::BACKCHANNEL_PATH.to_string()),
        backchannel_token_delivery_modes: strs(&["poll", "ping", "push"]),
        backchannel_request_signing_algs: strs(&["PS256", "ES256"]),
        authorization_path: Some("/authorize".into()),
        token_path: Some(api::TOKEN_PATH.into()),
        par_path: Some(api::PAR_PATH.into()),
        userinfo_path: Some(api::USERINFO_PATH.into()),
        introspection_path: Some(api::INTROSPECTION_PATH.into()),
        revocation_path: Some(api::REVOCATION_PATH.into()),
        mtls_base_url: cfg.mtls_base_url(),
        scopes: policy.scopes.clone(),
        claims,
        response_types: strs(policy.profile.response_types()),
        response_modes: strs(policy.profile.response_modes()),
        grant_types,
        token_endpoint_auth_methods: [
            AuthMethod::PrivateKeyJwt,
            AuthMethod::TlsClientAuth,
            AuthMethod::SelfSignedTlsClientAuth,
        ]
        .into_iter()
        .filter(|m| policy.profile.allows_fapi_auth_method(*m))
        .map(|m| m.as_str().to_string())
        .collect(),
        // The deployment profile's view (Profile::own_signing_algs,
        // request_object_encryption_algs, offers_dpop), as its JWKS is.
        signing_algs: keys
            .signing_algs()
            .iter()
            .filter(|a| profile.own_signing_algs().contains(a))
            .map(|a| a.as_str().to_string())
            .collect(),
        client_auth_signing_algs: jws_algs.clone(),
        request_object_signing_algs: jws_algs.clone(),
        request_object_encryption_algs: strs(profile.request_object_encryption_algs()),
        dpop_signing_algs: if profile.offers_dpop() {
            jws_algs
        } else {
            Vec::new()
        },
        acr_values: std::iter::once(cfg.login.acr.clone())
            .chain(cfg.hooks.iter().flat_map(|h| h.acr_values.clone()))
            .collect(),
        require_pushed_authorization_requests: policy.require_par,
        require_signed_request_object: policy.require_signed_request_object,
        tls_client_certificate_bound_access_tokens: true,
        registration_path: crate::registration::advertised_path(cfg),
        claims_parameter_supported: true,
        ui_locales: strs(&crate::theme::LANGUAGES),
        ..Capabilities::default()
    }
}

/// The claim that carries the bank's consent id in id_tokens.
pub const CONSENT_CLAIM: &str = "openbanking_intent_id";

/// Writes the static clients of the file into the store, and removes static
/// clients the file no longer declares (registered clients are untouched).
pub async fn sync_static_clients(store: &Store, cfg: &Config) -> Result<(), StartError> {
    let t = now();
    let mut declared = std::collections::HashSet::new();
    for c in &cfg.clients {
        let client = Client::new(c.metadata.clone(), c.client_secret_sha256.clone())
            .map_err(|e| fail(format_args!("clients ({}): {e}", c.metadata.client_id)))?;
        if let Some(existing) = store
            .get_client(client.id())
            .await
            .map_err(|e| fail(format_args!("loading clients: {e}")))?
            && existing.origin != "static"
        {
            return Err(fail(format_args!(
                "clients ({}): a registered client already has this client_id",
                client.id()
            )));
        }
        declared.insert(client.id().to_string());
        store
            .put_client(client.to_record("static", t))
            .await
            .map_err(|e| fail(format_args!("storing clients: {e}")))?;
    }
    let all = store
        .list_clients()
        .await
        .map_err(|e| fail(format_args!("loading clients: {e}")))?;
    for c in all
        .into_iter()
        .filter(|c| c.origin == "static" && !declared.contains(&c.client_id))
    {
        tracing::info!(client_id = %c.client_id, "removing a static client no longer in the configuration");
        store
            .delete_client(&c.client_id, t)
            .await
            .map_err(|e| fail(format_args!("removing client {}: {e}", c.client_id)))?;
    }
    Ok(())
}

/// Listening sockets, bound before the server is built (so tests can use
/// port 0 and learn the port first).
pub struct Listeners {
    pub main: TcpListener,
    pub mtls: Option<TcpListener>,
}

impl Listeners {
    pub fn bind(cfg: &Config) -> Result<Listeners, StartError> {
        let bind = |key: &str, addr: &str| {
            TcpListener::bind(addr)
                .map_err(|e| fail(format_args!("{key} {addr}: cannot listen ({e})")))
        };
        Ok(Listeners {
            main: bind("server.listen", &cfg.server.listen)?,
            mtls: if cfg.server.mtls_listen.is_empty() {
                None
            } else {
                Some(bind("server.mtls_listen", &cfg.server.mtls_listen)?)
            },
        })
    }
}

/// A prepared server: state built, sockets bound, not yet running.
pub struct Prepared {
    pub cfg: Arc<Config>,
    pub state: AppState,
    pub tls: ServerTls,
    pub cert_source: web::Data<ClientCertSource>,
    pub trust: Arc<ClientCertTrust>,
    pub kek: Arc<KeyEncryptionKey>,
}

/// What [`check`] built on its way: everything `serve` validates short of
/// binding its listeners.
pub struct Checked {
    pub tls: ServerTls,
    pub trust: Arc<ClientCertTrust>,
    pub cert_source: ClientCertSource,
    pub kek: KeyEncryptionKey,
    pub store: Store,
    pub users: UserDirectory,
    pub bridge: Option<Arc<consent_bridge::Bridge>>,
    pub registrar: Option<Arc<dcr::Registrar>>,
    /// The admin API's directories, from the database.
    pub admin_directories: Vec<dcr::DirectoryConfig>,
    /// `[tokens]`, `[hooks]` and `[ciba]` in force: the admin API's
    /// changes, else the file's.
    pub sections: crate::admin::Sections,
}

/// The one validation path of `serve` ([`prepare`]) and `check-config`,
/// after [`Config::load`] checked the values themselves: the log filter;
/// the data dir exists (or is created) and is writable; the TLS
/// certificate, key and client CA files are readable and parse (dev
/// certificates are made where none are configured, as at start); the
/// key-encryption key decodes and opens the stored keys; the database is
/// reachable, with its pending migrations applied (the stored keys can only
/// be read on the current schema, and the next start would apply them
/// anyway); the users, the consent bridge and the registration settings
/// build. `claim`: take the SQLite database for this process, as a server
/// does ([`Store::claim_database`]).
pub async fn check(cfg: &Config, claim: bool) -> Result<Checked, StartError> {
    install_crypto_provider();
    check_log_filter(&cfg.log.level)?;
    ensure_data_dir(&cfg.data_dir)?;
    let material = tls_material(cfg)?;
    let profile = match cfg.tls.suites {
        TlsSuites::Fapi2 => TlsProfile::Fapi2,
        TlsSuites::Fapi1 => TlsProfile::Fapi1,
    };
    let tls = ServerTls::build(profile, &material.chain, &material.key).map_err(fail)?;
    let trust = Arc::new(ClientCertTrust::new(material.client_ca.as_deref()).map_err(fail)?);
    let cert_source = ClientCertSource::new(
        trust.clone(),
        (!cfg.tls.client_cert_header.is_empty()).then(|| cfg.tls.client_cert_header.clone()),
        &cfg.tls.trusted_proxies,
    )
    .map_err(fail)?;
    let kek = key_encryption_key(cfg)?;
    let store = open(cfg, claim).await?;
    let existing = store
        .list_keys(now())
        .await
        .map_err(|e| fail(format_args!("loading keys: {e}")))?;
    if !existing.is_empty() {
        // Opens every live key with the KEK (a wrong one: WrongKek); keys
        // it would add are only generated here, never stored.
        oauth_core::keys::missing_keys(&existing, &kek, now()).map_err(key_error)?;
    }
    let users = UserDirectory::new(&cfg.users).map_err(|e| fail(format_args!("users: {e}")))?;
    let bridge = crate::bank_api::bridge(cfg, material_dev_ca(cfg).as_deref()).map_err(fail)?;
    let admin_directories = crate::admin::load_directories(&store, cfg)
        .await
        .map_err(|e| fail(format_args!("loading the admin API's directories: {e}")))?;
    let registrar = crate::registration::registrar_with(cfg, &admin_directories).map_err(fail)?;
    let sections = crate::admin::load_sections(&store, &kek, cfg)
        .await
        .map_err(|e| fail(format_args!("loading the admin API's settings: {e}")))?;
    sections
        .tokens
        .validate()
        .map_err(|e| fail(format_args!("the admin API's [tokens]: {e}")))?;
    // `[hooks]` as the admin API left it (the file's when it did not).
    let bridge = if sections.hooks != cfg.hooks {
        let mut with = cfg.clone();
        with.hooks = sections.hooks.clone();
        crate::bank_api::bridge(&with, material_dev_ca(cfg).as_deref())
            .map_err(|e| fail(format_args!("the admin API's [hooks]: {e}")))?
    } else {
        bridge
    };
    Ok(Checked {
        admin_directories,
        sections,
        tls,
        trust,
        cert_source,
        kek,
        store,
        users,
        bridge,
        registrar,
    })
}

/// The levels a filter directive may name (tracing's `LevelFilter`).
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A tracing filter of directives that each name a level: `info`,
/// `strongroom=debug`, `strongroom=debug,info`. tracing takes a bare word
/// such as `verbose` as a target with every level on, so a typo would turn
/// on trace logging of nothing (or of everything) instead of failing.
fn check_log_filter(filter: &str) -> Result<(), StartError> {
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit('=').next().unwrap_or(directive);
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(fail(format_args!(
                "log.level: '{directive}' is neither a level ({}) nor target=level (STRONGROOM_LOG also takes json or text)",
                LOG_LEVELS.join(", ")
            )));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| fail(format_args!("log.level: invalid filter ({e})")))
}

/// Builds everything the server needs from the configuration.
pub async fn prepare(mut cfg: Config) -> Result<Prepared, StartError> {
    let Checked {
        tls,
        trust,
        cert_source,
        kek,
        store,
        users,
        bridge,
        registrar,
        admin_directories,
        sections,
    } = check(&cfg, true).await?;
    cfg.admin_directories = admin_directories;
    let policy_tokens = sections.tokens.clone();
    let ciba_hooks = match &sections.ciba {
        Some(c) => crate::admin::ciba_of(&cfg, c, &kek).map_err(fail)?,
        None => None,
    };
    let cert_source = web::Data::new(cert_source);
    if let Some(client) = dev_client(&cfg)? {
        cfg.clients.push(client);
    }
    if let Some(client) = dev_admin_client(&cfg)? {
        cfg.admin.clients.push(client.metadata.client_id.clone());
        cfg.clients.push(client);
    }
    let keyset = load_keys(&store, &kek).await?;
    let keys = Arc::new(Keys::new(keyset));
    sync_static_clients(&store, &cfg).await?;
    for u in cfg.users.iter().filter(|u| u.password.is_some()) {
        tracing::warn!(username = %u.username, password = u.password.as_deref().unwrap_or(""), "dev mode: demo user for the built-in login page");
    }
    let policy = policy_with(&cfg, &policy_tokens, &kek);
    let metadata = ProviderMetadata::build(&cfg.issuer, &capabilities(&cfg, &policy, &keys));
    let metadata = web::Bytes::from(serde_json::to_vec(&metadata).map_err(fail)?);
    let fetcher = crate::fetch::HttpFetcher::new(material_dev_ca(&cfg).as_deref()).map_err(fail)?;
    // OIDC Registration §5: a static client's sector_identifier_uri is
    // read as a registration's is.
    for c in &cfg.clients {
        oauth_core::subject::check_sector_identifier_uri(&fetcher, &c.metadata)
            .await
            .map_err(|e| {
                fail(format_args!(
                    "clients ({}): {}",
                    c.metadata.client_id,
                    e.safe_description().unwrap_or_default()
                ))
            })?;
    }
    let jwks = Arc::new(JwksResolver::new(fetcher));
    let dpop_nonces = Arc::new(DpopNonces::new(
        &kek.derive_secret(b"strongroom dpop nonces"),
    ));
    Ok(Prepared {
        state: AppState {
            store,
            keys,
            metadata,
            policy_cell: Arc::new(arc_swap::ArcSwap::from_pointee(policy)),
            jwks,
            dpop_nonces,
            users,
            login: Arc::new(cfg.login.clone()),
            consent_claim: Arc::from(
                cfg.hooks
                    .as_ref()
                    .map_or(CONSENT_CLAIM, |h| h.consent_claim.as_str()),
            ),
            bridge_cell: Arc::new(arc_swap::ArcSwapOption::new(bridge)),
            ciba_cell: Arc::new(arc_swap::ArcSwapOption::new(ciba_hooks)),
            registrar: Arc::new(arc_swap::ArcSwapOption::new(registrar)),
            urls: Arc::new(crate::public_url::PublicUrls::new(
                &cfg.issuer,
                cfg.mtls_base_url().as_deref(),
                cert_source.trusted_proxies().to_vec(),
            )),
            theme: Arc::new(crate::theme::load_theme(&cfg.ui, &sections.scopes).map_err(fail)?),
            limits: Arc::new(crate::limits::Limits::new(&cfg.limits)),
        },
        cfg: Arc::new(cfg),
        tls,
        cert_source,
        trust,
        kek: Arc::new(kek),
    })
}

/// Starts the HTTP server on the given sockets and the background tasks
/// (key reload, purge of expired single-use values and tokens).
pub fn serve(p: Prepared, listeners: Listeners) -> Result<actix_web::dev::Server, StartError> {
    let mut state = p.state.clone();
    // Which listener a request reached decides its public base URL.
    state.urls = Arc::new(
        (*state.urls)
            .clone()
            .with_mtls_listener(listeners.mtls.as_ref().and_then(|l| l.local_addr().ok())),
    );
    let cert_source = p.cert_source.clone();
    let workers = if p.cfg.server.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        p.cfg.server.workers
    };
    let single = listeners.mtls.is_none();
    // The background tasks end once the server has stopped and dropped its
    // app factory, which holds the only sender: their store clones (and with
    // them the database's claim) go with the server.
    let (serving, stopped) = tokio::sync::watch::channel(());
    let serving = Arc::new(serving);
    let server_cfg = &p.cfg.server;
    let body_limits = crate::connections::BodyLimits {
        timeout: Duration::from_secs(server_cfg.request_body_timeout_secs),
        max_bytes: crate::registration::HARD_BODY_LIMIT,
    };
    let readiness = web::Data::new(http::Readiness::default());
    let app = move || {
        let _serving = &serving;
        App::new()
            .wrap(actix_web::middleware::from_fn(http::refuse_unclean_uri))
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                crate::connections::read_deadline(body_limits, req, next)
            }))
            .app_data(web::Data::new(state.clone()))
            .app_data(cert_source.clone())
            .app_data(readiness.clone())
            .configure(http::configure_common)
            .configure(api::configure)
            .configure(interaction::configure)
            .configure(crate::registration::configure)
            .configure(crate::bank_api::configure)
            .configure(crate::ciba::configure)
            // Outermost: the request's span and metrics cover every
            // middleware's answer too (a refused URI, a late body).
            .wrap(actix_web::middleware::from_fn(crate::telemetry::observe))
    };
    let listener_count = if single { 1 } else { 2 };
    let fd_limit = crate::connections::raise_fd_limit().unwrap_or(1024);
    // SQLite's pool has a writer and a checkpointer beside the readers,
    // and each connection may hold the database, its WAL and shm files.
    let db_fds = u64::from(p.cfg.database.pool_size() + 2) * 3;
    let caps = crate::connections::ConnectionCaps::derive(
        server_cfg.max_connections,
        server_cfg.max_connections_per_ip,
        fd_limit,
        db_fds,
        listener_count,
    );
    tracing::info!(
        open_files = fd_limit,
        per_listener = caps.per_listener,
        per_address = caps.per_ip,
        "connection caps"
    );
    let exempt = p.cert_source.trusted_proxies().to_vec();
    let admission = crate::connections::Admission::new(caps.per_ip, exempt);
    let deadlines = crate::connections::Deadlines {
        tls_handshake: Duration::from_secs(server_cfg.tls_handshake_timeout_secs),
        request_head: Duration::from_secs(server_cfg.request_head_timeout_secs),
    };
    // Handshakes in progress are bounded by the connection caps and the
    // handshake deadline, not by actix's 256 per worker, which idle
    // connections could fill (issue 22 §3). The setting is process-wide.
    actix_tls::accept::max_concurrent_tls_connect(caps.per_listener * listener_count);
    let on_connect: crate::connections::OnConnect =
        Arc::new(crate::tls::on_connect(p.trust.clone()));
    let mut server = actix_server::ServerBuilder::default()
        .workers(workers)
        // Database work runs on the blocking pool; threads beyond the
        // database connections would only wait for one (and cost memory).
        .worker_max_blocking_threads((p.cfg.database.pool_size() as usize / workers).max(2) + 2)
        // Our caps refuse connections; actix's (per worker) would only stop
        // accepting, which leaves everyone waiting.
        .max_concurrent_connections(caps.per_listener * listener_count + 1)
        // SIGTERM: the listeners close, keep-alive connections are told to
        // close after their current request (connections::listen_tls), and
        // requests in progress get this long. The signals are `main`'s
        // ([`stop_on_signals`]), so that a second one can end the drain.
        .shutdown_timeout(server_cfg.shutdown_timeout_secs)
        .disable_signals();
    let main_tls = if single {
        p.tls.mtls()
    } else {
        p.tls.browser()
    };
    let listen = |server, name: &str, key: &str, lst: TcpListener, tls| {
        crate::connections::listen_tls(
            server,
            name,
            lst,
            app.clone(),
            tls,
            crate::connections::Gate::new(admission.clone(), caps.per_listener),
            deadlines,
            on_connect.clone(),
        )
        .map_err(|e| fail(format_args!("{key}: {e}")))
    };
    server = listen(server, "main", "server.listen", listeners.main, main_tls)?;
    if let Some(mtls) = listeners.mtls {
        server = listen(server, "mtls", "server.mtls_listen", mtls, p.tls.mtls())?;
    }
    let server = server.run();
    let mut state = p.state;
    state.store = state.store.unclaimed();
    spawn_background(state, p.kek, p.cfg, stopped);
    Ok(server)
}

/// Binds the internal listener (`server.admin_listen`) when one is
/// configured.
pub fn bind_admin(cfg: &Config) -> Result<Option<TcpListener>, StartError> {
    if cfg.server.admin_listen.is_empty() {
        return Ok(None);
    }
    TcpListener::bind(&cfg.server.admin_listen)
        .map(Some)
        .map_err(|e| {
            fail(format_args!(
                "server.admin_listen {}: cannot listen ({e})",
                cfg.server.admin_listen
            ))
        })
}

/// The internal listener: plain HTTP, an actix server of its own with one
/// worker, so that a scrape answers while the public workers are busy.
/// Serves [`crate::telemetry::configure_admin`] (`/metrics`; the admin API
/// later) and nothing of the public routes. Installs the metrics recorder:
/// without this listener nothing is recorded.
pub fn serve_admin(p: &Prepared, lst: TcpListener) -> Result<actix_web::dev::Server, StartError> {
    let addr = lst.local_addr().map_err(fail)?;
    let handle = crate::telemetry::recorder();
    let state = web::Data::new(p.state.clone());
    let admin = web::Data::new(crate::admin::AdminState::new(
        p.state.clone(),
        p.cfg.clone(),
        p.kek.clone(),
    ));
    let readiness = web::Data::new(http::Readiness::default());
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(admin.clone())
            .app_data(readiness.clone())
            .configure(crate::telemetry::configure_admin)
            .configure(crate::admin::configure)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1);
    // `admin.tls`: the server certificate, client certificates asked for
    // and evaluated as on the mTLS listener (admin.client_subject_dns).
    let server = if p.cfg.admin.tls {
        server
            .on_connect(crate::tls::on_connect(p.trust.clone()))
            .listen_rustls_0_23(lst, p.tls.mtls())
    } else {
        server.listen(lst)
    }
    .map_err(|e| fail(format_args!("server.admin_listen {addr}: {e}")))?
    .run();
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(crate::telemetry::UPKEEP_EVERY).await;
            handle.run_upkeep();
        }
    });
    tracing::info!(%addr, "internal listener (metrics) is serving");
    Ok(server)
}

/// SIGTERM stops `server` gracefully ([`serve`]: `shutdown_timeout_secs`),
/// SIGINT and SIGQUIT at once; any second signal during the drain exits
/// the process at once, with status 1.
pub fn stop_on_signals(server: actix_web::dev::ServerHandle) -> Result<(), StartError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| signal(kind).map_err(|e| fail(format_args!("signals: {e}")));
        let mut term = listen(SignalKind::terminate())?;
        let mut int = listen(SignalKind::interrupt())?;
        let mut quit = listen(SignalKind::quit())?;
        actix_web::rt::spawn(async move {
            let graceful = tokio::select! {
                _ = term.recv() => true,
                _ = int.recv() => false,
                _ = quit.recv() => false,
            };
            if graceful {
                tracing::info!("SIGTERM: closing the listeners, draining requests in progress");
            } else {
                tracing::info!("SIGINT/SIGQUIT: stopping now");
            }
            let stopping = server.stop(graceful);
            actix_web::rt::spawn(stopping);
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
                _ = quit.recv() => {},
            }
            tracing::warn!("second signal during shutdown: exiting now");
            std::process::exit(1);
        });
    }
    #[cfg(not(unix))]
    let _ = server;
    Ok(())
}

/// Sleeps for `period`; false once the server has stopped (see [`serve`]).
async fn still_serving(stopped: &mut tokio::sync::watch::Receiver<()>, period: Duration) -> bool {
    tokio::select! {
        () = actix_web::rt::time::sleep(period) => true,
        _ = stopped.changed() => false,
    }
}

/// Rebuilds the key set from the database (the periodic reload, and after
/// an admin change of the keys); on failure the current keys stay.
pub async fn reload_keys(state: &AppState, kek: &KeyEncryptionKey) {
    let t = now();
    match state.store.list_keys(t).await {
        Ok(records) => match KeySet::build(records, kek, t) {
            Ok(set) => state.keys.reload(set),
            Err(e) => tracing::error!(error = %e, "key reload failed; keeping the current keys"),
        },
        Err(e) => tracing::warn!(error = %e, "key reload: database unavailable"),
    }
}

fn spawn_background(
    state: AppState,
    kek: Arc<KeyEncryptionKey>,
    cfg: Arc<Config>,
    stopped: tokio::sync::watch::Receiver<()>,
) {
    let reload_every = Duration::from_secs(cfg.keys.reload_interval_secs);
    let keys_state = state.clone();
    let keys_kek = kek.clone();
    let mut keys_stopped = stopped.clone();
    actix_web::rt::spawn(async move {
        while still_serving(&mut keys_stopped, reload_every).await {
            reload_keys(&keys_state, &keys_kek).await;
        }
    });
    // Admin changes made on another instance (docs/admin.md): the settings
    // version moves with each; keys are reloaded when it does.
    let poll_every = Duration::from_millis(cfg.admin.propagation_ms);
    let version_state = state.clone();
    let version_kek = kek.clone();
    let version_cfg = cfg.clone();
    let mut version_stopped = stopped.clone();
    actix_web::rt::spawn(async move {
        let mut seen = version_state.store.settings_version().await.ok();
        while still_serving(&mut version_stopped, poll_every).await {
            match version_state.store.settings_version().await {
                Ok(v) if Some(v) != seen => {
                    seen = Some(v);
                    reload_keys(&version_state, &version_kek).await;
                    crate::admin::reload_directories(&version_state, &version_cfg).await;
                    crate::admin::reload_sections(&version_state, &version_kek, &version_cfg).await;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "settings version: database unavailable"),
            }
        }
    });
    if state.ciba().is_some() {
        // The CIBA outbox (ciba::outbox): deliveries due again after a
        // failed attempt, or whose holder died, are claimed by one instance.
        // The hooks are read each round: the admin API may change them.
        let outbox = state.store.clone();
        let ciba_state = state.clone();
        let mut outbox_stopped = stopped.clone();
        actix_web::rt::spawn(async move {
            while still_serving(&mut outbox_stopped, Duration::from_millis(250)).await {
                let Some(hooks) = ciba_state.ciba() else {
                    continue;
                };
                match ciba::outbox::claim_due(&outbox, &hooks, ciba::outbox::now_ms(), 32).await {
                    Ok(claimed) => {
                        for d in claimed {
                            let (outbox, hooks) = (outbox.clone(), hooks.clone());
                            actix_web::rt::spawn(async move {
                                ciba::outbox::attempt(&outbox, &hooks, &d).await;
                            });
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "CIBA outbox sweep: database unavailable")
                    }
                }
            }
        });
    }
    let mut stopped = stopped;
    // Often, so each sweep is small: expired rows go a minute's worth at a
    // time by default, not five minutes' at once (database.purge_interval_secs).
    let purge_every = Duration::from_secs(cfg.database.purge_interval_secs);
    actix_web::rt::spawn(async move {
        let mut faults = client_faults();
        while still_serving(&mut stopped, purge_every).await {
            let total = client_faults();
            if total > faults {
                tracing::debug!(
                    since_last_sweep = total - faults,
                    total,
                    "connections ended by a client fault (malformed HTTP, reset, timeout)"
                );
                faults = total;
            }
            state.limits.forget_idle();
            let t = now();
            if let Err(e) = state.store.purge_expired(t).await {
                tracing::warn!(error = %e, "purging the replay cache failed");
            }
            if let Err(e) = state.store.purge_expired_tokens(t).await {
                tracing::warn!(error = %e, "purging expired tokens failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Records the messages of the events that reach it.
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }

    #[test]
    fn client_stream_errors_are_counted_not_logged() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry()
            .with(ClientFaults)
            .with(Seen(seen.clone()));
        let before = client_faults();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}", "parse error");
            tracing::error!(target: "actix_http::h1::dispatcher", "Response payload stream error: x");
            tracing::error!(target: "actix_http::h1::dispatcher", "Internal server error: unexpected eof");
            tracing::error!(target: "strongroom::api", "stream error: ours");
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "Response payload stream error: x",
                "Internal server error: unexpected eof",
                "stream error: ours"
            ]
        );
        assert!(client_faults() > before);
    }
}

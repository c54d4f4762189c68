//! Starts a real Strongroom on ephemeral ports with a fresh data dir and a
//! fresh database (SQLite file, or a new database on the PostgreSQL server
//! named by `STRONGROOM_TEST_DATABASE_URL`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, PoisonError};

use strongroom::config::Config;
use strongroom::startup::{self, Listeners};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A fresh database URL for `backend`.
pub fn fresh_database(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("strongroom.db").display()),
        Backend::Postgres => create_pg_database(),
    }
}

/// Creates a uniquely named database on the test PostgreSQL server.
pub fn create_pg_database() -> String {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let admin = std::env::var("STRONGROOM_TEST_DATABASE_URL").expect(
        "STRONGROOM_TEST_DATABASE_URL is not set: PostgreSQL tests need a server. \
         Run `make test` or `scripts/with-postgres.sh cargo test`",
    );
    let name = format!(
        "sr_srv_{}",
        oauth_core::secret::random_token(9)
            .to_lowercase()
            .replace(['-', '_'], "x")
    );
    // Before this process's first PostgreSQL connection (see init_openssl).
    token_store::init_openssl();
    let mut conn = PgConnection::establish(&admin).expect("connect to the test PostgreSQL");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// Drops a test database (used to simulate the database going away).
pub fn drop_pg_database(url: &str) {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let admin = std::env::var("STRONGROOM_TEST_DATABASE_URL").unwrap();
    let name = url.rsplit('/').next().unwrap();
    let mut conn = PgConnection::establish(&admin).unwrap();
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .unwrap();
}

/// What the servers of this test process logged at info and above, kept in
/// memory so tests can check what an operator would read.
static LOGGED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGGED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Instead of the server's own subscriber (`startup::init_logging`): errors
/// printed through the test harness, as the configured `error` level did,
/// and everything at info and above captured for [`logged`].
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _, fmt};
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let captured = fmt::layer()
            .with_ansi(false)
            .with_writer(|| Capture)
            .with_filter(EnvFilter::new("info"));
        let printed = fmt::layer()
            .with_test_writer()
            .with_filter(EnvFilter::new("error"));
        let _ = tracing_subscriber::registry()
            .with(captured)
            .with(printed)
            .try_init();
    });
}

/// The log lines captured so far (see [`init_logging`]).
pub fn logged() -> Vec<String> {
    let bytes = LOGGED.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

pub struct TestServer {
    pub issuer: String,
    pub mtls_base: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub main_port: u16,
    pub mtls_port: u16,
    /// `None` for a server this process did not start ([`TestServer::external`]).
    handle: Option<actix_web::dev::ServerHandle>,
    _tmp: Option<Arc<tempfile::TempDir>>,
}

pub struct Setup {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub tmp: Option<Arc<tempfile::TempDir>>,
    /// Static clients and users written into the configuration.
    pub clients: Vec<serde_json::Value>,
    pub users: Vec<serde_json::Value>,
    /// Applied to the configuration last.
    pub tweak: Option<fn(&mut Config)>,
}

impl Setup {
    pub fn new(backend: Backend) -> Setup {
        let tmp = Arc::new(tempfile::tempdir().unwrap());
        let data_dir = tmp.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let database_url = fresh_database(backend, tmp.path());
        Setup {
            data_dir,
            database_url,
            tmp: Some(tmp),
            clients: Vec::new(),
            users: Vec::new(),
            tweak: None,
        }
    }

    /// Makes the dev CA exist before the server starts, so tests can issue
    /// client certificates from it; returns (ca cert PEM, ca key PEM).
    pub fn dev_ca(&self) -> (String, String) {
        let dev = strongroom::devcerts::ensure_dev_certs(&self.data_dir).unwrap();
        (
            std::fs::read_to_string(dev.ca_cert).unwrap(),
            std::fs::read_to_string(dev.ca_key).unwrap(),
        )
    }

    /// A dev-mode configuration on ephemeral ports.
    pub fn config(&self, main_port: u16, mtls_port: u16) -> Config {
        let mut cfg = Config {
            issuer: format!("https://localhost:{main_port}"),
            data_dir: self.data_dir.clone(),
            dev_mode: true,
            ..Config::default()
        };
        cfg.server.listen = format!("127.0.0.1:{main_port}");
        cfg.server.mtls_listen = format!("127.0.0.1:{mtls_port}");
        cfg.server.workers = 2;
        cfg.database.url = self.database_url.clone();
        cfg.database.max_connections = Some(4);
        cfg.log.level = "error".into();
        cfg.clients = self
            .clients
            .iter()
            .map(|c| serde_json::from_value(c.clone()).expect("test client config"))
            .collect();
        cfg.users = self
            .users
            .iter()
            .map(|u| serde_json::from_value(u.clone()).expect("test user config"))
            .collect();
        if let Some(tweak) = self.tweak {
            tweak(&mut cfg);
        }
        cfg.validate().unwrap();
        cfg
    }

    /// Starts a server on this setup's data dir and database.
    pub async fn start(&self) -> TestServer {
        self.start_at(0, 0).await
    }

    /// [`Setup::start`] on given ports (0: any), so that a restarted server
    /// keeps its issuer and endpoint URLs.
    pub async fn start_at(&self, main_port: u16, mtls_port: u16) -> TestServer {
        let main = TcpListener::bind(("127.0.0.1", main_port)).unwrap();
        let mtls = TcpListener::bind(("127.0.0.1", mtls_port)).unwrap();
        let main_port = main.local_addr().unwrap().port();
        let mtls_port = mtls.local_addr().unwrap().port();
        let cfg = self.config(main_port, mtls_port);
        init_logging();
        let issuer = cfg.issuer.clone();
        let mtls_base = cfg.mtls_base_url().unwrap();
        let prepared = startup::prepare(cfg).await.expect("server prepares");
        let server = startup::serve(
            prepared,
            Listeners {
                main,
                mtls: Some(mtls),
            },
        )
        .expect("server starts");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        TestServer {
            issuer,
            mtls_base,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            main_port,
            mtls_port,
            handle: Some(handle),
            _tmp: self.tmp.clone(),
        }
    }
}

impl Setup {
    /// Starts `cfg` as it is (a configuration file's, say) on this setup's
    /// data dir and database, on the one listener `main` (`cfg`'s
    /// `mtls_listen` must be empty: the single-listener layout).
    pub async fn start_single(&self, mut cfg: Config, main: TcpListener) -> TestServer {
        let main_port = main.local_addr().unwrap().port();
        cfg.data_dir = self.data_dir.clone();
        cfg.database.url = self.database_url.clone();
        cfg.server.listen = format!("127.0.0.1:{main_port}");
        cfg.server.admin_listen = String::new();
        assert!(
            cfg.server.mtls_listen.is_empty(),
            "a single-listener config"
        );
        cfg.validate().unwrap();
        init_logging();
        let issuer = cfg.issuer.clone();
        let prepared = startup::prepare(cfg).await.expect("server prepares");
        let server =
            startup::serve(prepared, Listeners { main, mtls: None }).expect("server starts");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        TestServer {
            mtls_base: issuer.clone(),
            issuer,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            main_port,
            mtls_port: main_port,
            handle: Some(handle),
            _tmp: self.tmp.clone(),
        }
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Setup::new(backend).start().await
    }

    pub async fn stop(self) {
        if let Some(handle) = self.handle {
            handle.stop(true).await;
        }
    }

    /// A server another process runs (the real binary) on `setup`'s data
    /// dir, as the helpers that take a [`TestServer`] see it.
    pub fn external(setup: &Setup, main_port: u16, mtls_port: u16) -> TestServer {
        TestServer {
            issuer: format!("https://localhost:{main_port}"),
            mtls_base: format!("https://localhost:{mtls_port}"),
            data_dir: setup.data_dir.clone(),
            database_url: setup.database_url.clone(),
            main_port,
            mtls_port,
            handle: None,
            _tmp: setup.tmp.clone(),
        }
    }

    pub fn dev_ca(&self) -> PathBuf {
        self.data_dir.join("dev-ca.pem")
    }

    /// An HTTPS client trusting the dev CA, optionally presenting a client
    /// certificate (PEM cert + key).
    pub fn client(&self, identity: Option<(&str, &str)>) -> reqwest::Client {
        https_client(&self.dev_ca(), identity, false)
    }

    /// A browser: keeps cookies, does not follow redirects.
    pub fn browser(&self) -> reqwest::Client {
        https_client(&self.dev_ca(), None, true)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    pub fn mtls_url(&self, path: &str) -> String {
        format!("{}{}", self.mtls_base, path)
    }

    /// The discovery document (OpenID Connect Discovery §4).
    pub async fn discovery(&self) -> serde_json::Value {
        self.client(None)
            .get(self.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// An HTTPS client on the one crypto provider (aws-lc-rs), trusting `ca`.
pub fn https_client(ca: &Path, identity: Option<(&str, &str)>, cookies: bool) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .build()
        .unwrap()
}

//! Starts the Strongroom binary on ephemeral ports with a generated
//! configuration: its own CA, server certificate, suite clients and user.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::flow::{Client, Env, PASSWORD, Plan, USER};
use crate::jose::{Pki, https_client};

pub struct Running {
    pub env: Env,
    /// The CIBA plan's bank, notification receiver and ping clients.
    pub ciba: Option<std::sync::Arc<crate::ciba::Side>>,
    /// The FAPI 1.0 plan's openbanking_uk deployment and its bank.
    pub uk: Option<Box<crate::fapi1::Uk>>,
    child: tokio::process::Child,
    pub log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Running {
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The binary under test: $STRONGROOM_BIN or target/debug/strongroom.
pub fn binary() -> PathBuf {
    std::env::var_os("STRONGROOM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/strongroom")
        })
}

/// A database URL: SQLite in `dir`, or a fresh database on the PostgreSQL
/// server of $STRONGROOM_TEST_DATABASE_URL (created with `psql`).
pub fn database(postgres: bool, dir: &std::path::Path, tag: &str) -> Result<String, String> {
    if !postgres {
        return Ok(format!("sqlite://{}", dir.join("strongroom.db").display()));
    }
    let admin = std::env::var("STRONGROOM_TEST_DATABASE_URL").map_err(|_| {
        "--backend postgres needs STRONGROOM_TEST_DATABASE_URL (run through scripts/with-postgres.sh)"
            .to_string()
    })?;
    let name = format!(
        "sr_conf_{tag}_{}",
        crate::jose::random(6)
            .to_lowercase()
            .replace(['-', '_'], "x")
    );
    let out = std::process::Command::new("psql")
        .arg(&admin)
        .arg("-qc")
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql CREATE DATABASE: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Ok(format!("{base}/{name}"))
}

/// What every instance gets before its plan adds clients: a temporary
/// directory, the suite's CA and a server certificate, ports, and the base
/// configuration (issuer, listeners, TLS, database, log, the test user).
pub struct Prepared {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub pki: Pki,
    pub issuer: String,
    pub cfg: Value,
}

/// `rsa`: an RSA server certificate (the FAPI 1.0 / FAPI-CIBA TLS 1.2
/// suites are all `*_RSA_*`).
pub fn prepare(tag: &str, postgres: bool, rsa: bool) -> Result<Prepared, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path().to_path_buf();
    let pki = Pki::new();
    let server = pki.server(&["localhost", "127.0.0.1"], rsa);
    let write = |name: &str, text: &str| -> Result<String, String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{name}: {e}"))?;
        Ok(p.display().to_string())
    };
    let ca_path = write("ca.pem", &pki.ca_pem)?;
    let cert_path = write("server.pem", &server.cert_pem)?;
    let key_path = write("server-key.pem", &server.key_pem)?;
    let (port, mtls_port) = (free_port()?, free_port()?);
    let issuer = format!("https://localhost:{port}");
    let cfg = json!({
        "issuer": issuer,
        "data_dir": dir.join("data").display().to_string(),
        "dev_mode": true,
        "server": {"listen": format!("127.0.0.1:{port}"), "mtls_listen": format!("127.0.0.1:{mtls_port}"), "workers": 2},
        "tls": {"certificate": cert_path, "private_key": key_path, "client_ca": ca_path},
        "database": {"url": database(postgres, &dir, tag)?, "max_connections": 4},
        "log": {"level": "warn"},
        "users": [{"username": USER, "password": PASSWORD, "sub": "conformance-sub-0001",
                   "claims": {"name": "Conformance User", "given_name": "Conformance", "family_name": "User",
                              "email": "user@conformance.example", "email_verified": true}}],
    });
    Ok(Prepared {
        tmp,
        dir,
        pki,
        issuer,
        cfg,
    })
}

pub async fn start(plan: Plan, postgres: bool) -> Result<Running, String> {
    let tag = match plan {
        Plan::Sp => "sp",
        Plan::Ms => "ms",
        Plan::Ciba => return crate::ciba::start(postgres).await,
        Plan::Fapi1 => return crate::fapi1::start(postgres).await,
    };
    let mut p = prepare(tag, postgres, false)?;
    let pki = &p.pki;
    let mk = |name: &str, mtls: bool, second: bool| Client::generate(name, mtls, second, pki).0;
    let pkjwt = [
        mk("conf-pkjwt-1", false, false),
        mk("conf-pkjwt-2", false, true),
    ];
    let mtls = [
        mk("conf-mtls-1", true, false),
        mk("conf-mtls-2", true, true),
    ];
    let clients: Vec<Value> = pkjwt
        .iter()
        .chain(mtls.iter())
        .map(Client::metadata)
        .collect();
    p.cfg["profile"] = json!(match plan {
        Plan::Ms => "fapi2-message-signing",
        _ => "fapi2",
    });
    p.cfg["clients"] = json!(clients);
    launch(p, pkjwt, mtls, None).await
}

/// Writes the configuration, starts the binary and waits for discovery.
pub async fn launch(
    p: Prepared,
    pkjwt: [Client; 2],
    mtls: [Client; 2],
    ciba: Option<std::sync::Arc<crate::ciba::Side>>,
) -> Result<Running, String> {
    let Prepared {
        tmp,
        dir,
        pki,
        issuer,
        cfg,
    } = p;
    let write = |name: &str, text: &str| -> Result<String, String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{name}: {e}"))?;
        Ok(p.display().to_string())
    };
    let mut cfg = cfg;
    // For spot checks that a module fails when the behaviour it guards is
    // broken: JSON merged into the generated configuration, e.g.
    // CONFORMANCE_CONFIG_OVERRIDE='{"tokens":{"code_lifetime_secs":120}}'.
    if let Ok(o) = std::env::var("CONFORMANCE_CONFIG_OVERRIDE") {
        let o: Value =
            serde_json::from_str(&o).map_err(|e| format!("CONFORMANCE_CONFIG_OVERRIDE: {e}"))?;
        merge(&mut cfg, &o);
    }
    let toml = toml::to_string(&cfg).map_err(|e| format!("config TOML: {e}"))?;
    let cfg_path = write("strongroom.toml", &toml)?;
    let log = dir.join("strongroom.log");
    let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let bin = binary();
    let mut child = tokio::process::Command::new(&bin)
        .arg("serve")
        .env("STRONGROOM_CONFIG", &cfg_path)
        // The internal listener's default port would collide between servers.
        .env("STRONGROOM_ADMIN_LISTEN", "none")
        .env_remove("STRONGROOM_DATABASE_URL")
        .env_remove("STRONGROOM_ISSUER")
        .stdout(logf.try_clone().map_err(|e| e.to_string())?)
        .stderr(logf)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "starting {}: {e} (build it with `cargo build -p strongroom`)",
                bin.display()
            )
        })?;
    let http = https_client(&pki.ca_pem, None, false);
    let disc_url = format!("{issuer}/.well-known/openid-configuration");
    let mut discovery = Value::Null;
    for _ in 0..240 {
        if let Ok(r) = http.get(&disc_url).send().await
            && r.status() == 200
            && let Ok(v) = r.json::<Value>().await
        {
            discovery = v;
            break;
        }
        // A server that exited (a configuration it refuses) will not come up.
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if discovery.is_null() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(format!(
            "Strongroom did not come up at {issuer}: {}",
            text.chars().take(2000).collect::<String>()
        ));
    }
    let jwks_uri = discovery["jwks_uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let jwks = http
        .get(&jwks_uri)
        .send()
        .await
        .map_err(|e| format!("JWKS: {e}"))?
        .json::<Value>()
        .await
        .map_err(|e| format!("JWKS: {e}"))?;
    Ok(Running {
        env: Env {
            issuer,
            ca_pem: pki.ca_pem.clone(),
            discovery,
            jwks,
            http,
            pkjwt,
            mtls,
            fapi1: false,
        },
        ciba,
        uk: None,
        child,
        log,
        _tmp: tmp,
    })
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

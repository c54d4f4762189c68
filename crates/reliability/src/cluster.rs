//! The system under test: one PostgreSQL (started by scripts/with-postgres.sh,
//! stopped and started again here for the outage) and several Strongroom
//! processes on it that share one issuer, as behind a load balancer.
//!
//! Instance `i` listens on 127.0.0.`i+1` with the same ports as the others,
//! so every URL a client signs (DPoP `htu`, assertion `aud`, the issuer) is
//! the same on all of them; a client reaches instance `i` through an HTTPS
//! client whose `localhost` resolves to that address.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::flow::{Client, Env};
use conformance::jose::{Identity, https_client_at};
use serde_json::{Value, json};

pub type R<T = ()> = Result<T, String>;

/// The `iss` of the software statements (the one `[[directories]]` entry).
pub const DIRECTORY_ISS: &str = "Strongroom Reliability Directory";

/// The PostgreSQL of scripts/with-postgres.sh, which exports where it lives.
pub struct Pg {
    bin: PathBuf,
    data: PathBuf,
    opts: String,
    log: PathBuf,
}

fn env(name: &str) -> R<String> {
    std::env::var(name).map_err(|_| {
        format!("{name} is not set: run through scripts/with-postgres.sh (make reliability)")
    })
}

impl Pg {
    pub fn from_env() -> R<Pg> {
        Ok(Pg {
            bin: env("STRONGROOM_TEST_PG_BIN")?.into(),
            data: env("STRONGROOM_TEST_PG_DATA")?.into(),
            opts: env("STRONGROOM_TEST_PG_OPTS")?,
            log: env("STRONGROOM_TEST_PG_LOG")?.into(),
        })
    }

    /// pg_ctl as the owner of the cluster (initdb refuses root, so the
    /// script runs the server as `postgres` then).
    fn pg_ctl(&self, args: &[&str]) -> R {
        let tool = self.bin.join("pg_ctl");
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&tool);
            c
        } else {
            std::process::Command::new(&tool)
        };
        let out = cmd
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `immediate`: the server dies as in a crash (no shutdown checkpoint),
    /// every connection is cut.
    pub fn stop(&self) -> R {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"])
    }

    pub fn start(&self) -> R {
        let log = self.log.display().to_string();
        self.pg_ctl(&["-l", &log, "-w", "-t", "60", "-o", &self.opts, "start"])
    }
}

pub struct Instance {
    pub ip: IpAddr,
    cfg_path: PathBuf,
    pub log: PathBuf,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
    /// The clients and endpoints, reaching this instance.
    pub env: Env,
    /// The CIBA poll clients (private_key_jwt, tls_client_auth) here.
    pub ciba: [Client; 2],
}

pub struct Cluster {
    pub instances: Vec<Instance>,
    /// The CA of the server's and the clients' certificates.
    pub pki: conformance::jose::Pki,
    /// The signing key of the software-statement directory (`[[directories]]`).
    pub directory: conformance::jose::ClientKey,
    /// The one database of all instances.
    pub db_url: String,
    /// The bank behind the CIBA hooks (it approves through the decision API).
    pub side: Arc<conformance::ciba::Side>,
    pub issuer: String,
    _tmp: tempfile::TempDir,
}

fn dup_identity(i: &Identity) -> Identity {
    Identity {
        cert_pem: i.cert_pem.clone(),
        key_pem: i.key_pem.clone(),
        subject_dn: i.subject_dn.clone(),
    }
}

/// `c` with an HTTPS client that reaches the instance at `ip`.
fn client_at(c: &Client, ca: &str, ip: IpAddr) -> Client {
    Client {
        id: c.id.clone(),
        key: c.key.clone(),
        dpop: c.dpop.clone(),
        redirect_uri: c.redirect_uri.clone(),
        identity: c.identity.as_ref().map(dup_identity),
        mtls: c.mtls,
        http: https_client_at(ca, c.identity.as_ref(), None, Some(ip)),
    }
}

fn kek(bin: &Path) -> R<String> {
    let out = std::process::Command::new(bin)
        .args(["keys", "new-kek"])
        .output()
        .map_err(|e| format!("{} keys new-kek: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(str::trim)
        .find(|l| l.len() >= 43 && !l.contains(' '))
        .map(str::to_string)
        .ok_or(format!("keys new-kek printed no key: {text}"))
}

impl Cluster {
    /// Writes one configuration per instance (same issuer, clients, users,
    /// key-encryption key and database) and starts them one after the
    /// other (the first creates the provider's keys).
    pub async fn start(n: usize, pool: u32, sqlite: bool) -> R<Cluster> {
        Self::start_with(n, pool, sqlite, &|_, _| {}).await
    }

    /// [`Cluster::start`], each instance's configuration passed through
    /// `tweak` (its index, the configuration as JSON) before it is written.
    pub async fn start_with(
        n: usize,
        pool: u32,
        sqlite: bool,
        tweak: &dyn Fn(usize, &mut Value),
    ) -> R<Cluster> {
        let bin = conformance::server::binary();
        // The suite's own set-up (CA, server certificate for localhost,
        // ports, the test user), then one listener address per instance.
        let mut base = conformance::server::prepare("rel", false, false)?;
        // The bank behind the CIBA hooks, and the CIBA clients (poll).
        let (side, ciba_pkjwt, ciba_mtls) = conformance::ciba::configure(&mut base).await?;
        let ciba_clients = base.cfg["clients"].as_array().cloned().unwrap_or_default();
        let (tmp, dir, pki, issuer) = (base.tmp, base.dir, base.pki, base.issuer);
        let port = |key: &str| -> R<String> {
            base.cfg["server"][key]
                .as_str()
                .and_then(|a| a.rsplit_once(':'))
                .map(|(_, p)| p.to_string())
                .ok_or(format!("prepare: no server.{key}"))
        };
        let (port, mtls_port) = (port("listen")?, port("mtls_listen")?);
        let db = conformance::server::database(!sqlite, &dir, "rel")?;
        let mk =
            |name: &str, mtls: bool, second: bool| Client::generate(name, mtls, second, &pki).0;
        let pkjwt = [
            mk("rel-pkjwt-1", false, false),
            mk("rel-pkjwt-2", false, true),
        ];
        let mtls = [mk("rel-mtls-1", true, false), mk("rel-mtls-2", true, true)];
        let mut clients: Vec<Value> = pkjwt
            .iter()
            .chain(mtls.iter())
            .map(Client::metadata)
            .collect();
        clients.extend(ciba_clients);
        let kek = kek(&bin)?;
        let directory = conformance::jose::ClientKey::generate(
            jsonwebtoken::Algorithm::PS256,
            "rel-directory-1",
        );
        let mut instances = Vec::new();
        let mut discovery = Value::Null;
        let mut jwks = Value::Null;
        for i in 0..n {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + i as u8));
            let mut cfg = base.cfg.clone();
            cfg["profile"] = json!("fapi2");
            let data = dir.join(format!("data-{i}"));
            std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
            // Outbound HTTPS of a dev-mode Strongroom trusts this CA (CIBA ping).
            std::fs::write(data.join("dev-ca.pem"), &pki.ca_pem).map_err(|e| e.to_string())?;
            cfg["data_dir"] = json!(data.display().to_string());
            cfg["server"]["listen"] = json!(format!("{ip}:{port}"));
            cfg["server"]["mtls_listen"] = json!(format!("{ip}:{mtls_port}"));
            cfg["server"]["mtls_base_url"] = json!(format!("https://localhost:{mtls_port}"));
            cfg["database"] = json!({"url": db, "max_connections": pool});
            cfg["keys"] = json!({"encryption_key": kek});
            cfg["tokens"] = json!({"rotate_refresh_tokens": true});
            cfg["clients"] = json!(clients);
            cfg["directories"] = json!([{
                "name": "reliability",
                "issuer": DIRECTORY_ISS,
                "jwks": {"keys": [directory.jwk]},
                "max_ssa_age_secs": 600,
                "base_scopes": ["openid"],
                "role_scopes": {"AISP": ["accounts"]},
                "rules": "uk-ob",
            }]);
            tweak(i, &mut cfg);
            let toml = toml::to_string(&cfg).map_err(|e| format!("config TOML: {e}"))?;
            let cfg_path = dir.join(format!("strongroom-{i}.toml"));
            std::fs::write(&cfg_path, toml).map_err(|e| e.to_string())?;
            let log = dir.join(format!("strongroom-{i}.log"));
            let http = https_client_at(&pki.ca_pem, None, None, Some(ip));
            let mut inst = Instance {
                ip,
                cfg_path,
                log,
                child: tokio::sync::Mutex::new(None),
                env: Env {
                    issuer: issuer.clone(),
                    ca_pem: pki.ca_pem.clone(),
                    discovery: Value::Null,
                    jwks: Value::Null,
                    http,
                    pkjwt: [
                        client_at(&pkjwt[0], &pki.ca_pem, ip),
                        client_at(&pkjwt[1], &pki.ca_pem, ip),
                    ],
                    mtls: [
                        client_at(&mtls[0], &pki.ca_pem, ip),
                        client_at(&mtls[1], &pki.ca_pem, ip),
                    ],
                    fapi1: false,
                },
                ciba: [
                    client_at(&ciba_pkjwt[0], &pki.ca_pem, ip),
                    client_at(&ciba_mtls[0], &pki.ca_pem, ip),
                ],
            };
            inst.spawn().await?;
            if discovery.is_null() {
                let d = format!("{issuer}/.well-known/openid-configuration");
                discovery = get_json(&inst.env.http, &d).await?;
                let j = discovery["jwks_uri"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                jwks = get_json(&inst.env.http, &j).await?;
            }
            inst.env.discovery = discovery.clone();
            inst.env.jwks = jwks.clone();
            instances.push(inst);
        }
        Ok(Cluster {
            instances,
            pki,
            directory,
            db_url: db.clone(),
            side,
            issuer,
            _tmp: tmp,
        })
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> R<Value> {
    http.get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .json::<Value>()
        .await
        .map_err(|e| format!("{url}: {e}"))
}

impl Instance {
    pub fn base(&self) -> &str {
        &self.env.issuer
    }

    /// Starts the process and waits until `/readyz` answers 200.
    pub async fn spawn(&self) -> R<Duration> {
        let t0 = Instant::now();
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(conformance::server::binary())
            .arg("serve")
            .env("STRONGROOM_CONFIG", &self.cfg_path)
            // Several instances on one host: no internal listener each
            // (they would all want 127.0.0.1:9090).
            .env("STRONGROOM_ADMIN_LISTEN", "none")
            .env_remove("STRONGROOM_DATABASE_URL")
            .env_remove("STRONGROOM_ISSUER")
            .env_remove("STRONGROOM_KEY_ENCRYPTION_KEY")
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting strongroom: {e} (cargo build -p strongroom)"))?;
        *self.child.lock().await = Some(child);
        let url = format!("{}/readyz", self.base());
        for _ in 0..400 {
            if let Ok(r) = self.env.http.get(&url).send().await
                && r.status() == 200
            {
                return Ok(t0.elapsed());
            }
            let exited = match self.child.lock().await.as_mut() {
                Some(c) => c.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(st) = exited {
                return Err(format!(
                    "instance {} exited at start ({st}): {}",
                    self.ip,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "instance {} not ready in 40 s: {}",
            self.ip,
            self.log_tail()
        ))
    }

    /// The process id of the running instance.
    pub async fn pid(&self) -> Option<u32> {
        self.child.lock().await.as_ref().and_then(|c| c.id())
    }

    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<char> = t.chars().rev().take(3000).collect();
        tail.into_iter().rev().collect()
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill9(&self) {
        if let Some(mut c) = self.child.lock().await.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERM, then the exit (SIGKILL after `grace`); how long it took.
    pub async fn terminate(&self, grace: Duration) -> Duration {
        let t0 = Instant::now();
        if let Some(mut c) = self.child.lock().await.take() {
            if let Some(pid) = c.id() {
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
            if tokio::time::timeout(grace, c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
        t0.elapsed()
    }
}

/// One number from `sql` on the database at `url` (psql, or sqlite3 for
/// a `sqlite://` file, read beside the server that holds it).
pub fn count(url: &str, sql: &str) -> R<i64> {
    let v = counts(url, sql)?;
    match v[..] {
        [n] => Ok(n),
        _ => Err(format!("{sql}: {} numbers, not one", v.len())),
    }
}

/// The numbers of the one row `sql` selects (several columns), as [`count`].
pub fn counts(url: &str, sql: &str) -> R<Vec<i64>> {
    let out = match url.strip_prefix("sqlite://") {
        Some(path) => std::process::Command::new("sqlite3")
            .args([path, sql])
            .output()
            .map_err(|e| format!("sqlite3: {e}"))?,
        None => std::process::Command::new("psql")
            .arg(url)
            .args(["-tAc", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .split('|')
        .map(|n| n.parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            format!(
                "psql {sql}: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

//! Operations (issue 28), through the real binary: graceful shutdown on
//! SIGTERM, `/metrics` on the internal listener and never on the public
//! ones, and JSON logs of a full flow that carry no secret.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::fapi::USER;
use crate::harness::{Backend, Setup, TestServer};
use crate::tpp::{Pkce, Tpp, browser_flow, post_form, random};

const STRONGROOM: &str = env!("CARGO_BIN_EXE_strongroom");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `strongroom serve` on free ports with JSON logs into a file.
pub(crate) struct Binary {
    pub(crate) child: Child,
    pub(crate) srv: TestServer,
    admin_port: u16,
    log: PathBuf,
}

impl Binary {
    /// The configuration file of `setup` (its clients and users), with
    /// `tweak` applied, as TOML.
    fn config(
        setup: &Setup,
        main: u16,
        mtls: u16,
        admin: u16,
        tweak: impl Fn(&mut Value),
    ) -> PathBuf {
        let mut cfg = json!({
            "dev_mode": true,
            "issuer": format!("https://localhost:{main}"),
            "data_dir": setup.data_dir.display().to_string(),
            "server": {
                "listen": format!("127.0.0.1:{main}"),
                "mtls_listen": format!("127.0.0.1:{mtls}"),
                "admin_listen": format!("127.0.0.1:{admin}"),
                "workers": 2,
            },
            "database": {"url": setup.database_url, "max_connections": 4},
            "log": {"level": "info", "format": "json"},
            "clients": setup.clients,
            "users": setup.users,
        });
        tweak(&mut cfg);
        let path = setup.data_dir.join("ops.toml");
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        path
    }

    pub(crate) async fn start(setup: &Setup, tweak: impl Fn(&mut Value)) -> Binary {
        setup.dev_ca();
        let (main, mtls, admin) = (free_port(), free_port(), free_port());
        let cfg = Self::config(setup, main, mtls, admin, tweak);
        let log = setup.data_dir.join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(STRONGROOM)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("STRONGROOM_CONFIG", &cfg)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut b = Binary {
            child,
            srv: TestServer::external(setup, main, mtls),
            admin_port: admin,
            log,
        };
        let http = b.srv.client(None);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(b.srv.url("/healthz")).send().await
                && r.status() == 200
            {
                break;
            }
            if let Some(status) = b.child.try_wait().unwrap() {
                panic!("server exited with {status}: {}", b.log_text());
            }
            assert!(Instant::now() < deadline, "no start: {}", b.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        b
    }

    pub(crate) fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill only sends a signal to our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }

    /// The exit code, waiting at most `limit`.
    pub(crate) async fn exit_within(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running after {limit:?}: {}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn log_text(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    async fn scrape(&self) -> String {
        strongroom::startup::install_crypto_provider();
        let res = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        res.text().await.unwrap()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS connection to the main listener, trusting the dev CA.
async fn tls_connect(srv: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(srv.dev_ca()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", srv.main_port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// A token request whose body is only half sent: in progress until the
/// rest follows.
pub(crate) const SLOW_BODY: &str = "grant_type=client_credentials&client_id=nobody-here";

pub(crate) async fn start_slow_request(
    srv: &TestServer,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut conn = tls_connect(srv).await;
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        srv.main_port,
        SLOW_BODY.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&SLOW_BODY.as_bytes()[..10]).await.unwrap();
    conn.flush().await.unwrap();
    conn
}

/// What comes back until the server closes (or 5 s pass).
pub(crate) async fn read_answer(
    conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        // A close without close_notify ends the read with an error: what
        // arrived before it is the answer.
        while let Ok(n) = conn.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

pub(crate) fn refused(port: u16) -> bool {
    matches!(
        std::net::TcpStream::connect(("127.0.0.1", port)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// SIGTERM: the listeners close at once (new connections are refused),
/// every request in progress is answered in full, and the process exits 0.
#[actix_web::test]
async fn sigterm_drains_the_request_in_progress_then_exits_0() {
    let setup = Setup::new(Backend::Sqlite);
    let mut b = Binary::start(&setup, |c| {
        c["server"]["shutdown_timeout_secs"] = json!(20);
    })
    .await;
    // Several requests in progress at once, on their own connections.
    let mut slow = Vec::new();
    for _ in 0..6 {
        slow.push(start_slow_request(&b.srv).await);
    }
    // An idle keep-alive connection does not hold the shutdown up.
    let idle = b.srv.client(None);
    assert_eq!(
        idle.get(b.srv.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    b.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "exited while a request was in progress"
    );
    assert!(refused(b.srv.main_port), "main listener still accepts");
    assert!(refused(b.srv.mtls_port), "mTLS listener still accepts");
    for conn in &mut slow {
        conn.write_all(&SLOW_BODY.as_bytes()[10..]).await.unwrap();
        conn.flush().await.unwrap();
    }
    for conn in &mut slow {
        let answer = read_answer(conn).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("\"error\":\"invalid_client\""), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert_eq!(
        b.exit_within(Duration::from_secs(10)).await,
        0,
        "{}",
        b.log_text()
    );
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "waited for the idle connection or the timeout"
    );
    let log = b.log_text();
    assert!(log.contains("SIGTERM"), "{log}");
}

/// A request that outlasts `shutdown_timeout_secs` is cut and the process
/// still exits 0; during a drain a second SIGTERM exits at once (1).
#[actix_web::test]
async fn the_drain_ends_at_the_timeout_and_a_second_sigterm_ends_it_at_once() {
    let setup = Setup::new(Backend::Sqlite);
    let mut b = Binary::start(&setup, |c| {
        c["server"]["shutdown_timeout_secs"] = json!(1);
        c["server"]["request_body_timeout_secs"] = json!(60);
    })
    .await;
    let _slow = start_slow_request(&b.srv).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    b.signal(libc::SIGTERM);
    assert_eq!(
        b.exit_within(Duration::from_secs(10)).await,
        0,
        "{}",
        b.log_text()
    );
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "did not wait for the request: {took:?}"
    );
    drop(b);

    let setup = Setup::new(Backend::Sqlite);
    let mut b = Binary::start(&setup, |c| {
        c["server"]["shutdown_timeout_secs"] = json!(60);
        c["server"]["request_body_timeout_secs"] = json!(60);
    })
    .await;
    let _slow = start_slow_request(&b.srv).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(b.child.try_wait().unwrap().is_none(), "should be draining");
    let second = Instant::now();
    b.signal(libc::SIGTERM);
    assert_eq!(b.exit_within(Duration::from_secs(5)).await, 1);
    assert!(second.elapsed() < Duration::from_secs(2));
}

/// A client of the tests that authenticates with `client_secret_basic`.
const BASIC_CLIENT: &str = "ops-gateway";

/// The metric samples of a scrape, parsed by an independent parser of the
/// text format (prometheus-parse).
fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn sample_value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => 0.0,
    }
}

/// The sum of the samples of `name` whose labels include `labels`.
fn total(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(sample_value)
        .sum()
}

/// `/metrics` answers on the internal listener, 404 on both public ones;
/// requests are counted by route pattern with the OAuth error code, tokens
/// by grant type and registered client, replays by kind; a client_id of
/// 10 kB with quotes and newlines becomes no label; and every series of
/// the Grafana dashboard is in a real scrape.
#[actix_web::test]
async fn metrics_are_served_on_the_internal_listener_only() {
    let mut setup = Setup::new(Backend::Sqlite);
    let tpp = Tpp::new("tpp-metrics");
    let mut remote = Tpp::new("tpp-remote-jwks");
    remote.redirect_uri = "https://remote.example/cb".into();
    let mut remote_meta = remote.pkjwt_metadata();
    remote_meta.as_object_mut().unwrap().remove("jwks");
    // Nothing listens there: the fetch fails, and is timed.
    remote_meta["jwks_uri"] = json!(format!("https://127.0.0.1:{}/jwks", free_port()));
    setup.clients = vec![tpp.pkjwt_metadata(), remote_meta];
    setup.users = vec![json!({
        "username": USER,
        "password_hash": strongroom::users::hash_password(crate::fapi::PASSWORD).unwrap(),
        "sub": "sub-alice-metrics",
    })];
    // Keys published ahead: the next key change is scheduled.
    let cfg = Binary::config(&setup, 1, 2, 3, |_| {});
    let out = Command::new(STRONGROOM)
        .args(["keys", "rotate"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("STRONGROOM_CONFIG", &cfg)
        .env("STRONGROOM_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = Binary::start(&setup, |_| {}).await;
    let srv = &b.srv;
    // The container health check: the binary asks the internal listener.
    let served = setup.data_dir.join("ops.toml");
    for args in [&["health"][..], &["health", "--ready"]] {
        let out = Command::new(STRONGROOM)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("STRONGROOM_CONFIG", &served)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before = parse(&b.scrape().await);
    let http = srv.client(None);
    for url in [srv.url("/metrics"), srv.mtls_url("/metrics")] {
        let res = http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 404, "{url}");
    }
    // A grant: PAR, login, consent, code.
    let pkce = Pkce::new();
    let mut form = tpp.authz_params(&pkce, "openid accounts");
    form.extend(tpp.auth_fields(srv));
    let par_url = srv.url("/par");
    let a = post_form(
        &http,
        &par_url,
        &form,
        Some(tpp.dpop_proof("POST", &par_url, None)),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.json);
    let back = browser_flow(
        srv,
        &srv.browser(),
        &tpp.client_id,
        a.json["request_uri"].as_str().unwrap(),
        USER,
        crate::fapi::PASSWORD,
        true,
    )
    .await;
    assert!(back.contains("code="), "{back}");
    // A token for the registered client.
    let token_url = srv.url("/token");
    let mut form = tpp.auth_fields(srv);
    form.extend([
        ("grant_type".to_string(), "client_credentials".to_string()),
        ("scope".into(), "accounts".into()),
    ]);
    let a = post_form(
        &http,
        &token_url,
        &form,
        Some(tpp.dpop_proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    // The same assertion again: a replay.
    let a = post_form(
        &http,
        &token_url,
        &form,
        Some(tpp.dpop_proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.json);
    // Client_ids nobody registered, 10 kB with quotes and braces, and with
    // newlines (refused as badly encoded text before authentication).
    for (hostile, status) in [
        (format!("\"}} {}x{{le=\"", "A".repeat(10_000)), 401),
        (format!("\"}}\n# {}\nx{{le=\"", "A".repeat(10_000)), 400),
    ] {
        let bad = vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".into(), hostile),
            ("client_secret".into(), "nope".into()),
        ];
        let a = post_form(&http, &token_url, &bad, None).await;
        assert_eq!(a.status, status, "{}", a.json);
    }
    // The jwks_uri client: an outbound call that fails.
    let mut form = remote.auth_fields(srv);
    form.push(("grant_type".into(), "client_credentials".into()));
    let a = post_form(
        &http,
        &token_url,
        &form,
        Some(remote.dpop_proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.json);
    // A raw path with a value in it is counted under its route pattern.
    let res = http
        .get(srv.url(&format!("/interaction/{}/login", random(12))))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error() || res.status().is_success());
    let _ = http
        .get(srv.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();

    let text = b.scrape().await;
    let scrape = parse(&text);
    assert!(
        !text.contains("AAAAAAAAAA"),
        "a client-supplied string became a label"
    );
    for s in &scrape.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                v.len() <= 128,
                "label {k} of {} is {} bytes",
                s.metric,
                v.len()
            );
        }
    }
    assert!(
        total(
            &scrape,
            "strongroom_http_requests_total",
            &[("route", "/token"), ("status", "2xx"), ("error", "none")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        total(
            &scrape,
            "strongroom_http_requests_total",
            &[
                ("route", "/token"),
                ("status", "4xx"),
                ("error", "invalid_client")
            ]
        ) >= 3.0,
        "{text}"
    );
    assert!(
        total(
            &scrape,
            "strongroom_http_requests_total",
            &[("route", "/interaction/:id/login")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        !scrape.samples.iter().any(|s| {
            s.labels.get("route").is_some_and(|r| {
                r.starts_with("/interaction/") && !r.starts_with("/interaction/:id/")
            })
        }),
        "a raw path became a label: {text}"
    );
    assert_eq!(
        total(
            &scrape,
            "strongroom_tokens_issued_total",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "tpp-metrics")
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        total(
            &scrape,
            "strongroom_replays_refused_total",
            &[("kind", "client_assertion")]
        ),
        1.0,
        "{text}"
    );
    // The replay is found after the assertion verified: a replay, not a
    // failed authentication.
    assert!(
        total(
            &scrape,
            "strongroom_client_auth_failures_total",
            &[("endpoint", "token")]
        ) >= 2.0,
        "{text}"
    );
    assert!(
        total(
            &scrape,
            "strongroom_outbound_request_duration_seconds_count",
            &[("target", "jwks_uri"), ("outcome", "error")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        total(
            &scrape,
            "strongroom_http_request_duration_seconds_count",
            &[("route", "/token")]
        ) >= 4.0,
        "{text}"
    );
    assert!(
        total(&scrape, "strongroom_db_pool_max_connections", &[]) >= 1.0,
        "{text}"
    );
    assert_eq!(total(&before, "strongroom_active_grants", &[]), 0.0);
    assert_eq!(
        total(&scrape, "strongroom_active_grants", &[]),
        1.0,
        "{text}"
    );
    // Queries are timed by the repository that ran them (the caller's
    // module, not the store's helpers), from a fixed set of labels.
    let queries = "strongroom_db_query_duration_seconds_count";
    let moved =
        |labels: &[(&str, &str)]| total(&scrape, queries, labels) - total(&before, queries, labels);
    assert!(
        moved(&[("operation", "codes"), ("access", "write")]) >= 1.0,
        "{text}"
    );
    assert!(
        moved(&[("operation", "tokens"), ("access", "write")]) >= 1.0,
        "{text}"
    );
    assert!(
        moved(&[("operation", "par"), ("access", "write")]) >= 1.0,
        "{text}"
    );
    assert!(
        moved(&[("operation", "authorize"), ("access", "read")]) >= 1.0,
        "{text}"
    );
    for s in scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("strongroom_db_query_duration"))
    {
        let op = s.labels.get("operation").unwrap_or_default();
        assert!(
            token_store::OPERATIONS.contains(&op) && op != "other",
            "{op}: {text}"
        );
        assert!(
            matches!(s.labels.get("access"), Some("read" | "write")),
            "{text}"
        );
    }
    assert!(
        total(&scrape, "strongroom_key_next_change_timestamp_seconds", &[])
            > crate::tpp::now() as f64,
        "{text}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "strongroom_signing_key_age_seconds"
                && s.labels.get("alg") == Some("PS256")),
        "{text}"
    );
    // Every exported series is in this scrape, and the dashboard uses
    // those and no other.
    let names: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    let base = |n: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| n.strip_suffix(suffix).filter(|b| b.ends_with("_seconds")))
            .unwrap_or(n)
            .to_owned()
    };
    let exported: std::collections::BTreeSet<String> = names.iter().map(|n| base(n)).collect();
    for s in strongroom::telemetry::SERIES {
        assert!(exported.contains(*s), "{s} missing from a scrape: {text}");
    }
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/strongroom.json"
    ))
    .unwrap();
    let used = dashboard_series(&dashboard);
    assert!(used.len() >= 8, "{used:?}");
    for s in &used {
        assert!(
            exported.contains(&base(s)),
            "the dashboard uses {s}, which no scrape has:\n{text}"
        );
    }
}

/// The metric names in the dashboard's queries (`expr`).
fn dashboard_series(dashboard: &str) -> std::collections::BTreeSet<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" {
                        out.extend(v.as_str().map(str::to_owned));
                    }
                    walk(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&serde_json::from_str(dashboard).unwrap(), &mut exprs);
    let mut names = std::collections::BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("strongroom_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// A full flow (PAR with a client assertion and DPoP, login with a
/// password, consent, code, token, refresh, userinfo, introspection with a
/// client secret, revocation) with JSON logs at debug level: every
/// request's lines carry its request id (a `traceparent`'s trace id when
/// one came), its client_id and outcome, and no secret the flow used
/// appears anywhere in the log.
#[actix_web::test]
async fn json_logs_of_a_full_flow_carry_no_secret() {
    let mut setup = Setup::new(Backend::Sqlite);
    let tpp = Tpp::new("tpp-logs");
    let password = random(18);
    let client_secret = random(24);
    setup.clients = vec![
        tpp.pkjwt_metadata(),
        json!({
            "client_id": BASIC_CLIENT,
            "client_name": "Gateway",
            "token_endpoint_auth_method": "client_secret_basic",
            "fapi": false,
            "grant_types": ["client_credentials"],
            "scope": "accounts",
            "client_secret_sha256": oauth_core::secret::hash_secret(&client_secret),
        }),
    ];
    setup.users = vec![json!({
        "username": USER,
        "password_hash": strongroom::users::hash_password(&password).unwrap(),
        "sub": "sub-alice-logs",
    })];
    let mut b = Binary::start(&setup, |c| {
        c["log"]["level"] = json!("debug");
    })
    .await;
    let srv = &b.srv;
    let http = srv.client(None);
    let mut secrets: Vec<(&str, String)> = vec![
        ("password", password.clone()),
        ("client secret", client_secret.clone()),
    ];

    let pkce = Pkce::new();
    secrets.push(("code_verifier", pkce.verifier.clone()));
    let mut form = tpp.authz_params(&pkce, "openid accounts offline_access");
    let auth = tpp.auth_fields(srv);
    secrets.push(("PAR assertion", auth[2].1.clone()));
    form.extend(auth);
    let par_url = srv.url("/par");
    let proof = tpp.dpop_proof("POST", &par_url, None);
    secrets.push(("PAR DPoP proof", proof.clone()));
    let a = post_form(&http, &par_url, &form, Some(proof)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let request_uri = a.json["request_uri"].as_str().unwrap().to_owned();
    let back = browser_flow(
        srv,
        &srv.browser(),
        &tpp.client_id,
        &request_uri,
        USER,
        &password,
        true,
    )
    .await;
    let code = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code: {back}"));
    secrets.push(("code", code.clone()));

    let token_url = srv.url("/token");
    let mut form = tpp.auth_fields(srv);
    secrets.push(("token assertion", form[2].1.clone()));
    form.extend([
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".into(), code.clone()),
        ("redirect_uri".into(), tpp.redirect_uri.clone()),
        ("code_verifier".into(), pkce.verifier.clone()),
    ]);
    let proof = tpp.dpop_proof("POST", &token_url, None);
    secrets.push(("token DPoP proof", proof.clone()));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = http
        .post(&token_url)
        .header("DPoP", proof)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let token = crate::tpp::answer(res).await;
    assert_eq!(token.status, 200, "{}", token.json);
    let access = token.json["access_token"].as_str().unwrap().to_owned();
    let refresh = token.json["refresh_token"].as_str().unwrap().to_owned();
    let id_token = token.json["id_token"].as_str().unwrap().to_owned();
    secrets.push(("access token", access.clone()));
    secrets.push(("refresh token", refresh.clone()));
    secrets.push(("id token", id_token));

    let ui = srv.url("/userinfo");
    let proof = tpp.dpop_proof("GET", &ui, Some(&access));
    secrets.push(("userinfo DPoP proof", proof.clone()));
    let res = http
        .get(&ui)
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let res = http
        .post(srv.url("/introspect"))
        .basic_auth(BASIC_CLIENT, Some(&client_secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A wrong secret: a security event, not the secret.
    let wrong_secret = random(24);
    secrets.push(("wrong client secret", wrong_secret.clone()));
    let res = http
        .post(srv.url("/introspect"))
        .basic_auth(BASIC_CLIENT, Some(&wrong_secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let mut form = tpp.auth_fields(srv);
    secrets.push(("refresh assertion", form[2].1.clone()));
    form.extend([
        ("grant_type".to_string(), "refresh_token".to_string()),
        ("refresh_token".into(), refresh.clone()),
    ]);
    let proof = tpp.dpop_proof("POST", &token_url, None);
    let a = post_form(&http, &token_url, &form, Some(proof)).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let new_access = a.json["access_token"].as_str().unwrap().to_owned();
    secrets.push(("refreshed access token", new_access));
    if let Some(r) = a.json["refresh_token"].as_str() {
        secrets.push(("rotated refresh token", r.to_owned()));
    }

    let mut form = tpp.auth_fields(srv);
    form.push(("token".into(), refresh.clone()));
    let a = post_form(&http, &srv.url("/revoke"), &form, None).await;
    assert_eq!(a.status, 200, "{}", a.json);

    b.signal(libc::SIGTERM);
    assert_eq!(b.exit_within(Duration::from_secs(30)).await, 0);
    let log = b.log_text();
    for (what, secret) in &secrets {
        assert!(!secret.is_empty());
        assert!(!log.contains(secret.as_str()), "the log has the {what}");
        // Parts of a JWT (the signature) would be as bad.
        if let Some(sig) = secret.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(!log.contains(sig), "the log has part of the {what}");
        }
    }
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "strongroom::access")
        .collect();
    assert!(access_lines.len() >= 8, "{log}");
    for l in &access_lines {
        let span = &l["span"];
        assert_eq!(span["request_id"].as_str().map(str::len), Some(32), "{l}");
        assert!(span["route"].is_string(), "{l}");
        assert!(l["fields"]["status"].is_u64(), "{l}");
        assert!(l["fields"]["error"].is_string(), "{l}");
    }
    let traced = access_lines
        .iter()
        .find(|l| l["span"]["request_id"] == trace)
        .expect("the traceparent's trace id is the request id");
    assert_eq!(traced["span"]["client_id"], "tpp-logs");
    assert_eq!(traced["span"]["route"], "/token");
    assert_eq!(traced["fields"]["status"], 200);
    let security: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "strongroom::security")
        .collect();
    let event = |name: &str| {
        security
            .iter()
            .find(|l| l["fields"]["event"] == name)
            .copied()
    };
    let decision = event("consent_decision").expect("consent decision event");
    assert_eq!(decision["fields"]["outcome"], "approved");
    assert_eq!(decision["fields"]["client_id"], "tpp-logs");
    assert_eq!(decision["fields"]["sub"], "sub-alice-logs");
    let failed = event("client_authentication_failed").expect("failed authentication event");
    assert_eq!(failed["fields"]["endpoint"], "introspection");
    assert_eq!(failed["fields"]["error"], "invalid_client");
    assert!(failed["spans"][0]["request_id"].is_string(), "{failed}");
    assert_eq!(
        event("token_revocation").expect("revocation event")["fields"]["client_id"],
        "tpp-logs"
    );
    assert!(
        event("key_generated").is_some(),
        "first start generates keys"
    );
}

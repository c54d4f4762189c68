//! The foundation: discovery over TLS, JWKS, keys kept across restarts,
//! health, TLS policy at the handshake, start-up errors.

use std::process::Command;

use serde_json::Value;

use crate::harness::{BACKENDS, Backend, Setup, TestServer, drop_pg_database};

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let res = client.get(url).send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("json body"))
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    kids.sort();
    kids
}

#[actix_web::test]
async fn discovery_over_tls_names_the_issuer_and_keys() {
    for backend in BACKENDS {
        let srv = TestServer::start(backend).await;
        let client = srv.client(None);
        for path in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let (status, meta) = get_json(&client, &srv.url(path)).await;
            assert_eq!(status, 200, "{backend:?} {path}");
            assert_eq!(meta["issuer"], srv.issuer.as_str(), "{backend:?}");
            assert_eq!(meta["jwks_uri"], srv.url("/jwks"));
        }
        let (_, meta) = get_json(&client, &srv.url("/.well-known/openid-configuration")).await;
        let (status, jwks) = get_json(&client, meta["jwks_uri"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        let keys = jwks["keys"].as_array().unwrap();
        for alg in ["PS256", "ES256"] {
            let k = keys
                .iter()
                .find(|k| k["alg"] == alg)
                .unwrap_or_else(|| panic!("{backend:?}: no {alg} key in {jwks}"));
            assert_eq!(k["use"], "sig");
            assert!(k["kid"].as_str().is_some_and(|s| !s.is_empty()));
        }
        for alg in ["RSA-OAEP-256", "RSA-OAEP"] {
            assert!(
                keys.iter().any(|k| k["alg"] == alg && k["use"] == "enc"),
                "{backend:?}: no {alg} encryption key in {jwks}"
            );
        }
        for k in keys {
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(
                    k.get(private).is_none(),
                    "private member {private} published"
                );
            }
        }
        // The discovery and JWKS are also reachable on the mTLS listener.
        let (status, meta2) =
            get_json(&client, &srv.mtls_url("/.well-known/openid-configuration")).await;
        assert_eq!(status, 200);
        assert_eq!(meta2["issuer"], srv.issuer.as_str());
        srv.stop().await;
    }
}

#[actix_web::test]
async fn a_restart_keeps_the_same_keys() {
    for backend in BACKENDS {
        let setup = Setup::new(backend);
        let first = setup.start().await;
        let (_, jwks1) = get_json(&first.client(None), &first.url("/jwks")).await;
        first.stop().await;
        let second = setup.start().await;
        let (_, jwks2) = get_json(&second.client(None), &second.url("/jwks")).await;
        assert_eq!(kids(&jwks1), kids(&jwks2), "{backend:?}");
        assert_eq!(kids(&jwks1).len(), 4);
        second.stop().await;
    }
}

#[actix_web::test]
async fn health_and_readiness() {
    let srv = TestServer::start(Backend::Postgres).await;
    let client = srv.client(None);
    let res = client.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = client.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The database goes away: still alive, no longer ready.
    drop_pg_database(&srv.database_url);
    let res = client.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let res = client.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    srv.stop().await;
}

#[actix_web::test]
async fn interaction_routes_answer_by_step_and_method() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let browser = srv.browser();
    // Each step is served (an unknown interaction is the expired-sign-in
    // page), its other methods are 405, and unknown steps 404.
    for step in ["login", "consent"] {
        let url = srv.url(&format!("/interaction/unknown-id/{step}"));
        let res = browser.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 400, "GET {step}");
        assert!(res.text().await.unwrap().contains("expired or is unknown"));
        let res = browser.put(&url).send().await.unwrap();
        assert_eq!(res.status(), 405, "PUT {step}");
    }
    for path in [
        "/interaction/unknown-id/other",
        "/interaction/unknown-id",
        "/interaction/unknown-id/login/more",
    ] {
        let res = browser.get(srv.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    srv.stop().await;
}

fn s_client(port: u16, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-servername")
        .arg("localhost")
        .args(extra)
        .stdin(std::process::Stdio::null());
    let out = cmd.output().expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A completed handshake prints the negotiated cipher; a refused one
    // prints "Cipher is (NONE)" or a handshake failure alert.
    let ok = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

#[actix_web::test]
async fn tls_policy_is_enforced_at_the_handshake() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let (port, mport) = (srv.main_port, srv.mtls_port);
    let results = actix_web::rt::task::spawn_blocking(move || {
        let mut r = Vec::new();
        for p in [port, mport] {
            r.push((
                "tls1.1",
                s_client(p, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            ));
            r.push((
                "tls1.2 cbc only",
                s_client(
                    p,
                    &[
                        "-tls1_2",
                        "-cipher",
                        "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:AES128-SHA",
                    ],
                ),
            ));
            r.push((
                "tls1.2 chacha only",
                s_client(p, &["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"]),
            ));
            r.push((
                "tls1.2 gcm",
                s_client(p, &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]),
            ));
            r.push(("tls1.3", s_client(p, &["-tls1_3"])));
        }
        r
    })
    .await
    .unwrap();
    for (i, (case, (ok, text))) in results.iter().enumerate() {
        let expect_ok = matches!(*case, "tls1.2 gcm" | "tls1.3");
        assert_eq!(
            *ok,
            expect_ok,
            "{case} on listener {}: {text}",
            if i < 5 { "main" } else { "mtls" }
        );
    }
    srv.stop().await;
}

fn run_binary(env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strongroom"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        // The internal listener's default port would collide between tests.
        .env("STRONGROOM_ADMIN_LISTEN", "none");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn assert_one_line_exit_2(env: &[(&str, &str)], needle: &str) {
    let (code, stderr) = run_binary(env);
    assert_eq!(code, 2, "exit code for {needle}: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("strongroom:"))
        .collect();
    assert_eq!(lines.len(), 1, "one line for {needle}: {stderr}");
    assert!(lines[0].contains(needle), "'{needle}' in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn start_up_errors_are_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bad_toml = dir.join("bad.toml");
    std::fs::write(
        &bad_toml,
        "issuer = \"https://x\"\n[server]\nlisten = 8443\n",
    )
    .unwrap();
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    let base = |extra: &[(&'static str, String)]| {
        let mut v: Vec<(&'static str, String)> = vec![
            ("STRONGROOM_CONFIG", "/nonexistent.toml".into()),
            ("STRONGROOM_DATA_DIR", data_s.to_string()),
            ("STRONGROOM_LISTEN", "127.0.0.1:0".into()),
            ("STRONGROOM_MTLS_LISTEN", "none".into()),
        ];
        v.extend(extra.iter().cloned());
        v
    };
    let check = |env: Vec<(&'static str, String)>, needle: &str| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_one_line_exit_2(&env, needle);
    };
    // Unreadable config file.
    check(base(&[]), "STRONGROOM_CONFIG");
    // Invalid TOML value.
    check(
        base(&[("STRONGROOM_CONFIG", bad_toml.display().to_string())]),
        "listen",
    );
    // A good file, then bad overrides.
    let good = dir.join("good.toml");
    std::fs::write(&good, "dev_mode = true\n").unwrap();
    let good_s = good.display().to_string();
    check(
        base(&[
            ("STRONGROOM_CONFIG", good_s.clone()),
            ("STRONGROOM_ISSUER", "http://insecure".into()),
        ]),
        "issuer",
    );
    check(
        base(&[
            ("STRONGROOM_CONFIG", good_s.clone()),
            ("STRONGROOM_DATABASE_URL", "mysql://nope".into()),
        ]),
        "database.url",
    );
    // Unreachable database.
    check(
        base(&[
            ("STRONGROOM_CONFIG", good_s.clone()),
            (
                "STRONGROOM_DATABASE_URL",
                "postgres://nobody@127.0.0.1:1/nothing".into(),
            ),
        ]),
        "database",
    );
    // A data dir that cannot be written.
    let blocker = dir.join("file");
    std::fs::write(&blocker, "x").unwrap();
    check(
        base(&[
            ("STRONGROOM_CONFIG", good_s.clone()),
            (
                "STRONGROOM_DATA_DIR",
                blocker.join("sub").display().to_string(),
            ),
        ]),
        "data_dir",
    );
    // Missing certificate files.
    let certs = dir.join("certs.toml");
    std::fs::write(
        &certs,
        "dev_mode = true\n[tls]\ncertificate = \"/nonexistent/chain.pem\"\nprivate_key = \"/nonexistent/key.pem\"\n",
    )
    .unwrap();
    check(
        base(&[("STRONGROOM_CONFIG", certs.display().to_string())]),
        "/nonexistent/chain.pem",
    );
    // Production mode without a key-encryption key.
    let prod = dir.join("prod.toml");
    std::fs::write(&prod, "dev_mode = false\n").unwrap();
    check(
        base(&[("STRONGROOM_CONFIG", prod.display().to_string())]),
        "keys.encryption_key",
    );
}

/// Writes a configuration for the CLI on `setup`'s data dir and database;
/// returns its path.
fn cli_config(setup: &Setup) -> String {
    let path = setup.data_dir.join("cli.toml");
    std::fs::write(
        &path,
        format!(
            "dev_mode = true\ndata_dir = \"{}\"\n[database]\nurl = \"{}\"\n",
            setup.data_dir.display(),
            setup.database_url
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The CLI's environment for the configuration at `cfg`.
fn cli_env(cfg: &str) -> [(&'static str, &str); 4] {
    [
        ("STRONGROOM_CONFIG", cfg),
        ("STRONGROOM_LISTEN", "127.0.0.1:0"),
        ("STRONGROOM_MTLS_LISTEN", "none"),
        ("STRONGROOM_LOG", "error"),
    ]
}

fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strongroom"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        // The internal listener's default port would collide between tests.
        .env("STRONGROOM_ADMIN_LISTEN", "none");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// One server per SQLite database: a second `strongroom serve` on the
/// same file waits for the first to let go, then refuses to start (it would
/// answer registrations the first one changes); commands that do not serve
/// run beside it; the running server is unaffected.
#[actix_web::test]
async fn a_sqlite_database_serves_one_server() {
    let setup = Setup::new(Backend::Sqlite);
    let srv = setup.start().await;
    let cfg = cli_config(&setup);
    let env = cli_env(&cfg);
    let (code, listing, err) = run_cli(&["keys", "list"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listing.lines().count(), 1 + 4, "{listing}");
    let started = std::time::Instant::now();
    let (code, _, err) = run_cli(&["serve"], &env);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("another Strongroom server is using") && err.contains("PostgreSQL"),
        "{err}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(9),
        "it waits first"
    );
    let (status, jwks) = get_json(&srv.client(None), &srv.url("/jwks")).await;
    assert_eq!(status, 200);
    assert_eq!(kids(&jwks).len(), 4);
    srv.stop().await;
}

#[actix_web::test]
async fn keys_rotate_publishes_new_keys_first_and_a_wrong_kek_stops_the_server() {
    for backend in BACKENDS {
        let setup = Setup::new(backend);
        let first = setup.start().await;
        let (_, before) = get_json(&first.client(None), &first.url("/jwks")).await;
        first.stop().await;
        let cfg = cli_config(&setup);
        let env = cli_env(&cfg);
        let (code, out, err) = run_cli(&["keys", "rotate"], &env);
        assert_eq!(code, 0, "{backend:?}: {out}{err}");
        assert_eq!(out.matches("published now").count(), 4, "{out}");
        let (code, listing, _) = run_cli(&["keys", "list"], &env);
        assert_eq!(code, 0);
        assert_eq!(listing.lines().count(), 1 + 8, "{listing}");

        // After a restart the JWKS carries old and new keys; the old ones
        // still sign until the activation delay has passed.
        let second = setup.start().await;
        let (_, after) = get_json(&second.client(None), &second.url("/jwks")).await;
        let (old, new) = (kids(&before), kids(&after));
        assert_eq!(new.len(), 8, "{after}");
        assert!(
            old.iter().all(|k| new.contains(k)),
            "old keys stay published"
        );
        second.stop().await;

        // A different key-encryption key cannot open the stored keys.
        let other_kek = {
            let (_, k, _) = run_cli(&["keys", "new-kek"], &[]);
            k.trim().to_string()
        };
        let mut env2 = env.to_vec();
        env2.push(("STRONGROOM_KEY_ENCRYPTION_KEY", other_kek.as_str()));
        // Several times: the refusal exits while the pool's background
        // threads may still be connecting, and OpenSSL's exit handler used
        // to crash one such exit in about five on PostgreSQL.
        for _ in 0..8 {
            let (code, _, err) = run_cli(&["serve"], &env2);
            assert_eq!(code, 2, "{backend:?}: {err}");
            assert!(err.contains("encryption_key"), "{err}");
            assert!(!err.contains("panicked"));
        }
    }
}

//! The real `demo-tpp` binary against a real Strongroom and the demo bank,
//! both in this process (one test binary, so Strongroom is linked once).
//!
//! Interactive (no `--auto`): the customer takes longer than the server's
//! keep-alive to paste the callback URL, and the walkthrough still
//! finishes. The binary is driven as the browser tests drive it: one line
//! `Open this URL in your browser: <url>` on stdout, one line (the address
//! the browser ended on) on stdin.
//!
//! Decoupled (`--ciba`): one line `Approve on the phone: …`, polling with
//! `authorization_pending`, the customer answering on the bank's phone page;
//! tokens carry the consent; a denial ends in `access_denied` and exit 1.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use demo_bank::walkthrough::ciba::{Answer, PHONE_PROMPT};
use demo_bank::walkthrough::{self, OPEN_PROMPT};

const SECRET: [u8; 32] = [0x42; 32];
/// Longer than Strongroom's keep-alive (5 s) and its idle deadline for a
/// kept-alive connection (request head 5 s + keep-alive 5 s).
const CUSTOMER_TAKES: Duration = Duration::from_secs(11);

struct Running {
    issuer: String,
    mtls_base: String,
    bank: String,
    data_dir: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

/// Strongroom (dev mode, SQLite, ephemeral ports) wired to the demo bank as
/// config/demo.toml wires them.
async fn start() -> Running {
    strongroom::startup::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    strongroom::devcerts::ensure_dev_certs(&data_dir).unwrap();
    let main = TcpListener::bind("127.0.0.1:0").unwrap();
    let mtls = TcpListener::bind("127.0.0.1:0").unwrap();
    let bank_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (main_port, mtls_port) = (
        main.local_addr().unwrap().port(),
        mtls.local_addr().unwrap().port(),
    );
    let bank = format!("http://{}", bank_listener.local_addr().unwrap());
    let mut cfg = strongroom::config::Config {
        issuer: format!("https://localhost:{main_port}"),
        data_dir: data_dir.clone(),
        dev_mode: true,
        ..Default::default()
    };
    cfg.server.listen = format!("127.0.0.1:{main_port}");
    cfg.server.mtls_listen = format!("127.0.0.1:{mtls_port}");
    cfg.server.workers = 1;
    cfg.database.url = format!("sqlite://{}", tmp.path().join("sr.db").display());
    cfg.database.max_connections = Some(4);
    cfg.log.level = "error".into();
    // The clients of config/demo.toml itself (demo-tpp registered for CIBA,
    // with its request-signing key), so the test follows the demo's file.
    let demo_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.toml");
    let demo = strongroom::config::Config::parse(
        &std::fs::read_to_string(demo_path).unwrap(),
        std::path::Path::new(demo_path),
    )
    .unwrap();
    cfg.clients = demo.clients;
    cfg.hooks = Some(consent_bridge::HooksConfig {
        login_url: format!("{bank}/hooks/login"),
        consent_url: format!("{bank}/hooks/consent"),
        consent_service_url: format!("{bank}/internal/intents"),
        consent_service_token: "demo-consent-service-token".into(),
        shared_secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET),
        bank_issuer: "demo-bank".into(),
        clients: vec![walkthrough::CLIENT_ID.into()],
        bank_api_token_sha256: "9547e71a8d3a5f4c40edf667dc8ec95ebe5aab3c51c16ede6aedb5f46fa5e9dc"
            .into(),
        ..Default::default()
    });
    // The [ciba] of config/demo.toml, polling every second.
    cfg.ciba = Some(ciba::CibaConfig {
        resolve_url: format!("{bank}/internal/ciba/resolve"),
        notify_url: format!("{bank}/internal/ciba/notify"),
        service_token: "demo-ciba-service-token".into(),
        interval_secs: 1,
        ..Default::default()
    });
    cfg.validate().unwrap();
    let issuer = cfg.issuer.clone();
    let mtls_base = cfg.mtls_base_url().unwrap();
    let prepared = strongroom::startup::prepare(cfg).await.unwrap();
    let server = strongroom::startup::serve(
        prepared,
        strongroom::startup::Listeners {
            main,
            mtls: Some(mtls),
        },
    )
    .unwrap();
    actix_web::rt::spawn(server);

    let mut bank_cfg = demo_bank::BankConfig::demo(&issuer);
    bank_cfg.strongroom_ca = Some(data_dir.join("dev-ca.pem"));
    bank_cfg.shared_secret = SECRET;
    let bank_server =
        demo_bank::serve(demo_bank::Bank::new(bank_cfg).unwrap(), bank_listener).unwrap();
    actix_web::rt::spawn(bank_server);
    Running {
        issuer,
        mtls_base,
        bank,
        data_dir,
        _tmp: tmp,
    }
}

#[actix_web::test]
async fn interactive_demo_tpp_waits_for_a_slow_customer() {
    let r = start().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo-tpp"))
        .arg("--issuer")
        .arg(&r.issuer)
        .arg("--mtls")
        .arg(&r.mtls_base)
        .arg("--bank")
        .arg(&r.bank)
        .arg("--data-dir")
        .arg(&r.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("demo-tpp starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let authorize = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                return None;
            }
            seen.push_str(&line);
            if let Some(url) = line.strip_prefix(OPEN_PROMPT) {
                return Some(url.trim().to_string());
            }
        }
    })
    .await
    .expect("demo-tpp prints the URL in time");
    let Some(authorize) = authorize else {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
        panic!("demo-tpp ended without the URL:\n{seen}\n{err}");
    };
    assert_eq!(
        seen.lines().filter(|l| l.starts_with(OPEN_PROMPT)).count(),
        1,
        "{seen}"
    );
    assert!(
        authorize.starts_with(&format!("{}/authorize?", r.issuer)),
        "{authorize}"
    );

    // The customer, in a browser of their own.
    let opts = walkthrough::Options {
        issuer: r.issuer.clone(),
        mtls_base: r.mtls_base.clone(),
        bank: r.bank.clone(),
        data_dir: r.data_dir.clone(),
        auto: true,
        username: "mia".into(),
        password: "correct horse".into(),
    };
    let callback = walkthrough::act_as_customer(&opts, &authorize)
        .await
        .unwrap_or_else(|e| panic!("customer: {e}"));
    assert!(
        callback.starts_with(walkthrough::REDIRECT_URI),
        "{callback}"
    );
    assert!(callback.contains("code="), "{callback}");

    tokio::time::sleep(CUSTOMER_TAKES).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{callback}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();

    let mut rest = String::new();
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        stdout.read_to_string(&mut rest).await.unwrap();
        stderr.read_to_string(&mut err).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("demo-tpp finishes");
    assert!(status.success(), "demo-tpp failed:\n{seen}{rest}\n{err}");
    assert!(
        rest.contains("OK: consent") && rest.contains("authorised, tokens issued"),
        "{rest}"
    );
    assert!(
        rest.contains("\"consent_id\""),
        "introspection shown: {rest}"
    );
}

impl Running {
    fn demo_tpp(&self, extra: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_demo-tpp"))
            .arg("--issuer")
            .arg(&self.issuer)
            .arg("--mtls")
            .arg(&self.mtls_base)
            .arg("--bank")
            .arg(&self.bank)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(extra)
            // The request-signing key is a path from the workspace root.
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("demo-tpp starts")
    }

    fn options(&self, user: &str, password: &str) -> walkthrough::Options {
        walkthrough::Options {
            issuer: self.issuer.clone(),
            mtls_base: self.mtls_base.clone(),
            bank: self.bank.clone(),
            data_dir: self.data_dir.clone(),
            auto: true,
            username: user.into(),
            password: password.into(),
        }
    }
}

/// Reads stdout until a line satisfies `want`; returns everything read.
async fn read_until(
    out: &mut BufReader<tokio::process::ChildStdout>,
    seen: &mut String,
    want: impl Fn(&str) -> bool,
) -> bool {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).await.unwrap() == 0 {
                return false;
            }
            seen.push_str(&line);
            if want(&line) {
                return true;
            }
        }
    })
    .await
    .expect("demo-tpp prints in time")
}

/// Waits for the child's end; returns (success, all of stdout, stderr).
async fn finish(
    mut child: tokio::process::Child,
    mut out: BufReader<tokio::process::ChildStdout>,
    mut seen: String,
) -> (bool, String, String) {
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(90), async {
        out.read_to_string(&mut seen).await.unwrap();
        stderr.read_to_string(&mut err).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("demo-tpp finishes");
    (status.success(), seen, err)
}

#[actix_web::test]
async fn ciba_demo_tpp_polls_while_the_customer_approves_on_the_phone_then_a_denial_exits_1() {
    let r = start().await;

    // A customer approving by hand, after the TPP has polled at least once.
    let mut child = r.demo_tpp(&["--ciba", "--binding-message", "QR7 2KD"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    if !read_until(&mut out, &mut seen, |l| l.starts_with(PHONE_PROMPT)).await {
        let (_, all, err) = finish(child, out, seen).await;
        panic!("no phone prompt:\n{all}\n{err}");
    }
    let prompt = seen.lines().last().unwrap().to_string();
    assert_eq!(
        prompt,
        format!(
            "{PHONE_PROMPT}{}/my/phone (binding message: QR7 2KD)",
            r.bank
        )
    );
    assert!(
        read_until(&mut out, &mut seen, |l| l.contains("authorization_pending")).await,
        "no authorization_pending:\n{seen}"
    );
    walkthrough::ciba::answer_on_phone(
        &r.options("mia", "correct horse"),
        "QR7 2KD",
        Answer::Approve,
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|e| panic!("customer: {e}"));
    let (ok, all, err) = finish(child, out, seen).await;
    assert!(ok, "demo-tpp --ciba failed:\n{all}\n{err}");
    assert_eq!(
        all.lines().filter(|l| l.starts_with(PHONE_PROMPT)).count(),
        1,
        "{all}"
    );
    assert!(
        all.contains("OK: consent ") && all.contains("approved on the phone"),
        "{all}"
    );
    assert!(
        all.contains("\"consent_id\"") && all.contains("\"acc-1001\""),
        "introspection shows the consent and the accounts chosen on the phone: {all}"
    );

    // --auto: the whole journey without a browser.
    let child = r.demo_tpp(&["--ciba", "--auto"]);
    let (ok, all, err) = {
        let mut child = child;
        let out = BufReader::new(child.stdout.take().unwrap());
        finish(child, out, String::new()).await
    };
    assert!(ok, "demo-tpp --ciba --auto failed:\n{all}\n{err}");
    assert!(all.contains("customer on the phone: approves"), "{all}");

    // Denied on the phone: access_denied, exit status 1.
    let (ok, all, err) = {
        let mut child = r.demo_tpp(&[
            "--ciba",
            "--auto",
            "--deny",
            "--user",
            "noah",
            "--password",
            "battery staple",
        ]);
        let out = BufReader::new(child.stdout.take().unwrap());
        finish(child, out, String::new()).await
    };
    assert!(!ok, "a denial must not exit 0:\n{all}\n{err}");
    assert!(
        all.contains("access_denied") && all.contains("DENIED"),
        "{all}\n{err}"
    );
}

//! `strongroom try` through a real server: the dev client created at start
//! in dev mode, the try flow's library function driven by an HTTP client as
//! its browser (login, consent, the redirect to its callback listener), and
//! the dev client's absence outside dev mode.

use std::time::Duration;

use oauth_core::storage::ClientRepository as _;
use strongroom::try_flow::{self, CLIENT_ID, DevClientFiles, Options, TryError};

use crate::fapi::{PASSWORD, USER, demo_user};
use crate::harness::{BACKENDS, Backend, Setup, TestServer};
use crate::tpp::{browser_flow, query};

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A dev-mode server whose dev client is registered on a free callback port.
async fn server() -> (Setup, TestServer, u16) {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.users = vec![demo_user()];
    let port = free_port();
    let files = DevClientFiles::in_data_dir(&setup.data_dir);
    std::fs::create_dir_all(&files.dir).unwrap();
    std::fs::write(&files.redirect_uri, try_flow::redirect_uri_for(port)).unwrap();
    let srv = setup.start().await;
    (setup, srv, port)
}

fn options(port: u16) -> Options {
    Options {
        port,
        open: false,
        timeout: Duration::from_secs(30),
        ..Options::default()
    }
}

/// What the browser does with the authorize URL: the redirect it ends on.
enum Customer {
    Approves,
    Denies,
    /// Goes straight to the callback with this query (a forged redirect).
    Forges(fn(&TestServer) -> String),
}

/// Runs the try flow with `customer` as its browser; returns its result and
/// the callback page the browser was shown.
async fn try_with(
    setup: &Setup,
    srv: &TestServer,
    opts: &Options,
    customer: Customer,
) -> (Result<try_flow::Summary, TryError>, String) {
    let cfg = setup.config(srv.main_port, srv.mtls_port);
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
    let flow = try_flow::run(&cfg, opts, move |u| {
        let _ = url_tx.send(u.to_string());
    });
    let browser_side = async {
        let authorize = url_rx.await.expect("the flow announces its authorize URL");
        let q = query(&authorize);
        assert_eq!(q["client_id"], CLIENT_ID);
        assert!(
            authorize.starts_with(&srv.url("/authorize?")),
            "{authorize}"
        );
        let browser = srv.browser();
        let redirect = match customer {
            Customer::Approves | Customer::Denies => {
                browser_flow(
                    srv,
                    &browser,
                    CLIENT_ID,
                    &q["request_uri"],
                    USER,
                    PASSWORD,
                    matches!(customer, Customer::Approves),
                )
                .await
            }
            Customer::Forges(f) => format!("{}?{}", try_flow::redirect_uri_for(opts.port), f(srv)),
        };
        assert!(
            redirect.starts_with(&try_flow::redirect_uri_for(opts.port)),
            "{redirect}"
        );
        let res = browser.get(&redirect).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        res.text().await.unwrap()
    };
    tokio::join!(flow, browser_side)
}

#[actix_web::test]
async fn try_walks_the_dev_client_to_a_token() {
    let (setup, srv, port) = server().await;
    assert!(
        crate::harness::logged()
            .iter()
            .any(|l| l.contains("dev mode: try the flow with: make try")),
        "the start-up log names the command"
    );
    let (result, page) = try_with(&setup, &srv, &options(port), Customer::Approves).await;
    let summary = result.expect("a token");
    assert!(page.contains("<h1>Signed in</h1>"), "{page}");
    assert_eq!(summary.token_type, "Bearer");
    assert!(summary.expires_in.is_some_and(|e| e > 0));
    assert_eq!(summary.scope.as_deref(), Some("openid profile"));
    let claims = &summary.id_token_claims;
    assert_eq!(claims["sub"], "sub-alice-0001");
    assert_eq!(claims["iss"], srv.issuer.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["acr"], "urn:strongroom:password");
    assert!(summary.active, "the access token introspects as active");

    // The summary shows no token unless asked.
    let text = summary.render(false);
    assert!(text.contains("active = true") && text.contains("sub: sub-alice-0001"));
    assert!(!text.contains(&summary.access_token) && !text.contains(&summary.id_token));
    assert!(summary.render(true).contains(&summary.access_token));

    // The access token is bound to the dev client's certificate (RFC 8705 §3).
    let http = srv.client(None);
    let res = http
        .get(srv.mtls_url("/userinfo"))
        .bearer_auth(&summary.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a bound token without its certificate");
    srv.stop().await;
}

#[actix_web::test]
async fn try_reports_a_denial_and_forged_redirects() {
    let (setup, srv, port) = server().await;
    let opts = Options {
        prompt: Some("login".into()),
        ..options(port)
    };
    let (result, page) = try_with(&setup, &srv, &opts, Customer::Denies).await;
    let err = result.expect_err("denied");
    assert_eq!(err.exit_code(), 1);
    assert!(
        matches!(&err, TryError::Refused { error, .. } if error == "access_denied"),
        "{err:?}"
    );
    assert!(err.to_string().contains("error: access_denied"), "{err}");
    assert!(page.contains("<h1>Not signed in</h1>") && page.contains("access_denied"));

    // A redirect with another state is not this flow's.
    let (result, page) = try_with(
        &setup,
        &srv,
        &options(port),
        Customer::Forges(|srv| format!("code=x&state=forged&iss={}", srv.issuer)),
    )
    .await;
    let err = result.expect_err("forged state");
    assert!(
        matches!(&err, TryError::Failed(m) if m.contains("state")),
        "{err:?}"
    );
    assert!(page.contains("<h1>Not signed in</h1>"), "{page}");

    // Nor is an error response without the flow's state: it would
    // otherwise end the flow as a denial.
    let (result, _) = try_with(
        &setup,
        &srv,
        &options(port),
        Customer::Forges(|_| "error=access_denied".into()),
    )
    .await;
    let err = result.expect_err("no state, no iss");
    assert_eq!(err.exit_code(), 1);
    assert!(matches!(&err, TryError::Failed(_)), "{err:?}");

    // Nobody comes back: the wait ends.
    let cfg = setup.config(srv.main_port, srv.mtls_port);
    let quick = Options {
        timeout: Duration::from_secs(1),
        ..options(port)
    };
    let err = try_flow::run(&cfg, &quick, |_| {}).await.unwrap_err();
    assert!(
        matches!(&err, TryError::Failed(m) if m.contains("no redirect")),
        "{err:?}"
    );

    // Another port changes the registration for the next start.
    let other = free_port();
    let err = try_flow::run(&cfg, &options(other), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("restart"), "{err}");
    srv.stop().await;
    let srv = setup.start().await;
    let (result, _) = try_with(&setup, &srv, &options(other), Customer::Approves).await;
    assert!(result.is_ok(), "{result:?}");
    srv.stop().await;
}

/// The iss check on its own: the right state, a wrong issuer.
#[actix_web::test]
async fn try_refuses_a_redirect_from_another_issuer() {
    let (setup, srv, port) = server().await;
    let cfg = setup.config(srv.main_port, srv.mtls_port);
    let opts = options(port);
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
    let flow = try_flow::run(&cfg, &opts, move |u| {
        let _ = url_tx.send(u.to_string());
    });
    let browser = srv.browser();
    let browser_side = async {
        let authorize = url_rx.await.unwrap();
        // The real redirect, then its iss replaced.
        let q = query(&authorize);
        let redirect = browser_flow(
            &srv,
            &browser,
            CLIENT_ID,
            &q["request_uri"],
            USER,
            PASSWORD,
            true,
        )
        .await;
        let mut u = url::Url::parse(&redirect).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "iss" {
                    "https://evil.example".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        browser
            .get(u.as_str())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let (result, page) = tokio::join!(flow, browser_side);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, TryError::Failed(m) if m.contains("iss") && m.contains("evil.example")),
        "{err:?}"
    );
    assert!(page.contains("<h1>Not signed in</h1>"), "{page}");
    srv.stop().await;
}

/// Outside dev mode there is no dev client: none is made, and the one an
/// earlier dev-mode start declared is removed from the store.
#[actix_web::test]
async fn the_dev_client_does_not_exist_outside_dev_mode() {
    for backend in BACKENDS {
        let mut setup = Setup::new(backend);
        let srv = setup.start().await;
        let store = token_store::Store::connect(&srv.database_url, 1).unwrap();
        assert!(
            store.get_client(CLIENT_ID).await.unwrap().is_some(),
            "{backend:?}: declared in dev mode"
        );
        srv.stop().await;

        setup.tweak = Some(|cfg| {
            cfg.dev_mode = false;
            // The key the dev-mode start generated.
            cfg.keys.encryption_key =
                std::fs::read_to_string(cfg.data_dir.join("key-encryption-key")).unwrap();
        });
        let srv = setup.start().await;
        assert!(
            store.get_client(CLIENT_ID).await.unwrap().is_none(),
            "{backend:?}: gone outside dev mode"
        );
        let cfg = setup.config(srv.main_port, srv.mtls_port);
        let err = try_flow::run(&cfg, &options(free_port()), |_| {})
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("dev mode"), "{err}");
        srv.stop().await;

        // A fresh data dir outside dev mode gets no dev client files.
        let mut fresh = Setup::new(backend);
        fresh.tweak = Some(|cfg| {
            cfg.dev_mode = false;
            cfg.keys.encryption_key = oauth_core::keys::KeyEncryptionKey::generate().to_base64url();
        });
        let srv = fresh.start().await;
        assert!(!DevClientFiles::in_data_dir(&fresh.data_dir).dir.exists());
        let store = token_store::Store::connect(&srv.database_url, 1).unwrap();
        assert!(store.get_client(CLIENT_ID).await.unwrap().is_none());
        srv.stop().await;
    }
}

//! SIGTERM under load (issue 28 §6), through the real binary: while
//! clients keep discovery, JWKS and token requests going and a few slow
//! requests are half sent, a SIGTERM loses none of the requests in
//! flight, and a second one ends the drain at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use crate::harness::{Backend, Setup, TestServer};
use crate::ops::{Binary, SLOW_BODY, read_answer, refused, start_slow_request};
use crate::tpp::random;

/// Clients sending requests back to back, each on its own connections.
const LOADERS: usize = 16;

/// Requests whose body is half sent when the signal comes.
const SLOW: usize = 6;

/// A client of the load that authenticates with `client_secret_basic`.
const LOAD_CLIENT: &str = "load-gateway";

/// What one request of the load ended with: its status once the whole
/// body arrived, or the transport error.
type Outcome = Result<u16, String>;

/// The server with [`LOAD_CLIENT`] registered; its secret.
async fn start(shutdown_timeout_secs: u64) -> (Binary, String) {
    let mut setup = Setup::new(Backend::Sqlite);
    let secret = random(24);
    setup.clients = vec![json!({
        "client_id": LOAD_CLIENT,
        "client_name": "Load",
        "token_endpoint_auth_method": "client_secret_basic",
        "fapi": false,
        "grant_types": ["client_credentials"],
        "scope": "accounts",
        "client_secret_sha256": oauth_core::secret::hash_secret(&secret),
    })];
    let b = Binary::start(&setup, |c| {
        c["server"]["shutdown_timeout_secs"] = json!(shutdown_timeout_secs);
        c["server"]["request_body_timeout_secs"] = json!(60);
    })
    .await;
    (b, secret)
}

/// One request of the load, the `n`th of its client: discovery, JWKS or a
/// client-credentials token, in turn.
async fn one_request(http: &reqwest::Client, issuer: &str, secret: &str, n: usize) -> Outcome {
    let req = match n % 3 {
        0 => http.get(format!("{issuer}/.well-known/openid-configuration")),
        1 => http.get(format!("{issuer}/jwks")),
        _ => http
            .post(format!("{issuer}/token"))
            .basic_auth(LOAD_CLIENT, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "accounts")]),
    };
    let res = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    // A response cut short is as lost as one never sent.
    res.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    Ok(status)
}

/// [`LOADERS`] clients sending requests back to back until `stop`; each
/// finishes the request it has in flight, then returns every outcome.
fn spawn_load(
    srv: &TestServer,
    secret: &str,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    (0..LOADERS)
        .map(|i| {
            let http = srv.client(None);
            let issuer = srv.issuer.clone();
            let secret = secret.to_owned();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut n = i;
                while !stop.load(Ordering::SeqCst) {
                    outcomes.push(one_request(&http, &issuer, &secret, n).await);
                    n += 1;
                }
                outcomes
            })
        })
        .collect()
}

/// SIGTERM under load: the listeners stop accepting at once, every request
/// in flight (the load's, and slow ones finished after the signal) is
/// answered in full and below 500, and the process exits 0 within
/// `shutdown_timeout_secs`.
#[actix_web::test]
async fn sigterm_under_load_loses_no_request_in_flight() {
    const TIMEOUT_SECS: u64 = 8;
    let (mut b, secret) = start(TIMEOUT_SECS).await;
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        slow.push(start_slow_request(&b.srv).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(&b.srv, &secret, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // From here on no client starts a request: those under way are the
    // ones in flight when the signal lands.
    stop.store(true, Ordering::SeqCst);
    let sent = Instant::now();
    b.signal(libc::SIGTERM);

    let mut outcomes = Vec::new();
    for l in load {
        outcomes.extend(l.await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while !(refused(b.srv.main_port) && refused(b.srv.mtls_port)) {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "exited with slow requests in progress"
    );
    for conn in &mut slow {
        conn.write_all(&SLOW_BODY.as_bytes()[10..]).await.unwrap();
        conn.flush().await.unwrap();
    }
    for conn in &mut slow {
        let answer = read_answer(conn).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("\"error\":\"invalid_client\""), "{answer}");
    }
    assert_eq!(
        b.exit_within(Duration::from_secs(TIMEOUT_SECS + 5)).await,
        0,
        "{}",
        b.log_text()
    );
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(TIMEOUT_SECS),
        "the drain took {took:?}, more than shutdown_timeout_secs"
    );

    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok(s) if *s < 500))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        outcomes.len()
    );
    // The load was a load: every client had several requests answered.
    assert!(outcomes.len() >= LOADERS * 5, "{}", outcomes.len());
    let answered = outcomes.iter().filter(|o| **o == Ok(200)).count();
    assert_eq!(
        answered,
        outcomes.len(),
        "every request of the load succeeds"
    );
}

/// A second SIGTERM during a drain under load exits at once, however long
/// `shutdown_timeout_secs` would still wait.
#[actix_web::test]
async fn a_second_sigterm_under_load_exits_at_once() {
    let (mut b, secret) = start(60).await;
    // Never finished: the drain would wait the whole minute for them.
    let mut _slow = Vec::new();
    for _ in 0..SLOW {
        _slow.push(start_slow_request(&b.srv).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(&b.srv, &secret, &stop);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::SeqCst);
    b.signal(libc::SIGTERM);
    for l in load {
        l.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.child.try_wait().unwrap().is_none(), "should be draining");
    let second = Instant::now();
    b.signal(libc::SIGTERM);
    assert_eq!(b.exit_within(Duration::from_secs(5)).await, 1);
    let took = second.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

//! Faults under load: a database outage, a `kill -9`, a rolling restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conformance::flow::{Params, answer};
use tokio::sync::Mutex;

use crate::cluster::{Cluster, Pg};
use crate::flows;

/// One request of the load: when it was sent (since the start), how long
/// it took, on which instance, and what came back.
#[derive(Clone, Debug)]
struct Sample {
    sent: Duration,
    took: Duration,
    inst: usize,
    what: &'static str,
    outcome: Result<(u16, String), String>,
}

#[derive(Default, Debug)]
pub struct Outage {
    pub secs: f64,
    pub requests: usize,
    pub during: usize,
    pub unavailable_503: usize,
    /// The 503s by request kind.
    pub unavailable_by: std::collections::BTreeMap<&'static str, usize>,
    /// The median time to a 503: once the database is known gone, the
    /// answer must come at once, not after a wait for the pool.
    pub unavailable_median_ms: u128,
    pub max_latency_ms: u128,
    pub bound_ms: u128,
    pub recovery_ms: Vec<u128>,
    pub readyz_down_seen: Vec<bool>,
    pub healthz_failures: usize,
    pub failures: Vec<String>,
}

/// The longest median wait for a 503 during the outage.
const PROMPT_MS: u128 = 1000;

/// The error of a request that never reached the instance (the TCP or TLS
/// connection refused): a load balancer would send it elsewhere.
const REFUSED: &str = "connection refused";

/// Request `kind` % 3 on instance `inst`: a token request (client
/// credentials), a PAR, or the authorization endpoint with an unknown
/// `request_uri` (a browser's page: 400 when the database answers).
/// The outcome: (status, `error` or "page"), or the transport error
/// ([`REFUSED`] when the connection was not made).
async fn one_request(
    cluster: &Cluster,
    inst: usize,
    kind: usize,
) -> (&'static str, Result<(u16, String), String>) {
    let env = &cluster.instances[inst].env;
    let (what, req) = match kind % 3 {
        0 => {
            let c = &env.pkjwt[0];
            let form = flows::client_credentials(env, &flows::assertion(env));
            let req = c.http.post(env.ep(c, "token_endpoint")).form(&form);
            ("token", req.header("DPoP", flows::token_proof(env)))
        }
        1 => {
            let c = &env.pkjwt[1];
            let (p, _) = env.auth_params(&flows::DPOP, c);
            let form: Params = env.par_form(&flows::DPOP, c, &p);
            let mut req = c
                .http
                .post(env.ep(c, "pushed_authorization_request_endpoint"))
                .form(&form);
            if let Some(proof) = env.par_dpop(&flows::DPOP, c) {
                req = req.header("DPoP", proof);
            }
            ("PAR", req)
        }
        _ => {
            let mut url = url::Url::parse(
                env.discovery["authorization_endpoint"]
                    .as_str()
                    .unwrap_or_default(),
            )
            .expect("authorization_endpoint");
            url.query_pairs_mut()
                .append_pair("client_id", &env.pkjwt[1].id)
                .append_pair(
                    "request_uri",
                    &format!(
                        "urn:ietf:params:oauth:request_uri:{}",
                        conformance::jose::random(24)
                    ),
                );
            ("authorize", env.http.get(url.as_str()))
        }
    };
    let outcome = match req.send().await {
        Err(e) if e.is_connect() => Err(REFUSED.to_string()),
        Err(e) => Err(format!("{e} ({:?})", std::error::Error::source(&e))),
        Ok(res) => answer(Ok(res)).await.map(|a| {
            let e = if what == "authorize" {
                "page"
            } else {
                a.error()
            };
            (a.status, e.to_string())
        }),
    };
    (what, outcome)
}

/// What the request gets when the database answers.
fn served(what: &str, outcome: &Result<(u16, String), String>) -> bool {
    match outcome {
        Ok((200 | 201, _)) => what != "authorize",
        Ok((400, _)) => what == "authorize",
        _ => false,
    }
}

/// What it may get while the database is gone: 503 with
/// `temporarily_unavailable` (token, PAR) or a 503 page (browser).
fn unavailable(what: &str, outcome: &Result<(u16, String), String>) -> bool {
    match outcome {
        Ok((503, e)) => e == "temporarily_unavailable" || (what == "authorize" && e == "page"),
        _ => false,
    }
}

/// Load of token and PAR requests from `workers` loops until `stop`.
fn load(
    cluster: &Arc<Cluster>,
    workers: usize,
    t0: Instant,
    stop: &Arc<AtomicBool>,
    samples: &Arc<Mutex<Vec<Sample>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|w| {
            let (cl, stop, samples) = (cluster.clone(), stop.clone(), samples.clone());
            tokio::spawn(async move {
                let mut k = w;
                while !stop.load(Ordering::Relaxed) {
                    let inst = k % cl.instances.len();
                    let sent = t0.elapsed();
                    let (what, outcome) = one_request(&cl, inst, k).await;
                    let took = t0.elapsed() - sent;
                    samples.lock().await.push(Sample {
                        sent,
                        took,
                        inst,
                        what,
                        outcome,
                    });
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect()
}

fn ok(s: &Sample) -> bool {
    served(s.what, &s.outcome)
}

/// PostgreSQL stopped (`-m immediate`) for `secs` under load, then started:
/// every answer in between is a success (already in flight) or 503
/// `temporarily_unavailable` within `bound`; `/readyz` goes 503 and
/// `/healthz` stays 200; each instance serves again without a restart.
pub async fn outage(
    cluster: &Arc<Cluster>,
    pg: &Pg,
    secs: u64,
    bound: Duration,
    workers: usize,
) -> Outage {
    let mut o = Outage {
        bound_ms: bound.as_millis(),
        ..Outage::default()
    };
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let tasks = load(cluster, workers, t0, &stop, &samples);
    // Probes: (time, instance, readyz, healthz).
    let probes = Arc::new(Mutex::new(Vec::<(
        Duration,
        usize,
        Result<u16, String>,
        Result<u16, String>,
    )>::new()));
    let probe_task = {
        let (cl, stop, probes) = (cluster.clone(), stop.clone(), probes.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for (i, inst) in cl.instances.iter().enumerate() {
                    let at = t0.elapsed();
                    let r = flows::probe(&inst.env, "/readyz").await;
                    let h = flows::probe(&inst.env, "/healthz").await;
                    probes.lock().await.push((at, i, r, h));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down_at = t0.elapsed();
    if let Err(e) = pg.stop() {
        o.failures.push(format!("stopping PostgreSQL: {e}"));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let up_begin = t0.elapsed();
    if let Err(e) = pg.start() {
        o.failures.push(format!("starting PostgreSQL: {e}"));
    }
    let up_at = t0.elapsed();
    // Until every instance has served a request sent after the restart (at most 60 s).
    let n = cluster.instances.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recovered = {
            let s = samples.lock().await;
            (0..n).all(|i| s.iter().any(|x| x.inst == i && x.sent >= up_at && ok(x)))
        };
        if recovered || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let _ = probe_task.await;
    o.secs = t0.elapsed().as_secs_f64();
    let s = samples.lock().await;
    o.requests = s.len();
    let mut waits = Vec::new();
    for x in s.iter() {
        o.max_latency_ms = o.max_latency_ms.max(x.took.as_millis());
        if x.took > bound {
            o.failures.push(format!(
                "{} on instance {} took {} ms (bound {} ms)",
                x.what,
                x.inst,
                x.took.as_millis(),
                bound.as_millis()
            ));
        }
        let in_outage = x.sent + x.took > down_at && x.sent < up_begin;
        if in_outage {
            o.during += 1;
        }
        match &x.outcome {
            r if served(x.what, r) => {}
            r if unavailable(x.what, r) => {
                o.unavailable_503 += 1;
                waits.push(x.took.as_millis());
                *o.unavailable_by.entry(x.what).or_default() += 1;
                if x.sent + x.took < down_at {
                    o.failures.push(format!("503 before the outage: {x:?}"));
                }
            }
            other if o.failures.len() < 30 => {
                o.failures.push(format!(
                    "{} on instance {} at {:.1} s (outage {:.1}–{:.1} s): {other:?}",
                    x.what,
                    x.inst,
                    x.sent.as_secs_f64(),
                    down_at.as_secs_f64(),
                    up_at.as_secs_f64()
                ));
            }
            _ => {}
        }
    }
    for i in 0..n {
        match s
            .iter()
            .filter(|x| x.inst == i && x.sent >= up_at && ok(x))
            .map(|x| x.sent + x.took)
            .min()
        {
            Some(t) => o.recovery_ms.push((t - up_at).as_millis()),
            None => o.failures.push(format!(
                "instance {i} did not serve again within 60 s of the restart"
            )),
        }
    }
    let p = probes.lock().await;
    for i in 0..n {
        o.readyz_down_seen.push(p.iter().any(|(at, j, r, _)| {
            *j == i
                && *at > down_at + Duration::from_secs(1)
                && *at < up_begin
                && matches!(r, Ok(503))
        }));
        if !o.readyz_down_seen[i] {
            o.failures.push(format!(
                "instance {i}: /readyz never answered 503 during the outage"
            ));
        }
        if let Some((at, _, r, _)) = p.iter().find(|(at, j, r, _)| {
            *j == i && *at > up_at + Duration::from_secs(10) && !matches!(r, Ok(200))
        }) {
            o.failures.push(format!(
                "instance {i}: /readyz {r:?} at {:.1} s, 10 s after the restart",
                at.as_secs_f64()
            ));
        }
    }
    waits.sort_unstable();
    o.unavailable_median_ms = waits.get(waits.len() / 2).copied().unwrap_or_default();
    if o.unavailable_median_ms > PROMPT_MS {
        o.failures.push(format!(
            "the median 503 took {} ms (more than {PROMPT_MS} ms): requests wait for the pool \
             instead of being told at once that the database is gone",
            o.unavailable_median_ms
        ));
    }
    o.healthz_failures = p
        .iter()
        .filter(|(_, _, _, h)| !matches!(h, Ok(200)))
        .count();
    if o.healthz_failures > 0 {
        o.failures
            .push(format!("/healthz failed {} times", o.healthz_failures));
    }
    o
}

#[derive(Default, Debug)]
pub struct Crash {
    pub flows_before: usize,
    pub flows_after: usize,
    pub cut: usize,
    pub tokens_checked: usize,
    pub codes_checked: usize,
    pub restart_ms: u128,
    /// A customer signed in at the victim went on without signing in again
    /// at a survivor.
    pub session_kept: bool,
    pub failures: Vec<String>,
}

/// What a client holds after a flow: tokens, or a code not yet redeemed.
enum Held {
    Tokens { at: String, rt: String },
    Code { code: String, verifier: String },
}

/// Full flows from `workers` loops over the live instances; `victim` is
/// killed with SIGKILL after `before` flows have completed. Everything
/// obtained before the kill is then checked on the survivors: tokens are
/// active, codes redeem exactly once. The victim is started again at the end.
pub async fn crash(
    cluster: &Arc<Cluster>,
    victim: usize,
    before: usize,
    after: usize,
    workers: usize,
) -> Crash {
    let mut c = Crash::default();
    let n = cluster.instances.len();
    // A single instance (SQLite) is started again at once and the flows go
    // on there; with several, on the survivors.
    let alone = n == 1;
    // 0 before the kill, 1 killed, 2 (alone) started again.
    let phase = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    // (completed after the kill?, what the client holds)
    let held = Arc::new(Mutex::new(Vec::<(bool, Held)>::new()));
    let errors = Arc::new(Mutex::new(Vec::<(usize, usize, String)>::new()));
    let total = before + after;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (cl, phase, done, held, errors) = (
            cluster.clone(),
            phase.clone(),
            done.clone(),
            held.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = w;
            while done.load(Ordering::Relaxed) < total {
                let mut inst = k % n;
                let began = phase.load(Ordering::Relaxed);
                if began > 0 && inst == victim && !alone {
                    inst = (inst + 1) % n;
                }
                k += 1;
                let env = &cl.instances[inst].env;
                let r = async {
                    let (_, verifier, code) = flows::code_at(env, cl.instances[inst].ip).await?;
                    if k % 2 == 0 {
                        return Ok(Held::Code { code, verifier });
                    }
                    let a = env
                        .redeem(&flows::DPOP, &env.pkjwt[0], &code, &verifier)
                        .await?;
                    let (at, rt) = flows::token_pair(&a)?;
                    Ok::<_, String>(Held::Tokens { at, rt })
                }
                .await;
                match r {
                    Ok(h) => {
                        // Only what completed on a side of the kill counts for it.
                        if phase.load(Ordering::Relaxed) == began && (began != 1 || !alone) {
                            held.lock().await.push((began > 0, h));
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.lock().await.push((inst, began, e)),
                }
            }
        }));
    }
    // A customer signed in at the victim: the session must survive it.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let at_victim = &cluster.instances[victim];
    if let Err(e) = flows::flow_in(
        &at_victim.env,
        &flows::browser_with(&at_victim.env, at_victim.ip, jar.clone()),
    )
    .await
    {
        c.failures.push(format!("the session's first flow: {e}"));
    }
    while done.load(Ordering::Relaxed) < before {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.instances[victim].kill9().await;
    phase.store(1, Ordering::Relaxed);
    if alone {
        let t = Instant::now();
        match cluster.instances[victim].spawn().await {
            Ok(_) => c.restart_ms = t.elapsed().as_millis(),
            Err(e) => c
                .failures
                .push(format!("restarting the killed instance: {e}")),
        }
        phase.store(2, Ordering::Relaxed);
    }
    for t in tasks {
        let _ = t.await;
    }
    let held = std::mem::take(&mut *held.lock().await);
    for (inst, began, e) in errors.lock().await.iter() {
        if *inst == victim && (*began == 0 || (alone && *began == 1)) {
            // In flight on the victim when it died, or sent to it while it was down.
            c.cut += 1;
        } else if c.failures.len() < 20 {
            c.failures
                .push(format!("a flow on instance {inst} (phase {began}): {e}"));
        }
    }
    let survivors: Vec<usize> = if alone {
        vec![victim]
    } else {
        (0..n).filter(|&i| i != victim).collect()
    };
    let other = &cluster.instances[survivors[0]];
    match flows::flow_in(&other.env, &flows::browser_with(&other.env, other.ip, jar)).await {
        Ok(false) => c.session_kept = true,
        Ok(true) => c.failures.push(
            "the session from the killed instance was lost: the survivor asked to sign in again"
                .into(),
        ),
        Err(e) => c
            .failures
            .push(format!("the session's flow on a survivor: {e}")),
    }
    for (j, (after_kill, h)) in held.iter().enumerate() {
        if *after_kill {
            c.flows_after += 1;
        } else {
            c.flows_before += 1;
        }
        let env = &cluster.instances[survivors[j % survivors.len()]].env;
        match h {
            Held::Tokens { at, rt } => {
                c.tokens_checked += 1;
                for (kind, t) in [("access", at), ("refresh", rt)] {
                    match flows::active(env, t).await {
                        Ok(true) => {}
                        Ok(false) => c
                            .failures
                            .push(format!("a {kind} token issued before the kill is inactive")),
                        Err(e) => c.failures.push(e),
                    }
                }
            }
            Held::Code { code, verifier } => {
                c.codes_checked += 1;
                let first = env
                    .redeem(&flows::DPOP, &env.pkjwt[0], code, verifier)
                    .await;
                let second = env
                    .redeem(&flows::DPOP, &env.pkjwt[0], code, verifier)
                    .await;
                match (first, second) {
                    (Ok(a), Ok(b))
                        if a.status == 200 && b.status == 400 && b.error() == "invalid_grant" => {}
                    (a, b) => c.failures.push(format!(
                        "a code held across the kill: first {:?}, second {:?}",
                        a.map(|a| a.brief()),
                        b.map(|b| b.brief())
                    )),
                }
            }
        }
    }
    if !alone {
        let t = Instant::now();
        match cluster.instances[victim].spawn().await {
            Ok(_) => c.restart_ms = t.elapsed().as_millis(),
            Err(e) => c
                .failures
                .push(format!("restarting the killed instance: {e}")),
        }
    }
    c
}

#[derive(Default, Debug)]
pub struct Rolling {
    pub requests: usize,
    pub rerouted: usize,
    pub cut: Vec<String>,
    pub stop_ms: Vec<u128>,
    pub failures: Vec<String>,
}

/// SIGTERM to each instance in turn (then a fresh start) under the token
/// and PAR load. A refused connection goes to the next instance, as a load
/// balancer would send it; a request the stopping instance accepted and did
/// not answer is "cut" (graceful drain would prevent it).
pub async fn rolling(cluster: &Arc<Cluster>, workers: usize) -> Rolling {
    let mut out = Rolling::default();
    let n = cluster.instances.len();
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let rerouted = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (cl, stop, requests, rerouted, bad) = (
            cluster.clone(),
            stop.clone(),
            requests.clone(),
            rerouted.clone(),
            bad.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = w;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let mut tries = 0;
                loop {
                    let inst = (k + tries) % cl.instances.len();
                    requests.fetch_add(1, Ordering::Relaxed);
                    let (what, r) = one_request(&cl, inst, k).await;
                    match r {
                        r if served(what, &r) => break,
                        Err(e) if e == REFUSED && tries < n => {
                            rerouted.fetch_add(1, Ordering::Relaxed);
                            tries += 1;
                        }
                        other => {
                            bad.lock()
                                .await
                                .push(format!("{what} on instance {inst}: {other:?}"));
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for inst in &cluster.instances {
        out.stop_ms
            .push(inst.terminate(Duration::from_secs(30)).await.as_millis());
        if let Err(e) = inst.spawn().await {
            out.failures.push(format!("restart: {e}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    out.requests = requests.load(Ordering::Relaxed);
    out.rerouted = rerouted.load(Ordering::Relaxed);
    out.cut = std::mem::take(&mut *bad.lock().await);
    out
}

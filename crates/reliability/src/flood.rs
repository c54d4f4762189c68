//! Flood: unique one-time values, as fast as the instances answer, for a
//! fixed time: client assertions and DPoP proofs (each `jti` new) at the
//! token endpoint, pushed requests never used, CIBA requests never
//! approved. Every second the rows they land in and each instance's
//! resident memory are sampled; the rows must stay within what the last
//! lifetime's answers can have left (expiry plus the purge), memory must
//! level off, and once the flood stops the rows must drain to zero within
//! one lifetime and purge interval.
//!
//! The instances run with short lifetimes and a short purge interval
//! ([`configure`]); of several, the last one has `[limits]` on, and its
//! share of the flood must be answered `429` with `Retry-After` past the
//! burst. On SQLite (one process) the values go to `replay_log`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use conformance::flow::{Answer, Client, Env, Params};
use conformance::jose::{dpop_claims, dpop_proof, now, random};
use serde_json::{Value, json};

use crate::cluster::{self, Cluster};
use crate::flows::{self, DPOP};

/// The purge interval the flood's instances run with
/// (`database.purge_interval_secs`).
pub const PURGE_SECS: i64 = 2;
/// How long anything the flood leaves lives: pushed requests, CIBA requests
/// and access tokens by configuration (10 s), the `jti`s by what the flood
/// sends (DPoP `iat` 4 s back, the server keeping it 15 + 1 s after;
/// assertions and CIBA request objects with `exp` 2 s ahead, kept until
/// `exp` + the 10 s clock skew). What an attacker can make the server keep
/// is longer (an assertion's `exp` up to 300 s ahead, a DPoP `iat` up to
/// the window ahead): the same bound with that lifetime.
pub const LIFETIME_SECS: i64 = 12;
/// Rows over the bound's count that are tolerated (the suite's own).
const SLACK_ROWS: i64 = 20;
/// The bound's margin over the rows the last lifetime's answers leave.
const MARGIN: f64 = 1.2;
/// `[limits]` of the last instance (per client).
const LIMIT_PER_SEC: u64 = 10;
const LIMIT_BURST: u64 = 20;
/// The most an instance's resident memory may grow over the flood's
/// second half.
pub const RSS_GROWTH_BOUND: u64 = 16 << 20;

/// The tables the flood's values land in, as sampled (PostgreSQL).
pub const TABLES: [&str; 5] = [
    "replay_cache",
    "pushed_requests",
    "tokens",
    "ciba_requests",
    "ciba_deliveries",
];

/// The same on SQLite, where the one process that has claimed the
/// database decides the one-time values in its memory and logs them to
/// `replay_log` (crates/token-store/src/seen.rs).
pub const SQLITE_TABLES: [&str; 5] = [
    "replay_log",
    "pushed_requests",
    "tokens",
    "ciba_requests",
    "ciba_deliveries",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Token,
    Par,
    Ciba,
}

const KINDS: [Kind; 3] = [Kind::Token, Kind::Par, Kind::Ciba];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Par => "PAR",
            Kind::Ciba => "CIBA",
        }
    }
    fn ok_status(self) -> u16 {
        match self {
            Kind::Par => 201,
            _ => 200,
        }
    }
    /// Rows per table ([`TABLES`]) an answered request leaves: the token
    /// request its assertion's and its proof's `jti` and the access token;
    /// PAR the same two `jti`s and the pushed request; CIBA the assertion's
    /// and the request object's `jti`, the request and the bank's
    /// notification in the outbox.
    fn rows(self) -> [i64; 5] {
        match self {
            Kind::Token => [2, 0, 1, 0, 0],
            Kind::Par => [2, 1, 0, 0, 0],
            Kind::Ciba => [2, 0, 0, 1, 1],
        }
    }
    /// Rows a request refused by the per-client limit leaves: none (the
    /// `jti`s of token, PAR and CIBA requests are written with the
    /// request's first write, which a refusal never reaches).
    fn rows_refused(self) -> [i64; 5] {
        [0; 5]
    }
}

/// The instance configuration of the flood (see [`LIFETIME_SECS`]).
pub fn configure(i: usize, n: usize, cfg: &mut Value) {
    cfg["tokens"]["par_lifetime_secs"] = json!(10);
    cfg["tokens"]["access_token_lifetime_secs"] = json!(10);
    cfg["tokens"]["dpop_iat_window_secs"] = json!(15);
    cfg["ciba"]["default_expiry_secs"] = json!(10);
    cfg["ciba"]["max_expiry_secs"] = json!(10);
    cfg["database"]["purge_interval_secs"] = json!(PURGE_SECS);
    if n > 1 && i == n - 1 {
        cfg["limits"] = json!({
            "per_client_per_sec": LIMIT_PER_SEC,
            "per_client_burst": LIMIT_BURST,
        });
    }
}

#[derive(Default)]
struct Tally {
    /// Answered (2xx) and refused (429) requests by second of the flood
    /// and kind, over all instances.
    ok_at: Vec<[i64; 3]>,
    refused_at: Vec<[i64; 3]>,
    /// By instance and kind.
    ok: Vec<[u64; 3]>,
    refused: Vec<[u64; 3]>,
    /// Any other answer, or a 429 without `Retry-After` or on an instance
    /// without limits.
    bad: u64,
    bad_samples: Vec<String>,
}

impl Tally {
    fn count(&mut self, at: usize, inst: usize, kind: usize, refused: bool) {
        let (by_sec, by_inst) = if refused {
            (&mut self.refused_at, &mut self.refused)
        } else {
            (&mut self.ok_at, &mut self.ok)
        };
        if by_sec.len() <= at {
            by_sec.resize(at + 1, [0; 3]);
        }
        by_sec[at][kind] += 1;
        by_inst[inst][kind] += 1;
    }
    fn bad(&mut self, why: String) {
        self.bad += 1;
        if self.bad_samples.len() < 5 {
            self.bad_samples.push(why);
        }
    }
}

/// One sample: seconds since the flood began, rows per table, RSS (bytes)
/// per instance.
#[derive(Clone, Debug)]
struct Sample {
    t: f64,
    rows: Vec<i64>,
    rss: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub secs: u64,
    pub instances: usize,
    /// What is sampled ([`TABLES`] or [`SQLITE_TABLES`]).
    pub table_names: [&'static str; 5],
    /// Answered requests per second, by kind, over the unlimited instances.
    pub rate_by_kind: Vec<(&'static str, f64)>,
    pub rate: f64,
    /// (table, peak rows during the flood after the warm-up, the bound there)
    pub tables: Vec<(&'static str, i64, i64)>,
    /// The steady-state bound from the mean rate, per table.
    pub steady_bound: Vec<i64>,
    /// Per instance: RSS (MiB) at the start, peak, end of the flood, after
    /// the drain; growth over the second half.
    pub rss: Vec<[f64; 5]>,
    /// Seconds after the flood until every table held (near) nothing.
    pub drain_secs: Option<f64>,
    /// The limited instance: answered, refused (429), the most answers
    /// the limits allow.
    pub limited: Option<(u64, u64, u64)>,
    pub bad: u64,
    pub failures: Vec<String>,
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

fn rss_of(pid: Option<u32>) -> u64 {
    pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .and_then(|s| procstat::parse_rss(&s))
        .unwrap_or(0)
}

async fn sample(
    db: &str,
    tables: [&str; 5],
    pids: &[Option<u32>],
    t0: Instant,
) -> Result<Sample, String> {
    let sql = format!(
        "SELECT {}",
        tables
            .map(|t| format!("(SELECT count(*) FROM {t})"))
            .join(", ")
    );
    let url = db.to_string();
    let rows = tokio::task::spawn_blocking(move || cluster::counts(&url, &sql))
        .await
        .map_err(|e| e.to_string())??;
    Ok(Sample {
        t: t0.elapsed().as_secs_f64(),
        rows,
        rss: pids.iter().map(|p| rss_of(*p)).collect(),
    })
}

/// `c`'s client assertion, its `exp` 2 s ahead (see [`LIFETIME_SECS`]).
fn assertion(env: &Env, c: &Client) -> String {
    let mut claims = c.assertion_claims(json!(env.issuer));
    claims["exp"] = json!(now() + 2);
    c.key.sign(None, &claims)
}

/// A DPoP proof for `endpoint`, its `iat` 4 s back.
fn proof(env: &Env, c: &Client, endpoint: &str) -> String {
    let mut claims = dpop_claims("POST", &env.ep(c, endpoint), None);
    claims["iat"] = json!(now() - 4);
    dpop_proof(&c.dpop, &claims)
}

/// `form` with its client assertion replaced by a short-lived one.
fn short_assertion(env: &Env, c: &Client, mut form: Params) -> Params {
    for (k, v) in &mut form {
        if k == "client_assertion" {
            *v = assertion(env, c);
        }
    }
    form
}

/// One request of `kind` at the instance, each value in it new.
async fn send(cl: &Cluster, inst: usize, kind: Kind) -> Result<Answer, String> {
    let i = &cl.instances[inst];
    let env = &i.env;
    match kind {
        Kind::Token => {
            let c = &env.pkjwt[0];
            let form = flows::client_credentials(env, &assertion(env, c));
            let dpop = proof(env, c, "token_endpoint");
            env.post(c, &env.ep(c, "token_endpoint"), &form, Some(dpop))
                .await
        }
        Kind::Par => {
            let c = &env.pkjwt[0];
            let (p, _) = env.auth_params(&DPOP, c);
            let form = short_assertion(env, c, env.par_form(&DPOP, c, &p));
            let dpop = proof(env, c, "pushed_authorization_request_endpoint");
            env.par_raw(c, &form, Some(dpop)).await
        }
        Kind::Ciba => {
            let c = &i.ciba[0];
            let sub = format!("flood-{}", random(9));
            let mut claims = conformance::ciba::request_claims(env, c, &sub, None);
            claims["exp"] = json!(now() + 2);
            let form = conformance::ciba::bc_form(env, c, c.key.sign(None, &claims));
            let form = short_assertion(env, c, form);
            env.post(
                c,
                &env.ep(c, "backchannel_authentication_endpoint"),
                &form,
                None,
            )
            .await
        }
    }
}

/// Sends requests at the instance until `end`, as fast as they are
/// answered, the kinds in turn (twice as many token requests).
async fn worker(
    cl: Arc<Cluster>,
    inst: usize,
    limited: bool,
    mut k: usize,
    t0: Instant,
    end: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    while Instant::now() < end {
        let kind = [Kind::Token, Kind::Par, Kind::Token, Kind::Ciba][k % 4];
        k += 1;
        let a = send(&cl, inst, kind).await;
        let at = t0.elapsed().as_secs() as usize;
        let ki = KINDS.iter().position(|x| *x == kind).unwrap_or(0);
        let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
        match a {
            Ok(a) if a.status == kind.ok_status() => t.count(at, inst, ki, false),
            Ok(a) if a.status == 429 && limited => {
                let retry = a.header("retry-after").and_then(|v| v.parse::<u64>().ok());
                if retry.is_some_and(|s| s >= 1) && a.error() == "temporarily_unavailable" {
                    t.count(at, inst, ki, true);
                } else {
                    t.bad(format!(
                        "{} at instance {inst}: 429 without Retry-After or the error: {}",
                        kind.name(),
                        a.brief()
                    ));
                }
            }
            Ok(a) => t.bad(format!("{} at instance {inst}: {}", kind.name(), a.brief())),
            Err(e) => t.bad(format!("{} at instance {inst}: {e}", kind.name())),
        }
    }
}

/// The flood on `cl` (started with [`configure`]) for `secs`, `workers`
/// clients over the unlimited instances and, with several instances, two
/// at the limited one.
pub async fn flood(cl: &Arc<Cluster>, secs: u64, workers: usize) -> Report {
    let n = cl.instances.len();
    let tables = if cl.db_url.starts_with("sqlite://") {
        SQLITE_TABLES
    } else {
        TABLES
    };
    let mut r = Report {
        secs,
        instances: n,
        table_names: tables,
        ..Report::default()
    };
    let mut pids = Vec::new();
    for i in &cl.instances {
        pids.push(i.pid().await);
    }
    let tally = Arc::new(Mutex::new(Tally {
        ok: vec![[0; 3]; n],
        refused: vec![[0; 3]; n],
        ..Tally::default()
    }));
    // Warm connections and a first sample before the start.
    for i in &cl.instances {
        let _ = flows::probe(&i.env, "/healthz").await;
    }
    let t0 = Instant::now();
    let mut samples = Vec::new();
    match sample(&cl.db_url, tables, &pids, t0).await {
        Ok(s) => samples.push(s),
        Err(e) => r.failures.push(format!("sampling: {e}")),
    }
    let end = t0 + Duration::from_secs(secs);
    let unlimited = unlimited(n);
    let extra = if n > 1 { 2 } else { 0 };
    let mut tasks = Vec::new();
    for w in 0..workers + extra {
        let (inst, limited) = if w < workers {
            (w % unlimited, false)
        } else {
            (n - 1, true)
        };
        tasks.push(tokio::spawn(worker(
            cl.clone(),
            inst,
            limited,
            w,
            t0,
            end,
            tally.clone(),
        )));
    }
    // Every second, through the flood and the drain.
    let window = LIFETIME_SECS + PURGE_SECS;
    let drain_deadline = end + Duration::from_secs(window as u64 + 10);
    let near_zero = |rows: &[i64]| rows.iter().all(|&x| x <= 2);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        match sample(&cl.db_url, tables, &pids, t0).await {
            Ok(s) => {
                let done = s.t > secs as f64 && near_zero(&s.rows);
                if done && r.drain_secs.is_none() {
                    r.drain_secs = Some(s.t - secs as f64);
                }
                samples.push(s);
                if done {
                    break;
                }
            }
            Err(e) => {
                r.failures.push(format!("sampling: {e}"));
                break;
            }
        }
        if Instant::now() > drain_deadline {
            break;
        }
    }
    for t in tasks {
        if let Err(e) = t.await {
            r.failures.push(format!("a flood worker panicked: {e}"));
        }
    }
    let t = tally.lock().unwrap_or_else(PoisonError::into_inner);
    judge(&mut r, &t, &samples, secs);
    r
}

/// The instances without limits: all but the last, or the only one.
fn unlimited(n: usize) -> usize {
    if n > 1 { n - 1 } else { 1 }
}

/// The figures and the verdicts from the tally and the samples.
fn judge(r: &mut Report, t: &Tally, samples: &[Sample], secs: u64) {
    let n = r.instances;
    let window = LIFETIME_SECS + PURGE_SECS;
    let unlimited = unlimited(n);
    let names = r.table_names;
    r.rate_by_kind = KINDS
        .iter()
        .enumerate()
        .map(|(k, kind)| {
            let sum: u64 = t.ok[..unlimited].iter().map(|o| o[k]).sum();
            (kind.name(), sum as f64 / secs as f64)
        })
        .collect();
    r.rate = r.rate_by_kind.iter().map(|(_, x)| x).sum();
    // The rows the answers of seconds [from, to] leave, per table.
    let left = |from: i64, to: i64| -> Vec<i64> {
        let mut rows = vec![0i64; names.len()];
        for s in from.max(0)..=to {
            let s = s as usize;
            for (k, kind) in KINDS.iter().enumerate() {
                let ok = t.ok_at.get(s).map_or(0, |x| x[k]);
                let refused = t.refused_at.get(s).map_or(0, |x| x[k]);
                for (j, row) in rows.iter_mut().enumerate() {
                    *row += ok * kind.rows()[j] + refused * kind.rows_refused()[j];
                }
            }
        }
        rows
    };
    let bound = |rows: i64| (rows as f64 * MARGIN).ceil() as i64 + SLACK_ROWS;
    let mut peaks = vec![(0i64, 0i64); names.len()];
    let mut over = vec![0usize; names.len()];
    for s in samples {
        let sec = s.t.floor() as i64;
        // The answers that can still have rows: the last lifetime and purge
        // interval's, a second more for the sampling.
        let recent = left(sec - window - 1, sec);
        for (j, &rows) in s.rows.iter().enumerate() {
            let b = bound(recent[j]);
            if s.t >= window as f64 && s.t <= secs as f64 + 0.5 && rows > peaks[j].0 {
                peaks[j] = (rows, b);
            }
            if s.t >= window as f64 && rows > b {
                over[j] += 1;
                if over[j] > 1 {
                    continue;
                }
                r.failures.push(format!(
                    "{} held {rows} rows at {:.0} s, over the bound {b} (the answers of the last {} s leave {})",
                    names[j],
                    s.t,
                    window + 1,
                    recent[j]
                ));
            }
        }
    }
    for (j, &n) in over.iter().enumerate() {
        if n > 1 {
            r.failures
                .push(format!("{} over its bound in {n} samples in all", names[j]));
        }
    }
    let all = left(0, secs as i64);
    r.steady_bound = all
        .iter()
        .map(|&x| bound(x * (window + 1) / secs as i64))
        .collect();
    r.tables = names
        .iter()
        .zip(&peaks)
        .map(|(name, (p, b))| (*name, *p, *b))
        .collect();
    if secs as i64 <= window {
        r.failures.push(format!(
            "a {secs} s flood ends before its warm-up ({window} s): nothing measured"
        ));
    }
    match r.drain_secs {
        Some(d) if d <= (window + 4) as f64 => {}
        Some(d) => r.failures.push(format!(
            "the rows took {d:.0} s to drain (bound {} s)",
            window + 4
        )),
        None => r.failures.push(format!(
            "rows left {} s after the flood: {:?}",
            window + 10,
            samples.last().map(|s| s.rows.clone())
        )),
    }
    // Memory: start, peak, end of the flood, after the drain; growth over
    // the flood's second half.
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t <= secs as f64 + 0.5)
        .collect();
    let half = secs as f64 / 2.0;
    for i in 0..n {
        let at = |s: &Sample| s.rss.get(i).copied().unwrap_or(0);
        let start = samples.first().map_or(0, at);
        let peak = samples.iter().map(at).max().unwrap_or(0);
        let end = during.last().map_or(0, |s| at(s));
        let after = samples.last().map_or(0, at);
        let mid = during.iter().find(|s| s.t >= half).map_or(start, |s| at(s));
        let late_max = during
            .iter()
            .filter(|s| s.t >= half)
            .map(|s| at(s))
            .max()
            .unwrap_or(mid);
        let growth = late_max.saturating_sub(mid);
        r.rss
            .push([mib(start), mib(peak), mib(end), mib(after), mib(growth)]);
        if growth > RSS_GROWTH_BOUND {
            r.failures.push(format!(
                "instance {i}'s memory grew {:.1} MiB over the flood's second half (bound {:.0} MiB)",
                mib(growth),
                mib(RSS_GROWTH_BOUND)
            ));
        }
    }
    r.bad = t.bad;
    r.failures.extend(
        t.bad_samples
            .iter()
            .map(|b| format!("unexpected answer ({} in all): {b}", t.bad)),
    );
    if n == 1 {
        return;
    }
    // The limited instance: within the burst and the rate, the rest 429.
    let l = n - 1;
    let ok: u64 = t.ok[l].iter().sum();
    let refused: u64 = t.refused[l].iter().sum();
    // Two clients (the token and PAR requests' client, the CIBA client),
    // each its burst and its rate for the flood and a second.
    let allowed = 2 * (LIMIT_BURST + LIMIT_PER_SEC * (secs + 1));
    r.limited = Some((ok, refused, allowed));
    if ok > allowed {
        r.failures.push(format!(
            "the limited instance answered {ok} requests, more than its limits allow ({allowed})"
        ));
    }
    if refused == 0 {
        r.failures.push(
            "the limited instance refused nothing: the flood did not reach its limits".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `secs` of 100 token answers a second on instance 0 of two, the
    /// limited one refusing some; rows as expiry and the purge leave them
    /// (`purged`) or as they pile up without a purge.
    fn judged(secs: u64, purged: bool, rss_leak: u64) -> Report {
        let per_sec = 100i64;
        let t = Tally {
            ok_at: vec![[per_sec, 0, 0]; secs as usize],
            refused_at: vec![[0; 3]; secs as usize],
            ok: vec![[per_sec as u64 * secs, 0, 0], [30, 0, 0]],
            refused: vec![[0; 3], [500, 0, 0]],
            ..Tally::default()
        };
        let life = LIFETIME_SECS + PURGE_SECS / 2;
        let samples: Vec<Sample> = (0..=secs as i64 + 20)
            .map(|t| {
                let answered = if purged {
                    (t.min(secs as i64) - (t - life).max(0)).max(0)
                } else {
                    t.min(secs as i64)
                };
                let grown = rss_leak * t.min(secs as i64) as u64;
                Sample {
                    t: t as f64,
                    rows: vec![2 * per_sec * answered, 0, per_sec * answered, 0, 0],
                    rss: vec![60 << 20, (60 << 20) + grown],
                }
            })
            .collect();
        let mut r = Report {
            secs,
            instances: 2,
            table_names: TABLES,
            drain_secs: purged.then_some(life as f64),
            ..Report::default()
        };
        judge(&mut r, &t, &samples, secs);
        r
    }

    #[test]
    fn rows_that_expire_and_are_purged_stay_within_the_bound() {
        let r = judged(60, true, 0);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(r.tables[0].0, "replay_cache");
        assert_eq!(r.tables[0].1, 2 * 100 * (LIFETIME_SECS + 1));
        assert!(r.tables[0].2 > r.tables[0].1, "{:?}", r.tables);
        assert!((r.rate - 100.0).abs() < 1e-9, "{}", r.rate);
        assert_eq!(r.limited, Some((30, 500, 2 * (20 + 10 * 61))));
    }

    #[test]
    fn rows_without_a_purge_break_the_bound_and_never_drain() {
        let r = judged(30, false, 0);
        let text = r.failures.join("\n");
        assert!(text.contains("replay_cache held"), "{text}");
        assert!(text.contains("tokens held"), "{text}");
        assert!(text.contains("rows left"), "{text}");
        assert!(!text.contains("pushed_requests"), "{text}");
    }

    #[test]
    fn memory_that_keeps_growing_fails() {
        let r = judged(40, true, 1 << 20);
        let text = r.failures.join("\n");
        assert!(text.contains("instance 1's memory grew 20.0 MiB"), "{text}");
        assert!(!text.contains("instance 0"), "{text}");
    }
}

//! `reliability`: several Strongroom instances on one PostgreSQL, driven
//! concurrently over HTTPS through races on every one-time value, a
//! database outage, a `kill -9`, a rolling restart and a flood of unique
//! one-time values (docs/reliability.md, which it rewrites below its
//! marker).

mod cluster;
mod faults;
mod flood;
mod flows;
mod races;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
reliability: several Strongroom instances on one PostgreSQL under races, a
database outage, a kill -9, a rolling restart and a flood of one-time values.

Usage (through scripts/with-postgres.sh, as `make reliability` does):
  reliability [--instances N] [--rounds N] [--racers N] [--outage-secs N]
              [--bound-secs N] [--crash-flows N] [--workers N]
              [--outage-workers N] [--pool N] [--flood-secs N]
              [--flood-backend postgres|sqlite|all]
              [--only races,outage,crash,rolling,flood]
              [--backend postgres|sqlite|all]
              [--out FILE]

  --instances    Strongroom processes on the one database (default 3)
  --rounds       rounds of each race (default 50)
  --racers       concurrent uses of the one value per round (default 64)
  --outage-secs  how long PostgreSQL stays down (default 15)
  --bound-secs   the longest any request may take, outage included (default 8:
                 the pool's 5 s checkout, and margin)
  --crash-flows  full flows before the kill -9, and again after (default 40)
  --workers      concurrent clients of the load (default 8)
  --outage-workers  concurrent clients during the outage (default 64: more
                 than an instance has threads for database work)
  --pool         database connections per instance (default 8)
  --flood-secs   how long the flood of unique one-time values lasts (default
                 60; its warm-up, one lifetime and purge interval, is 14 s);
                 --workers clients, on instances of their own
  --flood-backend  where the flood runs, of the --backend set-ups (default
                 all)
  --only         a comma-separated subset of the parts; a race alone by its
                 name (code, request_uri, assertion, dpop, refresh, ciba,
                 registration)
  --backend      the set-ups: several instances on PostgreSQL, one process on
                 SQLite (races and crash only), or both (default all)
  --out          the report (default docs/reliability.md; `-` = stdout only)

The binary under test is $STRONGROOM_BIN or target/debug/strongroom.
";

/// The races, by the names `--only` takes (`races` = all of them).
const RACES: [&str; 7] = [
    "code",
    "request_uri",
    "assertion",
    "dpop",
    "refresh",
    "ciba",
    "registration",
];

/// Everything above it in the report is hand-written and kept.
const MARKER: &str = "<!-- Everything below is written by `make reliability`; edits are lost. -->";

struct Opts {
    instances: usize,
    rounds: usize,
    racers: usize,
    outage_secs: u64,
    bound_secs: u64,
    crash_flows: usize,
    workers: usize,
    outage_workers: usize,
    pool: u32,
    flood_secs: u64,
    /// The set-ups the flood runs on (as `backends`).
    flood_backends: Vec<bool>,
    only: Vec<String>,
    out: String,
    /// The set-ups in order: `false` PostgreSQL (several instances), `true`
    /// SQLite (one process).
    backends: Vec<bool>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        instances: 3,
        rounds: 50,
        racers: 64,
        outage_secs: 15,
        bound_secs: 8,
        crash_flows: 40,
        workers: 8,
        outage_workers: 64,
        pool: 8,
        flood_secs: 60,
        flood_backends: vec![false, true],
        only: ["races", "outage", "crash", "rolling", "flood"]
            .map(String::from)
            .to_vec(),
        out: "docs/reliability.md".into(),
        backends: vec![false, true],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--help" || a == "-h" {
            return Err(String::new());
        }
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("{a}: not a number: {v}"))
        };
        match a.as_str() {
            "--instances" => o.instances = num()?.clamp(2, 8) as usize,
            "--rounds" => o.rounds = num()? as usize,
            "--racers" => o.racers = num()?.max(2) as usize,
            "--outage-secs" => o.outage_secs = num()?,
            "--bound-secs" => o.bound_secs = num()?,
            "--crash-flows" => o.crash_flows = num()?.max(2) as usize,
            "--workers" => o.workers = num()?.max(1) as usize,
            "--outage-workers" => o.outage_workers = num()?.max(1) as usize,
            "--pool" => o.pool = num()?.max(1) as u32,
            "--flood-secs" => o.flood_secs = num()?.max(1),
            "--only" => o.only = v.split(',').map(str::to_string).collect(),
            "--out" => o.out = v.clone(),
            "--flood-backend" => {
                o.flood_backends = match v.as_str() {
                    "postgres" => vec![false],
                    "sqlite" => vec![true],
                    "all" => vec![false, true],
                    _ => return Err(format!("--flood-backend postgres|sqlite|all, not {v}")),
                }
            }
            "--backend" => {
                o.backends = match v.as_str() {
                    "postgres" => vec![false],
                    "sqlite" => vec![true],
                    "all" => vec![false, true],
                    _ => return Err(format!("--backend postgres|sqlite|all, not {v}")),
                }
            }
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("reliability: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("reliability: {e}");
            ExitCode::FAILURE
        }
    }
}

fn line(out: &mut String, s: String) {
    println!("{s}");
    out.push_str(&s);
    out.push('\n');
}

fn ms_list(v: &[u128]) -> String {
    v.iter()
        .map(|m| format!("{m} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn run(o: &Opts) -> Result<bool, String> {
    let t0 = Instant::now();
    let mut md = String::new();
    let mut failures: Vec<String> = Vec::new();
    line(
        &mut md,
        format!(
            "Last run: {} rounds × {} racers per race, outage {} s, bound {} s, {} load workers \
             ({} during the outage), pool {} per instance.\n",
            o.rounds, o.racers, o.outage_secs, o.bound_secs, o.workers, o.outage_workers, o.pool
        ),
    );
    // The flood has instances of its own: `--only flood` needs no others.
    let per_backend = o.only.iter().any(|p| p != "flood");
    for &sqlite in o.backends.iter().filter(|_| per_backend) {
        let n = if sqlite { 1 } else { o.instances };
        let t = Instant::now();
        let cl = Arc::new(cluster::Cluster::start(n, o.pool, sqlite).await?);
        let title = if sqlite {
            "SQLite, one process (several need PostgreSQL)".to_string()
        } else {
            format!("PostgreSQL, {n} instances")
        };
        eprintln!(
            "reliability: {title} up ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
        line(&mut md, format!("## {title}\n"));
        let before = failures.len();
        let r = parts(o, &cl, sqlite, &mut md, &mut failures).await;
        if failures[before..].iter().any(|f| f.contains("panicked")) {
            for (i, inst) in cl.instances.iter().enumerate() {
                eprintln!("--- instance {i} log tail:\n{}", inst.log_tail());
            }
        }
        for inst in &cl.instances {
            inst.kill9().await;
        }
        r?;
    }
    if o.only.iter().any(|p| p == "flood") {
        for &sqlite in o.backends.iter().filter(|b| o.flood_backends.contains(b)) {
            flood_part(o, sqlite, &mut md, &mut failures).await?;
        }
    }
    line(
        &mut md,
        format!(
            "Result: {} ({:.0} s in all).",
            if failures.is_empty() {
                "pass".to_string()
            } else {
                format!("{} failures", failures.len())
            },
            t0.elapsed().as_secs_f64()
        ),
    );
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    if o.out != "-" {
        write_report(&o.out, &md)?;
    }
    Ok(failures.is_empty())
}

/// The parts on one set-up; a single SQLite process has no outage (its
/// database is a file) and no rolling restart (nothing to route to).
async fn parts(
    o: &Opts,
    cl: &Arc<cluster::Cluster>,
    sqlite: bool,
    md: &mut String,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let has = |p: &str| o.only.iter().any(|x| x == p);
    let race = |name: &str| has("races") || has(name);
    if RACES.iter().any(|r| race(r)) {
        line(md, "### Races (exactly one winner per round)\n".into());
        line(
            md,
            "| one-time value | rounds | requests | rounds with one winner | losers' error | time |".into(),
        );
        line(md, "|---|---|---|---|---|---|".into());
        let (r, n) = (o.rounds, o.racers);
        // Each row as soon as its race is over.
        let mut row = |t: races::Tally, note: String| {
            line(
                md,
                format!(
                    "| {} | {} | {} | {} | {note} | {:.1} s |",
                    t.name, t.rounds, t.requests, t.one_winner, t.secs
                ),
            );
            failures.extend(t.failures.iter().map(|f| format!("{}: {f}", t.name)));
        };
        if race("code") {
            let t = races::code(cl, r, n).await;
            row(
                t,
                "`invalid_grant`; the winner (the one write that spent the code stored its \
                 tokens) answered, its tokens then revoked by the replays (RFC 6749 §4.1.2)"
                    .into(),
            );
        }
        if race("request_uri") {
            row(
                races::request_uri(cl, r, n).await,
                "`invalid_request_uri`".into(),
            );
        }
        if race("assertion") {
            row(races::assertion(cl, r, n).await, "`invalid_client`".into());
        }
        if race("dpop") {
            row(races::dpop(cl, r, n).await, "`invalid_dpop_proof`".into());
        }
        if race("refresh") {
            row(
                races::refresh(cl, r, n).await,
                "`invalid_grant`; the winner's new tokens stay active, the old refresh token not"
                    .into(),
            );
        }
        if race("ciba") {
            row(
                races::ciba(cl, r, n).await,
                "`invalid_grant`; the winner's token stays active".into(),
            );
        }
        if race("registration") {
            row(
                races::registration(cl, r, n).await,
                "`invalid_client_metadata`; one client of the software in the database".into(),
            );
        }
        line(md, String::new());
    }
    if has("outage") && !sqlite {
        let pg = cluster::Pg::from_env()?;
        let out = faults::outage(
            cl,
            &pg,
            o.outage_secs,
            Duration::from_secs(o.bound_secs),
            o.outage_workers,
        )
        .await;
        line(md, "### Database outage\n".into());
        line(
            md,
            format!(
                "PostgreSQL stopped (`pg_ctl stop -m immediate`) for {} s under load, then started: \
                 {} requests (token, PAR and the authorization page), {} of them answered during the outage, {} with 503 \
                 `temporarily_unavailable` (or the 503 page; {}), in {} ms at the median; the slowest answer took {} ms (bound {} ms). \
                 `/readyz` answered 503 during the outage on {} of {} instances, `/healthz` failed {} times. \
                 Back to serving after PostgreSQL was up, per instance: {}.\n",
                o.outage_secs,
                out.requests,
                out.during,
                out.unavailable_503,
                out.unavailable_by
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                out.unavailable_median_ms,
                out.max_latency_ms,
                out.bound_ms,
                out.readyz_down_seen.iter().filter(|x| **x).count(),
                out.readyz_down_seen.len(),
                out.healthz_failures,
                ms_list(&out.recovery_ms)
            ),
        );
        failures.extend(out.failures.iter().map(|f| format!("outage: {f}")));
    }
    if has("crash") {
        let victim = cl.instances.len() - 1;
        let c = faults::crash(cl, victim, o.crash_flows, o.crash_flows, o.workers).await;
        line(md, "### kill -9 under a load of full flows\n".into());
        let session = if c.session_kept {
            "went on without signing in again"
        } else {
            "had to sign in again"
        };
        let text = if sqlite {
            format!(
                "The one process killed with SIGKILL after {} full flows (PAR → authorize → login → consent → \
                 code, half of them redeemed) and started again at once (serving after {} ms); {} flows \
                 completed before the kill and {} after the restart; {} flow attempts failed while it was \
                 down. Checked after the restart: {} token pairs still active, {} codes held across the \
                 restart redeemed exactly once (the replay refused); a customer signed in before the kill {session}.\n",
                o.crash_flows,
                c.restart_ms,
                c.flows_before,
                c.flows_after,
                c.cut,
                c.tokens_checked,
                c.codes_checked
            )
        } else {
            format!(
                "Instance {victim} killed with SIGKILL after {} full flows (PAR → authorize → login → consent → code, \
                 half of them redeemed); {} flows completed before the kill and {} after, on the survivors; \
                 {} flows were cut by the kill. Checked on the survivors: {} token pairs (from both sides of the kill) \
                 still active, {} codes held across it redeemed exactly once; a customer signed in at the killed \
                 instance {session} at a survivor. The killed instance was serving again {} ms after its restart.\n",
                o.crash_flows,
                c.flows_before,
                c.flows_after,
                c.cut,
                c.tokens_checked,
                c.codes_checked,
                c.restart_ms
            )
        };
        line(md, text);
        failures.extend(c.failures.iter().map(|f| format!("crash: {f}")));
    }
    if has("rolling") && !sqlite {
        let r = faults::rolling(cl, o.workers).await;
        line(
            md,
            "### Rolling restart (SIGTERM, one instance at a time)\n".into(),
        );
        line(
            md,
            format!(
                "{} requests (token, PAR and the authorization page) during the restart of every instance; {} refused connections \
                 re-sent to the next instance (as a load balancer does); {} requests cut or refused by a stopping \
                 instance; each instance took {} to exit after SIGTERM. {}\n",
                r.requests,
                r.rerouted,
                r.cut.len(),
                ms_list(&r.stop_ms),
                if r.cut.is_empty() {
                    "No request was lost.".to_string()
                } else {
                    format!(
                        "Not yet a pass: graceful drain of in-flight requests is issue 28 (first: {}).",
                        r.cut[0]
                    )
                }
            ),
        );
        failures.extend(r.failures.iter().map(|f| format!("rolling: {f}")));
    }
    // What the database holds after all of it.
    line(md, "### The database afterwards\n".into());
    let live_under_revoked = cluster::count(
        &cl.db_url,
        "SELECT count(*) FROM tokens t JOIN grants g ON g.grant_id = t.grant_id \
         WHERE g.revoked_at IS NOT NULL AND t.revoked_at IS NULL",
    )?;
    let spent_without_tokens = cluster::count(
        &cl.db_url,
        "SELECT count(*) FROM authorization_codes c JOIN grants g ON g.grant_id = c.grant_id \
         WHERE c.consumed_at IS NOT NULL AND g.revoked_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.grant_id = c.grant_id)",
    )?;
    let (grants, tokens) = (
        cluster::count(&cl.db_url, "SELECT count(*) FROM grants")?,
        cluster::count(&cl.db_url, "SELECT count(*) FROM tokens")?,
    );
    line(
        md,
        format!(
            "{grants} grants and {tokens} tokens; live tokens under a revoked grant: \
             {live_under_revoked} (must be 0); codes spent whose live grant holds no token: \
             {spent_without_tokens} (must be 0: the code is spent in the write that stores its \
             tokens).\n"
        ),
    );
    if spent_without_tokens != 0 {
        failures.push(format!(
            "{spent_without_tokens} codes spent without their tokens"
        ));
    }
    if live_under_revoked != 0 {
        failures.push(format!(
            "{live_under_revoked} live tokens under a revoked grant"
        ));
    }
    Ok(())
}

/// The flood, on instances of its own (short lifetimes, a short purge
/// interval, limits on the last one).
async fn flood_part(
    o: &Opts,
    sqlite: bool,
    md: &mut String,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let n = if sqlite { 1 } else { o.instances };
    let t = Instant::now();
    let cl = Arc::new(
        cluster::Cluster::start_with(n, o.pool, sqlite, &|i, cfg| flood::configure(i, n, cfg))
            .await?,
    );
    let setup = if sqlite {
        "SQLite, one process".to_string()
    } else {
        format!("PostgreSQL, {n} instances")
    };
    eprintln!(
        "reliability: flood, {setup} up ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let r = flood::flood(&cl, o.flood_secs, o.workers).await;
    if !r.failures.is_empty() {
        for (i, inst) in cl.instances.iter().enumerate() {
            eprintln!("--- instance {i} log tail:\n{}", inst.log_tail());
        }
    }
    for inst in &cl.instances {
        inst.kill9().await;
    }
    line(
        md,
        format!("## Flood of unique one-time values ({setup})\n"),
    );
    let window = flood::LIFETIME_SECS + flood::PURGE_SECS;
    let who = if n > 1 {
        format!(
            "from {} clients as fast as instances 0–{} answered them, and two more clients at \
             instance {} with `[limits]` on (10 a second per client, burst 20)",
            o.workers,
            n - 2,
            n - 1
        )
    } else {
        format!(
            "from {} clients as fast as the process answered them (the one-time values decided \
             in its memory, logged to `replay_log`)",
            o.workers
        )
    };
    line(
        md,
        format!(
            "{} s of token requests (client_credentials, a new client assertion and DPoP proof each), \
             pushed requests never used and CIBA requests never approved, {who}; lifetimes {} s, \
             `database.purge_interval_secs = {}`. Answered{}: {:.0} requests/s ({}). Rows sampled \
             every second; from the warm-up ({window} s) on, each table must hold at most 1.2 × the \
             rows the answers of the last {} s left, + 20.\n",
            r.secs,
            flood::LIFETIME_SECS,
            flood::PURGE_SECS,
            if n > 1 {
                " by the unlimited instances"
            } else {
                ""
            },
            r.rate,
            r.rate_by_kind
                .iter()
                .map(|(k, x)| format!("{k} {x:.0}/s"))
                .collect::<Vec<_>>()
                .join(", "),
            window + 1,
        ),
    );
    line(
        md,
        "| table | peak rows (after the warm-up) | the bound there | bound at the mean rate |"
            .into(),
    );
    line(md, "|---|---|---|---|".into());
    for ((name, peak, bound), steady) in r.tables.iter().zip(&r.steady_bound) {
        line(md, format!("| {name} | {peak} | {bound} | {steady} |"));
    }
    line(md, String::new());
    line(
        md,
        "| instance | RSS at the start | peak | end of the flood | after the drain | growth over the second half |"
            .into(),
    );
    line(md, "|---|---|---|---|---|---|".into());
    for (i, m) in r.rss.iter().enumerate() {
        let name = if n > 1 && i == n - 1 {
            format!("{i} (limits on)")
        } else {
            i.to_string()
        };
        line(
            md,
            format!(
                "| {name} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                m[0], m[1], m[2], m[3], m[4]
            ),
        );
    }
    line(md, String::new());
    let limited = match r.limited {
        Some((ok, refused, allowed)) => format!(
            " The limited instance answered {ok} requests (its limits allow {allowed}) and refused \
             {refused} with 429, `Retry-After` and `temporarily_unavailable`."
        ),
        None => String::new(),
    };
    line(
        md,
        format!(
            "Drained (every table at most 2 rows) {} after the flood stopped (bound {} s).{limited} \
             Other answers: {} (must be 0). Memory must grow at most {} MiB over the flood's second half.\n",
            r.drain_secs
                .map_or("never".to_string(), |d| format!("{d:.0} s")),
            window + 4,
            r.bad,
            flood::RSS_GROWTH_BOUND >> 20,
        ),
    );
    failures.extend(r.failures.iter().map(|f| format!("flood: {f}")));
    Ok(())
}

/// Keeps the hand-written part (up to the marker) and replaces the rest.
fn write_report(path: &str, generated: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let head = match old.find(MARKER) {
        Some(i) => old[..i].to_string(),
        None => format!("{}\n\n", old.trim_end()),
    };
    let text = format!("{head}{MARKER}\n\n{generated}");
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
}

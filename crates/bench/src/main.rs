//! `strongroom-bench`: starts Strongroom (and node-oidc-provider when Node is
//! present), drives each case at each concurrency for a few repetitions and
//! prints/writes the comparison. It measures; it asserts no timings.

mod ciba;
mod h1;
mod limits;
mod load;
mod report;
mod setup;
mod stock;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use load::{ALL_CASES, Case, Load, ProvisionRef};
use report::{PacedRow, Row, Summary};

const USAGE: &str = "\
strongroom-bench: Strongroom beside node-oidc-provider.

  --server-bin PATH   the strongroom binary (default target/release/strongroom)
  --postgres          use the PostgreSQL named by STRONGROOM_TEST_DATABASE_URL
                      (scripts/with-postgres.sh sets it); default: SQLite in a fresh dir
  --peer-dir PATH     node-oidc-provider peer (default bench/peer); --no-peer skips it
  --out DIR           results directory (default bench/results)
  --conns LIST        connection counts (default 16,64)
  --reps N            repetitions (default 3)
  --duration SECS     measured seconds per repetition (default 5)
  --warmup SECS       unmeasured seconds before each (default 1)
  --cases LIST        only these cases (discovery,jwks,token,mtls,par,introspection,userinfo,flow,registration,ciba)
  --paced-share X     offered load of the fixed-load latency cells, as a share of
                      Strongroom's saturated throughput (default 0.5; 0 skips them)
  --sign-in-window    sign assertions, DPoP proofs and registration requests inside
                      the measured window, on the cores the servers use (default:
                      between each cell's warm-up and its window)
  --metrics           Strongroom with its internal listener, so that every request
                      is recorded in the Prometheus metrics (default: without)
  --smoke             a few seconds per case (1 rep, 16 connections, 1 s)
";

struct Opts {
    server_bin: PathBuf,
    postgres: bool,
    peer_dir: Option<PathBuf>,
    out: PathBuf,
    conns: Vec<usize>,
    reps: usize,
    duration: Duration,
    warmup: Duration,
    smoke: bool,
    metrics: bool,
    /// Sign the window's JWTs between the warm-up and the window
    /// (`stock`); off with `--sign-in-window`.
    sign_ahead: bool,
    cases: Vec<Case>,
    paced_share: f64,
}

impl Opts {
    /// The most connections measured: the paced cells and the chart use it.
    fn max_conns(&self) -> usize {
        self.conns.iter().copied().max().unwrap_or(16)
    }
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        server_bin: PathBuf::from("target/release/strongroom"),
        postgres: false,
        peer_dir: Some(PathBuf::from("bench/peer")),
        out: PathBuf::from("bench/results"),
        conns: vec![16, 64],
        reps: 3,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        smoke: false,
        metrics: false,
        sign_ahead: true,
        cases: ALL_CASES.to_vec(),
        paced_share: 0.5,
    };
    let mut args = std::env::args().skip(1);
    let secs = |v: Option<String>| -> Result<Duration, String> {
        v.and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| "expected seconds".to_string())
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server-bin" => o.server_bin = args.next().ok_or("--server-bin PATH")?.into(),
            "--postgres" => o.postgres = true,
            "--peer-dir" => o.peer_dir = Some(args.next().ok_or("--peer-dir PATH")?.into()),
            "--no-peer" => o.peer_dir = None,
            "--metrics" => o.metrics = true,
            "--paced-share" => {
                o.paced_share = args
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|x| (0.0..=1.0).contains(x))
                    .ok_or("--paced-share: a share between 0 and 1")?;
            }
            "--out" => o.out = args.next().ok_or("--out DIR")?.into(),
            "--conns" => {
                o.conns = args
                    .next()
                    .ok_or("--conns LIST")?
                    .split(',')
                    .map(|c| c.trim().parse().ok().filter(|n| *n > 0))
                    .collect::<Option<Vec<usize>>>()
                    .ok_or("--conns: positive numbers, comma-separated")?
            }
            "--reps" => {
                o.reps = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--reps N")?
            }
            "--duration" => o.duration = secs(args.next())?,
            "--warmup" => o.warmup = secs(args.next())?,
            "--cases" => {
                o.cases = args
                    .next()
                    .ok_or("--cases LIST")?
                    .split(',')
                    .map(|c| {
                        Case::parse(c.trim()).ok_or_else(|| format!("--cases: unknown case {c}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            "--sign-in-window" => o.sign_ahead = false,
            "--smoke" => {
                o.smoke = true;
                o.conns = vec![16];
                o.reps = 1;
                o.duration = Duration::from_secs(1);
                o.warmup = Duration::from_millis(300);
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
        }
    }
    Ok(o)
}

/// The driver shares the cores with the server under test; the less CPU it
/// takes per request, the more the measurement is of the server.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("strongroom-bench: {e}");
            return ExitCode::from(2);
        }
    };
    // The driver gets its own multi-threaded runtime; it shares the cores
    // with the server under test, as a co-located client would.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(bench(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("strongroom-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown")
        .to_string();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cpu": model,
        "cores": cores(),
        "memory_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why the peer cannot run here, if it cannot.
fn peer_unavailable(dir: &std::path::Path) -> Option<String> {
    let out = match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => o,
        _ => return Some("Node.js is not installed".into()),
    };
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let nums: Vec<u32> = v
        .trim_start_matches('v')
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    if nums.as_slice() < [20, 19].as_slice() {
        return Some(format!(
            "Node {v} is too old for oidc-provider 9 (needs 20.19+)"
        ));
    }
    if !dir.join("node_modules/oidc-provider").is_dir() {
        return Some(format!(
            "oidc-provider is not installed in {} (run `npm install` there)",
            dir.display()
        ));
    }
    None
}

type Results = Vec<((Case, usize), Summary)>;
type Paced = Vec<(Case, f64, Summary)>;

/// The cases whose latency target is also judged at a fixed offered load
/// (`--paced-share` of Strongroom's saturated throughput at the most
/// connections measured, offered to both servers alike).
const PACED_CASES: [Case; 3] = [Case::TokenPrivateKeyJwt, Case::Par, Case::Introspection];

/// The offered loads of the paced cells, from Strongroom's saturated runs.
fn paced_rates(results: &Results, conns: usize, share: f64) -> Vec<(Case, f64)> {
    PACED_CASES
        .iter()
        .filter_map(|&case| {
            let (_, s) = results.iter().find(|(k, _)| *k == (case, conns))?;
            let rate = (s.req_per_sec.median * share).round();
            (rate > 0.0).then_some((case, rate))
        })
        .collect()
}

fn log_run(name: &str, case: Case, conns: usize, rep: usize, load: Load, r: &load::Run) {
    eprintln!(
        "  {:<18} {:<10} {conns:>3} conns  rep {}: {:>8.0} req/s{}  p50 {:>6.2} ms  p99 {:>7.2} ms  cpu {:>4.0} %  rss {:>6.1} MiB{}",
        name,
        case.short(),
        rep + 1,
        r.req_per_sec,
        match load {
            Load::Saturate => String::new(),
            Load::Paced(rate) => format!(" (offered {rate:.0})"),
        },
        r.p50_ms,
        r.p99_ms,
        r.server_cpu_percent,
        r.peak_rss_mib,
        match &r.first_error {
            Some(e) => format!("  {} errors, first: {e}", r.errors),
            None => String::new(),
        }
    );
    if r.signed_in_window > 0 {
        eprintln!(
            "    ({} of the driver's signatures made inside the window, on the measured cores)",
            r.signed_in_window
        );
    }
}

/// The driver's target for a started server; the server is stopped when
/// it cannot be prepared.
async fn prepared(
    running: setup::Running,
    prov: Arc<ProvisionRef>,
    cases: Vec<Case>,
    bank: Option<Arc<ciba::BankSide>>,
) -> Result<(setup::Running, Arc<load::Target>), String> {
    match load::prepare(
        running.name,
        &running.issuer,
        running.pid,
        prov,
        cases,
        bank,
    )
    .await
    {
        Ok(t) => Ok((running, Arc::new(t))),
        Err(e) => {
            running.stop().await;
            Err(e)
        }
    }
}

/// What one run of the bench measured, per server.
#[derive(Default)]
struct Measured {
    sr: Results,
    sr_paced: Paced,
    peer: Results,
    peer_paced: Paced,
}

/// Every cell on both servers, repetition by repetition alternately
/// (Strongroom, then the peer), then the paced cells at the offered loads
/// Strongroom's saturated results give, likewise. The capacity of a shared
/// host drifts from minute to minute; alternating puts the two sides of
/// each ratio seconds apart instead of a quarter of an hour. A failed peer
/// run ends the peer's part of the bench (noted), not the bench.
async fn measure_both(
    sr: &Arc<load::Target>,
    mut peer: Option<Arc<load::Target>>,
    opts: &Opts,
    ok: &mut bool,
    peer_note: &mut String,
) -> Result<Measured, String> {
    let mut m = Measured::default();
    for &case in &sr.cases {
        for &conns in &opts.conns {
            let cell = (case, conns, Load::Saturate);
            let (s, p) = measure_pair(sr, &mut peer, cell, opts, ok, peer_note).await?;
            m.sr.extend(s.map(|s| ((case, conns), s)));
            m.peer.extend(p.map(|p| ((case, conns), p)));
        }
    }
    for (case, rate) in paced_rates(&m.sr, opts.max_conns(), opts.paced_share) {
        let cell = (case, opts.max_conns(), Load::Paced(rate));
        let (s, p) = measure_pair(sr, &mut peer, cell, opts, ok, peer_note).await?;
        m.sr_paced.extend(s.map(|s| (case, rate, s)));
        m.peer_paced.extend(p.map(|p| (case, rate, p)));
    }
    Ok(m)
}

/// One cell, `opts.reps` runs on each server, alternately. Strongroom's
/// errors fail the bench (`ok`); the peer's are only reported.
async fn measure_pair(
    sr: &Arc<load::Target>,
    peer: &mut Option<Arc<load::Target>>,
    (case, conns, load): (Case, usize, Load),
    opts: &Opts,
    ok: &mut bool,
    peer_note: &mut String,
) -> Result<(Option<Summary>, Option<Summary>), String> {
    let mut sr_runs = Vec::new();
    let mut peer_runs = Vec::new();
    // One repetition of this cell on `t`.
    let run = |t: Arc<load::Target>| async move {
        load::run(
            &t,
            case,
            conns,
            load,
            opts.warmup,
            opts.duration,
            opts.sign_ahead,
        )
        .await
    };
    for rep in 0..opts.reps {
        let r = run(sr.clone()).await?;
        log_run(sr.name, case, conns, rep, load, &r);
        if r.errors > 0 || r.requests == 0 {
            *ok = false;
        }
        sr_runs.push(r);
        let Some(p) = peer.clone().filter(|p| p.cases.contains(&case)) else {
            continue;
        };
        match run(p.clone()).await {
            Ok(r) => {
                log_run(p.name, case, conns, rep, load, &r);
                peer_runs.push(r);
            }
            Err(e) => {
                *peer_note = format!("peer failed: {e}");
                eprintln!("{peer_note}");
                *peer = None;
                peer_runs.clear();
            }
        }
    }
    Ok((Summary::of(sr_runs), Summary::of(peer_runs)))
}

async fn bench(opts: Opts) -> Result<bool, String> {
    let cores = cores();
    let max_conns = opts.max_conns();
    let budget = if opts.smoke {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    eprintln!("measuring single-core signature and argon2 rates …");
    let lim = tokio::task::spawn_blocking(move || limits::measure(budget))
        .await
        .map_err(|e| format!("limits: {e}"))?;
    let tmp = tempfile::Builder::new()
        .prefix("strongroom-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let prov = setup::provision(tmp.path())?;
    let pref = Arc::new(ProvisionRef::from(&prov));
    let (db_url, db_name) = if opts.postgres {
        let url = std::env::var("STRONGROOM_TEST_DATABASE_URL").map_err(|_| {
            "--postgres needs STRONGROOM_TEST_DATABASE_URL (run through scripts/with-postgres.sh)"
                .to_string()
        })?;
        (url, "PostgreSQL")
    } else {
        (
            format!(
                "sqlite://{}",
                tmp.path().join("data/strongroom.db").display()
            ),
            "SQLite",
        )
    };
    let mut ok = true;

    eprintln!(
        "starting Strongroom ({}, {db_name}, fresh data dir) …",
        opts.server_bin.display()
    );
    let (bank, bank_listener) = ciba::BankSide::bind()?;
    tokio::spawn(bank.clone().serve(bank_listener));
    let sr = setup::start_strongroom(&prov, &opts.server_bin, &db_url, &bank, opts.metrics).await?;
    let (sr, sr_target) = prepared(sr, pref.clone(), opts.cases.clone(), Some(bank)).await?;

    let peer_cases: Vec<Case> = [
        Case::Discovery,
        Case::Jwks,
        Case::TokenPrivateKeyJwt,
        Case::TokenTlsClientAuth,
        Case::Par,
        Case::Introspection,
        Case::UserinfoDpop,
        Case::FullFlow,
        Case::Ciba,
    ]
    .into_iter()
    .filter(|c| opts.cases.contains(c))
    .collect();
    // The peer runs beside Strongroom for the whole bench; each idles
    // while the other is measured.
    let mut peer_note = String::new();
    let mut peer = None;
    match &opts.peer_dir {
        None => peer_note = "peer skipped (--no-peer)".into(),
        Some(dir) => match peer_unavailable(dir) {
            Some(why) => {
                peer_note = format!("peer skipped: {why}");
                eprintln!("{peer_note}");
            }
            None => {
                eprintln!(
                    "starting node-oidc-provider (Node cluster, {cores} workers, its default in-memory store) …"
                );
                let started = match setup::start_peer(&prov, dir, cores).await {
                    Ok(p) => prepared(p, pref.clone(), peer_cases, None).await,
                    Err(e) => Err(e),
                };
                match started {
                    Ok(running) => peer = Some(running),
                    Err(e) => {
                        peer_note = format!("peer failed: {e}");
                        eprintln!("{peer_note}");
                    }
                }
            }
        },
    }
    let measured = measure_both(
        &sr_target,
        peer.as_ref().map(|(_, t)| t.clone()),
        &opts,
        &mut ok,
        &mut peer_note,
    )
    .await;
    if let Some((p, _)) = peer {
        p.stop().await;
    }
    sr.stop().await;
    let Measured {
        sr: sr_results,
        sr_paced,
        peer: peer_results,
        peer_paced,
    } = measured?;

    let find =
        |rs: &Results, k: (Case, usize)| rs.iter().find(|(kk, _)| *kk == k).map(|(_, s)| s.clone());
    let mut rows = Vec::new();
    for case in opts.cases.iter().copied() {
        for &conns in &opts.conns {
            let s = find(&sr_results, (case, conns));
            let p = find(&peer_results, (case, conns));
            let limit = lim.limit(case.sig_work(), cores as f64);
            rows.push(Row {
                case,
                label: case.label(),
                connections: conns,
                ratio: match (&s, &p) {
                    (Some(s), Some(p)) if p.req_per_sec.median > 0.0 => {
                        Some(s.req_per_sec.median / p.req_per_sec.median)
                    }
                    _ => None,
                },
                share_of_limit: match (&s, limit) {
                    (Some(s), Some(l)) => Some(s.req_per_sec.median / l),
                    _ => None,
                },
                crypto_limit_req_per_sec: limit,
                cpu_over_sig: s.as_ref().and_then(|s| {
                    lim.cpu_over_sig(
                        case.sig_work(),
                        s.server_cpu_percent.median,
                        s.req_per_sec.median,
                    )
                }),
                strongroom: s,
                peer: p,
            });
        }
    }
    let best_flow = rows
        .iter()
        .filter(|r| r.case == Case::FullFlow)
        .filter_map(|r| r.strongroom.as_ref().map(|s| s.req_per_sec.median))
        .fold(0.0, f64::max);
    let fresh = lim.fresh_login_rate(best_flow, cores as f64);
    let machine = machine();
    let peer_desc = format!(
        "node-oidc-provider (npm oidc-provider, bench/peer/package.json) under Node's cluster module with {cores} workers, \
         private_key_jwt ES256 + DPoP ES256, PS256/ES256 id_tokens, FAPI 2.0 profile, its development login and consent pages, \
         tls_client_auth and certificate-bound tokens on a second listener that asks for client certificates, \
         CIBA poll mode with signed requests (approved through its own backchannelResult API behind a bench route, with nothing to verify), \
         its default in-memory store (each worker has its own: every connection of the driver introspects, presents and \
         redeems only what it obtained on that connection, so each request reaches the worker that holds its state). \
         Not measured on the peer: registration (node-oidc-provider has RFC 7591 registration, but neither UK Open Banking's \
         signed registration request nor software-statement validation)."
    );
    let mut md = format!(
        "# Strongroom benchmark{}\n\nMachine: {} × {}, {} GiB, Linux {}. Strongroom on {db_name} (durable), metrics {}, release build unless --server-bin says otherwise; \
         load generator in the same machine (it shares the cores). Every client assertion, DPoP proof and registration request \
         is fresh, with its own `jti`, and used once; the driver signs them between each cell's warm-up and its measured window \
         (as many as the warm-up used, scaled to the window), so that its signing does not take the cores from the server \
         it measures; any it has to sign inside the window are reported.\n\n\
         Peer: {}\n{}\n\n{} s measured (+{} s warm-up) × {} repetitions per cell; medians with min–max. \
         Both servers run side by side for the whole bench and are measured alternately, repetition by repetition, \
         so that the host's drift affects both sides of each ratio alike.\n\n",
        if opts.smoke { " (smoke)" } else { "" },
        cores,
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        if opts.metrics {
            "recorded (internal listener on)"
        } else {
            "off (no internal listener)"
        },
        peer_desc,
        if peer_note.is_empty() {
            String::new()
        } else {
            format!("\n**{peer_note}**\n")
        },
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64(),
        opts.reps,
    );
    md.push_str(&report::table(&rows));
    let paced: Vec<PacedRow> = sr_paced
        .into_iter()
        .map(|(case, offered, s)| PacedRow {
            case,
            label: case.label(),
            connections: max_conns,
            offered_req_per_sec: offered,
            peer: peer_paced
                .iter()
                .find(|(c, _, _)| *c == case)
                .map(|(_, _, p)| p.clone()),
            strongroom: s,
        })
        .collect();
    if !paced.is_empty() {
        md.push_str(&format!(
            "\n### Latency at a fixed offered load ({max_conns} connections)\n\n\
             The table above saturates: each connection sends again as soon as it is answered, so with {max_conns} requests \
             always in flight the mean latency is {max_conns} ÷ throughput, whatever the server. Here both servers get the \
             same load, {:.0} % of Strongroom's saturated median, spread evenly over {max_conns} connections and scheduled in \
             advance; latency counts from each request's scheduled start, so a server that falls behind is charged for \
             the wait. A server that cannot keep up serves less than offered.\n\n",
            opts.paced_share * 100.0
        ));
        md.push_str(&report::paced_table(&paced));
    }
    md.push_str(&format!(
        "\nSingle-core crypto (oauth_core::keys, aws-lc-rs): PS256 sign {:.0}/s, verify {:.0}/s; ES256 sign {:.0}/s, verify {:.0}/s. \
         argon2id (server parameters) {:.1} hashes/s per core.\n\n\
         \"% of crypto limit\" = Strongroom req/s ÷ ({cores} cores ÷ the server's signature work per request: \
         2 ES256 verifications for token/PAR/registration (client assertion and DPoP proof; SSA and signed request), 1 for introspection/userinfo, 4 + 1 PS256 id_token signature per flow, 6 + 1 per CIBA journey). \
         It counts the load driver's work too, which shares the {cores} cores. \
         \"Server CPU ÷ signature work\" leaves the driver out: the server's own CPU per request (its CPU % ÷ its req/s) \
         as a multiple of that signature work on one core; 2.0× or less is within 2× of what the cores allow the server.\n",
        lim.ps256_sign_per_sec,
        lim.ps256_verify_per_sec,
        lim.es256_sign_per_sec,
        lim.es256_verify_per_sec,
        lim.argon2_hashes_per_sec,
    ));
    if best_flow > 0.0 {
        md.push_str(&format!(
            "\nFresh-login flows: each adds one argon2id check to a session flow: \
             1 / (1/{best_flow:.0} + 1/({:.1} × {cores})) ≈ **{fresh:.0} flows/s**.\n",
            lim.argon2_hashes_per_sec,
        ));
    }
    println!("\n{md}");

    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let stem = if opts.smoke { "smoke" } else { "latest" };
    let doc = json!({
        "smoke": opts.smoke,
        "machine": machine,
        "database": db_name,
        "metrics": opts.metrics,
        "server_bin": opts.server_bin,
        "connections": opts.conns,
        "repetitions": opts.reps,
        "duration_secs": opts.duration.as_secs_f64(),
        "warmup_secs": opts.warmup.as_secs_f64(),
        "peer": peer_desc,
        "peer_note": peer_note,
        "limits": lim,
        "fresh_login_flows_per_sec": fresh,
        "rows": rows,
        "paced": paced,
    });
    let write = |ext: &str, body: String| {
        let p = opts.out.join(format!("{stem}.{ext}"));
        std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))
    };
    write(
        "json",
        serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
    )?;
    write("md", md)?;
    write(
        "svg",
        report::svg_chart(
            &rows,
            max_conns,
            &format!(
                "Strongroom ({db_name}) vs node-oidc-provider — {} × {}",
                cores,
                machine["cpu"].as_str().unwrap_or("?")
            ),
        ),
    )?;
    eprintln!("results: {}/{stem}.{{json,md,svg}}", opts.out.display());
    if !ok {
        eprintln!("strongroom-bench: some Strongroom requests failed (see above)");
    }
    Ok(ok)
}

//! `conformance`: a black-box suite that mirrors the OpenID Foundation's OP
//! test plans (FAPI 2.0 Security Profile final, FAPI 2.0 Message Signing
//! final, FAPI-CIBA, FAPI 1.0 Advanced final), one test per OIDF module,
//! run against a real
//! Strongroom over HTTPS. See docs/conformance.md.

use conformance::{ciba, fapi1, flow, kit, modules, server};

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow::{Plan, Variant};
use modules::{Cond, FAPI2_MODULES, PENDING_PLANS};

const USAGE: &str = "\
conformance: the OIDF OP test plans, mirrored, against a real Strongroom.

Usage:
  conformance [--backend sqlite|postgres] [--plan sp|ms|ciba|fapi1|all] [--filter TEXT] [--jobs N]
  conformance kit [--out DIR] [--issuer URL]

  --backend   database of the Strongroom under test (postgres needs
              STRONGROOM_TEST_DATABASE_URL, e.g. through scripts/with-postgres.sh)
  --plan      sp = fapi2-security-profile-final, ms = fapi2-message-signing-final,
              ciba = fapi-ciba-id1, fapi1 = fapi1-advanced-final,
              all = the four (default: all four)
  --filter    only modules whose full name (plan-module) contains TEXT
  --jobs      modules run at the same time (default 6)
  kit         write the plan configurations for the real OIDF suite and a
              matching Strongroom client configuration (conformance/oidf/)

The binary under test is $STRONGROOM_BIN or target/debug/strongroom.
";

struct Row {
    plan: Plan,
    module: &'static str,
    variant: String,
    result: Result<(), String>,
    skipped: Option<String>,
    order: usize,
    secs: f64,
}

fn variants(plan: Plan) -> Vec<Variant> {
    match plan {
        Plan::Sp => [(false, true), (false, false), (true, true), (true, false)]
            .into_iter()
            .map(|(mtls, openid)| Variant::of(plan, mtls, openid, false))
            .collect(),
        Plan::Ms => [(false, true), (true, true)]
            .into_iter()
            .map(|(mtls, openid)| Variant::of(plan, mtls, openid, false))
            .collect(),
        Plan::Ciba => ciba::variants(),
        Plan::Fapi1 => fapi1::variants(),
    }
}

fn module_table(plan: Plan) -> &'static [modules::Module] {
    match plan {
        Plan::Ciba => ciba::MODULES,
        Plan::Fapi1 => fapi1::MODULES,
        _ => FAPI2_MODULES,
    }
}

/// The name the OIDF suite gives a module: the plan's prefix and the
/// module's name (the CIBA and FAPI 1.0 happy flows are the plan's name
/// alone).
fn full_name(plan: Plan, module: &str) -> String {
    if module == plan.name() {
        module.to_string()
    } else {
        format!("{}-{module}", plan.name())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut backend_pg = false;
    let all = vec![Plan::Sp, Plan::Ms, Plan::Ciba, Plan::Fapi1];
    let mut plans = all.clone();
    let mut filter: Option<String> = None;
    let mut jobs = 6usize;
    let mut it = args.iter();
    if args.first().map(String::as_str) == Some("kit") {
        return kit::main(&args[1..]);
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => match it.next().map(String::as_str) {
                Some("sqlite") => backend_pg = false,
                Some("postgres") => backend_pg = true,
                _ => return usage(),
            },
            "--plan" => {
                plans = match it.next().map(String::as_str) {
                    Some("sp") => vec![Plan::Sp],
                    Some("ms") => vec![Plan::Ms],
                    Some("ciba") => vec![Plan::Ciba],
                    Some("fapi1") => vec![Plan::Fapi1],
                    Some("all") => all.clone(),
                    _ => return usage(),
                }
            }
            "--filter" => filter = it.next().cloned(),
            "--jobs" => match it.next().and_then(|j| j.parse().ok()) {
                Some(j) if j > 0 => jobs = j,
                _ => return usage(),
            },
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut rows: Vec<Row> = Vec::new();
    let mut servers = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for plan in &plans {
        let plan = *plan;
        let table = module_table(plan);
        let wanted = |name: &str| {
            filter
                .as_ref()
                .is_none_or(|f| full_name(plan, name).contains(f.as_str()))
        };
        if !table.iter().any(|m| wanted(m.name)) {
            continue;
        }
        let running = match server::start(plan, backend_pg).await {
            Ok(r) => Arc::new(r),
            Err(e) => {
                // The other plans still run; every module of this one fails
                // with the reason.
                eprintln!("conformance: {}: {e}", plan.name());
                let why: String = e.chars().take(240).collect();
                for (order, module) in table.iter().enumerate() {
                    if wanted(module.name) && !(module.cond == Cond::Ms && plan == Plan::Sp) {
                        rows.push(Row {
                            plan,
                            module: module.name,
                            variant: "-".into(),
                            result: Err(format!("the plan's Strongroom did not start: {why}")),
                            skipped: match module.cond {
                                Cond::Skip(why) => Some(why.into()),
                                _ => None,
                            },
                            order,
                            secs: 0.0,
                        });
                    }
                }
                continue;
            }
        };
        eprintln!(
            "conformance: {} against Strongroom at {} ({}; log {})",
            plan.name(),
            running.env.issuer,
            if backend_pg { "PostgreSQL" } else { "SQLite" },
            running.log.display()
        );
        for (order, module) in table.iter().enumerate() {
            if module.cond == Cond::Ms && plan == Plan::Sp {
                continue;
            }
            if !wanted(module.name) {
                continue;
            }
            if let Cond::Skip(why) = module.cond {
                rows.push(Row {
                    plan,
                    module: module.name,
                    variant: "-".into(),
                    result: Ok(()),
                    skipped: Some(why.into()),
                    order,
                    secs: 0.0,
                });
                continue;
            }
            for v in variants(plan) {
                if !modules::applies(module, &v) {
                    continue;
                }
                let running = running.clone();
                let sem = sem.clone();
                let (name, slow) = (module.name, module.slow);
                tasks.spawn(async move {
                    let _permit = if slow {
                        None
                    } else {
                        sem.acquire_owned().await.ok()
                    };
                    let t = Instant::now();
                    let result = match tokio::time::timeout(Duration::from_secs(240), async {
                        if plan == Plan::Ciba {
                            ciba::run(&running, &v, name).await
                        } else if plan == Plan::Fapi1 {
                            fapi1::run(&running, &v, name).await
                        } else {
                            modules::run(&running.env, &v, name).await
                        }
                    })
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err("timed out after 240 s".into()),
                    };
                    Row {
                        plan,
                        module: name,
                        variant: v.label(),
                        result,
                        skipped: None,
                        order,
                        secs: t.elapsed().as_secs_f64(),
                    }
                });
            }
        }
        servers.push(running);
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("conformance: a module panicked: {e}");
                return ExitCode::from(2);
            }
        }
    }
    for s in servers {
        if let Ok(s) = Arc::try_unwrap(s) {
            s.stop().await;
        }
    }
    rows.sort_by(|a, b| {
        (a.plan as u8, a.order, &a.variant).cmp(&(b.plan as u8, b.order, &b.variant))
    });
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let width = rows
        .iter()
        .map(|r| full_name(r.plan, r.module).len())
        .max()
        .unwrap_or(40);
    println!("{:<width$}  {:<52}  RESULT", "MODULE", "VARIANT");
    for r in &rows {
        let module = full_name(r.plan, r.module);
        let result = match (&r.skipped, &r.result) {
            (Some(why), _) => {
                skipped += 1;
                format!("SKIPPED ({why})")
            }
            (None, Ok(())) => {
                passed += 1;
                format!("PASSED ({:.1} s)", r.secs)
            }
            (None, Err(e)) => {
                failed += 1;
                format!("FAILED: {e}")
            }
        };
        println!("{module:<width$}  {:<52}  {result}", r.variant);
    }
    if filter.is_none() {
        for (plan, why) in PENDING_PLANS {
            skipped += 1;
            println!(
                "{:<width$}  {:<52}  SKIPPED ({why})",
                format!("{plan} (whole plan)"),
                "-"
            );
        }
    }
    eprintln!(
        "conformance: {} backend, {:.0} s",
        if backend_pg { "PostgreSQL" } else { "SQLite" },
        started.elapsed().as_secs_f64()
    );
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage() -> ExitCode {
    eprint!("{USAGE}");
    ExitCode::from(2)
}

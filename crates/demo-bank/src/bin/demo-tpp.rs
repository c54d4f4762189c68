//! `demo-tpp`: a TPP walking through `make demo` (see
//! `demo_bank::walkthrough`). `--auto` drives the bank's login and consent
//! pages as the customer; without it, the authorization URL is printed on
//! one line beginning `Open this URL in your browser: ` and the address
//! the browser ends on is read from one line of standard input.

use clap::Parser;
use demo_bank::walkthrough::{Options, run};

/// The demo TPP: consent at the bank, PAR, the customer, code exchange,
/// introspection, revocation at the bank.
#[derive(Parser, Debug)]
#[command(name = "demo-tpp", version)]
struct Args {
    /// Drive the bank's login and consent pages as the customer.
    #[arg(long)]
    auto: bool,
    /// Strongroom's issuer (browser listener).
    #[arg(
        long,
        env = "DEMO_TPP_ISSUER",
        default_value = "https://localhost:8443"
    )]
    issuer: String,
    /// Strongroom's mTLS listener (token, PAR, introspection).
    #[arg(long, env = "DEMO_TPP_MTLS", default_value = "https://localhost:8444")]
    mtls: String,
    /// The demo bank.
    #[arg(long, env = "DEMO_TPP_BANK", default_value = "http://127.0.0.1:8070")]
    bank: String,
    /// Strongroom's data directory (dev-ca.pem, dev-ca-key.pem); the TPP's
    /// certificate is written there.
    #[arg(long, env = "DEMO_TPP_DATA", default_value = "data")]
    data_dir: std::path::PathBuf,
    /// The customer `--auto` signs in as.
    #[arg(long, env = "DEMO_TPP_USER", default_value = "mia")]
    user: String,
    /// Their password (the demo one).
    #[arg(
        long,
        env = "DEMO_TPP_PASSWORD",
        default_value = "correct horse",
        hide_default_value = true,
        hide_env_values = true
    )]
    password: String,
}

fn main() {
    let a = Args::parse();
    let trim = |s: &str| s.trim_end_matches('/').to_string();
    let opts = Options {
        issuer: trim(&a.issuer),
        mtls_base: trim(&a.mtls),
        bank: trim(&a.bank),
        data_dir: a.data_dir,
        auto: a.auto,
        username: a.user,
        password: a.password,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo-tpp: a tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(&opts)) {
        Ok(r) => {
            let ok = r.access_after_revocation["active"] == false
                && r.refresh_after_revocation["active"] == false;
            println!(
                "\n{}: consent {} authorised, tokens issued, then revoked at the bank.",
                if ok { "OK" } else { "FAILED" },
                r.consent_id
            );
            if !ok {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("demo-tpp: {e}");
            std::process::exit(1);
        }
    }
}

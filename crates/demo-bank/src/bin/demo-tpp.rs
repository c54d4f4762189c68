//! `demo-tpp`: a TPP walking through `make demo` (see
//! `demo_bank::walkthrough`). `--auto` drives the bank's login and consent
//! pages as the customer; without it, the authorization URL is printed on
//! one line beginning `Open this URL in your browser: ` and the address
//! the browser ends on is read from one line of standard input.
//!
//! `--uk` runs the UK TPP walkthrough instead (`demo_bank::walkthrough::uk`,
//! against `make demo-uk`): registration with the test directory's
//! software statement, consent, the hybrid flow with a request object by
//! value (`--encrypt`: encrypted to the published key), code exchange, the
//! bank's account API, as Open Banking Connector does it.
//! `--front-channel-out FILE` writes what the TPP saw of the authorization
//! response (id_token, code, state, nonce, the JWKS) as JSON, for a check
//! with another JOSE library.
//!
//! `--ciba` runs the decoupled journey instead: one line beginning
//! `Approve on the phone: ` names the bank's phone page and the binding
//! message, then the TPP polls; `--auto` approves (or, with `--deny`,
//! denies) on the phone as the customer. Exit status 0 on tokens, 1 on
//! `access_denied`, `expired_token` or any failure.

use clap::Parser;
use demo_bank::walkthrough::ciba::{self, Answer, Outcome};
use demo_bank::walkthrough::{Options, run};

/// The demo TPP: consent at the bank, PAR, the customer, code exchange,
/// introspection, revocation at the bank.
#[derive(Parser, Debug)]
#[command(name = "demo-tpp", version)]
struct Args {
    /// Drive the bank's pages as the customer (with --ciba: the phone page).
    #[arg(long)]
    auto: bool,
    /// The decoupled journey (CIBA, poll mode): the customer approves on
    /// the bank's phone page, the TPP polls.
    #[arg(long)]
    ciba: bool,
    /// With --ciba --auto: the customer denies instead.
    #[arg(long, requires = "ciba")]
    deny: bool,
    /// With --ciba: the binding message shown on the TPP and the phone
    /// (random by default).
    #[arg(long, requires = "ciba")]
    binding_message: Option<String>,
    /// The UK TPP walkthrough (against `make demo-uk`).
    #[arg(long, conflicts_with = "ciba")]
    uk: bool,
    /// With --uk: encrypt the request object (RSA-OAEP-256, A256GCM).
    #[arg(long, requires = "uk")]
    encrypt: bool,
    /// With --uk: where `strongroom-directory issue --uk` wrote the TPP's files.
    #[arg(long, env = "DEMO_TPP_DIRECTORY", default_value = "data/directory")]
    directory: std::path::PathBuf,
    /// With --uk: the software statement's software_id.
    #[arg(long, env = "DEMO_TPP_SOFTWARE_ID", default_value = "tppUkDemo01")]
    software_id: String,
    /// With --uk: the TPP's OB organisation id.
    #[arg(long, default_value = "0015800001041REAAY")]
    org_id: String,
    /// With --uk: the TPP's organisation name (O of its certificate).
    #[arg(long, default_value = "Demo UK TPP Ltd")]
    org_name: String,
    /// With --uk: the bank's OB organisation id, the registration's aud.
    #[arg(long, default_value = "0015800000jfwxXAAQ")]
    aspsp_id: String,
    /// With --uk: write the authorization response as the TPP saw it (JSON).
    #[arg(long, requires = "uk")]
    front_channel_out: Option<std::path::PathBuf>,
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
    /// The customer `--auto` signs in as (with --ciba: the `login_hint`).
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
    if a.uk {
        let uk = demo_bank::walkthrough::uk::UkOptions {
            base: opts,
            directory: a.directory,
            software_id: a.software_id,
            org_id: a.org_id,
            org_name: a.org_name,
            aspsp_id: a.aspsp_id,
            encrypt_request: a.encrypt,
        };
        match rt.block_on(demo_bank::walkthrough::uk::run(&uk)) {
            Ok(r) => {
                if let Some(path) = &a.front_channel_out {
                    let v = serde_json::json!({
                        "id_token": r.front_id_token, "code": r.code, "state": r.state,
                        "nonce": r.nonce, "jwks": r.jwks, "issuer": uk.base.issuer,
                        "client_id": r.client_id, "intent": r.consent_id,
                    });
                    if let Err(e) = std::fs::write(path, v.to_string()) {
                        eprintln!("demo-tpp: {}: {e}", path.display());
                        std::process::exit(1);
                    }
                }
                println!(
                    "\nOK: {} registered, consent {} authorised, accounts read with the bound token.",
                    r.client_id, r.consent_id
                );
            }
            Err(e) => {
                eprintln!("demo-tpp: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if a.ciba {
        let binding = a.binding_message.unwrap_or_else(ciba::binding_message);
        let answer = if a.deny {
            Answer::Deny
        } else {
            Answer::Approve
        };
        match rt.block_on(ciba::run(&opts, &binding, answer)) {
            Ok(r) => match r.outcome {
                Outcome::Tokens => println!(
                    "\nOK: consent {} approved on the phone, tokens issued.",
                    r.consent_id
                ),
                Outcome::Denied => {
                    println!("\nDENIED: the customer denied the request (access_denied).");
                    std::process::exit(1);
                }
                Outcome::Expired => {
                    println!("\nEXPIRED: nobody answered in time (expired_token).");
                    std::process::exit(1);
                }
            },
            Err(e) => {
                eprintln!("demo-tpp: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
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

//! `demo-tpp`: a TPP walking through `make demo` (see
//! `demo_bank::walkthrough`). `--auto` drives the bank's login and consent
//! pages as the customer; without it, the authorization URL is printed for a
//! human to open. Environment: `DEMO_TPP_ISSUER` (https://localhost:8443),
//! `DEMO_TPP_MTLS` (https://localhost:8444), `DEMO_TPP_BANK`
//! (http://127.0.0.1:8070), `DEMO_TPP_DATA` (data), `DEMO_TPP_USER` /
//! `DEMO_TPP_PASSWORD` (mia / correct horse).

use demo_bank::walkthrough::{Options, run};

fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: demo-tpp [--auto]   (against a running `make demo`)");
        return;
    }
    let opts = Options {
        issuer: env("DEMO_TPP_ISSUER", "https://localhost:8443"),
        mtls_base: env("DEMO_TPP_MTLS", "https://localhost:8444"),
        bank: env("DEMO_TPP_BANK", "http://127.0.0.1:8070"),
        data_dir: env("DEMO_TPP_DATA", "data").into(),
        auto: args.iter().any(|a| a == "--auto"),
        username: env("DEMO_TPP_USER", "mia"),
        password: env("DEMO_TPP_PASSWORD", "correct horse"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
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

//! `demo-bank`: the demo bank for `make demo`. It needs no Strongroom
//! configuration file: only where Strongroom is (its issuer) and the CA that
//! signed Strongroom's TLS certificate. The secrets are the demo ones of
//! `config/demo.toml`.

use clap::Parser;

/// The demo bank: its own login, consents and the hook pages of docs/hooks.md.
#[derive(Parser, Debug)]
#[command(name = "demo-bank", version)]
struct Args {
    /// Address to listen on (plain HTTP).
    #[arg(long, env = "DEMO_BANK_LISTEN", default_value = "127.0.0.1:8070")]
    listen: String,
    /// Strongroom's issuer URL: `iss` of the hand-offs, `aud` of the
    /// results, base of its introspection and /bank API.
    #[arg(
        long,
        env = "DEMO_BANK_STRONGROOM",
        default_value = "https://localhost:8443"
    )]
    strongroom: String,
    /// PEM file of the CA to trust for Strongroom's TLS (its dev CA).
    #[arg(long, env = "DEMO_BANK_CA", default_value = "data/dev-ca.pem")]
    ca: std::path::PathBuf,
    /// `hooks.shared_secret` (32 bytes, base64url); the demo one by
    /// default. From the environment only, never the command line.
    #[arg(skip = std::env::var("DEMO_BANK_SHARED_SECRET").ok())]
    shared_secret: Option<String>,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEMO_BANK_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(e) = run(args) {
        eprintln!("demo-bank: {e}");
        std::process::exit(2);
    }
}

fn run(args: Args) -> Result<(), String> {
    let strongroom = args.strongroom.trim_end_matches('/');
    url::Url::parse(strongroom).map_err(|e| format!("--strongroom {strongroom}: {e}"))?;
    let mut cfg = demo_bank::BankConfig::demo(strongroom);
    if args.ca.exists() {
        cfg.strongroom_ca = Some(args.ca);
    } else {
        tracing::warn!(ca = %args.ca.display(), "no CA file: Strongroom's certificate will not be trusted");
    }
    if let Some(s) = &args.shared_secret {
        cfg.shared_secret = demo_bank::hook::parse_shared_secret(s)
            .map_err(|e| format!("DEMO_BANK_SHARED_SECRET: {e}"))?;
    }
    let bank = demo_bank::Bank::new(cfg)?;
    let listener = std::net::TcpListener::bind(&args.listen)
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let listen = &args.listen;
    tracing::info!(%listen, %strongroom, "demo bank listening: customers at http://{listen}/my/consents");
    actix_web::rt::System::new()
        .block_on(demo_bank::serve(bank, listener).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())
}

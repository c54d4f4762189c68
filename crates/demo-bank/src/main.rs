//! `demo-bank`: the demo bank for `make demo`. Environment:
//! `DEMO_BANK_LISTEN` (127.0.0.1:8070), `DEMO_BANK_STRONGROOM`
//! (https://localhost:8443), `DEMO_BANK_CA` (data/dev-ca.pem, Strongroom's
//! dev CA). The secrets are the demo ones in `config/demo.toml`.

use base64::Engine;

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEMO_BANK_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let listen = env("DEMO_BANK_LISTEN", "127.0.0.1:8070");
    let mut cfg =
        demo_bank::BankConfig::demo(&env("DEMO_BANK_STRONGROOM", "https://localhost:8443"));
    let ca = std::path::PathBuf::from(env("DEMO_BANK_CA", "data/dev-ca.pem"));
    cfg.strongroom_ca = ca.exists().then_some(ca);
    if let Ok(s) = std::env::var("DEMO_BANK_SHARED_SECRET") {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .expect("DEMO_BANK_SHARED_SECRET: 32 bytes, base64url");
        cfg.shared_secret = raw;
    }
    let bank = demo_bank::Bank::new(cfg).map_err(std::io::Error::other)?;
    let listener = std::net::TcpListener::bind(&listen)?;
    tracing::info!(%listen, "demo bank listening: customers at http://{listen}/my/consents");
    actix_web::rt::System::new().block_on(demo_bank::serve(bank, listener)?)
}

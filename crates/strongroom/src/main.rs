//! `strongroom`: the server binary and its operator commands.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use oauth_core::secret::now;
use oauth_core::storage::KeyRepository;
use strongroom::config::{Config, ProcessEnv};
use strongroom::startup::{self, Listeners, StartError};
use strongroom::try_flow;

const ENVIRONMENT: &str = "\
Configuration: config/strongroom.toml or $STRONGROOM_CONFIG, overridden by
STRONGROOM_LISTEN, STRONGROOM_MTLS_LISTEN, STRONGROOM_ISSUER, STRONGROOM_DATA_DIR,
STRONGROOM_DATABASE_URL, STRONGROOM_KEY_ENCRYPTION_KEY, STRONGROOM_LOG,
STRONGROOM_ADMIN_LISTEN, STRONGROOM_OTLP_ENDPOINT.
A bad value stops any command with one line naming the key (exit code 2).";

/// Strongroom, a FAPI-grade OpenID Provider.
#[derive(Parser)]
#[command(name = "strongroom", version, after_help = ENVIRONMENT)]
struct Cli {
    /// Without a command: serve.
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the provider (the default)
    Serve,
    /// Load and validate the configuration as `serve` would, then exit
    CheckConfig,
    /// Apply pending database migrations, then exit
    Migrate,
    /// The provider's signing and encryption keys
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Read a password on stdin, print its argon2id hash (for [[users]])
    HashPassword,
    /// Read a client secret on stdin, print its SHA-256 (for non-FAPI clients)
    HashSecret,
    /// Ask the running server's internal listener whether it is alive
    /// (`/healthz`) or, with --ready, ready (`/readyz`); exit 0 or 1. For
    /// container health checks.
    Health(HealthArgs),
    /// The admin API of a running server (docs/admin.md)
    Admin(strongroom::admin_cli::AdminArgs),
    /// Dev mode: walk the dev client through the built-in flow against a
    /// running server (`make run` first), ending with a token
    Try(TryArgs),
}

#[derive(Subcommand)]
enum KeysCmd {
    /// List the provider's keys and their schedule
    List,
    /// Publish new keys now; they sign after keys.activation_delay_secs
    Rotate,
    /// Print a fresh key-encryption key (base64url)
    NewKek,
}

#[derive(Args)]
struct HealthArgs {
    /// Check readiness (the database answers) instead of liveness
    #[arg(long)]
    ready: bool,
}

#[derive(Args)]
struct TryArgs {
    /// Port of the local callback listener (https://localhost:PORT/callback);
    /// another port than the registered one re-registers it for the
    /// server's next start
    #[arg(long, default_value_t = try_flow::DEFAULT_PORT)]
    port: u16,
    /// Print the authorize URL only, do not run xdg-open
    #[arg(long)]
    no_open: bool,
    /// How long to wait for the browser's redirect
    #[arg(long, value_name = "SECS", default_value_t = try_flow::DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
    /// `prompt` for the authorization request, e.g. `login`
    #[arg(long)]
    prompt: Option<String>,
    /// The scope to ask for
    #[arg(long, default_value = try_flow::DEFAULT_SCOPE)]
    scope: String,
    /// Also print the access, id and refresh tokens
    #[arg(long)]
    show_tokens: bool,
}

/// The allocator is mimalloc: measured against glibc's malloc under the
/// bench (docs/benchmarks.md), about 10 % more requests per second at the
/// same peak RSS, without glibc's arena lock contention and
/// `malloc_consolidate` stalls between the async and blocking threads.
///
/// Two settings keep the footprint small: memory is committed when a page is
/// first used rather than a whole arena chunk at once, and freed pages are
/// returned to the OS at once instead of after a delay (argon2's 19 MiB
/// working sets would otherwise linger after every login).
///
/// The first setting is read when mimalloc reserves its first arena, which
/// happens before `main` (the runtime allocates), so this runs as an ELF
/// constructor ordered before mimalloc's own (priority 101).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
extern "C" fn tune_allocator() {
    // mi_option_t values of mimalloc 3 (include/mimalloc.h), which
    // libmimalloc-sys builds but does not name.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    use libmimalloc_sys::mi_option_set;
    // SAFETY: mi_option_set only stores an option value; this runs before
    // main, on the only thread.
    unsafe {
        mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi_option_set(PURGE_DELAY, 0);
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    startup::install_crypto_provider();
    let command = match Cli::parse().command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => Command::Serve,
        Cmd::CheckConfig => Command::CheckConfig,
        Cmd::Migrate => Command::Migrate,
        Cmd::Keys(KeysCmd::List) => Command::KeysList,
        Cmd::Keys(KeysCmd::Rotate) => Command::KeysRotate,
        Cmd::Keys(KeysCmd::NewKek) => {
            println!(
                "{}",
                oauth_core::keys::KeyEncryptionKey::generate().to_base64url()
            );
            return ExitCode::SUCCESS;
        }
        Cmd::HashPassword => {
            let Some(line) = read_stdin_line() else {
                eprintln!("strongroom: give the password on standard input");
                return ExitCode::from(2);
            };
            return match strongroom::users::hash_password(&line) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("strongroom: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Cmd::HashSecret => {
            let Some(line) = read_stdin_line() else {
                eprintln!("strongroom: give the secret on standard input");
                return ExitCode::from(2);
            };
            println!("{}", oauth_core::secret::hash_secret(&line));
            return ExitCode::SUCCESS;
        }
        Cmd::Health(args) => {
            return match load_config() {
                Ok(cfg) => health_command(&cfg, args.ready),
                Err(code) => code,
            };
        }
        Cmd::Admin(args) => {
            let cfg = match load_config() {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            let result =
                actix_web::rt::System::new().block_on(strongroom::admin_cli::run(&cfg, args));
            return match result {
                Ok(out) => {
                    println!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("strongroom admin: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Cmd::Try(args) => {
            return match load_config() {
                Ok(cfg) => try_command(&cfg, &args),
                Err(code) => code,
            };
        }
    };
    let cfg = match load_config() {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    // Dropped after the server has stopped: the last spans are sent then.
    let _export = startup::init_logging(&cfg);
    let result = actix_web::rt::System::new().block_on(run(command, cfg));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("strongroom: {e}");
            ExitCode::from(2)
        }
    }
}

/// The configuration, or the one line naming what is wrong (exit 2).
fn load_config() -> Result<Config, ExitCode> {
    Config::load(&ProcessEnv).map_err(|e| {
        eprintln!("strongroom: configuration error: {e}");
        ExitCode::from(2)
    })
}

/// `strongroom health`: GET `/healthz` (or `/readyz`) on the internal
/// listener, within 2 s; exit 0 on 200, 1 otherwise, 2 without one.
fn health_command(cfg: &Config, ready: bool) -> ExitCode {
    let Ok(mut addr) = cfg.server.admin_listen.parse::<std::net::SocketAddr>() else {
        eprintln!("strongroom health: needs server.admin_listen (STRONGROOM_ADMIN_LISTEN)");
        return ExitCode::from(2);
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let path = if ready { "readyz" } else { "healthz" };
    let scheme = if cfg.admin.tls { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/{path}");
    let probe = async {
        // Over `admin.tls` the probe reads a status code from loopback and
        // sends nothing: the certificate (issued for the public name) is
        // not checked.
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .danger_accept_invalid_certs(cfg.admin.tls)
            .build()
            .map_err(|e| e.to_string())?;
        let res = http.get(&url).send().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(res.status().as_u16())
    };
    match actix_web::rt::System::new().block_on(probe) {
        Ok(200) => {
            println!("{path}: ok");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("strongroom health: {url}: {status}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("strongroom health: {url}: {e}");
            ExitCode::from(1)
        }
    }
}

/// `strongroom try`: the summary on stdout, exit 0 with a token, 1 when the
/// flow ended otherwise, 2 on usage and configuration errors.
fn try_command(cfg: &Config, args: &TryArgs) -> ExitCode {
    let opts = try_flow::Options {
        port: args.port,
        open: !args.no_open,
        timeout: std::time::Duration::from_secs(args.timeout),
        prompt: args.prompt.clone(),
        scope: args.scope.clone(),
    };
    let open = opts.open;
    let result = actix_web::rt::System::new().block_on(try_flow::run(cfg, &opts, |url| {
        try_flow::announce(url, open)
    }));
    match result {
        Ok(summary) => {
            print!("{}", summary.render(args.show_tokens));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strongroom try: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A time in seconds since the epoch as RFC 3339 (UTC), e.g.
/// `2026-01-31T09:30:00Z`.
fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

fn read_stdin_line() -> Option<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    (!line.is_empty()).then_some(line)
}

enum Command {
    Serve,
    CheckConfig,
    Migrate,
    KeysList,
    KeysRotate,
}

async fn run(command: Command, cfg: Config) -> Result<(), StartError> {
    match command {
        Command::CheckConfig => {
            let checked = startup::check(&cfg, false).await?;
            println!(
                "configuration ok (issuer {}, database {})",
                cfg.issuer,
                checked.store.backend_name()
            );
            Ok(())
        }
        Command::Migrate => {
            startup::ensure_data_dir(&cfg.data_dir)?;
            let store = startup::open_store(&cfg).await?;
            println!("migrations applied ({})", store.backend_name());
            Ok(())
        }
        Command::KeysList => {
            startup::ensure_data_dir(&cfg.data_dir)?;
            let store = startup::open_store(&cfg).await?;
            let keys = store
                .list_keys(now())
                .await
                .map_err(|e| StartError(format!("loading keys: {e}")))?;
            println!(
                "{:<45} {:<13} {:<4} {:<20} {:<20} {:<20}",
                "kid", "alg", "use", "active_from", "retired_at", "expires_at"
            );
            let opt = |v: Option<i64>| v.map_or("-".to_string(), rfc3339);
            for k in keys {
                println!(
                    "{:<45} {:<13} {:<4} {:<20} {:<20} {:<20}",
                    k.kid,
                    k.alg,
                    k.key_use,
                    rfc3339(k.active_from),
                    opt(k.retired_at),
                    opt(k.expires_at)
                );
            }
            Ok(())
        }
        Command::KeysRotate => {
            startup::ensure_data_dir(&cfg.data_dir)?;
            let kek = startup::key_encryption_key(&cfg)?;
            let store = startup::open_store(&cfg).await?;
            let t = now();
            let existing = store
                .list_keys(t)
                .await
                .map_err(|e| StartError(format!("loading keys: {e}")))?;
            let (insert, retire) = oauth_core::keys::plan_rotation(
                &existing,
                &kek,
                t,
                cfg.keys.activation_delay_secs as i64,
                cfg.keys.retention_secs as i64,
            )
            .map_err(|e| StartError(format!("keys: {e}")))?;
            for k in &insert {
                tracing::info!(
                    target: "strongroom::security",
                    event = "key_rotated",
                    kid = %k.kid,
                    alg = %k.alg,
                    active_from = k.active_from,
                    "new provider key published"
                );
                println!(
                    "new {} key {} published now, {} from {} (in {} s)",
                    k.alg,
                    k.kid,
                    if k.key_use == "enc" {
                        "the current encryption key"
                    } else {
                        "signs"
                    },
                    rfc3339(k.active_from),
                    cfg.keys.activation_delay_secs
                );
            }
            store
                .rotate_keys(insert, retire)
                .await
                .map_err(|e| StartError(format!("storing keys: {e}")))?;
            Ok(())
        }
        Command::Serve => {
            let listeners = Listeners::bind(&cfg)?;
            let issuer = cfg.issuer.clone();
            let mtls = cfg.mtls_base_url();
            let prepared = startup::prepare(cfg).await?;
            let admin = match startup::bind_admin(&prepared.cfg)? {
                Some(lst) => Some(startup::serve_admin(&prepared, lst)?),
                None => None,
            };
            let server = startup::serve(prepared, listeners)?;
            startup::stop_on_signals(server.handle())?;
            let admin_handle = admin.as_ref().map(actix_web::dev::Server::handle);
            if let Some(admin) = admin {
                actix_web::rt::spawn(admin);
            }
            tracing::info!(%issuer, mtls = mtls.as_deref().unwrap_or("(single listener)"), "Strongroom is serving");
            let stopped = server
                .await
                .map_err(|e| StartError(format!("server stopped: {e}")));
            // Scrapes answer until the public listeners have drained.
            if let Some(admin) = admin_handle {
                admin.stop(false).await;
            }
            tracing::info!("stopped");
            stopped
        }
    }
}

//! `strongroom`: the server binary and its operator commands.

use std::process::ExitCode;

use oauth_core::secret::now;
use oauth_core::storage::KeyRepository;
use strongroom::config::{Config, ProcessEnv};
use strongroom::startup::{self, Listeners, StartError};

const USAGE: &str = "\
Strongroom, a FAPI-grade OpenID Provider.

Usage:
  strongroom [serve]        start the provider (default)
  strongroom check-config   load and validate the configuration, then exit
  strongroom migrate        apply pending database migrations, then exit
  strongroom keys list      list the provider's keys and their schedule
  strongroom keys rotate    publish new keys now; they sign after keys.activation_delay_secs
  strongroom keys new-kek   print a fresh key-encryption key (base64url)
  strongroom hash-password  read a password on stdin, print its argon2id hash (for [[users]])
  strongroom hash-secret    read a client secret on stdin, print its SHA-256 (for non-FAPI clients)

Configuration: config/strongroom.toml or $STRONGROOM_CONFIG, overridden by
STRONGROOM_LISTEN, STRONGROOM_MTLS_LISTEN, STRONGROOM_ISSUER, STRONGROOM_DATA_DIR,
STRONGROOM_DATABASE_URL, STRONGROOM_KEY_ENCRYPTION_KEY, STRONGROOM_LOG.
";

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = match args.as_slice() {
        [] | ["serve"] => Command::Serve,
        ["check-config"] => Command::CheckConfig,
        ["migrate"] => Command::Migrate,
        ["keys", "list"] => Command::KeysList,
        ["keys", "rotate"] => Command::KeysRotate,
        ["keys", "new-kek"] => {
            println!(
                "{}",
                oauth_core::keys::KeyEncryptionKey::generate().to_base64url()
            );
            return ExitCode::SUCCESS;
        }
        ["hash-password"] => {
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
        ["hash-secret"] => {
            let Some(line) = read_stdin_line() else {
                eprintln!("strongroom: give the secret on standard input");
                return ExitCode::from(2);
            };
            println!("{}", oauth_core::secret::hash_secret(&line));
            return ExitCode::SUCCESS;
        }
        ["-h" | "--help" | "help"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["-V" | "--version"] => {
            println!("strongroom {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("strongroom: unknown command\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cfg = match Config::load(&ProcessEnv) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("strongroom: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    startup::init_logging(&cfg);
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
            println!("configuration ok (issuer {})", cfg.issuer);
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
                "{:<45} {:<13} {:<4} {:>12} {:>12} {:>12}",
                "kid", "alg", "use", "active_from", "retired_at", "expires_at"
            );
            for k in keys {
                let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
                println!(
                    "{:<45} {:<13} {:<4} {:>12} {:>12} {:>12}",
                    k.kid,
                    k.alg,
                    k.key_use,
                    k.active_from,
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
                println!(
                    "new {} key {} published now, signs from {} (in {} s)",
                    k.alg, k.kid, k.active_from, cfg.keys.activation_delay_secs
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
            let server = startup::serve(prepared, listeners)?;
            tracing::info!(%issuer, mtls = mtls.as_deref().unwrap_or("(single listener)"), "Strongroom is serving");
            server
                .await
                .map_err(|e| StartError(format!("server stopped: {e}")))
        }
    }
}

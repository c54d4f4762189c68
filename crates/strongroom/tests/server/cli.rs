//! The command lines of the crate's binaries, run as built: every
//! subcommand answers `--help` with exit 0, unknown ones exit 2 with usage.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    // Never reached by --help; would be refused if it were.
    run_with(
        bin,
        args,
        &[("STRONGROOM_CONFIG", "/nonexistent.toml".to_string())],
    )
}

fn run_with(bin: &str, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        // The internal listener's default port would collide between tests.
        .env("STRONGROOM_ADMIN_LISTEN", "none")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const STRONGROOM: &str = env!("CARGO_BIN_EXE_strongroom");

#[test]
fn every_strongroom_command_answers_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["check-config"],
        &["migrate"],
        &["keys"],
        &["keys", "list"],
        &["keys", "rotate"],
        &["keys", "new-kek"],
        &["hash-password"],
        &["hash-secret"],
        &["try"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let (code, out, err) = run(STRONGROOM, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Usage: strongroom"), "{args:?}: {out}");
        let usage = format!("Usage: strongroom {}", command.join(" "));
        assert!(out.contains(usage.trim_end()), "{args:?}: {out}");
    }
    let (_, out, _) = run(STRONGROOM, &["try", "--help"]);
    for option in [
        "--port",
        "--no-open",
        "--timeout",
        "--prompt",
        "--scope",
        "--show-tokens",
    ] {
        assert!(out.contains(option), "try --help names {option}: {out}");
    }
    let (code, out, _) = run(STRONGROOM, &["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("strongroom "), "{out}");
}

#[test]
fn unknown_strongroom_commands_and_flags_exit_2_with_usage() {
    for args in [
        &["bogus"][..],
        &["serve", "--bogus"],
        &["keys"],
        &["keys", "bogus"],
        &["--bogus"],
    ] {
        let (code, out, err) = run(STRONGROOM, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains("Usage: strongroom"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    let (code, _, err) = run(STRONGROOM, &["try", "--port", "not-a-port"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid value 'not-a-port' for '--port"),
        "{err}"
    );
    // Without a command it serves: here it reads the configuration, which
    // does not exist.
    let (code, _, err) = run(STRONGROOM, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("STRONGROOM_CONFIG"), "{err}");
}

const DIRECTORY: &str = env!("CARGO_BIN_EXE_strongroom-directory");

#[test]
fn every_directory_command_answers_help() {
    for command in [&[][..], &["init"], &["issue"]] {
        let mut args = command.to_vec();
        args.push("--help");
        let (code, out, err) = run(DIRECTORY, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let usage = format!("Usage: strongroom-directory {}", command.join(" "));
        assert!(out.contains(usage.trim_end()), "{args:?}: {out}");
    }
    for args in [&[][..], &["bogus"], &["init", "--bogus"], &["issue"]] {
        let (code, _, err) = run(DIRECTORY, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("Usage: strongroom-directory"),
            "{args:?}: {err}"
        );
    }
}

/// `init` prints TOML that, appended to a configuration, is a working
/// `[[directories]]` entry: the configuration's own parser takes it, it
/// validates, and its key verifies the SSAs `issue` signs.
#[test]
fn directory_init_prints_a_pasteable_directories_entry() {
    use strongroom::config::Config;
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("directory");
    let data = tmp.path().join("data");
    let (code, toml, err) = run(DIRECTORY, &["init", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("wrote "),
        "what was written goes to stderr: {err}"
    );
    let file = format!("dev_mode = true\n{toml}");
    let cfg = Config::parse(&file, std::path::Path::new("pasted.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{file}"));
    cfg.validate().unwrap();
    assert_eq!(cfg.directories.len(), 1);
    let dir = &cfg.directories[0];
    assert_eq!(dir.issuer, "Strongroom Test Directory");
    assert_eq!(dir.role_scopes["AISP"], ["accounts"]);

    let (code, _, err) = run(
        DIRECTORY,
        &[
            "issue",
            "--out",
            out_dir.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--software-id",
            "tppCli01",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let ssa = std::fs::read_to_string(out_dir.join("tppCli01.ssa.jwt")).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(dir.jwks.clone().expect("inline jwks")).unwrap();
    let header = jsonwebtoken::decode_header(&ssa).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the SSA's kid");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
    v.set_issuer(&[dir.issuer.as_str()]);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &ssa,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .expect("the pasted key verifies the SSA");
    assert_eq!(claims.claims["software_id"], "tppCli01");
}

/// `check-config` and `serve` stop on the same bad values, each with one
/// line naming the key and exit 2 (serve before binding anything).
#[actix_web::test]
async fn check_config_validates_what_serve_validates() {
    use crate::harness::{Backend, Setup};
    let setup = Setup::new(Backend::Sqlite);
    // A server's first start stores keys sealed with the dev-mode KEK.
    setup.start().await.stop().await;
    let cfg_path = cli_config(&setup);
    let cfg = cfg_path.to_str().unwrap();
    let env = |extra: &[(&'static str, String)]| {
        let mut v: Vec<(&'static str, String)> = vec![
            ("STRONGROOM_CONFIG", cfg.to_string()),
            ("STRONGROOM_LISTEN", "127.0.0.1:0".into()),
            ("STRONGROOM_MTLS_LISTEN", "none".into()),
        ];
        v.extend(extra.iter().cloned());
        v
    };
    let (code, out, err) = run_with(STRONGROOM, &["check-config"], &env(&[]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration ok (issuer"), "{out}");

    let blocker = setup.data_dir.join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let other_kek = run(STRONGROOM, &["keys", "new-kek"]).1.trim().to_string();
    for (extra, needle) in [
        (
            ("STRONGROOM_LOG", "verbose,xml".to_string()),
            "log.level: 'verbose'",
        ),
        (
            ("STRONGROOM_LOG", "strongroom=loud".to_string()),
            "log.level",
        ),
        (
            ("STRONGROOM_KEY_ENCRYPTION_KEY", "not a key".to_string()),
            "keys.encryption_key",
        ),
        // Decodes, but is not the key the stored keys are sealed with.
        (
            ("STRONGROOM_KEY_ENCRYPTION_KEY", other_kek),
            "keys.encryption_key",
        ),
        (
            (
                "STRONGROOM_DATA_DIR",
                blocker.join("sub").display().to_string(),
            ),
            "data_dir",
        ),
    ] {
        for command in ["check-config", "serve"] {
            let (code, out, err) =
                run_with(STRONGROOM, &[command], &env(std::slice::from_ref(&extra)));
            assert_eq!(code, 2, "{command} {extra:?}: {out}{err}");
            let lines: Vec<&str> = err
                .lines()
                .filter(|l| l.starts_with("strongroom:"))
                .collect();
            assert_eq!(lines.len(), 1, "{command} {extra:?}: {err}");
            assert!(lines[0].contains(needle), "{command} {extra:?}: {err}");
            assert!(!out.contains("configuration ok"), "{out}");
        }
    }
    // A level, target=level pairs and the format words pass.
    let (code, _, err) = run_with(
        STRONGROOM,
        &["check-config"],
        &env(&[("STRONGROOM_LOG", "strongroom=debug,info,json".into())]),
    );
    assert_eq!(code, 0, "{err}");
}

/// `keys list` shows its times as RFC 3339, in UTC.
#[actix_web::test]
async fn keys_list_shows_rfc3339_times() {
    use crate::harness::{Backend, Setup};
    let setup = Setup::new(Backend::Sqlite);
    let before = oauth_core::secret::now();
    setup.start().await.stop().await;
    let cfg_path = cli_config(&setup);
    let env = [
        ("STRONGROOM_CONFIG", cfg_path.display().to_string()),
        ("STRONGROOM_LOG", "error".to_string()),
    ];
    let (code, out, err) = run_with(STRONGROOM, &["keys", "list"], &env);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    for row in rows {
        let active_from =
            time::OffsetDateTime::parse(row[3], &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{}: {e}\n{out}", row[3]));
        assert!(row[3].ends_with('Z'), "UTC: {out}");
        let t = active_from.unix_timestamp();
        assert!(
            (before - 5..=oauth_core::secret::now()).contains(&t),
            "{out}"
        );
        assert_eq!(row[4], "-", "not retired: {out}");
    }
}

/// A config file naming `setup`'s data dir and database, for the commands
/// run against what a server started there left.
fn cli_config(setup: &crate::harness::Setup) -> std::path::PathBuf {
    let path = setup.data_dir.join("cli.toml");
    std::fs::write(
        &path,
        format!(
            "dev_mode = true\ndata_dir = \"{}\"\n[database]\nurl = \"{}\"\n",
            setup.data_dir.display(),
            setup.database_url
        ),
    )
    .unwrap();
    path
}

//! The command lines of the crate's binaries, run as built: every
//! subcommand answers `--help` with exit 0, unknown ones exit 2 with usage.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        // Never reached by --help; would be refused if it were.
        .env("STRONGROOM_CONFIG", "/nonexistent.toml")
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

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

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

/// `issue --uk` issues what a UK TPP holds today: an RSA signing key for
/// PS256 and an OBWAC-shaped transport certificate (CN = org_id,
/// organizationIdentifier = PSDGB-OB-<org_id>, no OU, RSA), with the
/// directory key given by path; without `--uk` the old OU/CN certificate
/// and an ES256 key.
#[test]
fn directory_issues_uk_material_with_uk() {
    use oauth_core::cert::PeerCertificate;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("directory");
    let data = tmp.path().join("data");
    let (code, _, err) = run(DIRECTORY, &["init", "--out", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = tmp.path().join("uk");
    let key = dir.join("directory-key.pem");
    let issue = |software_id: &str, uk: bool| {
        let mut args = vec![
            "issue",
            "--out",
            out.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--directory-key",
            key.to_str().unwrap(),
            "--software-id",
            software_id,
            "--org-id",
            "0015800009UKorg1",
        ];
        if uk {
            args.push("--uk");
        }
        let (code, stdout, err) = run(DIRECTORY, &args);
        assert_eq!(code, 0, "{err}");
        stdout
    };
    let transport = |software_id: &str| {
        let pem = std::fs::read(out.join(format!("{software_id}-transport.pem"))).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        PeerCertificate::from_der(&der, 1, false).unwrap()
    };
    let signing_jwk = |software_id: &str| -> serde_json::Value {
        let s =
            std::fs::read_to_string(out.join(format!("{software_id}-signing.jwks.json"))).unwrap();
        serde_json::from_str::<serde_json::Value>(&s).unwrap()["keys"][0].clone()
    };

    let printed = issue("tppUk01", true);
    let cert = transport("tppUk01");
    let subject = &cert.subject;
    assert_eq!(
        subject.values_of("2.5.4.3").collect::<Vec<_>>(),
        ["0015800009UKorg1"]
    );
    assert_eq!(
        subject.values_of("2.5.4.97").collect::<Vec<_>>(),
        ["PSDGB-OB-0015800009UKorg1"]
    );
    assert_eq!(
        subject.values_of("2.5.4.11").count(),
        0,
        "no OU: {}",
        cert.subject_dn
    );
    // The DN it prints for tls_client_auth_subject_dn is the certificate's.
    let dn = printed
        .lines()
        .find_map(|l| l.strip_prefix("tls_client_auth_subject_dn = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(
        oauth_core::cert::DistinguishedName::parse_rfc4514(dn)
            .unwrap()
            .matches(subject),
        "{dn} vs {}",
        cert.subject_dn
    );
    let key_pem = std::fs::read_to_string(out.join("tppUk01-transport-key.pem")).unwrap();
    assert!(jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).is_ok());
    let jwk = signing_jwk("tppUk01");
    assert_eq!((&jwk["kty"], &jwk["alg"]), (&json!("RSA"), &json!("PS256")));
    // The signing key signs PS256 and its published half verifies it.
    let pem = std::fs::read_to_string(out.join("tppUk01-signing-key.pem")).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    h.kid = Some("tppUk01-sig".into());
    let t = jsonwebtoken::encode(
        &h,
        &json!({"iss": "tppUk01"}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
    jsonwebtoken::decode::<serde_json::Value>(
        &t,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &v,
    )
    .unwrap();
    // The SSA names the same key.
    let ssa = std::fs::read_to_string(out.join("tppUk01.ssa.jwt")).unwrap();
    let payload = ssa.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["org_id"], "0015800009UKorg1");
    assert_eq!(claims["software_jwks"]["keys"][0]["kty"], "RSA");

    // Without --uk: the old certificate (OU = org_id, CN = software_id), ES256.
    issue("tppOld01", false);
    let cert = transport("tppOld01");
    assert_eq!(
        cert.subject.values_of("2.5.4.3").collect::<Vec<_>>(),
        ["tppOld01"]
    );
    assert_eq!(
        cert.subject.values_of("2.5.4.11").collect::<Vec<_>>(),
        ["0015800009UKorg1"]
    );
    assert_eq!(signing_jwk("tppOld01")["kty"], "EC");
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

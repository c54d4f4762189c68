//! A test directory for developers and sandboxes: a key pair whose JWKS goes
//! into `[[directories]]`, and software statements (SSAs) with matching TPP
//! transport certificates (from the dev CA) and signing keys.
//!
//! ```sh
//! strongroom-directory init   --out dir/                      # directory key + jwks.json
//! strongroom-directory issue  --out dir/ --data data/ --software-id tppDemo01 \
//!     --org-id 0015800001041REAAY --redirect-uri https://tpp.example/cb --role AISP
//! ```
//!
//! `init` prints the `[[directories]]` entry for strongroom.toml as TOML on
//! stdout (what it wrote goes to stderr, so the output can be appended to
//! the file as it is). `issue` writes `<software_id>.ssa.jwt`, `<software_id>-transport.pem` /
//! `-transport-key.pem` (signed by the dev CA in `--data`), and
//! `<software_id>-signing-key.pem` + `-signing.jwks.json` (its public key is
//! also inline in the SSA as `software_jwks`).
//!
//! By default the material is the old Open Banking kind: an ES256 signing
//! key and a transport certificate with OU = org_id, CN = software_id.
//! `issue --uk` issues what UK TPPs hold today: an RSA signing key for
//! PS256 (the OBSeal's role) and an OBWAC-shaped transport certificate, RSA,
//! with CN = org_id, organizationIdentifier (2.5.4.97) =
//! `PSDGB-OB-<org_id>`, O = the organisation's name, C = GB and no OU.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use strongroom::devcerts::{DnType, KeyAlg, ensure_dev_certs, issue_client_cert};

const ISSUER: &str = "Strongroom Test Directory";
const KEY_FILE: &str = "directory-key.pem";
const KID: &str = "strongroom-test-directory";

/// A test directory for developers and sandboxes: a directory key pair
/// for `[[directories]]`, and software statements (SSAs) with matching TPP
/// transport certificates and signing keys.
#[derive(Parser)]
#[command(name = "strongroom-directory", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make the directory key pair (once) and jwks.json; print the
    /// [[directories]] entry for strongroom.toml (TOML, on stdout)
    Init {
        /// Where the directory's files are
        #[arg(long, default_value = "directory")]
        out: PathBuf,
    },
    /// Issue an SSA, a transport certificate from the dev CA and a signing key
    Issue(IssueArgs),
}

#[derive(Args)]
struct IssueArgs {
    /// Where the directory's files are (`init` first)
    #[arg(long, default_value = "directory")]
    out: PathBuf,
    /// Strongroom's data dir, whose dev CA signs the transport certificate
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The SSA's software_id
    #[arg(long)]
    software_id: String,
    #[arg(long, default_value = "0015800001041REAAY")]
    org_id: String,
    /// Repeatable; default https://<software_id>.example/cb
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Repeatable: AISP, PISP, CBPII; default AISP
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// software_client_name; default "TPP <software_id>"
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "Test TPP Ltd")]
    org_name: String,
    /// UK material as TPPs hold it today: an RSA PS256 signing key and an
    /// OBWAC-shaped transport certificate (CN = org_id,
    /// organizationIdentifier = PSDGB-OB-<org_id>, no OU)
    #[arg(long)]
    uk: bool,
    /// The directory's signing key; default <out>/directory-key.pem (`init`)
    #[arg(long, value_name = "PEM")]
    directory_key: Option<PathBuf>,
}

fn public_jwk(pem: &str, alg: Algorithm, kid: &str) -> Result<Value, String> {
    let enc = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .map_err(|e| e.to_string())?;
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&enc, alg).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    if let Some(o) = jwk.as_object_mut() {
        o.insert("kid".into(), kid.into());
        o.insert("use".into(), "sig".into());
        o.retain(|k, _| !["key_ops", "x5u", "x5c", "x5t", "x5t#S256"].contains(&k.as_str()));
    }
    Ok(jwk)
}

fn write(path: &Path, data: &str) -> Result<(), String> {
    std::fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn init(out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let key_path = out.join(KEY_FILE);
    let pem = match std::fs::read_to_string(&key_path) {
        Ok(p) => p,
        Err(_) => {
            let kp =
                rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(|e| e.to_string())?;
            let pem = kp.serialize_pem();
            write(&key_path, &pem)?;
            pem
        }
    };
    let jwks = json!({"keys": [public_jwk(&pem, Algorithm::PS256, KID)?]});
    write(
        &out.join("jwks.json"),
        &serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string())?,
    )?;
    print!("{}", directory_entry(&jwks)?);
    Ok(())
}

/// The `[[directories]]` entry trusting this directory's key, as TOML.
fn directory_entry(jwks: &Value) -> Result<String, String> {
    let entry = json!({"directories": [{
        "name": "test",
        "issuer": ISSUER,
        "rules": "uk-ob",
        "role_scopes": {"AISP": ["accounts"], "PISP": ["payments"], "CBPII": ["fundsconfirmations"]},
        "jwks": jwks,
    }]});
    let toml = toml::to_string(&entry).map_err(|e| e.to_string())?;
    Ok(format!(
        "# The test directory (strongroom-directory init): add to config/strongroom.toml.\n{toml}"
    ))
}

fn issue(args: &IssueArgs) -> Result<(), String> {
    let (out, data) = (&args.out, &args.data);
    let (software_id, org_id) = (&args.software_id, &args.org_id);
    let mut redirects = args.redirect_uris.clone();
    if redirects.is_empty() {
        redirects.push(format!("https://{}.example/cb", software_id.to_lowercase()));
    }
    let mut roles = args.roles.clone();
    if roles.is_empty() {
        roles.push("AISP".into());
    }
    let dir_key = args
        .directory_key
        .clone()
        .unwrap_or_else(|| out.join(KEY_FILE));
    let dir_pem = std::fs::read_to_string(&dir_key)
        .map_err(|e| format!("{}: {e} (run `init` first)", dir_key.display()))?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;

    let (signing_alg, rcgen_alg) = if args.uk {
        (Algorithm::PS256, &rcgen::PKCS_RSA_SHA256)
    } else {
        (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256)
    };
    let signing = rcgen::KeyPair::generate_for(rcgen_alg).map_err(|e| e.to_string())?;
    let signing_pem = signing.serialize_pem();
    // `alg` comes with the JWK (jsonwebtoken's `key_algorithm`).
    let signing_jwk = public_jwk(&signing_pem, signing_alg, &format!("{software_id}-sig"))?;
    write(
        &out.join(format!("{software_id}-signing-key.pem")),
        &signing_pem,
    )?;
    write(
        &out.join(format!("{software_id}-signing.jwks.json")),
        &json!({"keys": [signing_jwk]}).to_string(),
    )?;

    let dev = ensure_dev_certs(data).map_err(|e| e.to_string())?;
    let ca = std::fs::read_to_string(&dev.ca_cert).map_err(|e| e.to_string())?;
    let ca_key = std::fs::read_to_string(&dev.ca_key).map_err(|e| e.to_string())?;
    let (subject, key_alg) = transport_subject(args);
    let (cert, key) = issue_client_cert(
        &ca,
        &ca_key,
        &subject
            .iter()
            .map(|(t, v)| (t.clone(), v.as_str()))
            .collect::<Vec<_>>(),
        &[],
        key_alg,
    )
    .map_err(|e| e.to_string())?;
    write(&out.join(format!("{software_id}-transport.pem")), &cert)?;
    write(&out.join(format!("{software_id}-transport-key.pem")), &key)?;

    let now = oauth_core::secret::now();
    let claims = json!({
        "iss": ISSUER,
        "iat": now,
        "jti": oauth_core::secret::random_token(16),
        "software_id": software_id,
        "software_client_name": args.name.clone().unwrap_or_else(|| format!("TPP {software_id}")),
        "software_version": "1.0",
        "software_mode": "Test",
        "software_redirect_uris": redirects,
        "software_roles": roles,
        "software_jwks": {"keys": [signing_jwk]},
        "org_id": org_id,
        "org_name": args.org_name,
        "org_status": "Active",
    });
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some(KID.into());
    header.typ = Some("JWT".into());
    let enc = EncodingKey::from_rsa_pem(dir_pem.as_bytes()).map_err(|e| e.to_string())?;
    let ssa = jsonwebtoken::encode(&header, &claims, &enc).map_err(|e| e.to_string())?;
    write(&out.join(format!("{software_id}.ssa.jwt")), &ssa)?;
    println!(
        "\ntls_client_auth_subject_dn = \"{}\"\nSee docs/registration.md for the registration request.",
        subject_dn(&subject)
    );
    Ok(())
}

/// The transport certificate's subject, most significant RDN first, and
/// its key type: OBWAC-shaped with `--uk`, the old OB certificate else.
fn transport_subject(args: &IssueArgs) -> (Vec<(DnType, String)>, KeyAlg) {
    let org_id = &args.org_id;
    if args.uk {
        (
            vec![
                (DnType::CountryName, "GB".into()),
                (DnType::OrganizationName, args.org_name.clone()),
                (
                    DnType::CustomDnType(vec![2, 5, 4, 97]),
                    format!("PSDGB-OB-{org_id}"),
                ),
                (DnType::CommonName, org_id.clone()),
            ],
            KeyAlg::Rsa2048,
        )
    } else {
        (
            vec![
                (DnType::CountryName, "GB".into()),
                (DnType::OrganizationName, "OpenBanking".into()),
                (DnType::OrganizationalUnitName, org_id.clone()),
                (DnType::CommonName, args.software_id.clone()),
            ],
            KeyAlg::EcdsaP256,
        )
    }
}

/// The certificate's subject as RFC 4514 writes it (least significant RDN
/// first), for `tls_client_auth_subject_dn`.
fn subject_dn(subject: &[(DnType, String)]) -> String {
    subject
        .iter()
        .rev()
        .map(|(t, v)| {
            let name = match t {
                DnType::CountryName => "C",
                DnType::OrganizationName => "O",
                DnType::OrganizationalUnitName => "OU",
                DnType::CommonName => "CN",
                DnType::CustomDnType(oid) if oid == &[2, 5, 4, 97] => "organizationIdentifier",
                other => unreachable!("transport_subject makes no {other:?}"),
            };
            format!("{name}={v}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match Cli::parse().command {
        Cmd::Init { out } => init(&out),
        Cmd::Issue(args) => issue(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strongroom-directory: {e}");
            ExitCode::from(2)
        }
    }
}

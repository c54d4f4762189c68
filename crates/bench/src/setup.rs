//! Provisioning: the TPP's keys and certificate, Strongroom's configuration
//! file (static clients and a user), the peer's configuration, and starting
//! and stopping both servers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, jwk::Jwk};
use serde_json::{Value, json};

pub const USER: &str = "bench-user";
pub const PASSWORD: &str = "bench-password-0001";
pub const SCOPE: &str = "openid accounts";
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

use oauth_core::secret::{now, random_token, sha256_b64url};

/// An ES256 key of the TPP's with its public JWK.
pub struct TppKey {
    pub kid: String,
    /// Parsed once: jsonwebtoken's `encode` would re-parse the PKCS#8 key
    /// (and check it with a scalar multiplication) on every signature,
    /// which made the driver, not the server, the larger CPU user.
    signer: aws_lc_rs::signature::EcdsaKeyPair,
    pub jwk: Value,
}

impl TppKey {
    pub fn es256(kid: &str) -> TppKey {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("P-256 key");
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = serde_json::to_value(
            Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("public JWK"),
        )
        .expect("JWK as JSON");
        let obj = jwk.as_object_mut().expect("JWK object");
        obj.retain(|k, _| ["kty", "crv", "x", "y"].contains(&k.as_str()));
        obj.insert("kid".into(), kid.into());
        obj.insert("use".into(), "sig".into());
        obj.insert("alg".into(), "ES256".into());
        TppKey {
            kid: kid.to_string(),
            signer,
            jwk,
        }
    }

    /// A compact ES256 JWS of `header` and `claims`.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let mut input = b64(&serde_json::to_vec(header).expect("JSON"));
        input.push('.');
        input.push_str(&b64(&serde_json::to_vec(claims).expect("JSON")));
        let sig = self
            .signer
            .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
            .expect("ES256 signature");
        input.push('.');
        input.push_str(&b64(sig.as_ref()));
        input
    }

    fn public_only(&self) -> Value {
        let mut j = self.jwk.clone();
        let o = j.as_object_mut().expect("JWK object");
        o.remove("kid");
        o.remove("use");
        o.remove("alg");
        j
    }
}

/// The client the load generator plays.
pub struct Tpp {
    pub client_id: String,
    pub key: TppKey,
    pub dpop: TppKey,
    dpop_jwk: Value,
    pub redirect_uri: String,
}

impl Tpp {
    pub fn new(client_id: &str) -> Tpp {
        let dpop = TppKey::es256(&format!("{client_id}-dpop"));
        Tpp {
            client_id: client_id.into(),
            key: TppKey::es256(&format!("{client_id}-sig")),
            dpop_jwk: dpop.public_only(),
            dpop,
            redirect_uri: format!("https://{client_id}.example/cb"),
        }
    }

    /// A fresh private_key_jwt client assertion (RFC 7523) for `aud`.
    pub fn assertion(&self, aud: &str) -> String {
        let t = now();
        let claims = json!({"iss": self.client_id, "sub": self.client_id, "aud": aud,
                            "iat": t, "exp": t + 60, "jti": random_token(16)});
        self.key
            .sign(&json!({"alg": "ES256", "kid": self.key.kid}), &claims)
    }

    /// A fresh DPoP proof (RFC 9449 §4.2).
    pub fn dpop_proof(&self, htm: &str, htu: &str, access_token: Option<&str>) -> String {
        let mut claims = json!({"jti": random_token(16), "htm": htm, "htu": htu, "iat": now()});
        if let Some(at) = access_token {
            claims["ath"] = json!(sha256_b64url(at.as_bytes()));
        }
        self.dpop.sign(
            &json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": self.dpop_jwk}),
            &claims,
        )
    }

    /// private_key_jwt + DPoP client metadata (RFC 7591).
    /// A signed CIBA authentication request (CIBA §7.1.1) for the bench's
    /// customer, with a binding message unique to it.
    pub fn ciba_request(&self, aud: &str) -> String {
        let t = now();
        let claims = json!({"iss": self.client_id, "aud": aud, "iat": t, "nbf": t, "exp": t + 300,
                            "jti": random_token(16), "scope": SCOPE,
                            "login_hint": crate::ciba::LOGIN_HINT,
                            "binding_message": format!("B-{}", random_token(12))});
        self.key
            .sign(&json!({"alg": "ES256", "kid": self.key.kid}), &claims)
    }

    pub fn pkjwt_metadata(&self) -> Value {
        json!({
            "client_id": self.client_id,
            "client_name": "Bench TPP (private_key_jwt, DPoP)",
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials",
                            "urn:openid:params:grant-type:ciba"],
            "response_types": ["code"],
            "scope": SCOPE,
            "backchannel_token_delivery_mode": "poll",
            "backchannel_authentication_request_signing_alg": "ES256",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "jwks": {"keys": [self.key.jwk]},
            "dpop_bound_access_tokens": true,
        })
    }

    /// tls_client_auth + certificate-bound client metadata (RFC 8705).
    pub fn mtls_metadata(&self, subject_dn: &str) -> Value {
        json!({
            "client_id": self.client_id,
            "client_name": "Bench TPP (tls_client_auth)",
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "scope": SCOPE,
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": subject_dn,
            "jwks": {"keys": [self.key.jwk]},
            "tls_client_certificate_bound_access_tokens": true,
        })
    }
}

pub const MTLS_DN: &str = "CN=bench-mtls,O=Bench TPP Ltd,C=GB";

/// The regulatory directory of the registration case (UK Open Banking
/// rules) and the software it issued a statement to.
pub const DIRECTORY_ISS: &str = "Bench Directory";
pub const REG_SOFTWARE_ID: &str = "benchRegTpp01";
pub const REG_ORG_ID: &str = "0015800001041REAAY";

/// A TPP that registers itself (RFC 7591, UK OB DCR v3.3): its software
/// statement, signed once by the directory, and its transport certificate.
pub struct Registrant {
    pub tpp: Tpp,
    pub ssa: String,
    pub transport: (String, String),
    pub subject_dn: String,
}

impl Registrant {
    /// A fresh registration request: a JWS of the TPP's over its metadata
    /// and the software statement, with a single-use `jti`.
    pub fn request(&self, aud: &str) -> String {
        let t = now();
        let claims = json!({
            "iss": REG_SOFTWARE_ID, "aud": aud, "iat": t, "exp": t + 300, "jti": random_token(16),
            "redirect_uris": [self.tpp.redirect_uri],
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": self.subject_dn,
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "scope": SCOPE,
            "id_token_signed_response_alg": "PS256",
            "application_type": "web",
            "software_statement": self.ssa,
        });
        self.tpp.key.sign(
            &json!({"alg": "ES256", "kid": self.tpp.key.kid, "typ": "JWT"}),
            &claims,
        )
    }
}

/// Everything both servers are provisioned with.
pub struct Provision {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub server_chain: PathBuf,
    pub server_key: PathBuf,
    pub pkjwt: Arc<Tpp>,
    pub mtls: Arc<Tpp>,
    /// PEM certificate + key of the mTLS client.
    pub mtls_identity: (String, String),
    /// The directory's SSA signing key.
    pub directory: TppKey,
    pub registrant: Arc<Registrant>,
}

pub fn provision(dir: &Path) -> Result<Provision, String> {
    use strongroom::devcerts::{DnType, KeyAlg, ensure_dev_certs, issue_client_cert};
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let dev = ensure_dev_certs(&data).map_err(|e| format!("dev certificates: {e}"))?;
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let identity = issue_client_cert(
        &read(&dev.ca_cert)?,
        &read(&dev.ca_key)?,
        &[
            (DnType::CountryName, "GB"),
            (DnType::OrganizationName, "Bench TPP Ltd"),
            (DnType::CommonName, "bench-mtls"),
        ],
        &[],
        KeyAlg::EcdsaP256,
    )
    .map_err(|e| format!("client certificate: {e}"))?;
    let transport = issue_client_cert(
        &read(&dev.ca_cert)?,
        &read(&dev.ca_key)?,
        &[
            (DnType::CountryName, "GB"),
            (DnType::OrganizationName, "OpenBanking"),
            (DnType::OrganizationalUnitName, REG_ORG_ID),
            (DnType::CommonName, REG_SOFTWARE_ID),
        ],
        &[],
        KeyAlg::EcdsaP256,
    )
    .map_err(|e| format!("transport certificate: {e}"))?;
    let directory = TppKey::es256("bench-directory");
    let tpp = Tpp::new(REG_SOFTWARE_ID);
    let ssa = directory.sign(
        &json!({"alg": "ES256", "kid": directory.kid, "typ": "JWT"}),
        &json!({
            "iss": DIRECTORY_ISS, "iat": now(), "jti": random_token(16),
            "software_id": REG_SOFTWARE_ID, "software_client_name": "Bench registrant",
            "software_version": "1.0", "software_mode": "Test",
            "software_redirect_uris": [tpp.redirect_uri], "software_roles": ["AISP"],
            "software_jwks": {"keys": [tpp.key.jwk]},
            "org_id": REG_ORG_ID, "org_name": "Bench TPP Ltd", "org_status": "Active",
        }),
    );
    Ok(Provision {
        dir: dir.to_path_buf(),
        ca_pem: dev.ca_cert,
        server_chain: dev.server_chain,
        server_key: dev.server_key,
        pkjwt: Arc::new(Tpp::new("bench-pkjwt")),
        mtls: Arc::new(Tpp::new("bench-mtls")),
        mtls_identity: identity,
        directory,
        registrant: Arc::new(Registrant {
            tpp,
            ssa,
            transport,
            subject_dn: format!("CN={REG_SOFTWARE_ID},OU={REG_ORG_ID},O=OpenBanking,C=GB"),
        }),
    })
}

pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// A running server process (Strongroom or the peer); killed on drop.
pub struct Running {
    pub name: &'static str,
    pub issuer: String,
    pub child: tokio::process::Child,
    pub pid: u32,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM first so node's primary takes its workers down with it.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Writes Strongroom's configuration file and starts `strongroom serve`.
pub async fn start_strongroom(
    p: &Provision,
    bin: &Path,
    database_url: &str,
    bank: &crate::ciba::BankSide,
    metrics: bool,
) -> Result<Running, String> {
    let (hooks, ciba) = bank.config();
    let port = free_port()?;
    let mtls_port = free_port()?;
    let issuer = format!("https://localhost:{port}");
    let mut config = json!({
        "issuer": issuer,
        "data_dir": p.dir.join("data").display().to_string(),
        "dev_mode": true,
        "server": {"listen": format!("127.0.0.1:{port}"), "mtls_listen": format!("127.0.0.1:{mtls_port}"), "workers": 0},
        "database": {"url": database_url},
        "log": {"level": "error"},
        "clients": [p.pkjwt.pkjwt_metadata(), p.mtls.mtls_metadata(MTLS_DN)],
        // The registration case: one directory, and no practical rate limit
        // (the same software registers over and over).
        "directories": [{"name": "bench", "issuer": DIRECTORY_ISS, "jwks": {"keys": [p.directory.jwk]},
                         "algs": ["PS256", "ES256"], "role_scopes": {"AISP": ["accounts"]}, "rules": "uk-ob"}],
        "registration": {"rate_limit_per_software": u32::MAX},
        // The CIBA case: the driver answers the bank's hooks (`ciba`).
        "hooks": hooks,
        "ciba": ciba,
        "users": [{"username": USER, "password": PASSWORD, "sub": "sub-bench-0001",
                   "claims": {"name": "Bench User", "email": "bench@example.com"}}],
    });
    // The internal listener installs the metrics recorder: without it
    // nothing is recorded (docs/operations.md), so `--metrics` measures
    // what recording every request costs.
    if metrics {
        config["server"]["admin_listen"] = json!(format!("127.0.0.1:{}", free_port()?));
    }
    let text = toml::to_string(&config).map_err(|e| format!("config as TOML: {e}"))?;
    let path = p.dir.join("strongroom.toml");
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    let child = tokio::process::Command::new(bin)
        .arg("serve")
        .env("STRONGROOM_CONFIG", &path)
        .env_remove("STRONGROOM_LISTEN")
        .env_remove("STRONGROOM_MTLS_LISTEN")
        .env_remove("STRONGROOM_ISSUER")
        .env_remove("STRONGROOM_DATA_DIR")
        .env_remove("STRONGROOM_DATABASE_URL")
        .env("STRONGROOM_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let pid = child.id().ok_or("strongroom exited at once")?;
    let running = Running {
        name: "strongroom",
        issuer,
        child,
        pid,
    };
    wait_ready(running, p).await
}

/// Writes the peer's configuration and starts node-oidc-provider
/// (bench/peer/server.js) under Node's cluster module.
pub async fn start_peer(p: &Provision, peer_dir: &Path, workers: usize) -> Result<Running, String> {
    let port = free_port()?;
    let issuer = format!("https://localhost:{port}");
    let config = json!({
        "issuer": issuer,
        "port": port,
        "mtls_port": free_port()?,
        "workers": workers,
        "tls": {"cert": p.server_chain, "key": p.server_key, "ca": p.ca_pem},
        "clients": [p.pkjwt.pkjwt_metadata(), p.mtls.mtls_metadata(MTLS_DN)],
    });
    let path = p.dir.join("peer.json");
    std::fs::write(&path, config.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    let peer_dir = peer_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", peer_dir.display()))?;
    let child = tokio::process::Command::new("node")
        .arg(peer_dir.join("server.js"))
        .arg(&path)
        .current_dir(&peer_dir)
        .env("NODE_ENV", "production")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting node: {e}"))?;
    let pid = child.id().ok_or("node exited at once")?;
    wait_ready(
        Running {
            name: "node-oidc-provider",
            issuer,
            child,
            pid,
        },
        p,
    )
    .await
}

async fn wait_ready(mut r: Running, p: &Provision) -> Result<Running, String> {
    let tls = crate::load::tls_config(&p.ca_pem, None)?;
    let url = format!("{}/.well-known/openid-configuration", r.issuer);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(status)) = r.child.try_wait() {
            return Err(format!("{} exited while starting: {status}", r.name));
        }
        if let Ok(mut conn) = crate::h1::H1::connect(&url, tls.clone()).await
            && let Ok((200, _)) = conn.request("GET", &url, &[], None).await
        {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{} did not answer {url} within 60 s", r.name))
}

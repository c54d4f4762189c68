//! The demo TPP's walkthrough (`demo-tpp`, `make demo-tpp`): a third-party
//! provider driving `make demo` end to end. Built only from independent
//! crates (reqwest, jsonwebtoken, rcgen, aws-lc-rs), never from Strongroom's
//! protocol code, so it checks the server the way a real TPP would.
//!
//! The TPP is the `demo-tpp` client of `config/demo.toml`:
//! `tls_client_auth` with subject `CN=demo-tpp,O=Demo TPP` and
//! certificate-bound tokens. On first run it issues itself that certificate
//! from Strongroom's dev CA in the data directory.

pub mod ciba;
pub mod uk;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The demo TPP's client id and certificate subject (config/demo.toml).
pub const CLIENT_ID: &str = "demo-tpp";
pub const SUBJECT_CN: &str = "demo-tpp";
pub const SUBJECT_O: &str = "Demo TPP";
/// Registered redirect URI; nothing listens there: in manual mode the
/// browser shows an error page whose address carries the code.
pub const REDIRECT_URI: &str = "https://127.0.0.1:8090/callback";
/// The line the interactive walkthrough prints before the authorization
/// URL, alone on its line (browser tests look for it).
pub const OPEN_PROMPT: &str = "Open this URL in your browser: ";
/// Pooled connections idle longer than this are not reused: below the
/// server's keep-alive (Strongroom's is 5 s), so the client never sends a
/// request on a connection the server is closing.
pub const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(3);

/// Where everything is.
#[derive(Debug, Clone)]
pub struct Options {
    /// Strongroom's issuer (browser listener).
    pub issuer: String,
    /// Strongroom's mTLS listener (token, PAR, introspection, revocation).
    pub mtls_base: String,
    /// The demo bank.
    pub bank: String,
    /// Strongroom's data directory: `dev-ca.pem`, `dev-ca-key.pem`; the
    /// TPP's certificate is written there.
    pub data_dir: PathBuf,
    /// Drive the bank's login and consent pages as the customer.
    pub auto: bool,
    pub username: String,
    pub password: String,
}

/// What the walkthrough saw.
#[derive(Debug, Clone)]
pub struct Report {
    pub consent_id: String,
    pub id_token: Value,
    pub introspection: Value,
    pub access_after_revocation: Value,
    pub refresh_after_revocation: Value,
}

fn err(what: &str) -> impl Fn(reqwest::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn sha256_b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, s.as_bytes()).as_ref())
}

fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).expect("system randomness");
    URL_SAFE_NO_PAD.encode(b)
}

/// The TPP's certificate and key, issued from the dev CA on first run.
pub fn ensure_certificate(data_dir: &Path) -> Result<(String, String), String> {
    let cert_path = data_dir.join("demo-tpp.pem");
    let key_path = data_dir.join("demo-tpp-key.pem");
    if let (Ok(c), Ok(k)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        return Ok((c, k));
    }
    let read = |name: &str| {
        std::fs::read_to_string(data_dir.join(name)).map_err(|e| {
            format!(
                "{}: {e} (is `make demo` running?)",
                data_dir.join(name).display()
            )
        })
    };
    let (ca_pem, ca_key_pem) = (read("dev-ca.pem")?, read("dev-ca-key.pem")?);
    let e = |x: rcgen::Error| format!("issuing the demo TPP certificate: {x}");
    let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(e)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(e)?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(e)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, SUBJECT_O);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, SUBJECT_CN);
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 86400)).into();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    let (c, k) = (cert.pem(), key.serialize_pem());
    std::fs::write(&cert_path, &c).map_err(|x| format!("{}: {x}", cert_path.display()))?;
    std::fs::write(&key_path, &k).map_err(|x| format!("{}: {x}", key_path.display()))?;
    Ok((c, k))
}

/// An HTTPS client trusting the dev CA, optionally presenting `identity`,
/// never following redirects (the walkthrough reads each one).
fn http(
    ca: &Path,
    identity: Option<(&str, &str)>,
    cookies: bool,
) -> Result<reqwest::Client, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let tls = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .timeout(std::time::Duration::from_secs(15))
        .pool_idle_timeout(POOL_IDLE)
        .build()
        .map_err(|e| e.to_string())
}

/// Sends a request that is safe to repeat (a GET, an introspection),
/// once more when the connection failed under it.
async fn send_idempotent(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response, String> {
    let again = req.try_clone();
    match req.send().await {
        Ok(r) => Ok(r),
        Err(e) if e.is_connect() || e.is_request() => match again {
            Some(r) => r.send().await.map_err(err(what)),
            None => Err(err(what)(e)),
        },
        Err(e) => Err(err(what)(e)),
    }
}

/// One line from standard input, read on its own thread so that the
/// runtime (and the connection pool's housekeeping) keeps running while the
/// customer takes their time.
async fn read_line_from_stdin() -> Result<String, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = std::io::stdin().read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    match rx.await {
        Ok(Ok(line)) if !line.is_empty() => Ok(line.trim().to_string()),
        Ok(Ok(_)) => Err("standard input ended before the callback URL was given".into()),
        Ok(Err(e)) => Err(format!("reading standard input: {e}")),
        Err(_) => Err("reading standard input failed".into()),
    }
}

async fn json_of(res: reqwest::Response, what: &str, want: u16) -> Result<Value, String> {
    let status = res.status().as_u16();
    let body = res.text().await.map_err(err(what))?;
    if status != want {
        return Err(format!("{what}: HTTP {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{what}: {e}: {body}"))
}

fn location(res: &reqwest::Response, base: &str) -> Result<String, String> {
    let loc = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("expected a redirect, got HTTP {}", res.status()))?;
    Ok(if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc.to_string()
    })
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Follows redirects from `url` until a page of the bank's `path` (returns
/// its URL) or the TPP's redirect URI (returns that).
async fn follow(
    browser: &reqwest::Client,
    opts: &Options,
    mut url: String,
    stop_at: &str,
    redirect_uri: &str,
) -> Result<String, String> {
    for _ in 0..10 {
        if url.starts_with(stop_at) || url.starts_with(redirect_uri) {
            return Ok(url);
        }
        let res = browser.get(&url).send().await.map_err(err("browser"))?;
        if !res.status().is_redirection() {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            return Err(format!("browser: {url} answered {status}: {body}"));
        }
        let base = if url.starts_with(&opts.bank) {
            &opts.bank
        } else {
            &opts.issuer
        };
        url = location(&res, base)?;
    }
    Err("browser: too many redirects".into())
}

/// The customer at the bank's login and consent pages, as a browser would
/// go through them (sign in as `opts.username`, share every account,
/// approve); returns the redirect to the TPP.
pub async fn act_as_customer(opts: &Options, authorize_url: &str) -> Result<String, String> {
    act_as_customer_to(opts, authorize_url, REDIRECT_URI).await
}

/// [`act_as_customer`] for a client whose redirect URI is `redirect_uri`.
pub async fn act_as_customer_to(
    opts: &Options,
    authorize_url: &str,
    redirect_uri: &str,
) -> Result<String, String> {
    let ca = opts.data_dir.join("dev-ca.pem");
    let browser = http(&ca, None, true)?;
    let login = follow(
        &browser,
        opts,
        authorize_url.to_string(),
        &format!("{}/hooks/login", opts.bank),
        redirect_uri,
    )
    .await?;
    let handoff = query_param(&login, "handoff").ok_or("no hand-off to the bank's login")?;
    println!(
        "   customer at the bank's login page, signing in as {}",
        opts.username
    );
    let res = browser
        .post(format!("{}/hooks/login", opts.bank))
        .form(&[
            ("handoff", handoff.as_str()),
            ("username", &opts.username),
            ("password", &opts.password),
            ("action", "login"),
        ])
        .send()
        .await
        .map_err(err("bank login"))?;
    let back = location(&res, &opts.bank).map_err(|e| format!("bank login refused: {e}"))?;
    let consent = follow(
        &browser,
        opts,
        back,
        &format!("{}/hooks/consent", opts.bank),
        redirect_uri,
    )
    .await?;
    let handoff = query_param(&consent, "handoff").ok_or("no hand-off to the bank's consent")?;
    let page = browser
        .get(&consent)
        .send()
        .await
        .map_err(err("bank consent"))?
        .text()
        .await
        .map_err(err("bank consent"))?;
    // Share every account the page offers.
    let accounts: Vec<String> = page
        .split("name=\"accounts\" value=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect();
    println!("   customer approves at the bank's consent page, sharing {accounts:?}");
    let mut form = vec![
        ("handoff".to_string(), handoff),
        ("action".to_string(), "approve".to_string()),
    ];
    form.extend(accounts.into_iter().map(|a| ("accounts".to_string(), a)));
    let res = browser
        .post(format!("{}/hooks/consent", opts.bank))
        .form(&form)
        .send()
        .await
        .map_err(err("bank consent"))?;
    let back = location(&res, &opts.bank).map_err(|e| format!("bank consent refused: {e}"))?;
    follow(&browser, opts, back, redirect_uri, redirect_uri).await
}

/// Verifies the id_token against Strongroom's JWKS (and its `nonce`, when
/// the request sent one); returns its claims.
async fn verify_id_token(
    http: &reqwest::Client,
    opts: &Options,
    id_token: &str,
    nonce: Option<&str>,
) -> Result<Value, String> {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let header = decode_header(id_token).map_err(|e| format!("id_token: {e}"))?;
    let jwks: JwkSet = send_idempotent(http.get(format!("{}/jwks", opts.issuer)), "jwks")
        .await?
        .json()
        .await
        .map_err(err("jwks"))?;
    let jwk = jwks
        .find(header.kid.as_deref().unwrap_or_default())
        .ok_or("id_token: kid not in the JWKS")?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&[CLIENT_ID]);
    v.set_issuer(&[opts.issuer.as_str()]);
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("id_token: {e}"))?;
    let claims = decode::<Value>(id_token, &key, &v)
        .map_err(|e| format!("id_token: {e}"))?
        .claims;
    if nonce.is_some_and(|n| claims["nonce"] != n) {
        return Err("id_token: nonce mismatch".into());
    }
    Ok(claims)
}

/// Steps 1 and 2 of both walkthroughs: a client_credentials token, and an
/// account-access consent created with it at the bank; returns both.
/// An account-access consent at the bank's Open Banking API (the TPP's
/// `client_credentials` token as bearer); prints and returns its id.
async fn create_consent(
    tpp: &reqwest::Client,
    bank: &str,
    cc_token: &str,
) -> Result<String, String> {
    let c = json_of(
        tpp.post(format!("{bank}{}", crate::CONSENTS_PATH))
            .bearer_auth(cc_token)
            .json(&json!({"Data": {
                "Permissions": ["ReadAccountsBasic", "ReadBalances"],
                "ExpirationDateTime": format!("{}T00:00:00+00:00", crate::pages::iso_date(now_unix() + 90 * 86_400)),
            }, "Risk": {}}))
            .send()
            .await
            .map_err(err("create consent"))?,
        "create consent",
        201,
    )
    .await?;
    let consent_id = c["Data"]["ConsentId"]
        .as_str()
        .ok_or("no ConsentId")?
        .to_string();
    println!("   ConsentId {consent_id} ({})", c["Data"]["Status"]);
    Ok(consent_id)
}

async fn consent_at_the_bank(
    tpp: &reqwest::Client,
    opts: &Options,
) -> Result<(String, String), String> {
    println!("1. client_credentials token (tls_client_auth as {CLIENT_ID})");
    let t = json_of(
        tpp.post(format!("{}/token", opts.mtls_base))
            .form(&[
                ("client_id", CLIENT_ID),
                ("grant_type", "client_credentials"),
                ("scope", "accounts"),
            ])
            .send()
            .await
            .map_err(err("token"))?,
        "client_credentials",
        200,
    )
    .await?;
    let cc_token = t["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_string();

    println!("2. account-access consent at the bank");
    let consent_id = create_consent(tpp, &opts.bank, &cc_token).await?;
    Ok((cc_token, consent_id))
}

/// Runs the walkthrough, printing each step.
pub async fn run(opts: &Options) -> Result<Report, String> {
    let (cert, key) = ensure_certificate(&opts.data_dir)?;
    let ca = opts.data_dir.join("dev-ca.pem");
    let tpp = http(&ca, Some((&cert, &key)), false)?;
    let mtls = |p: &str| format!("{}{p}", opts.mtls_base);

    let (cc_token, consent_id) = consent_at_the_bank(&tpp, opts).await?;

    println!("3. pushed authorization request naming it");
    let verifier = random(32);
    let (state, nonce) = (random(16), random(16));
    let claims = json!({"id_token": {
        "openbanking_intent_id": {"value": consent_id, "essential": true},
        "acr": {"essential": true, "values": ["urn:openbanking:psd2:sca"]},
    }});
    let par = json_of(
        tpp.post(mtls("/par"))
            .form(&[
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid accounts"),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &sha256_b64(&verifier)),
                ("code_challenge_method", "S256"),
                ("claims", &claims.to_string()),
            ])
            .send()
            .await
            .map_err(err("par"))?,
        "PAR",
        201,
    )
    .await?;
    let request_uri = par["request_uri"].as_str().ok_or("no request_uri")?;
    let mut authorize =
        url::Url::parse(&format!("{}/authorize", opts.issuer)).map_err(|e| e.to_string())?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("request_uri", request_uri);

    let back = if opts.auto {
        println!("4. the customer, in the bank's own pages");
        act_as_customer(opts, authorize.as_str()).await?
    } else {
        use std::io::Write as _;
        println!(
            "4. the customer, in a browser (trust {} or accept the warning):\n",
            opts.data_dir.join("dev-ca.pem").display()
        );
        println!("{OPEN_PROMPT}{authorize}\n");
        println!(
            "   Sign in at the bank (demo customer {} / {}), approve, then paste here the address \
             the browser ends on ({REDIRECT_URI}?code=...; nothing listens there, so the browser shows an error page):",
            opts.username, opts.password
        );
        std::io::stdout()
            .flush()
            .map_err(|e| format!("standard output: {e}"))?;
        read_line_from_stdin().await?
    };
    if query_param(&back, "state").as_deref() != Some(state.as_str()) {
        return Err(format!("the redirect's state does not match: {back}"));
    }
    let code = query_param(&back, "code").ok_or_else(|| format!("no code: {back}"))?;

    println!("5. code exchange");
    let t = json_of(
        tpp.post(mtls("/token"))
            .form(&[
                ("client_id", CLIENT_ID),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .map_err(err("token"))?,
        "authorization_code",
        200,
    )
    .await?;
    let access = t["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_string();
    let refresh = t["refresh_token"]
        .as_str()
        .ok_or("no refresh_token")?
        .to_string();
    let id_token = verify_id_token(
        &tpp,
        opts,
        t["id_token"].as_str().ok_or("no id_token")?,
        Some(&nonce),
    )
    .await?;
    println!(
        "   id_token: sub {}, acr {}, openbanking_intent_id {}",
        id_token["sub"], id_token["acr"], id_token["openbanking_intent_id"]
    );
    if id_token["openbanking_intent_id"] != consent_id.as_str() {
        return Err("the id_token does not carry the consent id".into());
    }

    let introspect = |token: String| {
        let tpp = tpp.clone();
        let url = mtls("/introspect");
        async move {
            json_of(
                send_idempotent(
                    tpp.post(url)
                        .form(&[("client_id", CLIENT_ID), ("token", token.as_str())]),
                    "introspect",
                )
                .await?,
                "introspection",
                200,
            )
            .await
        }
    };
    let introspection = introspect(access.clone()).await?;
    println!(
        "6. introspection: {}",
        serde_json::to_string_pretty(&introspection).unwrap_or_default()
    );

    println!("7. the TPP withdraws the consent at the bank");
    let res = tpp
        .delete(format!(
            "{}/open-banking/v3.1/aisp/account-access-consents/{consent_id}",
            opts.bank
        ))
        .bearer_auth(&cc_token)
        .send()
        .await
        .map_err(err("delete consent"))?;
    if res.status().as_u16() != 204 {
        return Err(format!("delete consent: HTTP {}", res.status()));
    }
    let access_after = introspect(access).await?;
    let refresh_after = introspect(refresh).await?;
    println!("   access token now {access_after}, refresh token now {refresh_after}");
    Ok(Report {
        consent_id,
        id_token,
        introspection,
        access_after_revocation: access_after,
        refresh_after_revocation: refresh_after,
    })
}

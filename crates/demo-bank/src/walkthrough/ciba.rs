//! The decoupled walkthrough (`demo-tpp --ciba`, `make demo-ciba`): the
//! TPP creates the consent at the bank, asks Strongroom's backchannel
//! authentication endpoint (CIBA Core §7.1) to reach the customer
//! `login_hint`, then polls the token endpoint (§7.3, §11) while the
//! customer approves on the bank's phone page. `--auto` plays the customer
//! through the phone page's own form, with their session, as the bank's app
//! back end would.

use std::time::Duration;

use base64::Engine as _;

use serde_json::{Value, json};

use super::{
    CLIENT_ID, Options, consent_at_the_bank, ensure_certificate, err, http, json_of,
    send_idempotent, verify_id_token,
};

/// The one line printed once the request is accepted, followed by the
/// phone page's URL and the binding message (tests look for it).
pub const PHONE_PROMPT: &str = "Approve on the phone: ";
/// CIBA Core §10.1: the grant type of the poll.
pub const GRANT_TYPE: &str = "urn:openid:params:grant-type:ciba";

/// How the decoupled walkthrough ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tokens were issued.
    Tokens,
    /// The customer denied (`access_denied`).
    Denied,
    /// Nobody answered in time (`expired_token`).
    Expired,
}

/// What the decoupled walkthrough saw.
#[derive(Debug, Clone)]
pub struct Report {
    pub consent_id: String,
    pub binding_message: String,
    pub outcome: Outcome,
    /// `authorization_pending` answers seen, and `slow_down` ones.
    pub pending: usize,
    pub slow_down: usize,
    pub id_token: Option<Value>,
    pub introspection: Option<Value>,
}

/// What the customer does on the phone under `--auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Deny,
}

/// A binding message the customer can compare at a glance: "K7Q 4MZ".
pub fn binding_message() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 6];
    aws_lc_rs::rand::fill(&mut b).expect("system randomness");
    let c: String = b
        .iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect();
    format!("{} {}", &c[..3], &c[3..])
}

/// The customer on the bank's phone page: signs in as `opts.username`,
/// waits for the request carrying `binding`, shares every account offered
/// and answers through the page's own form.
pub async fn answer_on_phone(
    opts: &Options,
    binding: &str,
    answer: Answer,
    wait: Duration,
) -> Result<(), String> {
    let phone = http(&opts.data_dir.join("dev-ca.pem"), None, true)?;
    let res = phone
        .post(format!("{}/my/login", opts.bank))
        .form(&[
            ("username", opts.username.as_str()),
            ("password", &opts.password),
            ("next", "/my/phone"),
        ])
        .send()
        .await
        .map_err(err("phone sign-in"))?;
    if res.status().as_u16() != 303 {
        return Err(format!(
            "phone sign-in as {} refused: HTTP {}",
            opts.username,
            res.status()
        ));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let request = loop {
        let v = json_of(
            send_idempotent(
                phone.get(format!("{}/my/phone/pending.json", opts.bank)),
                "phone",
            )
            .await?,
            "phone",
            200,
        )
        .await?;
        let found = v["requests"].as_array().and_then(|a| {
            a.iter()
                .find(|r| r["binding_message"] == binding && r["client_id"] == CLIENT_ID)
                .cloned()
        });
        if let Some(r) = found {
            break r;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("the request never reached the customer's phone".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let handle = request["handle"].as_str().ok_or("phone: no handle")?;
    let html = request["html"].as_str().unwrap_or_default();
    let accounts: Vec<String> = html
        .split("name=\"accounts\" value=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect();
    let action = match answer {
        Answer::Approve => "approve",
        Answer::Deny => "deny",
    };
    println!(
        "   customer on the phone: {} {} (code {binding}), sharing {accounts:?}",
        if answer == Answer::Approve {
            "approves"
        } else {
            "denies"
        },
        request["client_name"].as_str().unwrap_or(CLIENT_ID),
    );
    let mut form = vec![
        ("handle".to_string(), handle.to_string()),
        ("action".to_string(), action.to_string()),
    ];
    form.extend(accounts.into_iter().map(|a| ("accounts".to_string(), a)));
    let res = phone
        .post(format!("{}/my/phone/decision", opts.bank))
        .form(&form)
        .send()
        .await
        .map_err(err("phone decision"))?;
    if res.status().as_u16() != 303 {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        return Err(format!("phone decision: HTTP {status}: {body}"));
    }
    Ok(())
}

/// Runs the decoupled walkthrough, printing each step; with `opts.auto`
/// the customer gives `answer` on the phone.
pub async fn run(opts: &Options, binding: &str, answer: Answer) -> Result<Report, String> {
    use std::io::Write as _;
    let (cert, key) = ensure_certificate(&opts.data_dir)?;
    let ca = opts.data_dir.join("dev-ca.pem");
    let tpp = http(&ca, Some((&cert, &key)), false)?;
    let mtls = |p: &str| format!("{}{p}", opts.mtls_base);

    let (_, consent_id) = consent_at_the_bank(&tpp, opts).await?;

    println!(
        "3. backchannel authentication request for {}, naming the consent",
        opts.username
    );
    let claims = json!({"id_token": {
        "openbanking_intent_id": {"value": consent_id, "essential": true},
        "acr": {"essential": true, "values": ["urn:openbanking:psd2:sca"]},
    }});
    // FAPI-CIBA: the request is a signed request object (CIBA Core §7.1.1),
    // ES256 with the demo TPP's request-signing key (config/demo.toml).
    let request = signed_request(opts, binding, &claims)?;
    let a = json_of(
        tpp.post(mtls("/bc-authorize"))
            .form(&[("client_id", CLIENT_ID), ("request", request.as_str())])
            .send()
            .await
            .map_err(err("bc-authorize"))?,
        "backchannel authentication",
        200,
    )
    .await?;
    let auth_req_id = a["auth_req_id"]
        .as_str()
        .ok_or("no auth_req_id")?
        .to_string();
    let expires_in = a["expires_in"].as_u64().ok_or("no expires_in")?;
    let mut interval = a["interval"].as_u64().unwrap_or(5).max(1);
    println!("   auth_req_id issued: expires in {expires_in} s, poll every {interval} s");
    println!(
        "{PHONE_PROMPT}{}/my/phone (binding message: {binding})",
        opts.bank
    );
    std::io::stdout()
        .flush()
        .map_err(|e| format!("standard output: {e}"))?;

    let customer = async {
        if opts.auto {
            answer_on_phone(opts, binding, answer, Duration::from_secs(expires_in)).await
        } else {
            Ok(())
        }
    };
    let poll = async {
        println!("4. polling the token endpoint");
        let (mut pending, mut slow_down) = (0, 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(expires_in + 30);
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() > deadline {
                return Err("the request outlived its expiry without expired_token".to_string());
            }
            let res = send_idempotent(
                tpp.post(mtls("/token")).form(&[
                    ("client_id", CLIENT_ID),
                    ("grant_type", GRANT_TYPE),
                    ("auth_req_id", auth_req_id.as_str()),
                ]),
                "token",
            )
            .await?;
            let status = res.status().as_u16();
            let body: Value = res.json().await.map_err(err("token"))?;
            let code = body["error"].as_str().unwrap_or_default();
            match (status, code) {
                (200, _) => return Ok((Outcome::Tokens, body, pending, slow_down)),
                (400, "authorization_pending") => {
                    pending += 1;
                    println!("   authorization_pending (polling again in {interval} s)");
                }
                (400, "slow_down") => {
                    slow_down += 1;
                    interval += 5;
                    println!("   slow_down (polling again in {interval} s)");
                }
                (400 | 403, "access_denied") => {
                    return Ok((Outcome::Denied, body, pending, slow_down));
                }
                (400, "expired_token") => {
                    return Ok((Outcome::Expired, body, pending, slow_down));
                }
                _ => return Err(format!("token: HTTP {status}: {body}")),
            }
        }
    };
    let ((), (outcome, tokens, pending, slow_down)) = tokio::try_join!(customer, poll)?;
    let mut report = Report {
        consent_id: consent_id.clone(),
        binding_message: binding.to_string(),
        outcome,
        pending,
        slow_down,
        id_token: None,
        introspection: None,
    };
    if report.outcome != Outcome::Tokens {
        println!("   {}", tokens["error"].as_str().unwrap_or("no tokens"));
        return Ok(report);
    }
    let access = tokens["access_token"].as_str().ok_or("no access_token")?;
    let id_token = verify_id_token(
        &tpp,
        opts,
        tokens["id_token"].as_str().ok_or("no id_token")?,
        None,
    )
    .await?;
    println!(
        "   tokens: {} bound to the TPP's certificate; id_token sub {}, acr {}, openbanking_intent_id {}",
        tokens["token_type"], id_token["sub"], id_token["acr"], id_token["openbanking_intent_id"]
    );
    if id_token["openbanking_intent_id"] != consent_id.as_str() {
        return Err("the id_token does not carry the consent id".into());
    }
    let introspection = json_of(
        send_idempotent(
            tpp.post(mtls("/introspect"))
                .form(&[("client_id", CLIENT_ID), ("token", access)]),
            "introspect",
        )
        .await?,
        "introspection",
        200,
    )
    .await?;
    println!(
        "5. introspection: {}",
        serde_json::to_string_pretty(&introspection).unwrap_or_default()
    );
    report.id_token = Some(id_token);
    report.introspection = Some(introspection);
    Ok(report)
}

/// The demo TPP's request-signing key (its public half is the client's
/// `jwks` in config/demo.toml).
pub const REQUEST_KEY: &str = "config/demo-tpp-request-signing.pem";

/// The authentication request as a signed request object: `iss` = the
/// client, `aud` = the issuer, a 5-minute lifetime, a fresh `jti`.
fn signed_request(opts: &Options, binding: &str, claims: &Value) -> Result<String, String> {
    let pem = std::fs::read(REQUEST_KEY).map_err(|e| format!("{REQUEST_KEY}: {e}"))?;
    let key =
        jsonwebtoken::EncodingKey::from_ec_pem(&pem).map_err(|e| format!("{REQUEST_KEY}: {e}"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("demo-tpp-ciba".into());
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no randomness".to_string())?;
    let body = json!({
        "iss": CLIENT_ID, "aud": opts.issuer, "iat": t, "nbf": t, "exp": t + 300,
        "jti": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
        "scope": "openid accounts",
        "login_hint": opts.username,
        "binding_message": binding,
        "claims": claims,
    });
    jsonwebtoken::encode(&header, &body, &key).map_err(|e| format!("signing the request: {e}"))
}

//! The UK TPP walkthrough (`demo-tpp --uk`, `make demo-tpp-uk`): what Open
//! Banking Connector (a UK TPP back end; ../shared/specs/open-banking-connector.md)
//! does against a UK bank's authorization server, step by step, against
//! `make demo-uk` (Strongroom on config/examples/uk-ob.toml beside the demo
//! bank). Built, like the other walkthroughs, only from independent crates
//! (reqwest, jsonwebtoken, josekit, aws-lc-rs): nothing here is
//! Strongroom's code, so it checks the server as a real TPP would.
//!
//! The TPP's material comes from the test directory (`strongroom-directory
//! issue --uk`): the software statement, the PS256 signing key (OBSeal's
//! role) and the OBWAC-shaped transport certificate.
//!
//! 1. discovery, parsed with OBC's closed enums (response modes, client
//!    authentication methods) and the members it requires;
//! 2. registration: a signed request (PS256, header `kid` and `typ: JWT`,
//!    `aud` the bank's OB organisation id) posted as `application/jwt` to
//!    `registration_endpoint` over mTLS — not to an `mtls_endpoint_aliases`
//!    entry, which OBC never reads; the response parsed with OBC's enums;
//! 3. a client_credentials token (private_key_jwt, `aud` the token
//!    endpoint URL, header `kid` only), `token_type` exactly `Bearer`, then
//!    the registration read back with it (UK DCR management);
//! 4. an account-access consent at the bank;
//! 5. the JWKS, parsed with OBC's rules (RSA or EC, `use` required, `alg`
//!    absent or PS256 / RS256);
//! 6. the hybrid flow: a PS256 request object by value (header `kid` only,
//!    `exp` = now + 300, `max_age` 86400, the intent id essential in both
//!    `id_token` and `userinfo`, acr essential with values ca and sca; no
//!    PAR, no PKCE), optionally encrypted RSA-OAEP-256 / A256GCM to the
//!    published `use: enc` key; the customer at the bank's pages;
//! 7. the front-channel id_token checked as OBC checks it (PS256, one key
//!    for the `kid`, `c_hash`, `s_hash`, nonce, acr sca, intent id, `iss`,
//!    `aud` a single string, `exp`);
//! 8. the code redeemed over mTLS with private_key_jwt: `token_type`
//!    exactly `Bearer`, the scope exactly as requested, a refresh token,
//!    the id_token again with the intent id;
//! 9. the bank's account API with the certificate-bound token (and without
//!    the certificate: refused), then a refresh.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::{Options, act_as_customer_to, err, http, json_of, now_unix, random, send_idempotent};

/// The UK TPP's redirect URI (in its software statement; UK DCR refuses
/// loopback addresses). Nothing listens there: the walkthrough reads the
/// fragment from the address the bank's pages send the customer to.
pub const REDIRECT_URI: &str = "https://tpp.example/uk/callback";

/// The acr values of the UK profile (OBC's `Acr` enum).
pub const SCA: &str = "urn:openbanking:psd2:sca";
pub const CA: &str = "urn:openbanking:psd2:ca";
/// The scope the TPP asks for (OBC: `openid accounts` for an AISP consent).
pub const SCOPE: &str = "openid accounts";

/// Where everything is, beyond [`Options`] (whose `mtls_base` is not used:
/// a UK TPP calls the endpoints discovery names).
#[derive(Debug, Clone)]
pub struct UkOptions {
    pub base: Options,
    /// Where `strongroom-directory issue --uk` wrote the TPP's files.
    pub directory: PathBuf,
    pub software_id: String,
    pub org_id: String,
    /// The organisation name in the transport certificate (`O`).
    pub org_name: String,
    /// The registration request's `aud`: the bank's OB organisation id
    /// (UK DCR 3.3; OBC's default).
    pub aspsp_id: String,
    /// Encrypt the request object to the published `use: enc` key.
    pub encrypt_request: bool,
}

/// What the walkthrough saw.
#[derive(Debug, Clone)]
pub struct UkReport {
    pub client_id: String,
    pub registration: Value,
    pub consent_id: String,
    /// The authorization response's id_token as it came, and its claims.
    pub front_id_token: String,
    pub front_claims: Value,
    pub code: String,
    pub state: String,
    pub nonce: String,
    pub jwks: Value,
    pub token_response: Value,
    pub token_claims: Value,
    pub accounts: Value,
    pub refreshed: Value,
}

/// Open Banking Connector's discovery model: the members it requires and
/// the enums that throw on any other value.
pub fn check_discovery(d: &Value) -> Result<(), String> {
    for m in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
    ] {
        if !d[m].is_string() {
            return Err(format!("discovery: {m} is required"));
        }
    }
    let enumerated = |member: &str, allowed: &[&str]| -> Result<(), String> {
        for v in d[member].as_array().into_iter().flatten() {
            match v.as_str() {
                Some(s) if allowed.contains(&s) => {}
                _ => return Err(format!("discovery: {member} has {v}, not in OBC's enum")),
            }
        }
        Ok(())
    };
    enumerated(
        "response_modes_supported",
        &["query", "fragment", "form_post"],
    )?;
    enumerated(
        "token_endpoint_auth_methods_supported",
        &[
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "tls_client_auth",
            "none",
        ],
    )?;
    if !d["token_endpoint_auth_methods_supported"]
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m == "private_key_jwt"))
    {
        return Err("discovery: private_key_jwt is not offered".into());
    }
    Ok(())
}

/// Open Banking Connector's JWKS model (`JsonWebKey`): `kty` RSA or EC,
/// `use` sig, tls or enc (required), `kid`, `n`, `e` required, `alg`
/// absent or PS256 / RS256. One key it cannot read fails the whole set.
pub fn check_jwks(jwks: &Value) -> Result<(), String> {
    let keys = jwks["keys"].as_array().ok_or("jwks: no keys")?;
    for k in keys {
        let s = |m: &str| k[m].as_str();
        let ok = matches!(s("kty"), Some("RSA" | "EC"))
            && matches!(s("use"), Some("sig" | "tls" | "enc"))
            && ["kid", "n", "e"].iter().all(|m| s(m).is_some())
            && (k.get("alg").is_none() || matches!(s("alg"), Some("PS256" | "RS256")));
        if !ok {
            return Err(format!("jwks: OBC cannot parse the key {k}"));
        }
    }
    Ok(())
}

/// OIDC Core §3.3.2.11: the left half of SHA-256 of the ASCII value.
pub fn half_hash(v: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

/// A UUID v4 (OBC's `jti`).
fn uuid4() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("system randomness");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The id_token checked as OBC checks it (`GrantPost.DecodeIdTokenAsync`,
/// `ValidateIdTokenCommon`): header `alg` PS256, exactly one JWKS key with
/// the `kid`, that key RSA, `use: sig`, `alg` absent or PS256; then `exp`,
/// the intent id, `nonce`, acr `sca`, `iss`, `aud` a single string equal
/// to the client_id. Returns the claims.
fn check_id_token(
    jwks: &Value,
    id_token: &str,
    issuer: &str,
    client_id: &str,
    intent: &str,
    nonce: Option<&str>,
) -> Result<Value, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let header = decode_header(id_token).map_err(|e| format!("id_token: {e}"))?;
    if header.alg != Algorithm::PS256 {
        return Err(format!("id_token: alg {:?}, not PS256", header.alg));
    }
    let kid = header.kid.ok_or("id_token: no kid")?;
    let matching: Vec<&Value> = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kid"] == kid.as_str())
        .collect();
    let [key] = matching[..] else {
        return Err(format!("id_token: {} keys with kid {kid}", matching.len()));
    };
    if key["kty"] != "RSA"
        || key["use"] != "sig"
        || !(key["alg"].is_null() || key["alg"] == "PS256")
    {
        return Err(format!(
            "id_token: the key {key} is not an RSA PS256 signing key"
        ));
    }
    let dk = DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap_or_default(),
        key["e"].as_str().unwrap_or_default(),
    )
    .map_err(|e| format!("id_token key: {e}"))?;
    let mut v = Validation::new(Algorithm::PS256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
    v.leeway = 0;
    let claims = decode::<Value>(id_token, &dk, &v)
        .map_err(|e| format!("id_token: {e}"))?
        .claims;
    let fail = |what: &str| Err(format!("id_token: {what}: {claims}"));
    if !claims["aud"].is_string() {
        return fail("aud must be a single string");
    }
    if claims["openbanking_intent_id"] != intent {
        return fail("openbanking_intent_id is not the consent id");
    }
    // OBC's default (IdTokenSubClaimType.ConsentId): sub is the consent id
    // (config/examples/uk-ob.toml: [subject] profiles uk-ob = consent).
    if claims["sub"] != intent {
        return fail("sub is not the consent id (OBC's default)");
    }
    if let Some(nonce) = nonce
        && claims["nonce"] != nonce
    {
        return fail("nonce mismatch");
    }
    if claims["acr"] != SCA {
        return fail("acr is not urn:openbanking:psd2:sca");
    }
    if !claims["auth_time"].is_number() {
        return fail("no auth_time");
    }
    Ok(claims)
}

/// Runs the UK walkthrough, printing each step.
pub async fn run(o: &UkOptions) -> Result<UkReport, String> {
    let issuer = o.base.issuer.as_str();
    let ca = o.base.data_dir.join("dev-ca.pem");
    let sid = o.software_id.as_str();
    let read = |name: String| {
        let p = o.directory.join(&name);
        std::fs::read_to_string(&p).map_err(|e| {
            format!(
                "{}: {e} (issue it with strongroom-directory issue --uk)",
                p.display()
            )
        })
    };
    let ssa = read(format!("{sid}.ssa.jwt"))?.trim().to_string();
    let signing_pem = read(format!("{sid}-signing-key.pem"))?;
    let kid = format!("{sid}-sig");
    let cert = read(format!("{sid}-transport.pem"))?;
    let cert_key = read(format!("{sid}-transport-key.pem"))?;
    let signing = jsonwebtoken::EncodingKey::from_rsa_pem(signing_pem.as_bytes())
        .map_err(|e| format!("the signing key: {e}"))?;
    let sign = |typ: Option<&str>, claims: &Value| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        h.kid = Some(kid.clone());
        h.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&h, claims, &signing).map_err(|e| format!("signing: {e}"))
    };
    // The mTLS client (OBWAC) for registration, token and management; a
    // plain one for discovery and the JWKS, as OBC has.
    let tpp = http(&ca, Some((&cert, &cert_key)), false)?;
    let plain = http(&ca, None, false)?;

    println!("1. discovery ({issuer}/.well-known/openid-configuration), parsed as OBC does");
    let d = json_of(
        send_idempotent(
            plain.get(format!("{issuer}/.well-known/openid-configuration")),
            "discovery",
        )
        .await?,
        "discovery",
        200,
    )
    .await?;
    check_discovery(&d)?;
    let endpoint = |m: &str| {
        d[m].as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("discovery: no {m}"))
    };
    let (registration_ep, token_ep) = (
        endpoint("registration_endpoint")?,
        endpoint("token_endpoint")?,
    );
    let (authorization_ep, jwks_uri) = (endpoint("authorization_endpoint")?, endpoint("jwks_uri")?);

    println!("2. registration at {registration_ep} (signed request, application/jwt, over mTLS)");
    let t = now_unix();
    let subject_dn = format!(
        "CN={org},organizationIdentifier=PSDGB-OB-{org},O={},C=GB",
        o.org_name,
        org = o.org_id
    );
    let request = sign(
        Some("JWT"),
        &json!({
            "iss": sid, "iat": t, "exp": t + 300, "aud": o.aspsp_id, "jti": uuid4(),
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["client_credentials", "authorization_code", "refresh_token"],
            "response_types": ["code id_token"],
            "application_type": "web",
            "id_token_signed_response_alg": "PS256",
            "request_object_signing_alg": "PS256",
            "redirect_uris": [REDIRECT_URI],
            "software_id": sid,
            "scope": SCOPE,
            "software_statement": ssa,
            "tls_client_auth_subject_dn": subject_dn,
        }),
    )?;
    let registration = json_of(
        tpp.post(&registration_ep)
            .header("content-type", "application/jwt")
            .header("accept", "application/json")
            .body(request)
            .send()
            .await
            .map_err(err("registration"))?,
        "registration",
        201,
    )
    .await?;
    let client_id = registration["client_id"]
        .as_str()
        .ok_or("registration: no client_id")?
        .to_string();
    check_registration(&registration)?;
    println!(
        "   client_id {client_id} ({}, {})",
        registration["token_endpoint_auth_method"], registration["response_types"]
    );

    // private_key_jwt as OBC makes it: header kid only, aud the token
    // endpoint URL.
    let assertion = || {
        let t = now_unix();
        sign(
            None,
            &json!({"iss": client_id, "sub": client_id, "aud": token_ep, "jti": uuid4(),
                "iat": t, "exp": t + 300}),
        )
    };
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    println!("3. client_credentials token (private_key_jwt, aud {token_ep})");
    let a = assertion()?;
    let cc = json_of(
        tpp.post(&token_ep)
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "accounts"),
                ("client_assertion_type", assertion_type),
                ("client_assertion", &a),
            ])
            .send()
            .await
            .map_err(err("token"))?,
        "client_credentials",
        200,
    )
    .await?;
    if cc["token_type"] != "Bearer" {
        return Err(format!(
            "client_credentials: token_type {}",
            cc["token_type"]
        ));
    }
    if cc.get("id_token").is_some() || cc.get("refresh_token").is_some() {
        return Err(format!(
            "client_credentials: id_token or refresh_token: {cc}"
        ));
    }
    let cc_token = cc["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_string();
    let read_back = json_of(
        send_idempotent(
            tpp.get(format!("{registration_ep}/{client_id}"))
                .bearer_auth(&cc_token),
            "registration read",
        )
        .await?,
        "registration read (UK DCR: client_credentials token)",
        200,
    )
    .await?;
    if read_back["client_id"] != client_id.as_str() {
        return Err(format!("registration read: {read_back}"));
    }
    println!(
        "   registration read back with it: {}",
        read_back["client_id"]
    );

    println!("4. account-access consent at the bank");
    let consent_id = super::create_consent(&tpp, &o.base.bank, &cc_token).await?;

    println!("5. the JWKS ({jwks_uri}), parsed as OBC does");
    let jwks = json_of(
        send_idempotent(plain.get(&jwks_uri), "jwks").await?,
        "jwks",
        200,
    )
    .await?;
    check_jwks(&jwks)?;

    let (state, nonce) = (random(16), random(16));
    let t = now_unix();
    let object = json!({
        "iss": client_id, "iat": t, "nbf": t, "exp": t + 300, "aud": issuer, "jti": uuid4(),
        "response_type": "code id_token", "client_id": client_id,
        "redirect_uri": REDIRECT_URI, "scope": SCOPE, "max_age": 86400,
        "state": state, "nonce": nonce,
        "claims": {
            "userinfo": {"openbanking_intent_id": {"essential": true, "value": consent_id}},
            "id_token": {
                "openbanking_intent_id": {"essential": true, "value": consent_id},
                "acr": {"essential": true, "values": [CA, SCA]},
            },
        },
    });
    let signed = sign(None, &object)?;
    let request_object = if o.encrypt_request {
        println!(
            "6. hybrid flow: the request object by value, PS256, encrypted RSA-OAEP-256/A256GCM"
        );
        encrypt_to_enc_key(&jwks, &signed)?
    } else {
        println!("6. hybrid flow: the request object by value, PS256 (header kid only)");
        signed
    };
    let mut url = url::Url::parse(&authorization_ep).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("response_type", "code id_token")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", SCOPE)
        .append_pair("request", &request_object);
    let back = if o.base.auto {
        act_as_customer_to(&o.base, url.as_str(), REDIRECT_URI).await?
    } else {
        use std::io::Write as _;
        println!("\n{}{url}\n", super::OPEN_PROMPT);
        println!(
            "   Sign in at the bank (demo customer {} / {}), approve, then paste here the address \
             the browser ends on ({REDIRECT_URI}#code=...):",
            o.base.username, o.base.password
        );
        std::io::stdout()
            .flush()
            .map_err(|e| format!("standard output: {e}"))?;
        super::read_line_from_stdin().await?
    };
    let fragment: std::collections::HashMap<String, String> = url::Url::parse(&back)
        .ok()
        .and_then(|u| u.fragment().map(str::to_owned))
        .map(|f| {
            url::form_urlencoded::parse(f.as_bytes())
                .into_owned()
                .collect()
        })
        .ok_or_else(|| format!("the response is not in the fragment: {back}"))?;
    if let Some(e) = fragment.get("error") {
        return Err(format!("authorization: {e}: {back}"));
    }
    let get = |k: &str| {
        fragment
            .get(k)
            .cloned()
            .ok_or_else(|| format!("the response has no {k}: {back}"))
    };
    let (code, front_id_token, back_state) = (get("code")?, get("id_token")?, get("state")?);
    if back_state != state {
        return Err(format!("the state does not match: {back}"));
    }

    println!("7. the front-channel id_token, as OBC checks it");
    let front_claims = check_id_token(
        &jwks,
        &front_id_token,
        issuer,
        &client_id,
        &consent_id,
        Some(&nonce),
    )?;
    if front_claims["c_hash"] != half_hash(&code).as_str() {
        return Err("id_token: c_hash does not match the code".into());
    }
    if front_claims["s_hash"] != half_hash(&state).as_str() {
        return Err("id_token: s_hash does not match the state".into());
    }
    println!(
        "   detached signature, c_hash and s_hash verified; acr {}, openbanking_intent_id {}, sub {} (the consent id, as OBC expects)",
        front_claims["acr"], front_claims["openbanking_intent_id"], front_claims["sub"]
    );

    println!("8. code exchange over mTLS (private_key_jwt, aud {token_ep})");
    let a = assertion()?;
    let token_response = json_of(
        tpp.post(&token_ep)
            .form(&[
                ("grant_type", "authorization_code"),
                ("redirect_uri", REDIRECT_URI),
                ("code", &code),
                ("client_assertion_type", assertion_type),
                ("client_assertion", &a),
            ])
            .send()
            .await
            .map_err(err("token"))?,
        "authorization_code",
        200,
    )
    .await?;
    if token_response["token_type"] != "Bearer" {
        return Err(format!(
            "token: token_type {}",
            token_response["token_type"]
        ));
    }
    if token_response["scope"] != SCOPE {
        return Err(format!(
            "token: scope {} is not {SCOPE}",
            token_response["scope"]
        ));
    }
    let access = token_response["access_token"]
        .as_str()
        .ok_or("token: no access_token")?
        .to_string();
    let refresh = token_response["refresh_token"]
        .as_str()
        .ok_or("token: no refresh_token (OBC expects one for account consents)")?
        .to_string();
    let token_claims = check_id_token(
        &jwks,
        token_response["id_token"]
            .as_str()
            .ok_or("token: no id_token")?,
        issuer,
        &client_id,
        &consent_id,
        Some(&nonce),
    )?;
    if let Some(at_hash) = token_claims["at_hash"].as_str()
        && at_hash != half_hash(&access)
    {
        return Err("token id_token: at_hash does not match".into());
    }
    println!(
        "   Bearer, scope {}, refresh token; id_token openbanking_intent_id {}",
        token_response["scope"], token_claims["openbanking_intent_id"]
    );

    println!("9. the bank's account API with the certificate-bound token");
    let der = {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(cert.as_bytes()).map_err(|e| e.to_string())?
    };
    let accounts_url = format!("{}{}", o.base.bank, crate::ACCOUNTS_PATH);
    let res = tpp
        .get(&accounts_url)
        .bearer_auth(&access)
        .send()
        .await
        .map_err(err("accounts"))?;
    if res.status().as_u16() != 401 {
        return Err(format!(
            "accounts without the certificate: HTTP {}, not 401",
            res.status()
        ));
    }
    let accounts = json_of(
        tpp.get(&accounts_url)
            .bearer_auth(&access)
            .header(
                crate::CLIENT_CERT_HEADER,
                format!(":{}:", STANDARD.encode(&der)),
            )
            .send()
            .await
            .map_err(err("accounts"))?,
        "accounts",
        200,
    )
    .await?;
    let list = accounts["Data"]["Account"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("accounts: none shared: {accounts}"))?;
    println!(
        "   {} accounts: {}",
        list.len(),
        list.iter()
            .map(|a| a["AccountId"].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!("10. refresh (private_key_jwt over mTLS)");
    let a = assertion()?;
    let refreshed = json_of(
        tpp.post(&token_ep)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("redirect_uri", REDIRECT_URI),
                ("client_assertion_type", assertion_type),
                ("client_assertion", &a),
            ])
            .send()
            .await
            .map_err(err("refresh"))?,
        "refresh_token",
        200,
    )
    .await?;
    if refreshed["token_type"] != "Bearer" {
        return Err(format!("refresh: token_type {}", refreshed["token_type"]));
    }
    if let Some(id_token) = refreshed["id_token"].as_str() {
        // OIDC Core §12.2 asks a refreshed id_token for the original's iss,
        // sub, aud and auth_time, not its nonce, and Strongroom's has none;
        // OBC compares it with the original nonce (docs/fapi1.md).
        let c = check_id_token(&jwks, id_token, issuer, &client_id, &consent_id, None)?;
        if c["sub"] != front_claims["sub"] || c["auth_time"] != front_claims["auth_time"] {
            return Err(format!(
                "refresh: the id_token is not the original's subject: {c}"
            ));
        }
        println!(
            "   Bearer; id_token sub and auth_time as before, nonce {}",
            if c["nonce"] == nonce.as_str() {
                "as before"
            } else {
                "absent (OBC, which compares it, would refuse: docs/fapi1.md)"
            }
        );
    }

    Ok(UkReport {
        client_id,
        registration,
        consent_id,
        front_id_token,
        front_claims,
        code,
        state,
        nonce,
        jwks,
        token_response,
        token_claims,
        accounts,
        refreshed,
    })
}

/// The registration response as OBC parses it
/// (`OBClientRegistration1Response`, strict enums).
fn check_registration(r: &Value) -> Result<(), String> {
    let one_of = |m: &str, allowed: &[&str]| -> Result<(), String> {
        match &r[m] {
            Value::Null => Ok(()),
            Value::String(s) if allowed.contains(&s.as_str()) => Ok(()),
            Value::Array(a)
                if a.iter()
                    .all(|v| v.as_str().is_some_and(|s| allowed.contains(&s))) =>
            {
                Ok(())
            }
            v => Err(format!("registration: {m} {v} is not in OBC's enum")),
        }
    };
    one_of(
        "token_endpoint_auth_method",
        &[
            "private_key_jwt",
            "client_secret_jwt",
            "client_secret_basic",
            "client_secret_post",
            "tls_client_auth",
        ],
    )?;
    one_of(
        "grant_types",
        &[
            "client_credentials",
            "authorization_code",
            "refresh_token",
            "urn:openid:params:grant-type:ciba",
        ],
    )?;
    one_of("response_types", &["code", "code id_token"])?;
    for m in [
        "id_token_signed_response_alg",
        "request_object_signing_alg",
        "token_endpoint_auth_signing_alg",
    ] {
        one_of(m, &["RS256", "PS256", "ES256"])?;
    }
    for m in ["client_id_issued_at", "iat", "exp"] {
        if !(r[m].is_null() || r[m].is_i64()) {
            return Err(format!("registration: {m} is not Unix seconds: {}", r[m]));
        }
    }
    Ok(())
}

/// The signed request object encrypted RSA-OAEP-256 / A256GCM (josekit) to
/// the JWKS's `use: enc` key (the UK view names no `alg` on it; discovery's
/// `request_object_encryption_alg_values_supported` says RSA-OAEP-256).
fn encrypt_to_enc_key(jwks: &Value, signed: &str) -> Result<String, String> {
    use josekit::jwe::alg::rsaes::RsaesJweAlgorithm;
    let key = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["use"] == "enc" && (k["alg"].is_null() || k["alg"] == "RSA-OAEP-256"))
        .ok_or("jwks: no use: enc key for RSA-OAEP-256")?;
    let jwk =
        josekit::jwk::Jwk::from_bytes(key.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let encrypter = RsaesJweAlgorithm::RsaOaep256
        .encrypter_from_jwk(&jwk)
        .map_err(|e| e.to_string())?;
    let mut h = josekit::jwe::JweHeader::new();
    h.set_content_encryption("A256GCM");
    h.set_content_type("JWT");
    if let Some(kid) = key["kid"].as_str() {
        h.set_key_id(kid);
    }
    josekit::jwe::serialize_compact(signed.as_bytes(), &h, &encrypter).map_err(|e| e.to_string())
}

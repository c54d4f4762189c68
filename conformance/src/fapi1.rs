//! The FAPI 1.0 Advanced (final) OP plan (`fapi1-advanced-final-test-plan`,
//! oidf-modules.md §2): signed request objects by value at `/authorize` or
//! pushed (PAR), `response_type=code id_token` (the hybrid flow, answered
//! in the fragment with a detached id_token) or `code` with JARM
//! (`response_mode=jwt`), MTLS-bound tokens for every client.
//!
//! Two deployments: `profile = "fapi1-advanced"` for `plain_fapi`, and
//! `profile = "uk-ob"` for `openbanking_uk`, whose clients go through the
//! consent bridge (`[hooks]`, docs/hooks.md). For the UK one the mirror
//! also plays the bank: its consent service answers Strongroom's intent
//! check, its login and consent apps read the hand-off (JWE `dir` /
//! `A256GCM`) and answer with a result token, and each authorization
//! request names a fresh account-access-consent intent, created after the
//! TPP's `client_credentials` token, as the OIDF UK variant does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::ensure;
use crate::flow::{
    Answer, AuthzOutcome, Client, Env, Flow, IN_FRAGMENT, Params, Plan, R, Variant, answer,
    check_error, get, set,
};
use crate::jose::{self, ClientKey, now, random};
use crate::modules::{
    Cond, Module, check_error_page, check_par_error, check_tls_as, enc, must_not_redirect_from,
    page_text, rp_verify_id_token,
};
use crate::server::Running;

pub const ACR_SCA: &str = "urn:openbanking:psd2:sca";
pub const ACR_CA: &str = "urn:openbanking:psd2:ca";
pub const INTENT_CLAIM: &str = "openbanking_intent_id";
/// The customer the bank's login app signs in.
const BANK_SUB: &str = "uk-customer-0001";

const fn m(name: &'static str, cond: Cond) -> Module {
    Module {
        name,
        cond,
        slow: false,
    }
}
const fn slow(name: &'static str, cond: Cond) -> Module {
    Module {
        name,
        cond,
        slow: true,
    }
}

const BR: Cond = Cond::Skip(
    "fapi_profile=openbanking_brazil only (this run is plain_fapi and openbanking_uk; Brazil payment consents are not built)",
);

/// oidf-modules.md §2: the 68 modules. The happy flow is the plan's own
/// name (`fapi1-advanced-final`).
pub const MODULES: &[Module] = &[
    m("discovery-end-point-verification", Cond::All),
    m("fapi1-advanced-final", Cond::All),
    m("user-rejects-authentication", Cond::All),
    m(
        "ensure-request-object-with-multiple-aud-succeeds",
        Cond::All,
    ),
    m(
        "ensure-authorization-request-without-state-success",
        Cond::All,
    ),
    m("ensure-valid-pkce-succeeds", Cond::ByValue),
    m("ensure-other-scope-order-succeeds", Cond::All),
    m("access-token-type-header-case-sensitivity", Cond::All),
    m("ensure-response-mode-query", Cond::PlainResponse),
    m(
        "ensure-different-nonce-inside-and-outside-request-object",
        Cond::All,
    ),
    m("ensure-registered-redirect-uri", Cond::All),
    m("ensure-request-object-with-long-nonce", Cond::All),
    m(
        "ensure-request-object-with-64-char-nonce-success",
        Cond::All,
    ),
    m("ensure-request-object-with-long-state", Cond::All),
    m("ensure-request-object-without-exp-fails", Cond::All),
    m("ensure-request-object-without-nbf-fails", Cond::All),
    m("ensure-request-object-without-scope-fails", Cond::All),
    m("state-only-outside-request-object-not-used", Cond::All),
    m("ensure-request-object-without-nonce-fails", Cond::All),
    m(
        "ensure-request-object-without-redirect-uri-fails",
        Cond::All,
    ),
    m("ensure-expired-request-object-fails", Cond::All),
    m("ensure-request-object-with-bad-aud-fails", Cond::All),
    m("ensure-request-object-with-exp-over-60-fails", Cond::All),
    m("ensure-request-object-with-nbf-over-60-fails", Cond::All),
    m("ensure-signed-request-object-with-RS256-fails", Cond::All),
    m(
        "ensure-request-object-signature-algorithm-is-not-none",
        Cond::All,
    ),
    m(
        "ensure-request-object-with-invalid-signature-fails",
        Cond::All,
    ),
    m("ensure-matching-key-in-authorization-request", Cond::All),
    m(
        "ensure-authorization-request-without-request-object-fails",
        Cond::All,
    ),
    m("ensure-redirect-uri-in-authorization-request", Cond::All),
    m("ensure-response-type-code-fails", Cond::PlainResponse),
    m("ensure-client-id-in-token-endpoint", Cond::All),
    m("ensure-mtls-holder-of-key-required", Cond::All),
    m("ensure-authorization-code-is-bound-to-client", Cond::All),
    m(
        "attempt-reuse-authorisation-code-after-one-second",
        Cond::All,
    ),
    m(
        "ensure-signed-client-assertion-with-RS256-fails",
        Cond::Pkjwt,
    ),
    m("ensure-client-assertion-in-token-endpoint", Cond::Pkjwt),
    m(
        "ensure-client-assertion-with-exp-is-5-minutes-in-past-fails",
        Cond::Pkjwt,
    ),
    m("ensure-client-assertion-with-wrong-aud-fails", Cond::Pkjwt),
    m("ensure-client-assertion-with-no-sub-fails", Cond::Pkjwt),
    m("ensure-client-assertion-with-wrong-iss-fails", Cond::Pkjwt),
    m("ensure-client-assertion-with-wrong-sub-fails", Cond::Pkjwt),
    m("ensure-client-assertion-with-iss-aud-succeeds", Cond::Pkjwt),
    m("refresh-token", Cond::All),
    m("ensure-server-handles-non-matching-intent-id", Cond::Uk),
    m("test-essential-acr-sca-claim", Cond::Uk),
    m("brazil-ensure-encryption-required", BR),
    m("brazil-ensure-bad-payment-signature-fails", BR),
    m(
        "par-ensure-reused-request-uri-prior-to-auth-completion-succeeds",
        Cond::Pushed,
    ),
    m("par-attempt-reuse-request_uri", Cond::Pushed),
    slow("par-attempt-to-use-expired-request_uri", Cond::Pushed),
    m(
        "par-test-pushed-authorization-url-as-audience-for-client-JWT-assertion",
        Cond::PushedPkjwt,
    ),
    m(
        "par-token-endpoint-url-as-audience-for-client-JWT-assertion",
        Cond::PushedPkjwt,
    ),
    m(
        "test-array-as-audience-for-client-JWT-assertion",
        Cond::PushedPkjwt,
    ),
    m(
        "par-ensure-client-assertion-with-wrong-aud-fails",
        Cond::PushedPkjwt,
    ),
    m(
        "par-ensure-client-assertion-with-wrong-iss-fails",
        Cond::PushedPkjwt,
    ),
    m(
        "par-ensure-client-assertion-with-wrong-sub-fails",
        Cond::PushedPkjwt,
    ),
    m(
        "par-attempt-to-use-request_uri-for-different-client",
        Cond::Pushed,
    ),
    m(
        "par-authorization-request-containing-request_uri-form-param",
        Cond::Pushed,
    ),
    m("par-attempt-invalid-http-method", Cond::Pushed),
    m("par-ensure-pkce-required", Cond::Pushed),
    m("ensure-pkce-code-verifier-required", Cond::Pushed),
    m("incorrect-pkce-code-verifier-rejected", Cond::Pushed),
    m("par-plain-pkce-rejected", Cond::Pushed),
    m(
        "par-pushed-authorization-url-as-audience-in-request-object",
        Cond::Pushed,
    ),
    m("par-attempt-invalid-redirect_uri", Cond::Pushed),
    m(
        "par-authorization-request-containing-request_uri",
        Cond::Pushed,
    ),
    m("par-without-duplicate-parameters", Cond::Pushed),
];

/// The variant matrix, as the OIDF FAPI 1.0 certification profiles cover
/// it: plain_fapi with every client_auth_type × fapi_auth_request_method ×
/// fapi_response_mode ("FAPI Adv. OP w/ MTLS|Private Key[, PAR][, JARM]"),
/// and openbanking_uk with by_value + plain_response for each
/// client_auth_type ("UK-OB Adv. OP w/ MTLS|Private Key"): the UK variant
/// forbids JARM, and its TPPs send request objects by value.
pub fn variants() -> Vec<Variant> {
    let mut out = Vec::new();
    for mtls in [false, true] {
        for pushed in [false, true] {
            for jarm_mode in [false, true] {
                out.push(Variant {
                    pushed,
                    jarm_mode,
                    ..Variant::of(Plan::Fapi1, mtls, true, false)
                });
            }
        }
    }
    for mtls in [false, true] {
        out.push(Variant {
            uk: true,
            ..Variant::of(Plan::Fapi1, mtls, true, false)
        });
    }
    out
}

// ---------------------------------------------------------------------------
// The bank of the openbanking_uk deployment.

struct Intent {
    client_id: String,
    status: &'static str,
    /// The customer will refuse this consent at the bank's consent app.
    deny: bool,
}

#[derive(Default)]
struct BankState {
    intents: HashMap<String, Intent>,
    /// Calls that broke the hook contract (docs/hooks.md), with the reason.
    problems: Vec<String>,
}

/// The bank behind the UK deployment's consent bridge.
pub struct Bank {
    /// Bearer Strongroom sends to the consent service.
    service_token: String,
    shared_secret: [u8; 32],
    /// `bank_issuer`: `iss` of results, `aud` of hand-offs.
    issuer: String,
    /// Strongroom's issuer: `iss` of hand-offs, `aud` of results.
    strongroom: String,
    state: Mutex<BankState>,
}

impl Bank {
    fn lock(&self) -> std::sync::MutexGuard<'_, BankState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bank's account-access-consents API: a new intent of
    /// `client_id`, awaiting authorisation.
    fn create_intent(&self, client_id: &str, deny: bool) -> String {
        let id = format!("aac-{}", random(12).replace(['-', '_'], "x"));
        self.lock().intents.insert(
            id.clone(),
            Intent {
                client_id: client_id.into(),
                status: "AwaitingAuthorisation",
                deny,
            },
        );
        id
    }

    fn problems(&self) -> Vec<String> {
        self.lock().problems.clone()
    }

    /// Reads a hand-off as docs/hooks.md §4 tells the bank to: decrypt,
    /// then check `iss`, `aud`, `purpose`, `exp` and `return_uri`.
    fn handoff(&self, path: &str, purpose: &str) -> Result<Value, String> {
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let token = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "handoff")
            .map(|(_, v)| v.into_owned())
            .ok_or("no handoff parameter")?;
        let h = jose::jwe_dir_a256gcm_open(&self.shared_secret, &token)?;
        let t = now();
        if h["iss"] != json!(self.strongroom) || h["aud"] != json!(self.issuer) {
            return Err(format!("hand-off iss/aud {} / {}", h["iss"], h["aud"]));
        }
        if h["purpose"] != json!(purpose) {
            return Err(format!(
                "hand-off purpose {} at the {purpose} app",
                h["purpose"]
            ));
        }
        let exp = h["exp"].as_i64().unwrap_or(0);
        let iat = h["iat"].as_i64().unwrap_or(0);
        if exp <= t || exp - iat > 600 {
            return Err(format!("hand-off exp {exp} (iat {iat}, now {t})"));
        }
        if !h["return_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("{}/interaction/", self.strongroom)))
        {
            return Err(format!("hand-off return_uri {}", h["return_uri"]));
        }
        if h["sid"].as_str().is_none_or(str::is_empty) || h["jti"].as_str().is_none() {
            return Err("hand-off without sid or jti".into());
        }
        Ok(h)
    }

    /// The result token for `handoff` with `claims` (docs/hooks.md §5),
    /// and the redirect that carries it back.
    fn answer(&self, handoff: &Value, claims: Value) -> (u16, Vec<String>, String) {
        let t = now();
        let mut result = json!({
            "iss": self.issuer, "aud": self.strongroom, "iat": t, "exp": t + 120,
            "jti": random(16), "sid": handoff["sid"], "purpose": handoff["purpose"],
        });
        if let (Some(r), Some(c)) = (result.as_object_mut(), claims.as_object()) {
            r.extend(c.clone());
        }
        let token = jose::jwe_dir_a256gcm(&self.shared_secret, &result);
        let back = format!(
            "{}?result={}",
            handoff["return_uri"].as_str().unwrap_or_default(),
            enc(&token)
        );
        (303, vec![format!("Location: {back}")], String::new())
    }
}

/// The consent service (intent check, docs/hooks.md §3) and the bank's
/// login and consent apps (§4, §5).
fn bank_handler(
    bank: &Bank,
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    _body: &[u8],
) -> (u16, Vec<String>, String) {
    let fail = |why: String| {
        bank.lock().problems.push(format!("{method} {path}: {why}"));
        (400, vec![], json!({"error": "invalid_request"}).to_string())
    };
    if method != "GET" {
        return fail("not a GET".into());
    }
    if let Some(id) = path.strip_prefix("/intents/") {
        if headers.get("authorization") != Some(&format!("Bearer {}", bank.service_token)) {
            return fail("intent check without the service token as bearer".into());
        }
        let st = bank.lock();
        return match st.intents.get(id) {
            Some(i) => (
                200,
                vec![],
                json!({"client_id": i.client_id, "status": i.status}).to_string(),
            ),
            None => (404, vec![], json!({"error": "not_found"}).to_string()),
        };
    }
    if path.starts_with("/app/sign-in?") {
        let h = match bank.handoff(path, "login") {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        // The bank's strong customer authentication.
        let claims =
            json!({"sub": BANK_SUB, "acr": ACR_SCA, "amr": ["pwd", "otp"], "auth_time": now()});
        return bank.answer(&h, claims);
    }
    if path.starts_with("/app/authorise?") {
        let h = match bank.handoff(path, "consent") {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        if h["sub"] != json!(BANK_SUB) {
            return fail(format!("consent hand-off for sub {}", h["sub"]));
        }
        let intent = h["intent_id"].as_str().unwrap_or_default().to_string();
        let mut st = bank.lock();
        let Some(i) = st.intents.get_mut(&intent) else {
            drop(st);
            return fail(format!(
                "consent hand-off for the unknown intent {intent:?}"
            ));
        };
        if h["client_id"] != json!(i.client_id) {
            let owner = i.client_id.clone();
            drop(st);
            return fail(format!(
                "consent hand-off of {} for {owner}'s intent",
                h["client_id"]
            ));
        }
        let claims = if i.deny {
            i.status = "Rejected";
            json!({"status": "denied"})
        } else {
            i.status = "Authorised";
            json!({"status": "approved", "consent_id": intent, "accounts": ["acc-1001", "acc-1002"]})
        };
        drop(st);
        return bank.answer(&h, claims);
    }
    fail("unknown path".into())
}

async fn listen_bank(bank: Arc<Bank>, l: tokio::net::TcpListener) {
    while let Ok((s, _)) = l.accept().await {
        tokio::spawn(crate::ciba::serve_conn(s, bank.clone(), bank_handler));
    }
}

/// The openbanking_uk deployment of the plan.
pub struct Uk {
    pub running: Running,
    pub bank: Arc<Bank>,
}

/// A FAPI 1.0 client: a certificate for every one (FAPI 1.0 Advanced
/// §5.2.2-5 and -6: MTLS-bound tokens), `code id_token` (and, outside the
/// UK, `code` for JARM).
fn metadata(c: &Client, uk: bool) -> Value {
    let mut m = c.metadata();
    if let Some(o) = m.as_object_mut() {
        o.remove("dpop_bound_access_tokens");
    }
    m["tls_client_certificate_bound_access_tokens"] = json!(true);
    m["response_types"] = if uk {
        json!(["code id_token"])
    } else {
        json!(["code id_token", "code"])
    };
    m
}

fn clients(pki: &jose::Pki, tag: &str) -> ([Client; 2], [Client; 2]) {
    let mk = |id: &str, mtls, second| Client::generate_with_certificate(id, mtls, second, pki);
    (
        [
            mk(&format!("conf-{tag}-pkjwt-1"), false, false),
            mk(&format!("conf-{tag}-pkjwt-2"), false, true),
        ],
        [
            mk(&format!("conf-{tag}-mtls-1"), true, false),
            mk(&format!("conf-{tag}-mtls-2"), true, true),
        ],
    )
}

/// Starts the plan's two deployments: `fapi1-advanced` (plain_fapi) and
/// `uk-ob` with the consent bridge to the mirror's bank (openbanking_uk).
/// Both get an RSA server certificate (the FAPI 1.0 TLS 1.2 suites are
/// all `*_RSA_*`).
pub async fn start(postgres: bool) -> Result<Running, String> {
    let mut p = crate::server::prepare("f1", postgres, true)?;
    let (pkjwt, mtls) = clients(&p.pki, "f1");
    let all: Vec<Value> = pkjwt
        .iter()
        .chain(mtls.iter())
        .map(|c| metadata(c, false))
        .collect();
    p.cfg["profile"] = json!("fapi1-advanced");
    p.cfg["clients"] = json!(all);
    let mut plain = crate::server::launch(p, pkjwt, mtls, None).await?;
    plain.env.fapi1 = true;

    let mut p = crate::server::prepare("uk", postgres, true)?;
    let (pkjwt, mtls) = clients(&p.pki, "uk");
    let all: Vec<Value> = pkjwt
        .iter()
        .chain(mtls.iter())
        .map(|c| metadata(c, true))
        .collect();
    let ids: Vec<&str> = pkjwt
        .iter()
        .chain(mtls.iter())
        .map(|c| c.id.as_str())
        .collect();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let bank_url = format!(
        "http://127.0.0.1:{}",
        l.local_addr().map_err(|e| e.to_string())?.port()
    );
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| "CSPRNG")?;
    let bank = Arc::new(Bank {
        service_token: random(24),
        shared_secret: secret,
        issuer: "conformance-uk-bank".into(),
        strongroom: p.issuer.clone(),
        state: Mutex::new(BankState::default()),
    });
    p.cfg["profile"] = json!("uk-ob");
    p.cfg["clients"] = json!(all);
    p.cfg["hooks"] = json!({
        "login_url": format!("{bank_url}/app/sign-in"),
        "consent_url": format!("{bank_url}/app/authorise"),
        "consent_service_url": format!("{bank_url}/intents"),
        "consent_service_token": bank.service_token,
        "token_mode": "encrypted",
        "shared_secret": jose::b64(&secret),
        "bank_issuer": bank.issuer,
        "clients": ids,
        "require_intent": true,
        "consent_claim": INTENT_CLAIM,
    });
    tokio::spawn(listen_bank(bank.clone(), l));
    let mut uk = crate::server::launch(p, pkjwt, mtls, None).await?;
    uk.env.fapi1 = true;
    eprintln!(
        "conformance: fapi1-advanced-final openbanking_uk against Strongroom at {} (log {})",
        uk.env.issuer,
        uk.log.display()
    );
    plain.uk = Some(Box::new(Uk { running: uk, bank }));
    Ok(plain)
}

// ---------------------------------------------------------------------------
// The TPP.

/// The deployment a variant runs against, and its bank (openbanking_uk).
struct Ctx<'a> {
    env: &'a Env,
    bank: Option<&'a Bank>,
}

/// One authorization request: the parameters (also the outside copies)
/// and the request object's claims, which modules edit.
struct Auth {
    params: Params,
    verifier: String,
    claims: Value,
    intent: Option<String>,
}

impl Auth {
    fn inside(&self, k: &str) -> Option<&str> {
        self.claims[k].as_str()
    }
    fn pkce(&self) -> bool {
        self.claims.get("code_challenge").is_some()
    }
}

/// `claims` of a UK request (OIDF openbanking_uk): the intent as an
/// essential id_token and userinfo claim, and an essential `acr` of SCA or CA.
fn uk_claims(intent: &str, acr: Value) -> Value {
    json!({
        "id_token": {INTENT_CLAIM: {"value": intent, "essential": true}, "acr": acr},
        "userinfo": {INTENT_CLAIM: {"value": intent, "essential": true}},
    })
}

impl Ctx<'_> {
    fn clients(&self, v: &Variant) -> (&Client, &Client) {
        self.env.clients(v)
    }

    /// A UK intent of `c`: the TPP's client_credentials token (as the OIDF
    /// UK variant gets before it creates the account-access-consent), then
    /// the bank's new intent for `c`.
    async fn intent(&self, c: &Client, deny: bool) -> R<String> {
        let bank = self.bank.ok_or("no bank: not an openbanking_uk variant")?;
        let mut form: Params = vec![
            ("grant_type".into(), "client_credentials".into()),
            ("scope".into(), "accounts".into()),
        ];
        form.extend(self.env.auth_fields(c, "token_endpoint"));
        let a = self.env.token_raw(c, &form, None).await?;
        ensure!(
            a.status == 200 && a.json["access_token"].is_string(),
            "client_credentials for the account-access-consent: {}",
            a.brief()
        );
        ensure!(
            a.json.get("id_token").is_none() && a.json.get("refresh_token").is_none(),
            "client_credentials answered with an id_token or a refresh token: {}",
            a.brief()
        );
        Ok(bank.create_intent(&c.id, deny))
    }

    /// A typical request of `c` (UK: naming a fresh intent).
    async fn auth(&self, v: &Variant, c: &Client) -> R<Auth> {
        self.auth_with(v, c, false, None).await
    }

    async fn auth_with(&self, v: &Variant, c: &Client, deny: bool, acr: Option<Value>) -> R<Auth> {
        let (mut params, verifier) = self.env.auth_params(v, c);
        let mut intent = None;
        if v.uk {
            let id = self.intent(c, deny).await?;
            let acr = acr.unwrap_or(json!({"essential": true, "values": [ACR_SCA, ACR_CA]}));
            set(
                &mut params,
                "claims",
                Some(&uk_claims(&id, acr).to_string()),
            );
            intent = Some(id);
        }
        let claims = self.env.request_object_claims(c, &params);
        Ok(Auth {
            params,
            verifier,
            claims,
            intent,
        })
    }

    /// The outside copies of an authorization request (OIDC Core §6.1:
    /// `response_type` and `scope` also outside the object).
    fn outside(a: &Auth) -> Params {
        ["response_type", "scope"]
            .iter()
            .filter_map(|k| get(&a.params, k).map(|v| (k.to_string(), v.to_string())))
            .collect()
    }

    /// The authorization URL carrying the request object by value.
    fn by_value_url(&self, c: &Client, jwt: &str, outside: &Params) -> R<String> {
        let mut url = url::Url::parse(
            self.env.discovery["authorization_endpoint"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| format!("authorization_endpoint: {e}"))?;
        url.query_pairs_mut().append_pair("client_id", &c.id);
        for (k, v) in outside {
            url.query_pairs_mut().append_pair(k, v);
        }
        url.query_pairs_mut().append_pair("request", jwt);
        Ok(url.to_string())
    }

    /// The PAR request carrying `jwt`, with client authentication.
    async fn push(&self, c: &Client, jwt: &str) -> R<Answer> {
        let mut form: Params = vec![("request".into(), jwt.into())];
        form.extend(
            self.env
                .auth_fields(c, "pushed_authorization_request_endpoint"),
        );
        self.env.par_raw(c, &form, None).await
    }

    /// Sends the signed request object `jwt` the variant's way, with
    /// `outside` parameters at the authorization endpoint: `Err(answer)`
    /// when PAR refused it, else where the browser ended up.
    async fn submit(
        &self,
        v: &Variant,
        c: &Client,
        jwt: &str,
        outside: &Params,
        approve: bool,
    ) -> R<Result<AuthzOutcome, Answer>> {
        if !v.pushed {
            let url = self.by_value_url(c, jwt, outside)?;
            let browser = jose::https_client(&self.env.ca_pem, None, true);
            return self.env.browse(&browser, c, &url, approve).await.map(Ok);
        }
        let a = self.push(c, jwt).await?;
        if a.status != 201 {
            return Ok(Err(a));
        }
        let uri = self.env.check_par(&a)?;
        self.env.authorize(c, &uri, outside, approve).await.map(Ok)
    }

    /// §5.4 on the response, and for the hybrid flow the front-channel
    /// id_token (detached signature: `c_hash`, `s_hash`, `nonce`); returns
    /// the code and that id_token's claims.
    fn check_front(
        &self,
        v: &Variant,
        c: &Client,
        q: &HashMap<String, String>,
        a: &Auth,
    ) -> R<(String, Option<Value>)> {
        let state = a.inside("state");
        let code = self.env.check_authz_success(v, q, state)?;
        if !v.hybrid() {
            ensure!(
                !q.contains_key("id_token"),
                "response_type=code answered with an id_token: {q:?}"
            );
            return Ok((code, None));
        }
        ensure!(
            !q.contains_key("access_token"),
            "response_type=code id_token answered with an access token"
        );
        let jwt = q
            .get("id_token")
            .ok_or(format!("the hybrid response has no id_token: {q:?}"))?;
        let claims = self.check_id_token(v, c, jwt, a, None)?;
        let c_hash = claims["c_hash"]
            .as_str()
            .ok_or("the front-channel id_token has no c_hash (OIDC Core §3.3.2.11)")?;
        ensure!(
            c_hash == half_sha256(&code),
            "c_hash {c_hash} is not the left half of SHA-256 of the code"
        );
        match state {
            Some(s) => {
                let s_hash = claims["s_hash"].as_str().ok_or(
                    "the front-channel id_token has no s_hash (FAPI 1.0 Advanced §5.2.2.1-5)",
                )?;
                ensure!(
                    s_hash == half_sha256(s),
                    "s_hash {s_hash} is not the left half of SHA-256 of the state"
                );
            }
            None => ensure!(
                claims.get("s_hash").is_none(),
                "s_hash in the id_token though no state was sent"
            ),
        }
        Ok((code, Some(claims)))
    }

    /// §5.6 plus the FAPI 1.0 rules on any id_token of `a`: signed PS256
    /// or ES256 (FAPI 1.0 Advanced §8.6); UK: the intent and an acr the
    /// request allows.
    fn check_id_token(
        &self,
        v: &Variant,
        c: &Client,
        jwt: &str,
        a: &Auth,
        access_token: Option<&str>,
    ) -> R<Value> {
        let alg = jsonwebtoken::decode_header(jwt)
            .map_err(|e| format!("id_token header: {e}"))?
            .alg;
        ensure!(
            matches!(alg, Algorithm::PS256 | Algorithm::ES256),
            "id_token signed {alg:?} (FAPI 1.0 Advanced §8.6: PS256 or ES256)"
        );
        let claims = self
            .env
            .check_id_token(c, jwt, a.inside("nonce"), access_token)?;
        if v.uk {
            // Signed in by the bank's login app, through the consent bridge.
            ensure!(
                claims["sub"] == json!(BANK_SUB),
                "id_token sub {}: not the customer the bank's login app signed in",
                claims["sub"]
            );
            ensure!(
                claims[INTENT_CLAIM].as_str() == a.intent.as_deref(),
                "id_token {INTENT_CLAIM} {} ≠ the requested intent {:?}",
                claims[INTENT_CLAIM],
                a.intent
            );
        }
        if let Some(req) = a.claims["claims"]["id_token"].get("acr") {
            let acr = claims["acr"].as_str().unwrap_or_default();
            let allowed: Vec<&str> = match (req.get("value"), req.get("values")) {
                (Some(one), _) => one.as_str().into_iter().collect(),
                (_, Some(many)) => many
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
                _ => vec![],
            };
            if req["essential"] == json!(true) && !allowed.is_empty() {
                ensure!(
                    allowed.contains(&acr),
                    "id_token acr {acr:?}, the request made one of {allowed:?} essential"
                );
            }
        }
        Ok(claims)
    }

    /// From the browser's outcome to tokens and the resource, with every
    /// check: the response, the front-channel id_token, the token
    /// response and its id_token (same `sub`), the certificate-bound
    /// access token at the resource.
    async fn complete(&self, v: &Variant, c: &Client, a: &Auth, out: AuthzOutcome) -> R<Flow> {
        let q = match out {
            AuthzOutcome::Redirect(q) => q,
            AuthzOutcome::Page(s, body) => {
                return Err(format!(
                    "authorization ended on a page: HTTP {s} {}",
                    page_text(&body).chars().take(300).collect::<String>()
                ));
            }
        };
        let (code, front) = self.check_front(v, c, &q, a)?;
        let token = self
            .redeem(c, &code, a.pkce().then_some(a.verifier.as_str()))
            .await?;
        let at = self
            .env
            .check_token(v, c, &token, a.inside("nonce"), true)?;
        let idt = self.check_id_token(
            v,
            c,
            token.json["id_token"].as_str().unwrap_or_default(),
            a,
            Some(&at),
        )?;
        if let Some(front) = front {
            ensure!(
                front["sub"] == idt["sub"],
                "the two id_tokens name different subjects: {} and {}",
                front["sub"],
                idt["sub"]
            );
        }
        self.env.check_resource(v, c, &at).await?;
        Ok(Flow {
            params: a.params.clone(),
            token,
            access_token: at,
        })
    }

    /// The request `a` signed by `c`, sent, and completed.
    async fn run_auth(&self, v: &Variant, c: &Client, a: &Auth, outside: &Params) -> R<Flow> {
        let jwt = sign(&c.key, &a.claims, |_| {});
        match self.submit(v, c, &jwt, outside, true).await? {
            Ok(out) => self.complete(v, c, a, out).await,
            Err(par) => Err(format!("PAR refused the request: {}", par.brief())),
        }
    }

    async fn flow(&self, v: &Variant, c: &Client) -> R<Flow> {
        let a = self.auth(v, c).await?;
        self.run_auth(v, c, &a, &Self::outside(&a)).await
    }

    /// Up to the code, without redeeming it.
    async fn code(&self, v: &Variant, c: &Client) -> R<(Auth, String)> {
        let a = self.auth(v, c).await?;
        let jwt = sign(&c.key, &a.claims, |_| {});
        let q = match self.submit(v, c, &jwt, &Self::outside(&a), true).await? {
            Ok(AuthzOutcome::Redirect(q)) => q,
            Ok(AuthzOutcome::Page(s, body)) => {
                return Err(format!(
                    "authorization ended on a page: HTTP {s} {}",
                    page_text(&body)
                ));
            }
            Err(par) => return Err(format!("PAR refused the request: {}", par.brief())),
        };
        let (code, _) = self.check_front(v, c, &q, &a)?;
        Ok((a, code))
    }

    fn code_form(&self, c: &Client, code: &str, verifier: Option<&str>) -> Params {
        self.env.code_form(c, code, verifier, &c.redirect_uri)
    }

    async fn redeem(&self, c: &Client, code: &str, verifier: Option<&str>) -> R<Answer> {
        self.env
            .token_raw(c, &self.code_form(c, code, verifier), None)
            .await
    }

    /// An error redirect in the variant's response mode (§5.9): the
    /// fragment for the hybrid flow, a JARM response for JARM.
    fn check_error_redirect(
        &self,
        v: &Variant,
        q: &HashMap<String, String>,
        state: Option<&str>,
        expected: &[&str],
    ) -> R {
        self.env.check_authz_error(q, state, expected)?;
        if v.jarm() {
            ensure!(
                q.contains_key("response"),
                "the error did not come as a JARM response: {q:?}"
            );
        } else {
            ensure!(
                q.contains_key(IN_FRAGMENT),
                "the error of a code id_token request must come in the fragment: {q:?}"
            );
        }
        Ok(())
    }

    /// "Error-or-page": refused at PAR with one of `par_errors`, or by an
    /// error page or an error redirect with one of `authz_errors` (with the
    /// inside state), in the variant's response mode
    /// ([`Ctx::check_error_redirect`]).
    async fn expect_refused(
        &self,
        v: &Variant,
        c: &Client,
        jwt: &str,
        outside: &Params,
        state: Option<&str>,
        (par_errors, authz_errors): (&[&str], &[&str]),
    ) -> R {
        match self.submit(v, c, jwt, outside, true).await? {
            Err(par) => {
                ensure!(
                    (400..500).contains(&par.status),
                    "PAR refused with HTTP {} (expected 4xx)",
                    par.status
                );
                check_par_error(&par, par_errors)
            }
            Ok(AuthzOutcome::Page(s, body)) => check_error_page(s, &body, authz_errors),
            Ok(AuthzOutcome::Redirect(q)) => {
                ensure!(
                    q.contains_key("error"),
                    "the request was ACCEPTED: the authorization succeeded ({:?})",
                    q.keys().collect::<Vec<_>>()
                );
                self.check_error_redirect(v, &q, state, authz_errors)
            }
        }
    }

    /// A request-object negative: `edit` the claims of a typical request;
    /// it must be refused.
    async fn ro_negative(&self, v: &Variant, edit: impl FnOnce(&mut Value)) -> R {
        let (c, _) = self.clients(v);
        let mut a = self.auth(v, c).await?;
        edit(&mut a.claims);
        let jwt = sign(&c.key, &a.claims, |_| {});
        self.expect_refused(
            v,
            c,
            &jwt,
            &Self::outside(&a),
            a.inside("state"),
            (RO_PAR_ERRORS, RO_AUTHZ_ERRORS),
        )
        .await
    }

    /// A positive module: a typical request with `edit`ed parameters
    /// (inside and outside) must succeed.
    async fn positive(&self, v: &Variant, edit: impl FnOnce(&mut Params)) -> R<Flow> {
        let (c, _) = self.clients(v);
        let mut a = self.auth(v, c).await?;
        edit(&mut a.params);
        a.claims = self.env.request_object_claims(c, &a.params);
        self.run_auth(v, c, &a, &Self::outside(&a)).await
    }

    /// A token request for a fresh code of client1 with another client
    /// assertion (`None`: none at all).
    async fn token_with_assertion(&self, v: &Variant, assertion: Option<String>) -> R<Answer> {
        let (c, _) = self.clients(v);
        let (a, code) = self.code(v, c).await?;
        let mut form = self.code_form(c, &code, a.pkce().then_some(a.verifier.as_str()));
        set(&mut form, "client_assertion", assertion.as_deref());
        if assertion.is_none() {
            set(&mut form, "client_assertion_type", None);
        }
        self.env.token_raw(c, &form, None).await
    }

    /// PAR of a typical request with another client assertion.
    async fn par_with_assertion(
        &self,
        v: &Variant,
        c: &Client,
        assertion: &str,
    ) -> R<(Auth, Answer)> {
        let a = self.auth(v, c).await?;
        let mut form: Params = vec![("request".into(), sign(&c.key, &a.claims, |_| {}))];
        form.extend(
            self.env
                .auth_fields(c, "pushed_authorization_request_endpoint"),
        );
        set(&mut form, "client_assertion", Some(assertion));
        let par = self.env.par_raw(c, &form, None).await?;
        Ok((a, par))
    }

    /// The flow after an accepted PAR answer.
    async fn finish_pushed(&self, v: &Variant, c: &Client, a: &Auth, par: &Answer) -> R<Flow> {
        let uri = self.env.check_par(par)?;
        let out = self.env.authorize(c, &uri, &Self::outside(a), true).await?;
        self.complete(v, c, a, out).await
    }
}

const RO_PAR_ERRORS: &[&str] = &["invalid_request_object", "invalid_request"];
const RO_AUTHZ_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_request_uri",
    "invalid_request_object",
    "access_denied",
];

/// A request object (FAPI 1.0 leaves `typ` out, as the OIDF plan does).
fn sign(key: &ClientKey, claims: &Value, header: impl FnOnce(&mut jsonwebtoken::Header)) -> String {
    key.sign_with(None, claims, header)
}

/// OIDC Core §3.3.2.11: the left half of SHA-256 of the ASCII value.
pub fn half_sha256(v: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes());
    jose::b64(&d.as_ref()[..16])
}

/// A string of `n` URL-safe random characters.
fn random_chars(n: usize) -> String {
    std::iter::repeat_with(|| random(48))
        .take(n / 64 + 1)
        .collect::<String>()
        .chars()
        .take(n)
        .collect()
}

/// §5.1 (FAPI 1.0 and UK) and §5.2.
async fn discovery(env: &Env, v: &Variant) -> R {
    let d = &env.discovery;
    let issuer = openidconnect::IssuerUrl::new(env.issuer.clone()).map_err(|e| e.to_string())?;
    openidconnect::core::CoreProviderMetadata::discover_async(issuer, &env.http)
        .await
        .map_err(|e| format!("openidconnect discovery: {e}"))?;
    ensure!(
        d["issuer"] == json!(env.issuer),
        "issuer {} ≠ the URL prefix {}",
        d["issuer"],
        env.issuer
    );
    let has = |k: &str, val: &str| d[k].as_array().is_some_and(|a| a.iter().any(|x| x == val));
    let fapi1_alg = |k: &str| has(k, "PS256") || has(k, "ES256");
    if v.hybrid() {
        ensure!(
            has("response_types_supported", "code id_token"),
            "response_types_supported lacks code id_token: {}",
            d["response_types_supported"]
        );
    } else {
        ensure!(
            has("response_types_supported", "code") && has("response_modes_supported", "jwt"),
            "JARM: response_types_supported must have code and response_modes_supported jwt"
        );
        ensure!(
            fapi1_alg("authorization_signing_alg_values_supported"),
            "authorization_signing_alg_values_supported lacks PS256/ES256"
        );
    }
    if v.pushed {
        ensure!(
            d["pushed_authorization_request_endpoint"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://")),
            "no https pushed_authorization_request_endpoint"
        );
    } else {
        ensure!(
            d["request_parameter_supported"] == json!(true),
            "request_parameter_supported must be true for request objects by value"
        );
        ensure!(
            d["require_pushed_authorization_requests"] != json!(true),
            "require_pushed_authorization_requests is true, but requests by value are tested"
        );
    }
    ensure!(
        fapi1_alg("request_object_signing_alg_values_supported"),
        "request_object_signing_alg_values_supported lacks PS256/ES256"
    );
    ensure!(
        !has("request_object_signing_alg_values_supported", "none")
            && !has("request_object_signing_alg_values_supported", "RS256"),
        "request_object_signing_alg_values_supported offers none or RS256"
    );
    ensure!(
        fapi1_alg("id_token_signing_alg_values_supported"),
        "id_token_signing_alg_values_supported lacks PS256/ES256"
    );
    let method = if v.mtls {
        "tls_client_auth"
    } else {
        "private_key_jwt"
    };
    ensure!(
        has("token_endpoint_auth_methods_supported", method),
        "token_endpoint_auth_methods_supported lacks {method}"
    );
    if has("token_endpoint_auth_methods_supported", "private_key_jwt") {
        ensure!(
            fapi1_alg("token_endpoint_auth_signing_alg_values_supported"),
            "token_endpoint_auth_signing_alg_values_supported lacks PS256/ES256"
        );
    }
    ensure!(
        d["tls_client_certificate_bound_access_tokens"] == json!(true),
        "tls_client_certificate_bound_access_tokens must be true"
    );
    ensure!(
        d["mtls_endpoint_aliases"]["token_endpoint"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "mtls_endpoint_aliases lacks an https token_endpoint"
    );
    ensure!(
        has("scopes_supported", "openid"),
        "scopes_supported lacks openid"
    );
    ensure!(
        d["subject_types_supported"].is_array(),
        "subject_types_supported missing"
    );
    ensure!(
        d["jwks_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "jwks_uri must be https"
    );
    ensure!(
        has("grant_types_supported", "authorization_code"),
        "grant_types_supported lacks authorization_code"
    );
    if v.uk {
        ensure!(
            d["claims_parameter_supported"] == json!(true),
            "UK: claims_parameter_supported must be true"
        );
        for claim in ["acr", INTENT_CLAIM] {
            ensure!(
                has("claims_supported", claim),
                "UK: claims_supported lacks {claim}"
            );
        }
        ensure!(
            has("grant_types_supported", "client_credentials"),
            "UK: grant_types_supported lacks client_credentials"
        );
        ensure!(
            has("scopes_supported", "accounts"),
            "UK: scopes_supported lacks accounts"
        );
        ensure!(
            has("acr_values_supported", ACR_SCA),
            "UK: acr_values_supported lacks {ACR_SCA}"
        );
    }
    crate::modules::check_jwks(env)
}

/// Runs FAPI 1.0 module `name` in variant `v`.
pub async fn run(r: &Running, v: &Variant, name: &str) -> R {
    let ctx = if v.uk {
        let uk = r.uk.as_deref().ok_or("no openbanking_uk deployment")?;
        Ctx {
            env: &uk.running.env,
            bank: Some(&*uk.bank),
        }
    } else {
        Ctx {
            env: &r.env,
            bank: None,
        }
    };
    let result = module(&ctx, v, name).await;
    // A hook call that broke the contract fails the module that caused it
    // (and, the bank being shared, possibly a neighbour: then both).
    match (result, ctx.bank.map(Bank::problems).unwrap_or_default()) {
        (Ok(()), p) if !p.is_empty() => Err(format!("the bank saw bad hook calls: {p:?}")),
        (r, _) => r,
    }
}

async fn module(ctx: &Ctx<'_>, v: &Variant, name: &str) -> R {
    let env = ctx.env;
    let (c1, c2) = ctx.clients(v);
    match name {
        "discovery-end-point-verification" => discovery(env, v).await,
        "fapi1-advanced-final" => {
            let f1 = ctx.flow(v, c1).await?;
            let f2 = ctx.flow(v, c2).await?;
            rp_verify_id_token(env, c1, &f1)?;
            rp_verify_id_token(env, c2, &f2)?;
            let sub = |f: &Flow| {
                jose::jwt_part(f.token.json["id_token"].as_str().unwrap_or_default(), 1)
                    .map(|c| c["sub"].clone())
            };
            ensure!(
                sub(&f1) == sub(&f2),
                "the same user got different sub values for the two clients"
            );
            // client1's certificate with client2's token must be refused.
            let a = env
                .resource_raw(c1, "Bearer", &f2.access_token, None, &[])
                .await?;
            ensure!(
                (400..500).contains(&a.status),
                "client2's token with client1's certificate was accepted: {}",
                a.brief()
            );
            let mut urls = vec![
                (env.ep(c1, "token_endpoint"), true),
                (env.ep(c1, "userinfo_endpoint"), true),
                (
                    env.discovery["authorization_endpoint"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    false,
                ),
            ];
            if v.pushed {
                urls.push((env.ep(c1, "pushed_authorization_request_endpoint"), true));
            }
            for (url, back) in urls {
                check_tls_as(&url, back, true).await?;
            }
            Ok(())
        }
        "user-rejects-authentication" => {
            // UK: the customer refuses at the bank's consent app; plain:
            // at the built-in consent page.
            let a = ctx.auth_with(v, c1, true, None).await?;
            let jwt = sign(&c1.key, &a.claims, |_| {});
            match ctx.submit(v, c1, &jwt, &Ctx::outside(&a), false).await? {
                Ok(AuthzOutcome::Redirect(q)) => {
                    ctx.check_error_redirect(v, &q, a.inside("state"), &["access_denied"])?;
                    ensure!(
                        q.get("iss") == Some(&env.issuer),
                        "error response without iss = the issuer: {q:?}"
                    );
                    Ok(())
                }
                Ok(AuthzOutcome::Page(s, _)) => Err(format!(
                    "expected a redirect with access_denied, got a page (HTTP {s})"
                )),
                Err(par) => Err(format!("PAR refused the request: {}", par.brief())),
            }
        }
        "ensure-request-object-with-multiple-aud-succeeds" => {
            let mut a = ctx.auth(v, c1).await?;
            a.claims["aud"] = json!([env.issuer, "https://other.example/"]);
            ctx.run_auth(v, c1, &a, &Ctx::outside(&a)).await.map(drop)
        }
        "ensure-authorization-request-without-state-success" => {
            ctx.positive(v, |p| set(p, "state", None)).await.map(drop)
        }
        "ensure-valid-pkce-succeeds" => {
            // By value the plan sends no PKCE; unrequested PKCE must not
            // break the flow, and the verifier must then match.
            let mut a = ctx.auth(v, c1).await?;
            a.claims["code_challenge"] = json!(jose::sha256_b64(a.verifier.as_bytes()));
            a.claims["code_challenge_method"] = json!("S256");
            ctx.run_auth(v, c1, &a, &Ctx::outside(&a)).await.map(drop)
        }
        "ensure-other-scope-order-succeeds" => {
            let reversed: String = env.scope(v).split(' ').rev().collect::<Vec<_>>().join(" ");
            ctx.positive(v, |p| set(p, "scope", Some(&reversed)))
                .await
                .map(drop)
        }
        "access-token-type-header-case-sensitivity" => {
            let f = ctx.flow(v, c1).await?;
            let a = env
                .resource_raw(c1, "bEARER", &f.access_token, None, &[])
                .await?;
            env.resource_ok(v, &a)
                .map_err(|e| format!("scheme bEARER: {e}"))
        }
        "ensure-response-mode-query" => {
            // An id_token must not travel in the query (OAuth 2.0 Multiple
            // Response Types §5): refused, or answered in the fragment.
            let mut a = ctx.auth(v, c1).await?;
            a.claims["response_mode"] = json!("query");
            let jwt = sign(&c1.key, &a.claims, |_| {});
            let errors = &[
                "invalid_request",
                "invalid_request_object",
                "unsupported_response_mode",
            ];
            match ctx.submit(v, c1, &jwt, &Ctx::outside(&a), true).await? {
                Err(par) => check_par_error(&par, errors),
                Ok(AuthzOutcome::Page(s, body)) => check_error_page(s, &body, errors),
                Ok(AuthzOutcome::Redirect(q)) if q.contains_key("error") => {
                    ensure!(
                        !q.contains_key("id_token"),
                        "an error response with an id_token"
                    );
                    env.check_authz_error(&q, a.inside("state"), errors)
                }
                Ok(out) => ctx.complete(v, c1, &a, out).await.map(drop),
            }
        }
        "ensure-different-nonce-inside-and-outside-request-object" => {
            let a = ctx.auth(v, c1).await?;
            let mut outside = Ctx::outside(&a);
            outside.push(("nonce".into(), random(12)));
            either_error_or_inside(ctx, v, c1, &a, &outside).await
        }
        "ensure-registered-redirect-uri" => {
            let mut a = ctx.auth(v, c1).await?;
            a.claims["redirect_uri"] = json!("https://attacker.example/cb");
            let jwt = sign(&c1.key, &a.claims, |_| {});
            let outside = Ctx::outside(&a);
            if v.pushed {
                let par = ctx.push(c1, &jwt).await?;
                if par.status != 201 {
                    return check_par_error(
                        &par,
                        &[
                            "invalid_request",
                            "invalid_request_object",
                            "invalid_redirect_uri",
                        ],
                    );
                }
                let uri = env.check_par(&par)?;
                let mut url = url::Url::parse(
                    env.discovery["authorization_endpoint"]
                        .as_str()
                        .unwrap_or_default(),
                )
                .map_err(|e| e.to_string())?;
                url.query_pairs_mut()
                    .append_pair("client_id", &c1.id)
                    .append_pair("request_uri", &uri);
                must_not_redirect_from(env, url.to_string(), "https://attacker.example/").await
            } else {
                let url = ctx.by_value_url(c1, &jwt, &outside)?;
                must_not_redirect_from(env, url, "https://attacker.example/").await
            }
        }
        "ensure-request-object-with-long-nonce" | "ensure-request-object-with-long-state" => {
            let key = if name.ends_with("nonce") {
                "nonce"
            } else {
                "state"
            };
            let long = random_chars(384);
            let mut a = ctx.auth(v, c1).await?;
            set(&mut a.params, key, Some(&long));
            a.claims = env.request_object_claims(c1, &a.params);
            let jwt = sign(&c1.key, &a.claims, |_| {});
            match ctx.submit(v, c1, &jwt, &Ctx::outside(&a), true).await? {
                Err(par) => check_par_error(&par, &["invalid_request", "invalid_request_object"]),
                Ok(AuthzOutcome::Page(s, body)) => {
                    check_error_page(s, &body, &["invalid_request", "invalid_request_object"])
                }
                Ok(AuthzOutcome::Redirect(q)) if q.contains_key("error") => ctx
                    .check_error_redirect(
                        v,
                        &q,
                        a.inside("state"),
                        &["invalid_request", "invalid_request_object"],
                    ),
                // Success: the value must come back intact (checked against
                // the inside value by check_front and check_token).
                Ok(out) => ctx.complete(v, c1, &a, out).await.map(drop),
            }
        }
        "ensure-request-object-with-64-char-nonce-success" => {
            let n = random_chars(64);
            ensure!(n.len() == 64, "nonce generation");
            ctx.positive(v, |p| set(p, "nonce", Some(&n)))
                .await
                .map(drop)
        }
        "ensure-request-object-without-exp-fails" => {
            ctx.ro_negative(v, |c| drop(c.as_object_mut().map(|o| o.remove("exp"))))
                .await
        }
        "ensure-request-object-without-nbf-fails" => {
            ctx.ro_negative(v, |c| drop(c.as_object_mut().map(|o| o.remove("nbf"))))
                .await
        }
        "ensure-request-object-without-scope-fails" => {
            // scope only outside the object.
            ctx.ro_negative(v, |c| drop(c.as_object_mut().map(|o| o.remove("scope"))))
                .await
        }
        "ensure-request-object-without-nonce-fails" => {
            // The nonce only outside (FAPI 1.0 Advanced §5.2.2.2-1, OIDC
            // Core §3.3.2.11): refused with invalid_request.
            let mut a = ctx.auth(v, c1).await?;
            let nonce = a.inside("nonce").unwrap_or_default().to_string();
            a.claims.as_object_mut().map(|o| o.remove("nonce"));
            let jwt = sign(&c1.key, &a.claims, |_| {});
            let mut outside = Ctx::outside(&a);
            outside.push(("nonce".into(), nonce));
            ctx.expect_refused(
                v,
                c1,
                &jwt,
                &outside,
                a.inside("state"),
                (
                    &["invalid_request", "invalid_request_object"],
                    &["invalid_request", "invalid_request_object"],
                ),
            )
            .await
        }
        "ensure-request-object-without-redirect-uri-fails"
        | "ensure-redirect-uri-in-authorization-request" => {
            // No redirect_uri inside (and none outside): one URI is
            // registered, so an error redirect to it is allowed too.
            ctx.ro_negative(v, |c| {
                drop(c.as_object_mut().map(|o| o.remove("redirect_uri")))
            })
            .await
        }
        "ensure-expired-request-object-fails" => {
            ctx.ro_negative(v, |c| {
                c["exp"] = json!(now() - 60);
                c["iat"] = json!(now() - 360);
                c["nbf"] = json!(now() - 360);
            })
            .await
        }
        "ensure-request-object-with-bad-aud-fails" => {
            ctx.ro_negative(v, |c| c["aud"] = json!("https://not-the-issuer.example/"))
                .await
        }
        "ensure-request-object-with-exp-over-60-fails" => {
            ctx.ro_negative(v, |c| c["exp"] = json!(now() + 70 * 60))
                .await
        }
        "ensure-request-object-with-nbf-over-60-fails" => {
            ctx.ro_negative(v, |c| {
                c["nbf"] = json!(now() - 70 * 60);
                c["iat"] = json!(now() - 70 * 60);
            })
            .await
        }
        "ensure-signed-request-object-with-RS256-fails" => {
            // client2's key is RSA: the same key, RS256.
            let a = ctx.auth(v, c2).await?;
            let jwt = sign(&c2.key.with_alg(Algorithm::RS256), &a.claims, |_| {});
            ctx.expect_refused(
                v,
                c2,
                &jwt,
                &Ctx::outside(&a),
                a.inside("state"),
                (RO_PAR_ERRORS, RO_AUTHZ_ERRORS),
            )
            .await
        }
        "ensure-request-object-signature-algorithm-is-not-none" => {
            let a = ctx.auth(v, c1).await?;
            let jwt = format!(
                "{}.{}.",
                jose::b64(br#"{"alg":"none"}"#),
                jose::b64(a.claims.to_string().as_bytes())
            );
            ctx.expect_refused(
                v,
                c1,
                &jwt,
                &Ctx::outside(&a),
                a.inside("state"),
                (RO_PAR_ERRORS, RO_AUTHZ_ERRORS),
            )
            .await
        }
        "ensure-request-object-with-invalid-signature-fails" => {
            let a = ctx.auth(v, c1).await?;
            let jwt = sign(&c1.key, &a.claims, |_| {});
            let (head, sig) = jwt.rsplit_once('.').ok_or("jws")?;
            let mut sig = jose::b64_decode(sig).ok_or("sig")?;
            sig[5] ^= 0x5a;
            let jwt = format!("{head}.{}", jose::b64(&sig));
            ctx.expect_refused(
                v,
                c1,
                &jwt,
                &Ctx::outside(&a),
                a.inside("state"),
                (RO_PAR_ERRORS, RO_AUTHZ_ERRORS),
            )
            .await
        }
        "ensure-matching-key-in-authorization-request" => {
            // client1's request signed with client2's key.
            let a = ctx.auth(v, c1).await?;
            let jwt = sign(&c2.key, &a.claims, |h| h.kid = Some(c1.key.kid.clone()));
            ctx.expect_refused(
                v,
                c1,
                &jwt,
                &Ctx::outside(&a),
                a.inside("state"),
                (RO_PAR_ERRORS, RO_AUTHZ_ERRORS),
            )
            .await
        }
        "state-only-outside-request-object-not-used" => {
            let mut a = ctx.auth(v, c1).await?;
            a.claims.as_object_mut().map(|o| o.remove("state"));
            let mut outside = Ctx::outside(&a);
            outside.push(("state".into(), random(12)));
            let jwt = sign(&c1.key, &a.claims, |_| {});
            match ctx.submit(v, c1, &jwt, &outside, true).await? {
                Err(par) => Err(format!("PAR refused the request: {}", par.brief())),
                Ok(AuthzOutcome::Page(s, body)) => check_error_page(s, &body, &["invalid_request"]),
                Ok(AuthzOutcome::Redirect(q)) if q.contains_key("error") => {
                    ctx.check_error_redirect(v, &q, None, &["invalid_request"])
                }
                // check_front insists on no state and no s_hash.
                Ok(out) => ctx.complete(v, c1, &a, out).await.map(drop),
            }
        }
        "ensure-authorization-request-without-request-object-fails" => {
            // Every parameter in the query, no request object, no PAR.
            let a = ctx.auth(v, c1).await?;
            let mut url = url::Url::parse(
                env.discovery["authorization_endpoint"]
                    .as_str()
                    .unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?;
            url.query_pairs_mut().append_pair("client_id", &c1.id);
            for (k, val) in &a.params {
                url.query_pairs_mut().append_pair(k, val);
            }
            let browser = jose::https_client(&env.ca_pem, None, true);
            match env.browse(&browser, c1, url.as_str(), true).await? {
                AuthzOutcome::Page(s, body) => check_error_page(s, &body, &["invalid_request"]),
                AuthzOutcome::Redirect(q) => {
                    ensure!(
                        q.contains_key("error"),
                        "a request without a request object was accepted"
                    );
                    ctx.check_error_redirect(v, &q, a.inside("state"), &["invalid_request"])
                }
            }
        }
        "ensure-response-type-code-fails" => {
            // response_type=code without JARM (FAPI 1.0 Advanced §5.2.2-2).
            let mut a = ctx.auth(v, c1).await?;
            set(&mut a.params, "response_type", Some("code"));
            a.claims = env.request_object_claims(c1, &a.params);
            let jwt = sign(&c1.key, &a.claims, |_| {});
            let errors = &[
                "unsupported_response_type",
                "invalid_request",
                "invalid_request_object",
            ];
            match ctx.submit(v, c1, &jwt, &Ctx::outside(&a), true).await? {
                Err(par) => check_par_error(&par, errors),
                Ok(AuthzOutcome::Page(s, body)) => check_error_page(s, &body, errors),
                Ok(AuthzOutcome::Redirect(q)) => {
                    ensure!(
                        q.contains_key("error"),
                        "response_type=code without JARM was accepted: {:?}",
                        q.keys().collect::<Vec<_>>()
                    );
                    env.check_authz_error(&q, a.inside("state"), errors)
                }
            }
        }
        "ensure-client-id-in-token-endpoint" => {
            let (a, code) = ctx.code(v, c1).await?;
            let mut form = env.code_form(
                c2,
                &code,
                a.pkce().then_some(a.verifier.as_str()),
                &c1.redirect_uri,
            );
            set(&mut form, "redirect_uri", Some(&c1.redirect_uri));
            let r = env.token_raw(c2, &form, None).await?;
            check_error(&r, &["invalid_client", "invalid_grant"])
        }
        "ensure-mtls-holder-of-key-required" => {
            for url in [
                env.ep(c1, "token_endpoint"),
                env.ep(c1, "userinfo_endpoint"),
            ] {
                check_tls_as(&url, true, true).await?;
            }
            check_tls_as(
                env.discovery["authorization_endpoint"]
                    .as_str()
                    .unwrap_or_default(),
                false,
                true,
            )
            .await?;
            let (a, code) = ctx.code(v, c1).await?;
            // The same token request without the client certificate.
            let form = ctx.code_form(c1, &code, a.pkce().then_some(a.verifier.as_str()));
            match env
                .http
                .post(env.ep(c1, "token_endpoint"))
                .form(&form)
                .send()
                .await
            {
                Err(_) => Ok(()), // refused in the TLS handshake
                Ok(res) => {
                    let r = answer(Ok(res)).await?;
                    check_error(&r, &["invalid_client", "invalid_request", "invalid_grant"])
                        .map_err(|e| format!("token request without the certificate: {e}"))
                }
            }
        }
        "ensure-authorization-code-is-bound-to-client" => {
            let (a, code) = ctx.code(v, c1).await?;
            let form = env.code_form(
                c2,
                &code,
                a.pkce().then_some(a.verifier.as_str()),
                &c2.redirect_uri,
            );
            let r = env.token_raw(c2, &form, None).await?;
            check_error(&r, &["invalid_grant"])
        }
        "attempt-reuse-authorisation-code-after-one-second" => {
            let (a, code) = ctx.code(v, c1).await?;
            let verifier = a.pkce().then_some(a.verifier.as_str());
            let t = ctx.redeem(c1, &code, verifier).await?;
            env.check_token(v, c1, &t, a.inside("nonce"), true)?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = ctx.redeem(c1, &code, verifier).await?;
            check_error(&r, &["invalid_grant"])
        }
        "ensure-signed-client-assertion-with-RS256-fails" => {
            let (a, code) = ctx.code(v, c2).await?;
            let aud = json!(env.discovery["token_endpoint"]);
            let assertion = c2
                .key
                .with_alg(Algorithm::RS256)
                .sign(None, &c2.assertion_claims(aud));
            let mut form = ctx.code_form(c2, &code, a.pkce().then_some(a.verifier.as_str()));
            set(&mut form, "client_assertion", Some(&assertion));
            let r = env.token_raw(c2, &form, None).await?;
            check_error(&r, &["invalid_client"])
        }
        "ensure-client-assertion-in-token-endpoint" => {
            let r = ctx.token_with_assertion(v, None).await?;
            check_error(&r, &["invalid_client", "invalid_request"])
        }
        "ensure-client-assertion-with-exp-is-5-minutes-in-past-fails"
        | "ensure-client-assertion-with-wrong-aud-fails"
        | "ensure-client-assertion-with-no-sub-fails"
        | "ensure-client-assertion-with-wrong-iss-fails"
        | "ensure-client-assertion-with-wrong-sub-fails" => {
            let mut claims = c1.assertion_claims(json!(env.discovery["token_endpoint"]));
            let mut expected: &[&str] = &["invalid_client"];
            match name {
                "ensure-client-assertion-with-exp-is-5-minutes-in-past-fails" => {
                    claims["exp"] = json!(now() - 300);
                    claims["iat"] = json!(now() - 360);
                }
                "ensure-client-assertion-with-wrong-aud-fails" => {
                    claims["aud"] = json!("https://not-the-token-endpoint.example/token")
                }
                "ensure-client-assertion-with-no-sub-fails" => {
                    claims.as_object_mut().map(|o| o.remove("sub"));
                }
                "ensure-client-assertion-with-wrong-iss-fails" => {
                    claims["iss"] = json!(c2.id);
                    expected = &["invalid_client", "invalid_request"];
                }
                _ => {
                    claims["sub"] = json!(c2.id);
                    expected = &["invalid_client", "invalid_request"];
                }
            }
            let r = ctx
                .token_with_assertion(v, Some(c1.key.sign(None, &claims)))
                .await?;
            check_error(&r, expected)
        }
        "ensure-client-assertion-with-iss-aud-succeeds" => {
            let (a, code) = ctx.code(v, c1).await?;
            let assertion = c1.key.sign(None, &c1.assertion_claims(json!(env.issuer)));
            let mut form = ctx.code_form(c1, &code, a.pkce().then_some(a.verifier.as_str()));
            set(&mut form, "client_assertion", Some(&assertion));
            let r = env.token_raw(c1, &form, None).await?;
            env.check_token(v, c1, &r, a.inside("nonce"), true)
                .map(drop)
                .map_err(|e| format!("an assertion with aud = the issuer: {e}"))
        }
        "refresh-token" => {
            let f1 = ctx.flow(v, c1).await?;
            let f2 = ctx.flow(v, c2).await?;
            crate::modules::refresh_checks(env, v, c1, &f1, &f2).await
        }
        "ensure-server-handles-non-matching-intent-id" => {
            // client2's request names an intent of client1.
            let mut a = ctx.auth(v, c2).await?;
            let foreign = ctx.intent(c1, false).await?;
            a.claims["claims"] = uk_claims(
                &foreign,
                json!({"essential": true, "values": [ACR_SCA, ACR_CA]}),
            );
            let jwt = sign(&c2.key, &a.claims, |_| {});
            ctx.expect_refused(
                v,
                c2,
                &jwt,
                &Ctx::outside(&a),
                a.inside("state"),
                (
                    &["invalid_request", "invalid_request_object"],
                    &["invalid_request", "invalid_request_object", "access_denied"],
                ),
            )
            .await
        }
        "test-essential-acr-sca-claim" => {
            let a = ctx
                .auth_with(
                    v,
                    c1,
                    false,
                    Some(json!({"essential": true, "value": ACR_SCA})),
                )
                .await?;
            let jwt = sign(&c1.key, &a.claims, |_| {});
            match ctx.submit(v, c1, &jwt, &Ctx::outside(&a), true).await? {
                Ok(AuthzOutcome::Redirect(q)) if q.contains_key("error") => {
                    ctx.check_error_redirect(v, &q, a.inside("state"), &["access_denied"])
                }
                // check_id_token insists on acr = SCA in both id_tokens.
                Ok(out) => {
                    let f = ctx.complete(v, c1, &a, out).await?;
                    let idt =
                        jose::jwt_part(f.token.json["id_token"].as_str().unwrap_or_default(), 1)
                            .unwrap_or_default();
                    ensure!(idt["acr"] == json!(ACR_SCA), "acr {}", idt["acr"]);
                    Ok(())
                }
                Err(par) => Err(format!("PAR refused the request: {}", par.brief())),
            }
        }
        "par-ensure-reused-request-uri-prior-to-auth-completion-succeeds" => {
            let a = ctx.auth(v, c1).await?;
            let par = ctx.push(c1, &sign(&c1.key, &a.claims, |_| {})).await?;
            let uri = env.check_par(&par)?;
            let browser = jose::https_client(&env.ca_pem, None, true);
            let url = format!(
                "{}?client_id={}&request_uri={}",
                env.discovery["authorization_endpoint"]
                    .as_str()
                    .unwrap_or_default(),
                enc(&c1.id),
                enc(&uri)
            );
            let first = browser.get(&url).send().await.map_err(|e| e.to_string())?;
            ensure!(
                first.status().is_redirection(),
                "first visit: HTTP {}",
                first.status()
            );
            let out = env.authorize(c1, &uri, &Ctx::outside(&a), true).await?;
            ctx.complete(v, c1, &a, out).await.map(drop)
        }
        "par-attempt-reuse-request_uri" => {
            let a = ctx.auth(v, c1).await?;
            let par = ctx.push(c1, &sign(&c1.key, &a.claims, |_| {})).await?;
            ctx.finish_pushed(v, c1, &a, &par).await?;
            let uri = par.json["request_uri"].as_str().unwrap_or_default();
            match env.authorize(c1, uri, &Ctx::outside(&a), true).await? {
                AuthzOutcome::Page(s, body) => {
                    check_error_page(s, &body, &["invalid_request_uri", "invalid_request"])
                }
                AuthzOutcome::Redirect(q) => {
                    ensure!(
                        q.contains_key("error"),
                        "a used request_uri was accepted again"
                    );
                    ctx.check_error_redirect(
                        v,
                        &q,
                        a.inside("state"),
                        &["invalid_request_uri", "invalid_request"],
                    )
                }
            }
        }
        "par-attempt-to-use-expired-request_uri" => {
            let a = ctx.auth(v, c1).await?;
            let par = ctx.push(c1, &sign(&c1.key, &a.claims, |_| {})).await?;
            let uri = env.check_par(&par)?;
            let exp = par.json["expires_in"].as_u64().unwrap_or(60);
            ensure!(exp <= 600, "expires_in {exp} s is too long to wait out");
            tokio::time::sleep(Duration::from_secs(exp + 2)).await;
            match env.authorize(c1, &uri, &Ctx::outside(&a), true).await? {
                AuthzOutcome::Page(s, body) => {
                    check_error_page(s, &body, &["invalid_request_uri", "invalid_request"])
                }
                AuthzOutcome::Redirect(q) => {
                    ensure!(
                        q.contains_key("error"),
                        "an expired request_uri was accepted"
                    );
                    ctx.check_error_redirect(
                        v,
                        &q,
                        a.inside("state"),
                        &["invalid_request_uri", "invalid_request"],
                    )
                }
            }
        }
        "par-test-pushed-authorization-url-as-audience-for-client-JWT-assertion"
        | "par-token-endpoint-url-as-audience-for-client-JWT-assertion" => {
            // FAPI 1.0 (OIDC Core §9, RFC 9126 §2): accepted.
            let aud = if name.starts_with("par-test-pushed") {
                env.ep(c1, "pushed_authorization_request_endpoint")
            } else {
                env.discovery["token_endpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            let assertion = c1.key.sign(None, &c1.assertion_claims(json!(aud)));
            let (a, par) = ctx.par_with_assertion(v, c1, &assertion).await?;
            ctx.finish_pushed(v, c1, &a, &par)
                .await
                .map(drop)
                .map_err(|e| format!("an assertion with aud = {aud}: {e}"))
        }
        "test-array-as-audience-for-client-JWT-assertion" => {
            let aud = json!([env.issuer, "https://dummy.example/"]);
            let assertion = c1.key.sign(None, &c1.assertion_claims(aud.clone()));
            let (a, par) = ctx.par_with_assertion(v, c1, &assertion).await?;
            let uri = env
                .check_par(&par)
                .map_err(|e| format!("PAR with an array aud: {e}"))?;
            let out = env.authorize(c1, &uri, &Ctx::outside(&a), true).await?;
            let q = match out {
                AuthzOutcome::Redirect(q) => q,
                AuthzOutcome::Page(s, b) => {
                    return Err(format!("authorization page HTTP {s} {}", page_text(&b)));
                }
            };
            let (code, _) = ctx.check_front(v, c1, &q, &a)?;
            let mut form = ctx.code_form(c1, &code, Some(&a.verifier));
            set(
                &mut form,
                "client_assertion",
                Some(&c1.key.sign(None, &c1.assertion_claims(aud))),
            );
            let r = env.token_raw(c1, &form, None).await?;
            env.check_token(v, c1, &r, a.inside("nonce"), true)
                .map(drop)
                .map_err(|e| format!("token request with an array aud: {e}"))
        }
        "par-ensure-client-assertion-with-wrong-aud-fails"
        | "par-ensure-client-assertion-with-wrong-iss-fails"
        | "par-ensure-client-assertion-with-wrong-sub-fails" => {
            let mut claims = c1.assertion_claims(json!(env.issuer));
            match name {
                "par-ensure-client-assertion-with-wrong-aud-fails" => {
                    claims["aud"] = json!("https://not-the-issuer.example/")
                }
                "par-ensure-client-assertion-with-wrong-iss-fails" => claims["iss"] = json!(c2.id),
                _ => claims["sub"] = json!(c2.id),
            }
            let (_, par) = ctx
                .par_with_assertion(v, c1, &c1.key.sign(None, &claims))
                .await?;
            check_par_error(&par, &["invalid_client", "invalid_request"])
        }
        "par-attempt-to-use-request_uri-for-different-client" => {
            let a = ctx.auth(v, c1).await?;
            let par = ctx.push(c1, &sign(&c1.key, &a.claims, |_| {})).await?;
            let uri = env.check_par(&par)?;
            match env.authorize(c2, &uri, &Ctx::outside(&a), true).await? {
                AuthzOutcome::Page(s, body) => check_error_page(
                    s,
                    &body,
                    &["invalid_request_uri", "invalid_request", "invalid_client"],
                ),
                AuthzOutcome::Redirect(q) => {
                    ensure!(
                        q.contains_key("error"),
                        "client2 used client1's request_uri"
                    );
                    Ok(())
                }
            }
        }
        "par-authorization-request-containing-request_uri-form-param" => {
            let a = ctx.auth(v, c1).await?;
            let mut form: Params = vec![("request".into(), sign(&c1.key, &a.claims, |_| {}))];
            form.extend(env.auth_fields(c1, "pushed_authorization_request_endpoint"));
            form.push((
                "request_uri".into(),
                "urn:ietf:params:oauth:request_uri:abcdefghijklmnop".into(),
            ));
            let par = env.par_raw(c1, &form, None).await?;
            check_par_error(
                &par,
                &[
                    "invalid_request",
                    "invalid_request_object",
                    "request_uri_not_supported",
                ],
            )
        }
        "par-attempt-invalid-http-method" => {
            let a = answer(
                c1.http
                    .get(env.ep(c1, "pushed_authorization_request_endpoint"))
                    .send()
                    .await,
            )
            .await?;
            ensure!(a.status >= 400, "GET on the PAR endpoint: {}", a.brief());
            Ok(())
        }
        "par-ensure-pkce-required" | "par-plain-pkce-rejected" => {
            let plain = random(32);
            ctx.ro_negative(v, |c| {
                if name == "par-ensure-pkce-required" {
                    c.as_object_mut().map(|o| {
                        o.remove("code_challenge");
                        o.remove("code_challenge_method")
                    });
                } else {
                    c["code_challenge"] = json!(plain);
                    c["code_challenge_method"] = json!("plain");
                }
            })
            .await
        }
        "ensure-pkce-code-verifier-required" | "incorrect-pkce-code-verifier-rejected" => {
            let (_, code) = ctx.code(v, c1).await?;
            let wrong = random(32);
            let verifier = name.starts_with("incorrect").then_some(wrong.as_str());
            let r = ctx.redeem(c1, &code, verifier).await?;
            check_error(&r, &["invalid_grant"])
        }
        "par-pushed-authorization-url-as-audience-in-request-object" => {
            let par_url = env.ep(c1, "pushed_authorization_request_endpoint");
            ctx.ro_negative(v, |c| c["aud"] = json!(par_url)).await
        }
        "par-attempt-invalid-redirect_uri" => {
            let mut a = ctx.auth(v, c1).await?;
            a.claims["redirect_uri"] = json!("https://attacker.example/cb");
            let par = ctx.push(c1, &sign(&c1.key, &a.claims, |_| {})).await?;
            check_par_error(
                &par,
                &[
                    "invalid_request",
                    "invalid_request_object",
                    "invalid_redirect_uri",
                ],
            )
        }
        "par-authorization-request-containing-request_uri" => {
            ctx.ro_negative(v, |c| {
                c["request_uri"] = json!("urn:ietf:params:oauth:request_uri:abcdefghijklmnop")
            })
            .await
        }
        "par-without-duplicate-parameters" => {
            // Only client_id and request_uri at the authorization endpoint.
            let a = ctx.auth(v, c1).await?;
            ctx.run_auth(v, c1, &a, &vec![]).await.map(drop)
        }
        other => Err(format!("no test for module {other}")),
    }
}

/// A different value outside the request object: an error, or success
/// using the inside value (check_front and check_token compare with it).
async fn either_error_or_inside(
    ctx: &Ctx<'_>,
    v: &Variant,
    c: &Client,
    a: &Auth,
    outside: &Params,
) -> R {
    let jwt = sign(&c.key, &a.claims, |_| {});
    match ctx.submit(v, c, &jwt, outside, true).await? {
        Err(par) => Err(format!("PAR refused the request: {}", par.brief())),
        Ok(AuthzOutcome::Page(s, body)) => check_error_page(s, &body, &["invalid_request"]),
        Ok(AuthzOutcome::Redirect(q)) if q.contains_key("error") => {
            ctx.check_error_redirect(v, &q, a.inside("state"), &["invalid_request"])
        }
        Ok(out) => ctx.complete(v, c, a, out).await.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_table_matches_the_oidf_plan() {
        let names: std::collections::HashSet<_> = MODULES.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), MODULES.len(), "duplicate module");
        // oidf-modules.md §2: 68 modules, 20 of them PAR-only, 8 private_key_jwt-only.
        assert_eq!(MODULES.len(), 68);
        let pushed = MODULES
            .iter()
            .filter(|m| matches!(m.cond, Cond::Pushed | Cond::PushedPkjwt))
            .count();
        assert_eq!(pushed, 20);
        assert_eq!(MODULES.iter().filter(|m| m.cond == Cond::Pkjwt).count(), 8);
    }

    #[test]
    fn variants_follow_the_profiles() {
        let vs = variants();
        assert_eq!(vs.len(), 10);
        // UK: by value, no JARM.
        assert!(
            vs.iter()
                .filter(|v| v.uk)
                .all(|v| !v.pushed && !v.jarm_mode)
        );
        let par_only = MODULES
            .iter()
            .find(|m| m.name == "par-ensure-pkce-required")
            .unwrap();
        let uk = MODULES
            .iter()
            .find(|m| m.name == "test-essential-acr-sca-claim")
            .unwrap();
        let code = MODULES
            .iter()
            .find(|m| m.name == "ensure-response-type-code-fails")
            .unwrap();
        for v in &vs {
            assert_eq!(crate::modules::applies(par_only, v), v.pushed);
            assert_eq!(crate::modules::applies(uk, v), v.uk);
            assert_eq!(crate::modules::applies(code, v), !v.jarm_mode);
            assert!(!v.dpop() && v.signed() && v.openid);
            assert_eq!(v.hybrid(), !v.jarm());
            assert_eq!(v.par(), v.pushed);
        }
    }

    #[test]
    fn half_sha256_is_oidc_core_c_hash() {
        // OIDC Core §3.3.2.11 with SHA-256: 16 bytes, base64url.
        let h = half_sha256("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk");
        assert_eq!(jose::b64_decode(&h).unwrap().len(), 16);
        assert_eq!(h, "LDktKdoQak3Pk0cnXxCltA");
    }
}

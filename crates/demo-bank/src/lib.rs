//! A demo bank for Strongroom's consent bridge (docs/hooks.md, worked
//! example): its own login (argon2 password hashes), a consent store with a
//! UK Open Banking style account-access-consents API, the consent-service
//! intent look-up, the login and consent apps behind the hooks, a page
//! where customers see and revoke their consents, and the bank's side of
//! decoupled (CIBA) journeys with a "phone" page to approve them (`ciba`).
//!
//! Everything is in memory: restart the bank and its consents are gone.

pub mod ciba;
pub mod hook;
pub mod pages;
pub mod walkthrough;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use hook::{Handoff, HookResult, Purpose, RevocationNotice, constant_time_eq, now, random_token};
use pages::{Page, alert, esc, expiry_words, permission_item};

/// The UK OB account-access-consents path.
pub const CONSENTS_PATH: &str = "/open-banking/v3.1/aisp/account-access-consents";
/// The acr the demo login reports: password + (pretend) second factor.
pub const SCA_ACR: &str = "urn:openbanking:psd2:sca";

#[derive(Debug, Clone)]
pub struct DemoUser {
    pub username: String,
    pub password: String,
    pub sub: String,
    pub name: String,
    pub accounts: Vec<(String, String)>,
}

/// How the bank is wired to Strongroom.
#[derive(Debug, Clone)]
pub struct BankConfig {
    /// `iss` of result tokens (Strongroom's `hooks.bank_issuer`).
    pub issuer: String,
    /// Strongroom's issuer URL (`aud` of results, base of its API).
    pub strongroom_url: String,
    /// Extra CA to trust for Strongroom (its dev CA).
    pub strongroom_ca: Option<PathBuf>,
    /// The bank's own client at Strongroom, for introspection (client_secret_basic).
    pub introspection_client_id: String,
    pub introspection_client_secret: String,
    /// `hooks.shared_secret`: 32 bytes.
    pub shared_secret: [u8; 32],
    /// What Strongroom presents to the intent look-up (`hooks.consent_service_token`).
    pub service_token: String,
    /// What Strongroom presents to the CIBA resolve and notify hooks
    /// (`ciba.service_token`).
    pub ciba_service_token: String,
    /// What the bank presents to Strongroom's `/bank/...` API.
    pub bank_api_token: String,
    /// What Strongroom presents to the revocation webhook
    /// (`hooks.revocation_webhook_token`).
    pub webhook_token: String,
    pub users: Vec<DemoUser>,
    pub result_lifetime_secs: i64,
}

impl BankConfig {
    /// The demo setup: two customers with two accounts each.
    pub fn demo(strongroom_url: &str) -> BankConfig {
        let user = |u: &str, p: &str, sub: &str, name: &str, accts: &[(&str, &str)]| DemoUser {
            username: u.into(),
            password: p.into(),
            sub: sub.into(),
            name: name.into(),
            accounts: accts
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        BankConfig {
            issuer: "demo-bank".into(),
            strongroom_url: strongroom_url.into(),
            strongroom_ca: None,
            introspection_client_id: "demo-bank".into(),
            introspection_client_secret: "demo-bank-introspection-secret".into(),
            shared_secret: [0x42; 32],
            service_token: "demo-consent-service-token".into(),
            ciba_service_token: "demo-ciba-service-token".into(),
            bank_api_token: "demo-bank-api-token".into(),
            webhook_token: "demo-webhook-token".into(),
            users: vec![
                user(
                    "mia",
                    "correct horse",
                    "cust-0001",
                    "Mia Santos",
                    &[
                        ("acc-1001", "Current account ••1001"),
                        ("acc-1002", "Savings ••1002"),
                    ],
                ),
                user(
                    "noah",
                    "battery staple",
                    "cust-0002",
                    "Noah Berg",
                    &[
                        ("acc-2001", "Current account ••2001"),
                        ("acc-2002", "Credit card ••2002"),
                    ],
                ),
            ],
            result_lifetime_secs: 120,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Consent {
    pub consent_id: String,
    pub client_id: String,
    pub status: String,
    pub permissions: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub sub: Option<String>,
    pub accounts: Vec<String>,
    /// `Data.ExpirationDateTime` as the TPP sent it (ISO 8601), if any.
    pub expiration: Option<String>,
    /// The TPP's `client_name` from the consent hand-off, once authorised.
    pub tpp_name: Option<String>,
}

struct User {
    cfg: DemoUser,
    hash: String,
}

/// The bank's state (in memory).
pub struct Bank {
    cfg: BankConfig,
    users: Vec<User>,
    consents: Mutex<HashMap<String, Consent>>,
    used_handoffs: Mutex<HashSet<String>>,
    sessions: Mutex<HashMap<String, String>>,
    /// Revocation notices received from Strongroom's webhook.
    notices: Mutex<Vec<Value>>,
    /// Decoupled requests notified by Strongroom, by handle.
    ciba: Mutex<HashMap<String, ciba::PhoneRequest>>,
    http: reqwest::Client,
}

fn problem(status: u16, code: &str, msg: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(
            json!({"Code": code, "Message": msg, "Errors": [{"ErrorCode": code, "Message": msg}]}),
        )
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

impl Bank {
    pub fn new(cfg: BankConfig) -> Result<Bank, String> {
        let argon = Argon2::default();
        let users = cfg
            .users
            .iter()
            .map(|u| {
                let hash = argon
                    .hash_password(u.password.as_bytes())
                    .map_err(|e| e.to_string())?
                    .to_string();
                Ok(User {
                    cfg: u.clone(),
                    hash,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &cfg.strongroom_ca {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
                roots
                    .add(c.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Bank {
            cfg,
            users,
            consents: Mutex::new(HashMap::new()),
            used_handoffs: Mutex::new(HashSet::new()),
            sessions: Mutex::new(HashMap::new()),
            notices: Mutex::new(Vec::new()),
            ciba: Mutex::new(HashMap::new()),
            http,
        })
    }

    fn authenticate(&self, username: &str, password: &str) -> Option<&DemoUser> {
        let u = self.users.iter().find(|u| u.cfg.username == username)?;
        let parsed = PasswordHash::new(&u.hash).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .ok()
            .map(|_| &u.cfg)
    }

    fn user_by_sub(&self, sub: &str) -> Option<&DemoUser> {
        self.users.iter().map(|u| &u.cfg).find(|u| u.sub == sub)
    }

    pub fn consent(&self, id: &str) -> Option<Consent> {
        self.consents.lock().ok()?.get(id).cloned()
    }

    fn set_status(&self, id: &str, status: &str, decision: Option<(&str, &str, Vec<String>)>) {
        if let Ok(mut m) = self.consents.lock()
            && let Some(c) = m.get_mut(id)
        {
            c.status = status.into();
            c.updated_at = now();
            if let Some((sub, tpp_name, accounts)) = decision {
                c.sub = Some(sub.into());
                c.tpp_name = Some(tpp_name.into());
                c.accounts = accounts;
            }
        }
    }

    fn account_name(&self, sub: &str, id: &str) -> String {
        self.user_by_sub(sub)
            .and_then(|u| u.accounts.iter().find(|(a, _)| a == id))
            .map_or_else(|| id.to_string(), |(_, name)| name.clone())
    }

    /// The TPP's token, checked by introspection at Strongroom; returns its
    /// client_id when active and carrying the `accounts` scope.
    async fn tpp_client(&self, req: &HttpRequest) -> Option<String> {
        let v = self.tpp_token(req).await?;
        v["client_id"].as_str().map(str::to_string)
    }

    /// The introspection of the TPP's token when it is active and carries
    /// the `accounts` scope.
    async fn tpp_token(&self, req: &HttpRequest) -> Option<Value> {
        let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("DPoP "))?
            .trim();
        let res = self
            .http
            .post(format!("{}/introspect", self.cfg.strongroom_url))
            .basic_auth(
                &self.cfg.introspection_client_id,
                Some(&self.cfg.introspection_client_secret),
            )
            .form(&[("token", token)])
            .send()
            .await
            .ok()?;
        let v: Value = res.json().await.ok()?;
        let scope_ok = v["scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|x| x == "accounts"));
        (v["active"] == true && scope_ok).then_some(v)
    }

    /// A hand-off from Strongroom (docs/hooks.md §4): decrypted, addressed
    /// to us, for this page, fresh, returning to Strongroom.
    fn open_handoff(&self, token: &str, purpose: Purpose) -> Result<Handoff, &'static str> {
        const INVALID: &str =
            "This link is not valid. Go back to the app you came from and start again.";
        let v = hook::open(&self.cfg.shared_secret, token).map_err(|_| INVALID)?;
        let h: Handoff = serde_json::from_value(v).map_err(|_| INVALID)?;
        let t = now();
        if h.iss != self.cfg.strongroom_url || h.aud != self.cfg.issuer || h.purpose != purpose {
            return Err(INVALID);
        }
        if h.exp <= t {
            return Err("This link has expired. Go back to the app you came from and start again.");
        }
        if !h
            .return_uri
            .starts_with(&format!("{}/interaction/", self.cfg.strongroom_url))
        {
            return Err(INVALID);
        }
        Ok(h)
    }

    fn spend_handoff(&self, h: &Handoff) -> bool {
        self.used_handoffs
            .lock()
            .map(|mut s| s.insert(h.jti.clone()))
            .unwrap_or(false)
    }

    fn result_url(
        &self,
        h: &Handoff,
        fill: impl FnOnce(&mut HookResult),
    ) -> Result<String, String> {
        let mut r = HookResult::answering(
            h,
            &self.cfg.issuer,
            &self.cfg.strongroom_url,
            self.cfg.result_lifetime_secs,
        );
        fill(&mut r);
        let token = hook::seal(&self.cfg.shared_secret, &r)?;
        let mut url = url::Url::parse(&h.return_uri).map_err(|e| e.to_string())?;
        url.query_pairs_mut().append_pair("result", &token);
        Ok(url.to_string())
    }

    /// `{strongroom}/bank/{segments…}`, each segment percent-encoded as a
    /// path segment (not as a form: a space is `%20`, not `+`).
    fn bank_api_url(&self, segments: &[&str]) -> Result<url::Url, String> {
        let mut u = url::Url::parse(&self.cfg.strongroom_url).map_err(|e| e.to_string())?;
        u.path_segments_mut()
            .map_err(|()| "Strongroom's URL cannot have a path".to_string())?
            .pop_if_empty()
            .push("bank")
            .extend(segments);
        Ok(u)
    }

    /// Revokes at Strongroom first (so no token outlives the consent), then here.
    async fn revoke(&self, id: &str) -> Result<(), String> {
        let res = self
            .http
            .post(self.bank_api_url(&["consents", id, "revoke"])?)
            .bearer_auth(&self.cfg.bank_api_token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("Strongroom answered {}", res.status()));
        }
        self.set_status(id, "Revoked", None);
        Ok(())
    }
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

// ---------------------------------------------------------------- OB API

#[derive(Deserialize)]
struct CreateConsent {
    #[serde(rename = "Data")]
    data: CreateData,
}
#[derive(Deserialize)]
struct CreateData {
    #[serde(rename = "Permissions")]
    permissions: Vec<String>,
    #[serde(rename = "ExpirationDateTime", default)]
    expiration: Option<String>,
}

fn consent_json(c: &Consent) -> Value {
    json!({
        "Data": {
            "ConsentId": c.consent_id,
            "Status": c.status,
            "Permissions": c.permissions,
            "CreationDateTime": c.created_at,
            "StatusUpdateDateTime": c.updated_at,
            "ExpirationDateTime": c.expiration,
        },
        "Risk": {},
        "Links": {"Self": format!("{CONSENTS_PATH}/{}", c.consent_id)},
        "Meta": {"TotalPages": 1},
    })
}

/// `POST /open-banking/v3.1/aisp/account-access-consents` (TPP, client_credentials token).
async fn create_consent(bank: web::Data<Bank>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(client_id) = bank.tpp_client(&req).await else {
        return problem(
            401,
            "UK.OBIE.Unauthorized",
            "an active access token with the accounts scope is required",
        );
    };
    let Ok(body) = serde_json::from_slice::<CreateConsent>(&body) else {
        return problem(400, "UK.OBIE.Field.Invalid", "Data.Permissions is required");
    };
    if body.data.permissions.is_empty()
        || body.data.permissions.len() > 32
        || body
            .data
            .permissions
            .iter()
            .any(|p| p.is_empty() || p.len() > 64 || !p.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return problem(
            400,
            "UK.OBIE.Field.Invalid",
            "Data.Permissions must be 1 to 32 permission codes",
        );
    }
    if let Some(e) = &body.data.expiration
        && (e.len() > 64 || pages::human_date(e).is_none())
    {
        return problem(
            400,
            "UK.OBIE.Field.InvalidDate",
            "Data.ExpirationDateTime must be an ISO 8601 date-time",
        );
    }
    let t = now();
    let c = Consent {
        consent_id: format!(
            "urn-demobank-intent-{}",
            random_token(12).replace(['-', '_'], "x")
        ),
        client_id,
        status: "AwaitingAuthorisation".into(),
        permissions: body.data.permissions,
        created_at: t,
        updated_at: t,
        sub: None,
        accounts: Vec::new(),
        expiration: body.data.expiration,
        tpp_name: None,
    };
    let out = consent_json(&c);
    if let Ok(mut m) = bank.consents.lock() {
        m.insert(c.consent_id.clone(), c);
    }
    HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(out)
}

/// `GET .../account-access-consents/{id}`: the TPP's own consents only.
async fn get_consent(
    bank: web::Data<Bank>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(client_id) = bank.tpp_client(&req).await else {
        return problem(
            401,
            "UK.OBIE.Unauthorized",
            "an active access token with the accounts scope is required",
        );
    };
    match bank.consent(&path) {
        Some(c) if c.client_id == client_id => HttpResponse::Ok().json(consent_json(&c)),
        _ => problem(404, "UK.OBIE.Resource.NotFound", "no such consent"),
    }
}

/// `DELETE .../account-access-consents/{id}`: the TPP withdraws its consent.
async fn delete_consent(
    bank: web::Data<Bank>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(client_id) = bank.tpp_client(&req).await else {
        return problem(
            401,
            "UK.OBIE.Unauthorized",
            "an active access token with the accounts scope is required",
        );
    };
    match bank.consent(&path) {
        Some(c) if c.client_id == client_id => match bank.revoke(&c.consent_id).await {
            Ok(()) => HttpResponse::NoContent().finish(),
            Err(_) => problem(503, "UK.OBIE.UnexpectedError", "try again later"),
        },
        _ => problem(404, "UK.OBIE.Resource.NotFound", "no such consent"),
    }
}

/// `GET /internal/intents/{id}`: the consent service's intent look-up for
/// Strongroom (docs/hooks.md §3).
async fn intent(bank: web::Data<Bank>, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), bank.cfg.service_token.as_bytes()));
    if !ok {
        return problem(401, "UK.OBIE.Unauthorized", "service token required");
    }
    match bank.consent(&path) {
        Some(c) => HttpResponse::Ok().json(json!({
            "consent_id": c.consent_id, "client_id": c.client_id, "status": c.status,
        })),
        None => problem(404, "UK.OBIE.Resource.NotFound", "no such consent"),
    }
}

fn bearer_is(req: &HttpRequest, expected: &str) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()))
}

/// `POST /internal/token-claims`: the token-claims hook (docs/hooks.md
/// §6a). Adds the customer's segment to the id_token, their name to
/// userinfo, and the consent's permissions and status to introspection.
async fn token_claims(bank: web::Data<Bank>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if !bearer_is(&req, &bank.cfg.service_token) {
        return problem(401, "UK.OBIE.Unauthorized", "service token required");
    }
    let Ok(q) = serde_json::from_slice::<Value>(&body) else {
        return problem(400, "UK.OBIE.Field.Invalid", "a JSON body is required");
    };
    let user = q["sub"].as_str().and_then(|s| bank.user_by_sub(s));
    let consent = q["consent_id"].as_str().and_then(|c| bank.consent(c));
    let (Some(user), Some(consent)) = (user, consent) else {
        return HttpResponse::NoContent().finish();
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "id_token": {"customer_segment": "retail"},
            "userinfo": {"name": user.name},
            "introspection": {
                "permissions": consent.permissions,
                "consent_status": consent.status,
            },
        }))
}

/// The UK OB accounts path.
pub const ACCOUNTS_PATH: &str = "/open-banking/v3.1/aisp/accounts";

/// RFC 9440 `Client-Cert`: the client certificate the bank's TLS front end
/// saw, as a structured-field byte sequence (`:base64 DER:`). The demo
/// bank listens on plain HTTP, so in the demo the TPP's request carries it
/// as a TLS-terminating gateway would add it; a real gateway sets it
/// itself and never passes one on from outside.
pub const CLIENT_CERT_HEADER: &str = "client-cert";

/// `GET /open-banking/v3.1/aisp/accounts`: the accounts the customer shared
/// under the consent of the TPP's access token. The token must be active,
/// for the accounts scope and a consent of this TPP that is Authorised;
/// a certificate-bound token (RFC 8705 §3, `cnf.x5t#S256`) must come with
/// the certificate it is bound to.
async fn accounts(bank: web::Data<Bank>, req: HttpRequest) -> HttpResponse {
    let Some(t) = bank.tpp_token(&req).await else {
        return problem(
            401,
            "UK.OBIE.Unauthorized",
            "an active access token with the accounts scope is required",
        );
    };
    if let Some(x5t) = t["cnf"]["x5t#S256"].as_str() {
        use base64::Engine as _;
        let presented = req
            .headers()
            .get(CLIENT_CERT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix(':')?.strip_suffix(':'))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|der| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der).as_ref())
            });
        if presented.as_deref() != Some(x5t) {
            return problem(
                401,
                "UK.OBIE.Unauthorized",
                "the token is bound to a client certificate that was not presented",
            );
        }
    }
    let consent = t["consent_id"].as_str().and_then(|c| bank.consent(c));
    let Some(consent) = consent.filter(|c| {
        c.status == "Authorised" && t["client_id"].as_str() == Some(c.client_id.as_str())
    }) else {
        return problem(
            403,
            "UK.OBIE.Resource.InvalidConsentStatus",
            "the token's consent is not an authorised consent of this TPP",
        );
    };
    let sub = consent.sub.clone().unwrap_or_default();
    let list: Vec<Value> = consent
        .accounts
        .iter()
        .map(|a| {
            json!({
                "AccountId": a,
                "Currency": "GBP",
                "AccountType": "Personal",
                "Nickname": bank.account_name(&sub, a),
            })
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "Data": {"Account": list},
            "Links": {"Self": ACCOUNTS_PATH},
            "Meta": {"TotalPages": 1},
        }))
}

/// `POST /internal/revocations`: Strongroom's revocation webhook
/// (docs/hooks.md §7a); the notice is recorded for `GET`.
async fn revocation_notice(
    bank: web::Data<Bank>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if !bearer_is(&req, &bank.cfg.webhook_token) {
        return problem(401, "UK.OBIE.Unauthorized", "webhook token required");
    }
    let Ok(n) = serde_json::from_slice::<RevocationNotice>(&body) else {
        return problem(400, "UK.OBIE.Field.Invalid", "not a revocation notice");
    };
    tracing::info!(consent_id = %n.consent_id, token_type = %n.token_type, "a TPP revoked a token under a consent");
    if let (Ok(mut v), Ok(j)) = (bank.notices.lock(), serde_json::to_value(&n)) {
        v.push(j);
    }
    HttpResponse::NoContent().finish()
}

/// `GET /internal/revocations`: the notices received (service token).
async fn revocation_notices(bank: web::Data<Bank>, req: HttpRequest) -> HttpResponse {
    if !bearer_is(&req, &bank.cfg.webhook_token) {
        return problem(401, "UK.OBIE.Unauthorized", "webhook token required");
    }
    let v = bank.notices.lock().map(|v| v.clone()).unwrap_or_default();
    HttpResponse::Ok().json(json!({ "notices": v }))
}

// ---------------------------------------------------------------- hooks

#[derive(Deserialize)]
struct HandoffQuery {
    #[serde(default)]
    handoff: String,
}

/// The sign-in form of the login hook; `username` is kept after a wrong
/// password.
fn login_form(handoff: &str, tpp: &str, username: &str, error: Option<&str>) -> String {
    format!(
        "<p>Sign in to your bank to share information with <strong>{tpp}</strong>.</p>{err}\
         <form method=\"post\" action=\"/hooks/login\">\
         <input type=\"hidden\" name=\"handoff\" value=\"{h}\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{u}\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\" required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <div class=\"actions\">\
         <button type=\"submit\" class=\"primary\" name=\"action\" value=\"login\">Sign in</button>\
         <button type=\"submit\" class=\"secondary\" name=\"action\" value=\"cancel\" formnovalidate>\
         Cancel<span class=\"vh\"> and go back to {tpp}</span></button>\
         </div></form>",
        tpp = esc(tpp),
        err = error.map(alert).unwrap_or_default(),
        h = esc(handoff),
        u = esc(username),
    )
}

/// `GET /hooks/login?handoff=…`: the bank's login page.
async fn login_page(bank: web::Data<Bank>, q: web::Query<HandoffQuery>) -> HttpResponse {
    match bank.open_handoff(&q.handoff, Purpose::Login) {
        Ok(h) => Page::new(
            "Sign in",
            login_form(
                &q.handoff,
                h.tpp_name(),
                h.login_hint.as_deref().unwrap_or(""),
                None,
            ),
        )
        .through_strongroom(&h)
        .respond(),
        Err(e) => Page::problem("Sign in", StatusCode::BAD_REQUEST, e).respond(),
    }
}

/// `POST /hooks/login`: checks the password, sends the customer back.
async fn login_submit(bank: web::Data<Bank>, body: web::Bytes) -> HttpResponse {
    let f = form_pairs(&body);
    let token = field(&f, "handoff");
    let h = match bank.open_handoff(token, Purpose::Login) {
        Ok(h) => h,
        Err(e) => return Page::problem("Sign in", StatusCode::BAD_REQUEST, e).respond(),
    };
    let outcome = if field(&f, "action") == "cancel" {
        None
    } else {
        let username = field(&f, "username");
        match bank.authenticate(username, field(&f, "password")) {
            Some(u) => Some(u.sub.clone()),
            None => {
                return Page::new(
                    "Sign in",
                    login_form(
                        token,
                        h.tpp_name(),
                        username,
                        Some("The username or password is not correct. Check them and try again."),
                    ),
                )
                .through_strongroom(&h)
                .respond();
            }
        }
    };
    if !bank.spend_handoff(&h) {
        return Page::problem(
            "Sign in",
            StatusCode::BAD_REQUEST,
            "This sign-in was already used. Go back to the app you came from and start again.",
        )
        .respond();
    }
    let url = bank.result_url(&h, |r| match outcome {
        Some(sub) => {
            r.sub = Some(sub);
            r.acr = Some(SCA_ACR.into());
            r.amr = vec!["pwd".into(), "otp".into()];
            r.auth_time = Some(now());
        }
        None => r.error = Some("access_denied".into()),
    });
    match url {
        Ok(u) => redirect(&u),
        Err(e) => {
            tracing::error!(error = %e, "sealing a login result failed");
            Page::problem(
                "Sign in",
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong at the bank. Try again later.",
            )
            .respond()
        }
    }
}

/// `GET /hooks/consent?handoff=…`: permissions, expiry and accounts,
/// approve or deny.
async fn consent_page(bank: web::Data<Bank>, q: web::Query<HandoffQuery>) -> HttpResponse {
    const TITLE: &str = "Share your account information";
    let h = match bank.open_handoff(&q.handoff, Purpose::Consent) {
        Ok(h) => h,
        Err(e) => return Page::problem(TITLE, StatusCode::BAD_REQUEST, e).respond(),
    };
    let (Some(sub), Some(intent)) = (h.sub.as_deref(), h.intent_id.as_deref()) else {
        return Page::problem(TITLE, StatusCode::BAD_REQUEST, "No consent was named.").respond();
    };
    let (Some(user), Some(c)) = (bank.user_by_sub(sub), bank.consent(intent)) else {
        return Page::problem(TITLE, StatusCode::NOT_FOUND, "This consent does not exist.")
            .respond();
    };
    let perms: String = c.permissions.iter().map(|p| permission_item(p)).collect();
    let accts: String = user
        .accounts
        .iter()
        .enumerate()
        .map(|(i, (id, name))| {
            format!(
                "<li><label class=\"choice\" for=\"account-{i}\">\
                 <input type=\"checkbox\" id=\"account-{i}\" name=\"accounts\" value=\"{}\" checked> {}</label></li>",
                esc(id),
                esc(name)
            )
        })
        .collect();
    let tpp = esc(h.tpp_name());
    Page::new(
        TITLE,
        format!(
            "<p>{name}, <strong>{tpp}</strong> would like to:</p><ul id=\"permissions\">{perms}</ul>\
             <h2>For how long</h2><p id=\"expiry\">{expiry}</p>\
             <form method=\"post\" action=\"/hooks/consent\"><input type=\"hidden\" name=\"handoff\" value=\"{h}\">\
             <fieldset><legend>Accounts to share with {tpp}</legend>\
             <ul class=\"plain\" id=\"accounts\">{accts}</ul></fieldset>\
             <p>You can revoke this access at any time in <a href=\"/my/consents\">your consents</a>. \
             Consent reference <span class=\"code\">{cid}</span>.</p>\
             <div class=\"actions\">\
             <button type=\"submit\" class=\"primary\" name=\"action\" value=\"approve\">Approve</button>\
             <button type=\"submit\" class=\"secondary\" name=\"action\" value=\"deny\">Deny</button>\
             </div></form>",
            name = esc(&user.name),
            expiry = esc(&expiry_words(c.expiration.as_deref())),
            cid = esc(&c.consent_id),
            h = esc(&q.handoff),
        ),
    )
    .through_strongroom(&h)
    .respond()
}

/// `POST /hooks/consent`: records the decision, sends the customer back.
async fn consent_submit(bank: web::Data<Bank>, body: web::Bytes) -> HttpResponse {
    const TITLE: &str = "Share your account information";
    let f = form_pairs(&body);
    let h = match bank.open_handoff(field(&f, "handoff"), Purpose::Consent) {
        Ok(h) => h,
        Err(e) => return Page::problem(TITLE, StatusCode::BAD_REQUEST, e).respond(),
    };
    let (Some(sub), Some(intent)) = (h.sub.clone(), h.intent_id.clone()) else {
        return Page::problem(TITLE, StatusCode::BAD_REQUEST, "No consent was named.").respond();
    };
    let Some(user) = bank.user_by_sub(&sub) else {
        return Page::problem(TITLE, StatusCode::BAD_REQUEST, "Unknown customer.").respond();
    };
    match bank.consent(&intent) {
        Some(c) if c.status == "AwaitingAuthorisation" && c.client_id == h.client_id => {}
        _ => {
            return Page::problem(
                TITLE,
                StatusCode::CONFLICT,
                "This consent cannot be authorised any more.",
            )
            .respond();
        }
    }
    let approve = field(&f, "action") == "approve";
    let own: Vec<String> = user.accounts.iter().map(|(id, _)| id.clone()).collect();
    let accounts: Vec<String> = f
        .iter()
        .filter(|(k, v)| k == "accounts" && own.contains(v))
        .map(|(_, v)| v.clone())
        .collect();
    if approve && accounts.is_empty() {
        // The hand-off is not spent: the customer goes back and chooses.
        return Page::new(
            TITLE,
            format!(
                "{}<p><a href=\"/hooks/consent?handoff={}\">Choose the accounts to share</a></p>",
                alert("Choose at least one account to share, or deny."),
                esc(
                    &url::form_urlencoded::byte_serialize(field(&f, "handoff").as_bytes())
                        .collect::<String>()
                )
            ),
        )
        .status(StatusCode::BAD_REQUEST)
        .respond();
    }
    if !bank.spend_handoff(&h) {
        return Page::problem(
            TITLE,
            StatusCode::BAD_REQUEST,
            "This consent page was already used. Go back to the app you came from and start again.",
        )
        .respond();
    }
    bank.set_status(
        &intent,
        if approve { "Authorised" } else { "Rejected" },
        Some((
            &sub,
            h.tpp_name(),
            if approve {
                accounts.clone()
            } else {
                Vec::new()
            },
        )),
    );
    let name = user.name.clone();
    let url = bank.result_url(&h, |r| {
        if approve {
            r.status = Some("approved".into());
            r.consent_id = Some(intent.clone());
            r.accounts = accounts;
            r.claims.insert("name".into(), name.into());
        } else {
            r.status = Some("denied".into());
        }
    });
    match url {
        Ok(u) => redirect(&u),
        Err(e) => {
            tracing::error!(error = %e, "sealing a consent result failed");
            Page::problem(
                TITLE,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong at the bank. Try again later.",
            )
            .respond()
        }
    }
}

// ---------------------------------------------------------------- customer

const SESSION_COOKIE: &str = "demobank_session";
const MY_TITLE: &str = "Your consents";

fn session_sub(bank: &Bank, req: &HttpRequest) -> Option<String> {
    let c = req.cookie(SESSION_COOKIE)?;
    bank.sessions.lock().ok()?.get(c.value()).cloned()
}

/// Where `/my/login` may send the customer after signing in.
const MY_PAGES: [&str; 2] = ["/my/consents", ciba::PHONE_PATH];

/// The customer's sign-in form, returning to `next` (one of [`MY_PAGES`]).
fn my_login_form(intro: &str, next: &str, username: &str, error: Option<&str>) -> String {
    format!(
        "<p>{intro}</p>{err}\
         <form method=\"post\" action=\"/my/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{u}\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\" required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <div class=\"actions\"><button type=\"submit\" class=\"primary\">Sign in</button></div></form>",
        intro = esc(intro),
        next = esc(next),
        err = error.map(alert).unwrap_or_default(),
        u = esc(username),
    )
}

const MY_CONSENTS_INTRO: &str =
    "Sign in to see which apps can access your accounts, and revoke their access.";

/// One consent on /my/consents.
fn consent_card(bank: &Bank, sub: &str, c: &Consent) -> String {
    let tpp = c.tpp_name.as_deref().unwrap_or(&c.client_id);
    let perms: String = c.permissions.iter().map(|p| permission_item(p)).collect();
    let accounts: String = if c.accounts.is_empty() {
        "<dd>None</dd>".into()
    } else {
        format!(
            "<dd><ul>{}</ul></dd>",
            c.accounts
                .iter()
                .map(|a| format!("<li>{}</li>", esc(&bank.account_name(sub, a))))
                .collect::<String>()
        )
    };
    let status = match c.status.as_str() {
        "Authorised" => "Active (Authorised)",
        "Revoked" => "Revoked",
        "Rejected" => "Denied (Rejected)",
        other => other,
    };
    let button = if c.status == "Authorised" {
        format!(
            "<form method=\"post\" action=\"/my/consents/{id}/revoke\">\
             <button type=\"submit\" class=\"secondary\">Revoke<span class=\"vh\"> access for {tpp} (consent {idt})</span></button></form>",
            id = esc(
                &url::form_urlencoded::byte_serialize(c.consent_id.as_bytes()).collect::<String>()
            ),
            tpp = esc(tpp),
            idt = esc(&c.consent_id),
        )
    } else {
        String::new()
    };
    format!(
        "<li class=\"card\"><h2>{tpp}</h2><dl>\
         <dt>Can</dt><dd><ul>{perms}</ul></dd>\
         <dt>Accounts</dt>{accounts}\
         <dt>For how long</dt><dd>{until}</dd>\
         <dt>Status</dt><dd class=\"status\">{status}</dd>\
         <dt>Consent reference</dt><dd><span class=\"code\">{id}</span></dd></dl>{button}</li>",
        tpp = esc(tpp),
        until = esc(&expiry_words(c.expiration.as_deref())),
        status = esc(status),
        id = esc(&c.consent_id),
    )
}

/// `GET /my/consents`: the customer's consents, with revoke buttons.
async fn my_consents(bank: web::Data<Bank>, req: HttpRequest) -> HttpResponse {
    let Some(sub) = session_sub(&bank, &req) else {
        return Page::new(
            MY_TITLE,
            my_login_form(MY_CONSENTS_INTRO, "/my/consents", "", None),
        )
        .respond();
    };
    let mut list: Vec<Consent> = bank
        .consents
        .lock()
        .map(|m| {
            m.values()
                .filter(|c| c.sub.as_deref() == Some(&sub))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    list.sort_by_key(|c| (c.created_at, c.consent_id.clone()));
    let name = bank.user_by_sub(&sub).map_or("", |u| u.name.as_str());
    let body = if list.is_empty() {
        format!(
            "<p>{}, no app has asked for access to your accounts yet.</p>",
            esc(name)
        )
    } else {
        format!(
            "<p>{}, these apps asked for access to your accounts.</p><ul class=\"plain\">{}</ul>\
             <p><a href=\"/my/phone\">Requests waiting for your approval</a></p>",
            esc(name),
            list.iter()
                .map(|c| consent_card(&bank, &sub, c))
                .collect::<String>()
        )
    };
    Page::new(MY_TITLE, body).respond()
}

/// `POST /my/login`.
async fn my_login(bank: web::Data<Bank>, body: web::Bytes) -> HttpResponse {
    let f = form_pairs(&body);
    let username = field(&f, "username");
    let next = MY_PAGES
        .into_iter()
        .find(|p| *p == field(&f, "next"))
        .unwrap_or("/my/consents");
    let Some(u) = bank.authenticate(username, field(&f, "password")) else {
        let (title, intro) = if next == ciba::PHONE_PATH {
            (ciba::PHONE_TITLE, ciba::PHONE_INTRO)
        } else {
            (MY_TITLE, MY_CONSENTS_INTRO)
        };
        return Page::new(
            title,
            my_login_form(
                intro,
                next,
                username,
                Some("The username or password is not correct. Check them and try again."),
            ),
        )
        .respond();
    };
    let sid = random_token(32);
    if let Ok(mut s) = bank.sessions.lock() {
        s.insert(sid.clone(), u.sub.clone());
    }
    let cookie = actix_web::cookie::Cookie::build(SESSION_COOKIE, sid)
        .path("/my")
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Strict)
        .finish();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie)
        .finish()
}

/// `POST /my/consents/{id}/revoke`: revokes at Strongroom, then here.
async fn my_revoke(
    bank: web::Data<Bank>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(sub) = session_sub(&bank, &req) else {
        return redirect("/my/consents");
    };
    match bank.consent(&path) {
        Some(c) if c.sub.as_deref() == Some(&sub) && c.status == "Authorised" => {
            match bank.revoke(&c.consent_id).await {
                Ok(()) => redirect("/my/consents"),
                Err(e) => {
                    tracing::warn!(error = %e, "revocation at Strongroom failed");
                    Page::new(
                        MY_TITLE,
                        format!(
                            "{}<p><a href=\"/my/consents\">Back to your consents</a></p>",
                            alert(
                                "The consent could not be revoked right now. Try again in a minute."
                            )
                        ),
                    )
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .respond()
                }
            }
        }
        _ => redirect("/my/consents"),
    }
}

/// `GET /favicon.svg`.
async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(pages::FAVICON)
}

/// Pages that do not exist.
async fn not_found() -> HttpResponse {
    Page::new(
        "Page not found",
        "<p>There is no page at this address. See <a href=\"/my/consents\">your consents</a>.</p>"
            .into(),
    )
    .status(StatusCode::NOT_FOUND)
    .respond()
}

/// Registers the bank's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(CONSENTS_PATH, web::post().to(create_consent))
        .route(
            &format!("{CONSENTS_PATH}/{{id}}"),
            web::get().to(get_consent),
        )
        .route(
            &format!("{CONSENTS_PATH}/{{id}}"),
            web::delete().to(delete_consent),
        )
        .route(ACCOUNTS_PATH, web::get().to(accounts))
        .route("/internal/intents/{id}", web::get().to(intent))
        .route("/internal/token-claims", web::post().to(token_claims))
        .route("/internal/revocations", web::post().to(revocation_notice))
        .route("/internal/revocations", web::get().to(revocation_notices))
        .route("/hooks/login", web::get().to(login_page))
        .route("/hooks/login", web::post().to(login_submit))
        .route("/hooks/consent", web::get().to(consent_page))
        .route("/hooks/consent", web::post().to(consent_submit))
        .route("/my/consents", web::get().to(my_consents))
        .route("/my/login", web::post().to(my_login))
        .route("/my/consents/{id}/revoke", web::post().to(my_revoke))
        .route("/favicon.svg", web::get().to(favicon))
        .configure(ciba::configure)
        .default_service(web::to(not_found));
}

/// Starts the bank on `listener` (plain HTTP: put TLS in front in any real
/// deployment).
pub fn serve(
    bank: Bank,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(bank);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .configure(configure)
    })
    .workers(1)
    .listen(listener)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::{TestRequest, call_service, init_service, read_body};

    const ISSUER: &str = "https://op.example";

    fn bank() -> Bank {
        Bank::new(BankConfig::demo(ISSUER)).unwrap()
    }

    /// A hand-off as Strongroom seals it (docs/hooks.md §4).
    fn handoff(purpose: &str, extra: Value) -> String {
        let t = now();
        let mut v = json!({
            "iss": ISSUER, "aud": "demo-bank", "iat": t, "exp": t + 60, "jti": random_token(8),
            "sid": "sid-1", "purpose": purpose,
            "return_uri": format!("{ISSUER}/interaction/i1/hook/{purpose}"),
            "client_id": "tpp-1", "client_name": "Acme <Budget>", "scope": ["openid", "accounts"],
            "redirect_uri": "https://tpp.example/cb",
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        hook::seal(&[0x42; 32], &v).unwrap()
    }

    fn csp_of(res: &actix_web::dev::ServiceResponse) -> String {
        res.headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    #[actix_web::test]
    async fn login_hook_round_trip_as_strongroom_sees_it() {
        let app = init_service(
            actix_web::App::new()
                .app_data(web::Data::new(bank()))
                .configure(configure),
        )
        .await;
        let h = handoff("login", json!({}));
        let q = url::form_urlencoded::byte_serialize(h.as_bytes()).collect::<String>();
        let res = call_service(
            &app,
            TestRequest::get()
                .uri(&format!("/hooks/login?handoff={q}"))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), 200);
        let csp = csp_of(&res);
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("form-action 'self' https://op.example https://tpp.example/cb;"),
            "{csp}"
        );
        let html = String::from_utf8(read_body(res).await.to_vec()).unwrap();
        assert!(
            html.contains("Acme &lt;Budget&gt;"),
            "the TPP's name, escaped: {html}"
        );
        assert!(html.contains("<label for=\"password\">"), "{html}");

        let form = |pwd: &str| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("handoff", &h)
                .append_pair("username", "mia")
                .append_pair("password", pwd)
                .append_pair("action", "login")
                .finish()
        };
        let post = |body: String| {
            TestRequest::post()
                .uri("/hooks/login")
                .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
                .set_payload(body)
                .to_request()
        };
        let res = call_service(&app, post(form("wrong"))).await;
        assert_eq!(res.status(), 200);
        let html = String::from_utf8(read_body(res).await.to_vec()).unwrap();
        assert!(
            html.contains("role=\"alert\"") && html.contains("value=\"mia\""),
            "{html}"
        );

        let res = call_service(&app, post(form("correct horse"))).await;
        assert_eq!(res.status(), 303);
        let loc = res
            .headers()
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            loc.starts_with(&format!("{ISSUER}/interaction/i1/hook/login?result=")),
            "{loc}"
        );
        let result = url::Url::parse(&loc)
            .unwrap()
            .query_pairs()
            .next()
            .unwrap()
            .1
            .into_owned();
        let r = hook::open(&[0x42; 32], &result).unwrap();
        assert_eq!(
            (
                &r["iss"],
                &r["aud"],
                &r["sid"],
                &r["purpose"],
                &r["sub"],
                &r["acr"]
            ),
            (
                &json!("demo-bank"),
                &json!(ISSUER),
                &json!("sid-1"),
                &json!("login"),
                &json!("cust-0001"),
                &json!(SCA_ACR)
            )
        );
        // The hand-off is spent.
        let res = call_service(&app, post(form("correct horse"))).await;
        assert_eq!(res.status(), 400);
    }

    #[actix_web::test]
    async fn foreign_expired_and_misdirected_handoffs_are_refused_without_a_5xx() {
        let app = init_service(
            actix_web::App::new()
                .app_data(web::Data::new(bank()))
                .configure(configure),
        )
        .await;
        let t = now();
        for bad in [
            "garbage".to_string(),
            String::new(),
            handoff("consent", json!({})),
            handoff("login", json!({"iss": "https://evil.example"})),
            handoff("login", json!({"aud": "other-bank"})),
            handoff("login", json!({"exp": t - 1})),
            handoff(
                "login",
                json!({"return_uri": "https://evil.example/interaction/x"}),
            ),
            hook::seal(&[0x43; 32], &json!({})).unwrap(),
        ] {
            let q = url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>();
            let res = call_service(
                &app,
                TestRequest::get()
                    .uri(&format!("/hooks/login?handoff={q}"))
                    .to_request(),
            )
            .await;
            assert_eq!(res.status(), 400, "{bad}");
            let html = String::from_utf8(read_body(res).await.to_vec()).unwrap();
            assert!(html.contains("role=\"alert\"") && !html.contains("name=\"password\""));
        }
        let res = call_service(&app, TestRequest::get().uri("/hooks/consent").to_request()).await;
        assert_eq!(res.status(), 400);
        let res = call_service(&app, TestRequest::get().uri("/nowhere").to_request()).await;
        assert_eq!(res.status(), 404);
        assert!(csp_of(&res).contains("form-action 'self'"));
    }

    #[test]
    fn revoke_buttons_are_named_in_context() {
        let b = bank();
        let c = Consent {
            consent_id: "urn-1".into(),
            client_id: "tpp-1".into(),
            status: "Authorised".into(),
            permissions: vec!["ReadBalances".into(), "ReadTransactionsCredits".into()],
            created_at: 0,
            updated_at: 0,
            sub: Some("cust-0001".into()),
            accounts: vec!["acc-1002".into()],
            expiration: Some("2027-03-12T00:00:00Z".into()),
            tpp_name: Some("Acme Budget".into()),
        };
        let html = consent_card(&b, "cust-0001", &c);
        assert!(
            html.contains(
                ">Revoke<span class=\"vh\"> access for Acme Budget (consent urn-1)</span></button>"
            ),
            "{html}"
        );
        assert!(html.contains("See your balances") && html.contains("(ReadTransactionsCredits)"));
        assert!(
            html.contains("Savings ••1002") && html.contains("12 March 2027"),
            "{html}"
        );
        let revoked = Consent {
            status: "Revoked".into(),
            ..c
        };
        assert!(!consent_card(&b, "cust-0001", &revoked).contains("<button"));
    }
}

//! A demo bank for Strongroom's consent bridge (docs/hooks.md, worked
//! example): its own login (argon2 password hashes), a consent store with a
//! UK Open Banking style account-access-consents API, the consent-service
//! intent look-up, the login and consent apps behind the hooks, and a page
//! where customers see and revoke their consents.
//!
//! Everything is in memory: restart the bank and its consents are gone.

pub mod walkthrough;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use consent_bridge::token::{decrypt, encrypt};
use consent_bridge::{Handoff, HookResult, Purpose};
use oauth_core::secret::{constant_time_eq, now, random_token};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    http: reqwest::Client,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} — Demo Bank</title>\
             <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}</style></head>\
             <body><h1>Demo Bank</h1><h2>{t}</h2>{body}</body></html>",
            t = esc(title)
        ))
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

    fn set_status(&self, id: &str, status: &str, sub: Option<&str>, accounts: Vec<String>) {
        if let Ok(mut m) = self.consents.lock()
            && let Some(c) = m.get_mut(id)
        {
            c.status = status.into();
            c.updated_at = now();
            if let Some(s) = sub {
                c.sub = Some(s.into());
                c.accounts = accounts;
            }
        }
    }

    /// The TPP's token, checked by introspection at Strongroom; returns its
    /// client_id when active and carrying the `accounts` scope.
    async fn tpp_client(&self, req: &HttpRequest) -> Option<String> {
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
        if v["active"] == true && scope_ok {
            v["client_id"].as_str().map(str::to_string)
        } else {
            None
        }
    }

    /// A hand-off from Strongroom: decrypted, addressed to us, fresh, once.
    fn open_handoff(&self, token: &str, purpose: Purpose) -> Result<Handoff, &'static str> {
        let v = decrypt(&self.cfg.shared_secret, token).map_err(|_| "invalid hand-off")?;
        let h: Handoff = serde_json::from_value(v).map_err(|_| "invalid hand-off")?;
        let t = now();
        if h.iss != self.cfg.strongroom_url || h.aud != self.cfg.issuer || h.purpose != purpose {
            return Err("hand-off not meant for this bank");
        }
        if h.exp <= t {
            return Err("this sign-in link has expired");
        }
        if !h
            .return_uri
            .starts_with(&format!("{}/interaction/", self.cfg.strongroom_url))
        {
            return Err("invalid return address");
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
        let t = now();
        let mut r = HookResult {
            iss: self.cfg.issuer.clone(),
            aud: Value::String(self.cfg.strongroom_url.clone()),
            iat: t,
            exp: t + self.cfg.result_lifetime_secs,
            jti: random_token(16),
            sid: h.sid.clone(),
            purpose: h.purpose,
            error: None,
            sub: None,
            acr: None,
            amr: Vec::new(),
            auth_time: None,
            status: None,
            consent_id: None,
            scope: None,
            accounts: Vec::new(),
            claims: Default::default(),
        };
        fill(&mut r);
        let token = encrypt(&self.cfg.shared_secret, &r).map_err(|e| e.to_string())?;
        let mut url = url::Url::parse(&h.return_uri).map_err(|e| e.to_string())?;
        url.query_pairs_mut().append_pair("result", &token);
        Ok(url.to_string())
    }

    /// Revokes at Strongroom first (so no token outlives the consent), then here.
    async fn revoke(&self, id: &str) -> Result<(), String> {
        let res = self
            .http
            .post(format!(
                "{}/bank/consents/{}/revoke",
                self.cfg.strongroom_url,
                url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            ))
            .bearer_auth(&self.cfg.bank_api_token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("Strongroom answered {}", res.status()));
        }
        self.set_status(id, "Revoked", None, Vec::new());
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
}

fn consent_json(c: &Consent) -> Value {
    json!({
        "Data": {
            "ConsentId": c.consent_id,
            "Status": c.status,
            "Permissions": c.permissions,
            "CreationDateTime": c.created_at,
            "StatusUpdateDateTime": c.updated_at,
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
    if body.data.permissions.is_empty() {
        return problem(
            400,
            "UK.OBIE.Field.Invalid",
            "Data.Permissions must not be empty",
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
    let Ok(n) = serde_json::from_slice::<consent_bridge::RevocationNotice>(&body) else {
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
    handoff: String,
}

fn login_form(action: &str, handoff: &str, client: &str, error: Option<&str>) -> String {
    format!(
        "<p>Sign in to share information with <strong>{client}</strong>.</p>{err}\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"handoff\" value=\"{h}\">\
         <label>Username <input name=\"username\" autocomplete=\"username\"></label><br>\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label><br>\
         <button name=\"action\" value=\"login\">Sign in</button> \
         <button name=\"action\" value=\"cancel\">Cancel</button></form>",
        client = esc(client),
        err = error
            .map(|e| format!("<p role=\"alert\">{}</p>", esc(e)))
            .unwrap_or_default(),
        action = esc(action),
        h = esc(handoff),
    )
}

/// `GET /hooks/login?handoff=…`: the bank's login page.
async fn login_page(bank: web::Data<Bank>, q: web::Query<HandoffQuery>) -> HttpResponse {
    match bank.open_handoff(&q.handoff, Purpose::Login) {
        Ok(h) => page(
            "Sign in",
            &login_form(
                "/hooks/login",
                &q.handoff,
                h.client_name.as_deref().unwrap_or(&h.client_id),
                None,
            ),
        ),
        Err(e) => page("Sign in", &format!("<p role=\"alert\">{}</p>", esc(e))),
    }
}

/// `POST /hooks/login`: checks the password, sends the customer back.
async fn login_submit(bank: web::Data<Bank>, body: web::Bytes) -> HttpResponse {
    let f = form_pairs(&body);
    let token = field(&f, "handoff");
    let h = match bank.open_handoff(token, Purpose::Login) {
        Ok(h) => h,
        Err(e) => return page("Sign in", &format!("<p role=\"alert\">{}</p>", esc(e))),
    };
    let client = h.client_name.clone().unwrap_or_else(|| h.client_id.clone());
    let outcome = if field(&f, "action") == "cancel" {
        None
    } else {
        match bank.authenticate(field(&f, "username"), field(&f, "password")) {
            Some(u) => Some(u.sub.clone()),
            None => {
                return page(
                    "Sign in",
                    &login_form(
                        "/hooks/login",
                        token,
                        &client,
                        Some("The username or password is not correct."),
                    ),
                );
            }
        }
    };
    if !bank.spend_handoff(&h) {
        return page(
            "Sign in",
            "<p role=\"alert\">This sign-in was already used.</p>",
        );
    }
    let url = bank.result_url(&h, |r| match outcome {
        Some(sub) => {
            let t = now();
            r.sub = Some(sub);
            r.acr = Some(SCA_ACR.into());
            r.amr = vec!["pwd".into(), "otp".into()];
            r.auth_time = Some(t);
        }
        None => r.error = Some("access_denied".into()),
    });
    match url {
        Ok(u) => redirect(&u),
        Err(_) => page("Sign in", "<p role=\"alert\">Something went wrong.</p>"),
    }
}

/// `GET /hooks/consent?handoff=…`: permissions and accounts, approve or deny.
async fn consent_page(bank: web::Data<Bank>, q: web::Query<HandoffQuery>) -> HttpResponse {
    let h = match bank.open_handoff(&q.handoff, Purpose::Consent) {
        Ok(h) => h,
        Err(e) => return page("Consent", &format!("<p role=\"alert\">{}</p>", esc(e))),
    };
    let (Some(sub), Some(intent)) = (h.sub.as_deref(), h.intent_id.as_deref()) else {
        return page("Consent", "<p role=\"alert\">No consent was named.</p>");
    };
    let (Some(user), Some(c)) = (bank.user_by_sub(sub), bank.consent(intent)) else {
        return page("Consent", "<p role=\"alert\">Unknown consent.</p>");
    };
    let perms: String = c
        .permissions
        .iter()
        .map(|p| format!("<li>{}</li>", esc(p)))
        .collect();
    let accts: String = user
        .accounts
        .iter()
        .map(|(id, name)| {
            format!(
                "<li><label><input type=\"checkbox\" name=\"accounts\" value=\"{}\" checked> {}</label></li>",
                esc(id),
                esc(name)
            )
        })
        .collect();
    page(
        "Share your account information",
        &format!(
            "<p>{name}, <strong>{client}</strong> asks to access:</p><ul id=\"permissions\">{perms}</ul>\
             <p>Consent <code>{cid}</code>. Choose the accounts to share:</p>\
             <form method=\"post\" action=\"/hooks/consent\"><input type=\"hidden\" name=\"handoff\" value=\"{h}\">\
             <ul id=\"accounts\">{accts}</ul>\
             <button name=\"action\" value=\"approve\">Approve</button> \
             <button name=\"action\" value=\"deny\">Deny</button></form>",
            name = esc(&user.name),
            client = esc(h.client_name.as_deref().unwrap_or(&h.client_id)),
            cid = esc(&c.consent_id),
            h = esc(&q.handoff),
        ),
    )
}

/// `POST /hooks/consent`: records the decision, sends the customer back.
async fn consent_submit(bank: web::Data<Bank>, body: web::Bytes) -> HttpResponse {
    let f = form_pairs(&body);
    let h = match bank.open_handoff(field(&f, "handoff"), Purpose::Consent) {
        Ok(h) => h,
        Err(e) => return page("Consent", &format!("<p role=\"alert\">{}</p>", esc(e))),
    };
    let (Some(sub), Some(intent)) = (h.sub.clone(), h.intent_id.clone()) else {
        return page("Consent", "<p role=\"alert\">No consent was named.</p>");
    };
    let Some(user) = bank.user_by_sub(&sub) else {
        return page("Consent", "<p role=\"alert\">Unknown customer.</p>");
    };
    match bank.consent(&intent) {
        Some(c) if c.status == "AwaitingAuthorisation" && c.client_id == h.client_id => {}
        _ => {
            return page(
                "Consent",
                "<p role=\"alert\">This consent cannot be authorised.</p>",
            );
        }
    }
    if !bank.spend_handoff(&h) {
        return page(
            "Consent",
            "<p role=\"alert\">This consent page was already used.</p>",
        );
    }
    let approve = field(&f, "action") == "approve";
    let own: Vec<String> = user.accounts.iter().map(|(id, _)| id.clone()).collect();
    let accounts: Vec<String> = f
        .iter()
        .filter(|(k, v)| k == "accounts" && own.contains(v))
        .map(|(_, v)| v.clone())
        .collect();
    if approve && accounts.is_empty() {
        return page(
            "Consent",
            "<p role=\"alert\">Choose at least one account.</p>",
        );
    }
    bank.set_status(
        &intent,
        if approve { "Authorised" } else { "Rejected" },
        Some(&sub),
        if approve {
            accounts.clone()
        } else {
            Vec::new()
        },
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
        Err(_) => page("Consent", "<p role=\"alert\">Something went wrong.</p>"),
    }
}

// ---------------------------------------------------------------- customer

const SESSION_COOKIE: &str = "demobank_session";

fn session_sub(bank: &Bank, req: &HttpRequest) -> Option<String> {
    let c = req.cookie(SESSION_COOKIE)?;
    bank.sessions.lock().ok()?.get(c.value()).cloned()
}

/// `GET /my/consents`: the customer's consents, with revoke buttons.
async fn my_consents(bank: web::Data<Bank>, req: HttpRequest) -> HttpResponse {
    let Some(sub) = session_sub(&bank, &req) else {
        return page(
            "Your consents",
            "<form method=\"post\" action=\"/my/login\">\
             <label>Username <input name=\"username\"></label><br>\
             <label>Password <input type=\"password\" name=\"password\"></label><br>\
             <button>Sign in</button></form>",
        );
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
    list.sort_by_key(|c| c.created_at);
    let rows: String = list
        .iter()
        .map(|c| {
            let button = if c.status == "Authorised" {
                format!(
                    "<form method=\"post\" action=\"/my/consents/{id}/revoke\"><button>Revoke</button></form>",
                    id = esc(&c.consent_id)
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"status\">{}</td><td>{}</td></tr>",
                esc(&c.consent_id),
                esc(&c.client_id),
                esc(&c.permissions.join(", ")),
                esc(&c.accounts.join(", ")),
                esc(&c.status),
                button
            )
        })
        .collect();
    page(
        "Your consents",
        &format!(
            "<table><tr><th>Consent</th><th>Provider</th><th>Permissions</th><th>Accounts</th><th>Status</th><th></th></tr>{rows}</table>"
        ),
    )
}

/// `POST /my/login`.
async fn my_login(bank: web::Data<Bank>, body: web::Bytes) -> HttpResponse {
    let f = form_pairs(&body);
    let Some(u) = bank.authenticate(field(&f, "username"), field(&f, "password")) else {
        return page(
            "Your consents",
            "<p role=\"alert\">The username or password is not correct.</p>",
        );
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
        .insert_header((header::LOCATION, "/my/consents"))
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
                    page(
                        "Your consents",
                        "<p role=\"alert\">The consent could not be revoked right now; try again.</p>",
                    )
                }
            }
        }
        _ => redirect("/my/consents"),
    }
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
        .route("/my/consents/{id}/revoke", web::post().to(my_revoke));
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

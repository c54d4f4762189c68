//! The bank's side of decoupled journeys (CIBA, the CIBA hooks of docs/hooks.md): the
//! resolve and notify hooks Strongroom calls, the "phone" where a signed-in
//! customer sees the waiting requests as a bank's app would show them (the
//! TPP's name, logo, privacy policy, binding message, what is asked) and
//! approves or denies, and the call to Strongroom's decision API.
//!
//! The phone page works without script (reload to see new requests);
//! `/phone.js` (same origin, no inline script) polls
//! `/my/phone/pending.json` every 2 s and adds or removes requests without
//! touching the ones the customer is looking at.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Value, json};

use crate::hook::{self, CibaDecision, CibaNotice, ResolveRequest, now};
use crate::pages::{Page, alert, csp_source, esc, expiry_words, permission_item};
use crate::{Bank, DemoUser, SCA_ACR, bearer_is, field, form_pairs, redirect, session_sub};

/// The phone page.
pub const PHONE_PATH: &str = "/my/phone";
pub const PHONE_TITLE: &str = "Requests to approve";
pub const PHONE_INTRO: &str = "Sign in to see the requests waiting for your approval.";
/// How the customer authenticated on the phone: password, and the phone
/// itself as the (pretend) hardware-bound second factor.
pub const PHONE_AMR: [&str; 2] = ["pwd", "hwk"];
/// At most this many waiting requests per customer (older ones are dropped).
const MAX_PER_CUSTOMER: usize = 20;

/// Where a request stands at the bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneState {
    Waiting,
    /// A decision is on its way to Strongroom (a second click waits).
    Deciding,
    Approved,
    Denied,
    /// Strongroom said it expired, or was decided elsewhere, or is unknown.
    Closed,
}

/// One notified request, as the phone holds it.
#[derive(Debug, Clone)]
pub struct PhoneRequest {
    pub notice: CibaNotice,
    pub received_at: i64,
    pub state: PhoneState,
}

impl PhoneRequest {
    fn waiting(&self, t: i64) -> bool {
        self.state == PhoneState::Waiting && self.notice.expires_at > t
    }
}

/// Why a decision was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideError {
    /// No such request for this customer.
    NotFound,
    /// Already answered (here or elsewhere), or being answered.
    AlreadyDecided,
    Expired,
    /// Approving a consent needs at least one account.
    NoAccounts,
    /// The consent is not awaiting authorisation (or not this TPP's).
    ConsentUnavailable,
    /// Strongroom could not be reached or refused the token; nothing changed.
    Unavailable(String),
}

impl DecideError {
    fn message(&self) -> &'static str {
        match self {
            DecideError::NotFound => "This request does not exist, or is not yours.",
            DecideError::AlreadyDecided => "This request was already answered.",
            DecideError::Expired => {
                "This request has expired. Start again in the app that asked for it."
            }
            DecideError::NoAccounts => "Choose at least one account to share, or deny.",
            DecideError::ConsentUnavailable => {
                "The consent of this request cannot be authorised any more."
            }
            DecideError::Unavailable(_) => {
                "Your answer could not be sent right now. Try again in a minute."
            }
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            DecideError::NotFound => StatusCode::NOT_FOUND,
            DecideError::AlreadyDecided | DecideError::Expired => StatusCode::CONFLICT,
            DecideError::ConsentUnavailable => StatusCode::CONFLICT,
            DecideError::NoAccounts => StatusCode::BAD_REQUEST,
            DecideError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn hook_error(status: StatusCode, code: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"error": code, "error_description": description}))
}

/// Why a hint names no customer (docs/hooks.md, CIBA resolve hook), with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// `unknown_user_id` (404).
    UnknownUser,
    /// `invalid_request` (400): a hint the bank cannot use.
    InvalidRequest(&'static str),
}

impl ResolveError {
    pub fn code(&self) -> &'static str {
        match self {
            ResolveError::UnknownUser => "unknown_user_id",
            ResolveError::InvalidRequest(_) => "invalid_request",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ResolveError::UnknownUser => StatusCode::NOT_FOUND,
            ResolveError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn respond(&self) -> HttpResponse {
        let description = match self {
            ResolveError::UnknownUser => "no customer with this hint",
            ResolveError::InvalidRequest(d) => d,
        };
        hook_error(self.status(), self.code(), description)
    }
}

impl Bank {
    /// The customer a hint names (docs/hooks.md, CIBA resolve hook): `login_hint` is the
    /// customer's username or customer id; `id_token_hint` arrives as the
    /// `sub` Strongroom verified. The demo bank issues no login_hint_tokens.
    pub fn resolve_hint(&self, hint_type: &str, hint: &str) -> Result<&DemoUser, ResolveError> {
        let hint = hint.trim();
        if hint.is_empty() || hint.len() > 256 {
            return Err(ResolveError::InvalidRequest(
                "the hint is empty or too long",
            ));
        }
        let user = match hint_type {
            "login_hint" => self
                .users
                .iter()
                .map(|u| &u.cfg)
                .find(|u| u.username == hint || u.sub == hint),
            "id_token_hint" => self.user_by_sub(hint),
            "login_hint_token" => {
                return Err(ResolveError::InvalidRequest(
                    "this bank issues no login_hint_token: use login_hint",
                ));
            }
            _ => return Err(ResolveError::InvalidRequest("unknown hint_type")),
        };
        user.ok_or(ResolveError::UnknownUser)
    }

    /// Stores a notified request, once per handle (a retried notification
    /// changes nothing).
    pub fn store_notice(&self, n: CibaNotice) {
        let t = now();
        let Ok(mut m) = self.ciba.lock() else { return };
        m.retain(|_, r| r.notice.expires_at > t - 3600);
        if m.contains_key(&n.handle) {
            return;
        }
        let mut mine: Vec<(i64, String)> = m
            .values()
            .filter(|r| r.notice.sub == n.sub)
            .map(|r| (r.received_at, r.notice.handle.clone()))
            .collect();
        if mine.len() >= MAX_PER_CUSTOMER {
            mine.sort();
            for (_, h) in mine.iter().take(mine.len() + 1 - MAX_PER_CUSTOMER) {
                m.remove(h);
            }
        }
        m.insert(
            n.handle.clone(),
            PhoneRequest {
                notice: n,
                received_at: t,
                state: PhoneState::Waiting,
            },
        );
    }

    /// The customer's waiting requests, newest first.
    pub fn pending_for(&self, sub: &str) -> Vec<PhoneRequest> {
        let t = now();
        let mut v: Vec<PhoneRequest> = self
            .ciba
            .lock()
            .map(|m| {
                m.values()
                    .filter(|r| r.notice.sub == sub && r.waiting(t))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| (b.received_at, &b.notice.handle).cmp(&(a.received_at, &a.notice.handle)));
        v
    }

    pub fn phone_request(&self, handle: &str) -> Option<PhoneRequest> {
        self.ciba.lock().ok()?.get(handle).cloned()
    }

    fn set_phone_state(&self, handle: &str, state: PhoneState) {
        if let Ok(mut m) = self.ciba.lock()
            && let Some(r) = m.get_mut(handle)
        {
            r.state = state;
        }
    }

    /// The consent `id` becomes Authorised for `sub` with `accounts`, if it
    /// awaits authorisation and belongs to `client_id`; one lock, so two
    /// approvals cannot both succeed.
    fn authorise_consent(
        &self,
        id: &str,
        client_id: &str,
        sub: &str,
        tpp: &str,
        accounts: &[String],
    ) -> bool {
        let Ok(mut m) = self.consents.lock() else {
            return false;
        };
        match m.get_mut(id) {
            Some(c) if c.status == "AwaitingAuthorisation" && c.client_id == client_id => {
                c.status = "Authorised".into();
                c.updated_at = now();
                c.sub = Some(sub.into());
                c.tpp_name = Some(tpp.into());
                c.accounts = accounts.to_vec();
                true
            }
            _ => false,
        }
    }

    /// Undoes [`Bank::authorise_consent`] when Strongroom refused the decision.
    fn unauthorise_consent(&self, id: &str) {
        if let Ok(mut m) = self.consents.lock()
            && let Some(c) = m.get_mut(id)
        {
            c.status = "AwaitingAuthorisation".into();
            c.updated_at = now();
            c.sub = None;
            c.tpp_name = None;
            c.accounts.clear();
        }
    }

    /// The customer `sub` answers the request `handle` (the phone page's
    /// Approve and Deny): the bank's consent is updated as the redirect
    /// consent page does, and the decision token goes to Strongroom
    /// (docs/hooks.md, CIBA decision API). Nothing changes when Strongroom refuses it.
    pub async fn decide(
        &self,
        sub: &str,
        handle: &str,
        approve: bool,
        accounts: &[String],
    ) -> Result<PhoneState, DecideError> {
        let user = self.user_by_sub(sub).ok_or(DecideError::NotFound)?;
        // Claim the request: a second click finds it Deciding.
        let req = {
            let mut m = self.ciba.lock().map_err(|_| DecideError::NotFound)?;
            let r = m
                .get_mut(handle)
                .filter(|r| r.notice.sub == sub)
                .ok_or(DecideError::NotFound)?;
            if r.state != PhoneState::Waiting {
                return Err(DecideError::AlreadyDecided);
            }
            if r.notice.expires_at <= now() {
                return Err(DecideError::Expired);
            }
            r.state = PhoneState::Deciding;
            r.clone()
        };
        let release = |e: DecideError| {
            self.set_phone_state(handle, PhoneState::Waiting);
            e
        };
        let n = &req.notice;
        let mut consent = None;
        if approve && let Some(intent) = &n.intent_id {
            let own: Vec<&str> = user.accounts.iter().map(|(a, _)| a.as_str()).collect();
            let chosen: Vec<String> = accounts
                .iter()
                .filter(|a| own.contains(&a.as_str()))
                .cloned()
                .collect();
            if chosen.is_empty() {
                return Err(release(DecideError::NoAccounts));
            }
            if !self.authorise_consent(intent, &n.client_id, sub, n.tpp_name(), &chosen) {
                return Err(release(DecideError::ConsentUnavailable));
            }
            consent = Some((intent.clone(), chosen));
        }
        let undo = |e: DecideError| {
            if let Some((id, _)) = &consent {
                self.unauthorise_consent(id);
            }
            e
        };
        let mut token = CibaDecision::deny(
            handle,
            &self.cfg.issuer,
            &self.cfg.strongroom_url,
            self.cfg.result_lifetime_secs,
        );
        if approve {
            token = token.approve(sub, SCA_ACR, &PHONE_AMR, consent.clone());
        }
        let sealed = match hook::seal(&self.cfg.shared_secret, &token) {
            Ok(s) => s,
            Err(e) => return Err(release(undo(DecideError::Unavailable(e)))),
        };
        match self.post_decision(handle, &sealed).await {
            Ok(()) => {}
            Err(
                e @ (DecideError::AlreadyDecided | DecideError::Expired | DecideError::NotFound),
            ) => {
                // Strongroom will never take an answer to this one.
                self.set_phone_state(handle, PhoneState::Closed);
                return Err(undo(e));
            }
            Err(e) => return Err(release(undo(e))),
        }
        let state = if approve {
            PhoneState::Approved
        } else {
            if let Some(intent) = &n.intent_id
                && self.consent(intent).is_some_and(|c| {
                    c.status == "AwaitingAuthorisation" && c.client_id == n.client_id
                })
            {
                self.set_status(intent, "Rejected", Some((sub, n.tpp_name(), Vec::new())));
            }
            PhoneState::Denied
        };
        self.set_phone_state(handle, state);
        tracing::info!(handle, ?state, client_id = %n.client_id, "CIBA decision sent");
        Ok(state)
    }

    /// `POST {issuer}/bank/ciba/{handle}/decision` with the bank's service
    /// token, as for the other `/bank/...` calls (docs/hooks.md §7 and the CIBA decision API).
    async fn post_decision(&self, handle: &str, token: &str) -> Result<(), DecideError> {
        let res = self
            .http
            .post(
                self.bank_api_url(&["ciba", handle, "decision"])
                    .map_err(DecideError::Unavailable)?,
            )
            .bearer_auth(&self.cfg.bank_api_token)
            .json(&json!({ "result": token }))
            .send()
            .await
            .map_err(|e| DecideError::Unavailable(e.to_string()))?;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        match (status, body["error"].as_str()) {
            (200..=299, _) => Ok(()),
            (404, _) => Err(DecideError::NotFound),
            (409, Some("expired_token")) => Err(DecideError::Expired),
            (409, _) => Err(DecideError::AlreadyDecided),
            (s, e) => {
                tracing::warn!(status = s, error = ?e, "Strongroom refused a CIBA decision");
                Err(DecideError::Unavailable(format!("HTTP {s}")))
            }
        }
    }
}

/// `POST /internal/ciba/resolve`: the resolve hook (docs/hooks.md, CIBA resolve hook).
async fn resolve(bank: web::Data<Bank>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if !bearer_is(&req, &bank.cfg.ciba_service_token) {
        return hook_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "service token required",
        );
    }
    let Ok(q) = serde_json::from_slice::<ResolveRequest>(&body) else {
        return hook_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id, hint_type and hint are required",
        );
    };
    match bank.resolve_hint(&q.hint_type, &q.hint) {
        Ok(u) => {
            tracing::info!(client_id = %q.client_id, hint_type = %q.hint_type, "CIBA hint resolved");
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(json!({ "sub": u.sub }))
        }
        Err(e) => e.respond(),
    }
}

/// `POST /internal/ciba/notify`: the notify hook (docs/hooks.md, CIBA notify hook); the
/// bank's "push notification" is the request appearing on the phone page.
async fn notify(bank: web::Data<Bank>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if !bearer_is(&req, &bank.cfg.ciba_service_token) {
        return hook_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "service token required",
        );
    }
    let Ok(n) = serde_json::from_slice::<CibaNotice>(&body) else {
        return hook_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "handle, sub, client_id and expires_at are required",
        );
    };
    if n.handle.is_empty() || n.handle.len() > 256 || bank.user_by_sub(&n.sub).is_none() {
        return hook_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown customer or bad handle",
        );
    }
    tracing::info!(client_id = %n.client_id, "CIBA request waiting on the customer's phone");
    bank.store_notice(n);
    HttpResponse::NoContent().finish()
}

/// An id for the request's elements (the handle is arbitrary text).
fn dom_key(handle: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, handle.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The logo's CSP source, when it can be shown (https, nothing CSP reads).
fn logo_source(n: &CibaNotice) -> Option<String> {
    n.logo_uri.as_deref().and_then(csp_source)
}

fn https_link(uri: Option<&str>) -> Option<String> {
    let u = url::Url::parse(uri?).ok()?;
    (u.scheme() == "https" && u.host_str().is_some()).then(|| u.to_string())
}

/// A scope in words, for a request that names no consent.
fn scope_item(scope: &str, tpp: &str) -> String {
    match scope {
        "openid" => format!("<li>Confirm to {} who you are</li>", esc(tpp)),
        "accounts" => "<li>See your account information</li>".into(),
        "offline_access" => "<li>Keep access when you are not using it</li>".into(),
        other => format!("<li>Use <span class=\"code\">{}</span></li>", esc(other)),
    }
}

/// "14:05 UTC".
fn clock(unix: i64) -> String {
    let s = unix.rem_euclid(86_400);
    format!("{:02}:{:02} UTC", s / 3600, s % 3600 / 60)
}

fn expires_words(expires_at: i64, t: i64) -> String {
    let mins = (expires_at - t + 59).max(0) / 60;
    format!(
        "Answer within {} (by {})",
        if mins <= 1 {
            "a minute".to_string()
        } else {
            format!("{mins} minutes")
        },
        clock(expires_at)
    )
}

/// One waiting request on the phone, as a bank's app shows it.
pub fn request_card(bank: &Bank, user: &DemoUser, r: &PhoneRequest) -> String {
    let n = &r.notice;
    let key = dom_key(&n.handle);
    let tpp = esc(n.tpp_name());
    let logo = match logo_source(n) {
        Some(_) => format!(
            "<img src=\"{}\" alt=\"\" width=\"48\" height=\"48\">",
            esc(n.logo_uri.as_deref().unwrap_or_default())
        ),
        None => String::new(),
    };
    let binding = n
        .binding_message
        .as_deref()
        .map(|m| {
            format!(
                "<p class=\"binding\">Check this code matches: <strong>{}</strong>\
                 <small>Compare it with the code {tpp} shows you.</small></p>",
                esc(m)
            )
        })
        .unwrap_or_default();
    let consent = n.intent_id.as_deref().and_then(|i| bank.consent(i));
    let asks: String = match &consent {
        Some(c) => c.permissions.iter().map(|p| permission_item(p)).collect(),
        None => n
            .scope
            .iter()
            .map(|s| scope_item(s, n.tpp_name()))
            .collect(),
    };
    let details: String = n
        .authorization_details
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d["type"].as_str())
                .map(|t| format!("<li>Permission <span class=\"code\">{}</span></li>", esc(t)))
                .collect()
        })
        .unwrap_or_default();
    let mut dl = format!("<dt>{tpp} asks to</dt><dd><ul>{asks}{details}</ul></dd>");
    if let Some(c) = &consent {
        dl.push_str(&format!(
            "<dt>For how long</dt><dd>{}</dd><dt>Consent reference</dt><dd><span class=\"code\">{}</span></dd>",
            esc(&expiry_words(c.expiration.as_deref())),
            esc(&c.consent_id)
        ));
    }
    dl.push_str(&format!(
        "<dt>This request</dt><dd>{}</dd>",
        esc(&expires_words(n.expires_at, now()))
    ));
    let mut links = Vec::new();
    if let Some(p) = https_link(n.policy_uri.as_deref()) {
        links.push(format!(
            "<li><a href=\"{}\">{tpp} privacy policy</a></li>",
            esc(&p)
        ));
    }
    if let Some(p) = https_link(n.tos_uri.as_deref()) {
        links.push(format!(
            "<li><a href=\"{}\">{tpp} terms of service</a></li>",
            esc(&p)
        ));
    }
    let links = if links.is_empty() {
        String::new()
    } else {
        format!("<ul class=\"plain\">{}</ul>", links.concat())
    };
    let accounts = if consent.is_some() {
        let items: String = user
            .accounts
            .iter()
            .enumerate()
            .map(|(i, (id, name))| {
                format!(
                    "<li><label class=\"choice\" for=\"r{key}-a{i}\">\
                     <input type=\"checkbox\" id=\"r{key}-a{i}\" name=\"accounts\" value=\"{}\" checked> {}</label></li>",
                    esc(id),
                    esc(name)
                )
            })
            .collect();
        format!(
            "<fieldset><legend>Accounts to share with {tpp}</legend><ul class=\"plain\">{items}</ul></fieldset>"
        )
    } else {
        String::new()
    };
    let which = match n.binding_message.as_deref() {
        Some(m) => format!(" the request from {tpp} with code {}", esc(m)),
        None => format!(" the request from {tpp}"),
    };
    format!(
        "<li class=\"card\" id=\"r{key}\" data-handle=\"{h}\">\
         <div class=\"tpp\">{logo}<h2>{tpp}</h2></div>\
         <p>{tpp} asks to connect to your bank.</p>{binding}<dl>{dl}</dl>{links}\
         <form method=\"post\" action=\"{PHONE_PATH}/decision\">\
         <input type=\"hidden\" name=\"handle\" value=\"{h}\">{accounts}\
         <div class=\"actions\">\
         <button type=\"submit\" class=\"primary\" name=\"action\" value=\"approve\">Approve<span class=\"vh\">{which}</span></button>\
         <button type=\"submit\" class=\"secondary\" name=\"action\" value=\"deny\">Deny<span class=\"vh\">{which}</span></button>\
         </div></form></li>",
        h = esc(&n.handle),
    )
}

fn phone_login(username: &str, error: Option<&str>) -> HttpResponse {
    Page::new(
        PHONE_TITLE,
        crate::my_login_form(PHONE_INTRO, PHONE_PATH, username, error),
    )
    .respond()
}

/// `GET /my/phone`: the customer's waiting requests.
async fn phone(bank: web::Data<Bank>, req: HttpRequest) -> HttpResponse {
    let Some(sub) = session_sub(&bank, &req) else {
        return phone_login("", None);
    };
    let Some(user) = bank.user_by_sub(&sub) else {
        return phone_login("", None);
    };
    let list = bank.pending_for(&sub);
    let images: Vec<String> = {
        let mut v: Vec<String> = list.iter().filter_map(|r| logo_source(&r.notice)).collect();
        v.sort();
        v.dedup();
        v
    };
    // What was just decided, from the bank's own record (never from the URL's text).
    let decided =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("decided").cloned())
            .and_then(|h| bank.phone_request(&h))
            .filter(|r| r.notice.sub == sub);
    let done = match decided.as_ref().map(|r| (r.state, r.notice.tpp_name())) {
        Some((PhoneState::Approved, tpp)) => format!(
            "You approved the request from {tpp}. Go back to {tpp} to continue.",
            tpp = tpp
        ),
        Some((PhoneState::Denied, tpp)) => format!("You denied the request from {tpp}."),
        _ => String::new(),
    };
    let cards: String = list.iter().map(|r| request_card(&bank, user, r)).collect();
    let body = format!(
        "<p role=\"status\" id=\"phone-status\">{done}</p>\
         <p>{name}, apps you use ask here to connect to your bank. Approve only what you started yourself.</p>\
         <p id=\"phone-none\"{hidden}>No requests are waiting for you.</p>\
         <ul class=\"plain\" id=\"requests\" data-logos=\"{logos}\">{cards}</ul>\
         <nav aria-label=\"Your bank\"><ul><li><a href=\"{PHONE_PATH}\">Check for new requests</a></li>\
         <li><a href=\"/my/consents\">Your consents</a></li></ul></nav>",
        done = esc(&done),
        name = esc(&user.name),
        hidden = if list.is_empty() { "" } else { " hidden" },
        logos = esc(&images.join(" ")),
    );
    Page::new(PHONE_TITLE, body)
        .scripted("/phone.js", images)
        .respond()
}

/// `GET /my/phone/pending.json`: the same list for `/phone.js`, only ever
/// the signed-in customer's.
async fn pending_json(bank: web::Data<Bank>, req: HttpRequest) -> HttpResponse {
    let user = session_sub(&bank, &req).and_then(|s| bank.user_by_sub(&s).cloned());
    let Some(user) = user else {
        return HttpResponse::Unauthorized()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"error": "signed_out"}));
    };
    let list: Vec<Value> = bank
        .pending_for(&user.sub)
        .iter()
        .map(|r| {
            let n = &r.notice;
            json!({
                "handle": n.handle,
                "id": format!("r{}", dom_key(&n.handle)),
                "client_id": n.client_id,
                "client_name": n.tpp_name(),
                "logo": logo_source(n),
                "binding_message": n.binding_message,
                "intent_id": n.intent_id,
                "expires_at": n.expires_at,
                "html": request_card(&bank, &user, r),
            })
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .json(json!({ "requests": list }))
}

/// `POST /my/phone/decision`: Approve or Deny from the phone page.
async fn decision(bank: web::Data<Bank>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(sub) = session_sub(&bank, &req) else {
        return redirect(PHONE_PATH);
    };
    let f = form_pairs(&body);
    let handle = field(&f, "handle").to_string();
    let approve = match field(&f, "action") {
        "approve" => true,
        "deny" => false,
        _ => {
            return Page::problem(
                PHONE_TITLE,
                StatusCode::BAD_REQUEST,
                "Choose Approve or Deny.",
            )
            .respond();
        }
    };
    let accounts: Vec<String> = f
        .iter()
        .filter(|(k, _)| k == "accounts")
        .map(|(_, v)| v.clone())
        .collect();
    match bank.decide(&sub, &handle, approve, &accounts).await {
        Ok(_) => redirect(&format!(
            "{PHONE_PATH}?decided={}",
            url::form_urlencoded::byte_serialize(handle.as_bytes()).collect::<String>()
        )),
        Err(e) => {
            if let DecideError::Unavailable(why) = &e {
                tracing::warn!(error = %why, "sending a CIBA decision failed");
            }
            Page::new(
                PHONE_TITLE,
                format!(
                    "{}<p><a href=\"{PHONE_PATH}\">Back to your requests</a></p>",
                    alert(e.message())
                ),
            )
            .status(e.status())
            .respond()
        }
    }
}

/// The phone page's script: polls the list and adds new requests at the
/// top, removes answered or expired ones, leaves the rest alone (so a
/// half-made choice of accounts survives). A request whose logo the page's
/// CSP does not list reloads the page, which lists it.
pub const PHONE_JS: &str = r#""use strict";
(function () {
  var list = document.getElementById("requests");
  var none = document.getElementById("phone-none");
  var status = document.getElementById("phone-status");
  if (!list || !window.fetch) { return; }
  var logos = (list.getAttribute("data-logos") || "").split(" ").filter(Boolean);
  function say(text) { status.textContent = text; }
  function apply(data) {
    var want = {};
    data.requests.forEach(function (r) { want[r.id] = r; });
    Array.prototype.slice.call(list.children).forEach(function (li) {
      if (!want[li.id]) {
        if (li.contains(document.activeElement)) { document.querySelector("h1").focus(); }
        li.remove();
      }
    });
    var added = [];
    data.requests.slice().reverse().forEach(function (r) {
      if (document.getElementById(r.id)) { return; }
      if (r.logo && logos.indexOf(r.logo) < 0) { window.location.reload(); return; }
      var t = document.createElement("template");
      t.innerHTML = r.html;
      list.insertBefore(t.content, list.firstChild);
      added.push(r.client_name);
    });
    none.hidden = list.children.length > 0;
    if (added.length) { say("New request from " + added.join(", ") + "."); }
  }
  function tick() {
    fetch("/my/phone/pending.json", { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401) { throw new Error("signed out"); }
        return r.json();
      })
      .then(function (d) { apply(d); setTimeout(tick, 2000); })
      .catch(function (e) {
        if (e.message === "signed out") { say("You are signed out. Reload the page to sign in again."); return; }
        setTimeout(tick, 5000);
      });
  }
  document.querySelector("h1").setAttribute("tabindex", "-1");
  setTimeout(tick, 2000);
})();
"#;

/// `GET /phone.js`.
async fn phone_js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(PHONE_JS)
}

/// Registers the CIBA routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/internal/ciba/resolve", web::post().to(resolve))
        .route("/internal/ciba/notify", web::post().to(notify))
        .route(PHONE_PATH, web::get().to(phone))
        .route(
            &format!("{PHONE_PATH}/pending.json"),
            web::get().to(pending_json),
        )
        .route(&format!("{PHONE_PATH}/decision"), web::post().to(decision))
        .route("/phone.js", web::get().to(phone_js));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BankConfig, Consent, configure as bank_routes};
    use actix_web::dev::{Service, ServiceResponse};
    use actix_web::test::{TestRequest, call_service, init_service, read_body};
    use std::sync::{Arc, Mutex};

    const CIBA_TOKEN: &str = "demo-ciba-service-token";
    const LOGO: &str = "https://tpp.example/logo.png";

    /// A stand-in for Strongroom's decision API: records each call and
    /// answers with `answer`.
    #[derive(Default)]
    struct FakeStrongroom {
        calls: Mutex<Vec<(String, Option<String>, Value)>>,
        answer: Mutex<(u16, Value)>,
    }

    async fn fake_decision(
        fake: web::Data<FakeStrongroom>,
        req: HttpRequest,
        body: web::Json<Value>,
    ) -> HttpResponse {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        fake.calls
            .lock()
            .unwrap()
            .push((req.path().to_string(), auth, body.into_inner()));
        let (status, body) = fake.answer.lock().unwrap().clone();
        let mut r = HttpResponse::build(StatusCode::from_u16(status).unwrap());
        if body.is_null() {
            r.finish()
        } else {
            r.json(body)
        }
    }

    /// Starts the fake on an ephemeral port; returns its base URL.
    fn start_fake(fake: Arc<FakeStrongroom>) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let data = web::Data::from(fake);
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new().app_data(data.clone()).route(
                "/bank/ciba/{handle}/decision",
                web::post().to(fake_decision),
            )
        })
        .workers(1)
        .listen(l)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        url
    }

    fn bank_at(strongroom: &str) -> web::Data<Bank> {
        web::Data::new(Bank::new(BankConfig::demo(strongroom)).unwrap())
    }

    async fn app(
        bank: web::Data<Bank>,
    ) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>
    {
        init_service(actix_web::App::new().app_data(bank).configure(bank_routes)).await
    }

    fn notice(handle: &str, sub: &str, extra: Value) -> Value {
        let mut v = json!({
            "handle": handle, "sub": sub, "client_id": "tpp-1", "client_name": "Acme <Budget>",
            "logo_uri": LOGO, "policy_uri": "https://tpp.example/privacy",
            "binding_message": "W4K-7Q2", "scope": ["openid", "accounts"],
            "expires_at": now() + 300,
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn post_json(path: &str, bearer: Option<&str>, body: &Value) -> actix_http::Request {
        let mut r = TestRequest::post().uri(path).set_json(body);
        if let Some(b) = bearer {
            r = r.insert_header((header::AUTHORIZATION, format!("Bearer {b}")));
        }
        r.to_request()
    }

    async fn json_of(res: ServiceResponse) -> Value {
        serde_json::from_slice(&read_body(res).await).unwrap()
    }

    async fn html_of(res: ServiceResponse) -> String {
        String::from_utf8(read_body(res).await.to_vec()).unwrap()
    }

    /// Signs in at /my/login; returns the session cookie.
    async fn sign_in(
        app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
        user: &str,
        password: &str,
    ) -> actix_web::cookie::Cookie<'static> {
        let res = call_service(
            app,
            TestRequest::post()
                .uri("/my/login")
                .set_form([
                    ("username", user),
                    ("password", password),
                    ("next", PHONE_PATH),
                ])
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers().get(header::LOCATION).unwrap(), PHONE_PATH);
        res.response().cookies().next().unwrap().into_owned()
    }

    fn awaiting_consent(bank: &Bank, id: &str) {
        bank.consents.lock().unwrap().insert(
            id.into(),
            Consent {
                consent_id: id.into(),
                client_id: "tpp-1".into(),
                status: "AwaitingAuthorisation".into(),
                permissions: vec!["ReadAccountsBasic".into(), "ReadBalances".into()],
                created_at: 0,
                updated_at: 0,
                sub: None,
                accounts: Vec::new(),
                expiration: Some("2027-03-12T00:00:00Z".into()),
                tpp_name: None,
            },
        );
    }

    #[actix_web::test]
    async fn resolve_names_known_customers_and_refuses_the_rest_with_the_documented_codes() {
        let app = app(bank_at("https://op.example")).await;
        let ask = |hint_type: &str, hint: &str| json!({"client_id": "tpp-1", "hint_type": hint_type, "hint": hint});
        for (hint_type, hint, sub) in [
            ("login_hint", "mia", "cust-0001"),
            ("login_hint", "cust-0002", "cust-0002"),
            ("id_token_hint", "cust-0001", "cust-0001"),
        ] {
            let res = call_service(
                &app,
                post_json(
                    "/internal/ciba/resolve",
                    Some(CIBA_TOKEN),
                    &ask(hint_type, hint),
                ),
            )
            .await;
            assert_eq!(res.status(), 200, "{hint_type} {hint}");
            assert_eq!(json_of(res).await, json!({"sub": sub}));
        }
        for (body, status, code) in [
            (ask("login_hint", "olivia"), 404, "unknown_user_id"),
            (ask("id_token_hint", "mia"), 404, "unknown_user_id"),
            (ask("login_hint_token", "eyJ..."), 400, "invalid_request"),
            (ask("email", "mia@example.com"), 400, "invalid_request"),
            (ask("login_hint", "  "), 400, "invalid_request"),
            (json!({"hint": "mia"}), 400, "invalid_request"),
        ] {
            let res = call_service(
                &app,
                post_json("/internal/ciba/resolve", Some(CIBA_TOKEN), &body),
            )
            .await;
            assert_eq!(res.status(), status, "{body}");
            assert_eq!(json_of(res).await["error"], code, "{body}");
        }
        for bearer in [
            None,
            Some("demo-ciba-service-toke"),
            Some("demo-ciba-service-tokeN"),
            Some("demo-consent-service-token"),
        ] {
            let res = call_service(
                &app,
                post_json("/internal/ciba/resolve", bearer, &ask("login_hint", "mia")),
            )
            .await;
            assert_eq!(res.status(), 401, "{bearer:?}");
        }
    }

    #[actix_web::test]
    async fn notify_stores_per_customer_once_per_handle_and_pending_json_shows_only_your_own() {
        let bank = bank_at("https://op.example");
        let app = app(bank.clone()).await;
        // Refused: wrong bearer, unknown customer, not a notice.
        for (bearer, body) in [
            (Some("wrong"), notice("h-1", "cust-0001", json!({}))),
            (None, notice("h-1", "cust-0001", json!({}))),
            (Some(CIBA_TOKEN), notice("h-1", "cust-9999", json!({}))),
            (Some(CIBA_TOKEN), json!({"handle": "h-1"})),
        ] {
            let res = call_service(&app, post_json("/internal/ciba/notify", bearer, &body)).await;
            assert!(res.status() == 401 || res.status() == 400, "{body}");
        }
        assert!(bank.pending_for("cust-0001").is_empty());

        for (h, sub) in [
            ("h-1", "cust-0001"),
            ("h-1", "cust-0001"),
            ("h-2", "cust-0002"),
        ] {
            let res = call_service(
                &app,
                post_json(
                    "/internal/ciba/notify",
                    Some(CIBA_TOKEN),
                    &notice(h, sub, json!({})),
                ),
            )
            .await;
            assert_eq!(res.status(), 204);
        }
        // An expired one is stored but not shown.
        let res = call_service(
            &app,
            post_json(
                "/internal/ciba/notify",
                Some(CIBA_TOKEN),
                &notice("h-old", "cust-0001", json!({"expires_at": now() - 1})),
            ),
        )
        .await;
        assert_eq!(res.status(), 204);
        assert_eq!(
            bank.pending_for("cust-0001").len(),
            1,
            "the retry changed nothing"
        );

        let res = call_service(
            &app,
            TestRequest::get()
                .uri("/my/phone/pending.json")
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), 401);

        let mia = sign_in(&app, "mia", "correct horse").await;
        let res = call_service(
            &app,
            TestRequest::get()
                .uri("/my/phone/pending.json")
                .cookie(mia)
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), 200);
        let v = json_of(res).await;
        let reqs = v["requests"].as_array().unwrap();
        assert_eq!(reqs.len(), 1, "{v}");
        assert_eq!(reqs[0]["handle"], "h-1");
        assert_eq!(reqs[0]["binding_message"], "W4K-7Q2");
        assert_eq!(reqs[0]["logo"], LOGO);
        assert!(
            reqs[0]["html"]
                .as_str()
                .unwrap()
                .contains("Acme &lt;Budget&gt;")
        );

        let noah = sign_in(&app, "noah", "battery staple").await;
        let v = json_of(
            call_service(
                &app,
                TestRequest::get()
                    .uri("/my/phone/pending.json")
                    .cookie(noah)
                    .to_request(),
            )
            .await,
        )
        .await;
        let handles: Vec<&Value> = v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["handle"])
            .collect();
        assert_eq!(handles, [&json!("h-2")]);
    }

    #[actix_web::test]
    async fn the_phone_shows_the_request_as_the_banks_app_does() {
        let bank = bank_at("https://op.example");
        awaiting_consent(&bank, "urn-intent-1");
        let app = app(bank.clone()).await;
        let res = call_service(&app, TestRequest::get().uri(PHONE_PATH).to_request()).await;
        assert_eq!(res.status(), 200);
        let html = html_of(res).await;
        assert!(
            html.contains("name=\"next\" value=\"/my/phone\"")
                && html.contains("name=\"password\""),
            "signed out: the sign-in form, back to the phone: {html}"
        );
        bank.store_notice(
            serde_json::from_value(notice(
                "h-1",
                "cust-0001",
                json!({"intent_id": "urn-intent-1", "tos_uri": "javascript:alert(1)"}),
            ))
            .unwrap(),
        );
        bank.store_notice(
            serde_json::from_value(notice(
                "h-2",
                "cust-0001",
                json!({"logo_uri": "http://insecure.example/x.png", "binding_message": null,
                       "client_name": "Other App", "policy_uri": null}),
            ))
            .unwrap(),
        );
        let mia = sign_in(&app, "mia", "correct horse").await;
        let res = call_service(
            &app,
            TestRequest::get().uri(PHONE_PATH).cookie(mia).to_request(),
        )
        .await;
        assert_eq!(res.status(), 200);
        let csp = res
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains(&format!("img-src 'self' {LOGO};"))
                && csp.contains("script-src 'self';")
                && !csp.contains("insecure.example"),
            "exactly the logos shown: {csp}"
        );
        let html = html_of(res).await;
        assert_eq!(html.matches("<h1>").count(), 1);
        assert!(html.contains("<script src=\"/phone.js\" defer></script>"));
        assert!(!html.contains("<script>"), "no inline script");
        for want in [
            &format!("<img src=\"{LOGO}\" alt=\"\""),
            "<h2>Acme &lt;Budget&gt;</h2>",
            "Check this code matches: <strong>W4K-7Q2</strong>",
            "<a href=\"https://tpp.example/privacy\">Acme &lt;Budget&gt; privacy policy</a>",
            "See your balances",
            "Savings ••1002",
            "name=\"accounts\" value=\"acc-1001\" checked",
            "<legend>Accounts to share with Acme &lt;Budget&gt;</legend>",
            "Until 12 March 2027",
            "Approve<span class=\"vh\"> the request from Acme &lt;Budget&gt; with code W4K-7Q2</span>",
            "Deny<span class=\"vh\"> the request from Other App</span>",
            "Confirm to Other App who you are",
            "Answer within 5 minutes",
        ] {
            assert!(html.contains(want), "{want} in {html}");
        }
        assert!(!html.contains("javascript:"), "only https links");
        assert!(!html.contains("insecure.example"), "only https logos");
        // The newest request first.
        assert!(html.find("Other App").unwrap() < html.find("W4K-7Q2").unwrap());

        let js = call_service(&app, TestRequest::get().uri("/phone.js").to_request()).await;
        assert_eq!(js.status(), 200);
        assert!(
            js.headers()
                .get(header::CONTENT_TYPE)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        assert!(html_of(js).await.contains("/my/phone/pending.json"));
    }

    /// Opens the decision token as Strongroom does (docs/hooks.md §5 and the CIBA decision API):
    /// JWE compact, `dir` + `A256GCM` with the shared secret, nothing else.
    fn open_as_strongroom(token: &str) -> Value {
        use josekit::jwe::{self, Dir};
        let decrypter = Dir.decrypter_from_bytes([0x42u8; 32]).unwrap();
        let (payload, header) = jwe::deserialize_compact(token, &decrypter).unwrap();
        assert_eq!(header.algorithm(), Some("dir"));
        assert_eq!(header.content_encryption(), Some("A256GCM"));
        let v: Value = serde_json::from_slice(&payload).unwrap();
        let (iat, exp) = (v["iat"].as_i64().unwrap(), v["exp"].as_i64().unwrap());
        assert!(
            exp > iat && exp - iat <= 300 && (iat - now()).abs() < 30,
            "{v}"
        );
        assert!(v["jti"].as_str().is_some_and(|j| j.len() >= 16), "{v}");
        v
    }

    async fn decide_form(
        app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
        cookie: &actix_web::cookie::Cookie<'static>,
        form: &[(&str, &str)],
    ) -> ServiceResponse {
        call_service(
            app,
            TestRequest::post()
                .uri("/my/phone/decision")
                .cookie(cookie.clone())
                .set_form(form)
                .to_request(),
        )
        .await
    }

    #[actix_web::test]
    async fn approve_sends_a_decision_token_strongroom_accepts_and_authorises_the_consent() {
        let fake = Arc::new(FakeStrongroom::default());
        *fake.answer.lock().unwrap() = (204, Value::Null);
        let sr = start_fake(fake.clone());
        let bank = bank_at(&sr);
        awaiting_consent(&bank, "urn-intent-1");
        bank.store_notice(
            serde_json::from_value(notice(
                "h/1 é",
                "cust-0001",
                json!({"intent_id": "urn-intent-1"}),
            ))
            .unwrap(),
        );
        let app = app(bank.clone()).await;
        let mia = sign_in(&app, "mia", "correct horse").await;
        let noah = sign_in(&app, "noah", "battery staple").await;

        // Someone else's request, no accounts, an account not mia's: refused, nothing sent.
        let res = decide_form(&app, &noah, &[("handle", "h/1 é"), ("action", "approve")]).await;
        assert_eq!(res.status(), 404);
        for accounts in [vec![], vec!["acc-2001"]] {
            let mut form = vec![("handle", "h/1 é"), ("action", "approve")];
            form.extend(accounts.iter().map(|a| ("accounts", *a)));
            let res = decide_form(&app, &mia, &form).await;
            assert_eq!(res.status(), 400);
        }
        assert!(fake.calls.lock().unwrap().is_empty());
        assert_eq!(
            bank.consent("urn-intent-1").unwrap().status,
            "AwaitingAuthorisation"
        );

        let res = decide_form(
            &app,
            &mia,
            &[
                ("handle", "h/1 é"),
                ("action", "approve"),
                ("accounts", "acc-1002"),
                ("accounts", "acc-2001"),
            ],
        )
        .await;
        assert_eq!(res.status(), 303);
        let back = res
            .headers()
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(back.starts_with("/my/phone?decided="), "{back}");

        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1);
        let (path, auth, body) = &calls[0];
        assert_eq!(path, "/bank/ciba/h%2F1%20%C3%A9/decision");
        assert_eq!(auth.as_deref(), Some("Bearer demo-bank-api-token"));
        let claims = open_as_strongroom(body["result"].as_str().unwrap());
        assert_eq!(claims["iss"], "demo-bank");
        assert_eq!(claims["aud"], sr.as_str());
        assert_eq!(claims["purpose"], "ciba");
        assert_eq!(claims["handle"], "h/1 é");
        assert_eq!(claims["status"], "approved");
        assert_eq!(claims["sub"], "cust-0001");
        assert_eq!(claims["acr"], SCA_ACR);
        assert_eq!(claims["amr"], json!(["pwd", "hwk"]));
        assert_eq!(claims["consent_id"], "urn-intent-1");
        assert_eq!(
            claims["accounts"],
            json!(["acc-1002"]),
            "only mia's, as chosen"
        );

        let c = bank.consent("urn-intent-1").unwrap();
        assert_eq!(
            (
                c.status.as_str(),
                c.sub.as_deref(),
                c.accounts.clone(),
                c.tpp_name.as_deref()
            ),
            (
                "Authorised",
                Some("cust-0001"),
                vec!["acc-1002".to_string()],
                Some("Acme <Budget>")
            )
        );
        assert!(bank.pending_for("cust-0001").is_empty());
        let html = html_of(
            call_service(
                &app,
                TestRequest::get()
                    .uri(&back)
                    .cookie(mia.clone())
                    .to_request(),
            )
            .await,
        )
        .await;
        assert!(
            html.contains("You approved the request from Acme &lt;Budget&gt;."),
            "{html}"
        );

        // A second answer is refused here, without asking Strongroom.
        let res = decide_form(&app, &mia, &[("handle", "h/1 é"), ("action", "deny")]).await;
        assert_eq!(res.status(), 409);
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
    }

    #[actix_web::test]
    async fn deny_and_strongroom_refusals_leave_the_bank_consistent() {
        let fake = Arc::new(FakeStrongroom::default());
        let sr = start_fake(fake.clone());
        let bank = bank_at(&sr);
        let app = app(bank.clone()).await;
        let mia = sign_in(&app, "mia", "correct horse").await;
        for (h, intent) in [
            ("h-deny", "c-deny"),
            ("h-exp", "c-exp"),
            ("h-down", "c-down"),
        ] {
            awaiting_consent(&bank, intent);
            bank.store_notice(
                serde_json::from_value(notice(h, "cust-0001", json!({"intent_id": intent})))
                    .unwrap(),
            );
        }
        let approve = |h: &'static str| {
            [
                ("handle", h),
                ("action", "approve"),
                ("accounts", "acc-1001"),
            ]
        };

        *fake.answer.lock().unwrap() = (204, Value::Null);
        let res = decide_form(&app, &mia, &[("handle", "h-deny"), ("action", "deny")]).await;
        assert_eq!(res.status(), 303);
        let claims =
            open_as_strongroom(fake.calls.lock().unwrap()[0].2["result"].as_str().unwrap());
        assert_eq!(claims["status"], "denied");
        assert_eq!(claims["handle"], "h-deny");
        assert!(
            claims.get("sub").is_none() && claims.get("consent_id").is_none(),
            "{claims}"
        );
        assert_eq!(bank.consent("c-deny").unwrap().status, "Rejected");

        // Strongroom: expired. The consent stays usable, the request leaves the phone.
        *fake.answer.lock().unwrap() = (409, json!({"error": "expired_token"}));
        let res = decide_form(&app, &mia, &approve("h-exp")).await;
        assert_eq!(res.status(), 409);
        assert!(html_of(res).await.contains("This request has expired."));
        assert_eq!(
            bank.consent("c-exp").unwrap().status,
            "AwaitingAuthorisation"
        );
        assert!(bank.consent("c-exp").unwrap().accounts.is_empty());

        // Strongroom unavailable: nothing changes, the customer can try again.
        *fake.answer.lock().unwrap() = (503, json!({"error": "temporarily_unavailable"}));
        let res = decide_form(&app, &mia, &approve("h-down")).await;
        assert_eq!(res.status(), 503);
        assert_eq!(
            bank.consent("c-down").unwrap().status,
            "AwaitingAuthorisation"
        );
        let left: Vec<String> = bank
            .pending_for("cust-0001")
            .into_iter()
            .map(|r| r.notice.handle)
            .collect();
        assert_eq!(left, ["h-down"]);
        *fake.answer.lock().unwrap() = (204, Value::Null);
        let res = decide_form(&app, &mia, &approve("h-down")).await;
        assert_eq!(res.status(), 303);
        assert_eq!(bank.consent("c-down").unwrap().status, "Authorised");
        assert_eq!(fake.calls.lock().unwrap().len(), 4);
    }
}

//! The browser side of an authorization: `/authorize`, then login and
//! consent as an interaction the server tracks, then the redirect back to the
//! client. The login step is one of several [`LoginMode`]s: the built-in form
//! today, the bank's own login app through the consent bridge later.
//!
//! An interaction lives in the database (several instances behind a load
//! balancer share it) and is bound to the browser that started it by a
//! cookie scoped to its path: a link copied into another browser is useless.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use oauth_core::authorization::{Authentication, AuthorizationRequest, GrantDetails};
use oauth_core::client::Client;
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::request::response::{
    AuthorizationResponse, Granted, RedirectTarget, authorization_response,
};
use oauth_core::secret::{constant_time_eq, hash_secret, new_secret, now};
use oauth_core::storage::{
    ClientRecord, ClientRepository as _, InteractionEnd, InteractionRecord, SessionRecord,
    SessionRepository,
};
use serde::{Deserialize, Serialize};

use crate::http::{AppState, PageCsp};
use crate::theme::{ClientView, DetailRow, ScopeView, Theme};

const SESSION_COOKIE: &str = "sr_session";
const INTERACTION_COOKIE: &str = "sr_interaction";

/// The page language and theme of one request: chosen from the
/// interaction's `ui_locales` when there is one, then `Accept-Language`.
#[derive(Clone, Copy)]
pub struct Ui<'a> {
    pub theme: &'a Theme,
    pub lang: &'static str,
}

impl<'a> Ui<'a> {
    /// The request's language before any interaction is known.
    pub fn of(theme: &'a Theme, req: &HttpRequest) -> Ui<'a> {
        Ui {
            theme,
            lang: theme.negotiate(None, accept_language(req)),
        }
    }

    /// The language for an interaction's pages: its `ui_locales` first.
    fn for_request(theme: &'a Theme, req: &HttpRequest, request: &AuthorizationRequest) -> Ui<'a> {
        Ui {
            theme,
            lang: theme.negotiate(request.ui_locales.as_deref(), accept_language(req)),
        }
    }

    /// An error shown to the customer in the browser: used only while the
    /// redirect URI is not known to be the client's (RFC 6749 §4.1.2.1).
    pub fn error(&self, status: StatusCode, err: &OAuthError) -> HttpResponse {
        let ctx = serde_json::json!({
            "error": err.code.as_str(),
            "description": err.safe_description(),
        });
        let body = self
            .theme
            .render("error.html", self.lang, &ctx)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e.0, "the error page does not render");
                err.code.as_str().to_string()
            });
        page(status, &PageCsp::no_forms(), body)
    }

    /// A page of the interaction, or the error page if it does not render.
    fn render(&self, name: &str, csp: &PageCsp, ctx: &impl Serialize) -> HttpResponse {
        self.render_status(StatusCode::OK, name, csp, ctx)
    }

    fn render_status(
        &self,
        status: StatusCode,
        name: &str,
        csp: &PageCsp,
        ctx: &impl Serialize,
    ) -> HttpResponse {
        match self.theme.render(name, self.lang, ctx) {
            Ok(body) => page(status, csp, body),
            Err(e) => {
                tracing::error!(page = name, error = %e.0, "a page does not render");
                self.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &OAuthError::server_error(),
                )
            }
        }
    }
}

impl<'a> Ui<'a> {
    /// For the few pages rendered where the request is not at hand (an
    /// internal error on the way back to the client): `ui_locales` only.
    fn without_headers(theme: &'a Theme, request: &AuthorizationRequest) -> Ui<'a> {
        Ui {
            theme,
            lang: theme.negotiate(request.ui_locales.as_deref(), None),
        }
    }
}

fn accept_language(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

/// An error page for a request with no theme at hand (the built-in theme is
/// used only if the application state is missing, which it never is).
pub fn error_page(req: &HttpRequest, status: StatusCode, err: &OAuthError) -> HttpResponse {
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => Ui::of(&state.theme, req).error(status, err),
        None => page(status, &PageCsp::no_forms(), err.code.as_str().to_string()),
    }
}

/// A customer page with its policy (see [`PageCsp`] for why each page
/// lists its own form targets).
fn page(status: StatusCode, csp: &PageCsp, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", csp.header_value()))
        .body(body)
}

/// The policy of an interaction's pages: their forms post to themselves,
/// and the answer can redirect to this interaction's `redirect_uri` (Approve,
/// Deny, Cancel) or, when it uses the bank's apps, to those apps.
fn interaction_csp(state: &AppState, st: &InteractionState) -> PageCsp {
    let bridge = state.bridge();
    let mut targets = vec![st.request.redirect_uri.as_str()];
    if st.hook
        && let Some(bridge) = &bridge
    {
        targets.push(&bridge.config().login_url);
        targets.push(&bridge.config().consent_url);
    }
    PageCsp::forms_to(targets)
}

fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// What the interaction remembers between pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InteractionState {
    request: AuthorizationRequest,
    /// The pushed request this interaction consumes when it completes.
    request_uri_hash: String,
    /// When `/authorize` accepted the request_uri. RFC 9126 limits how long
    /// a request_uri may be presented, not how long the customer may take
    /// to log in, so it is consumed as of this time.
    presented_at: i64,
    /// SHA-256 of the browser-binding cookie.
    browser_hash: String,
    /// Set once the customer has authenticated.
    #[serde(default)]
    authentication: Option<Authentication>,
    /// Login and consent happen in the bank's apps (consent bridge).
    #[serde(default)]
    hook: bool,
}

/// `GET /authorize` (RFC 6749 §4.1.1, RFC 9126 §4). Under FAPI 2.0 only
/// `client_id` and `request_uri` are used: everything else was pushed.
/// Under FAPI 1.0 Advanced the request object may come by value instead
/// (`request`, RFC 9101 §5.1; [`accept_by_value`]), for the clients whose
/// profile is a FAPI 1.0 one ([`oauth_core::policy::Policy::profile_for`]).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn authorize(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let t = now();
    // Parsed like every form (oauth_core::text), so that a repeated or
    // badly encoded parameter is the error page's invalid_request, not a
    // framework message.
    let query = match crate::api::parse_form(req.query_string().as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(&req, StatusCode::BAD_REQUEST, &e),
    };
    let (client_id, request_uri, request_object) = match (
        crate::api::single(&query, "client_id"),
        crate::api::single(&query, "request_uri"),
        crate::api::single(&query, "request"),
    ) {
        (Ok(c), Ok(u), Ok(r)) => (c, u, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return error_page(&req, StatusCode::BAD_REQUEST, &e);
        }
    };
    let (client_id, request_uri) = match (client_id, request_uri, request_object) {
        (Some(client_id), Some(uri), None) => (client_id, uri.to_owned()),
        (Some(client_id), None, Some(jwt)) => {
            match accept_by_value(&state, &req, &query, client_id, jwt, t).await {
                Ok(uri) => (client_id, uri),
                Err(resp) => return resp,
            }
        }
        // Whose request it is cannot be known: the deployment's rule.
        (_, None, _) if state.policy().require_par => {
            return error_page(&req, StatusCode::BAD_REQUEST, &par_required());
        }
        _ => {
            let err = OAuthError::invalid_request(if state.policy().require_par {
                "client_id and request_uri are required"
            } else {
                "client_id and either request_uri or a signed request object (request) are required"
            });
            return error_page(&req, StatusCode::BAD_REQUEST, &err);
        }
    };
    tracing::Span::current().record("client_id", client_id);
    let request_uri_hash = hash_secret(&request_uri);
    let session_hash = req.cookie(SESSION_COOKIE).map(|c| hash_secret(c.value()));
    let reads = match state
        .store
        .authorize_reads(&request_uri_hash, client_id, session_hash.as_deref(), t)
        .await
    {
        Ok(r) => r,
        Err(e) => return error_page(&req, StatusCode::SERVICE_UNAVAILABLE, &e.into()),
    };
    let request = match par::resolved(reads.pushed, client_id, t) {
        Ok(r) => r,
        Err(e) => return error_page(&req, StatusCode::BAD_REQUEST, &e),
    };
    let client = match registered(reads.client) {
        Ok(c) => c,
        Err(e) => return error_page(&req, StatusCode::BAD_REQUEST, &e),
    };
    // From here on the redirect URI is the client's: errors go back to it.
    let session = reads.session;
    let prompt_none = request.prompt.iter().any(|p| p == "none");
    let force_login = request.prompt.iter().any(|p| p == "login");
    let fresh_enough = |s: &SessionRecord| match request.max_age {
        Some(max) => t - s.auth_time <= max,
        None => true,
    };
    let reusable = session
        .as_ref()
        .filter(|s| !force_login && fresh_enough(s))
        .map(|s| Authentication {
            sub: s.sub.clone(),
            auth_time: s.auth_time,
            acr: s.acr.clone(),
            amr: serde_json::from_str(&s.amr).unwrap_or_default(),
        });
    if prompt_none {
        // No interaction allowed (OIDC Core §3.1.2.1); Strongroom does not
        // remember consents, so a session alone is not enough.
        let code = if reusable.is_some() {
            ErrorCode::ConsentRequired
        } else {
            ErrorCode::LoginRequired
        };
        let err = OAuthError::new(code, "user interaction is required");
        return finish_with_error(&state, &client, &request, &err, Some(&request_uri_hash), t)
            .await;
    }
    let hook = state
        .bridge()
        .is_some_and(|b| b.applies(client.id(), &request.requested_acrs()));
    if hook
        && let Err(resp) =
            hooks::check_intent(&state, &req, &client, &request, &request_uri_hash, t).await
    {
        return resp;
    }
    let interaction_id = new_secret();
    let browser_secret = new_secret();
    let st = InteractionState {
        request,
        request_uri_hash: request_uri_hash.clone(),
        presented_at: t,
        browser_hash: hash_secret(&browser_secret),
        // The bank's login app does its own strong authentication.
        authentication: if hook { None } else { reusable },
        hook,
    };
    let next = if st.authentication.is_some() {
        "consent"
    } else {
        "login"
    };
    if let Err(e) = save_interaction(&state, &interaction_id, client.id(), &st, t).await {
        return error_page(&req, StatusCode::SERVICE_UNAVAILABLE, &e);
    }
    let cookie = Cookie::build(INTERACTION_COOKIE, browser_secret)
        .path(format!("/interaction/{interaction_id}"))
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(
            state.login.interaction_lifetime_secs,
        ))
        .finish();
    HttpResponse::SeeOther()
        .insert_header((
            header::LOCATION,
            format!("/interaction/{interaction_id}/{next}"),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie)
        .finish()
}

/// RFC 9101 §5.1, FAPI 1.0 Advanced §5.2.2-1: a request object by value,
/// verified ([`oauth_core::request::verify_request_object`], encrypted or
/// not) and validated by the same pipeline as a pushed request, then
/// stored as one ([`par::store_request`]), so that the interaction after
/// it resolves, spends and completes both alike. Returns the internal
/// `request_uri`. Errors before the redirect URI is validated are error
/// pages; after, they go back to the client in its response mode.
async fn accept_by_value(
    state: &AppState,
    req: &HttpRequest,
    query: &[(String, String)],
    client_id: &str,
    jwt: &str,
    t: i64,
) -> Result<String, HttpResponse> {
    let page = |e: OAuthError| {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        error_page(req, status, &e)
    };
    let record = state
        .store
        .get_client(client_id)
        .await
        .map_err(|e| page(e.into()))?;
    let client = registered(record).map_err(page)?;
    if state.policy().profile_for(&client).requires_par() {
        return Err(page(par_required()));
    }
    let object = oauth_core::request::verify_request_object(
        &state.store,
        &state.jwks,
        &state.keys,
        &state.policy(),
        &client,
        Some(client_id),
        jwt,
        t,
    )
    .await
    .map_err(page)?;
    let request =
        oauth_core::request::validate_request_by_value(&client, query, &object, &state.policy())
            .map_err(|rejected| match rejected.redirect {
                Some(target) => respond(
                    state,
                    Ui::of(&state.theme, req),
                    &client,
                    &target,
                    Err(&rejected.error),
                    t,
                ),
                None => page(rejected.error),
            })?;
    let stored = par::store_request(&state.store, &state.policy(), &request, t)
        .await
        .map_err(page)?;
    Ok(stored.request_uri)
}

/// FAPI 2.0 Security Profile §5.3.2.2-2: no request without PAR.
fn par_required() -> OAuthError {
    OAuthError::invalid_request(
        "pushed authorization requests are required: push the request first and send client_id and request_uri",
    )
}

/// The client of a registration read from the store (`None`: unknown).
fn registered(rec: Option<ClientRecord>) -> Result<Client, OAuthError> {
    let rec = rec.ok_or_else(|| OAuthError::invalid_request("unknown client"))?;
    Client::from_record(&rec)
}

async fn save_interaction(
    state: &AppState,
    id: &str,
    client_id: &str,
    st: &InteractionState,
    t: i64,
) -> Result<(), OAuthError> {
    let rec = InteractionRecord {
        interaction_id: hash_secret(id),
        client_id: client_id.to_string(),
        state: serde_json::to_string(st).map_err(|_| OAuthError::server_error())?,
        expires_at: t + state.login.interaction_lifetime_secs,
    };
    state.store.put_interaction(rec).await?;
    Ok(())
}

/// Loads the interaction, checks that this browser started it, and loads
/// its client.
async fn load_interaction(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    t: i64,
) -> Result<(InteractionState, Client), HttpResponse> {
    let expired = || {
        error_page(
            req,
            StatusCode::BAD_REQUEST,
            &OAuthError::invalid_request(
                "this sign-in has expired or is unknown; return to the application and start again",
            ),
        )
    };
    let (rec, client) = match state.store.get_interaction(&hash_secret(id), t).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(error_page(req, StatusCode::SERVICE_UNAVAILABLE, &e.into())),
    };
    let st: InteractionState = serde_json::from_str(&rec.state).map_err(|_| expired())?;
    let bound = req.cookie(INTERACTION_COOKIE).is_some_and(|c| {
        constant_time_eq(
            hash_secret(c.value()).as_bytes(),
            st.browser_hash.as_bytes(),
        )
    });
    if !bound {
        tracing::warn!(client_id = %rec.client_id, "interaction used from another browser");
        return Err(expired());
    }
    let client = registered(client).map_err(|e| error_page(req, StatusCode::BAD_REQUEST, &e))?;
    Ok((st, client))
}

/// `GET /interaction/{id}/login`: the built-in login form.
pub async fn login_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    let (st, client) = match load_interaction(&state, &req, &id, now()).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    if st.hook {
        return hooks::send_to_bank(&state, &id, &client, &st, hooks::Purpose::Login).await;
    }
    render_login(&state, &req, &client, &st, &id, None)
}

/// The login page; after a wrong password, with the message tied to the
/// fields and the username kept (never the password).
fn render_login(
    state: &AppState,
    req: &HttpRequest,
    client: &Client,
    st: &InteractionState,
    id: &str,
    failed_username: Option<&str>,
) -> HttpResponse {
    let ui = Ui::for_request(&state.theme, req, &st.request);
    let ctx = serde_json::json!({
        "client": client_view(client),
        "interaction_id": id,
        "error": failed_username.is_some(),
        "username": failed_username.or(st.request.login_hint.as_deref()).unwrap_or_default(),
    });
    ui.render("login.html", &login_csp(state, st, client), &ctx)
}

/// What the pages show of the client: its registered name (else its id),
/// and its logo, privacy policy and terms when they are `https` URLs.
fn client_view(client: &Client) -> ClientView {
    let https = |u: &Option<String>| {
        u.as_deref()
            .filter(|u| u.starts_with("https://") && url::Url::parse(u).is_ok())
            .map(str::to_string)
    };
    ClientView {
        name: display_name(client).to_string(),
        logo_uri: https(&client.metadata.logo_uri),
        policy_uri: https(&client.metadata.policy_uri),
        tos_uri: https(&client.metadata.tos_uri),
    }
}

/// [`interaction_csp`] plus the client's logo, the one image from
/// elsewhere.
fn login_csp(state: &AppState, st: &InteractionState, client: &Client) -> PageCsp {
    let csp = interaction_csp(state, st);
    match client_view(client).logo_uri {
        Some(logo) => csp.image(&logo),
        None => csp,
    }
}

fn display_name(client: &Client) -> &str {
    client
        .metadata
        .client_name
        .as_deref()
        .unwrap_or(client.id())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    action: Option<String>,
}

/// `POST /interaction/{id}/login`.
#[tracing::instrument(skip_all)]
pub async fn login_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let t = now();
    let id = path.into_inner();
    let (mut st, client) = match load_interaction(&state, &req, &id, t).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    if st.hook {
        return redirect(&format!("/interaction/{id}/login"));
    }
    if form.action.as_deref() == Some("cancel") {
        let err = OAuthError::new(
            ErrorCode::AccessDenied,
            "the customer cancelled the sign-in",
        );
        return finish_interaction_error(&state, &id, &client, &st, &err, t).await;
    }
    let Some(user) = state
        .users
        .authenticate(&form.username, &form.password)
        .await
    else {
        tracing::info!(client_id = %client.id(), "login failed");
        return render_login(&state, &req, &client, &st, &id, Some(&form.username));
    };
    let auth = Authentication {
        sub: user.sub.clone(),
        auth_time: t,
        acr: Some(state.login.acr.clone()),
        amr: vec!["pwd".into()],
    };
    let session_secret = new_secret();
    let session = SessionRecord {
        session_hash: hash_secret(&session_secret),
        sub: auth.sub.clone(),
        auth_time: t,
        acr: auth.acr.clone(),
        amr: serde_json::to_string(&auth.amr).unwrap_or_else(|_| "[]".into()),
        expires_at: t + state.login.session_lifetime_secs,
    };
    if let Err(e) = state.store.put_session(session).await {
        return error_page(&req, StatusCode::SERVICE_UNAVAILABLE, &e.into());
    }
    st.authentication = Some(auth);
    if let Err(e) = save_interaction(&state, &id, client.id(), &st, t).await {
        return error_page(&req, StatusCode::SERVICE_UNAVAILABLE, &e);
    }
    let cookie = Cookie::build(SESSION_COOKIE, session_secret)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(state.login.session_lifetime_secs))
        .finish();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/interaction/{id}/consent")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie)
        .finish()
}

/// `GET /interaction/{id}/consent`: what the client asks for, approve or deny.
pub async fn consent_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    let (st, client) = match load_interaction(&state, &req, &id, now()).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let Some(auth) = &st.authentication else {
        return redirect(&format!("/interaction/{id}/login"));
    };
    if st.hook {
        return hooks::send_to_bank(&state, &id, &client, &st, hooks::Purpose::Consent).await;
    }
    let username = state
        .users
        .get_by_sub(&auth.sub)
        .map_or(auth.sub.as_str(), |u| u.username.as_str());
    let ui = Ui::for_request(&state.theme, &req, &st.request);
    let view = client_view(&client);
    let lifetime = if client.allows_grant("refresh_token") {
        (
            "consent-expiry-refresh",
            state.policy().refresh_token_lifetime_secs,
        )
    } else {
        (
            "consent-expiry-once",
            state.policy().access_token_lifetime_secs,
        )
    };
    let duration = ui.theme.duration(ui.lang, lifetime.1);
    let expiry = ui.theme.msg(
        ui.lang,
        lifetime.0,
        &[("client", &view.name), ("duration", &duration)],
    );
    let scopes: Vec<ScopeView> = st
        .request
        .scope
        .iter()
        .map(|s| ScopeView {
            name: s.clone(),
            description: ui.theme.scope_description(ui.lang, s),
        })
        .collect();
    let details = st
        .request
        .authorization_details
        .as_ref()
        .map(|d| detail_rows(&ui, d))
        .unwrap_or_default();
    let ctx = serde_json::json!({
        "client": view,
        "interaction_id": id,
        "username": username,
        "scopes": scopes,
        "details": details,
        "intent_id": st.request.requested_claim_value(&state.consent_claim),
        "expiry": expiry,
    });
    ui.render("consent.html", &login_csp(&state, &st, &client), &ctx)
}

/// RFC 9396 authorization details in words, one list of rows per detail:
/// the known members under their catalog label (`detail-<member>`), the
/// others under their own name; permission names such as
/// `ReadAccountsBasic` split into words.
fn detail_rows(ui: &Ui, details: &serde_json::Value) -> Vec<Vec<DetailRow>> {
    let Some(list) = details.as_array() else {
        return Vec::new();
    };
    let known = |k: &str| match k {
        "type" => Some("detail-type"),
        "actions" => Some("detail-actions"),
        "permissions" => Some("detail-permissions"),
        "accounts" => Some("detail-accounts"),
        "locations" => Some("detail-locations"),
        "datatypes" => Some("detail-datatypes"),
        "expirationDateTime" | "expiration_date_time" => Some("detail-expires"),
        "instructedAmount" | "amount" => Some("detail-amount"),
        "creditorName" | "creditorAccount" => Some("detail-creditor"),
        _ => None,
    };
    let words = |v: &serde_json::Value| -> String {
        match v {
            serde_json::Value::String(s) => humanise(s),
            serde_json::Value::Object(o) => {
                // An amount: {"amount": "10.00", "currency": "EUR"}.
                let parts: Vec<String> = o
                    .values()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect();
                parts.join(" ")
            }
            other => other.to_string(),
        }
    };
    list.iter()
        .filter_map(|d| d.as_object())
        .map(|d| {
            d.iter()
                .map(|(k, v)| {
                    let label =
                        known(k).map_or_else(|| k.clone(), |key| ui.theme.msg(ui.lang, key, &[]));
                    match v {
                        serde_json::Value::Array(items) => DetailRow {
                            label,
                            value: String::new(),
                            items: items.iter().map(words).collect(),
                        },
                        v => DetailRow {
                            label,
                            value: words(v),
                            items: Vec::new(),
                        },
                    }
                })
                .collect()
        })
        .collect()
}

/// `ReadAccountsBasic` → `Read accounts basic`; other text unchanged.
fn humanise(s: &str) -> String {
    let camel = s.len() > 1
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().skip(1).any(|c| c.is_ascii_uppercase());
    if !camel {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Deserialize)]
pub struct ConsentForm {
    action: String,
}

/// `POST /interaction/{id}/consent`: completes the interaction.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn consent_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<ConsentForm>,
) -> HttpResponse {
    let t = now();
    let id = path.into_inner();
    let (st, client) = match load_interaction(&state, &req, &id, t).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    tracing::Span::current().record("client_id", client.id());
    let Some(auth) = st.authentication.clone() else {
        return redirect(&format!("/interaction/{id}/login"));
    };
    if st.hook {
        return redirect(&format!("/interaction/{id}/consent"));
    }
    let approved = form.action == "approve";
    tracing::info!(
        target: "strongroom::security",
        event = "consent_decision",
        outcome = if approved { "approved" } else { "denied" },
        client_id = client.id(),
        sub = auth.sub.as_str(),
        via = "built_in",
        "the customer decided on consent"
    );
    if !approved {
        let err = OAuthError::new(ErrorCode::AccessDenied, "the customer denied the request");
        return finish_interaction_error(&state, &id, &client, &st, &err, t).await;
    }
    let user_claims = state
        .users
        .get_by_sub(&auth.sub)
        .map(|u| u.claims.clone())
        .unwrap_or_default();
    let consent_id = st
        .request
        .requested_claim_value(&state.consent_claim)
        .map(str::to_string);
    let grant = Approval {
        user_claims,
        accounts: Vec::new(),
        consent_claim: None,
        consent_id,
    };
    complete(
        &state,
        &id,
        &client,
        &st,
        st.request.clone(),
        auth,
        grant,
        t,
    )
    .await
}

/// What the consent step approved, besides the request itself.
struct Approval {
    user_claims: serde_json::Map<String, serde_json::Value>,
    accounts: Vec<String>,
    consent_claim: Option<String>,
    consent_id: Option<String>,
}

/// Completes an approved interaction, for the built-in consent page and the
/// bank's consent app alike: an essential `acr` not met ends in
/// `access_denied`; then the interaction and the pushed request are both
/// spent (one winner, so a double submit cannot mint two codes) in the
/// write that stores the code, and the customer goes back to the client.
#[allow(clippy::too_many_arguments)]
async fn complete(
    state: &AppState,
    id: &str,
    client: &Client,
    st: &InteractionState,
    request: AuthorizationRequest,
    auth: Authentication,
    approval: Approval,
    t: i64,
) -> HttpResponse {
    if let Err(err) = check_essential_acr(&request, &auth) {
        return finish_interaction_error(state, id, client, st, &err, t).await;
    }
    let details = GrantDetails {
        authentication: Some(auth.clone()),
        claims_request: request.claims.clone(),
        authorization_details: request.authorization_details.clone(),
        user_claims: approval.user_claims,
        accounts: approval.accounts,
        consent_claim: approval.consent_claim,
    };
    // One write takes the interaction, spends the pushed request and
    // stores the grant with its code.
    let end = InteractionEnd {
        interaction_hash: hash_secret(id),
        request_uri_hash: st.request_uri_hash.clone(),
        presented_at: st.presented_at,
    };
    // The hybrid flow's id_token, encrypted when the client registered
    // it; a client without its key gets the error at its redirect URI
    // and no code.
    let encrypter = if request.response_type == oauth_core::request::response::CODE_ID_TOKEN {
        match state.id_token_encrypter(client).await {
            Ok(e) => e,
            Err(e) => return finish_with_error(state, client, &request, &e, None, t).await,
        }
    } else {
        None
    };
    match oauth_core::grant::issue_code(
        &state.store,
        &state.keys,
        &state.policy(),
        client,
        &request,
        &auth,
        details,
        approval.consent_id,
        Some(end),
        encrypter.as_ref(),
        t,
    )
    .await
    {
        Ok(Some(issued)) => {
            let granted = Granted {
                code: &issued.code,
                id_token: issued.id_token.as_deref(),
            };
            respond_to_client(state, client, &request, Ok(granted), t)
        }
        Ok(None) => Ui::without_headers(&state.theme, &request).error(
            StatusCode::BAD_REQUEST,
            &OAuthError::invalid_request("this sign-in was already completed"),
        ),
        Err(e) => finish_with_error(state, client, &request, &e, None, t).await,
    }
}

/// OIDC Core §5.5.1.1: an essential `acr` request the login did not meet
/// ends the flow with `access_denied`.
fn check_essential_acr(
    request: &AuthorizationRequest,
    auth: &Authentication,
) -> Result<(), OAuthError> {
    let Some(acr) = request
        .claims
        .as_ref()
        .and_then(|c| c.get("id_token"))
        .and_then(|c| c.get("acr"))
    else {
        return Ok(());
    };
    if acr.get("essential").and_then(|e| e.as_bool()) != Some(true) {
        return Ok(());
    }
    let mut wanted: Vec<&str> = Vec::new();
    if let Some(v) = acr.get("value").and_then(|v| v.as_str()) {
        wanted.push(v);
    }
    if let Some(vs) = acr.get("values").and_then(|v| v.as_array()) {
        wanted.extend(vs.iter().filter_map(|v| v.as_str()));
    }
    if wanted.is_empty() || auth.acr.as_deref().is_some_and(|a| wanted.contains(&a)) {
        Ok(())
    } else {
        Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "the requested authentication level (acr) could not be met",
        ))
    }
}

async fn finish_interaction_error(
    state: &AppState,
    id: &str,
    client: &Client,
    st: &InteractionState,
    err: &OAuthError,
    t: i64,
) -> HttpResponse {
    let _ = state.store.take_interaction(&hash_secret(id)).await;
    let _ = par::complete(&state.store, &st.request_uri_hash, st.presented_at).await;
    finish_with_error(state, client, &st.request, err, None, t).await
}

/// Sends an error to the client's (validated) redirect URI; the pushed
/// request is spent so it cannot be retried.
async fn finish_with_error(
    state: &AppState,
    client: &Client,
    request: &AuthorizationRequest,
    err: &OAuthError,
    request_uri_hash: Option<&str>,
    t: i64,
) -> HttpResponse {
    if let Some(h) = request_uri_hash {
        let _ = par::complete(&state.store, h, t).await;
    }
    respond_to_client(state, client, request, Err(err), t)
}

/// Sends the authorization response (or error) to the client the way its
/// `response_mode` says: a redirect, or the form post page.
fn respond_to_client(
    state: &AppState,
    client: &Client,
    request: &AuthorizationRequest,
    outcome: Result<Granted<'_>, &OAuthError>,
    t: i64,
) -> HttpResponse {
    let ui = Ui::without_headers(&state.theme, request);
    respond(state, ui, client, &RedirectTarget::of(request), outcome, t)
}

/// [`respond_to_client`] for a validated `target`, with pages in `ui`'s
/// language.
fn respond(
    state: &AppState,
    ui: Ui<'_>,
    client: &Client,
    target: &RedirectTarget,
    outcome: Result<Granted<'_>, &OAuthError>,
    t: i64,
) -> HttpResponse {
    match authorization_response(&state.policy(), &state.keys, client, target, outcome, t) {
        Ok(AuthorizationResponse::Redirect(url)) => redirect(&url),
        Ok(AuthorizationResponse::FormPost { action, params }) => {
            let params: Vec<_> = params
                .iter()
                .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
                .collect();
            let csp = PageCsp::forms_to([action.as_str()]).inline_script(FORM_POST_SCRIPT);
            let ctx = serde_json::json!({
                "action": action, "params": params, "script": FORM_POST_SCRIPT,
            });
            ui.render("form_post.html", &csp, &ctx)
        }
        Err(e) => ui.error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// OAuth 2.0 Form Post Response Mode §2: the page submits its form on
/// load; the page's CSP allows this script (by its hash) and nothing else.
/// Without scripts the customer presses the button.
pub const FORM_POST_SCRIPT: &str = "document.getElementById(\"response\").submit();";

/// Registers the browser-facing routes. The interaction routes share one
/// scope, so a request matches its dynamic `{id}` prefix once (a regular
/// expression) instead of once per route, and the steps by plain string
/// comparison; a step's other methods are 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/authorize", web::get().to(authorize))
        .route("/assets/{name}", web::get().to(crate::http::asset))
        .service(
            web::scope("/interaction/{id}")
                .service(
                    web::resource("/login")
                        .route(web::get().to(login_page))
                        .route(web::post().to(login_submit)),
                )
                .service(
                    web::resource("/consent")
                        .route(web::get().to(consent_page))
                        .route(web::post().to(consent_submit)),
                )
                .route("/hook/login", web::get().to(hooks::login_return))
                .route("/hook/consent", web::get().to(hooks::consent_return)),
        );
}

/// The consent-bridge modes of login and consent (docs/hooks.md): the
/// customer goes to the bank's own apps with a hand-off token and comes back
/// to `/interaction/{id}/hook/{login,consent}` with a result token.
mod hooks {
    use super::*;
    pub use consent_bridge::Purpose;
    use consent_bridge::{Handoff, HookError, HookResult};

    /// Binds hand-off and result to this interaction and this browser.
    fn sid(id: &str, st: &InteractionState) -> String {
        hash_secret(&format!("hook-sid:{id}:{}", st.browser_hash))
    }

    /// The bank is unavailable: the customer sees a page saying so, with a
    /// way back to the application, which receives `temporarily_unavailable`.
    /// The interaction and the pushed request are spent: nothing is left
    /// half-done.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn unavailable(
        state: &AppState,
        req: &HttpRequest,
        id: Option<&str>,
        client: &Client,
        request: &AuthorizationRequest,
        request_uri_hash: &str,
        presented_at: i64,
        t: i64,
    ) -> HttpResponse {
        if let Some(id) = id {
            let _ = state.store.take_interaction(&hash_secret(id)).await;
        }
        let _ = par::complete(&state.store, request_uri_hash, presented_at).await;
        let err = OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the bank's sign-in service is unavailable, try again later",
        );
        let back = respond_to_client(state, client, request, Err(&err), t);
        let Some(location) = back
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return error_page(req, StatusCode::SERVICE_UNAVAILABLE, &err);
        };
        let ctx = serde_json::json!({
            "client": client_view(client),
            "return_to": location,
        });
        // A link back, no form.
        Ui::for_request(&state.theme, req, request).render_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable.html",
            &PageCsp::no_forms(),
            &ctx,
        )
    }

    /// Intent check at `/authorize`, before the customer sees anything: an
    /// unknown intent, another client's, or one already authorised goes back
    /// to the client as `invalid_request`.
    pub(super) async fn check_intent(
        state: &AppState,
        req: &HttpRequest,
        client: &Client,
        request: &AuthorizationRequest,
        request_uri_hash: &str,
        t: i64,
    ) -> Result<(), HttpResponse> {
        let Some(bridge) = state.bridge() else {
            return Ok(());
        };
        let cfg = bridge.config();
        let intent = request.requested_claim_value(&cfg.consent_claim);
        let outcome = match intent {
            None if cfg.require_intent => Err(OAuthError::invalid_request(format!(
                "the request must name the consent in claims.id_token.{}",
                cfg.consent_claim
            ))),
            None => Ok(()),
            Some(_) if cfg.consent_service_url.is_empty() => Ok(()),
            Some(i) => bridge.check_intent(i, client.id()).await,
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(e) if e.code == ErrorCode::TemporarilyUnavailable => {
                Err(unavailable(state, req, None, client, request, request_uri_hash, t, t).await)
            }
            Err(e) => {
                Err(finish_with_error(state, client, request, &e, Some(request_uri_hash), t).await)
            }
        }
    }

    /// Sends the customer to the bank's login or consent app.
    pub(super) async fn send_to_bank(
        state: &AppState,
        id: &str,
        client: &Client,
        st: &InteractionState,
        purpose: Purpose,
    ) -> HttpResponse {
        let t = now();
        let Some(bridge) = state.bridge() else {
            return Ui::without_headers(&state.theme, &st.request).error(
                StatusCode::SERVICE_UNAVAILABLE,
                &OAuthError::temporarily_unavailable(),
            );
        };
        let cfg = bridge.config();
        let (app, path) = match purpose {
            Purpose::Login => (&cfg.login_url, "login"),
            // Browser hand-offs are only for login and consent.
            Purpose::Consent | Purpose::Ciba => (&cfg.consent_url, "consent"),
        };
        let handoff = Handoff {
            iss: state.policy().issuer.clone(),
            aud: cfg.bank_issuer.clone(),
            iat: t,
            exp: t + cfg.token_lifetime_secs,
            jti: new_secret(),
            sid: sid(id, st),
            purpose,
            return_uri: format!("{}/interaction/{id}/hook/{path}", state.policy().issuer),
            redirect_uri: Some(st.request.redirect_uri.clone()),
            client_id: client.id().to_string(),
            client_name: client.metadata.client_name.clone(),
            software_id: client.metadata.software_id.clone(),
            scope: st.request.scope.clone(),
            intent_id: st
                .request
                .requested_claim_value(&cfg.consent_claim)
                .map(str::to_string),
            authorization_details: st.request.authorization_details.clone(),
            sub: match purpose {
                Purpose::Login => None,
                Purpose::Consent | Purpose::Ciba => {
                    st.authentication.as_ref().map(|a| a.sub.clone())
                }
            },
            acr_values: st.request.acr_values.clone(),
            login_hint: st.request.login_hint.clone(),
            ui_locales: st.request.ui_locales.clone(),
        };
        let token = match bridge.seal_handoff(&state.keys, &handoff) {
            Ok(t) => t,
            Err(e) => {
                return Ui::without_headers(&state.theme, &st.request)
                    .error(StatusCode::INTERNAL_SERVER_ERROR, &e);
            }
        };
        let Ok(mut url) = url::Url::parse(app) else {
            return Ui::without_headers(&state.theme, &st.request).error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &OAuthError::server_error(),
            );
        };
        url.query_pairs_mut().append_pair("handoff", &token);
        tracing::info!(client_id = %client.id(), hook = path, "customer sent to the bank's app");
        redirect(url.as_str())
    }

    #[derive(Deserialize)]
    pub struct ResultQuery {
        result: Option<String>,
    }

    /// Opens and checks the result; a refused one is logged and becomes
    /// `access_denied` (the reason is never sent).
    async fn open(
        state: &AppState,
        id: &str,
        st: &InteractionState,
        client_id: &str,
        result: Option<&str>,
        purpose: Purpose,
        t: i64,
    ) -> Result<HookResult, Option<OAuthError>> {
        let bridge = state.bridge().ok_or(None)?;
        let refused = |e: HookError| {
            tracing::warn!(
                event = "hook_result_refused",
                client_id,
                purpose = ?purpose,
                reason = %e,
                "result token from the bank refused"
            );
            match e {
                HookError::Unavailable => None,
                _ => Some(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the bank's answer could not be accepted",
                )),
            }
        };
        let Some(result) = result.filter(|r| !r.is_empty()) else {
            return Err(refused(HookError::Malformed));
        };
        bridge
            .open_result(&state.store, result, &sid(id, st), purpose, t)
            .await
            .map_err(refused)
    }

    async fn load(
        state: &AppState,
        req: &HttpRequest,
        id: &str,
        t: i64,
    ) -> Result<(InteractionState, Client), HttpResponse> {
        let (st, client) = load_interaction(state, req, id, t).await?;
        if !st.hook {
            return Err(error_page(
                req,
                StatusCode::BAD_REQUEST,
                &OAuthError::invalid_request("this sign-in does not use the bank's apps"),
            ));
        }
        Ok((st, client))
    }

    /// Opens the result token of a hook step; a refused token ends the
    /// interaction at the client, an unreachable bank shows the
    /// unavailable page.
    #[allow(clippy::too_many_arguments)]
    async fn open_result(
        state: &AppState,
        req: &HttpRequest,
        id: &str,
        st: &InteractionState,
        client: &Client,
        query: &ResultQuery,
        purpose: Purpose,
        t: i64,
    ) -> Result<HookResult, HttpResponse> {
        match open(
            state,
            id,
            st,
            client.id(),
            query.result.as_deref(),
            purpose,
            t,
        )
        .await
        {
            Ok(r) => Ok(r),
            Err(Some(e)) => Err(finish_interaction_error(state, id, client, st, &e, t).await),
            Err(None) => Err(unavailable(
                state,
                req,
                Some(id),
                client,
                &st.request,
                &st.request_uri_hash,
                st.presented_at,
                t,
            )
            .await),
        }
    }

    /// `GET /interaction/{id}/hook/login?result=…`: back from the bank's
    /// login app.
    #[tracing::instrument(skip_all)]
    pub async fn login_return(
        state: web::Data<AppState>,
        req: HttpRequest,
        path: web::Path<String>,
        query: web::Query<ResultQuery>,
    ) -> HttpResponse {
        let t = now();
        let id = path.into_inner();
        let (mut st, client) = match load(&state, &req, &id, t).await {
            Ok(x) => x,
            Err(page) => return page,
        };
        let r = match open_result(&state, &req, &id, &st, &client, &query, Purpose::Login, t).await
        {
            Ok(r) => r,
            Err(page) => return page,
        };
        if r.error.is_some() {
            let err = OAuthError::new(
                ErrorCode::AccessDenied,
                "the customer cancelled the sign-in",
            );
            return finish_interaction_error(&state, &id, &client, &st, &err, t).await;
        }
        st.authentication = Some(Authentication {
            sub: r.sub.unwrap_or_default(),
            auth_time: r.auth_time.unwrap_or(r.iat),
            acr: r.acr,
            amr: r.amr,
        });
        if let Err(e) = save_interaction(&state, &id, client.id(), &st, t).await {
            return error_page(&req, StatusCode::SERVICE_UNAVAILABLE, &e);
        }
        redirect(&format!("/interaction/{id}/consent"))
    }

    /// `GET /interaction/{id}/hook/consent?result=…`: back from the bank's
    /// consent app; an approval completes the interaction.
    #[tracing::instrument(skip_all, fields(client_id))]
    pub async fn consent_return(
        state: web::Data<AppState>,
        req: HttpRequest,
        path: web::Path<String>,
        query: web::Query<ResultQuery>,
    ) -> HttpResponse {
        let t = now();
        let id = path.into_inner();
        let (st, client) = match load(&state, &req, &id, t).await {
            Ok(x) => x,
            Err(page) => return page,
        };
        tracing::Span::current().record("client_id", client.id());
        let Some(auth) = st.authentication.clone() else {
            return redirect(&format!("/interaction/{id}/login"));
        };
        let r =
            match open_result(&state, &req, &id, &st, &client, &query, Purpose::Consent, t).await {
                Ok(r) => r,
                Err(page) => return page,
            };
        tracing::info!(
            target: "strongroom::security",
            event = "consent_decision",
            outcome = if r.approved() { "approved" } else { "denied" },
            client_id = client.id(),
            sub = auth.sub.as_str(),
            via = "bank_hook",
            "the customer decided on consent at the bank"
        );
        if !r.approved() {
            let err = OAuthError::new(ErrorCode::AccessDenied, "the customer denied the request");
            return finish_interaction_error(&state, &id, &client, &st, &err, t).await;
        }
        let consent_id = r.consent_id.clone().unwrap_or_default();
        if let Some(intent) = st.request.requested_claim_value(&state.consent_claim)
            && intent != consent_id
        {
            tracing::warn!(
                event = "hook_result_refused",
                reason = "consent_mismatch",
                "the bank approved another consent than the one requested"
            );
            let err = OAuthError::new(
                ErrorCode::AccessDenied,
                "the bank's answer could not be accepted",
            );
            return finish_interaction_error(&state, &id, &client, &st, &err, t).await;
        }
        let mut request = st.request.clone();
        if let Some(granted) = &r.scope {
            request.scope.retain(|s| granted.contains(s));
        }
        tracing::info!(
            event = "hook_consent_approved",
            "consent approved at the bank"
        );
        let approval = Approval {
            user_claims: r.claims,
            accounts: r.accounts,
            consent_claim: Some(state.consent_claim.to_string()),
            consent_id: Some(consent_id),
        };
        complete(&state, &id, &client, &st, request, auth, approval, t).await
    }
}

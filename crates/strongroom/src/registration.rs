//! `POST /register` (RFC 7591 §3) and `GET|PUT|DELETE /register/{client_id}`
//! (RFC 7592 §2): extract the body, its content type, the bearer token and
//! the connection's client certificate; call the `dcr` crate; render.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use dcr::{DcrError, Registered, Registrar, RegistrationRequest};
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::secret::now;

use crate::config::Config;
use crate::http::{ApiError, AppState};

/// The registration endpoint (advertised as `registration_endpoint`).
pub const REGISTER_PATH: &str = "/register";

/// Bodies above this never reach the registrar (actix answers 413); below
/// it, the registrar applies `registration.max_body_bytes` with an RFC 7591
/// error.
pub(crate) const HARD_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The path to advertise in discovery: only when a directory or initial
/// access tokens are configured (in the file or through the admin API).
pub fn advertised_path(cfg: &Config) -> Option<String> {
    (Registrar::enabled(&cfg.directories, &cfg.registration) || !cfg.admin_directories.is_empty())
        .then(|| REGISTER_PATH.to_string())
}

/// The trust anchors in force: the file's, then the admin API's.
pub fn all_directories(cfg: &Config, admin: &[dcr::DirectoryConfig]) -> Vec<dcr::DirectoryConfig> {
    cfg.directories.iter().chain(admin).cloned().collect()
}

/// Builds the registrar from the configuration (None when not configured).
pub fn registrar(cfg: &Config) -> Result<Option<Arc<Registrar>>, String> {
    registrar_with(cfg, &cfg.admin_directories)
}

/// [`registrar`] with `admin` as the admin API's directories: one
/// validation (`Registrar::new`) for the file's and the API's.
pub fn registrar_with(
    cfg: &Config,
    admin: &[dcr::DirectoryConfig],
) -> Result<Option<Arc<Registrar>>, String> {
    if !Registrar::enabled(&cfg.directories, &cfg.registration) && admin.is_empty() {
        return Ok(None);
    }
    let base = cfg.mtls_base_url().unwrap_or_else(|| cfg.issuer.clone());
    Registrar::new(
        &cfg.issuer,
        &format!("{base}{REGISTER_PATH}"),
        &all_directories(cfg, admin),
        cfg.registration.clone(),
    )
    .map(|r| {
        Some(Arc::new(
            r.with_ciba(cfg.ciba.is_some()).with_profile(cfg.profile),
        ))
    })
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(REGISTER_PATH)
            .app_data(web::PayloadConfig::new(HARD_BODY_LIMIT))
            .route(web::post().to(register)),
    )
    .service(
        web::resource("/register/{client_id}")
            .app_data(web::PayloadConfig::new(HARD_BODY_LIMIT))
            .route(web::get().to(read))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    );
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn content_type(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

fn enabled(state: &AppState) -> Result<Arc<Registrar>, ApiError> {
    state.registrar.load_full().ok_or_else(|| {
        ApiError::from(OAuthError::invalid_request(
            "dynamic client registration is not offered by this server",
        ))
    })
}

/// DCR errors: RFC 7591 §3.2.2 JSON; 401 with a Bearer challenge for
/// management (RFC 6750 §3); 429 with `Retry-After` when rate-limited.
/// The error code of a refused registration, for its security event.
fn dcr_code(e: &DcrError) -> &'static str {
    match e {
        DcrError::Protocol(err) => err.code.as_str(),
        DcrError::RateLimited { .. } => "rate_limited",
    }
}

fn render_error(e: DcrError) -> HttpResponse {
    let code = match &e {
        DcrError::Protocol(err) => err.code,
        DcrError::RateLimited { .. } => ErrorCode::TemporarilyUnavailable,
    };
    let mut res = render_dcr_error(e);
    res.extensions_mut()
        .insert(crate::telemetry::ErrorLabel::of(code));
    res
}

fn render_dcr_error(e: DcrError) -> HttpResponse {
    match e {
        DcrError::Protocol(err) if err.code == ErrorCode::InvalidToken => {
            HttpResponse::Unauthorized()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""))
                .json(err.to_json())
        }
        DcrError::Protocol(err) => actix_web::ResponseError::error_response(&ApiError::from(err)),
        DcrError::RateLimited {
            software_id,
            retry_after_secs,
        } => HttpResponse::TooManyRequests()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
            .json(
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    format!(
                        "too many registrations for software_id {software_id}; retry in {retry_after_secs} seconds"
                    ),
                )
                .to_json(),
            ),
    }
}

fn render(r: Result<Registered, DcrError>) -> HttpResponse {
    match r {
        Ok(reg) => HttpResponse::build(StatusCode::from_u16(reg.status).unwrap_or(StatusCode::OK))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(reg.body),
        Err(e) => render_error(e),
    }
}

fn request<'a>(
    req: &'a HttpRequest,
    body: &'a [u8],
    cert: Option<&'a oauth_core::cert::PeerCertificate>,
) -> RegistrationRequest<'a> {
    RegistrationRequest {
        body,
        content_type: content_type(req),
        bearer: bearer(req),
        certificate: cert,
    }
}

/// `POST /register` (RFC 7591 §3.1).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let registrar = enabled(&state)?;
    // Before the SSA's and the request's signatures are checked.
    crate::api::check_source(&state, &req)?;
    let cert = crate::tls::peer_certificate(&req);
    let r = registrar
        .register(
            &state.store,
            &state.jwks,
            request(&req, &body, cert.as_deref()),
            now(),
        )
        .await;
    match &r {
        Ok(reg) => {
            tracing::Span::current().record("client_id", reg.client_id.as_str());
            tracing::info!(
                target: "strongroom::security",
                event = "client_registered",
                client_id = reg.client_id.as_str(),
                "a client registered (RFC 7591)"
            );
        }
        Err(e) => tracing::warn!(
            target: "strongroom::security",
            event = "registration_refused",
            error = dcr_code(e),
            "a registration was refused"
        ),
    }
    Ok(render(r))
}

/// `GET /register/{client_id}` (RFC 7592 §2.1).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let registrar = enabled(&state)?;
    tracing::Span::current().record("client_id", path.as_str());
    let cert = crate::tls::peer_certificate(&req);
    let r = registrar
        .read(&state.store, &path, bearer(&req), cert.as_deref(), now())
        .await;
    Ok(render(r))
}

/// `PUT /register/{client_id}` (RFC 7592 §2.2).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let registrar = enabled(&state)?;
    tracing::Span::current().record("client_id", path.as_str());
    let cert = crate::tls::peer_certificate(&req);
    let r = registrar
        .update(
            &state.store,
            &state.jwks,
            &path,
            request(&req, &body, cert.as_deref()),
            now(),
        )
        .await;
    if r.is_ok() {
        tracing::info!(
            target: "strongroom::security",
            event = "client_updated",
            client_id = path.as_str(),
            "a client's registration was updated (RFC 7592)"
        );
    }
    Ok(render(r))
}

/// `DELETE /register/{client_id}` (RFC 7592 §2.3): 204.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let registrar = enabled(&state)?;
    tracing::Span::current().record("client_id", path.as_str());
    let cert = crate::tls::peer_certificate(&req);
    match registrar
        .delete(&state.store, &path, bearer(&req), cert.as_deref(), now())
        .await
    {
        Ok(()) => Ok({
            tracing::info!(
                target: "strongroom::security",
                event = "client_deleted",
                client_id = path.as_str(),
                "a client deleted its registration (RFC 7592)"
            );
            HttpResponse::NoContent()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }),
        Err(e) => Ok(render_error(e)),
    }
}

//! The bank-side consent lifecycle API (docs/hooks.md §7): revoke a consent
//! (every access and refresh token issued under it, at once) and list grants
//! by consent id, client or subject. Authenticated by a bank service token
//! (`Authorization: Bearer`, compared by SHA-256 in constant time) or by a
//! CA-verified client certificate whose subject matches
//! `hooks.bank_api_subject_dn`. Mounted only when one of them is configured.

use std::path::Path;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use consent_bridge::Bridge;
use oauth_core::cert::DistinguishedName;
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::secret::{constant_time_eq, now};
use oauth_core::storage::{GrantFilter, GrantRecord, GrantRepository};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::json;

use crate::config::Config;
use crate::http::{ApiError, AppState};

/// Builds the consent bridge from `[hooks]`; `extra_ca` (the dev CA in dev
/// mode) is trusted beside the system roots for calls to the bank.
pub fn bridge(cfg: &Config, extra_ca: Option<&Path>) -> Result<Option<Arc<Bridge>>, String> {
    let Some(h) = &cfg.hooks else {
        return Ok(None);
    };
    let tls = outbound_tls(extra_ca).map_err(|e| format!("hooks: {e}"))?;
    Bridge::new(h.clone(), &cfg.issuer, tls).map(|b| Some(Arc::new(b)))
}

/// The client TLS configuration for calls to the bank and to clients: the
/// system roots, plus `extra_ca` (the dev CA in dev mode).
pub fn outbound_tls(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
            let cert = cert.map_err(|e| e.to_string())?;
            roots.add(cert).map_err(|e| e.to_string())?;
        }
    }
    let provider = Arc::new(crate::tls::crypto_provider(crate::tls::TlsProfile::Fapi2));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unauthorized() -> ApiError {
    OAuthError::new(ErrorCode::InvalidToken, "bank service credentials required").into()
}

/// The bank service token or certificate; anything else is `invalid_token`.
pub(crate) fn authenticate_bank(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let bridge = state.bridge();
    let Some(h) = bridge.as_ref().map(|b| b.config()) else {
        return Err(unauthorized());
    };
    if !h.bank_api_token_sha256.is_empty()
        && let Some(token) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        && constant_time_eq(
            sha256_hex(token.trim()).as_bytes(),
            h.bank_api_token_sha256.to_ascii_lowercase().as_bytes(),
        )
    {
        return Ok(());
    }
    if !h.bank_api_subject_dn.is_empty()
        && let Some(cert) = crate::tls::peer_certificate(req)
        && cert.ca_verified
        && cert.is_valid_at(now())
        && DistinguishedName::parse_rfc4514(&h.bank_api_subject_dn)
            .is_ok_and(|dn| cert.subject.matches(&dn))
    {
        return Ok(());
    }
    tracing::warn!("bank API: refused credentials");
    Err(unauthorized())
}

pub(crate) fn grant_json(g: &GrantRecord) -> serde_json::Value {
    let details: oauth_core::authorization::GrantDetails =
        serde_json::from_str(&g.details).unwrap_or_default();
    json!({
        "grant_id": g.grant_id,
        "client_id": g.client_id,
        "sub": g.sub,
        "scope": g.scope,
        "consent_id": g.consent_id,
        "accounts": details.accounts,
        "created_at": g.created_at,
        "revoked_at": g.revoked_at,
    })
}

fn no_store_json(v: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(v)
}

/// `POST /bank/consents/{consent_id}/revoke`: revokes every grant carrying
/// the consent and all their tokens, atomically; idempotent.
#[tracing::instrument(skip_all, fields(consent_id))]
pub async fn revoke_consent(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authenticate_bank(&state, &req)?;
    let consent_id = path.into_inner();
    tracing::Span::current().record("consent_id", consent_id.as_str());
    let n = state
        .store
        .revoke_by_consent(&consent_id, now())
        .await
        .map_err(OAuthError::from)?;
    tracing::info!(
        target: "strongroom::security",
        event = "consent_revoked",
        consent_id = consent_id.as_str(),
        grants = n,
        "consent revoked by the bank"
    );
    Ok(no_store_json(
        json!({"consent_id": consent_id, "revoked_grants": n}),
    ))
}

#[derive(Deserialize)]
pub struct GrantQuery {
    consent_id: Option<String>,
    client_id: Option<String>,
    sub: Option<String>,
}

/// `GET /bank/grants?consent_id=…&client_id=…&sub=…` (at least one).
pub async fn list_grants(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<GrantQuery>,
) -> Result<HttpResponse, ApiError> {
    authenticate_bank(&state, &req)?;
    let q = query.into_inner();
    if q.consent_id.is_none() && q.client_id.is_none() && q.sub.is_none() {
        return Err(OAuthError::invalid_request("name a consent_id, client_id or sub").into());
    }
    let grants = state
        .store
        .list_grants(GrantFilter {
            consent_id: q.consent_id,
            client_id: q.client_id,
            sub: q.sub,
        })
        .await
        .map_err(OAuthError::from)?;
    Ok(no_store_json(
        json!({"grants": grants.iter().map(grant_json).collect::<Vec<_>>()}),
    ))
}

/// Registers the bank API routes (refused with `invalid_token` when no bank
/// credential is configured).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/bank/consents/{consent_id}/revoke",
        web::post().to(revoke_consent),
    )
    .route("/bank/grants", web::get().to(list_grants));
}

//! Who may call the admin API: an access token with the route's scope,
//! either
//! - issued by this provider with `client_credentials` to one of
//!   `admin.clients`, sender-constrained (DPoP: the proof's `htu` is
//!   `admin.url` + the path; a certificate-bound token would need the
//!   certificate on this plain listener, so in practice DPoP), checked as
//!   every protected resource checks it
//!   ([`oauth_core::userinfo::bound_access_token`]); or
//! - a JWT access token (RFC 9068) of one of `admin.trusted_issuers`:
//!   `typ` `at+jwt`, signed with an allowed algorithm by a key of the
//!   issuer's JWKS, `iss` and `aud` as configured, unexpired.
//!
//! No token, a bad one or another client's: 401 with `WWW-Authenticate`; a
//! good token without the scope: 403 `insufficient_scope`.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::{StatusCode, header};
use oauth_core::client::{Client, ClientMetadata};
use oauth_core::error::ErrorCode;
use oauth_core::jwks_resolver::JwksResolver;
use oauth_core::keys::JwsAlg;
use oauth_core::secret::{hash_secret, now};
use oauth_core::sender_constraint::dpop::DpopCheck;
use oauth_core::storage::TokenRepository as _;
use oauth_core::userinfo::{AuthScheme, ResourceError};
use serde_json::Value;

use super::{AdminState, Refusal};
use crate::config::TrustedIssuer;
use crate::fetch::HttpFetcher;

/// The caller, as the audit log names it.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The token's subject (a client_credentials token's is its client).
    pub sub: String,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

/// `admin.trusted_issuers`, each with a synthetic client whose `jwks_uri`
/// is the issuer's, so that the clients' key resolver fetches and caches
/// them (rate-limited refetch on an unknown `kid`).
pub struct TrustedIssuers {
    issuers: Vec<(TrustedIssuer, Client)>,
    resolver: Arc<JwksResolver<HttpFetcher>>,
}

impl TrustedIssuers {
    pub fn new(config: &[TrustedIssuer], resolver: Arc<JwksResolver<HttpFetcher>>) -> Self {
        let issuers = config
            .iter()
            .map(|t| {
                let metadata = ClientMetadata {
                    jwks_uri: Some(t.jwks_uri.clone()),
                    ..serde_json::from_value(serde_json::json!({"client_id": t.issuer}))
                        .expect("a client_id alone is metadata")
                };
                let client = Client {
                    metadata,
                    secret_hash: None,
                    scopes: Vec::new(),
                };
                (t.clone(), client)
            })
            .collect();
        TrustedIssuers { issuers, resolver }
    }
}

fn challenge(e: &ResourceError) -> Refusal {
    Refusal {
        status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED),
        error: e.code.as_str(),
        description: e
            .description
            .clone()
            .unwrap_or(std::borrow::Cow::Borrowed("")),
        challenge: e.www_authenticate(),
        dpop_nonce: e.dpop_nonce.clone(),
        resource_id: None,
    }
}

/// RFC 6750 §3.1: a request without credentials gets a bare challenge.
fn no_credentials() -> Refusal {
    Refusal {
        challenge: Some(format!(
            "DPoP algs=\"{}\", Bearer",
            JwsAlg::ALL
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        )),
        ..Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "an admin access token is required",
        )
    }
}

/// A 403 `insufficient_scope` unless `actor`'s token carries `scope`.
pub(crate) fn require_scope(actor: &Actor, scope: &'static str) -> Result<(), Refusal> {
    if actor.scopes.iter().any(|s| s == scope) {
        return Ok(());
    }
    let e = ResourceError {
        scope: Some(scope),
        ..ResourceError::new(
            ErrorCode::InsufficientScope,
            AuthScheme::Bearer,
            "the access token does not carry the scope this route needs",
        )
    };
    Err(challenge(&e))
}

/// The caller of `req`, if its token is valid (and, with
/// `admin.client_subject_dns`, its connection's certificate one of them).
pub(crate) async fn authenticate(st: &AdminState, req: &HttpRequest) -> Result<Actor, Refusal> {
    if !st.client_dns.is_empty() {
        let t = now();
        let allowed = crate::tls::peer_certificate(req).is_some_and(|c| {
            c.ca_verified
                && c.is_valid_at(t)
                && st.client_dns.iter().any(|dn| c.subject.matches(dn))
        });
        if !allowed {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "this listener requires an admin's client certificate",
            ));
        }
    }
    let Some(auth) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(no_credentials());
    };
    let (scheme, token) = auth
        .split_once(' ')
        .and_then(|(s, t)| Some((AuthScheme::parse(s)?, t.trim())))
        .ok_or_else(|| {
            challenge(&ResourceError::invalid_token(
                AuthScheme::Bearer,
                "unsupported authorization scheme",
            ))
        })?;
    let dpop = match scheme {
        AuthScheme::DPoP => Some(verify_dpop(st, req, token).await?),
        AuthScheme::Bearer => None,
    };
    oauth_core::userinfo::presented(token, scheme, dpop.is_some()).map_err(|e| challenge(&e))?;
    let t = now();
    let found = st
        .app
        .store
        .get_active_token(&hash_secret(token), t)
        .await
        .map_err(Refusal::from)?;
    if found.is_none() && scheme == AuthScheme::Bearer && token.split('.').count() == 3 {
        return external(st, token, t).await;
    }
    let cert = crate::tls::peer_certificate(req);
    let tok = oauth_core::userinfo::bound_access_token(
        found,
        scheme,
        dpop.as_ref(),
        cert.as_ref().map(|c| c.x5t_s256.as_str()),
    )
    .map_err(|e| challenge(&e))?;
    if !st.cfg.admin.clients.contains(&tok.client_id) {
        return Err(challenge(&ResourceError::invalid_token(
            scheme,
            "the access token's client is not an admin client",
        )));
    }
    if tok.cnf_jkt.is_none() && tok.cnf_x5t.is_none() {
        return Err(challenge(&ResourceError::invalid_token(
            scheme,
            "admin access tokens must be sender-constrained (DPoP)",
        )));
    }
    Ok(Actor {
        sub: tok.sub.clone().unwrap_or_else(|| tok.client_id.clone()),
        client_id: Some(tok.client_id.clone()),
        scopes: tok.scope.split(' ').map(str::to_owned).collect(),
    })
}

async fn verify_dpop(
    st: &AdminState,
    req: &HttpRequest,
    token: &str,
) -> Result<oauth_core::authorization::DpopProof, Refusal> {
    let proofs: Vec<&str> = req
        .headers()
        .get_all("dpop")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let htu = format!("{}{}", st.base_url, req.path());
    let check = DpopCheck {
        proofs: &proofs,
        htm: req.method().as_str(),
        htu: &htu,
        access_token: Some(token),
        nonce_required: st.app.policy().require_dpop_nonce,
    };
    let proof = oauth_core::sender_constraint::dpop::verify_proof(
        &st.app.store,
        &st.app.policy(),
        &st.app.dpop_nonces,
        check,
        now(),
    )
    .await
    .map_err(|e| challenge(&ResourceError::from(e)))?;
    proof.ok_or_else(|| {
        challenge(&ResourceError::invalid_dpop_proof(
            "the DPoP scheme needs a DPoP proof",
        ))
    })
}

/// RFC 9068 §4: a JWT access token of a trusted issuer.
async fn external(st: &AdminState, token: &str, t: i64) -> Result<Actor, Refusal> {
    let invalid = |d: &'static str| challenge(&ResourceError::invalid_token(AuthScheme::Bearer, d));
    let bad = || invalid("the access token is invalid, expired or revoked");
    let header = oauth_core::keys::peek_header(token).map_err(|_| bad())?;
    let claims = unverified_claims(token).ok_or_else(bad)?;
    let iss = claims.get("iss").and_then(Value::as_str).ok_or_else(bad)?;
    let Some((issuer, client)) = st.issuers.issuers.iter().find(|(i, _)| i.issuer == iss) else {
        return Err(invalid("the access token's issuer is not trusted"));
    };
    let allowed: Vec<JwsAlg> = issuer
        .algorithms
        .iter()
        .filter_map(|a| JwsAlg::parse(a).ok())
        .collect();
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| JwsAlg::parse(a).ok())
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| invalid("the access token's algorithm is not allowed"))?;
    let jwk = st
        .issuers
        .resolver
        .key_for(client, header.get("kid").and_then(Value::as_str), alg, t)
        .await
        .map_err(|_| invalid("no key of the issuer verifies the access token"))?;
    let mut checks = oauth_core::keys::VerifyOptions::new(t).typ("at+jwt");
    checks.issuer = Some(issuer.issuer.clone());
    checks.audience = Some(vec![issuer.audience.clone()]);
    checks.required_claims = vec!["exp".into(), "sub".into(), "iat".into()];
    let verified = oauth_core::keys::verify_jws(token, &jwk, &allowed, &checks)
        .map_err(|_| bad())?
        .claims;
    let sub = verified
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_owned();
    Ok(Actor {
        sub: format!("{iss}#{sub}"),
        client_id: verified
            .get("client_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        scopes: verified
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split(' ')
            .map(str::to_owned)
            .collect(),
    })
}

/// The payload of a compact JWS before verification: only to pick the
/// issuer whose keys verify it.
fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

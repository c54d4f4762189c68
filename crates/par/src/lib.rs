//! Pushed authorization requests (RFC 9126).
//!
//! The client pushes its authorization request over an authenticated back
//! channel ([`push`]) and gets a one-time `request_uri`; the browser then
//! carries only `client_id` and `request_uri` to the authorization endpoint,
//! which looks the request up ([`resolve`]) as often as the login needs and
//! spends it once the interaction ends ([`complete`], or with the code).
//!
//! The request is validated here, once, by the shared pipeline
//! ([`oauth_core::request::validate_authorization_request`]); what is stored
//! is the validated [`AuthorizationRequest`]. The `request_uri` carries 256
//! random bits and is stored only as its SHA-256 hash.

use oauth_core::authorization::{AuthorizationRequest, DpopProof};
use oauth_core::client::AuthenticatedClient;
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::jwks_resolver::{JwksFetcher, JwksResolver};
use oauth_core::policy::Policy;
use oauth_core::request::{single_param, validate_authorization_request, verify_request_object};
use oauth_core::secret::{hash_secret, new_secret};
use oauth_core::storage::{PushedRequestRecord, PushedRequestRepository, ReplayCache};
use serde::{Deserialize, Serialize};

/// RFC 9126 §2.2: the URN namespace of request URIs we issue.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The successful response (RFC 9126 §2.2), sent as JSON with HTTP 201.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedAuthorizationResponse {
    pub request_uri: String,
    /// Seconds until `request_uri` expires.
    pub expires_in: i64,
}

/// Handles a pushed authorization request (RFC 9126 §2.1, FAPI 2.0
/// Security Profile §5.3.2.2, Message Signing §5.3.2) from a client that
/// has already been authenticated at this endpoint.
///
/// `params` is the form body as received (duplicates refused, RFC 6749
/// §3.1); `dpop` the verified DPoP proof sent with it, if any (RFC 9449
/// §10.1). A `client_id` parameter must name the authenticated client; a
/// `request_uri` parameter is refused (RFC 9126 §2.1). With a `request`
/// parameter the request object is verified and only its claims count
/// (RFC 9126 §3); without one, the request is refused when the policy
/// requires signed request objects.
///
/// Errors are JSON responses with [`OAuthError::status`] (RFC 9126 §2.3):
/// `invalid_request`, `invalid_request_object`, `invalid_scope`,
/// `unsupported_response_type`, `invalid_dpop_proof`, … Nothing is stored
/// unless the whole request is valid.
#[tracing::instrument(skip_all, fields(client_id = %client.client.id()))]
#[allow(clippy::too_many_arguments)]
pub async fn push<S: PushedRequestRepository + ReplayCache, F: JwksFetcher>(
    store: &S,
    jwks: &JwksResolver<F>,
    keys: &oauth_core::keys::Keys,
    policy: &Policy,
    client: &AuthenticatedClient,
    params: &[(String, String)],
    dpop: Option<&DpopProof>,
    now: i64,
) -> Result<PushedAuthorizationResponse, OAuthError> {
    let client = &client.client;
    let form_client_id = single_param(params, "client_id")?;
    if form_client_id.is_some_and(|id| id != client.id()) {
        return Err(OAuthError::invalid_request(
            "client_id does not match the authenticated client",
        ));
    }
    if single_param(params, "request_uri")?.is_some() {
        return Err(OAuthError::invalid_request(
            "request_uri must not be sent to the pushed authorization request endpoint",
        ));
    }
    let request_object = match single_param(params, "request")? {
        Some(jwt) => Some(
            verify_request_object(store, jwks, keys, policy, client, form_client_id, jwt, now)
                .await?,
        ),
        None if policy.profile_for(client).requires_signed_request_object() => {
            return Err(OAuthError::invalid_request(
                "signed request object required",
            ));
        }
        None => None,
    };
    let request =
        validate_authorization_request(client, params, request_object.as_ref(), policy, dpop)?;
    let response = store_request(store, policy, &request, now).await?;
    tracing::info!(
        signed = request_object.is_some(),
        "pushed authorization request stored"
    );
    Ok(response)
}

/// Stores a validated request under a fresh one-time `request_uri`, as
/// [`push`] does: also for a request object sent by value to the
/// authorization endpoint (FAPI 1.0 Advanced), so that from there on both
/// kinds are resolved, spent and completed alike.
pub async fn store_request<S: PushedRequestRepository>(
    store: &S,
    policy: &Policy,
    request: &AuthorizationRequest,
    now: i64,
) -> Result<PushedAuthorizationResponse, OAuthError> {
    let json = serde_json::to_string(request).map_err(|e| {
        tracing::error!(error = %e, "validated authorization request does not serialise");
        OAuthError::server_error()
    })?;
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", new_secret());
    let expires_in = policy.par_lifetime_secs;
    store
        .put_pushed_request(PushedRequestRecord {
            request_uri_hash: hash_secret(&request_uri),
            client_id: request.client_id.clone(),
            request: json,
            expires_at: now.saturating_add(expires_in),
            created_at: now,
        })
        .await?;
    Ok(PushedAuthorizationResponse {
        request_uri,
        expires_in,
    })
}

fn invalid_request_uri() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidRequestUri,
        "request_uri is unknown, expired or already used",
    )
}

/// The pushed request behind `request_uri`, for the authorization endpoint
/// (RFC 9126 §4). Unknown, expired or spent URIs, and URIs pushed by
/// another client than `client_id`, are `invalid_request_uri`.
///
/// Not one-time: the authorization endpoint may be visited again with the
/// same URI before the login completes; [`complete`] spends it.
pub async fn resolve<S: PushedRequestRepository>(
    store: &S,
    client_id: &str,
    request_uri: &str,
    now: i64,
) -> Result<AuthorizationRequest, OAuthError> {
    let rec = store
        .get_pushed_request(&hash_secret(request_uri), now)
        .await?;
    resolved(rec, client_id, now)
}

/// [`resolve`] for a caller that read the record itself
/// ([`PushedRequestRepository::get_pushed_request`] of the `request_uri`'s
/// [`hash_secret`], or a read that fetches it together with other rows).
pub fn resolved(
    rec: Option<PushedRequestRecord>,
    client_id: &str,
    now: i64,
) -> Result<AuthorizationRequest, OAuthError> {
    let rec = rec
        .filter(|rec| rec.expires_at > now)
        .ok_or_else(invalid_request_uri)?;
    if rec.client_id != client_id {
        tracing::info!(client_id, "request_uri presented by another client");
        return Err(OAuthError::new(
            ErrorCode::InvalidRequestUri,
            "request_uri was not issued to this client",
        ));
    }
    let request: AuthorizationRequest = serde_json::from_str(&rec.request).map_err(|e| {
        tracing::error!(client_id, error = %e, "stored pushed request unreadable");
        OAuthError::server_error()
    })?;
    if request.client_id != client_id {
        tracing::error!(client_id, "stored pushed request names another client");
        return Err(OAuthError::server_error());
    }
    Ok(request)
}

/// Spends the pushed request at the end of an interaction that ends without
/// a code (RFC 9126 §4: one-time use); `request_uri_hash` is what the
/// interaction keeps ([`hash_secret`] of the `request_uri`), `now` when the
/// URI was validly presented. Only the first call succeeds, also across
/// server instances; later ones, and calls after expiry, are
/// `invalid_request_uri`. An interaction that ends with a code spends it in
/// the code's own write
/// ([`AuthorizationCodeRepository::put_grant_and_code`](oauth_core::storage::AuthorizationCodeRepository::put_grant_and_code)).
pub async fn complete<S: PushedRequestRepository>(
    store: &S,
    request_uri_hash: &str,
    now: i64,
) -> Result<(), OAuthError> {
    if store.consume_pushed_request(request_uri_hash, now).await? {
        Ok(())
    } else {
        Err(invalid_request_uri())
    }
}

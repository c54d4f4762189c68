//! Client authentication at the token, PAR, introspection, revocation and
//! backchannel authentication endpoints (RFC 6749 §2.3, RFC 7521 §4.2,
//! RFC 7523 §2.2, OpenID Connect Core §9, RFC 8705 §2, FAPI 2.0 Security
//! Profile §5.3.2.1).
//!
//! The server extracts the evidence from the HTTP request into a
//! [`ClientAuthRequest`] and calls [`authenticate`] once, before anything
//! else the endpoint does. The result names the client and the method it
//! used. Every failure is `invalid_client` (HTTP 401; the server adds
//! `WWW-Authenticate` when the client tried HTTP Basic, RFC 6749 §5.2),
//! except presenting several methods at once, which is `invalid_request`.
//!
//! Which method a request uses follows from what it carries: a
//! `client_assertion` (or `client_assertion_type`) → `private_key_jwt`;
//! Basic credentials → `client_secret_basic`; a `client_secret` form
//! parameter → `client_secret_post`; none of these but a client certificate
//! and a `client_id` → the client's registered mutual-TLS method. A
//! certificate alone never counts as a second method, because certificate-
//! bound tokens (RFC 8705 §3) put one on every request of a
//! `private_key_jwt` client too.
//!
//! Descriptions never tell an unknown client from a wrong credential: every
//! check that needs the client's registration fails with the same text, and
//! the reason is logged.

mod client_secret;
mod private_key_jwt;
pub(crate) use private_key_jwt::replayed as assertion_replayed;
mod self_signed;
mod tls_client_auth;

#[cfg(test)]
pub(crate) mod test_support;

pub use client_secret::decode_basic_authorization;
pub use private_key_jwt::{JWT_BEARER_ASSERTION_TYPE, MAX_ASSERTION_LIFETIME_SECS};
pub use self_signed::certificate_key_registered;

use crate::cert::PeerCertificate;
use crate::client::{AuthMethod, AuthenticatedClient, Client};
use crate::error::OAuthError;
use crate::jwks_resolver::{JwksFetcher, JwksResolver};
use crate::policy::Policy;
use crate::storage::{ClientRepository, ReplayCache};

/// The endpoint a client authenticates at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endpoint {
    /// RFC 6749 §3.2.
    #[default]
    Token,
    /// RFC 9126 §2.
    Par,
    /// RFC 7662 §2.1.
    Introspection,
    /// RFC 7009 §2.1.
    Revocation,
    /// OpenID Connect CIBA §7.1.
    Backchannel,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Par => "par",
            Endpoint::Introspection => "introspection",
            Endpoint::Revocation => "revocation",
            Endpoint::Backchannel => "backchannel",
        }
    }
}

/// The client-authentication evidence of one request, as the server
/// extracted it. Absent parameters are `None`; an empty form value should
/// be passed as `None` too.
#[derive(Clone, Copy, Default)]
pub struct ClientAuthRequest<'a> {
    pub endpoint: Endpoint,
    /// The URL of the endpoint in use, as published (FAPI 1 profiles accept
    /// it as the assertion `aud`).
    pub endpoint_url: &'a str,
    /// The published token endpoint URL(s), plain and mTLS alias
    /// (RFC 8705 §5); FAPI 1 profiles accept them as the assertion `aud` at
    /// every endpoint. Ignored under FAPI 2, where only the issuer is.
    pub token_endpoint_urls: &'a [&'a str],
    /// The `client_id` form parameter.
    pub client_id: Option<&'a str>,
    pub client_assertion_type: Option<&'a str>,
    pub client_assertion: Option<&'a str>,
    /// `Authorization: Basic`, decoded with [`decode_basic_authorization`].
    pub basic: Option<(&'a str, &'a str)>,
    /// The `client_secret` form parameter.
    pub client_secret: Option<&'a str>,
    /// The client certificate of the connection (or from a trusted proxy).
    pub certificate: Option<&'a PeerCertificate>,
}

impl std::fmt::Debug for ClientAuthRequest<'_> {
    /// Secrets and assertions are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthRequest")
            .field("endpoint", &self.endpoint)
            .field("endpoint_url", &self.endpoint_url)
            .field("client_id", &self.client_id)
            .field("client_assertion_type", &self.client_assertion_type)
            .field("client_assertion", &self.client_assertion.map(|_| "…"))
            .field("basic", &self.basic.map(|(id, _)| (id, "…")))
            .field("client_secret", &self.client_secret.map(|_| "…"))
            .field(
                "certificate",
                &self.certificate.map(|c| c.subject_dn.as_str()),
            )
            .finish()
    }
}

/// The one description for failures that depend on the client's
/// registration.
pub(crate) const AUTH_FAILED: &str = "client authentication failed";

/// `invalid_client` with the uniform description; `reason` goes to the log.
pub(crate) fn failed(client_id: &str, reason: &str) -> OAuthError {
    tracing::info!(client_id, reason, "client authentication failed");
    OAuthError::invalid_client(AUTH_FAILED)
}

/// The registered client, or `invalid_client` (unknown, or a stored
/// registration that no longer validates).
pub(crate) async fn load_client<S: ClientRepository>(
    store: &S,
    client_id: &str,
) -> Result<Client, OAuthError> {
    if client_id.is_empty() || client_id.len() > 255 {
        return Err(failed("-", "client_id of impossible length"));
    }
    match store.get_client(client_id).await? {
        None => Err(failed(client_id, "unknown client")),
        Some(rec) => Client::from_record(&rec).map_err(|e| {
            tracing::error!(client_id, error = %e, "stored client registration is unusable");
            OAuthError::invalid_client(AUTH_FAILED)
        }),
    }
}

/// Client authentication (RFC 6749 §2.3) at the current time; see
/// [`authenticate_at`].
pub async fn authenticate<S, F>(
    store: &S,
    jwks: &JwksResolver<F>,
    policy: &Policy,
    req: ClientAuthRequest<'_>,
) -> Result<AuthenticatedClient, OAuthError>
where
    S: ClientRepository + ReplayCache,
    F: JwksFetcher,
{
    authenticate_at(store, jwks, policy, req, crate::secret::now()).await
}

/// Authenticates the client of a request (RFC 6749 §2.3) with exactly one
/// method, which must be its registered `token_endpoint_auth_method`
/// (RFC 7591 §2).
pub async fn authenticate_at<S, F>(
    store: &S,
    jwks: &JwksResolver<F>,
    policy: &Policy,
    req: ClientAuthRequest<'_>,
    now: i64,
) -> Result<AuthenticatedClient, OAuthError>
where
    S: ClientRepository + ReplayCache,
    F: JwksFetcher,
{
    let jwt = req.client_assertion.is_some() || req.client_assertion_type.is_some();
    let basic = req.basic.is_some();
    let post = req.client_secret.is_some();
    // RFC 6749 §2.3: "The client MUST NOT use more than one authentication
    // method in each request."
    if [jwt, basic, post].iter().filter(|b| **b).count() > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method was used",
        ));
    }
    let result = if jwt {
        private_key_jwt::authenticate(store, jwks, policy, &req, now).await
    } else if let Some((id, secret)) = req.basic {
        secret_auth(store, &req, id, secret, AuthMethod::ClientSecretBasic).await
    } else if let Some(secret) = req.client_secret {
        // RFC 6749 §2.3.1: client_secret_post sends client_id beside it.
        let id = req.client_id.ok_or_else(|| {
            OAuthError::invalid_client("client_id is required with client_secret")
        })?;
        secret_auth(store, &req, id, secret, AuthMethod::ClientSecretPost).await
    } else {
        match (req.certificate, req.client_id) {
            // RFC 8705 §2: the client_id parameter names the client.
            (Some(cert), Some(id)) => mtls_auth(store, jwks, id, cert, now).await,
            _ => Err(OAuthError::invalid_client(
                "client authentication is required",
            )),
        }
    };
    if let Ok(ok) = &result
        && !policy
            .profile_for(&ok.client)
            .allows_fapi_auth_method(ok.method)
    {
        return Err(failed(
            ok.client.id(),
            "authentication method not allowed under this profile",
        ));
    }
    if let Ok(ok) = &result {
        tracing::debug!(
            client_id = ok.client.id(),
            method = ok.method.as_str(),
            endpoint = req.endpoint.as_str(),
            "client authenticated"
        );
    }
    result
}

async fn secret_auth<S: ClientRepository>(
    store: &S,
    req: &ClientAuthRequest<'_>,
    id: &str,
    secret: &str,
    method: AuthMethod,
) -> Result<AuthenticatedClient, OAuthError> {
    if method == AuthMethod::ClientSecretBasic && req.client_id.is_some_and(|p| p != id) {
        return Err(OAuthError::invalid_client(
            "client_id does not match the Basic credentials",
        ));
    }
    let client = load_client(store, id).await?;
    if client.auth_method() != method {
        return Err(failed(id, "not the registered authentication method"));
    }
    client_secret::verify(&client, secret)?;
    Ok(AuthenticatedClient { client, method })
}

async fn mtls_auth<S: ClientRepository, F: JwksFetcher>(
    store: &S,
    jwks: &JwksResolver<F>,
    id: &str,
    cert: &PeerCertificate,
    now: i64,
) -> Result<AuthenticatedClient, OAuthError> {
    let client = load_client(store, id).await?;
    let method = client.auth_method();
    match method {
        AuthMethod::TlsClientAuth => tls_client_auth::verify(&client, cert, now)?,
        AuthMethod::SelfSignedTlsClientAuth => {
            self_signed::verify(jwks, &client, cert, now).await?
        }
        _ => {
            return Err(failed(
                id,
                "a certificate is not the registered authentication method",
            ));
        }
    }
    Ok(AuthenticatedClient { client, method })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_support::*;
    use super::*;
    use crate::jwks_resolver::test_support::MockFetcher;
    use crate::policy::Profile;
    use crate::secret::hash_secret;

    #[tokio::test]
    async fn one_method_per_request() {
        let key = TestKey::ec(Some("k1"));
        let pk = client(
            json!({"client_id": "pk", "redirect_uris": ["https://tpp.example/cb"],
                "jwks": {"keys": [key.jwk]}}),
            None,
        );
        let basic = client(
            json!({"client_id": "basic", "redirect_uris": ["https://app.example/cb"],
                "token_endpoint_auth_method": "client_secret_basic", "fapi": false}),
            Some(hash_secret("s")),
        );
        let store = MemStore::with_clients(&[&pk, &basic]);
        let jwks = JwksResolver::new(MockFetcher::default());
        let policy = Policy::new(ISSUER, Profile::Fapi2);
        let a = key.sign(&assertion_claims("pk"));
        let run = |req| authenticate_at(&store, &jwks, &policy, req, T0);

        let two: [ClientAuthRequest<'_>; 4] = [
            ClientAuthRequest {
                basic: Some(("pk", "s")),
                ..assertion_request(&a)
            },
            ClientAuthRequest {
                client_secret: Some("s"),
                ..assertion_request(&a)
            },
            ClientAuthRequest {
                client_id: Some("basic"),
                basic: Some(("basic", "s")),
                client_secret: Some("s"),
                ..Default::default()
            },
            ClientAuthRequest {
                client_assertion_type: Some(JWT_BEARER_ASSERTION_TYPE),
                basic: Some(("basic", "s")),
                ..Default::default()
            },
        ];
        for req in two {
            let err = run(req).await.unwrap_err();
            assert_eq!(err.code.as_str(), "invalid_request", "{req:?}");
            assert_eq!(err.status(), 400);
        }
        // Nothing at all, or only a client_id.
        for req in [
            ClientAuthRequest::default(),
            ClientAuthRequest {
                client_id: Some("pk"),
                ..Default::default()
            },
        ] {
            let err = run(req).await.unwrap_err();
            assert_eq!(err.code.as_str(), "invalid_client");
            assert_eq!(err.status(), 401);
        }
        assert!(run(assertion_request(&a)).await.is_ok());
    }

    #[test]
    fn futures_are_send_for_multi_threaded_servers() {
        fn is_send<T: Send>(_: &T) {}
        let store = MemStore::default();
        let jwks = JwksResolver::new(MockFetcher::default());
        let policy = Policy::new(ISSUER, Profile::Fapi2);
        is_send(&authenticate_at(
            &store,
            &jwks,
            &policy,
            ClientAuthRequest::default(),
            T0,
        ));
        let nonces = crate::sender_constraint::DpopNonces::new(b"k");
        is_send(&crate::sender_constraint::verify_proof(
            &store,
            &policy,
            &nonces,
            crate::sender_constraint::DpopCheck {
                proofs: &[],
                htm: "POST",
                htu: TOKEN_URL,
                access_token: None,
                nonce_required: false,
            },
            T0,
        ));
    }

    #[test]
    fn debug_never_prints_credentials() {
        let req = ClientAuthRequest {
            client_assertion: Some("eyJhbGciOiJFUzI1NiJ9.secret-payload.sig"),
            basic: Some(("id", "basic-secret")),
            client_secret: Some("post-secret"),
            ..Default::default()
        };
        let s = format!("{req:?}");
        for secret in ["secret-payload", "basic-secret", "post-secret"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(s.contains("\"id\""));
    }
}

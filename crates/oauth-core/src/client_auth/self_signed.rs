//! `self_signed_tls_client_auth` (RFC 8705 §2.2): the client presents a
//! (self-signed) certificate whose public key is one of the keys it
//! registered in `jwks` / `jwks_uri`. The TLS handshake already proved
//! possession of the private key; chain and validity dates do not matter.

use super::failed;
use crate::cert::PeerCertificate;
use crate::client::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::jwks_resolver::{JwksFetcher, JwksResolver, KeyLookupError};
use crate::keys::has_private_members;

pub(super) async fn verify<F: JwksFetcher>(
    jwks: &JwksResolver<F>,
    client: &Client,
    cert: &PeerCertificate,
    now: i64,
) -> Result<(), OAuthError> {
    match certificate_key_registered(jwks, client, cert, now).await {
        Ok(()) => Ok(()),
        Err(e @ KeyLookupError::Unavailable) => {
            tracing::info!(
                client_id = client.id(),
                "client keys unavailable for client authentication"
            );
            Err(e.to_oauth(ErrorCode::InvalidClient))
        }
        Err(_) => Err(failed(
            client.id(),
            "certificate key is not a registered key",
        )),
    }
}

/// RFC 8705 §2.2: whether the public key of `cert` is one of the keys the
/// client registered (`jwks`, or the set at `jwks_uri`), as a public JWK
/// or as the `x5c[0]` of one. The one test of a `self_signed_tls_client_auth`
/// certificate, used by client authentication and by registration (RFC 7591
/// §2: the certificate of the registering connection against the `jwks` /
/// `jwks_uri` being registered), so both accept the same certificates.
///
/// Chain and validity dates do not matter. RFC 8705 §2.2.2: a newly rotated
/// certificate may only be in a `jwks_uri` set not fetched yet, so a miss
/// refetches once (rate-limited).
pub async fn certificate_key_registered<F: JwksFetcher>(
    jwks: &JwksResolver<F>,
    client: &Client,
    cert: &PeerCertificate,
    now: i64,
) -> Result<(), KeyLookupError> {
    jwks.find_key(client, now, |k| {
        !has_private_members(k) && cert.public_key_matches_jwk(k)
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::cert::PeerCertificate;
    use crate::client::{AuthMethod, AuthenticatedClient};
    use crate::client_auth::test_support::*;
    use crate::client_auth::{ClientAuthRequest, authenticate_at};
    use crate::error::OAuthError;
    use crate::jwks_resolver::test_support::MockFetcher;
    use crate::jwks_resolver::{FetchError, JwksResolver};
    use crate::policy::{Policy, Profile};

    const URI: &str = "https://tpp.example/ss/jwks.json";

    fn ss_client(id: &str, keys: Option<Value>) -> crate::client::Client {
        let mut meta = json!({
            "client_id": id, "redirect_uris": ["https://tpp.example/cb"],
            "token_endpoint_auth_method": "self_signed_tls_client_auth",
        });
        match keys {
            Some(jwks) => meta["jwks"] = jwks,
            None => meta["jwks_uri"] = json!(URI),
        }
        client(meta, None)
    }

    async fn run(
        store: &MemStore,
        jwks: &JwksResolver<MockFetcher>,
        id: &str,
        cert: &PeerCertificate,
        now: i64,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let req = ClientAuthRequest {
            endpoint_url: TOKEN_URL,
            client_id: Some(id),
            certificate: Some(cert),
            ..Default::default()
        };
        authenticate_at(store, jwks, &Policy::new(ISSUER, Profile::Fapi2), req, now).await
    }

    #[tokio::test]
    async fn certificate_key_must_be_a_registered_key() {
        let (cert, jwk) = self_signed_cert("tpp");
        let (other_cert, _) = self_signed_cert("tpp");
        let other_key = TestKey::ec(None);
        let store = MemStore::with_clients(&[&ss_client(
            "ss",
            Some(json!({"keys": [other_key.jwk, jwk]})),
        )]);
        let jwks = JwksResolver::new(MockFetcher::default());
        let ok = run(&store, &jwks, "ss", &cert, T0).await.unwrap();
        assert_eq!(ok.method, AuthMethod::SelfSignedTlsClientAuth);
        assert_eq!(
            code(run(&store, &jwks, "ss", &other_cert, T0).await),
            "invalid_client"
        );
        // Not a CA-issued certificate, and that does not matter; a CA-issued
        // certificate with an unregistered key does not help either.
        let issued = TestCa::new().issue(&[(rcgen::DnType::CommonName, "tpp")], vec![]);
        assert_eq!(
            code(run(&store, &jwks, "ss", &issued, T0).await),
            "invalid_client"
        );
    }

    #[tokio::test]
    async fn the_uk_profile_does_not_take_self_signed_certificates() {
        let (cert, jwk) = self_signed_cert("tpp");
        let store = MemStore::with_clients(&[&ss_client("ss", Some(json!({"keys": [jwk]})))]);
        let jwks = JwksResolver::new(MockFetcher::default());
        let req = || ClientAuthRequest {
            endpoint_url: TOKEN_URL,
            client_id: Some("ss"),
            certificate: Some(&cert),
            ..Default::default()
        };
        let uk = Policy::new(ISSUER, Profile::UkOpenBanking);
        assert_eq!(
            code(authenticate_at(&store, &jwks, &uk, req(), T0).await),
            "invalid_client"
        );
        let fapi1 = Policy::new(ISSUER, Profile::Fapi1Advanced);
        assert!(
            authenticate_at(&store, &jwks, &fapi1, req(), T0)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn key_found_after_a_jwks_uri_refetch() {
        let (old_cert, old_jwk) = self_signed_cert("tpp");
        let (new_cert, new_jwk) = self_signed_cert("tpp");
        let store = MemStore::with_clients(&[&ss_client("ss", None)]);
        let jwks = JwksResolver::new(MockFetcher::default());
        jwks.fetcher().set_json(URI, &json!({"keys": [old_jwk]}));
        assert!(run(&store, &jwks, "ss", &old_cert, T0).await.is_ok());
        jwks.fetcher()
            .set_json(URI, &json!({"keys": [old_jwk, new_jwk]}));
        assert!(run(&store, &jwks, "ss", &new_cert, T0 + 31).await.is_ok());
        assert_eq!(jwks.fetcher().calls(), 2);
        let (stranger, _) = self_signed_cert("tpp");
        assert_eq!(
            code(run(&store, &jwks, "ss", &stranger, T0 + 32).await),
            "invalid_client"
        );
        assert_eq!(jwks.fetcher().calls(), 2, "rate-limited refetch");

        let down = JwksResolver::new(MockFetcher::default());
        down.fetcher().set(URI, Err(FetchError::Timeout));
        let err = run(&store, &down, "ss", &old_cert, T0).await.unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_client");
    }
}

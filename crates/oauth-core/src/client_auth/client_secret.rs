//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1), for
//! clients the deployment exempts from FAPI only: FAPI 2.0 Security Profile
//! §5.3.2.1 allows neither.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::failed;
use crate::client::Client;
use crate::error::OAuthError;
use crate::secret::{constant_time_eq, hash_secret};
use crate::text::{form_urldecode, is_clean};

pub(super) fn verify(client: &Client, presented: &str) -> Result<(), OAuthError> {
    if client.metadata.fapi {
        return Err(failed(
            client.id(),
            "client secrets are not allowed for FAPI clients",
        ));
    }
    let Some(stored) = &client.secret_hash else {
        return Err(failed(client.id(), "client has no secret"));
    };
    // Both sides are SHA-256 digests of equal length; the comparison itself
    // is constant time so the digest is not learnt byte by byte.
    if !constant_time_eq(hash_secret(presented).as_bytes(), stored.as_bytes()) {
        return Err(failed(client.id(), "wrong client secret"));
    }
    Ok(())
}

/// Decodes an `Authorization: Basic` header value into `(client_id,
/// client_secret)` (RFC 7617 §2, RFC 6749 §2.3.1: both parts are
/// `application/x-www-form-urlencoded` before base64). `Ok(None)` when the
/// scheme is not `Basic` (another scheme is not client authentication);
/// malformed Basic credentials are `invalid_client`.
pub fn decode_basic_authorization(value: &str) -> Result<Option<(String, String)>, OAuthError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Basic") {
        return Ok(None);
    }
    let malformed = || OAuthError::invalid_client("malformed Basic credentials");
    let rest = rest.trim();
    let bytes = STANDARD
        .decode(rest)
        .or_else(|_| STANDARD_NO_PAD.decode(rest))
        .map_err(|_| malformed())?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    // RFC 6749 §2.3.1: both are form-encoded; like every parameter, they
    // may hold no control character (crate::text).
    let decode = |s: &str| {
        form_urldecode(s)
            .filter(|s| is_clean(s))
            .ok_or_else(malformed)
    };
    let id = decode(id)?;
    let secret = decode(secret)?;
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Some((id, secret)))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    use super::*;
    use crate::client::{AuthMethod, AuthenticatedClient};
    use crate::client_auth::test_support::*;
    use crate::client_auth::{ClientAuthRequest, authenticate_at};
    use crate::jwks_resolver::JwksResolver;
    use crate::jwks_resolver::test_support::MockFetcher;
    use crate::policy::{Policy, Profile};

    fn store() -> MemStore {
        let meta = |id: &str, method: &str| {
            json!({"client_id": id, "redirect_uris": ["https://app.example/cb"],
                "token_endpoint_auth_method": method, "fapi": false})
        };
        let basic = client(
            meta("basic", "client_secret_basic"),
            Some(hash_secret("s3cret")),
        );
        let post = client(
            meta("post", "client_secret_post"),
            Some(hash_secret("s3cret")),
        );
        let key = TestKey::ec(None);
        let fapi = client(
            json!({"client_id": "fapi", "redirect_uris": ["https://app.example/cb"],
                "jwks": {"keys": [key.jwk]}}),
            Some(hash_secret("s3cret")),
        );
        MemStore::with_clients(&[&basic, &post, &fapi])
    }

    async fn run(
        s: &MemStore,
        req: ClientAuthRequest<'_>,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let jwks = JwksResolver::new(MockFetcher::default());
        authenticate_at(s, &jwks, &Policy::new(ISSUER, Profile::Fapi2), req, T0).await
    }

    #[tokio::test]
    async fn basic_and_post_for_non_fapi_clients() {
        let s = store();
        let ok = run(
            &s,
            ClientAuthRequest {
                basic: Some(("basic", "s3cret")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(ok.method, AuthMethod::ClientSecretBasic);
        let ok = run(
            &s,
            ClientAuthRequest {
                client_id: Some("post"),
                client_secret: Some("s3cret"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(ok.method, AuthMethod::ClientSecretPost);
        // client_id beside Basic is fine when it agrees.
        assert!(
            run(
                &s,
                ClientAuthRequest {
                    client_id: Some("basic"),
                    basic: Some(("basic", "s3cret")),
                    ..Default::default()
                }
            )
            .await
            .is_ok()
        );
    }

    #[tokio::test]
    async fn secret_failures_are_invalid_client() {
        let s = store();
        let cases: Vec<ClientAuthRequest<'_>> = vec![
            ClientAuthRequest {
                basic: Some(("basic", "wrong")),
                ..Default::default()
            },
            ClientAuthRequest {
                basic: Some(("basic", "")),
                ..Default::default()
            },
            ClientAuthRequest {
                basic: Some(("nobody", "s3cret")),
                ..Default::default()
            },
            // Not the registered method.
            ClientAuthRequest {
                basic: Some(("post", "s3cret")),
                ..Default::default()
            },
            ClientAuthRequest {
                client_id: Some("basic"),
                client_secret: Some("s3cret"),
                ..Default::default()
            },
            // A FAPI client never authenticates with a secret.
            ClientAuthRequest {
                basic: Some(("fapi", "s3cret")),
                ..Default::default()
            },
            // client_secret_post without client_id.
            ClientAuthRequest {
                client_secret: Some("s3cret"),
                ..Default::default()
            },
            // client_id disagreeing with the Basic user.
            ClientAuthRequest {
                client_id: Some("post"),
                basic: Some(("basic", "s3cret")),
                ..Default::default()
            },
        ];
        for req in cases {
            let what = format!("{req:?}");
            assert!(
                !what.contains("s3cret"),
                "Debug must not print secrets: {what}"
            );
            assert_eq!(code(run(&s, req).await), "invalid_client", "{what}");
        }
    }

    #[test]
    fn decodes_basic_credentials() {
        let enc = |s: &str| STANDARD.encode(s);
        assert_eq!(
            decode_basic_authorization(&format!("Basic {}", enc("my%3Aclient:s%2Bcr+et%25")))
                .unwrap(),
            Some(("my:client".into(), "s+cr et%".into()))
        );
        assert_eq!(
            decode_basic_authorization(&format!("basic  {}", enc("c:"))).unwrap(),
            Some(("c".into(), "".into()))
        );
        assert_eq!(decode_basic_authorization("Bearer abc").unwrap(), None);
        assert_eq!(decode_basic_authorization("DPoP abc").unwrap(), None);
        for bad in [
            "Basic".to_string(),
            "Basic !!!".to_string(),
            format!("Basic {}", enc("no-colon")),
            format!("Basic {}", enc(":secret")),
            format!("Basic {}", enc("c:%zz")),
            format!("Basic {}", enc("c:%4")),
            format!("Basic {}", STANDARD.encode([0xff, b':', b'x'])),
        ] {
            assert_eq!(
                decode_basic_authorization(&bad).unwrap_err().code.as_str(),
                "invalid_client",
                "{bad}"
            );
        }
    }
}

//! The client credentials grant (RFC 6749 §4.4): the client acts on its own
//! behalf (e.g. UK Open Banking intent creation), so there is no end-user,
//! no grant record, no refresh token (§4.4.3) and no ID Token.

use super::{Binding, TokenRequest, parse_scope, sender_binding};
use crate::client::{AuthenticatedClient, Client};
use crate::error::{ErrorCode, OAuthError};
use crate::keys::Keys;
use crate::policy::Policy;
use crate::storage::TokenRepository;
use crate::token::{TokenContext, TokenDetails, TokenResponse, issue_access_token, token_type};

/// Scopes that only make sense with an end-user (OIDC Core §3.1.2.1,
/// §11), refused with client credentials.
const USER_SCOPES: [&str; 2] = ["openid", "offline_access"];

fn invalid_scope(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidScope, d)
}

/// The granted scope (RFC 6749 §3.3): the requested scopes, each allowed for
/// the client and none needing an end-user; without a `scope` parameter the
/// client's allowed scopes minus the end-user ones. Nothing left is
/// `invalid_scope`.
fn granted_scope(client: &Client, requested: Option<&str>) -> Result<String, OAuthError> {
    let scopes = match requested {
        Some(requested) => {
            let scopes = parse_scope(requested)?;
            if let Some(s) = scopes.iter().find(|s| USER_SCOPES.contains(&s.as_str())) {
                return Err(invalid_scope(format!(
                    "scope {s} needs an end-user and cannot be granted with client_credentials"
                )));
            }
            if let Some(s) = scopes.iter().find(|s| !client.allows_scopes([s.as_str()])) {
                return Err(invalid_scope(format!(
                    "scope {s} is not allowed for this client"
                )));
            }
            scopes
        }
        None => {
            let mut scopes: Vec<String> = Vec::new();
            for s in &client.scopes {
                if !USER_SCOPES.contains(&s.as_str()) && !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
            scopes
        }
    };
    if scopes.is_empty() {
        return Err(invalid_scope(
            "no scope requested and the client has no default scope for client_credentials",
        ));
    }
    Ok(scopes.join(" "))
}

/// RFC 6749 §4.4.2 token request with `grant_type=client_credentials`:
/// `unauthorized_client` unless the client registered the grant,
/// `invalid_scope` as in [`granted_scope`], and sender-constrained like every
/// access token.
pub(super) async fn exchange<S: TokenRepository>(
    store: &S,
    keys: &Keys,
    policy: &Policy,
    client: &AuthenticatedClient,
    req: &TokenRequest,
    binding: &Binding,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let c = &client.client;
    let scope = granted_scope(c, req.scope.as_deref())?;
    let cnf = sender_binding(client, policy, binding)?;
    let details = TokenDetails::default();
    let access = issue_access_token(
        keys,
        policy,
        &TokenContext {
            client_id: c.id(),
            grant_id: None,
            sub: None,
            scope: &scope,
            cnf: &cnf,
            details: &details,
        },
        now,
    )?;
    if !store.put_tokens(vec![access.record.clone()]).await? {
        // put_tokens only refuses for a revoked grant, and there is none.
        tracing::error!(client_id = %c.id(), "client credentials token refused by the store");
        return Err(OAuthError::server_error());
    }
    Ok(TokenResponse {
        token_type: token_type(&cnf),
        access_token: access.value,
        expires_in: access.expires_in,
        refresh_token: None,
        id_token: None,
        scope,
        authorization_details: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientMetadata;

    fn client(scope: &str) -> Client {
        let m: ClientMetadata = serde_json::from_value(serde_json::json!({
            "client_id": "tpp-cc",
            "redirect_uris": ["https://tpp.example/cb"],
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=tpp-cc,O=TPP,C=GB",
            "scope": scope,
        }))
        .unwrap();
        Client::new(m, None).unwrap()
    }

    #[test]
    fn default_scope_is_the_allowed_one_without_user_scopes() {
        let c = client("openid accounts offline_access payments");
        assert_eq!(granted_scope(&c, None).unwrap(), "accounts payments");
        let c = client("openid offline_access");
        assert_eq!(
            granted_scope(&c, None).unwrap_err().code.as_str(),
            "invalid_scope"
        );
    }

    #[test]
    fn requested_scopes_must_be_allowed_and_user_free() {
        let c = client("openid accounts payments");
        assert_eq!(granted_scope(&c, Some("payments")).unwrap(), "payments");
        for bad in ["openid accounts", "fundsconfirmations", "offline_access"] {
            assert_eq!(
                granted_scope(&c, Some(bad)).unwrap_err().code.as_str(),
                "invalid_scope",
                "{bad}"
            );
        }
    }
}

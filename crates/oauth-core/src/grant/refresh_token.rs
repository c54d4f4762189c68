//! The refresh token grant (RFC 6749 §6; RFC 9449 §5; RFC 8705 §3, §4;
//! FAPI 2.0 Security Profile §5.3.2.1; OIDC Core §12).
//!
//! What a refresh token is bound to ([`confirmation`]):
//!
//! - a confidential client's, to the client: the refresh request must
//!   authenticate as that client (done by the server before [`exchange`]),
//!   and nothing ties it to a DPoP key or a certificate (RFC 9449 §5,
//!   RFC 8705 §4). The new access token is bound to the DPoP key or
//!   certificate presented on the refresh request, and under FAPI it must be
//!   bound to one ([`super::sender_binding`]). So a TPP that renews its
//!   transport certificate, or rotates its DPoP key, keeps its customers'
//!   authorizations. Refresh tokens stored with a confirmation by earlier
//!   versions are read the same way.
//! - a public client's (`token_endpoint_auth_method` `none`), to the DPoP
//!   key or certificate of the access token issued with it, which the
//!   refresh request must prove again (RFC 9449 §5).

use super::{
    Binding, GrantType, TokenRequest, grant_details, has_scope, hook_claims, live_grant,
    parse_scope, sender_binding, token_details,
};
use crate::authorization::Confirmation;
use crate::client::{AuthMethod, AuthenticatedClient};
use crate::error::{ErrorCode, OAuthError};
use crate::keys::Keys;
use crate::policy::Policy;
use crate::secret::{constant_time_eq, hash_secret};
use crate::storage::{GrantRepository, RefreshRotation, TokenKind, TokenRecord, TokenRepository};
use crate::token::{
    ClaimsHook, IdTokenInput, TokenContext, TokenResponse, issue_access_token, issue_id_token,
    issue_refresh_token, token_type,
};

fn inactive() -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
}

/// The confirmation a new refresh token carries, beside an access token
/// bound by `access`: none for a confidential client, whose refresh tokens
/// are bound to its authentication (RFC 9449 §5: they "are already
/// sender-constrained with a different existing mechanism"; RFC 8705 §4);
/// the access token's for a public client (RFC 9449 §5).
pub(super) fn confirmation(client: &AuthenticatedClient, access: &Confirmation) -> Confirmation {
    if is_public(client) {
        access.clone()
    } else {
        Confirmation::default()
    }
}

/// A public client (RFC 6749 §2.1): one without credentials, so the request
/// authenticated with `none` (RFC 7591 §2); client authentication only
/// succeeds with the registered method.
fn is_public(client: &AuthenticatedClient) -> bool {
    client.method == AuthMethod::None
}

/// A public client's bound refresh token is only usable with the same key:
/// the DPoP key it was issued to (RFC 9449 §5) or the certificate it was
/// issued over (RFC 8705 §4). Mismatches are `invalid_grant` (RFC 6749
/// §5.2: the grant "does not match").
fn check_binding(token: &TokenRecord, binding: &Binding) -> Result<(), OAuthError> {
    if let Some(jkt) = &token.cnf_jkt {
        match &binding.dpop {
            Some(proof) if constant_time_eq(proof.jkt.as_bytes(), jkt.as_bytes()) => {}
            Some(_) => {
                return Err(OAuthError::invalid_grant(
                    "the DPoP proof key is not the key the refresh token is bound to",
                ));
            }
            None => {
                return Err(OAuthError::invalid_grant(
                    "the refresh token is DPoP-bound: a DPoP proof by the same key is required",
                ));
            }
        }
    }
    if let Some(x5t) = &token.cnf_x5t {
        match &binding.x5t_s256 {
            Some(presented) if constant_time_eq(presented.as_bytes(), x5t.as_bytes()) => {}
            _ => {
                return Err(OAuthError::invalid_grant(
                    "the refresh token is bound to a client certificate that was not presented",
                ));
            }
        }
    }
    Ok(())
}

/// The scope of the new access token: the original one, or a subset of it
/// (RFC 6749 §6: "MUST NOT include any scope not originally granted";
/// anything more is `invalid_scope`).
fn narrowed_scope(original: &str, requested: Option<&str>) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(original.to_owned());
    };
    let requested = parse_scope(requested)?;
    if let Some(extra) = requested.iter().find(|s| !has_scope(original, s)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope {extra} was not originally granted"),
        ));
    }
    Ok(requested.join(" "))
}

/// RFC 6749 §6 token request with `grant_type=refresh_token`.
///
/// `invalid_grant` for a refresh token that is unknown, expired, revoked,
/// another client's, (a public client's) bound to a key or certificate not
/// presented, whose grant is revoked, or that loses a concurrent rotation;
/// `invalid_scope` for a wider scope; `invalid_request` when the new access
/// token must be sender-constrained and the request offers no DPoP proof or
/// certificate to bind it to. The new access token belongs to the same
/// grant; the ID Token (for `openid` grants, OIDC Core §12.2) repeats
/// `sub`, `auth_time` and `acr` without a `nonce`. With
/// `policy.rotate_refresh_tokens` a new refresh token replaces the old one
/// (RFC 9700 §4.14.2); otherwise the presented one stays valid and none is
/// returned.
#[allow(clippy::too_many_arguments)]
pub(super) async fn exchange<
    S: GrantRepository + TokenRepository,
    H: ClaimsHook,
    E: crate::jwks_resolver::IdTokenEncryption,
>(
    store: &S,
    keys: &Keys,
    policy: &Policy,
    client: &AuthenticatedClient,
    req: &TokenRequest,
    binding: &Binding,
    hook: &H,
    encryption: &E,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let c = &client.client;
    let presented = req
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let old_hash = hash_secret(presented);
    let old = store
        .get_active_token(&old_hash, now)
        .await?
        .filter(|t| t.kind == TokenKind::Refresh)
        .ok_or_else(inactive)?;
    if old.client_id != c.id() {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if is_public(client) {
        check_binding(&old, binding)?;
    }
    let grant_id = old.grant_id.as_deref().ok_or_else(|| {
        tracing::error!(client_id = %c.id(), "refresh token without a grant");
        inactive()
    })?;
    let grant = live_grant(store, grant_id).await?;
    let details = grant_details(&grant)?;
    let scope = narrowed_scope(&old.scope, req.scope.as_deref())?;
    let cnf = sender_binding(client, policy, binding)?;
    let mut tdetails = token_details(policy, c, &grant, &details)?;
    let extra = hook_claims(
        hook,
        GrantType::RefreshToken.as_str(),
        &grant,
        &details,
        &scope,
        &mut tdetails,
    )
    .await?;

    let access = issue_access_token(
        keys,
        policy,
        &TokenContext {
            client_id: c.id(),
            grant_id: Some(&grant.grant_id),
            sub: grant.sub.as_deref(),
            scope: &scope,
            cnf: &cnf,
            details: &tdetails,
        },
        now,
    )?;
    let id_token = match &details.authentication {
        Some(authentication) if has_scope(&old.scope, "openid") => {
            let encrypter = encryption.id_token_encrypter(c, now).await?;
            Some(issue_id_token(
                keys,
                policy,
                &IdTokenInput {
                    client: c,
                    authentication,
                    nonce: None,
                    access_token: Some(&access.value),
                    grant: &details,
                    consent_id: grant.consent_id.as_deref(),
                    extra_claims: extra.as_ref(),
                    front_channel: None,
                    encrypter: encrypter.as_ref(),
                },
                now,
            )?)
        }
        _ => None,
    };

    let refresh_token = if policy.rotate_refresh_tokens {
        // The replacement keeps the full scope of the token it replaces
        // (RFC 6749 §6: the refresh token's scope is unchanged) and, for a
        // public client, its binding.
        let kept = Confirmation {
            jkt: old.cnf_jkt.clone(),
            x5t_s256: old.cnf_x5t.clone(),
        };
        let rt_cnf = if kept.is_empty() || !is_public(client) {
            confirmation(client, &cnf)
        } else {
            kept
        };
        let replacement = issue_refresh_token(
            policy,
            &TokenContext {
                client_id: c.id(),
                grant_id: Some(&grant.grant_id),
                sub: grant.sub.as_deref(),
                scope: &old.scope,
                cnf: &rt_cnf,
                details: &tdetails,
            },
            now,
        )?;
        let records = vec![access.record.clone(), replacement.record.clone()];
        match store.rotate_refresh(&old_hash, records, now).await? {
            RefreshRotation::Rotated(_) => Some(replacement.value),
            // Another request rotated it first, or the grant went meanwhile.
            RefreshRotation::Invalid => return Err(inactive()),
        }
    } else {
        if !store.put_tokens(vec![access.record.clone()]).await? {
            return Err(OAuthError::invalid_grant(
                "the authorization grant has been revoked",
            ));
        }
        None
    };

    Ok(TokenResponse {
        token_type: token_type(&cnf),
        access_token: access.value,
        expires_in: access.expires_in,
        refresh_token,
        id_token,
        scope,
        authorization_details: details.authorization_details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorization::DpopProof;

    fn rt(jkt: Option<&str>, x5t: Option<&str>) -> TokenRecord {
        TokenRecord {
            token_hash: "h".into(),
            kind: TokenKind::Refresh,
            client_id: "c".into(),
            grant_id: Some("g".into()),
            sub: Some("u".into()),
            scope: "openid accounts".into(),
            cnf_jkt: jkt.map(str::to_owned),
            cnf_x5t: x5t.map(str::to_owned),
            details: "{}".into(),
            created_at: 0,
            expires_at: 10,
            revoked_at: None,
        }
    }

    fn proof(jkt: &str) -> Option<DpopProof> {
        Some(DpopProof {
            jkt: jkt.into(),
            jti: "j".into(),
            iat: 0,
        })
    }

    #[test]
    fn scope_may_only_narrow() {
        assert_eq!(
            narrowed_scope("openid accounts", None).unwrap(),
            "openid accounts"
        );
        assert_eq!(
            narrowed_scope("openid accounts", Some("accounts")).unwrap(),
            "accounts"
        );
        let e = narrowed_scope("openid accounts", Some("accounts payments")).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_scope");
        let e = narrowed_scope("openid accounts", Some("acc\"ounts")).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_scope");
    }

    #[test]
    fn only_public_clients_bind_refresh_tokens_to_a_key() {
        let meta = serde_json::json!({
            "client_id": "c", "redirect_uris": ["https://tpp.example/cb"],
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=c",
        });
        let client =
            crate::client::Client::new(serde_json::from_value(meta).unwrap(), None).unwrap();
        let confidential = AuthenticatedClient {
            client: client.clone(),
            method: AuthMethod::TlsClientAuth,
        };
        let public = AuthenticatedClient {
            client,
            method: AuthMethod::None,
        };
        for access in [
            Confirmation {
                jkt: Some("k1".into()),
                x5t_s256: None,
            },
            Confirmation {
                jkt: None,
                x5t_s256: Some("t1".into()),
            },
        ] {
            assert!(confirmation(&confidential, &access).is_empty());
            assert_eq!(confirmation(&public, &access), access);
        }
    }

    #[test]
    fn bound_refresh_tokens_need_the_same_key_or_certificate() {
        let unbound = rt(None, None);
        assert!(check_binding(&unbound, &Binding::default()).is_ok());

        let dpop = rt(Some("k1"), None);
        let ok = Binding {
            dpop: proof("k1"),
            x5t_s256: None,
        };
        assert!(check_binding(&dpop, &ok).is_ok());
        for b in [
            Binding::default(),
            Binding {
                dpop: proof("k2"),
                x5t_s256: None,
            },
            Binding {
                dpop: None,
                x5t_s256: Some("k1".into()),
            },
        ] {
            assert_eq!(
                check_binding(&dpop, &b).unwrap_err().code.as_str(),
                "invalid_grant"
            );
        }

        let mtls = rt(None, Some("t1"));
        assert!(
            check_binding(
                &mtls,
                &Binding {
                    dpop: None,
                    x5t_s256: Some("t1".into())
                }
            )
            .is_ok()
        );
        for b in [
            Binding::default(),
            Binding {
                dpop: None,
                x5t_s256: Some("t2".into()),
            },
        ] {
            assert_eq!(
                check_binding(&mtls, &b).unwrap_err().code.as_str(),
                "invalid_grant"
            );
        }
    }
}

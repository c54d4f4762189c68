//! The authorization code grant: issuing the code once the user has
//! authenticated and consented (RFC 6749 §4.1.2), and redeeming it at the
//! token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6, RFC 9449 §10, FAPI 2.0
//! Security Profile §5.3.2.1).

use super::{
    Binding, GrantType, TokenRequest, grant_details, has_scope, hook_claims, live, sender_binding,
    token_details,
};
use crate::authorization::{Authentication, AuthorizationRequest, CodeData, GrantDetails};
use crate::client::{AuthenticatedClient, Client};
use crate::error::{ErrorCode, OAuthError};
use crate::keys::{ClientEncrypter, Keys};
use crate::policy::Policy;
use crate::request::pkce;
use crate::request::response::CODE_ID_TOKEN;
use crate::secret::{constant_time_eq, hash_secret, new_secret, time_ordered};
use crate::storage::{
    AuthorizationCodeRecord, AuthorizationCodeRepository, CodeLookup, CodeRedeemed, CodeStored,
    GrantRecord, GrantRepository, InteractionEnd, RedeemedCode, TokenRepository,
};
use crate::token::{
    ClaimsHook, FrontChannel, IdTokenInput, TokenContext, TokenResponse, issue_access_token,
    issue_id_token, issue_refresh_token, token_type,
};

/// FAPI 2.0 Security Profile §5.3.2.1-12 (and the OIDF module
/// `ensure-token-endpoint-fails-with-expired-auth-code`): codes live at most
/// 60 seconds, whatever the configuration says.
const MAX_CODE_LIFETIME_SECS: i64 = 60;

/// What [`issue_code`] issued for the authorization response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    pub code: String,
    /// The hybrid flow's id_token (OIDC Core §3.3.2.5).
    pub id_token: Option<String>,
}

/// Issues the authorization code at the end of the interaction (RFC 6749
/// §4.1.2), after authentication and consent.
///
/// Stores, in one write, the grant (random `grant_id`; `sub`; the requested
/// scope; the bank's consent id; `grant_details` completed with the
/// authentication, the `claims` request and the `authorization_details` of
/// `request` where the consent step left them unset) and the code: 256
/// random bits, kept as its hash, carrying [`CodeData`], valid
/// `policy.code_lifetime_secs` (at most 60 s). With `end`, the same write
/// takes the interaction and spends its pushed request
/// ([`AuthorizationCodeRepository::put_grant_and_code`]). Returns the code
/// for the redirect, with, for `response_type=code id_token`, the id_token
/// of the authorization response (OIDC Core §3.3.2.11, FAPI 1.0 Advanced
/// §5.2.2.1: `c_hash`, `s_hash`, the `nonce`, the authentication and the
/// consent id, signed like the token endpoint's); or `None` when the
/// interaction was already taken (a double submit): nothing is issued then.
///
/// Errors: `invalid_request` when `request` belongs to another client than
/// `client` (a caller bug, refused rather than minted);
/// `invalid_request_uri` when the pushed request was spent or expired
/// meanwhile; storage failures as `server_error` /
/// `temporarily_unavailable`. No grant is stored without its code.
#[allow(clippy::too_many_arguments)]
pub async fn issue_code<S: AuthorizationCodeRepository>(
    store: &S,
    keys: &Keys,
    policy: &Policy,
    client: &Client,
    request: &AuthorizationRequest,
    auth: &Authentication,
    mut grant_details: GrantDetails,
    consent_id: Option<String>,
    end: Option<InteractionEnd>,
    encrypter: Option<&ClientEncrypter>,
    now: i64,
) -> Result<Option<IssuedCode>, OAuthError> {
    if request.client_id != client.id() {
        tracing::error!(
            client_id = %client.id(),
            request_client_id = %request.client_id,
            "issue_code called with another client's request"
        );
        return Err(OAuthError::invalid_request(
            "the authorization request belongs to another client",
        ));
    }
    grant_details.authentication = Some(auth.clone());
    if grant_details.claims_request.is_none() {
        grant_details.claims_request = request.claims.clone();
    }
    if grant_details.authorization_details.is_none() {
        grant_details.authorization_details = request.authorization_details.clone();
    }
    let details = serde_json::to_string(&grant_details).map_err(|e| {
        tracing::error!(error = %e, "grant details do not serialise");
        OAuthError::server_error()
    })?;
    let data = serde_json::to_string(&CodeData {
        request: request.clone(),
        authentication: auth.clone(),
    })
    .map_err(|e| {
        tracing::error!(error = %e, "code data does not serialise");
        OAuthError::server_error()
    })?;

    let code = new_secret();
    // Signed before anything is stored, so a signing failure leaves no
    // grant behind.
    let id_token = if request.response_type == CODE_ID_TOKEN {
        Some(issue_id_token(
            keys,
            policy,
            &IdTokenInput {
                client,
                authentication: auth,
                nonce: request.nonce.as_deref(),
                access_token: None,
                grant: &grant_details,
                consent_id: consent_id.as_deref(),
                extra_claims: None,
                front_channel: Some(FrontChannel {
                    code: &code,
                    state: request.state.as_deref(),
                }),
                encrypter,
            },
            now,
        )?)
    } else {
        None
    };
    let grant_id = time_ordered(16);
    let grant = GrantRecord {
        grant_id: grant_id.clone(),
        client_id: client.id().to_owned(),
        sub: Some(auth.sub.clone()),
        scope: request.scope.join(" "),
        consent_id,
        details,
        created_at: now,
        revoked_at: None,
    };
    let lifetime = policy.code_lifetime_secs.clamp(1, MAX_CODE_LIFETIME_SECS);
    let record = AuthorizationCodeRecord {
        code_hash: hash_secret(&code),
        grant_id,
        client_id: client.id().to_owned(),
        request: data,
        expires_at: now + lifetime,
        created_at: now,
    };
    match store.put_grant_and_code(grant, record, end).await? {
        CodeStored::Stored => Ok(Some(IssuedCode { code, id_token })),
        CodeStored::InteractionGone => Ok(None),
        CodeStored::RequestUriGone => Err(OAuthError::new(
            ErrorCode::InvalidRequestUri,
            "request_uri is unknown, expired or already used",
        )),
    }
}

/// RFC 7636 §4.6 with S256, the only method FAPI 2.0 §5.3.2.2 allows. A
/// request without PKCE (FAPI 1.0 Advanced by value, §5.2.2-18) takes no
/// `code_verifier`: one sent anyway is refused, as OAuth 2.1 §4.1.3 says,
/// since a verifier without its challenge proves nothing.
fn check_code_verifier(
    ar: &AuthorizationRequest,
    verifier: Option<&str>,
) -> Result<(), OAuthError> {
    match verifier {
        None if ar.code_challenge.is_empty() => Ok(()),
        None => Err(OAuthError::invalid_grant("code_verifier is required")),
        Some(_) if ar.code_challenge.is_empty() => Err(OAuthError::invalid_grant(
            "code_verifier sent, but the authorization request had no code_challenge",
        )),
        Some(v)
            if ar.code_challenge_method == pkce::S256 && pkce::verify(v, &ar.code_challenge) =>
        {
            Ok(())
        }
        Some(_) => Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        )),
    }
}

fn invalid_code() -> OAuthError {
    OAuthError::invalid_grant("the authorization code is invalid or expired")
}

/// A code used twice: its grant is revoked with every token the first
/// redemption produced (RFC 6749 §4.1.2, §10.5; RFC 9700 §4.2.4).
async fn replayed<S: GrantRepository>(
    store: &S,
    client: &crate::client::Client,
    grant_id: &str,
    now: i64,
) -> OAuthError {
    tracing::warn!(client_id = %client.id(), "authorization code replayed; revoking its grant");
    match store.revoke_grant(grant_id, now).await {
        Ok(_) => OAuthError::invalid_grant("the authorization code has already been used"),
        Err(e) => e.into(),
    }
}

/// RFC 6749 §4.1.3 token request with `grant_type=authorization_code`.
///
/// `invalid_request` when `code` or `redirect_uri` is missing; everything
/// else about the code is `invalid_grant`: a missing `code_verifier` (OIDF
/// `ensure-pkce-code-verifier-required`), an unknown or expired code, a
/// replayed one (whose grant, with every token the first redemption
/// produced, is revoked: RFC 6749 §4.1.2, §10.5), a code of another client,
/// a different `redirect_uri`, a wrong `code_verifier`, a DPoP key other
/// than the one the code is bound to (RFC 9449 §10).
///
/// The code is read first and every check runs against it; then one
/// transaction spends it and stores the tokens
/// ([`AuthorizationCodeRepository::redeem_code_with_tokens`]), one winner
/// across instances. A request that fails a check leaves the code to the
/// client holding the verifier (a thief of the code alone cannot burn it),
/// and no crash or outage leaves a spent code without its tokens.
#[allow(clippy::too_many_arguments)]
pub(super) async fn exchange<
    S: GrantRepository + AuthorizationCodeRepository + TokenRepository,
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
    let code = req
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = req
        .redirect_uri
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let verifier = req.code_verifier.as_deref();

    let code_hash = hash_secret(code);
    let RedeemedCode { code: rec, grant } = match store.find_code(&code_hash, now).await? {
        CodeLookup::Unspent(r) => *r,
        CodeLookup::AlreadyUsed { grant_id } => {
            return Err(replayed(store, c, &grant_id, now).await);
        }
        CodeLookup::Invalid => return Err(invalid_code()),
    };
    if rec.client_id != c.id() {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    let data: CodeData = serde_json::from_str(&rec.request).map_err(|e| {
        tracing::error!(error = %e, "stored authorization code data unreadable");
        OAuthError::server_error()
    })?;
    let ar = &data.request;
    if ar.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    check_code_verifier(ar, verifier)?;
    if let Some(jkt) = &ar.dpop_jkt {
        match &binding.dpop {
            Some(proof) if constant_time_eq(proof.jkt.as_bytes(), jkt.as_bytes()) => {}
            Some(_) => {
                return Err(OAuthError::invalid_grant(
                    "the DPoP proof key is not the key the authorization code is bound to",
                ));
            }
            None => {
                return Err(OAuthError::invalid_grant(
                    "the authorization code is bound to a DPoP key: a DPoP proof is required",
                ));
            }
        }
    }
    let cnf = sender_binding(client, policy, binding)?;
    // As read with the code; `redeem_code_with_tokens` checks again that
    // it is unrevoked in the write that spends the code and stores the
    // tokens.
    let grant = live(Some(grant))?;
    let details = grant_details(&grant)?;
    let mut tdetails = token_details(policy, c, &grant, &details)?;
    let extra = hook_claims(
        hook,
        GrantType::AuthorizationCode.as_str(),
        &grant,
        &details,
        &grant.scope,
        &mut tdetails,
    )
    .await?;
    let ctx = TokenContext {
        client_id: c.id(),
        grant_id: Some(&grant.grant_id),
        sub: grant.sub.as_deref(),
        scope: &grant.scope,
        cnf: &cnf,
        details: &tdetails,
    };
    let access = issue_access_token(keys, policy, &ctx, now)?;
    let refresh = if c.allows_grant("refresh_token") {
        let rt_cnf = super::refresh_token::confirmation(client, &cnf);
        let rt_ctx = TokenContext {
            cnf: &rt_cnf,
            ..ctx
        };
        Some(issue_refresh_token(policy, &rt_ctx, now)?)
    } else {
        None
    };
    let id_token = if has_scope(&grant.scope, "openid") {
        let encrypter = encryption.id_token_encrypter(c, now).await?;
        Some(issue_id_token(
            keys,
            policy,
            &IdTokenInput {
                client: c,
                authentication: &data.authentication,
                nonce: ar.nonce.as_deref(),
                access_token: Some(&access.value),
                grant: &details,
                consent_id: grant.consent_id.as_deref(),
                extra_claims: extra.as_ref(),
                front_channel: None,
                encrypter: encrypter.as_ref(),
            },
            now,
        )?)
    } else {
        None
    };

    let mut records = vec![access.record.clone()];
    records.extend(refresh.as_ref().map(|r| r.record.clone()));
    // The one write: the code spent and the tokens stored together.
    match store
        .redeem_code_with_tokens(&code_hash, now, records)
        .await?
    {
        CodeRedeemed::Redeemed => {}
        // A concurrent redemption won: the code was used twice.
        CodeRedeemed::AlreadyUsed { grant_id } => {
            return Err(replayed(store, c, &grant_id, now).await);
        }
        CodeRedeemed::Invalid => return Err(invalid_code()),
        // Revoked since it was read (consent withdrawn, or a replay of
        // this very code revoked it).
        CodeRedeemed::GrantRevoked => {
            return Err(OAuthError::invalid_grant(
                "the authorization grant has been revoked",
            ));
        }
    }
    Ok(TokenResponse {
        token_type: token_type(&cnf),
        access_token: access.value,
        expires_in: access.expires_in,
        refresh_token: refresh.map(|r| r.value),
        id_token,
        scope: grant.scope,
        authorization_details: details.authorization_details,
    })
}

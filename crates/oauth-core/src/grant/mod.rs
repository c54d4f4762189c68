//! The token endpoint (RFC 6749 §3.2): the request, parsed once from the
//! form, dispatched by `grant_type` to one handler per grant.
//!
//! The server authenticates the client (RFC 6749 §3.2.1) and verifies any
//! DPoP proof (RFC 9449 §4.3) before calling [`exchange`], and passes the
//! outcomes in: the [`AuthenticatedClient`] and the [`Binding`] evidence.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use std::collections::HashSet;
use std::fmt;

pub use authorization_code::{IssuedCode, issue_code};

use crate::authorization::{Confirmation, DpopProof, GrantDetails};
use crate::client::{AuthenticatedClient, Client};
use crate::error::{ErrorCode, OAuthError};
use crate::keys::Keys;
use crate::policy::{Policy, Profile};
use crate::storage::{AuthorizationCodeRepository, GrantRecord, GrantRepository, TokenRepository};
use crate::token::{
    ClaimsHook, ClaimsQuery, ExtraClaims, IdTokenInput, NoClaimsHook, TokenContext, TokenDetails,
    TokenResponse, issue_access_token, issue_id_token, issue_refresh_token, token_type,
};

/// The grant types the token endpoint serves (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    /// Parses `grant_type`; anything else is `unsupported_grant_type`
    /// (RFC 6749 §5.2).
    pub fn parse(s: &str) -> Result<GrantType, OAuthError> {
        match s {
            "authorization_code" => Ok(GrantType::AuthorizationCode),
            "refresh_token" => Ok(GrantType::RefreshToken),
            "client_credentials" => Ok(GrantType::ClientCredentials),
            _ => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "the grant_type is not supported",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

/// A token request (RFC 6749 §4.1.3, §4.4.2, §6) with the parameters the
/// grant handlers read. Client-authentication parameters (`client_id`,
/// `client_assertion`, …) are the server's concern and not kept here.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant_type: GrantType,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    /// Space-delimited, as sent (RFC 6749 §3.3).
    pub scope: Option<String>,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Codes, verifiers and refresh tokens are credentials.
        let hide = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("code", &hide(&self.code))
            .field("redirect_uri", &self.redirect_uri)
            .field("code_verifier", &hide(&self.code_verifier))
            .field("refresh_token", &hide(&self.refresh_token))
            .field("scope", &self.scope)
            .finish()
    }
}

/// Parameters whose name may appear in an error description.
const KNOWN_PARAMS: [&str; 11] = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "resource",
];

impl TokenRequest {
    /// Parses the `application/x-www-form-urlencoded` body (already
    /// decoded into pairs).
    ///
    /// RFC 6749 §3.2: a parameter sent without a value counts as omitted,
    /// one sent twice is `invalid_request`, unknown ones are ignored.
    /// A missing `grant_type` is `invalid_request`, an unknown one
    /// `unsupported_grant_type` (§5.2).
    pub fn from_form(pairs: &[(String, String)]) -> Result<TokenRequest, OAuthError> {
        let mut seen: HashSet<&str> = HashSet::new();
        for (name, value) in pairs {
            if value.is_empty() {
                continue;
            }
            if !seen.insert(name.as_str()) {
                return Err(OAuthError::invalid_request(
                    match KNOWN_PARAMS.iter().find(|p| **p == name) {
                        Some(p) => format!("parameter {p} is repeated"),
                        None => "a parameter is repeated".to_owned(),
                    },
                ));
            }
        }
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, v)| n == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        let grant_type = get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        Ok(TokenRequest {
            grant_type: GrantType::parse(&grant_type)?,
            code: get("code"),
            redirect_uri: get("redirect_uri"),
            code_verifier: get("code_verifier"),
            refresh_token: get("refresh_token"),
            scope: get("scope"),
        })
    }
}

/// Proof-of-possession evidence of this request, verified by the server
/// before [`exchange`] is called.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// The verified DPoP proof (RFC 9449 §4.3), if the request had one.
    pub dpop: Option<DpopProof>,
    /// `x5t#S256` of the client certificate on this connection (RFC 8705
    /// §3.1), if one was presented.
    pub x5t_s256: Option<String>,
}

/// RFC 6749 §3.2 token endpoint: runs the handler for `req.grant_type` and
/// returns the RFC 6749 §5.1 response (which the server sends with
/// `Cache-Control: no-store`), or the §5.2 error.
pub async fn exchange<S>(
    store: &S,
    keys: &Keys,
    policy: &Policy,
    client: &AuthenticatedClient,
    req: TokenRequest,
    binding: Binding,
    now: i64,
) -> Result<TokenResponse, OAuthError>
where
    S: GrantRepository + AuthorizationCodeRepository + TokenRepository,
{
    exchange_with_claims(
        store,
        keys,
        policy,
        client,
        req,
        binding,
        &NoClaimsHook,
        &crate::jwks_resolver::NoEncryption,
        now,
    )
    .await
}

/// [`exchange`] with a token-claims hook ([`crate::token::claims`]), asked
/// for extra claims by the authorization-code and refresh grants after every
/// check and before anything is stored; its error fails the request. For a
/// client that registered `id_token_encrypted_response_alg`, `encryption`
/// gives its key when an id_token is issued
/// ([`crate::jwks_resolver::IdTokenEncryption`]).
#[allow(clippy::too_many_arguments)]
pub async fn exchange_with_claims<S, H, E>(
    store: &S,
    keys: &Keys,
    policy: &Policy,
    client: &AuthenticatedClient,
    req: TokenRequest,
    binding: Binding,
    hook: &H,
    encryption: &E,
    now: i64,
) -> Result<TokenResponse, OAuthError>
where
    S: GrantRepository + AuthorizationCodeRepository + TokenRepository,
    H: ClaimsHook,
    E: crate::jwks_resolver::IdTokenEncryption,
{
    // RFC 6749 §5.2: a grant the client did not register is `unauthorized_client`.
    if !client.client.allows_grant(req.grant_type.as_str()) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!(
                "the client may not use the {} grant",
                req.grant_type.as_str()
            ),
        ));
    }
    match req.grant_type {
        GrantType::AuthorizationCode => {
            authorization_code::exchange(
                store, keys, policy, client, &req, &binding, hook, encryption, now,
            )
            .await
        }
        GrantType::RefreshToken => {
            refresh_token::exchange(
                store, keys, policy, client, &req, &binding, hook, encryption, now,
            )
            .await
        }
        GrantType::ClientCredentials => {
            client_credentials::exchange(store, keys, policy, client, &req, &binding, now).await
        }
    }
}

/// Whether tokens for this client must be sender-constrained: FAPI 2.0
/// Security Profile §5.3.2.1-7 and FAPI 1.0 Advanced §5.2.2-5 both say
/// "shall only issue sender-constrained access tokens", so every FAPI
/// client of every profile; only clients the deployment marked `fapi =
/// false` may get bearer tokens.
pub fn requires_sender_constraint(policy: &Policy, client: &AuthenticatedClient) -> bool {
    // Exhaustive on purpose: a future non-FAPI profile has to decide here.
    let fapi_profile = match policy.profile {
        Profile::Fapi2 | Profile::Fapi2MessageSigning => true,
        Profile::Fapi1Advanced | Profile::UkOpenBanking => true,
    };
    fapi_profile && client.client.metadata.fapi
}

/// The confirmation (`cnf`) of the access token to issue.
///
/// - A DPoP proof binds the token to its key (RFC 9449 §6.1, `token_type`
///   `DPoP`), whatever else the client registered.
/// - Without one, a client registered with `dpop_bound_access_tokens` is
///   refused (RFC 9449 §5.2).
/// - Otherwise the client certificate binds the token (RFC 8705 §3.1) when
///   the client asked for it (`tls_client_certificate_bound_access_tokens`),
///   authenticated with it, or must have a bound token.
/// - A client that must have a bound token and offered neither is refused
///   with `invalid_request` (FAPI 2.0 §5.3.2.1).
pub fn sender_binding(
    client: &AuthenticatedClient,
    policy: &Policy,
    binding: &Binding,
) -> Result<Confirmation, OAuthError> {
    let profile = policy.profile_for(&client.client);
    if binding.dpop.is_some() && !profile.offers_dpop() {
        return Err(OAuthError::invalid_request(format!(
            "DPoP is not offered under the {} profile: tokens are bound to the client certificate (RFC 8705)",
            profile.as_str()
        )));
    }
    if let Some(proof) = &binding.dpop {
        return Ok(Confirmation {
            jkt: Some(proof.jkt.clone()),
            x5t_s256: None,
        });
    }
    let meta = &client.client.metadata;
    if meta.dpop_bound_access_tokens {
        return Err(OAuthError::invalid_request(
            "a DPoP proof is required: this client's tokens are DPoP-bound",
        ));
    }
    let required = requires_sender_constraint(policy, client);
    let cert_bound =
        meta.tls_client_certificate_bound_access_tokens || client.method.is_mtls() || required;
    if cert_bound && let Some(x5t) = &binding.x5t_s256 {
        return Ok(Confirmation {
            jkt: None,
            x5t_s256: Some(x5t.clone()),
        });
    }
    if meta.tls_client_certificate_bound_access_tokens {
        return Err(OAuthError::invalid_request(
            "a client certificate is required: this client's tokens are certificate-bound",
        ));
    }
    if required {
        return Err(OAuthError::invalid_request(
            "sender-constrained token required (DPoP or mTLS)",
        ));
    }
    Ok(Confirmation::default())
}

/// Mints the tokens of `grant`, authorised outside the token endpoint's
/// own grants (CIBA §10.1: the customer approved on the back channel), to
/// its client: an access token bound by `cnf`, a refresh token when the
/// client may refresh, an ID Token when the scope has `openid` (with
/// `id_token_claims` added, e.g. CIBA's
/// `urn:openid:params:jwt:claim:auth_req_id`). Returns the response and the
/// records to store, which the caller writes in the same transaction as
/// whatever spends the authorisation (CIBA: `redeem_ciba_request`); nothing
/// is stored here.
#[allow(clippy::too_many_arguments)]
pub async fn prepare_for_grant<H: ClaimsHook, E: crate::jwks_resolver::IdTokenEncryption>(
    keys: &Keys,
    policy: &Policy,
    hook: &H,
    grant_type: &str,
    client: &AuthenticatedClient,
    grant: &GrantRecord,
    cnf: &Confirmation,
    id_token_claims: &serde_json::Map<String, serde_json::Value>,
    encryption: &E,
    now: i64,
) -> Result<(TokenResponse, Vec<crate::storage::TokenRecord>), OAuthError> {
    let c = &client.client;
    let grant = live(Some(grant.clone()))?;
    let details = grant_details(&grant)?;
    let mut tdetails = token_details(policy, c, &grant, &details)?;
    // The bank's extra claims first; the grant's own (e.g. CIBA's
    // auth_req_id) win over them.
    let mut extra = hook_claims(
        hook,
        grant_type,
        &grant,
        &details,
        &grant.scope,
        &mut tdetails,
    )
    .await?
    .unwrap_or_default();
    extra.extend(id_token_claims.clone());
    let id_token_claims = &extra;
    let authentication = details.authentication.clone().ok_or_else(|| {
        tracing::error!(grant_id = %grant.grant_id, "grant without authentication");
        OAuthError::server_error()
    })?;
    let ctx = TokenContext {
        client_id: c.id(),
        grant_id: Some(&grant.grant_id),
        sub: grant.sub.as_deref(),
        scope: &grant.scope,
        cnf,
        details: &tdetails,
    };
    let access = issue_access_token(keys, policy, &ctx, now)?;
    let refresh = if c.allows_grant("refresh_token") {
        let rt_cnf = refresh_token::confirmation(client, cnf);
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
                authentication: &authentication,
                nonce: None,
                access_token: Some(&access.value),
                grant: &details,
                consent_id: grant.consent_id.as_deref(),
                extra_claims: Some(id_token_claims),
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
    Ok((
        TokenResponse {
            token_type: token_type(cnf),
            access_token: access.value,
            expires_in: access.expires_in,
            refresh_token: refresh.map(|r| r.value),
            id_token,
            scope: grant.scope,
            authorization_details: details.authorization_details,
        },
        records,
    ))
}

/// Parses a `scope` value (RFC 6749 §3.3: space-delimited scope-tokens of
/// %x21 / %x23-5B / %x5D-7E), dropping duplicates. Malformed or empty is
/// `invalid_scope`.
pub(crate) fn parse_scope(s: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for token in s.split(' ').filter(|t| !t.is_empty()) {
        if !token
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope is malformed",
            ));
        }
        if !out.iter().any(|t| t == token) {
            out.push(token.to_owned());
        }
    }
    if out.is_empty() {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "scope is empty"));
    }
    Ok(out)
}

/// Whether the space-delimited `scope` contains `s`.
pub(crate) fn has_scope(scope: &str, s: &str) -> bool {
    scope.split(' ').any(|t| t == s)
}

/// The grant, if it exists and is not revoked; otherwise `invalid_grant`.
async fn live_grant<S: GrantRepository>(
    store: &S,
    grant_id: &str,
) -> Result<GrantRecord, OAuthError> {
    live(store.get_grant(grant_id).await?)
}

/// `grant`, unless it is missing or revoked (`invalid_grant`).
fn live(grant: Option<GrantRecord>) -> Result<GrantRecord, OAuthError> {
    grant
        .filter(|g| g.revoked_at.is_none())
        .ok_or_else(|| OAuthError::invalid_grant("the authorization grant has been revoked"))
}

/// The grant's [`GrantDetails`].
fn grant_details(grant: &GrantRecord) -> Result<GrantDetails, OAuthError> {
    serde_json::from_str(&grant.details).map_err(|e| {
        tracing::error!(grant_id = %grant.grant_id, error = %e, "stored grant details unreadable");
        OAuthError::server_error()
    })
}

/// What tokens of this grant report at introspection.
/// The details of tokens of `grant` for `client`: among them the `sub`
/// the client is shown ([`crate::subject::client_subject`]), kept for
/// userinfo and introspection.
fn token_details(
    policy: &Policy,
    client: &Client,
    grant: &GrantRecord,
    details: &GrantDetails,
) -> Result<TokenDetails, OAuthError> {
    let auth = details.authentication.as_ref();
    let subject = grant
        .sub
        .as_deref()
        .map(|s| crate::subject::client_subject(policy, client, s, grant.consent_id.as_deref()))
        .transpose()?;
    Ok(TokenDetails {
        subject,
        authorization_details: details.authorization_details.clone(),
        consent_id: grant.consent_id.clone(),
        acr: auth.and_then(|a| a.acr.clone()),
        auth_time: auth.map(|a| a.auth_time),
        accounts: details.accounts.clone(),
        ..TokenDetails::default()
    })
}

/// Asks the token-claims hook for the extra claims of tokens of `grant`
/// with `scope`, and records the introspection and UserInfo ones in
/// `tdetails`; returns the ID Token ones.
async fn hook_claims<H: ClaimsHook>(
    hook: &H,
    grant_type: &str,
    grant: &GrantRecord,
    details: &GrantDetails,
    scope: &str,
    tdetails: &mut TokenDetails,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, OAuthError> {
    let query = ClaimsQuery {
        grant_type,
        client_id: &grant.client_id,
        sub: grant.sub.as_deref(),
        scope,
        consent_id: grant.consent_id.as_deref(),
        acr: details
            .authentication
            .as_ref()
            .and_then(|a| a.acr.as_deref()),
        accounts: &details.accounts,
    };
    let Some(ExtraClaims {
        id_token,
        userinfo,
        introspection,
    }) = hook.token_claims(&query).await?
    else {
        return Ok(None);
    };
    tdetails.claims = introspection;
    tdetails.userinfo_claims = userinfo;
    Ok(Some(id_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_a_code_request() {
        let r = TokenRequest::from_form(&form(&[
            ("grant_type", "authorization_code"),
            ("code", "c"),
            ("redirect_uri", "https://tpp.example/cb"),
            ("code_verifier", "v"),
            ("client_id", "tpp-1"),
            ("unknown", "ignored"),
        ]))
        .unwrap();
        assert_eq!(r.grant_type, GrantType::AuthorizationCode);
        assert_eq!(r.code.as_deref(), Some("c"));
        assert_eq!(r.redirect_uri.as_deref(), Some("https://tpp.example/cb"));
        assert_eq!(r.code_verifier.as_deref(), Some("v"));
        assert_eq!(r.scope, None);
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("\"c\"") && !dbg.contains("\"v\""), "{dbg}");
    }

    #[test]
    fn bad_forms_get_the_rfc6749_codes() {
        let e = TokenRequest::from_form(&form(&[("code", "c")])).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        let e = TokenRequest::from_form(&form(&[("grant_type", "")])).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        let e = TokenRequest::from_form(&form(&[("grant_type", "password")])).unwrap_err();
        assert_eq!(e.code.as_str(), "unsupported_grant_type");
        let e = TokenRequest::from_form(&form(&[
            ("grant_type", "authorization_code"),
            ("code", "a"),
            ("code", "b"),
        ]))
        .unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        assert_eq!(e.description.as_deref(), Some("parameter code is repeated"));
        let e = TokenRequest::from_form(&form(&[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ]))
        .unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        let e = TokenRequest::from_form(&form(&[
            ("grant_type", "client_credentials"),
            ("x-evil\"", "1"),
            ("x-evil\"", "2"),
        ]))
        .unwrap_err();
        assert_eq!(e.description.as_deref(), Some("a parameter is repeated"));
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let r = TokenRequest::from_form(&form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "r"),
            ("scope", ""),
            ("scope", "accounts"),
        ]))
        .unwrap();
        assert_eq!(r.grant_type, GrantType::RefreshToken);
        assert_eq!(r.scope.as_deref(), Some("accounts"));
    }

    #[test]
    fn scopes_follow_rfc6749_3_3() {
        assert_eq!(
            parse_scope("openid  accounts openid").unwrap(),
            vec!["openid", "accounts"]
        );
        assert_eq!(
            parse_scope("a\\b").unwrap_err().code.as_str(),
            "invalid_scope"
        );
        assert_eq!(
            parse_scope("caf\u{e9}").unwrap_err().code.as_str(),
            "invalid_scope"
        );
        assert_eq!(
            parse_scope("   ").unwrap_err().code.as_str(),
            "invalid_scope"
        );
        assert!(has_scope("openid accounts", "accounts"));
        assert!(!has_scope("openid accounts", "account"));
    }
}

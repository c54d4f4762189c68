//! The backchannel authentication request (CIBA §7.1, FAPI-CIBA §5.2.2).

use oauth_core::authorization::AuthorizationRequest;
use oauth_core::client::AuthenticatedClient;
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::jwks_resolver::{JwksFetcher, JwksResolver};
use oauth_core::keys::{Keys, VerifyOptions};
use oauth_core::policy::Policy;
use oauth_core::request::{
    Params, single_param, validate_backchannel_request, verify_backchannel_request_object,
};
use oauth_core::storage::ReplayCache;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CibaConfig;

/// Longest `binding_message` (CIBA §7.1: "relatively short"; it is shown
/// on a phone's notification and on the TPP's screen).
pub const MAX_BINDING_MESSAGE_CHARS: usize = 64;
/// Longest `login_hint` / `user_code`.
pub const MAX_HINT_CHARS: usize = 512;
/// Longest `login_hint_token` / `id_token_hint` / `client_notification_token`.
pub const MAX_TOKEN_CHARS: usize = 8192;

/// Which hint identified the customer (CIBA §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HintType {
    LoginHint,
    LoginHintToken,
    IdTokenHint,
}

impl HintType {
    pub fn as_str(self) -> &'static str {
        match self {
            HintType::LoginHint => "login_hint",
            HintType::LoginHintToken => "login_hint_token",
            HintType::IdTokenHint => "id_token_hint",
        }
    }
}

/// A validated authentication request, before the customer is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct BackchannelRequest {
    /// Scope, `claims`, `acr_values`, `authorization_details`, checked by
    /// the steps shared with the authorization request.
    pub request: AuthorizationRequest,
    pub hint_type: HintType,
    /// As sent; for `id_token_hint` the `sub` of our verified ID Token.
    pub hint: String,
    pub binding_message: Option<String>,
    pub user_code: Option<String>,
    /// Seconds until the request expires (`requested_expiry` or the default).
    pub expires_in: i64,
    /// Ping and push: the bearer token for the client's notification
    /// endpoint (CIBA §7.1).
    pub client_notification_token: Option<String>,
    /// The intent (consent) the request names, as in the redirect flow.
    pub intent_id: Option<String>,
    /// Whether it came as a signed request object.
    pub signed: bool,
}

fn invalid(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::invalid_request(d)
}

/// CIBA §13 has no `invalid_request_object`: a refused request object is
/// `invalid_request` there (with the same description).
fn as_ciba(e: OAuthError) -> OAuthError {
    if e.code == ErrorCode::InvalidRequestObject {
        OAuthError {
            code: ErrorCode::InvalidRequest,
            ..e
        }
    } else {
        e
    }
}

/// Whether `client` must sign its authentication requests: every FAPI
/// client (the FAPI-CIBA conformance plan refuses unsigned requests), and
/// any client registered with
/// `backchannel_authentication_request_signing_alg` (CIBA §4).
pub fn signing_required(client: &AuthenticatedClient) -> bool {
    let m = &client.client.metadata;
    m.fapi || m.backchannel_authentication_request_signing_alg.is_some()
}

/// Validates a backchannel authentication request of an authenticated
/// client (CIBA §7.1, §7.1.1; FAPI-CIBA §5.2.2). `form` is the body as
/// received; `consent_claim` the request claim that names an intent (as in
/// the redirect flow). Refusals carry the CIBA §13 codes: `invalid_request`
/// (also for a bad request object), `invalid_scope`, `unauthorized_client`,
/// `missing_user_code`, `invalid_binding_message`. Spends the request
/// object's `jti`.
#[allow(clippy::too_many_arguments)]
pub async fn validate<S: ReplayCache, F: JwksFetcher>(
    store: &S,
    jwks: &JwksResolver<F>,
    keys: &Keys,
    policy: &Policy,
    cfg: &CibaConfig,
    client: &AuthenticatedClient,
    form: &[(String, String)],
    consent_claim: &str,
    now: i64,
) -> Result<BackchannelRequest, OAuthError> {
    let c = &client.client;
    let form_client_id = single_param(form, "client_id")?;
    let object = match single_param(form, "request")? {
        Some(jwt) => Some(
            verify_backchannel_request_object(store, jwks, policy, c, form_client_id, jwt, now)
                .await
                .map_err(as_ciba)?,
        ),
        None if signing_required(client) => {
            return Err(invalid(
                "a signed authentication request (request) is required",
            ));
        }
        None => None,
    };
    let (request, params) =
        validate_backchannel_request(c, form, object.as_ref(), policy).map_err(as_ciba)?;
    if !request.is_openid() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope must contain openid (CIBA 7.1)",
        ));
    }
    let mode = c.metadata.backchannel_token_delivery_mode.as_deref();
    if mode == Some("push") && c.metadata.fapi {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "push delivery is not allowed under FAPI-CIBA",
        ));
    }
    let (hint_type, hint) = hint(&params, keys, policy, c, now)?;
    let intent_id = request
        .requested_claim_value(consent_claim)
        .map(str::to_owned);
    let binding_message = binding_message(&params)?;
    if binding_message.is_none()
        && c.metadata.fapi
        && intent_id.is_none()
        && request.authorization_details.is_none()
    {
        // FAPI-CIBA §5.2.2-3: a unique authorization context or a binding message.
        return Err(OAuthError::new(
            ErrorCode::InvalidBindingMessage,
            "binding_message is required when the request names no intent or authorization_details",
        ));
    }
    let user_code = match text(&params, "user_code", MAX_HINT_CHARS)? {
        None if c.metadata.backchannel_user_code_parameter => {
            return Err(OAuthError::new(
                ErrorCode::MissingUserCode,
                "user_code is required for this client",
            ));
        }
        code => code.filter(|_| c.metadata.backchannel_user_code_parameter),
    };
    let expires_in = requested_expiry(&params, cfg)?;
    let client_notification_token = match (
        mode,
        text(&params, "client_notification_token", MAX_TOKEN_CHARS)?,
    ) {
        (Some("ping" | "push"), None) => {
            return Err(invalid(
                "client_notification_token is required for ping and push clients",
            ));
        }
        (Some("ping" | "push"), Some(t)) => {
            // RFC 6750 §2.1 b68token: it is sent back as a Bearer credential.
            if !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b) || b == b'=')
            {
                return Err(invalid(
                    "client_notification_token must be a bearer token (RFC 6750 2.1)",
                ));
            }
            Some(t)
        }
        (_, _) => None,
    };
    Ok(BackchannelRequest {
        request,
        hint_type,
        hint,
        binding_message,
        user_code,
        expires_in,
        client_notification_token,
        intent_id,
        signed: object.is_some(),
    })
}

/// A string parameter of at most `max` characters.
fn text(params: &Params, name: &'static str, max: usize) -> Result<Option<String>, OAuthError> {
    let Some(v) = params.string(name).map_err(as_ciba)? else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(invalid(format!("{name} is too long")));
    }
    Ok(Some(v.to_owned()))
}

/// CIBA §7.1: exactly one of `login_hint_token`, `id_token_hint`,
/// `login_hint`. An `id_token_hint` must be an unexpired ID Token of ours
/// issued to this client; its `sub` is the hint, so only for a client shown
/// the customer's own id (`oauth_core::subject`): a pairwise or consent
/// `sub` does not name the customer to the bank.
fn hint(
    params: &Params,
    keys: &Keys,
    policy: &Policy,
    client: &oauth_core::client::Client,
    now: i64,
) -> Result<(HintType, String), OAuthError> {
    let client_id = client.id();
    let mut found = Vec::new();
    for (t, max) in [
        (HintType::LoginHint, MAX_HINT_CHARS),
        (HintType::LoginHintToken, MAX_TOKEN_CHARS),
        (HintType::IdTokenHint, MAX_TOKEN_CHARS),
    ] {
        if let Some(v) = text(params, t.as_str(), max)? {
            found.push((t, v));
        }
    }
    if found.len() != 1 {
        return Err(invalid(
            "exactly one of login_hint, login_hint_token and id_token_hint is required",
        ));
    }
    let (t, v) = found.remove(0);
    if t != HintType::IdTokenHint {
        return Ok((t, v));
    }
    let kind = policy.subject_kind_for(client);
    if kind != oauth_core::subject::SubjectKind::Customer {
        return Err(invalid(format!(
            "id_token_hint: this client's ID Tokens carry a {} subject, which does not name the customer; send login_hint or login_hint_token",
            kind.as_str()
        )));
    }
    let checks = VerifyOptions::new(now)
        .leeway(policy.clock_skew_secs)
        .issuer(&policy.issuer)
        .audience([client_id]);
    let claims = keys.verify_own(&v, &checks).map_err(|e| {
        tracing::debug!(client_id, error = %e, "id_token_hint refused");
        invalid("id_token_hint is not a valid, unexpired ID Token of this server for this client")
    })?;
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok((t, sub.to_owned())),
        _ => Err(invalid("id_token_hint has no sub")),
    }
}

/// Whether `c` may appear in a binding message: letters and digits of any
/// script, spaces, and common punctuation; no control characters, no
/// markup (`<>&"`), nothing invisible.
pub fn binding_message_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "-_.,:;!?#()+/@'*%$€£=".contains(c)
}

/// CIBA §7.1 `binding_message`: shown on both devices, so short and
/// displayable; otherwise `invalid_binding_message` (CIBA §13).
fn binding_message(params: &Params) -> Result<Option<String>, OAuthError> {
    let bad = |d: &'static str| OAuthError::new(ErrorCode::InvalidBindingMessage, d);
    let Some(m) = params
        .string("binding_message")
        .map_err(|_| bad("binding_message must be a string"))?
    else {
        return Ok(None);
    };
    if m.chars().count() > MAX_BINDING_MESSAGE_CHARS {
        return Err(bad("binding_message is too long (at most 64 characters)"));
    }
    if !m.chars().all(binding_message_char) || m.trim().is_empty() {
        return Err(bad(
            "binding_message has characters that cannot be displayed",
        ));
    }
    Ok(Some(m.to_owned()))
}

/// CIBA §7.1 `requested_expiry`: a positive integer of seconds, as a form
/// string or a JSON number or string in a request object, at most
/// `max_expiry_secs`.
fn requested_expiry(params: &Params, cfg: &CibaConfig) -> Result<i64, OAuthError> {
    let bad = || {
        invalid(format!(
            "requested_expiry must be a positive integer of at most {} seconds",
            cfg.max_expiry_secs
        ))
    };
    let v = match params.get("requested_expiry") {
        None => return Ok(cfg.default_expiry_secs),
        Some(Value::String(s)) => {
            if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<i64>().map_err(|_| bad())?
        }
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    if v < 1 || v > cfg.max_expiry_secs {
        return Err(bad());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_message_characters() {
        assert!(
            "Pay 12,50 € to Acme #W4SCT"
                .chars()
                .all(binding_message_char)
        );
        assert!("Überweisung 東京".chars().all(binding_message_char));
        for bad in ["<script>", "a\u{7}", "x\u{202e}y", "\"q\"", "a&b"] {
            assert!(!bad.chars().all(binding_message_char), "{bad}");
        }
    }

    #[test]
    fn ciba_maps_request_object_errors_to_invalid_request() {
        let e = as_ciba(OAuthError::new(ErrorCode::InvalidRequestObject, "x"));
        assert_eq!(e.code.as_str(), "invalid_request");
        assert_eq!(e.description.as_deref(), Some("x"));
        let e = as_ciba(OAuthError::new(ErrorCode::InvalidScope, "y"));
        assert_eq!(e.code.as_str(), "invalid_scope");
    }
}

//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core
//! §3.1.2.1): one ordered validation pipeline shared by every endpoint that
//! accepts one (the pushed authorization request endpoint now, CIBA later),
//! so that the endpoints cannot drift apart.
//!
//! - [`validate_authorization_request`] — the pipeline: small named steps
//!   (`STEPS`) run in order over the parameters, filling in an
//!   [`AuthorizationRequest`].
//! - [`pkce`] — RFC 7636, `S256` only.
//! - [`request_object`] — signed request objects (RFC 9101, FAPI 2.0
//!   Message Signing §5.3.1); when one is used, only its claims count.
//! - [`response`] — the authorization response with `iss` (RFC 9207) or as
//!   JARM.

pub mod pkce;
pub mod request_object;
pub mod response;

use std::fmt;

use serde_json::{Map, Value};

use crate::authorization::{AuthorizationRequest, DpopProof};
use crate::client::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::policy::{Policy, Profile};

pub use request_object::{
    RequestObject, RequestObjectUse, verify_backchannel_request_object, verify_request_object,
};
pub use response::{RedirectTarget, authorization_response};

/// Longest `state` kept (verbatim, never truncated); longer values are
/// refused with `invalid_request`. The OIDF suite sends 384 characters.
pub const MAX_STATE_LEN: usize = 512;
/// Longest `nonce` kept (verbatim, never truncated); longer values are
/// refused with `invalid_request`. The OIDF suite sends 384 characters.
pub const MAX_NONCE_LEN: usize = 512;
/// Longest `login_hint` / `ui_locales` / single `acr_values` entry.
pub const MAX_HINT_LEN: usize = 512;

/// The `prompt` values we understand (OpenID Connect Core §3.1.2.1).
pub const PROMPT_VALUES: [&str; 4] = ["none", "login", "consent", "select_account"];

/// An authorization request that failed validation.
///
/// `redirect` is set only once the `redirect_uri` has been validated: from
/// then on the error may be sent back to the client (RFC 6749 §4.1.2.1);
/// before, it must be shown to the user instead, or it would turn the
/// authorization server into an open redirector. At the pushed
/// authorization request endpoint every error is a JSON response anyway
/// (RFC 9126 §2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRequest {
    pub error: OAuthError,
    /// Boxed: the error path stays small.
    pub redirect: Option<Box<RedirectTarget>>,
}

impl fmt::Display for RejectedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for RejectedRequest {}

impl From<RejectedRequest> for OAuthError {
    fn from(r: RejectedRequest) -> OAuthError {
        r.error
    }
}

/// The single value of form parameter `name`: `None` when absent or empty
/// (RFC 6749 §3.1: a parameter without a value is treated as omitted),
/// `invalid_request` when it appears more than once (RFC 6749 §3.1).
pub fn single_param<'a>(
    form: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, OAuthError> {
    let mut found = None;
    for (k, v) in form {
        if k == name && !v.is_empty() {
            if found.is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name} is included more than once"
                )));
            }
            found = Some(v.as_str());
        }
    }
    Ok(found)
}

/// Where the parameters being validated came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Form,
    RequestObject,
}

/// The authorization request parameters: form values (all strings) or the
/// claims of a verified request object (JSON values: `claims` and
/// `authorization_details` are objects/arrays there, `max_age` a number).
pub struct Params {
    values: Map<String, Value>,
    origin: Origin,
}

impl Params {
    /// RFC 6749 §3.1: no parameter twice; empty values count as omitted.
    fn from_form(form: &[(String, String)]) -> Result<Params, OAuthError> {
        let mut values = Map::new();
        for (k, v) in form {
            if v.is_empty() {
                continue;
            }
            if values.insert(k.clone(), Value::String(v.clone())).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} is included more than once"
                )));
            }
        }
        Ok(Params {
            values,
            origin: Origin::Form,
        })
    }

    fn from_request_object(claims: &Map<String, Value>) -> Params {
        Params {
            values: claims.clone(),
            origin: Origin::RequestObject,
        }
    }

    /// A malformed value: in a request object that makes the object invalid
    /// (RFC 9101 §6.3 `invalid_request_object`); in a form it is a plain
    /// `invalid_request`.
    fn malformed(&self, what: String) -> OAuthError {
        match self.origin {
            Origin::Form => OAuthError::invalid_request(what),
            Origin::RequestObject => OAuthError::new(ErrorCode::InvalidRequestObject, what),
        }
    }

    /// Whether the parameters are a verified request object's claims.
    pub fn signed(&self) -> bool {
        self.origin == Origin::RequestObject
    }

    /// A parameter's value; absent, `null` and empty count as omitted.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self.values.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(v) => Some(v),
        }
    }

    /// A string parameter; a request-object claim of another JSON type is
    /// refused.
    pub fn string(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.malformed(format!("{name} must be a string"))),
        }
    }

    /// A JSON-valued parameter (`claims`, `authorization_details`): parsed
    /// from its string form, or taken as is from a request object.
    fn json(&self, name: &str, code: ErrorCode) -> Result<Option<Value>, OAuthError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                // The form's parser let JSON whitespace through; the strings
                // inside follow the rule for all text (crate::text).
                Ok(v) if crate::text::json_is_clean(&v) => Ok(Some(v)),
                Ok(_) => Err(OAuthError::new(
                    code,
                    format!("{name} holds a control character"),
                )),
                Err(_) => Err(OAuthError::new(code, format!("{name} is not valid JSON"))),
            },
            Some(v) => Ok(Some(v.clone())),
        }
    }
}

/// What the steps work on: the inputs, and the request being filled in.
struct Checking<'a> {
    client: &'a Client,
    policy: &'a Policy,
    /// The profile whose rules apply to this client's requests.
    profile: Profile,
    /// The request object came by value to the authorization endpoint
    /// ([`validate_request_by_value`]), not pushed.
    by_value: bool,
    form: &'a [(String, String)],
    params: Params,
    dpop: Option<&'a DpopProof>,
    /// Set by [`check_redirect_uri`]; from then on errors may be redirected.
    redirect: Option<Box<RedirectTarget>>,
    out: AuthorizationRequest,
}

impl<'a> Checking<'a> {
    /// The parameters that count: with a verified request object only its
    /// claims (JAR §6.3, CIBA §7.1.1); the form is parsed (and so checked)
    /// either way.
    fn params(
        form: &[(String, String)],
        request_object: Option<&request_object::RequestObject>,
    ) -> Result<Params, OAuthError> {
        let form_params = Params::from_form(form)?;
        Ok(match request_object {
            Some(ro) => Params::from_request_object(ro.claims()),
            None => form_params,
        })
    }

    fn new(
        client: &'a Client,
        policy: &'a Policy,
        form: &'a [(String, String)],
        params: Params,
        dpop: Option<&'a DpopProof>,
    ) -> Checking<'a> {
        Checking {
            client,
            policy,
            profile: policy.profile_for(client),
            by_value: false,
            form,
            params,
            dpop,
            redirect: None,
            out: AuthorizationRequest {
                client_id: client.id().to_owned(),
                response_type: String::new(),
                redirect_uri: String::new(),
                scope: Vec::new(),
                state: None,
                nonce: None,
                code_challenge: String::new(),
                code_challenge_method: String::new(),
                response_mode: None,
                claims: None,
                acr_values: Vec::new(),
                max_age: None,
                prompt: Vec::new(),
                authorization_details: None,
                dpop_jkt: None,
                login_hint: None,
                ui_locales: None,
            },
        }
    }

    /// Runs `steps` in order; the first error ends the check (logged at
    /// debug with the step's name, as `what` "rejected").
    fn run(&mut self, steps: &[(&str, Step)], what: &str) -> Result<(), OAuthError> {
        for (name, step) in steps {
            if let Err(error) = step(self) {
                tracing::debug!(step = name, client_id = %self.client.id(),
                    error = %error.code.as_str(), "{what} rejected");
                return Err(error);
            }
        }
        Ok(())
    }
}

/// One validation step.
type Step = fn(&mut Checking<'_>) -> Result<(), OAuthError>;

/// The pipeline, in order. The steps before `check_redirect_uri` establish
/// what an error redirect needs (the client, `state`, `response_mode`);
/// errors they report are never redirected.
const STEPS: [(&str, Step); 17] = [
    ("check_client", check_client),
    ("check_request_reference", check_request_reference),
    ("check_state", check_state),
    ("check_response_mode", check_response_mode),
    ("check_redirect_uri", check_redirect_uri),
    ("check_outside_parameters", check_outside_parameters),
    ("check_response_type", check_response_type),
    ("check_scope", check_scope),
    ("check_nonce", check_nonce),
    ("check_pkce", check_pkce),
    ("check_claims", check_claims),
    ("check_acr_values", check_acr_values),
    ("check_max_age", check_max_age),
    ("check_prompt", check_prompt),
    ("check_authorization_details", check_authorization_details),
    ("check_dpop_jkt", check_dpop_jkt),
    ("check_hints", check_hints),
];

/// Validates an authorization request (RFC 6749 §4.1.1, OpenID Connect Core
/// §3.1.2.2, RFC 7636 §4.3, RFC 9396 §2, RFC 9449 §10, JARM §2.3).
///
/// `form` is the request's form body (or query) as received, duplicates
/// included: a parameter given twice is refused (RFC 6749 §3.1). With a
/// verified `request_object`, its claims REPLACE the form parameters
/// (RFC 9101 §6.3; FAPI 2.0 Message Signing §5.3.2): the form only has to
/// agree on `client_id` and must not carry `request_uri`. `dpop` is the
/// DPoP proof presented with the request (RFC 9449 §10.1), if any; its key
/// becomes the one the code is bound to.
///
/// Returns the validated request, or a [`RejectedRequest`] that says
/// whether the error may be redirected.
pub fn validate_authorization_request(
    client: &Client,
    form: &[(String, String)],
    request_object: Option<&request_object::RequestObject>,
    policy: &Policy,
    dpop: Option<&DpopProof>,
) -> Result<AuthorizationRequest, RejectedRequest> {
    validate(client, form, request_object, policy, dpop, false)
}

/// [`validate_authorization_request`] for a request object sent by value
/// to the authorization endpoint (RFC 9101 §5.1; FAPI 1.0 Advanced
/// §5.2.2-1): the same steps, where the `query` must also carry the
/// OAuth 2.0 / OIDC copies of `response_type`, `client_id` and `scope`
/// (OpenID Connect Core §6.1), and PKCE is optional (FAPI 1.0 Advanced
/// §5.2.2-18 requires it only with PAR). `request_object` was verified
/// by [`verify_request_object`].
pub fn validate_request_by_value(
    client: &Client,
    query: &[(String, String)],
    request_object: &request_object::RequestObject,
    policy: &Policy,
) -> Result<AuthorizationRequest, RejectedRequest> {
    validate(client, query, Some(request_object), policy, None, true)
}

fn validate(
    client: &Client,
    form: &[(String, String)],
    request_object: Option<&request_object::RequestObject>,
    policy: &Policy,
    dpop: Option<&DpopProof>,
    by_value: bool,
) -> Result<AuthorizationRequest, RejectedRequest> {
    let reject = |error| RejectedRequest {
        error,
        redirect: None,
    };
    let params = Checking::params(form, request_object).map_err(reject)?;
    let mut c = Checking::new(client, policy, form, params, dpop);
    c.by_value = by_value;
    if let Err(error) = c.run(&STEPS, "authorization request") {
        return Err(RejectedRequest {
            error,
            redirect: c.redirect,
        });
    }
    Ok(c.out)
}

/// The steps a CIBA authentication request shares with the authorization
/// request (CIBA §7.1): the same checks of the client's scope, `claims`,
/// `acr_values` and `authorization_details`, so the two cannot drift apart.
const BACKCHANNEL_STEPS: [(&str, Step); 6] = [
    ("check_backchannel_client", check_backchannel_client),
    ("check_request_reference", check_request_reference),
    ("check_scope", check_scope),
    ("check_claims", check_claims),
    ("check_acr_values", check_acr_values),
    ("check_authorization_details", check_authorization_details),
];

/// Validates the parts of a CIBA authentication request (CIBA §7.1) that
/// it shares with the authorization request, by the same steps; with a
/// verified `request_object` only its claims count (CIBA §7.1.1). Returns
/// the request (scope, claims, acr_values, authorization_details filled in;
/// no redirect parts) and the parameters, for the CIBA-specific checks
/// (hints, `binding_message`, `requested_expiry`, …) in the `ciba` crate.
pub fn validate_backchannel_request(
    client: &Client,
    form: &[(String, String)],
    request_object: Option<&request_object::RequestObject>,
    policy: &Policy,
) -> Result<(AuthorizationRequest, Params), OAuthError> {
    let params = Checking::params(form, request_object)?;
    let mut c = Checking::new(client, policy, form, params, None);
    c.run(&BACKCHANNEL_STEPS, "backchannel authentication request")?;
    Ok((c.out, c.params))
}

/// CIBA §7.1: the client is the authenticated one and registered for the
/// CIBA grant (`unauthorized_client` otherwise, CIBA §13).
fn check_backchannel_client(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    if single_param(c.form, "client_id")?.is_some_and(|id| id != c.client.id()) {
        return Err(invalid_request(
            "client_id does not match the authenticated client",
        ));
    }
    if c.params.origin == Origin::RequestObject
        && c.params
            .string("client_id")?
            .is_some_and(|id| id != c.client.id())
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequestObject,
            "request object client_id does not match the client",
        ));
    }
    if !c.client.allows_grant(crate::client::CIBA_GRANT) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client is not registered for the CIBA grant",
        ));
    }
    Ok(())
}

fn invalid_request(d: &'static str) -> OAuthError {
    OAuthError::invalid_request(d)
}

/// The request is for this client, which may use the code flow
/// (RFC 6749 §4.1.2.1 `unauthorized_client`).
fn check_client(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    if single_param(c.form, "client_id")?.is_some_and(|id| id != c.client.id()) {
        return Err(invalid_request(
            "client_id does not match the authenticated client",
        ));
    }
    if c.params.origin == Origin::RequestObject
        && c.params
            .string("client_id")?
            .is_some_and(|id| id != c.client.id())
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequestObject,
            "request object client_id does not match the client",
        ));
    }
    let meta = &c.client.metadata;
    if !c.client.allows_grant("authorization_code")
        || !meta
            .response_types
            .iter()
            .any(|r| r == response::CODE || r == response::CODE_ID_TOKEN)
    {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client is not registered for the authorization code flow",
        ));
    }
    Ok(())
}

/// RFC 9126 §2.1: `request_uri` MUST NOT be pushed; RFC 9101 §4: a request
/// object cannot reference another one. A `request` form parameter is only
/// meaningful once verified ([`request_object::verify_request_object`]).
fn check_request_reference(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    if single_param(c.form, "request_uri")?.is_some() {
        return Err(invalid_request(
            "request_uri must not be included in this request",
        ));
    }
    match c.params.origin {
        Origin::Form if c.params.get("request").is_some() => Err(invalid_request(
            "the request parameter is not accepted in this request",
        )),
        Origin::RequestObject
            if c.params.get("request").is_some() || c.params.get("request_uri").is_some() =>
        {
            Err(OAuthError::new(
                ErrorCode::InvalidRequestObject,
                "a request object must not contain request or request_uri",
            ))
        }
        _ => Ok(()),
    }
}

/// RFC 6749 §4.1.1: `state` is opaque and echoed verbatim; an over-long one
/// is refused rather than truncated.
fn check_state(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    if let Some(state) = c.params.string("state")? {
        if state.chars().count() > MAX_STATE_LEN {
            return Err(invalid_request(
                "state is too long (at most 512 characters)",
            ));
        }
        c.out.state = Some(state.to_owned());
    }
    Ok(())
}

/// Whether the request asks for the hybrid flow where the profile serves
/// it (OIDC Core §3.3; FAPI 1.0 Advanced §5.2.2-2). Elsewhere `code
/// id_token` is refused as an unsupported response type, answered like the
/// code flow.
fn is_hybrid(c: &Checking<'_>) -> bool {
    c.params.string("response_type").ok().flatten() == Some(response::CODE_ID_TOKEN)
        && c.profile
            .response_types()
            .contains(&response::CODE_ID_TOKEN)
}

/// OAuth 2.0 Multiple Response Types §2.1, §5; OAuth 2.0 Form Post
/// Response Mode §2; JARM §2.3: the hybrid flow answers in the fragment
/// (its default, made explicit here) or as a form post, never in the
/// query; the code flow in the query, plainly or as a JWT; and only in
/// modes the profile serves. Checked before `response_type`, so that every
/// later error reaches the client the way it expects its answer. `query`
/// passes for the code flow even where the profile wants JARM, so that
/// the refusal ([`check_response_type`]) is redirected.
fn check_response_mode(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    use response::{
        RESPONSE_MODE_FORM_POST, RESPONSE_MODE_FRAGMENT, RESPONSE_MODE_JWT, RESPONSE_MODE_QUERY,
        RESPONSE_MODE_QUERY_JWT,
    };
    let hybrid = is_hybrid(c);
    let for_type: &[&str] = if hybrid {
        &[RESPONSE_MODE_FRAGMENT, RESPONSE_MODE_FORM_POST]
    } else {
        &[
            RESPONSE_MODE_QUERY,
            RESPONSE_MODE_JWT,
            RESPONSE_MODE_QUERY_JWT,
        ]
    };
    let served = c.profile.response_modes();
    let allowed: Vec<&str> = for_type
        .iter()
        .copied()
        .filter(|m| served.contains(m) || *m == RESPONSE_MODE_QUERY)
        .collect();
    match c.params.string("response_mode")? {
        Some(mode) if allowed.contains(&mode) => c.out.response_mode = Some(mode.to_owned()),
        Some(_) => {
            return Err(c
                .params
                .malformed(format!("response_mode must be {}", allowed.join(" or "))));
        }
        None if hybrid => c.out.response_mode = Some(RESPONSE_MODE_FRAGMENT.to_owned()),
        None => {}
    }
    Ok(())
}

/// RFC 6749 §3.1.2.3, FAPI 2.0 Security Profile §5.3.2.2-5: the
/// `redirect_uri` is required and must equal a registered one exactly.
fn check_redirect_uri(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let uri = c
        .params
        .string("redirect_uri")?
        .ok_or_else(|| invalid_request("redirect_uri required"))?;
    if !c.client.has_redirect_uri(uri) {
        return Err(invalid_request("redirect_uri not registered"));
    }
    c.out.redirect_uri = uri.to_owned();
    c.redirect = Some(Box::new(RedirectTarget::of(&c.out)));
    Ok(())
}

/// OpenID Connect Core §6.1, §6.3.3; FAPI 1.0 Advanced §5.2.2: under
/// FAPI 1.0 a parameter sent both outside and inside the request object
/// must say the same (`invalid_request` otherwise: the outside copy was
/// changed on the way, or the client is confused), and by value the
/// outside `response_type`, `client_id` and, for an OpenID request, a
/// `scope` with `openid` are required, so that the request stays a valid
/// OAuth 2.0 and OpenID Connect one. Only the inside values are used. FAPI
/// 2.0 ignores the outside parameters (RFC 9101 §6.3).
fn check_outside_parameters(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    if c.profile.is_fapi2() || !c.params.signed() {
        return Ok(());
    }
    for (name, outside) in c.form {
        let Some(inside) = c.params.get(name) else {
            continue;
        };
        if !outside.is_empty() && !same_value(name, outside, inside) {
            return Err(OAuthError::invalid_request(format!(
                "{name} outside the request object differs from the one inside"
            )));
        }
    }
    if !c.by_value {
        return Ok(());
    }
    for name in ["response_type", "client_id"] {
        if single_param(c.form, name)?.is_none() {
            return Err(OAuthError::invalid_request(format!(
                "{name} is required outside the request object too (OpenID Connect Core §6.1)"
            )));
        }
    }
    let has_openid =
        |scope: Option<&str>| scope.is_some_and(|s| s.split(' ').any(|t| t == "openid"));
    if has_openid(c.params.string("scope")?) && !has_openid(single_param(c.form, "scope")?) {
        return Err(invalid_request(
            "scope with openid is required outside the request object too (OpenID Connect Core §6.1)",
        ));
    }
    Ok(())
}

/// Whether the form value `outside` says what the request-object claim
/// `inside` says: a scope as a set of scope-tokens, a JSON-valued claim
/// (`claims`, `max_age` as a number, …) as JSON.
fn same_value(name: &str, outside: &str, inside: &Value) -> bool {
    match inside {
        Value::String(s) if name == "scope" => {
            fn set(v: &str) -> Vec<&str> {
                let mut t: Vec<&str> = v.split(' ').filter(|t| !t.is_empty()).collect();
                t.sort_unstable();
                t.dedup();
                t
            }
            set(s) == set(outside)
        }
        Value::String(s) => s == outside,
        other => serde_json::from_str::<Value>(outside).is_ok_and(|v| &v == other),
    }
}

/// The response types the profile serves ([`Profile::response_types`]:
/// FAPI 2.0 Security Profile §5.3.2.2-1 `code` only; FAPI 1.0 Advanced
/// §5.2.2-2 `code id_token`, or `code` with JARM), and of those only one
/// the client registered (OIDC Dynamic Registration §2 `response_types`;
/// `unauthorized_client` otherwise, RFC 6749 §4.1.2.1).
fn check_response_type(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let rt = c
        .params
        .string("response_type")?
        .ok_or_else(|| invalid_request("response_type required"))?;
    let served = c.profile.response_types();
    if !served.contains(&rt) {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedResponseType,
            format!("response_type must be {}", served.join(" or ")),
        ));
    }
    if rt == response::CODE
        && !c.profile.is_fapi2()
        && !c.redirect.as_ref().is_some_and(|t| t.is_jarm())
    {
        return Err(invalid_request(
            "response_type code requires response_mode jwt under FAPI 1.0 Advanced (or use code id_token)",
        ));
    }
    if !c.client.metadata.response_types.iter().any(|r| r == rt) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("the client is not registered for response_type {rt}"),
        ));
    }
    c.out.response_type = rt.to_owned();
    Ok(())
}

/// RFC 6749 §3.3 `scope-token = 1*NQCHAR`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// RFC 6749 §3.3: every scope must be one the server offers and the client
/// registered; `openid` is optional (plain OAuth flows).
fn check_scope(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let invalid_scope = |d: &'static str| OAuthError::new(ErrorCode::InvalidScope, d);
    let raw = c
        .params
        .string("scope")?
        .ok_or_else(|| invalid_scope("scope required"))?;
    let mut scope: Vec<String> = Vec::new();
    for token in raw.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err(invalid_scope(
                "scope contains characters not allowed in a scope",
            ));
        }
        if !c.policy.scopes.iter().any(|s| s == token) {
            return Err(invalid_scope("a requested scope is not supported"));
        }
        if !c.client.allows_scopes([token]) {
            return Err(invalid_scope(
                "a requested scope is not allowed for this client",
            ));
        }
        if !scope.iter().any(|s| s == token) {
            scope.push(token.to_owned());
        }
    }
    if scope.is_empty() {
        return Err(invalid_scope("scope required"));
    }
    c.out.scope = scope;
    Ok(())
}

/// OpenID Connect Core §3.1.2.1: `nonce` is kept verbatim for the
/// id_token; §3.3.2.11: the hybrid flow requires it, and FAPI 1.0
/// Advanced §5.2.2.2-1 every request with the `openid` scope (also the
/// code flow with JARM).
fn check_nonce(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let fapi1_openid = !c.profile.is_fapi2() && c.out.scope.iter().any(|s| s == "openid");
    match c.params.string("nonce")? {
        Some(nonce) if nonce.chars().count() > MAX_NONCE_LEN => Err(invalid_request(
            "nonce is too long (at most 512 characters)",
        )),
        Some(nonce) => {
            c.out.nonce = Some(nonce.to_owned());
            Ok(())
        }
        None if c.out.response_type == response::CODE_ID_TOKEN => Err(invalid_request(
            "nonce is required for response_type code id_token",
        )),
        None if fapi1_openid => Err(invalid_request(
            "nonce is required for a request with the openid scope (FAPI 1.0 Advanced 5.2.2.2)",
        )),
        None => Ok(()),
    }
}

/// RFC 7636 §4.3, FAPI 2.0 Security Profile §5.3.2.2-4: a `code_challenge`
/// is required and its method must be `S256` (the `plain` default of
/// RFC 7636 §4.3 is not accepted).
fn check_pkce(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    // FAPI 1.0 Advanced §5.2.2-18: PKCE is required with PAR only; by
    // value it is used when the client sends it.
    if c.by_value
        && !c.profile.is_fapi2()
        && c.params.get("code_challenge").is_none()
        && c.params.get("code_challenge_method").is_none()
    {
        return Ok(());
    }
    let challenge = c
        .params
        .string("code_challenge")?
        .ok_or_else(|| invalid_request("code_challenge required"))?;
    match c.params.string("code_challenge_method")? {
        Some(pkce::S256) => {}
        None => return Err(invalid_request("code_challenge_method S256 required")),
        Some(_) => return Err(invalid_request("code_challenge_method must be S256")),
    }
    if !pkce::is_valid_challenge(challenge) {
        return Err(invalid_request(
            "code_challenge must be 43 characters of base64url (RFC 7636 §4.2)",
        ));
    }
    c.out.code_challenge = challenge.to_owned();
    c.out.code_challenge_method = pkce::S256.to_owned();
    Ok(())
}

/// OpenID Connect Core §5.5: a JSON object whose `id_token` / `userinfo`
/// members are objects of claim requests (`null` or an object with an
/// optional boolean `essential`, `value`, and array `values`). Other
/// top-level members are ignored, as §5.5 requires.
fn check_claims(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let Some(claims) = c.params.json("claims", ErrorCode::InvalidRequest)? else {
        return Ok(());
    };
    let bad = || invalid_request("claims must be a JSON object with id_token and userinfo objects");
    let obj = claims.as_object().ok_or_else(bad)?;
    for target in ["id_token", "userinfo"] {
        let Some(requests) = obj.get(target) else {
            continue;
        };
        for request in requests.as_object().ok_or_else(bad)?.values() {
            match request {
                Value::Null => {}
                Value::Object(r) => {
                    if r.get("essential").is_some_and(|e| !e.is_boolean())
                        || r.get("values").is_some_and(|v| !v.is_array())
                    {
                        return Err(bad());
                    }
                }
                _ => return Err(bad()),
            }
        }
    }
    c.out.claims = Some(claims);
    Ok(())
}

/// OpenID Connect Core §3.1.2.1: space-separated `acr_values`.
fn check_acr_values(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    if let Some(acr) = c.params.string("acr_values")? {
        let values: Vec<String> = acr.split_whitespace().map(str::to_owned).collect();
        if values.iter().any(|v| v.len() > MAX_HINT_LEN) {
            return Err(invalid_request("acr_values entry is too long"));
        }
        c.out.acr_values = values;
    }
    Ok(())
}

/// OpenID Connect Core §3.1.2.1: `max_age` is a non-negative number of
/// seconds (a string in a form, a number or string in a request object).
fn check_max_age(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let bad = || invalid_request("max_age must be a non-negative integer");
    let max_age = match c.params.get("max_age") {
        None => return Ok(()),
        Some(Value::String(s)) => {
            if !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<i64>().map_err(|_| bad())?
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    c.out.max_age = Some(max_age);
    Ok(())
}

/// OpenID Connect Core §3.1.2.1: known `prompt` values; `none` stands
/// alone.
fn check_prompt(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let Some(prompt) = c.params.string("prompt")? else {
        return Ok(());
    };
    let mut values: Vec<String> = Vec::new();
    for v in prompt.split_whitespace() {
        if !PROMPT_VALUES.contains(&v) {
            return Err(invalid_request(
                "prompt values must be none, login, consent or select_account",
            ));
        }
        if !values.iter().any(|x| x == v) {
            values.push(v.to_owned());
        }
    }
    if values.len() > 1 && values.iter().any(|v| v == "none") {
        return Err(invalid_request(
            "prompt none must not be combined with other values",
        ));
    }
    c.out.prompt = values;
    Ok(())
}

/// RFC 9396 §2, §5: a JSON array of objects, each with a string `type`.
fn check_authorization_details(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let code = ErrorCode::InvalidAuthorizationDetails;
    let Some(details) = c.params.json("authorization_details", code)? else {
        return Ok(());
    };
    let bad = || {
        OAuthError::new(
            code,
            "authorization_details must be a JSON array of objects with a string type",
        )
    };
    let entries = details.as_array().ok_or_else(bad)?;
    for entry in entries {
        match entry.get("type") {
            Some(Value::String(t)) if entry.is_object() && !t.is_empty() => {}
            _ => return Err(bad()),
        }
    }
    if !entries.is_empty() {
        c.out.authorization_details = Some(details);
    }
    Ok(())
}

/// RFC 9449 §10: `dpop_jkt` binds the code to a DPoP key; a proof presented
/// with the request must be by that key (§10.1), and without `dpop_jkt`
/// the proof's key is the binding.
fn check_dpop_jkt(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    let requested = c.params.string("dpop_jkt")?;
    if !c.profile.offers_dpop() && (requested.is_some() || c.dpop.is_some()) {
        // Not in this profile's discovery (Profile::offers_dpop): its
        // tokens are bound to the client certificate (RFC 8705).
        return Err(OAuthError::invalid_request(format!(
            "DPoP is not offered under the {} profile: tokens are bound to the client certificate (RFC 8705)",
            c.profile.as_str()
        )));
    }
    if let Some(jkt) = requested
        && !pkce::is_valid_challenge(jkt)
    {
        // A JWK SHA-256 thumbprint is 43 base64url characters, like an S256
        // challenge.
        return Err(invalid_request(
            "dpop_jkt must be a JWK SHA-256 thumbprint (RFC 7638)",
        ));
    }
    c.out.dpop_jkt = match (requested, c.dpop) {
        (Some(jkt), Some(proof)) if jkt != proof.jkt => {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "dpop_jkt does not match the key of the DPoP proof",
            ));
        }
        (Some(jkt), _) => Some(jkt.to_owned()),
        (None, Some(proof)) => Some(proof.jkt.clone()),
        (None, None) => None,
    };
    Ok(())
}

/// OpenID Connect Core §3.1.2.1: `login_hint` and `ui_locales`, kept
/// verbatim for the login step.
fn check_hints(c: &mut Checking<'_>) -> Result<(), OAuthError> {
    for name in ["login_hint", "ui_locales"] {
        let Some(v) = c.params.string(name)? else {
            continue;
        };
        if v.chars().count() > MAX_HINT_LEN {
            return Err(c.params.malformed(format!("{name} is too long")));
        }
        let v = Some(v.to_owned());
        match name {
            "login_hint" => c.out.login_hint = v,
            _ => c.out.ui_locales = v,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Profile;
    use serde_json::json;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const JKT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
    const CB: &str = "https://tpp.example/cb";
    const CB2: &str = "https://tpp.example/cb2?dummy1=lorem&dummy2=ipsum";

    fn client_with(extra: Value) -> Client {
        let mut m = json!({
            "client_id": "tpp-1",
            "redirect_uris": [CB, CB2],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": []},
            "scope": "openid accounts payments",
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        Client::new(serde_json::from_value(m).unwrap(), None).unwrap()
    }

    fn client() -> Client {
        client_with(json!({}))
    }

    fn policy() -> Policy {
        Policy::new("https://op.example", Profile::Fapi2)
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn good() -> Vec<(String, String)> {
        form(&[
            ("client_id", "tpp-1"),
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("scope", "openid accounts"),
            ("state", "st-1"),
            ("nonce", "n-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
    }

    /// `good()` with `name` replaced by `value` (`None`: removed).
    fn with(name: &str, value: Option<&str>) -> Vec<(String, String)> {
        let mut f: Vec<_> = good().into_iter().filter(|(k, _)| k != name).collect();
        if let Some(v) = value {
            f.push((name.to_owned(), v.to_owned()));
        }
        f
    }

    fn run(f: &[(String, String)]) -> Result<AuthorizationRequest, RejectedRequest> {
        validate_authorization_request(&client(), f, None, &policy(), None)
    }

    /// The error code, and whether the error may be redirected.
    fn fails(f: &[(String, String)]) -> (&'static str, bool) {
        let e = run(f).unwrap_err();
        (e.error.code.as_str(), e.redirect.is_some())
    }

    #[test]
    fn valid_request_is_accepted_verbatim() {
        let r = run(&good()).unwrap();
        assert_eq!(r.client_id, "tpp-1");
        assert_eq!(r.response_type, "code");
        assert_eq!(r.redirect_uri, CB);
        assert_eq!(r.scope, ["openid", "accounts"]);
        assert_eq!(r.state.as_deref(), Some("st-1"));
        assert_eq!(r.nonce.as_deref(), Some("n-1"));
        assert_eq!(r.code_challenge, CHALLENGE);
        assert_eq!(r.code_challenge_method, "S256");
        assert_eq!(r.response_mode, None);
        assert_eq!(r.dpop_jkt, None);
        assert!(r.prompt.is_empty() && r.acr_values.is_empty());
    }

    #[test]
    fn openid_state_and_nonce_are_optional() {
        let mut f = with("scope", Some("accounts"));
        f.retain(|(k, _)| k != "state" && k != "nonce");
        let r = run(&f).unwrap();
        assert_eq!(r.scope, ["accounts"]);
        assert!(!r.is_openid());
        assert_eq!(r.state, None);
        assert_eq!(r.nonce, None);
        // RFC 6749 §3.1: empty values count as omitted.
        let r = run(&with("state", Some(""))).unwrap();
        assert_eq!(r.state, None);
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        let mut f = good();
        f.push(("scope".into(), "openid".into()));
        assert_eq!(fails(&f), ("invalid_request", false));
        let mut f = good();
        f.push(("client_assertion".into(), "a".into()));
        f.push(("client_assertion".into(), "b".into()));
        assert_eq!(fails(&f), ("invalid_request", false));
        // An empty duplicate is an omitted parameter, not a duplicate.
        let mut f = good();
        f.push(("state".into(), String::new()));
        assert!(run(&f).is_ok());
        assert_eq!(
            single_param(&f, "state").unwrap(),
            Some("st-1"),
            "empty values are ignored"
        );
        f.push(("state".into(), "x".into()));
        assert_eq!(
            single_param(&f, "state").unwrap_err().code.as_str(),
            "invalid_request"
        );
    }

    #[test]
    fn client_checks() {
        assert_eq!(
            fails(&with("client_id", Some("tpp-2"))),
            ("invalid_request", false)
        );
        assert!(run(&with("client_id", None)).is_ok());
        let cc = client_with(json!({"grant_types": ["client_credentials"]}));
        let e = validate_authorization_request(&cc, &good(), None, &policy(), None).unwrap_err();
        assert_eq!(e.error.code.as_str(), "unauthorized_client");
        assert!(e.redirect.is_none());
    }

    #[test]
    fn request_uri_and_unverified_request_are_refused() {
        let mut f = good();
        f.push((
            "request_uri".into(),
            "urn:ietf:params:oauth:request_uri:abc".into(),
        ));
        assert_eq!(fails(&f), ("invalid_request", false));
        let mut f = good();
        f.push(("request".into(), "eyJ.eyJ.sig".into()));
        assert_eq!(fails(&f), ("invalid_request", false));
    }

    #[test]
    fn long_state_and_nonce_are_kept_or_refused_never_truncated() {
        let s512 = "s".repeat(512);
        let r = run(&with("state", Some(&s512))).unwrap();
        assert_eq!(r.state.as_deref(), Some(s512.as_str()));
        let s513 = "s".repeat(513);
        assert_eq!(
            fails(&with("state", Some(&s513))),
            ("invalid_request", false)
        );

        let n384 = "n".repeat(384);
        let r = run(&with("nonce", Some(&n384))).unwrap();
        assert_eq!(r.nonce.as_deref(), Some(n384.as_str()));
        let n513 = "n".repeat(513);
        let e = run(&with("nonce", Some(&n513))).unwrap_err();
        assert_eq!(e.error.code.as_str(), "invalid_request");
        // After the redirect_uri check: redirectable, with the state.
        let target = e.redirect.unwrap();
        assert_eq!(target.redirect_uri, CB);
        assert_eq!(target.state.as_deref(), Some("st-1"));
    }

    #[test]
    fn response_mode() {
        for mode in ["query", "jwt", "query.jwt"] {
            let r = run(&with("response_mode", Some(mode))).unwrap();
            assert_eq!(r.response_mode.as_deref(), Some(mode));
        }
        for mode in [
            "fragment",
            "form_post",
            "fragment.jwt",
            "form_post.jwt",
            "JWT",
        ] {
            assert_eq!(
                fails(&with("response_mode", Some(mode))),
                ("invalid_request", false),
                "{mode}"
            );
        }
        // The redirect of a later error uses the requested mode.
        let mut f = with("response_mode", Some("jwt"));
        f.retain(|(k, _)| k != "scope");
        let e = run(&f).unwrap_err();
        assert_eq!(e.redirect.unwrap().response_mode.as_deref(), Some("jwt"));
    }

    #[test]
    fn redirect_uri_must_be_present_and_registered_exactly() {
        let e = run(&with("redirect_uri", None)).unwrap_err();
        assert_eq!(e.error.code.as_str(), "invalid_request");
        assert_eq!(
            e.error.description.as_deref(),
            Some("redirect_uri required")
        );
        assert!(e.redirect.is_none());
        for bad in [
            "https://evil.example/cb",
            "https://tpp.example/cb/",
            "https://TPP.example/cb",
            "https://tpp.example/cb?x=1",
            "https://tpp.example/cb2?dummy1=lorem",
            "https://tpp.example/cb2?dummy2=ipsum&dummy1=lorem",
        ] {
            let e = run(&with("redirect_uri", Some(bad))).unwrap_err();
            assert_eq!(e.error.code.as_str(), "invalid_request", "{bad}");
            assert_eq!(
                e.error.description.as_deref(),
                Some("redirect_uri not registered")
            );
            assert!(e.redirect.is_none(), "{bad} must not be redirected to");
        }
        let r = run(&with("redirect_uri", Some(CB2))).unwrap();
        assert_eq!(r.redirect_uri, CB2);
    }

    #[test]
    fn response_type_must_be_code() {
        assert_eq!(
            fails(&with("response_type", None)),
            ("invalid_request", true)
        );
        for rt in [
            "code id_token",
            "token",
            "id_token",
            "code ",
            "CODE",
            "none",
        ] {
            assert_eq!(
                fails(&with("response_type", Some(rt))),
                ("unsupported_response_type", true),
                "{rt}"
            );
        }
    }

    /// A FAPI 1.0 request: `response_type`, `response_mode` and `nonce` as
    /// given, for a client registered for both response types.
    fn fapi1(
        profile: Profile,
        rt: &str,
        mode: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<AuthorizationRequest, RejectedRequest> {
        let mut f = with("response_type", Some(rt));
        f.retain(|(k, _)| k != "nonce");
        f.extend(mode.map(|m| ("response_mode".to_owned(), m.to_owned())));
        f.extend(nonce.map(|n| ("nonce".to_owned(), n.to_owned())));
        let client = client_with(json!({"response_types": ["code id_token", "code"]}));
        validate_authorization_request(
            &client,
            &f,
            None,
            &Policy::new("https://op.example", profile),
            None,
        )
    }

    /// The error code, and the response_mode it is redirected with
    /// (`Some("-")`: not redirected).
    fn fapi1_fails(
        profile: Profile,
        rt: &str,
        mode: Option<&str>,
        nonce: Option<&str>,
    ) -> (&'static str, Option<String>) {
        let e = fapi1(profile, rt, mode, nonce).unwrap_err();
        let mode = match e.redirect {
            None => Some("-".to_owned()),
            Some(t) => t.response_mode,
        };
        (e.error.code.as_str(), mode)
    }

    #[test]
    fn hybrid_flow_under_fapi1_answers_in_the_fragment_or_a_form_post() {
        for profile in [Profile::Fapi1Advanced, Profile::UkOpenBanking] {
            let r = fapi1(profile, "code id_token", None, Some("n-1")).unwrap();
            assert_eq!(r.response_type, "code id_token");
            assert_eq!(r.response_mode.as_deref(), Some("fragment"), "the default");
            assert_eq!(r.nonce.as_deref(), Some("n-1"));
            for mode in ["fragment", "form_post"] {
                let r = fapi1(profile, "code id_token", Some(mode), Some("n-1")).unwrap();
                assert_eq!(r.response_mode.as_deref(), Some(mode));
            }
            // Never in the query, nor as JARM: an error page.
            for mode in ["query", "jwt", "query.jwt", "fragment.jwt", "bogus"] {
                assert_eq!(
                    fapi1_fails(profile, "code id_token", Some(mode), Some("n")),
                    ("invalid_request", Some("-".into())),
                    "{profile:?} {mode}"
                );
            }
            // OIDC Core §3.3.2.11: nonce required, the error in the fragment.
            assert_eq!(
                fapi1_fails(profile, "code id_token", None, None),
                ("invalid_request", Some("fragment".into()))
            );
            assert_eq!(
                fapi1_fails(profile, "code id_token", Some("form_post"), None),
                ("invalid_request", Some("form_post".into()))
            );
        }
        // A client not registered for the hybrid flow.
        let mut f = with("response_type", Some("code id_token"));
        f.push(("response_mode".into(), "fragment".into()));
        let e = validate_authorization_request(
            &client(),
            &f,
            None,
            &Policy::new("https://op.example", Profile::Fapi1Advanced),
            None,
        )
        .unwrap_err();
        assert_eq!(e.error.code.as_str(), "unauthorized_client");
        assert_eq!(
            e.redirect.unwrap().response_mode.as_deref(),
            Some("fragment")
        );
    }

    #[test]
    fn the_clients_profile_overrides_the_deployments() {
        let f = {
            let mut f = with("response_type", Some("code id_token"));
            f.push(("response_mode".into(), "fragment".into()));
            f
        };
        let fapi1_client = client_with(json!({
            "response_types": ["code id_token"], "fapi_profile": "fapi1-advanced"}));
        let fapi2 = Policy::new("https://op.example", Profile::Fapi2);
        let r = validate_authorization_request(&fapi1_client, &f, None, &fapi2, None).unwrap();
        assert_eq!(r.response_type, "code id_token");
        // A FAPI 2.0 client of a FAPI 1.0 deployment: code only.
        let fapi2_client = client_with(json!({"fapi_profile": "fapi2"}));
        let fapi1 = Policy::new("https://op.example", Profile::Fapi1Advanced);
        let e = validate_authorization_request(&fapi2_client, &f, None, &fapi1, None).unwrap_err();
        assert_eq!(
            e.error.code.as_str(),
            "invalid_request",
            "fragment is not a FAPI 2.0 mode"
        );
        let e = validate_authorization_request(
            &fapi2_client,
            &with("response_type", Some("code id_token")),
            None,
            &fapi1,
            None,
        )
        .unwrap_err();
        assert_eq!(e.error.code.as_str(), "unsupported_response_type");
        assert!(validate_authorization_request(&fapi2_client, &good(), None, &fapi1, None).is_ok());
    }

    #[test]
    fn fapi1_code_flow_needs_jarm_and_uk_has_none() {
        // FAPI 1.0 Advanced §5.2.2-2: code only with response_mode jwt.
        let p = Profile::Fapi1Advanced;
        for mode in ["jwt", "query.jwt"] {
            let r = fapi1(p, "code", Some(mode), Some("n")).unwrap();
            assert_eq!(r.response_mode.as_deref(), Some(mode));
        }
        assert_eq!(
            fapi1_fails(p, "code", None, Some("n")),
            ("invalid_request", None)
        );
        assert_eq!(
            fapi1_fails(p, "code", Some("query"), Some("n")),
            ("invalid_request", Some("query".into()))
        );
        // The code flow does not answer in the fragment.
        assert_eq!(
            fapi1_fails(p, "code", Some("fragment"), Some("n")),
            ("invalid_request", Some("-".into()))
        );
        // FAPI 1.0 Advanced §5.2.2.2-1: with the openid scope the code
        // flow needs a nonce too, the error in the JARM response.
        assert_eq!(
            fapi1_fails(p, "code", Some("jwt"), None),
            ("invalid_request", Some("jwt".into()))
        );
        // UK: no JARM, so no code flow either.
        let uk = Profile::UkOpenBanking;
        assert_eq!(
            fapi1_fails(uk, "code", Some("jwt"), Some("n")),
            ("invalid_request", Some("-".into()))
        );
        assert_eq!(
            fapi1_fails(uk, "code", None, Some("n")),
            ("unsupported_response_type", None)
        );
        // FAPI 2.0: code id_token is refused as before, in the query.
        assert_eq!(
            fapi1_fails(Profile::Fapi2, "code id_token", None, Some("n")),
            ("unsupported_response_type", None)
        );
    }

    #[test]
    fn scope_rules() {
        assert_eq!(fails(&with("scope", None)), ("invalid_scope", true));
        assert_eq!(fails(&with("scope", Some("   "))), ("invalid_scope", true));
        // Unknown to the server.
        assert_eq!(
            fails(&with("scope", Some("openid bogus"))),
            ("invalid_scope", true)
        );
        // Known, but not registered for this client.
        assert_eq!(
            fails(&with("scope", Some("openid fundsconfirmations"))),
            ("invalid_scope", true)
        );
        assert_eq!(
            fails(&with("scope", Some("openid acc\"ounts"))),
            ("invalid_scope", true)
        );
        // Order does not matter; duplicates collapse.
        let r = run(&with("scope", Some("payments accounts openid accounts"))).unwrap();
        assert_eq!(r.scope, ["payments", "accounts", "openid"]);
    }

    #[test]
    fn pkce_rules() {
        let e = run(&with("code_challenge", None)).unwrap_err();
        assert_eq!(e.error.code.as_str(), "invalid_request");
        assert_eq!(
            e.error.description.as_deref(),
            Some("code_challenge required")
        );
        assert_eq!(
            fails(&with("code_challenge_method", None)),
            ("invalid_request", true)
        );
        for m in ["plain", "s256", "S512"] {
            assert_eq!(
                fails(&with("code_challenge_method", Some(m))),
                ("invalid_request", true),
                "{m}"
            );
        }
        for c in [&CHALLENGE[..42], &format!("{CHALLENGE}x"), "a+b/c"] {
            assert_eq!(
                fails(&with("code_challenge", Some(c))),
                ("invalid_request", true),
                "{c}"
            );
        }
    }

    #[test]
    fn claims_parameter() {
        let ok = r#"{"id_token":{"acr":{"essential":true,"value":"urn:openbanking:psd2:sca"},
            "openbanking_intent_id":{"value":"intent-1","essential":true}},
            "userinfo":{"email":null,"name":{"values":["a","b"]}},"unknown_member":1}"#;
        let r = run(&with("claims", Some(ok))).unwrap();
        assert_eq!(
            r.requested_claim_value("openbanking_intent_id"),
            Some("intent-1")
        );
        assert_eq!(r.claims.unwrap()["userinfo"]["email"], Value::Null);
        for bad in [
            "not json",
            "[1]",
            "\"string\"",
            r#"{"id_token":[]}"#,
            r#"{"userinfo":"email"}"#,
            r#"{"id_token":{"acr":5}}"#,
            r#"{"id_token":{"acr":{"essential":"yes"}}}"#,
            r#"{"id_token":{"acr":{"values":"a"}}}"#,
        ] {
            assert_eq!(
                fails(&with("claims", Some(bad))),
                ("invalid_request", true),
                "{bad}"
            );
        }
    }

    #[test]
    fn acr_values_max_age_and_prompt() {
        let mut f = with("acr_values", Some("urn:a  urn:b"));
        f.push(("max_age".into(), "0".into()));
        f.push(("prompt".into(), "login consent login".into()));
        let r = run(&f).unwrap();
        assert_eq!(r.acr_values, ["urn:a", "urn:b"]);
        assert_eq!(r.max_age, Some(0));
        assert_eq!(r.prompt, ["login", "consent"]);
        assert_eq!(
            run(&with("max_age", Some("3600"))).unwrap().max_age,
            Some(3600)
        );
        for bad in ["-1", "abc", "1.5", "+5", " 5", "99999999999999999999"] {
            assert_eq!(
                fails(&with("max_age", Some(bad))),
                ("invalid_request", true),
                "{bad}"
            );
        }
        for bad in ["none login", "consent none", "bogus", "login create"] {
            assert_eq!(
                fails(&with("prompt", Some(bad))),
                ("invalid_request", true),
                "{bad}"
            );
        }
        assert_eq!(run(&with("prompt", Some("none"))).unwrap().prompt, ["none"]);
        let long = "a".repeat(MAX_HINT_LEN + 1);
        assert_eq!(
            fails(&with("acr_values", Some(&long))),
            ("invalid_request", true)
        );
        assert_eq!(
            fails(&with("login_hint", Some(&long))),
            ("invalid_request", true)
        );
        let r = run(&with("login_hint", Some("user@bank"))).unwrap();
        assert_eq!(r.login_hint.as_deref(), Some("user@bank"));
    }

    #[test]
    fn authorization_details() {
        let ok =
            r#"[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"1"}}]"#;
        let r = run(&with("authorization_details", Some(ok))).unwrap();
        assert_eq!(
            r.authorization_details.unwrap()[0]["type"],
            "payment_initiation"
        );
        assert_eq!(
            run(&with("authorization_details", Some("[]")))
                .unwrap()
                .authorization_details,
            None
        );
        for bad in [
            "not json",
            r#"{"type":"x"}"#,
            r#"[{"no_type":1}]"#,
            r#"[{"type":5}]"#,
            r#"[{"type":""}]"#,
            r#"["payment_initiation"]"#,
            r#"[{"type":"a"},7]"#,
        ] {
            assert_eq!(
                fails(&with("authorization_details", Some(bad))),
                ("invalid_authorization_details", true),
                "{bad}"
            );
        }
    }

    fn proof(jkt: &str) -> DpopProof {
        DpopProof {
            jkt: jkt.into(),
            jti: "p1".into(),
            iat: 0,
        }
    }

    #[test]
    fn dpop_jkt_binding() {
        let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let v = |f: &[(String, String)], p: Option<&DpopProof>| {
            validate_authorization_request(&client(), f, None, &policy(), p)
        };
        // Only a proof: its key is the binding.
        assert_eq!(
            v(&good(), Some(&proof(JKT))).unwrap().dpop_jkt.as_deref(),
            Some(JKT)
        );
        // Only dpop_jkt.
        let f = with("dpop_jkt", Some(JKT));
        assert_eq!(v(&f, None).unwrap().dpop_jkt.as_deref(), Some(JKT));
        // Both, matching.
        assert_eq!(
            v(&f, Some(&proof(JKT))).unwrap().dpop_jkt.as_deref(),
            Some(JKT)
        );
        // Both, different.
        let e = v(&f, Some(&proof(other))).unwrap_err();
        assert_eq!(e.error.code.as_str(), "invalid_dpop_proof");
        // Not a thumbprint.
        assert_eq!(
            fails(&with("dpop_jkt", Some("short"))),
            ("invalid_request", true)
        );
        assert_eq!(run(&good()).unwrap().dpop_jkt, None);
    }

    /// What the UK view of discovery leaves out, the pipeline refuses: a
    /// DPoP proof or `dpop_jkt` with an authorization request of a UK
    /// client (on a UK deployment or by its own fapi_profile).
    #[test]
    fn dpop_is_refused_under_the_uk_profile() {
        let uk_client =
            client_with(json!({"fapi_profile": "uk-ob", "response_types": ["code id_token"]}));
        let hybrid_client = client_with(json!({"response_types": ["code id_token"]}));
        let fapi2 = Policy::new("https://op.example", Profile::Fapi2);
        let uk = Policy::new("https://op.example", Profile::UkOpenBanking);
        let mut hybrid = with("response_type", Some("code id_token"));
        hybrid.retain(|(k, _)| k != "nonce");
        hybrid.push(("nonce".into(), "n-1".into()));
        // Accepted without DPoP.
        validate_authorization_request(&uk_client, &hybrid, None, &fapi2, None).unwrap();
        validate_authorization_request(&hybrid_client, &hybrid, None, &uk, None).unwrap();
        let mut jkt = hybrid.clone();
        jkt.push(("dpop_jkt".into(), JKT.into()));
        for (c, p) in [(&uk_client, &fapi2), (&hybrid_client, &uk)] {
            for (f, proof) in [(&jkt, None), (&hybrid, Some(proof(JKT)))] {
                let e = validate_authorization_request(c, f, None, p, proof.as_ref()).unwrap_err();
                assert_eq!(e.error.code.as_str(), "invalid_request");
                let d = e.error.description.unwrap();
                assert!(
                    d.contains("DPoP is not offered under the uk-ob profile"),
                    "{d}"
                );
            }
        }
        // FAPI 2.0 still binds the code to the proof's key.
        let r = validate_authorization_request(&client(), &good(), None, &fapi2, Some(&proof(JKT)))
            .unwrap();
        assert_eq!(r.dpop_jkt.as_deref(), Some(JKT));
    }

    fn ro(claims: Value) -> request_object::RequestObject {
        request_object::RequestObject::unverified_for_tests(claims)
    }

    fn ro_claims() -> Value {
        json!({
            "iss": "tpp-1", "aud": "https://op.example", "exp": 2, "nbf": 1,
            "client_id": "tpp-1", "response_type": "code", "redirect_uri": CB2,
            "scope": "accounts openid", "state": "inside", "nonce": "n-in",
            "code_challenge": CHALLENGE, "code_challenge_method": "S256",
            "max_age": 600,
            "claims": {"id_token": {"openbanking_intent_id": {"value": "i-1", "essential": true}}},
            "authorization_details": [{"type": "account_information"}],
        })
    }

    #[test]
    fn request_object_claims_replace_the_form() {
        // Outside: other state, no redirect_uri, plain PKCE — all ignored.
        let f = form(&[
            ("client_id", "tpp-1"),
            ("request", "eyJ.eyJ.sig"),
            ("state", "outside"),
            ("code_challenge_method", "plain"),
            ("client_assertion_type", "urn:x"),
        ]);
        let obj = ro(ro_claims());
        let r = validate_authorization_request(&client(), &f, Some(&obj), &policy(), None).unwrap();
        assert_eq!(r.state.as_deref(), Some("inside"));
        assert_eq!(r.nonce.as_deref(), Some("n-in"));
        assert_eq!(r.redirect_uri, CB2);
        assert_eq!(r.scope, ["accounts", "openid"]);
        assert_eq!(r.max_age, Some(600));
        assert_eq!(
            r.requested_claim_value("openbanking_intent_id"),
            Some("i-1")
        );
        assert_eq!(
            r.authorization_details,
            Some(json!([{"type": "account_information"}]))
        );

        // State only outside: not used.
        let mut c = ro_claims();
        c.as_object_mut().unwrap().remove("state");
        let r =
            validate_authorization_request(&client(), &f, Some(&ro(c)), &policy(), None).unwrap();
        assert_eq!(r.state, None);
        // claims / authorization_details as strings inside are parsed too.
        let mut c = ro_claims();
        c["claims"] = json!(r#"{"userinfo":{"email":null}}"#);
        c["max_age"] = json!("60");
        let r =
            validate_authorization_request(&client(), &f, Some(&ro(c)), &policy(), None).unwrap();
        assert_eq!(r.claims, Some(json!({"userinfo": {"email": null}})));
        assert_eq!(r.max_age, Some(60));
    }

    #[test]
    fn request_object_content_errors() {
        let f = form(&[("client_id", "tpp-1"), ("request", "eyJ.eyJ.sig")]);
        let check = |c: Value| {
            validate_authorization_request(&client(), &f, Some(&ro(c)), &policy(), None)
                .unwrap_err()
                .error
                .code
                .as_str()
        };
        let mut c = ro_claims();
        c["scope"] = json!(["openid"]);
        assert_eq!(check(c), "invalid_request_object");
        let mut c = ro_claims();
        c["state"] = json!(5);
        assert_eq!(check(c), "invalid_request_object");
        let mut c = ro_claims();
        c["client_id"] = json!("tpp-2");
        assert_eq!(check(c), "invalid_request_object");
        let mut c = ro_claims();
        c["request_uri"] = json!("urn:ietf:params:oauth:request_uri:x");
        assert_eq!(check(c), "invalid_request_object");
        let mut c = ro_claims();
        c["max_age"] = json!(-5);
        assert_eq!(check(c), "invalid_request");
        let mut c = ro_claims();
        c["max_age"] = json!(1.5);
        assert_eq!(check(c), "invalid_request");
        let mut c = ro_claims();
        c["authorization_details"] = json!({"type": "x"});
        assert_eq!(check(c), "invalid_authorization_details");
        let mut c = ro_claims();
        c["response_type"] = json!("code id_token");
        assert_eq!(check(c), "unsupported_response_type");

        // The form still may not carry request_uri, duplicates or another client_id.
        for bad in [
            form(&[
                ("request", "eyJ.eyJ.sig"),
                ("request_uri", "urn:ietf:params:oauth:request_uri:x"),
            ]),
            form(&[("request", "a"), ("request", "b")]),
            form(&[("client_id", "tpp-2"), ("request", "a")]),
        ] {
            let e = validate_authorization_request(
                &client(),
                &bad,
                Some(&ro(ro_claims())),
                &policy(),
                None,
            )
            .unwrap_err();
            assert_eq!(e.error.code.as_str(), "invalid_request");
        }
    }

    /// A FAPI 1.0 hybrid request object by value, with `query` outside.
    fn by_value(
        query: &[(&str, &str)],
        edit: impl FnOnce(&mut Value),
    ) -> Result<AuthorizationRequest, RejectedRequest> {
        let mut c = ro_claims();
        c["response_type"] = json!("code id_token");
        edit(&mut c);
        let client = client_with(json!({"response_types": ["code id_token"]}));
        let policy = Policy::new("https://op.example", Profile::UkOpenBanking);
        validate_request_by_value(&client, &form(query), &ro(c), &policy)
    }

    const OUTSIDE: [(&str, &str); 4] = [
        ("client_id", "tpp-1"),
        ("response_type", "code id_token"),
        ("scope", "openid accounts"),
        ("request", "eyJ.eyJ.sig"),
    ];

    #[test]
    fn by_value_outside_parameters_are_copies_that_must_agree() {
        let r = by_value(&OUTSIDE, |_| {}).unwrap();
        assert_eq!(r.response_type, "code id_token");
        assert_eq!(r.response_mode.as_deref(), Some("fragment"));
        assert_eq!(r.state.as_deref(), Some("inside"));
        // Same values in another order, JSON with other spacing, a number
        // as a string: the same.
        let mut q = OUTSIDE.to_vec();
        q[2].1 = "accounts  openid";
        q.push(("max_age", "600"));
        q.push(("nonce", "n-in"));
        q.push(("redirect_uri", CB2));
        q.push((
            "claims",
            r#"{ "id_token": {"openbanking_intent_id": {"essential": true, "value": "i-1"}}}"#,
        ));
        assert!(by_value(&q, |_| {}).is_ok());
        // Outside only (state, PKCE method): not used, not a contradiction.
        let mut q = OUTSIDE.to_vec();
        q.push(("state", "outside"));
        let r = by_value(&q, |c| {
            c.as_object_mut().unwrap().remove("state");
        })
        .unwrap();
        assert_eq!(r.state, None, "state only outside is not used");

        // A contradiction: invalid_request, to the client in the fragment
        // with the inside state.
        for (name, value) in [
            ("nonce", "n-out"),
            ("scope", "openid payments"),
            ("state", "outside"),
            ("max_age", "60"),
            ("claims", r#"{"id_token":{}}"#),
        ] {
            let mut q = OUTSIDE.to_vec();
            q.retain(|(k, _)| *k != name);
            q.push((name, value));
            let e = by_value(&q, |_| {}).unwrap_err();
            assert_eq!(e.error.code.as_str(), "invalid_request", "{name}");
            let target = e.redirect.expect("redirected");
            assert_eq!(target.response_mode.as_deref(), Some("fragment"));
            assert_eq!(target.state.as_deref(), Some("inside"));
        }
        // The OIDC copies are required outside.
        for missing in ["client_id", "response_type", "scope"] {
            let q: Vec<_> = OUTSIDE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let e = by_value(&q, |_| {}).unwrap_err();
            assert_eq!(e.error.code.as_str(), "invalid_request", "{missing}");
        }
        let mut q = OUTSIDE.to_vec();
        q[2].1 = "accounts";
        assert_eq!(
            by_value(&q, |c| c["scope"] = json!("accounts"))
                .unwrap()
                .scope,
            ["accounts"],
            "no openid inside: no openid needed outside"
        );
        // nonce only outside: refused (OIDC Core §3.3.2.11).
        let mut q = OUTSIDE.to_vec();
        q.push(("nonce", "n-out"));
        let e = by_value(&q, |c| {
            c.as_object_mut().unwrap().remove("nonce");
        })
        .unwrap_err();
        assert_eq!(e.error.code.as_str(), "invalid_request");
    }

    #[test]
    fn by_value_pkce_is_optional_but_checked_when_sent() {
        let r = by_value(&OUTSIDE, |c| {
            let o = c.as_object_mut().unwrap();
            o.remove("code_challenge");
            o.remove("code_challenge_method");
        })
        .unwrap();
        assert_eq!(r.code_challenge, "");
        let e = by_value(&OUTSIDE, |c| c["code_challenge_method"] = json!("plain")).unwrap_err();
        assert_eq!(e.error.code.as_str(), "invalid_request");
        let e = by_value(&OUTSIDE, |c| {
            c.as_object_mut().unwrap().remove("code_challenge");
        })
        .unwrap_err();
        assert_eq!(e.error.code.as_str(), "invalid_request");
        // Pushed, PKCE stays required (FAPI 1.0 Advanced §5.2.2-18).
        let mut c = ro_claims();
        c["response_type"] = json!("code id_token");
        c.as_object_mut().unwrap().remove("code_challenge");
        let client = client_with(json!({"response_types": ["code id_token"]}));
        let policy = Policy::new("https://op.example", Profile::UkOpenBanking);
        let f = form(&[("request", "eyJ.eyJ.sig")]);
        let e =
            validate_authorization_request(&client, &f, Some(&ro(c)), &policy, None).unwrap_err();
        assert_eq!(
            e.error.description.as_deref(),
            Some("code_challenge required")
        );
    }

    #[test]
    fn rejected_request_converts_to_oauth_error() {
        let e = run(&with("scope", None)).unwrap_err();
        assert_eq!(e.to_string(), "invalid_scope: scope required");
        let o: OAuthError = e.into();
        assert_eq!(o.code, ErrorCode::InvalidScope);
    }
}

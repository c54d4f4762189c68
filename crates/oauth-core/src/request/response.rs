//! The authorization response: where the browser is sent back to the client
//! with a code (and, in the hybrid flow, an id_token) or an error (RFC 6749
//! §4.1.2, §4.1.2.1; OIDC Core §3.3.2.5), always carrying the issuer
//! (RFC 9207 §2): in the query, the fragment or a form post, or wrapped in
//! a signed JWT (JARM §2.1, §2.3.1).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::authorization::AuthorizationRequest;
use crate::client::Client;
use crate::error::OAuthError;
use crate::keys::{JwsAlg, Keys};
use crate::policy::Policy;

/// JARM §2.1 recommends a short lifetime; the OIDF suite warns above 10
/// minutes.
pub const JARM_LIFETIME_SECS: i64 = 300;

/// The code flow's `response_type` (RFC 6749 §4.1.1).
pub const CODE: &str = "code";
/// The hybrid flow's `response_type` (OIDC Core §3.3.2.1).
pub const CODE_ID_TOKEN: &str = "code id_token";

/// `response_mode` values (OAuth 2.0 Multiple Response Types §2.1, JARM
/// §2.3). `jwt` means `query.jwt` for the code flow (JARM §2.3.4).
pub const RESPONSE_MODE_QUERY: &str = "query";
/// OAuth 2.0 Multiple Response Types §2.1; the hybrid flow's default (§5).
pub const RESPONSE_MODE_FRAGMENT: &str = "fragment";
/// OAuth 2.0 Form Post Response Mode §2.
pub const RESPONSE_MODE_FORM_POST: &str = "form_post";
/// JARM §2.3.1.
pub const RESPONSE_MODE_QUERY_JWT: &str = "query.jwt";
/// JARM §2.3.4.
pub const RESPONSE_MODE_JWT: &str = "jwt";

/// Where and how the authorization response goes: the validated
/// `redirect_uri`, the client's `state` (echoed verbatim, RFC 6749 §4.1.2)
/// and the `response_mode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedirectTarget {
    pub redirect_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `None` or `query`: plain query parameters; `jwt` / `query.jwt`: JARM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<String>,
}

impl RedirectTarget {
    /// The target of a validated request.
    pub fn of(request: &AuthorizationRequest) -> RedirectTarget {
        RedirectTarget {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            response_mode: request.response_mode.clone(),
        }
    }

    /// JARM §2.3: the response travels as a signed JWT.
    pub fn is_jarm(&self) -> bool {
        matches!(
            self.response_mode.as_deref(),
            Some(RESPONSE_MODE_JWT | RESPONSE_MODE_QUERY_JWT)
        )
    }
}

/// What was granted: the code, and the id_token that travels with it in the
/// hybrid flow (OIDC Core §3.3.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted<'a> {
    pub code: &'a str,
    pub id_token: Option<&'a str>,
}

impl<'a> Granted<'a> {
    /// A code alone (the code flow).
    pub fn code(code: &'a str) -> Granted<'a> {
        Granted {
            code,
            id_token: None,
        }
    }
}

/// How the browser carries the response to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationResponse {
    /// A redirect to this URL (query, fragment or JARM).
    Redirect(String),
    /// OAuth 2.0 Form Post Response Mode §2: a page that posts `params` to
    /// `action` (the redirect URI) as `application/x-www-form-urlencoded`.
    FormPost {
        action: String,
        params: Vec<(&'static str, String)>,
    },
}

/// Builds the authorization response.
///
/// `outcome` is what was granted or the error to report. Plain modes
/// (RFC 6749 §4.1.2, §4.1.2.1; OIDC Core §3.3.2.5; RFC 9207 §2): `code`
/// (and `id_token`) and `state`, or `error`, `error_description` (reduced
/// to the RFC 6749 §5.2 character set) and `state`, and in both cases
/// `iss` = the issuer identifier; in the query of the registered
/// `redirect_uri` (its own query kept), in its fragment (`fragment`, OAuth
/// 2.0 Multiple Response Types §2.1), or as the fields of a form post
/// (`form_post`, Form Post Response Mode §2). Nothing else is added, so an
/// error carries only the parameters the OIDF suite allows. JARM (`response_mode` `jwt` or `query.jwt`, JARM §2.3.1): one
/// `response` query parameter holding a JWT signed with the client's
/// `authorization_signed_response_alg` (default PS256) whose claims are
/// `iss`, `aud` = client_id, `exp` = now + [`JARM_LIFETIME_SECS`] and the
/// same response parameters (JARM §2.1, §2.2).
///
/// Errors that must not be redirected (before the `redirect_uri` was
/// validated) are the caller's to render as an error page; this function
/// is only for targets that passed validation. It fails only with
/// `server_error` (unusable stored redirect URI, no signing key), the
/// detail logged.
pub fn authorization_response(
    policy: &Policy,
    keys: &Keys,
    client: &Client,
    target: &RedirectTarget,
    outcome: Result<Granted<'_>, &OAuthError>,
    now: i64,
) -> Result<AuthorizationResponse, OAuthError> {
    let mut url = url::Url::parse(&target.redirect_uri).map_err(|e| {
        tracing::error!(client_id = %client.id(), error = %e, "redirect_uri does not parse");
        OAuthError::server_error()
    })?;
    let mut params = response_params(target, outcome);

    if target.is_jarm() {
        let alg = jarm_alg(client)?;
        let mut claims = Map::new();
        claims.insert("iss".into(), policy.issuer.clone().into());
        claims.insert("aud".into(), client.id().into());
        claims.insert("exp".into(), (now + JARM_LIFETIME_SECS).into());
        for (name, value) in &params {
            claims.insert((*name).into(), Value::String(value.clone()));
        }
        let jwt = keys.sign(alg, None, &Value::Object(claims)).map_err(|e| {
            tracing::error!(client_id = %client.id(), error = %e, "JARM signing failed");
            OAuthError::server_error()
        })?;
        url.query_pairs_mut().append_pair("response", &jwt);
        return Ok(AuthorizationResponse::Redirect(url.into()));
    }
    params.push(("iss", policy.issuer.clone()));
    match target.response_mode.as_deref() {
        Some(RESPONSE_MODE_FORM_POST) => Ok(AuthorizationResponse::FormPost {
            action: url.into(),
            params,
        }),
        Some(RESPONSE_MODE_FRAGMENT) => {
            let fragment = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish();
            url.set_fragment(Some(&fragment));
            Ok(AuthorizationResponse::Redirect(url.into()))
        }
        _ => {
            url.query_pairs_mut().extend_pairs(&params);
            Ok(AuthorizationResponse::Redirect(url.into()))
        }
    }
}

/// The response parameters besides `iss`, in a fixed order.
fn response_params(
    target: &RedirectTarget,
    outcome: Result<Granted<'_>, &OAuthError>,
) -> Vec<(&'static str, String)> {
    let mut params = Vec::with_capacity(5);
    match outcome {
        Ok(granted) => {
            params.push(("code", granted.code.to_owned()));
            if let Some(id_token) = granted.id_token {
                params.push(("id_token", id_token.to_owned()));
            }
        }
        Err(e) => {
            params.push(("error", e.code.as_str().to_owned()));
            if let Some(d) = e.safe_description() {
                params.push(("error_description", d));
            }
        }
    }
    if let Some(state) = &target.state {
        params.push(("state", state.clone()));
    }
    params
}

/// JARM §3: `authorization_signed_response_alg`, PS256 when not registered.
fn jarm_alg(client: &Client) -> Result<JwsAlg, OAuthError> {
    match client.metadata.authorization_signed_response_alg.as_deref() {
        None => Ok(JwsAlg::PS256),
        Some(alg) => JwsAlg::parse(alg).map_err(|_| {
            tracing::error!(client_id = %client.id(), alg, "unusable authorization_signed_response_alg");
            OAuthError::server_error()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::keys::KeySet;
    use crate::keys::VerifyOptions;
    use crate::keys::test_support::{T0, fixture, kek};
    use serde_json::json;

    const ISSUER: &str = "https://op.example";

    fn keys() -> Keys {
        Keys::new(KeySet::build(fixture().records(), &kek(), T0).unwrap())
    }

    fn client(alg: Option<&str>) -> Client {
        let mut m = json!({
            "client_id": "tpp-1",
            "redirect_uris": ["https://tpp.example/cb?dummy1=lorem&dummy2=ipsum"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": []},
        });
        if let Some(alg) = alg {
            m["authorization_signed_response_alg"] = json!(alg);
        }
        Client::new(serde_json::from_value(m).unwrap(), None).unwrap()
    }

    fn target(state: Option<&str>, mode: Option<&str>) -> RedirectTarget {
        RedirectTarget {
            redirect_uri: "https://tpp.example/cb?dummy1=lorem&dummy2=ipsum".into(),
            state: state.map(str::to_owned),
            response_mode: mode.map(str::to_owned),
        }
    }

    /// The redirect URL of a response that is a redirect.
    fn respond(
        policy: &Policy,
        keys: &Keys,
        client: &Client,
        target: &RedirectTarget,
        outcome: Result<Granted<'_>, &OAuthError>,
        now: i64,
    ) -> Result<String, OAuthError> {
        match authorization_response(policy, keys, client, target, outcome, now)? {
            AuthorizationResponse::Redirect(url) => Ok(url),
            other => panic!("not a redirect: {other:?}"),
        }
    }

    fn query(url: &str) -> Vec<(String, String)> {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn names(q: &[(String, String)]) -> Vec<&str> {
        q.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn code_response_keeps_the_registered_query_and_adds_iss() {
        let policy = Policy::new(ISSUER, crate::policy::Profile::Fapi2);
        let url = respond(
            &policy,
            &keys(),
            &client(None),
            &target(Some("st&=ü"), None),
            Ok(Granted::code("the-code")),
            T0,
        )
        .unwrap();
        assert!(
            url.starts_with("https://tpp.example/cb?dummy1=lorem&dummy2=ipsum&code=the-code"),
            "{url}"
        );
        let q = query(&url);
        assert_eq!(
            q,
            vec![
                ("dummy1".into(), "lorem".into()),
                ("dummy2".into(), "ipsum".into()),
                ("code".into(), "the-code".into()),
                ("state".into(), "st&=ü".into()),
                ("iss".into(), ISSUER.into()),
            ]
        );
        assert!(url::Url::parse(&url).unwrap().fragment().is_none());
    }

    #[test]
    fn hybrid_response_in_the_fragment_or_as_a_form_post() {
        let policy = Policy::new(ISSUER, crate::policy::Profile::Fapi1Advanced);
        let granted = Granted {
            code: "the-code",
            id_token: Some("h.p.s"),
        };
        let url = respond(
            &policy,
            &keys(),
            &client(None),
            &target(Some("st&=ü"), Some("fragment")),
            Ok(granted),
            T0,
        )
        .unwrap();
        let u = url::Url::parse(&url).unwrap();
        // The registered query stays; the response is in the fragment only.
        assert_eq!(u.query(), Some("dummy1=lorem&dummy2=ipsum"));
        let fragment: Vec<(String, String)> =
            url::form_urlencoded::parse(u.fragment().unwrap().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            fragment,
            vec![
                ("code".into(), "the-code".into()),
                ("id_token".into(), "h.p.s".into()),
                ("state".into(), "st&=ü".into()),
                ("iss".into(), ISSUER.into()),
            ]
        );
        // An error in the fragment too.
        let err = OAuthError::new(ErrorCode::InvalidRequest, "nonce missing");
        let url = respond(
            &policy,
            &keys(),
            &client(None),
            &target(Some("s"), Some("fragment")),
            Err(&err),
            T0,
        )
        .unwrap();
        assert_eq!(
            url::Url::parse(&url).unwrap().fragment(),
            Some(
                "error=invalid_request&error_description=nonce+missing&state=s&iss=https%3A%2F%2Fop.example"
            )
        );

        let r = authorization_response(
            &policy,
            &keys(),
            &client(None),
            &target(None, Some("form_post")),
            Ok(granted),
            T0,
        )
        .unwrap();
        assert_eq!(
            r,
            AuthorizationResponse::FormPost {
                action: "https://tpp.example/cb?dummy1=lorem&dummy2=ipsum".into(),
                params: vec![
                    ("code", "the-code".into()),
                    ("id_token", "h.p.s".into()),
                    ("iss", ISSUER.into()),
                ],
            }
        );
    }

    #[test]
    fn without_state_no_state_is_sent() {
        let policy = Policy::new(ISSUER, crate::policy::Profile::Fapi2);
        let url = respond(
            &policy,
            &keys(),
            &client(None),
            &target(None, Some("query")),
            Ok(Granted::code("c")),
            T0,
        )
        .unwrap();
        assert_eq!(names(&query(&url)), ["dummy1", "dummy2", "code", "iss"]);
    }

    #[test]
    fn error_response_carries_only_the_allowed_parameters() {
        let policy = Policy::new(ISSUER, crate::policy::Profile::Fapi2);
        let err = OAuthError::new(ErrorCode::AccessDenied, "the user said \"no\"\n");
        let url = respond(
            &policy,
            &keys(),
            &client(None),
            &target(Some("s1"), None),
            Err(&err),
            T0,
        )
        .unwrap();
        let q = query(&url);
        assert_eq!(
            names(&q),
            [
                "dummy1",
                "dummy2",
                "error",
                "error_description",
                "state",
                "iss"
            ]
        );
        assert_eq!(q[2].1, "access_denied");
        assert_eq!(q[3].1, "the user said  no  ");
        assert_eq!(q[4].1, "s1");
        assert_eq!(q[5].1, ISSUER);

        let bare = OAuthError::bare(ErrorCode::InvalidScope);
        let url = respond(
            &policy,
            &keys(),
            &client(None),
            &target(None, None),
            Err(&bare),
            T0,
        )
        .unwrap();
        let q = query(&url);
        assert_eq!(names(&q), ["dummy1", "dummy2", "error", "iss"]);
        assert_eq!(q[2].1, "invalid_scope");
    }

    fn jarm_claims(url: &str, keys: &Keys) -> Value {
        let q = query(url);
        assert_eq!(names(&q), ["dummy1", "dummy2", "response"], "{url}");
        keys.verify_own(
            &q[2].1,
            &VerifyOptions::new(T0)
                .leeway(0)
                .issuer(ISSUER)
                .audience(["tpp-1"]),
        )
        .unwrap()
    }

    #[test]
    fn jarm_response_is_a_jwt_verifiable_with_the_provider_jwks() {
        let policy = Policy::new(ISSUER, crate::policy::Profile::Fapi2);
        let keys = keys();
        for (mode, alg, kid) in [
            ("jwt", None, &fixture().ps256.kid),
            ("query.jwt", Some("ES256"), &fixture().es256.kid),
        ] {
            let url = respond(
                &policy,
                &keys,
                &client(alg),
                &target(Some("s1"), Some(mode)),
                Ok(Granted::code("the-code")),
                T0,
            )
            .unwrap();
            let claims = jarm_claims(&url, &keys);
            assert_eq!(
                claims,
                json!({"iss": ISSUER, "aud": "tpp-1", "exp": T0 + 300,
                       "code": "the-code", "state": "s1"})
            );
            // The kid in the header is one published in our JWKS.
            let token = &query(&url)[2].1;
            let header = crate::keys::peek_header(token).unwrap();
            assert_eq!(header["kid"], json!(kid));
            assert_eq!(header["alg"], json!(alg.unwrap_or("PS256")));
            let jwks: Value = serde_json::from_slice(&keys.jwks_json()).unwrap();
            assert!(
                jwks["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kid"] == json!(kid))
            );
        }
    }

    #[test]
    fn jarm_error_response() {
        let policy = Policy::new(ISSUER, crate::policy::Profile::Fapi2);
        let keys = keys();
        let err = OAuthError::new(ErrorCode::AccessDenied, "denied");
        let url = respond(
            &policy,
            &keys,
            &client(None),
            &target(None, Some("jwt")),
            Err(&err),
            T0,
        )
        .unwrap();
        assert_eq!(
            jarm_claims(&url, &keys),
            json!({"iss": ISSUER, "aud": "tpp-1", "exp": T0 + 300,
                   "error": "access_denied", "error_description": "denied"})
        );
    }

    #[test]
    fn unusable_redirect_uri_is_a_server_error() {
        let policy = Policy::new(ISSUER, crate::policy::Profile::Fapi2);
        let mut t = target(None, None);
        t.redirect_uri = "not a url".into();
        let e = authorization_response(
            &policy,
            &keys(),
            &client(None),
            &t,
            Ok(Granted::code("c")),
            T0,
        )
        .unwrap_err();
        assert_eq!(e.code.as_str(), "server_error");
    }

    #[test]
    fn target_of_request() {
        let req: AuthorizationRequest = serde_json::from_value(json!({
            "client_id": "tpp-1", "response_type": "code",
            "redirect_uri": "https://tpp.example/cb", "scope": ["openid"],
            "state": "s", "code_challenge": "x", "code_challenge_method": "S256",
            "response_mode": "query.jwt",
        }))
        .unwrap();
        let t = RedirectTarget::of(&req);
        assert_eq!(t.redirect_uri, "https://tpp.example/cb");
        assert_eq!(t.state.as_deref(), Some("s"));
        assert!(t.is_jarm());
        assert!(!target(None, Some("query")).is_jarm());
        assert!(!target(None, None).is_jarm());
    }
}

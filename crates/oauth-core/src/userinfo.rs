//! The UserInfo endpoint (OpenID Connect Core §5.3), a protected resource:
//! the access token is checked as a resource server would (RFC 6750 §2.1,
//! §3; RFC 9449 §7; RFC 8705 §3), errors are [`ResourceError`]s rendered as
//! `WWW-Authenticate` challenges.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::authorization::{DpopProof, GrantDetails};
use crate::error::{ErrorCode, OAuthError, sanitize_description};
use crate::keys::JwsAlg;
use crate::secret::{constant_time_eq, hash_secret};
use crate::storage::{
    GrantRecord, GrantRepository, StoreError, TokenKind, TokenRecord, TokenRepository,
};
use crate::token::id_token::is_protocol_claim;
use crate::token::{consent_claim_name, requested_claim_names};

/// The algorithms a client may register as `userinfo_signed_response_alg`
/// (OIDC Registration §2), the ones the id_token is signed with.
pub const USERINFO_SIGNING_ALGS: [&str; 2] = ["PS256", "ES256"];

/// The UserInfo response as the client registered it (OIDC Core §5.3.2).
#[derive(Debug, Clone, PartialEq)]
pub enum UserinfoBody {
    /// `application/json`: neither signing nor encryption registered.
    Json(Value),
    /// `application/jwt`: signed (with `iss` and `aud`), encrypted, or
    /// signed then encrypted.
    Jwt(String),
}

/// Whether a stored registration (the client's metadata as JSON) asks for
/// UserInfo as a JWT: `userinfo_signed_response_alg` or
/// `userinfo_encrypted_response_alg` present and not null. Read without
/// building the client, so the usual JSON answer costs no full parse of the
/// registration; metadata that does not read as an object answers `true`,
/// so the caller's full load reports it.
#[must_use]
pub fn registered_for_jwt(metadata: &str) -> bool {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Registered {
        userinfo_signed_response_alg: Option<IgnoredAny>,
        userinfo_encrypted_response_alg: Option<IgnoredAny>,
    }
    serde_json::from_str::<Registered>(metadata).map_or(true, |r| {
        r.userinfo_signed_response_alg.is_some() || r.userinfo_encrypted_response_alg.is_some()
    })
}

/// OIDC Core §5.3.2: `claims` as a JWT when `client` registered
/// `userinfo_signed_response_alg` (signed, with `iss` = the issuer and
/// `aud` = the client, as a JWS `typ` `JWT`) and/or
/// `userinfo_encrypted_response_alg` (encrypted to `encrypter`, the
/// client's key resolved by the caller; signed first when both: a nested
/// JWT with `cty` `JWT`); plain JSON otherwise.
///
/// # Errors
///
/// `server_error` when signing or encryption fails, or encryption is
/// registered and no encrypter was given.
pub fn userinfo_body(
    keys: &crate::keys::Keys,
    issuer: &str,
    client: &crate::client::Client,
    claims: Value,
    encrypter: Option<&crate::keys::ClientEncrypter>,
) -> Result<UserinfoBody, OAuthError> {
    let m = &client.metadata;
    let failed = |e: crate::keys::KeyError| {
        tracing::error!(client_id = %client.id(), error = %e, "userinfo response could not be signed or encrypted");
        OAuthError::server_error()
    };
    let signed = match m.userinfo_signed_response_alg.as_deref() {
        None => None,
        Some(alg) => {
            let alg = JwsAlg::parse(alg).map_err(failed)?;
            let mut claims = claims.clone();
            if let Some(o) = claims.as_object_mut() {
                o.insert("iss".into(), issuer.into());
                o.insert("aud".into(), client.id().into());
            }
            Some(keys.sign(alg, Some("JWT"), &claims).map_err(failed)?)
        }
    };
    match (m.userinfo_encryption(), encrypter, signed) {
        (None, _, None) => Ok(UserinfoBody::Json(claims)),
        (None, _, Some(jws)) => Ok(UserinfoBody::Jwt(jws)),
        (Some(_), Some(e), Some(jws)) => e.encrypt_jwt(&jws).map(UserinfoBody::Jwt).map_err(failed),
        (Some(_), Some(e), None) => e
            .encrypt_claims(&claims)
            .map(UserinfoBody::Jwt)
            .map_err(failed),
        (Some(_), None, _) => {
            tracing::error!(client_id = %client.id(), "userinfo encryption not resolved for the client's registration");
            Err(OAuthError::server_error())
        }
    }
}

/// The authentication scheme the access token was presented with (RFC 6750
/// §2.1 `Bearer`, RFC 9449 §7.1 `DPoP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    DPoP,
}

impl AuthScheme {
    /// Parses the scheme of an `Authorization` header, case-insensitively
    /// (RFC 9110 §11.1; OIDF `access-token-type-header-case-sensitivity`).
    pub fn parse(s: &str) -> Option<AuthScheme> {
        if s.eq_ignore_ascii_case("bearer") {
            Some(AuthScheme::Bearer)
        } else if s.eq_ignore_ascii_case("dpop") {
            Some(AuthScheme::DPoP)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthScheme::Bearer => "Bearer",
            AuthScheme::DPoP => "DPoP",
        }
    }
}

/// A refusal at a protected resource.
///
/// Mapping (RFC 6750 §3.1; RFC 9449 §7.1, §9): `invalid_token`,
/// `invalid_dpop_proof` and `use_dpop_nonce` are 401, `insufficient_scope`
/// 403, `invalid_request` 400, each with the `WWW-Authenticate` challenge of
/// [`ResourceError::www_authenticate`] (and a `DPoP-Nonce` header when
/// [`ResourceError::dpop_nonce`] is set); `server_error` (500) and
/// `temporarily_unavailable` (503) carry no challenge. A request without
/// any credentials is the server's to answer (RFC 6750 §3.1: a bare
/// challenge without an error code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    pub code: ErrorCode,
    pub description: Option<Cow<'static, str>>,
    /// The scheme of the challenge: the scheme the token is bound to when
    /// known (a DPoP-bound token is answered with a DPoP challenge), else
    /// the scheme it was presented with.
    pub scheme: AuthScheme,
    /// For `insufficient_scope`: the scope that would do (RFC 6750 §3).
    pub scope: Option<&'static str>,
    /// RFC 9449 §9: a fresh nonce for the `DPoP-Nonce` header.
    pub dpop_nonce: Option<String>,
}

impl ResourceError {
    pub fn new(code: ErrorCode, scheme: AuthScheme, description: &'static str) -> ResourceError {
        ResourceError {
            code,
            description: Some(Cow::Borrowed(description)),
            scheme,
            scope: None,
            dpop_nonce: None,
        }
    }

    /// RFC 6750 §3.1 `invalid_token`.
    pub fn invalid_token(scheme: AuthScheme, description: &'static str) -> ResourceError {
        ResourceError::new(ErrorCode::InvalidToken, scheme, description)
    }

    /// RFC 9449 §7.1 `invalid_dpop_proof`, always with a DPoP challenge.
    pub fn invalid_dpop_proof(description: &'static str) -> ResourceError {
        ResourceError::new(ErrorCode::InvalidDpopProof, AuthScheme::DPoP, description)
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self.code {
            ErrorCode::InvalidToken | ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce => 401,
            ErrorCode::InsufficientScope => 403,
            code => code.status(),
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3, RFC 9449 §7.1), or `None`
    /// for server-side failures. DPoP challenges list the accepted proof
    /// algorithms (`algs`).
    pub fn www_authenticate(&self) -> Option<String> {
        if matches!(
            self.code,
            ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable
        ) {
            return None;
        }
        let mut params = vec![format!("error=\"{}\"", self.code.as_str())];
        if let Some(d) = &self.description {
            // The allowed description characters exclude `"` and `\`, so
            // the quoted-string cannot be broken out of.
            params.push(format!("error_description=\"{}\"", sanitize_description(d)));
        }
        if let Some(scope) = self.scope {
            params.push(format!("scope=\"{scope}\""));
        }
        if self.scheme == AuthScheme::DPoP {
            let algs: Vec<&str> = JwsAlg::ALL.iter().map(|a| a.as_str()).collect();
            params.push(format!("algs=\"{}\"", algs.join(" ")));
        }
        Some(format!("{} {}", self.scheme.as_str(), params.join(", ")))
    }

    /// A JSON body repeating the error (RFC 6750 §3 carries it in the
    /// header; the body helps clients that read bodies).
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), self.code.as_str().into());
        if let Some(d) = &self.description {
            body.insert("error_description".into(), sanitize_description(d).into());
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for ResourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{}: {d}", self.code.as_str()),
            None => f.write_str(self.code.as_str()),
        }
    }
}

impl std::error::Error for ResourceError {}

impl From<StoreError> for ResourceError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Replayed(entry) = &e {
            return crate::replay::replay_error(entry).into();
        }
        tracing::error!(error = %e, "storage failure");
        let code = match e {
            StoreError::Unavailable(_) => ErrorCode::TemporarilyUnavailable,
            _ => ErrorCode::ServerError,
        };
        ResourceError {
            code,
            description: None,
            scheme: AuthScheme::Bearer,
            scope: None,
            dpop_nonce: None,
        }
    }
}

impl From<OAuthError> for ResourceError {
    /// A DPoP proof refused at a protected resource (RFC 9449 §7.1, §9), as
    /// reported by the proof verification: same code, description and
    /// nonce, as a DPoP challenge with the resource statuses (401 for
    /// `invalid_dpop_proof` and `use_dpop_nonce`).
    fn from(e: OAuthError) -> Self {
        ResourceError {
            code: e.code,
            description: e.description,
            scheme: AuthScheme::DPoP,
            scope: None,
            dpop_nonce: e.dpop_nonce,
        }
    }
}

/// OIDC Core §5.4: the claims each scope releases.
pub fn scope_claims(scope: &str) -> &'static [&'static str] {
    match scope {
        "profile" => &[
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        ],
        "email" => &["email", "email_verified"],
        "address" => &["address"],
        "phone" => &["phone_number", "phone_number_verified"],
        _ => &[],
    }
}

/// The UserInfo response body (OIDC Core §5.3.2): `sub`, the user claims the
/// token's scopes release (§5.4) or the `claims` request asks for at
/// userinfo (§5.5), and the consent id when requested there.
fn claims_for(sub: &str, scope: &str, grant: &GrantDetails, consent_id: Option<&str>) -> Value {
    let mut out = Map::new();
    out.insert("sub".into(), sub.into());
    let requested: Vec<&str> =
        requested_claim_names(grant.claims_request.as_ref(), "userinfo").collect();
    let by_scope = |name: &str| scope.split(' ').any(|s| scope_claims(s).contains(&name));
    for (name, value) in &grant.user_claims {
        if is_protocol_claim(name) {
            continue;
        }
        if by_scope(name) || requested.contains(&name.as_str()) {
            out.insert(name.clone(), value.clone());
        }
    }
    let consent_claim = consent_claim_name(grant);
    if let Some(c) = consent_id
        && requested.contains(&consent_claim)
    {
        out.insert(consent_claim.to_owned(), json!(c));
    }
    Value::Object(out)
}

/// OIDC Core §5.3: the UserInfo response for `token`, presented with
/// `scheme`, a DPoP proof already verified by the server (signature, `htm`,
/// `htu`, `ath`, replay; RFC 9449 §4.3), and the `x5t#S256` of the client
/// certificate on the connection.
///
/// Refusals:
/// - unknown, expired or revoked token, a refresh token, or a revoked grant:
///   `invalid_token`;
/// - DPoP scheme without a proof: `invalid_dpop_proof`;
/// - a DPoP-bound token presented as `Bearer` (RFC 9449 §7.2) or an unbound
///   one presented as `DPoP`: `invalid_token`;
/// - a proof by another key than the token's (RFC 9449 §4.3 check 12):
///   `invalid_dpop_proof`;
/// - a certificate-bound token without that certificate on the connection
///   (RFC 8705 §3): `invalid_token`;
/// - no `openid` scope: `insufficient_scope` (403).
pub async fn userinfo<S: TokenRepository + GrantRepository>(
    store: &S,
    token: &str,
    scheme: AuthScheme,
    dpop: Option<DpopProof>,
    x5t_s256: Option<&str>,
    now: i64,
) -> Result<Value, ResourceError> {
    presented(token, scheme, dpop.is_some())?;
    let found = store.get_active_token(&hash_secret(token), now).await?;
    let grant = match found.as_ref().and_then(|t| t.grant_id.as_deref()) {
        Some(id) => store.get_grant(id).await?,
        None => None,
    };
    answer(found, grant, scheme, dpop.as_ref(), x5t_s256)
}

/// The refusals of [`userinfo`] that need no database: no token, or the
/// DPoP scheme without a proof. A server that reads the token itself
/// checks these first.
///
/// # Errors
///
/// `invalid_token` for an empty token, `invalid_dpop_proof` for the DPoP
/// scheme without a proof.
pub fn presented(token: &str, scheme: AuthScheme, has_proof: bool) -> Result<(), ResourceError> {
    if token.is_empty() {
        return Err(ResourceError::invalid_token(
            scheme,
            "an access token is required",
        ));
    }
    if scheme == AuthScheme::DPoP && !has_proof {
        return Err(ResourceError::invalid_dpop_proof(
            "the DPoP scheme needs a DPoP proof",
        ));
    }
    Ok(())
}

/// [`userinfo`]'s answer for a token already looked up, once [`presented`]
/// passed: `found` is what `get_active_token` returned for the SHA-256 of
/// the presented token, and `grant` what `get_grant` returned for its
/// grant (a server may read both in one trip, see
/// `token_store::Store::token_reads`).
///
/// # Errors
///
/// As [`userinfo`].
pub fn answer(
    found: Option<TokenRecord>,
    grant: Option<GrantRecord>,
    scheme: AuthScheme,
    dpop: Option<&DpopProof>,
    x5t_s256: Option<&str>,
) -> Result<Value, ResourceError> {
    let invalid =
        || ResourceError::invalid_token(scheme, "the access token is invalid, expired or revoked");
    let t = bound_access_token(found, scheme, dpop, x5t_s256)?;
    if !t.scope.split(' ').any(|s| s == "openid") {
        return Err(ResourceError {
            scope: Some("openid"),
            ..ResourceError::new(
                ErrorCode::InsufficientScope,
                scheme,
                "the access token does not have the openid scope",
            )
        });
    }

    // The token's own grant, unrevoked.
    let grant = grant
        .filter(|g| t.grant_id.as_deref() == Some(g.grant_id.as_str()) && g.revoked_at.is_none())
        .ok_or_else(invalid)?;
    let details: GrantDetails = serde_json::from_str(&grant.details).map_err(|e| {
        tracing::error!(grant_id = %grant.grant_id, error = %e, "stored grant details unreadable");
        ResourceError {
            code: ErrorCode::ServerError,
            description: None,
            scheme,
            scope: None,
            dpop_nonce: None,
        }
    })?;
    // Claims the token-claims hook added at issuance (never protocol claims
    // or the consent claim, which only the `claims` request releases).
    let token_details: crate::token::TokenDetails =
        serde_json::from_str(&t.details).unwrap_or_default();
    // OIDC Core §5.3.2: the `sub` of the client's id_tokens, computed when
    // the token was issued (crate::subject::client_subject).
    let sub = token_details
        .subject
        .as_deref()
        .or(t.sub.as_deref())
        .or(grant.sub.as_deref())
        .ok_or_else(invalid)?;
    let mut out = claims_for(sub, &t.scope, &details, grant.consent_id.as_deref());
    let consent_claim = crate::token::consent_claim_name(&details);
    if let Value::Object(m) = &mut out {
        for (name, v) in token_details.userinfo_claims {
            if !is_protocol_claim(&name) && name != consent_claim {
                m.insert(name, v);
            }
        }
    }
    Ok(out)
}

/// The access token as a protected resource accepts it (RFC 6750, RFC 9449
/// §7, RFC 8705 §3): `found` is what `get_active_token` returned for the
/// SHA-256 of the presented token; it must be an access token presented
/// with the scheme and the proof or certificate it is bound to. Shared by
/// userinfo and the admin API.
///
/// # Errors
///
/// `invalid_token` or `invalid_dpop_proof` as [`userinfo`] documents.
pub fn bound_access_token(
    found: Option<TokenRecord>,
    scheme: AuthScheme,
    dpop: Option<&DpopProof>,
    x5t_s256: Option<&str>,
) -> Result<TokenRecord, ResourceError> {
    let invalid =
        || ResourceError::invalid_token(scheme, "the access token is invalid, expired or revoked");
    let t = found
        .filter(|t| t.kind == TokenKind::Access)
        .ok_or_else(invalid)?;

    match (&t.cnf_jkt, scheme) {
        (Some(_), AuthScheme::Bearer) => {
            return Err(ResourceError::invalid_token(
                AuthScheme::DPoP,
                "a DPoP-bound access token must be presented with the DPoP scheme",
            ));
        }
        (Some(jkt), AuthScheme::DPoP) => {
            let matches = dpop.is_some_and(|p| constant_time_eq(p.jkt.as_bytes(), jkt.as_bytes()));
            if !matches {
                return Err(ResourceError::invalid_dpop_proof(
                    "the DPoP proof key is not the key the access token is bound to",
                ));
            }
        }
        (None, AuthScheme::DPoP) => {
            return Err(ResourceError::invalid_token(
                AuthScheme::DPoP,
                "the access token is not DPoP-bound",
            ));
        }
        (None, AuthScheme::Bearer) => {}
    }
    if let Some(x5t) = &t.cnf_x5t {
        let matches = x5t_s256.is_some_and(|p| constant_time_eq(p.as_bytes(), x5t.as_bytes()));
        if !matches {
            return Err(ResourceError::invalid_token(
                scheme,
                "the access token is bound to a client certificate that was not presented",
            ));
        }
    }
    Ok(t)
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn registered_for_jwt_reads_only_the_two_fields() {
        use super::registered_for_jwt;
        assert!(!registered_for_jwt(
            r#"{"client_name":"a","redirect_uris":["https://x"]}"#
        ));
        assert!(!registered_for_jwt(
            r#"{"userinfo_signed_response_alg":null,"userinfo_encrypted_response_alg":null}"#
        ));
        assert!(!registered_for_jwt(
            r#"{"id_token_encrypted_response_alg":"RSA-OAEP-256","userinfo_encrypted_response_enc":"A256GCM"}"#
        ));
        assert!(registered_for_jwt(
            r#"{"userinfo_signed_response_alg":"PS256"}"#
        ));
        assert!(registered_for_jwt(
            r#"{"userinfo_encrypted_response_alg":"RSA-OAEP-256"}"#
        ));
        // Not an object: the caller's full load says what is wrong.
        assert!(registered_for_jwt("[]"));
        assert!(registered_for_jwt("{"));
    }

    use super::*;

    #[test]
    fn schemes_are_case_insensitive() {
        assert_eq!(AuthScheme::parse("bEARER"), Some(AuthScheme::Bearer));
        assert_eq!(AuthScheme::parse("dpop"), Some(AuthScheme::DPoP));
        assert_eq!(AuthScheme::parse("Basic"), None);
    }

    #[test]
    fn challenges_follow_rfc6750_and_rfc9449() {
        let e = ResourceError::invalid_token(AuthScheme::Bearer, "bad \"token\"");
        assert_eq!(e.status(), 401);
        assert_eq!(
            e.www_authenticate().unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"bad  token \""
        );
        let e = ResourceError::invalid_dpop_proof("wrong key");
        assert_eq!(e.status(), 401);
        assert_eq!(
            e.www_authenticate().unwrap(),
            "DPoP error=\"invalid_dpop_proof\", error_description=\"wrong key\", algs=\"PS256 ES256 EdDSA\""
        );
        assert_eq!(
            e.to_json(),
            json!({"error": "invalid_dpop_proof", "error_description": "wrong key"})
        );
        let nonce: ResourceError = OAuthError::new(ErrorCode::UseDpopNonce, "nonce required")
            .with_dpop_nonce("n1".into())
            .into();
        assert_eq!(nonce.status(), 401);
        assert_eq!(nonce.dpop_nonce.as_deref(), Some("n1"));
        assert!(
            nonce
                .www_authenticate()
                .unwrap()
                .starts_with("DPoP error=\"use_dpop_nonce\"")
        );
        let e = ResourceError {
            scope: Some("openid"),
            ..ResourceError::new(ErrorCode::InsufficientScope, AuthScheme::Bearer, "no")
        };
        assert_eq!(e.status(), 403);
        assert_eq!(
            e.www_authenticate().unwrap(),
            "Bearer error=\"insufficient_scope\", error_description=\"no\", scope=\"openid\""
        );
        let e: ResourceError = StoreError::Unavailable("db down at 10.0.0.1".into()).into();
        assert_eq!(e.status(), 503);
        assert_eq!(e.www_authenticate(), None);
        assert!(!e.to_string().contains("10.0.0.1"));
    }

    #[test]
    fn claims_follow_scope_and_claims_request() {
        let grant: GrantDetails = serde_json::from_value(json!({
            "user_claims": {
                "name": "Ada", "email": "ada@example.com", "email_verified": true,
                "phone_number": "+44", "sub": "spoofed", "iss": "spoofed"
            },
            "claims_request": {"userinfo": {"phone_number": null, "openbanking_intent_id": null}},
        }))
        .unwrap();
        let v = claims_for("u1", "openid email", &grant, Some("intent-1"));
        assert_eq!(
            v,
            json!({
                "sub": "u1", "email": "ada@example.com", "email_verified": true,
                "phone_number": "+44", "openbanking_intent_id": "intent-1"
            })
        );
        let v = claims_for("u1", "openid profile", &grant, None);
        assert_eq!(
            v,
            json!({"sub": "u1", "name": "Ada", "phone_number": "+44"})
        );
    }

    pub(crate) fn jwe_header(jwe: &str) -> Value {
        use base64::Engine as _;
        let first = jwe.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(first)
                .unwrap(),
        )
        .unwrap()
    }

    /// OIDC Core §5.3.2: JSON unless the client registered signing and/or
    /// encryption; signed carries `iss` and `aud`; encrypted alone is the
    /// JSON claims as the JWE payload; both is a nested JWT.
    #[test]
    fn the_userinfo_body_is_what_the_client_registered() {
        use crate::keys::test_support::{T0, fixture, kek};
        use crate::keys::{ClientEncrypter, KeySet, Keys, VerifyOptions, peek_header};
        let keys = Keys::new(KeySet::build(fixture().records(), &kek(), T0).unwrap());
        let enc_jwk: Value = serde_json::from_str(&fixture().enc_oaep.public_jwk).unwrap();
        let client = |signed: Option<&str>, encrypted: bool| {
            let mut m: crate::client::ClientMetadata = serde_json::from_value(json!({
                "client_id": "tpp-1",
                "redirect_uris": ["https://tpp.example/cb"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [enc_jwk]},
            }))
            .unwrap();
            m.userinfo_signed_response_alg = signed.map(str::to_owned);
            if encrypted {
                m.userinfo_encrypted_response_alg = Some("RSA-OAEP".into());
            }
            crate::client::Client::new(m, None).unwrap()
        };
        let e =
            ClientEncrypter::from_jwks(&json!({"keys": [enc_jwk]}), "RSA-OAEP", "A128CBC-HS256")
                .unwrap()
                .unwrap();
        let claims = json!({"sub": "alice", "name": "Alice"});
        let iss = "https://op.example";
        let body = |c: &crate::client::Client, e: Option<&ClientEncrypter>| {
            userinfo_body(&keys, iss, c, claims.clone(), e)
        };
        assert_eq!(
            body(&client(None, false), None).unwrap(),
            UserinfoBody::Json(claims.clone())
        );
        let opts = VerifyOptions::new(T0)
            .typ("JWT")
            .issuer(iss)
            .audience(["tpp-1"])
            .without_exp();
        let UserinfoBody::Jwt(jws) = body(&client(Some("ES256"), false), None).unwrap() else {
            panic!("a JWT")
        };
        assert_eq!(peek_header(&jws).unwrap()["alg"], "ES256");
        let got = keys.verify_own(&jws, &opts).unwrap();
        assert_eq!(
            (&got["sub"], &got["name"]),
            (&json!("alice"), &json!("Alice"))
        );
        let UserinfoBody::Jwt(jwe) = body(&client(None, true), Some(&e)).unwrap() else {
            panic!("a JWT")
        };
        let h = jwe_header(&jwe);
        assert_eq!(
            (&h["alg"], &h["enc"], h.get("cty")),
            (&json!("RSA-OAEP"), &json!("A128CBC-HS256"), None)
        );
        let opened: Value = serde_json::from_slice(&keys.decrypt(&jwe).unwrap()).unwrap();
        assert_eq!(opened, claims);
        let UserinfoBody::Jwt(nested) = body(&client(Some("PS256"), true), Some(&e)).unwrap()
        else {
            panic!("a JWT")
        };
        assert_eq!(jwe_header(&nested)["cty"], "JWT");
        let inner = String::from_utf8(keys.decrypt(&nested).unwrap()).unwrap();
        assert_eq!(keys.verify_own(&inner, &opts).unwrap()["sub"], "alice");
        assert_eq!(
            body(&client(None, true), None).unwrap_err().code,
            ErrorCode::ServerError
        );
    }
}

//! Signed request objects (RFC 9101 JAR; FAPI 2.0 Message Signing §5.3.1,
//! §5.3.2): the authorization request as a JWT signed by the client.
//!
//! A JWS, or a JWE to one of our encryption keys with the JWS inside
//! (RFC 9101 §6.1; FAPI 1.0 Advanced §5.2.2): by value at the authorization
//! endpoint the request object travels through the browser, where
//! encryption keeps its content from the customer's device.

use serde_json::{Map, Value};

use crate::client::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::jwks_resolver::{JwksFetcher, JwksResolver};
use crate::keys::decrypt::is_compact_jwe;
use crate::keys::{JwsAlg, KeyError, Keys, VerifyOptions, peek_header, verify_jws};
use crate::policy::Policy;
use crate::secret::hash_secret;
use crate::storage::{ReplayCache, ReplayKind};

/// RFC 9101 §10.8: the explicit type of a request object.
pub const REQUEST_OBJECT_TYP: &str = "oauth-authz-req+jwt";

/// FAPI 2.0 Message Signing §5.3.2: `exp - nbf` at most 60 minutes.
pub const MAX_LIFETIME_SECS: i64 = 3600;

/// FAPI 2.0 Message Signing §5.3.2: `nbf` at most 60 minutes in the past.
pub const MAX_NBF_AGE_SECS: i64 = 3600;

/// FAPI 1.0 Advanced §5.2.2: what a request object must itself carry (the
/// `nonce` of the hybrid flow is the pipeline's to require).
const FAPI1_REQUIRED_CLAIMS: [&str; 3] = ["scope", "redirect_uri", "response_type"];

/// The claims of a request object whose signature and envelope
/// (`iss`, `aud`, `exp`, `nbf`, `client_id`, `jti`) were verified. Only
/// [`verify_request_object`] makes one, so the pipeline cannot be handed
/// unverified claims as if they were signed.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestObject {
    claims: Map<String, Value>,
    alg: JwsAlg,
}

impl RequestObject {
    /// The claims: the authorization request parameters (RFC 9101 §6.3),
    /// with JSON values as sent (`claims` and `authorization_details` as
    /// JSON, `max_age` possibly a number).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The algorithm the object was signed with.
    pub fn alg(&self) -> JwsAlg {
        self.alg
    }

    #[cfg(test)]
    pub(crate) fn unverified_for_tests(claims: Value) -> RequestObject {
        RequestObject {
            claims: claims.as_object().cloned().unwrap_or_default(),
            alg: JwsAlg::PS256,
        }
    }
}

fn invalid(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequestObject, d)
}

/// The answer to a request object whose `jti` was used before.
pub(crate) fn replayed() -> OAuthError {
    invalid("request object has already been used")
}

/// Verifies the `request` parameter of `client`'s authorization request
/// (RFC 9101 §6.2, §6.3; FAPI 2.0 Message Signing §5.3.2; OpenID Connect
/// Core §6.3.2):
///
/// - a JWS compact serialisation, or a JWE to one of our encryption keys
///   with one inside (nested JWT, RFC 9101 §6.1);
/// - `typ`, when present, `oauth-authz-req+jwt` (RFC 9101 §10.8 makes it a
///   SHOULD, so an absent `typ` is accepted);
/// - `alg` PS256, ES256 or EdDSA, and the client's registered
///   `request_object_signing_alg` when it has one; `none`, `HS*`, `RS*`
///   are refused;
/// - signed by one of the client's own keys (`jwks` or `jwks_uri`, chosen
///   by `kid`);
/// - `iss` = the client_id; `aud` = the issuer, as a string or in an array;
/// - `exp` required and not past, `nbf` required, not further in the future
///   than the clock skew and at most 60 minutes old, `exp - nbf` at most
///   60 minutes;
/// - `client_id` required and equal to the client (and to the form's
///   `client_id` when one was sent, RFC 9101 §5);
/// - no `request` / `request_uri` inside;
/// - under FAPI 1.0 Advanced, `scope`, `redirect_uri` and `response_type`
///   inside (§5.2.2);
/// - `jti`, when present, used only once (kept until `exp`).
///
/// Every refusal is `invalid_request_object` (RFC 9101 §6.3), except
/// storage failures (`server_error` / `temporarily_unavailable`).
#[allow(clippy::too_many_arguments)]
pub async fn verify_request_object<F: JwksFetcher, S: ReplayCache>(
    store: &S,
    jwks: &JwksResolver<F>,
    keys: &Keys,
    policy: &Policy,
    client: &Client,
    form_client_id: Option<&str>,
    request: &str,
    now: i64,
) -> Result<RequestObject, OAuthError> {
    verify(
        store,
        jwks,
        Some(keys),
        policy,
        client,
        form_client_id,
        request,
        RequestObjectUse::Authorization,
        now,
    )
    .await
}

/// Which request a request object carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestObjectUse {
    /// An authorization request (RFC 9101): `client_id` required, `jti`
    /// optional, the client's `request_object_signing_alg`.
    Authorization,
    /// A CIBA signed authentication request (CIBA §7.1.1, FAPI-CIBA §5.2.2):
    /// `iat`, `nbf`, `exp` and `jti` required, `client_id` optional,
    /// PS256 or ES256 only, the client's
    /// `backchannel_authentication_request_signing_alg`.
    Backchannel,
}

/// [`verify_request_object`] for a CIBA signed authentication request
/// (CIBA §7.1.1): the same pipeline, with the claims CIBA requires. Every
/// refusal is `invalid_request_object`; the CIBA endpoint answers it as
/// `invalid_request` (CIBA §13 has no other code for it).
pub async fn verify_backchannel_request_object<F: JwksFetcher, S: ReplayCache>(
    store: &S,
    jwks: &JwksResolver<F>,
    policy: &Policy,
    client: &Client,
    form_client_id: Option<&str>,
    request: &str,
    now: i64,
) -> Result<RequestObject, OAuthError> {
    verify(
        store,
        jwks,
        None,
        policy,
        client,
        form_client_id,
        request,
        RequestObjectUse::Backchannel,
        now,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn verify<F: JwksFetcher, S: ReplayCache>(
    store: &S,
    jwks: &JwksResolver<F>,
    keys: Option<&Keys>,
    policy: &Policy,
    client: &Client,
    form_client_id: Option<&str>,
    request: &str,
    usage: RequestObjectUse,
    now: i64,
) -> Result<RequestObject, OAuthError> {
    let backchannel = usage == RequestObjectUse::Backchannel;
    // Encrypted (RFC 9101 §6.1, FAPI 1.0 Advanced §5.2.2): a JWE to one of
    // our encryption keys with the signed request object inside (nested
    // JWT); the signed object is then checked as if sent in clear. CIBA's
    // authentication requests are signed only (CIBA §7.1.1).
    let opened;
    let request = if is_compact_jwe(request) {
        let Some(keys) = keys else {
            return Err(invalid(
                "encrypted authentication requests are not supported",
            ));
        };
        // Only to the keys both the deployment's view of the JWKS (the one
        // served) and the client's own profile publish
        // (crate::policy::Profile::publishes_key).
        let own = policy.profile_for(client).request_object_encryption_algs();
        let offered: Vec<&str> = policy
            .profile
            .request_object_encryption_algs()
            .iter()
            .copied()
            .filter(|a| own.contains(a))
            .collect();
        if let Some(alg) = crate::keys::decrypt::jwe_alg(request)
            && crate::keys::decrypt::JWE_ALGS.contains(&alg.as_str())
            && !offered.contains(&alg.as_str())
        {
            return Err(invalid(format!(
                "request object encryption algorithm {alg} is not offered under this profile (use {})",
                offered.join(" or ")
            )));
        }
        let plain = keys.decrypt(request).map_err(|e| {
            tracing::debug!(client_id = %client.id(), error = %e, "encrypted request object refused");
            match e {
                KeyError::UnsupportedAlg(_) => invalid(
                    "request object encryption algorithm is not supported (RSA-OAEP-256 or RSA-OAEP with A256GCM or A128CBC-HS256)",
                ),
                KeyError::UnknownKid(_) => {
                    invalid("request object is encrypted to a key that is not one of ours")
                }
                _ => invalid("request object could not be decrypted"),
            }
        })?;
        // Three base64url parts: a compact JWS, not JSON that has dots.
        let compact_jws = |p: &String| {
            let parts: Vec<&str> = p.split('.').collect();
            parts.len() == 3
                && !parts[0].is_empty()
                && parts.iter().all(|x| {
                    x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        opened = String::from_utf8(plain)
            .ok()
            .filter(compact_jws)
            .ok_or_else(|| {
                invalid(
                    "an encrypted request object must hold a signed request object (nested JWT)",
                )
            })?;
        opened.as_str()
    } else {
        request
    };
    let header = peek_header(request).map_err(|e| map_key_error(client, e))?;
    if header.get("enc").is_some() {
        return Err(invalid("request object header is not a JWS header"));
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => JwsAlg::parse(a).map_err(|e| map_key_error(client, e))?,
        _ => return Err(invalid("request object header has no alg")),
    };
    if backchannel && !matches!(alg, JwsAlg::PS256 | JwsAlg::ES256) {
        return Err(invalid(
            "request object signing algorithm is not allowed (PS256 or ES256)",
        ));
    }
    let registered = if backchannel {
        client
            .metadata
            .backchannel_authentication_request_signing_alg
            .as_deref()
    } else {
        client.metadata.request_object_signing_alg.as_deref()
    };
    if let Some(registered) = registered
        && registered != alg.as_str()
    {
        return Err(invalid(if backchannel {
            "request object is not signed with the client's registered backchannel_authentication_request_signing_alg"
        } else {
            "request object is not signed with the client's registered request_object_signing_alg"
        }));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(invalid("request object kid must be a string")),
    };
    let key = jwks
        .key_for(client, kid, alg, now)
        .await
        .map_err(|e| e.to_oauth(ErrorCode::InvalidRequestObject))?;

    let mut checks = VerifyOptions::new(now)
        .leeway(policy.clock_skew_secs)
        .issuer(client.id())
        .audience([policy.issuer.as_str()])
        .require("nbf");
    checks = if backchannel {
        checks.require("iat").require("jti")
    } else {
        checks.require("client_id")
    };
    if !backchannel && header.get("typ").is_some() {
        checks = checks.typ(REQUEST_OBJECT_TYP);
    }
    let verified =
        verify_jws(request, &key, &[alg], &checks).map_err(|e| map_key_error(client, e))?;
    let Value::Object(claims) = verified.claims else {
        return Err(invalid("request object claims are not a JSON object"));
    };

    let exp = numeric_date(&claims, "exp")?;
    let nbf = numeric_date(&claims, "nbf")?;
    if now.saturating_sub(nbf) > MAX_NBF_AGE_SECS {
        return Err(invalid(
            "request object nbf is more than 60 minutes in the past",
        ));
    }
    if exp.saturating_sub(nbf) > MAX_LIFETIME_SECS {
        return Err(invalid(
            "request object lifetime (exp - nbf) exceeds 60 minutes",
        ));
    }
    match claims.get("client_id") {
        Some(Value::String(id)) if id == client.id() => {}
        None if backchannel => {}
        _ => {
            return Err(invalid(
                "request object client_id does not match the client",
            ));
        }
    }
    if form_client_id.is_some_and(|id| id != client.id()) {
        return Err(invalid(
            "client_id parameter does not match the request object",
        ));
    }
    if !backchannel && !policy.profile_for(client).is_fapi2() {
        // FAPI 1.0 Advanced §5.2.2-1, §5.2.3-8: every parameter is inside
        // the signed object; outside values are only OIDC's copies.
        for name in FAPI1_REQUIRED_CLAIMS {
            if !claims.get(name).is_some_and(Value::is_string) {
                return Err(invalid(format!(
                    "request object lacks the {name} claim (FAPI 1.0 Advanced §5.2.2)"
                )));
            }
        }
    }
    if claims.contains_key("request") || claims.contains_key("request_uri") {
        return Err(invalid(
            "a request object must not contain request or request_uri",
        ));
    }
    match claims.get("jti") {
        None if !backchannel => {}
        None => return Err(invalid("request object lacks the jti claim")),
        Some(Value::String(jti)) if !jti.is_empty() => {
            // Hashed: the jti is the client's choice and may be long.
            let entry = format!("{}:{}", client.id(), hash_secret(jti));
            let until = exp.saturating_add(policy.clock_skew_secs);
            if !store
                .consume_once(ReplayKind::RequestObject, &entry, until, now)
                .await?
            {
                return Err(replayed());
            }
        }
        Some(_) => return Err(invalid("request object jti must be a non-empty string")),
    }
    Ok(RequestObject { claims, alg })
}

/// A NumericDate that [`verify_jws`] already checked to be a number.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<i64, OAuthError> {
    let n = claims
        .get(name)
        .and_then(Value::as_number)
        .ok_or_else(|| invalid(format!("request object {name} is not a NumericDate")))?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        })
        .ok_or_else(|| invalid(format!("request object {name} is not a NumericDate")))
}

/// Descriptions fixed here, so nothing from the key machinery's internals
/// reaches the client.
fn map_key_error(client: &Client, e: KeyError) -> OAuthError {
    if e.is_internal() {
        tracing::error!(client_id = %client.id(), error = %e, "request object verification failed internally");
        return OAuthError::server_error();
    }
    tracing::debug!(client_id = %client.id(), error = %e, "request object refused");
    match e {
        KeyError::UnsupportedAlg(_) => {
            invalid("request object signing algorithm is not allowed (PS256, ES256 or EdDSA)")
        }
        KeyError::KeyMismatch(_) | KeyError::BadSignature | KeyError::UnknownKid(_) => {
            invalid("request object signature is invalid")
        }
        KeyError::Expired => invalid("request object has expired"),
        KeyError::NotYetValid => invalid("request object is not yet valid (nbf)"),
        KeyError::MissingClaim(c) => invalid(format!("request object lacks the {c} claim")),
        KeyError::InvalidClaim(c) => invalid(format!("request object claim rejected: {c}")),
        KeyError::WrongType { .. } => invalid("request object typ must be oauth-authz-req+jwt"),
        KeyError::UnsupportedCrit(_) => {
            invalid("request object uses an unsupported critical header")
        }
        _ => invalid("request object is not a valid signed JWT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_auth::test_support::{ISSUER, MemStore, T0, TestKey, client};
    use crate::jwks_resolver::test_support::MockFetcher;
    use crate::policy::Profile;
    use serde_json::json;

    const JWKS_URI: &str = "https://tpp-1.example/jwks";

    struct Setup {
        store: MemStore,
        jwks: JwksResolver<MockFetcher>,
        keys: Keys,
        policy: Policy,
        tpp1: Client,
    }

    fn meta(id: &str, keys: &[&TestKey]) -> Value {
        let jwks: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        json!({
            "client_id": id,
            "redirect_uris": ["https://tpp.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": jwks},
            "scope": "openid accounts",
        })
    }

    fn setup(keys: &[&TestKey]) -> Setup {
        let f = crate::keys::test_support::fixture();
        let built =
            crate::keys::KeySet::build(f.records(), &crate::keys::test_support::kek(), T0).unwrap();
        Setup {
            store: MemStore::default(),
            jwks: JwksResolver::new(MockFetcher::default()),
            keys: Keys::new(built),
            policy: Policy::new(ISSUER, Profile::Fapi2MessageSigning),
            tpp1: client(meta("tpp-1", keys), None),
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "tpp-1", "aud": ISSUER, "client_id": "tpp-1",
            "exp": T0 + 300, "nbf": T0, "iat": T0, "jti": "jti-1",
            "response_type": "code", "redirect_uri": "https://tpp.example/cb",
            "scope": "openid accounts", "state": "s",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        })
    }

    fn typed(key: &TestKey, alg: &str, claims: &Value) -> String {
        let mut h = json!({"typ": REQUEST_OBJECT_TYP});
        if let Some(kid) = key.jwk.get("kid") {
            h["kid"] = kid.clone();
        }
        key.sign_as(alg, h, claims)
    }

    async fn verify(s: &Setup, token: &str) -> Result<RequestObject, OAuthError> {
        verify_request_object(
            &s.store,
            &s.jwks,
            &s.keys,
            &s.policy,
            &s.tpp1,
            Some("tpp-1"),
            token,
            T0,
        )
        .await
    }

    /// The refusal's code and description.
    async fn refused(s: &Setup, token: &str) -> (&'static str, String) {
        let e = verify(s, token).await.unwrap_err();
        (
            e.code.as_str(),
            e.description.map(|d| d.into_owned()).unwrap_or_default(),
        )
    }

    fn with(name: &str, value: Option<Value>) -> Value {
        let mut c = claims();
        match value {
            Some(v) => c[name] = v,
            None => {
                c.as_object_mut().unwrap().remove(name);
            }
        }
        c
    }

    #[tokio::test]
    async fn valid_ps256_es256_and_eddsa_are_accepted() {
        for key in [
            TestKey::rsa(Some("rsa-1")),
            TestKey::ec(Some("ec-1")),
            TestKey::ed(None),
        ] {
            let s = setup(&[&key]);
            let ro = verify(&s, &typed(&key, key.alg(), &claims()))
                .await
                .unwrap();
            assert_eq!(ro.alg().as_str(), key.alg());
            assert_eq!(ro.claims()["state"], "s");
            assert_eq!(ro.claims()["scope"], "openid accounts");
        }
    }

    #[tokio::test]
    async fn fapi1_requires_the_request_parameters_inside() {
        let key = TestKey::rsa(Some("rsa-1"));
        let mut s = setup(&[&key]);
        for profile in [Profile::Fapi1Advanced, Profile::UkOpenBanking] {
            s.policy = Policy::new(ISSUER, profile);
            let ok = with("jti", Some(json!(format!("jti-{profile:?}"))));
            verify(&s, &typed(&key, "PS256", &ok)).await.unwrap();
            for name in ["scope", "redirect_uri", "response_type"] {
                let (code, d) = refused(&s, &typed(&key, "PS256", &with(name, None))).await;
                assert_eq!(code, "invalid_request_object", "{profile:?} {name}");
                assert!(d.contains(name), "{d}");
            }
        }
        // FAPI 2.0 Message Signing leaves them to the pipeline.
        s.policy = Policy::new(ISSUER, Profile::Fapi2MessageSigning);
        assert!(
            verify(&s, &typed(&key, "PS256", &with("scope", None)))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn typ_absent_or_prefixed_is_accepted_wrong_typ_refused() {
        let key = TestKey::ec(Some("ec-1"));
        let s = setup(&[&key]);
        // No typ at all (RFC 9101 §10.8 is a SHOULD).
        let c = with("jti", Some(json!("a")));
        assert!(verify(&s, &key.sign(&c)).await.is_ok());
        let h = json!({"kid": "ec-1", "typ": "application/oauth-authz-req+jwt"});
        let c = with("jti", Some(json!("b")));
        assert!(verify(&s, &key.sign_as("ES256", h, &c)).await.is_ok());
        for typ in ["JWT", "dpop+jwt", "at+jwt"] {
            let h = json!({"kid": "ec-1", "typ": typ});
            let (code, d) = refused(&s, &key.sign_as("ES256", h, &claims())).await;
            assert_eq!(code, "invalid_request_object", "{typ}");
            assert_eq!(d, "request object typ must be oauth-authz-req+jwt");
        }
    }

    #[tokio::test]
    async fn aud_string_or_array_with_the_issuer() {
        let key = TestKey::ec(Some("ec-1"));
        let s = setup(&[&key]);
        let c = with("aud", Some(json!(["https://other.example", ISSUER])));
        assert!(verify(&s, &typed(&key, "ES256", &c)).await.is_ok());
        for aud in [
            json!("https://other.example"),
            json!(["https://other.example"]),
            json!("https://op.example/par"),
            json!(5),
        ] {
            let c = with("aud", Some(aud.clone()));
            assert_eq!(
                refused(&s, &typed(&key, "ES256", &c)).await.0,
                "invalid_request_object",
                "{aud}"
            );
        }
        let c = with("aud", None);
        assert_eq!(
            refused(&s, &typed(&key, "ES256", &c)).await.0,
            "invalid_request_object"
        );
    }

    #[tokio::test]
    async fn exp_and_nbf_rules() {
        let key = TestKey::ec(Some("ec-1"));
        let s = setup(&[&key]);
        let sign = |c: &Value| typed(&key, "ES256", c);
        let (code, d) = refused(&s, &sign(&with("exp", None))).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object lacks the exp claim");
        let (code, d) = refused(&s, &sign(&with("nbf", None))).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object lacks the nbf claim");
        // Expired (beyond the 10 s skew).
        let mut c = with("exp", Some(json!(T0 - 11)));
        c["nbf"] = json!(T0 - 300);
        let (code, d) = refused(&s, &sign(&c)).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object has expired");
        // nbf 8 s ahead: accepted (OIDF ...-nbf-8-seconds-in-the-future-is-accepted).
        let c = with("nbf", Some(json!(T0 + 8)));
        assert!(verify(&s, &sign(&c)).await.is_ok());
        // nbf 20 s ahead: refused.
        let c = with("nbf", Some(json!(T0 + 20)));
        let (code, d) = refused(&s, &sign(&c)).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object is not yet valid (nbf)");
        // nbf 70 minutes old.
        let mut c = with("nbf", Some(json!(T0 - 70 * 60)));
        c["exp"] = json!(T0 + 60);
        let (code, d) = refused(&s, &sign(&c)).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object nbf is more than 60 minutes in the past");
        // exp - nbf = 70 minutes.
        let c = with("exp", Some(json!(T0 + 70 * 60)));
        let (code, d) = refused(&s, &sign(&c)).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object lifetime (exp - nbf) exceeds 60 minutes");
        // Exactly 60 minutes is fine.
        let mut c = with("exp", Some(json!(T0 + 3600)));
        c["jti"] = json!("sixty");
        assert!(verify(&s, &sign(&c)).await.is_ok());
        // Not a NumericDate.
        let c = with("nbf", Some(json!("now")));
        assert_eq!(refused(&s, &sign(&c)).await.0, "invalid_request_object");
    }

    #[tokio::test]
    async fn refused_algorithms() {
        let rsa = TestKey::rsa(Some("rsa-1"));
        let s = setup(&[&rsa]);
        for alg in ["RS256", "HS256", "none"] {
            let (code, d) = refused(&s, &typed(&rsa, alg, &claims())).await;
            assert_eq!(code, "invalid_request_object", "{alg}");
            assert_eq!(
                d,
                "request object signing algorithm is not allowed (PS256, ES256 or EdDSA)"
            );
        }
        // No alg at all.
        let token = rsa.sign_as("PS256", json!({}), &claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let header = crate::client_auth::test_support::b64(br#"{"kid":"rsa-1"}"#);
        parts[0] = &header;
        assert_eq!(
            refused(&s, &parts.join(".")).await.0,
            "invalid_request_object"
        );
    }

    #[tokio::test]
    async fn registered_request_object_signing_alg_is_enforced() {
        let rsa = TestKey::rsa(Some("rsa-1"));
        let ec = TestKey::ec(Some("ec-1"));
        let mut s = setup(&[&rsa, &ec]);
        let mut m = meta("tpp-1", &[&rsa, &ec]);
        m["request_object_signing_alg"] = json!("ES256");
        s.tpp1 = client(m, None);
        let (code, _) = refused(&s, &typed(&rsa, "PS256", &claims())).await;
        assert_eq!(code, "invalid_request_object");
        assert!(verify(&s, &typed(&ec, "ES256", &claims())).await.is_ok());
    }

    #[tokio::test]
    async fn bad_signature_and_foreign_keys_are_refused() {
        let key = TestKey::ec(Some("ec-1"));
        let s = setup(&[&key]);
        let token = typed(&key, "ES256", &claims());
        // Flip one character of the signature.
        let (head, sig) = token.rsplit_once('.').unwrap();
        let first = if sig.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{first}{}", &sig[1..]);
        let (code, d) = refused(&s, &tampered).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object signature is invalid");
        // Claims changed after signing.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = crate::client_auth::test_support::b64(
            with("scope", Some(json!("openid payments")))
                .to_string()
                .as_bytes(),
        );
        let token2 = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(refused(&s, &token2).await.0, "invalid_request_object");

        // Another client's key, under its own kid: not one of tpp-1's keys.
        let other = TestKey::ec(Some("ec-2"));
        let (code, d) = refused(&s, &typed(&other, "ES256", &claims())).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "no registered client key matches");
        // Another key claiming tpp-1's kid: the signature fails.
        let impostor = TestKey::ec(Some("ec-1"));
        let (code, d) = refused(&s, &typed(&impostor, "ES256", &claims())).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object signature is invalid");
        // A PS256 object against a client with only an EC key.
        let rsa = TestKey::rsa(Some("ec-1"));
        assert_eq!(
            refused(&s, &typed(&rsa, "PS256", &claims())).await.0,
            "invalid_request_object"
        );
    }

    #[tokio::test]
    async fn keys_from_jwks_uri() {
        let key = TestKey::ec(Some("ec-1"));
        let mut s = setup(&[]);
        let mut m = meta("tpp-1", &[]);
        m.as_object_mut().unwrap().remove("jwks");
        m["jwks_uri"] = json!(JWKS_URI);
        s.tpp1 = client(m, None);
        s.jwks
            .fetcher()
            .set_json(JWKS_URI, &json!({"keys": [key.jwk.clone()]}));
        assert!(verify(&s, &typed(&key, "ES256", &claims())).await.is_ok());
    }

    #[tokio::test]
    async fn iss_client_id_and_references() {
        let key = TestKey::ec(Some("ec-1"));
        let s = setup(&[&key]);
        let sign = |c: &Value| typed(&key, "ES256", c);
        for c in [
            with("iss", Some(json!("tpp-2"))),
            with("iss", None),
            with("client_id", Some(json!("tpp-2"))),
            with("client_id", None),
            with("client_id", Some(json!(1))),
            with(
                "request_uri",
                Some(json!("urn:ietf:params:oauth:request_uri:x")),
            ),
            with("request", Some(json!("eyJ.eyJ.x"))),
            with("jti", Some(json!(""))),
            with("jti", Some(json!(7))),
        ] {
            assert_eq!(
                refused(&s, &sign(&c)).await.0,
                "invalid_request_object",
                "{c}"
            );
        }
        let (code, d) = refused(&s, &sign(&with("request_uri", Some(json!("urn:x"))))).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(
            d,
            "a request object must not contain request or request_uri"
        );
        // The form's client_id must agree.
        let e = verify_request_object(
            &s.store,
            &s.jwks,
            &s.keys,
            &s.policy,
            &s.tpp1,
            Some("tpp-2"),
            &sign(&claims()),
            T0,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request_object");
        // No form client_id is fine (private_key_jwt at PAR need not send it).
        let c = with("jti", Some(json!("no-form-id")));
        assert!(
            verify_request_object(
                &s.store,
                &s.jwks,
                &s.keys,
                &s.policy,
                &s.tpp1,
                None,
                &sign(&c),
                T0
            )
            .await
            .is_ok()
        );
    }

    #[tokio::test]
    async fn jti_is_single_use_and_optional() {
        let key = TestKey::ec(Some("ec-1"));
        let s = setup(&[&key]);
        let token = typed(&key, "ES256", &claims());
        assert!(verify(&s, &token).await.is_ok());
        let (code, d) = refused(&s, &token).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object has already been used");
        // Without jti the same object may be pushed again.
        let token = typed(&key, "ES256", &with("jti", None));
        assert!(verify(&s, &token).await.is_ok());
        assert!(verify(&s, &token).await.is_ok());
    }

    /// Under UK Open Banking only RSA-OAEP-256 is offered (its JWKS names
    /// no `alg` on the one encryption key): an object to our RSA-OAEP key
    /// is refused, whether the deployment or the client's own
    /// `fapi_profile` is the UK one (a FAPI 1.0 client of a UK deployment
    /// too); RSA-OAEP-256 still opens.
    #[tokio::test]
    async fn uk_request_objects_are_encrypted_with_rsa_oaep_256_only() {
        use crate::keys::decrypt::tests::encrypt_to;
        let key = TestKey::ec(Some("ec-1"));
        let f = crate::keys::test_support::fixture();
        let mut uk_deployment = setup(&[&key]);
        uk_deployment.policy.profile = Profile::UkOpenBanking;
        let mut uk_client = setup(&[&key]);
        let mut m = meta("tpp-1", &[&key]);
        m["fapi_profile"] = json!("uk-ob");
        m["response_types"] = json!(["code id_token"]);
        uk_client.tpp1 = client(m, None);
        // A FAPI 1.0 client of a UK deployment: the served JWKS is the UK
        // view, so its RSA-OAEP key is not there to encrypt to either.
        let mut fapi1_on_uk = setup(&[&key]);
        fapi1_on_uk.policy.profile = Profile::UkOpenBanking;
        let mut m = meta("tpp-1", &[&key]);
        m["fapi_profile"] = json!("fapi1-advanced");
        fapi1_on_uk.tpp1 = client(m, None);
        for (s, jti) in [
            (&uk_deployment, "a"),
            (&uk_client, "b"),
            (&fapi1_on_uk, "c"),
        ] {
            let inner = typed(&key, "ES256", &with("jti", Some(json!(format!("{jti}-1")))));
            let jwe = encrypt_to(
                &f.enc_oaep.public_jwk,
                "RSA-OAEP",
                "A256GCM",
                Some(&f.enc_oaep.kid),
                inner.as_bytes(),
            );
            let (code, d) = refused(s, &jwe).await;
            assert_eq!(code, "invalid_request_object");
            assert!(
                d.contains("RSA-OAEP is not offered under this profile (use RSA-OAEP-256)"),
                "{d}"
            );
            let inner = typed(&key, "ES256", &with("jti", Some(json!(format!("{jti}-2")))));
            let jwe = encrypt_to(
                &f.enc.public_jwk,
                "RSA-OAEP-256",
                "A256GCM",
                Some(&f.enc.kid),
                inner.as_bytes(),
            );
            verify(s, &jwe).await.unwrap();
        }
    }

    #[tokio::test]
    async fn encrypted_request_objects_open_to_the_signed_object_inside() {
        use crate::keys::decrypt::tests::encrypt_to;
        let key = TestKey::ec(Some("ec-1"));
        let s = setup(&[&key]);
        let f = crate::keys::test_support::fixture();
        let signed = typed(&key, "ES256", &claims());
        // Nested: the signed object encrypted to each of our enc keys.
        for (alg, rec, jti) in [
            ("RSA-OAEP-256", &f.enc, "jwe-1"),
            ("RSA-OAEP", &f.enc_oaep, "jwe-2"),
        ] {
            let inner = typed(&key, "ES256", &with("jti", Some(json!(jti))));
            let jwe = encrypt_to(
                &rec.public_jwk,
                alg,
                "A256GCM",
                Some(&rec.kid),
                inner.as_bytes(),
            );
            let ro = verify(&s, &jwe).await.unwrap();
            assert_eq!(ro.alg().as_str(), "ES256", "{alg}");
            // Its jti is spent like a signed object's.
            let (code, d) = refused(&s, &jwe).await;
            assert_eq!(
                (code, d.as_str()),
                (
                    "invalid_request_object",
                    "request object has already been used"
                )
            );
        }
        // Tampered tag, plain JSON inside, unsigned inside, a signing key.
        let jwe = encrypt_to(
            &f.enc.public_jwk,
            "RSA-OAEP-256",
            "A256GCM",
            None,
            signed.as_bytes(),
        );
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        let last = parts[4].pop().unwrap();
        parts[4].push(if last == 'A' { 'B' } else { 'A' });
        let (code, d) = refused(&s, &parts.join(".")).await;
        assert_eq!(
            (code, d.as_str()),
            (
                "invalid_request_object",
                "request object could not be decrypted"
            )
        );
        let plain = encrypt_to(
            &f.enc.public_jwk,
            "RSA-OAEP-256",
            "A256GCM",
            None,
            claims().to_string().as_bytes(),
        );
        let (code, d) = refused(&s, &plain).await;
        assert_eq!(code, "invalid_request_object");
        assert!(d.contains("nested JWT"), "{d}");
        let to_sig = encrypt_to(
            &f.enc.public_jwk,
            "RSA-OAEP-256",
            "A256GCM",
            Some(&f.ps256.kid),
            signed.as_bytes(),
        );
        let (code, d) = refused(&s, &to_sig).await;
        assert_eq!(
            (code, d.as_str()),
            (
                "invalid_request_object",
                "request object is encrypted to a key that is not one of ours"
            )
        );
        let a128 = encrypt_to(
            &f.enc.public_jwk,
            "RSA-OAEP-256",
            "A128GCM",
            None,
            signed.as_bytes(),
        );
        assert!(
            refused(&s, &a128)
                .await
                .1
                .contains("encryption algorithm is not supported")
        );
    }

    #[tokio::test]
    async fn malformed_objects_are_refused() {
        let key = TestKey::ec(Some("ec-1"));
        let s = setup(&[&key]);
        let (code, d) = refused(&s, "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.a.b.c.d").await;
        assert_eq!(code, "invalid_request_object");
        assert!(
            d.contains("not supported") || d.contains("decrypted"),
            "{d}"
        );
        let b64 = crate::client_auth::test_support::b64;
        let jwe_header = b64(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
        let (code, d) = refused(&s, &format!("{jwe_header}.e30.c2ln")).await;
        assert_eq!(code, "invalid_request_object");
        assert_eq!(d, "request object header is not a JWS header");
        for garbage in ["", "abc", "a.b", "a.b.c", "...", "%%.%%.%%", "a.b.c.d.e"] {
            assert_eq!(
                refused(&s, garbage).await.0,
                "invalid_request_object",
                "{garbage:?}"
            );
        }
    }
}

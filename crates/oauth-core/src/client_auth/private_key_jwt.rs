//! `private_key_jwt`: a JWT signed with a key the client registered
//! (RFC 7523 §2.2 and §3, RFC 7521 §4.2, OpenID Connect Core §9, FAPI 2.0
//! Security Profile §5.3.2.1).
//!
//! The claims that do not depend on who the client is (`iss` = `sub`,
//! `aud`, `exp`, `iat`, `nbf`, `jti`) are checked before the client is
//! looked up, so their specific error descriptions say nothing about whether
//! a client exists; everything after the lookup fails with one description.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{ClientAuthRequest, failed, load_client};
use crate::client::{AuthMethod, AuthenticatedClient};
use crate::error::{ErrorCode, OAuthError};
use crate::jwks_resolver::{JwksFetcher, JwksResolver, KeyLookupError};
use crate::keys::{JwsAlg, VerifyOptions, peek_header, verify_jws};
use crate::policy::{Policy, Profile};
use crate::storage::{ClientRepository, ReplayCache, ReplayKind};

/// RFC 7523 §2.2 `client_assertion_type`.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted distance of `exp` from now. Assertions are single-use
/// and sent right after signing; a long-lived one is a replay risk.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;

/// FAPI 2.0 Security Profile §5.3.2.1: `iat`/`nbf` up to 10 s in the future
/// must be accepted, more than 60 s refused, whatever the configured skew.
fn skew(policy: &Policy) -> i64 {
    policy.clock_skew_secs.clamp(10, 60)
}

const MAX_JTI_LEN: usize = 256;

/// The longest client assertion read at all: a few hundred bytes of claims
/// and a signature, or a certificate chain in `x5c`, fit many times over;
/// anything longer is refused before it is decoded.
pub const MAX_ASSERTION_LEN: usize = 16 * 1024;

fn bad(description: &'static str) -> OAuthError {
    OAuthError::invalid_client(description)
}

/// The answer to a client assertion whose `jti` was used before.
pub(crate) fn replayed(client_id: &str) -> OAuthError {
    tracing::info!(client_id, "client assertion replayed");
    bad("client assertion has already been used")
}

/// The claims of the JWS, NOT verified: only to find the client and to
/// check what does not need its key. The same checks run again on the
/// verified claims.
fn peek_claims(assertion: &str) -> Result<Value, OAuthError> {
    let payload = assertion
        .split('.')
        .nth(1)
        .ok_or_else(|| bad("client_assertion is not a well-formed JWS"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| bad("client_assertion is not a well-formed JWS"))?;
    let claims: Value = serde_json::from_slice(&bytes)
        .map_err(|_| bad("client_assertion is not a well-formed JWS"))?;
    if !claims.is_object() {
        return Err(bad("client_assertion is not a well-formed JWS"));
    }
    if !crate::text::json_is_clean(&claims) {
        return Err(bad("client_assertion holds a control character"));
    }
    Ok(claims)
}

/// A NumericDate claim (RFC 7519 §2); fractions are floored.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or(()),
        Some(_) => Err(()),
    }
}

/// The checked claims an assertion is accepted on.
pub(super) struct AssertionClaims<'c> {
    pub client_id: &'c str,
    pub jti: &'c str,
    pub exp: i64,
}

/// RFC 7523 §3 claim rules, with the audience rule of `profile` and FAPI's
/// clock rules.
pub(super) fn check_claims<'c>(
    claims: &'c Value,
    policy: &Policy,
    profile: Profile,
    req: &ClientAuthRequest<'_>,
    now: i64,
) -> Result<AssertionClaims<'c>, OAuthError> {
    let skew = skew(policy);
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("client assertion has no iss"))?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("client assertion has no sub"))?;
    // RFC 7523 §3 items 1-2, OpenID Connect Core §9: both are the client_id.
    if iss != sub || iss.is_empty() {
        return Err(bad(
            "client assertion iss and sub must both be the client_id",
        ));
    }
    if !audience_accepted(claims.get("aud"), policy, profile, req) {
        return Err(if profile.is_fapi2() {
            bad("client assertion aud must be the issuer identifier as a single string")
        } else {
            bad("client assertion aud is not accepted")
        });
    }
    let exp = numeric_date(claims, "exp")
        .map_err(|_| bad("client assertion exp is not a NumericDate"))?
        .ok_or_else(|| bad("client assertion has no exp"))?;
    if now >= exp.saturating_add(skew) {
        return Err(bad("client assertion has expired"));
    }
    if exp > now.saturating_add(MAX_ASSERTION_LIFETIME_SECS + skew) {
        return Err(bad("client assertion exp is too far in the future"));
    }
    let iat = numeric_date(claims, "iat")
        .map_err(|_| bad("client assertion iat is not a NumericDate"))?;
    if iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(bad("client assertion iat is in the future"));
    }
    let nbf = numeric_date(claims, "nbf")
        .map_err(|_| bad("client assertion nbf is not a NumericDate"))?;
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(bad("client assertion is not yet valid (nbf)"));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| bad("client assertion has no jti"))?;
    if jti.len() > MAX_JTI_LEN {
        return Err(bad("client assertion jti is too long"));
    }
    Ok(AssertionClaims {
        client_id: sub,
        jti,
        exp,
    })
}

/// FAPI 2.0 Security Profile §5.3.2.1 item 8: the issuer identifier, as a
/// single string. FAPI 1.0 Advanced §5.2.2 / OpenID Connect Core §9: the
/// issuer, the token endpoint URL or the URL of the endpoint in use (PAR,
/// backchannel…), alone or in an array.
fn audience_accepted(
    aud: Option<&Value>,
    policy: &Policy,
    profile: Profile,
    req: &ClientAuthRequest<'_>,
) -> bool {
    if profile.is_fapi2() {
        return matches!(aud, Some(Value::String(s)) if *s == policy.issuer);
    }
    let accepted = |s: &str| {
        !s.is_empty()
            && (s == policy.issuer || s == req.endpoint_url || req.token_endpoint_urls.contains(&s))
    };
    match aud {
        Some(Value::String(s)) => accepted(s),
        Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).any(accepted),
        _ => false,
    }
}

pub(super) async fn authenticate<S, F>(
    store: &S,
    jwks: &JwksResolver<F>,
    policy: &Policy,
    req: &ClientAuthRequest<'_>,
    now: i64,
) -> Result<AuthenticatedClient, OAuthError>
where
    S: ClientRepository + ReplayCache,
    F: JwksFetcher,
{
    match req.client_assertion_type {
        Some(JWT_BEARER_ASSERTION_TYPE) => {}
        Some(_) => return Err(bad("unsupported client_assertion_type")),
        None => return Err(bad("client_assertion_type is required")),
    }
    let assertion = req
        .client_assertion
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("client_assertion is required"))?;
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(bad("client_assertion is too long"));
    }

    let header =
        peek_header(assertion).map_err(|_| bad("client_assertion is not a well-formed JWS"))?;
    // RFC 8725 §3.1, FAPI 2.0 §5.4: none, HS* and RS* are not representable.
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| JwsAlg::parse(a).ok())
        .ok_or_else(|| bad("client assertion must be signed with PS256, ES256 or EdDSA"))?;
    let peeked = peek_claims(assertion)?;
    // Before the client (and so its profile) is known: FAPI 1.0's audience
    // rule, the wider one; the client's own applies to the verified claims.
    let client_id = check_claims(&peeked, policy, Profile::Fapi1Advanced, req, now)?.client_id;
    if req.client_id.is_some_and(|id| id != client_id) {
        return Err(bad("client_id does not match the client assertion"));
    }

    let client = load_client(store, client_id).await?;
    if client.auth_method() != AuthMethod::PrivateKeyJwt {
        return Err(failed(
            client_id,
            "private_key_jwt is not the registered method",
        ));
    }
    if let Some(registered) = &client.metadata.token_endpoint_auth_signing_alg
        && registered != alg.as_str()
    {
        return Err(failed(
            client_id,
            "alg is not token_endpoint_auth_signing_alg",
        ));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let key = jwks
        .key_for(&client, kid, alg, now)
        .await
        .map_err(|e| match e {
            KeyLookupError::Unavailable => {
                tracing::info!(
                    client_id,
                    "client keys unavailable for client authentication"
                );
                e.to_oauth(ErrorCode::InvalidClient)
            }
            _ => failed(client_id, "no registered key for the assertion"),
        })?;
    let options = VerifyOptions::new(now)
        .leeway(skew(policy))
        .issuer(client_id)
        .require("jti");
    let verified = verify_jws(assertion, &key, &[alg], &options).map_err(|e| {
        if e.is_internal() {
            tracing::error!(client_id, error = %e, "client assertion verification failed internally");
            OAuthError::server_error()
        } else {
            failed(client_id, &e.to_string())
        }
    })?;
    let checked = check_claims(
        &verified.claims,
        policy,
        policy.profile_for(&client),
        req,
        now,
    )?;
    if checked.client_id != client.id() {
        return Err(failed(client_id, "verified claims name another client"));
    }
    // RFC 7523 §3 item 7: the jti is single-use for as long as the assertion
    // could be accepted.
    let first_use = store
        .consume_once(
            ReplayKind::ClientAssertion,
            &format!("{}:{}", client.id(), checked.jti),
            checked.exp.saturating_add(skew(policy)),
            now,
        )
        .await?;
    if !first_use {
        return Err(replayed(client_id));
    }
    Ok(AuthenticatedClient {
        client,
        method: AuthMethod::PrivateKeyJwt,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::client::Client;
    use crate::client_auth::test_support::*;
    use crate::client_auth::{AUTH_FAILED, ClientAuthRequest, Endpoint, authenticate_at};
    use crate::jwks_resolver::test_support::MockFetcher;
    use crate::policy::Profile;

    const URI: &str = "https://tpp.example/c3/jwks.json";

    struct Env {
        store: MemStore,
        jwks: JwksResolver<MockFetcher>,
        /// c1's keys: EC (k1), Ed25519 (k-ed), RSA (k-rsa).
        ec: TestKey,
        ed: TestKey,
        rsa: TestKey,
        /// c2's key.
        other: TestKey,
    }

    fn pkjwt_client(id: &str, jwks: Value, extra: Value) -> Client {
        let mut meta = json!({
            "client_id": id, "redirect_uris": ["https://tpp.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks,
        });
        for (k, v) in extra.as_object().unwrap() {
            meta[k] = v.clone();
        }
        client(meta, None)
    }

    fn env() -> Env {
        let ec = TestKey::ec(Some("k1"));
        let ed = TestKey::ed(Some("k-ed"));
        let rsa = TestKey::rsa(Some("k-rsa"));
        let other = TestKey::ec(Some("k2"));
        let c1 = pkjwt_client("c1", json!({"keys": [ec.jwk, ed.jwk, rsa.jwk]}), json!({}));
        let c2 = pkjwt_client("c2", json!({"keys": [other.jwk]}), json!({}));
        let ps_only = pkjwt_client(
            "ps-only",
            json!({"keys": [ec.jwk, rsa.jwk]}),
            json!({"token_endpoint_auth_signing_alg": "PS256"}),
        );
        let mut c3 = pkjwt_client("c3", json!({"keys": []}), json!({}));
        c3.metadata.jwks = None;
        c3.metadata.jwks_uri = Some(URI.into());
        let tls = client(
            json!({"client_id": "tls", "redirect_uris": ["https://tpp.example/cb"],
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": "CN=tls", "jwks": {"keys": [ec.jwk]}}),
            None,
        );
        Env {
            store: MemStore::with_clients(&[&c1, &c2, &ps_only, &c3, &tls]),
            jwks: JwksResolver::new(MockFetcher::default()),
            ec,
            ed,
            rsa,
            other,
        }
    }

    fn fapi2() -> Policy {
        Policy::new(ISSUER, Profile::Fapi2)
    }

    fn fapi1() -> Policy {
        Policy::new(ISSUER, Profile::Fapi1Advanced)
    }

    async fn run(
        e: &Env,
        policy: &Policy,
        req: ClientAuthRequest<'_>,
    ) -> Result<crate::client::AuthenticatedClient, OAuthError> {
        authenticate_at(&e.store, &e.jwks, policy, req, T0).await
    }

    /// Signs c1's claims, modified by `edit`, with the EC key.
    fn c1_assertion(e: &Env, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = assertion_claims("c1");
        edit(&mut c);
        e.ec.sign(&c)
    }

    #[tokio::test]
    async fn accepts_es256_eddsa_and_ps256_assertions() {
        let e = env();
        for key in [&e.ec, &e.ed, &e.rsa] {
            let a = key.sign(&assertion_claims("c1"));
            let ok = run(&e, &fapi2(), assertion_request(&a)).await.unwrap();
            assert_eq!(ok.client.id(), "c1");
            assert_eq!(ok.method, AuthMethod::PrivateKeyJwt);
        }
        // Without kid: the only registered key that fits the alg is used.
        let a = e.other.sign_as("ES256", json!({}), &assertion_claims("c2"));
        assert!(run(&e, &fapi2(), assertion_request(&a)).await.is_ok());
        let a = e.ec.sign_as("ES256", json!({}), &assertion_claims("c1"));
        assert!(run(&e, &fapi2(), assertion_request(&a)).await.is_ok());
    }

    #[tokio::test]
    async fn fapi2_audience_is_exactly_the_issuer_string() {
        let e = env();
        for aud in [
            json!(TOKEN_URL),
            json!(PAR_URL),
            json!([ISSUER]),
            json!([ISSUER, "https://other.example"]),
            json!("https://op.example/"),
            json!(null),
            json!(5),
        ] {
            let a = c1_assertion(&e, |c| c["aud"] = aud.clone());
            let err = run(&e, &fapi2(), assertion_request(&a)).await.unwrap_err();
            assert_eq!(err.code.as_str(), "invalid_client", "{aud}");
            assert_eq!(err.status(), 401);
        }
        let a = c1_assertion(&e, |c| {
            c.as_object_mut().unwrap().remove("aud");
        });
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );
        // At PAR, the PAR URL is refused as well.
        let a = c1_assertion(&e, |c| c["aud"] = json!(PAR_URL));
        let req = ClientAuthRequest {
            endpoint: Endpoint::Par,
            endpoint_url: PAR_URL,
            ..assertion_request(&a)
        };
        assert_eq!(code(run(&e, &fapi2(), req).await), "invalid_client");
    }

    #[tokio::test]
    async fn the_audience_rule_is_the_clients_profile() {
        let e = env();
        let uk = pkjwt_client(
            "uk",
            json!({"keys": [e.ec.jwk]}),
            json!({"fapi_profile": "uk-ob", "response_types": ["code id_token"]}),
        );
        let f2 = pkjwt_client(
            "f2",
            json!({"keys": [e.ec.jwk]}),
            json!({"fapi_profile": "fapi2"}),
        );
        let e = Env {
            store: MemStore::with_clients(&[&uk, &f2]),
            ..e
        };
        let sign = |id: &str, aud: &str| {
            let mut c = assertion_claims(id);
            c["aud"] = json!(aud);
            e.ec.sign(&c)
        };
        // On a FAPI 2.0 deployment, the UK client's token URL audience.
        let a = sign("uk", TOKEN_URL);
        assert_eq!(
            run(&e, &fapi2(), assertion_request(&a))
                .await
                .unwrap()
                .client
                .id(),
            "uk"
        );
        // On a FAPI 1.0 deployment, the FAPI 2.0 client's is refused.
        let a = sign("f2", TOKEN_URL);
        assert_eq!(
            code(run(&e, &fapi1(), assertion_request(&a)).await),
            "invalid_client"
        );
        let a = sign("f2", ISSUER);
        assert!(run(&e, &fapi1(), assertion_request(&a)).await.is_ok());
    }

    #[tokio::test]
    async fn fapi1_accepts_issuer_endpoint_urls_and_arrays() {
        let e = env();
        for aud in [
            json!(ISSUER),
            json!(TOKEN_URL),
            json!(PAR_URL),
            json!([ISSUER, "https://dummy.example"]),
            json!(["https://dummy.example", TOKEN_URL]),
        ] {
            let a = c1_assertion(&e, |c| c["aud"] = aud.clone());
            let req = ClientAuthRequest {
                endpoint: Endpoint::Par,
                endpoint_url: PAR_URL,
                ..assertion_request(&a)
            };
            assert!(run(&e, &fapi1(), req).await.is_ok(), "{aud}");
        }
        for aud in [
            json!("https://other.example"),
            json!(["https://other.example"]),
            json!(""),
            json!([]),
        ] {
            let a = c1_assertion(&e, |c| c["aud"] = aud.clone());
            let req = ClientAuthRequest {
                endpoint_url: "",
                ..assertion_request(&a)
            };
            assert_eq!(
                code(run(&e, &fapi1(), req).await),
                "invalid_client",
                "{aud}"
            );
        }
        // The PAR URL is not accepted at the token endpoint.
        let a = c1_assertion(&e, |c| c["aud"] = json!(PAR_URL));
        assert_eq!(
            code(run(&e, &fapi1(), assertion_request(&a)).await),
            "invalid_client"
        );
    }

    #[tokio::test]
    async fn exp_must_be_present_in_the_future_and_not_too_far() {
        let e = env();
        let cases: [(&str, Option<Value>, bool); 7] = [
            ("5 minutes in the past", Some(json!(T0 - 300)), false),
            ("just expired beyond skew", Some(json!(T0 - 10)), false),
            ("within skew", Some(json!(T0 - 9)), true),
            ("one hour ahead", Some(json!(T0 + 3600)), false),
            ("five minutes ahead", Some(json!(T0 + 300)), true),
            ("not a number", Some(json!("tomorrow")), false),
            ("missing", None, false),
        ];
        for (what, exp, ok) in cases {
            let a = c1_assertion(&e, |c| match &exp {
                Some(v) => c["exp"] = v.clone(),
                None => {
                    c.as_object_mut().unwrap().remove("exp");
                }
            });
            let r = run(&e, &fapi2(), assertion_request(&a)).await;
            if ok {
                assert!(r.is_ok(), "{what}: {r:?}");
            } else {
                assert_eq!(code(r), "invalid_client", "{what}");
            }
        }
    }

    #[tokio::test]
    async fn iat_and_nbf_8_seconds_ahead_pass_and_70_seconds_ahead_fail() {
        let e = env();
        for policy in [fapi2(), fapi1()] {
            let a = c1_assertion(&e, |c| {
                c["iat"] = json!(T0 + 8);
                c["nbf"] = json!(T0 + 8);
                c["exp"] = json!(T0 + 68);
            });
            assert!(run(&e, &policy, assertion_request(&a)).await.is_ok());
            let a = c1_assertion(&e, |c| {
                c["iat"] = json!(T0 + 70);
                c["nbf"] = json!(T0 + 70);
                c["exp"] = json!(T0 + 130);
            });
            assert_eq!(
                code(run(&e, &policy, assertion_request(&a)).await),
                "invalid_client"
            );
            for claim in ["iat", "nbf"] {
                let a = c1_assertion(&e, |c| c[claim] = json!(T0 + 70));
                assert_eq!(
                    code(run(&e, &policy, assertion_request(&a)).await),
                    "invalid_client",
                    "{claim}"
                );
            }
        }
        // A huge configured skew does not widen the FAPI limit past 60 s.
        let mut lax = fapi2();
        lax.clock_skew_secs = 600;
        let a = c1_assertion(&e, |c| c["nbf"] = json!(T0 + 70));
        assert_eq!(
            code(run(&e, &lax, assertion_request(&a)).await),
            "invalid_client"
        );
        // A tiny one does not narrow it below 10 s.
        let mut strict = fapi2();
        strict.clock_skew_secs = 0;
        let a = c1_assertion(&e, |c| c["nbf"] = json!(T0 + 8));
        assert!(run(&e, &strict, assertion_request(&a)).await.is_ok());
    }

    #[tokio::test]
    async fn jti_is_required_and_single_use_per_client() {
        let e = env();
        let a = c1_assertion(&e, |c| {
            c.as_object_mut().unwrap().remove("jti");
        });
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );
        let a = c1_assertion(&e, |c| c["jti"] = json!(""));
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );

        let a = c1_assertion(&e, |c| c["jti"] = json!("once"));
        assert!(run(&e, &fapi2(), assertion_request(&a)).await.is_ok());
        let err = run(&e, &fapi2(), assertion_request(&a)).await.unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_client");
        // A fresh signature over the same jti is still a replay.
        let again = c1_assertion(&e, |c| c["jti"] = json!("once"));
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&again)).await),
            "invalid_client"
        );
        // Another client may use the same jti value.
        let mut c = assertion_claims("c2");
        c["jti"] = json!("once");
        let a2 = e.other.sign(&c);
        assert!(run(&e, &fapi2(), assertion_request(&a2)).await.is_ok());
    }

    #[tokio::test]
    async fn refused_algorithms() {
        let e = env();
        let claims = assertion_claims("c1");
        for (key, alg) in [
            (&e.rsa, "RS256"),
            (&e.ec, "HS256"),
            (&e.rsa, "HS256"),
            (&e.ec, "none"),
        ] {
            let a = key.sign_as(alg, json!({"kid": key.jwk["kid"]}), &claims);
            let err = run(&e, &fapi2(), assertion_request(&a)).await.unwrap_err();
            assert_eq!(err.code.as_str(), "invalid_client", "{alg}");
        }
        // The registered token_endpoint_auth_signing_alg is enforced.
        let a = e.ec.sign(&assertion_claims("ps-only"));
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );
        let a = e.rsa.sign(&assertion_claims("ps-only"));
        assert!(run(&e, &fapi2(), assertion_request(&a)).await.is_ok());
    }

    #[tokio::test]
    async fn key_of_another_client_and_bad_signatures_are_refused() {
        let e = env();
        // c2's key, naming its own kid.
        let a = e.other.sign(&assertion_claims("c1"));
        let err = run(&e, &fapi2(), assertion_request(&a)).await.unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_client");
        assert_eq!(err.description.as_deref(), Some(AUTH_FAILED));
        // c2's key, claiming c1's kid.
        let a = e
            .other
            .sign_as("ES256", json!({"kid": "k1"}), &assertion_claims("c1"));
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );
        // Claims swapped under a valid signature.
        let good = e.ec.sign(&assertion_claims("c1"));
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = assertion_claims("c1");
        c["exp"] = json!(T0 + 120);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&forged)).await),
            "invalid_client"
        );
        // Unknown crit.
        let a = e.ec.sign_as(
            "ES256",
            json!({"kid": "k1", "crit": ["x-ext"], "x-ext": 1}),
            &assertion_claims("c1"),
        );
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );
    }

    #[tokio::test]
    async fn iss_and_sub_must_both_be_the_client_id() {
        let e = env();
        let a = c1_assertion(&e, |c| {
            c.as_object_mut().unwrap().remove("sub");
        });
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );
        let a = c1_assertion(&e, |c| {
            c.as_object_mut().unwrap().remove("iss");
        });
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );
        let a = c1_assertion(&e, |c| c["iss"] = json!("c2"));
        assert_eq!(
            code(run(&e, &fapi2(), assertion_request(&a)).await),
            "invalid_client"
        );
        // client_id form parameter disagreeing with the assertion.
        let a = c1_assertion(&e, |_| {});
        let req = ClientAuthRequest {
            client_id: Some("c2"),
            ..assertion_request(&a)
        };
        assert_eq!(code(run(&e, &fapi2(), req).await), "invalid_client");
        let req = ClientAuthRequest {
            client_id: Some("c1"),
            ..assertion_request(&a)
        };
        assert!(run(&e, &fapi2(), req).await.is_ok());
    }

    #[tokio::test]
    async fn unknown_client_and_wrong_method_look_like_any_failure() {
        let e = env();
        let a = e.ec.sign(&assertion_claims("nobody"));
        let unknown = run(&e, &fapi2(), assertion_request(&a)).await.unwrap_err();
        assert_eq!(unknown.code.as_str(), "invalid_client");
        let a = e.ec.sign(&assertion_claims("tls"));
        let wrong_method = run(&e, &fapi2(), assertion_request(&a)).await.unwrap_err();
        assert_eq!(wrong_method, unknown, "same code and description");
        let a = e.other.sign(&assertion_claims("c1"));
        let bad_key = run(&e, &fapi2(), assertion_request(&a)).await.unwrap_err();
        assert_eq!(bad_key, unknown);
    }

    #[tokio::test]
    async fn assertion_type_and_shape() {
        let e = env();
        let a = c1_assertion(&e, |_| {});
        for t in [
            Some("urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
            None,
        ] {
            let req = ClientAuthRequest {
                client_assertion_type: t,
                ..assertion_request(&a)
            };
            assert_eq!(code(run(&e, &fapi2(), req).await), "invalid_client");
        }
        let req = ClientAuthRequest {
            client_assertion: None,
            ..assertion_request(&a)
        };
        assert_eq!(code(run(&e, &fapi2(), req).await), "invalid_client");
        for garbage in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "..",
            "e30.e30.",
            "e30.W10.x",
            "%%.%%.%%",
        ] {
            assert_eq!(
                code(run(&e, &fapi2(), assertion_request(garbage)).await),
                "invalid_client",
                "{garbage}"
            );
        }
    }

    #[tokio::test]
    async fn an_assertion_longer_than_the_cap_is_refused_even_when_signed() {
        let e = env();
        // Padded to just under and just over the cap with a claim.
        let padded = |n: usize| {
            c1_assertion(&e, |c| {
                c["pad"] = json!("");
                let base = e.ec.sign(c).len();
                c["pad"] = json!("x".repeat((n - base) * 3 / 4));
            })
        };
        let under = padded(MAX_ASSERTION_LEN - 64);
        assert!(under.len() <= MAX_ASSERTION_LEN, "{}", under.len());
        assert!(run(&e, &fapi2(), assertion_request(&under)).await.is_ok());
        let over = padded(MAX_ASSERTION_LEN + 64);
        assert!(over.len() > MAX_ASSERTION_LEN, "{}", over.len());
        let err = run(&e, &fapi2(), assertion_request(&over))
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_client");
        assert!(
            err.description
                .as_deref()
                .unwrap_or("")
                .contains("too long"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn jwks_uri_key_found_after_refetch() {
        let e = env();
        let old = TestKey::ec(Some("old"));
        let new = TestKey::ec(Some("new"));
        e.jwks.fetcher().set_json(URI, &json!({"keys": [old.jwk]}));
        assert!(
            run(
                &e,
                &fapi2(),
                assertion_request(&old.sign(&assertion_claims("c3")))
            )
            .await
            .is_ok()
        );
        e.jwks
            .fetcher()
            .set_json(URI, &json!({"keys": [old.jwk, new.jwk]}));
        let at = |t: i64| {
            let mut c = assertion_claims("c3");
            c["iat"] = json!(t);
            c["exp"] = json!(t + 60);
            new.sign(&c)
        };
        let later = at(T0 + 31);
        let r = authenticate_at(
            &e.store,
            &e.jwks,
            &fapi2(),
            assertion_request(&later),
            T0 + 31,
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(e.jwks.fetcher().calls(), 2);
        // Unreachable jwks_uri on a cold cache: invalid_client, generic text.
        let cold = JwksResolver::new(MockFetcher::default());
        let err = authenticate_at(&e.store, &cold, &fapi2(), assertion_request(&at(T0)), T0)
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_client");
        assert!(!err.to_json().to_string().contains("tpp.example"));
    }
}

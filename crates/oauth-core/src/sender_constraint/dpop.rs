//! DPoP proof verification (RFC 9449 §4.3) for the token and PAR endpoints
//! and for protected resources (userinfo).
//!
//! Error codes: `invalid_dpop_proof` (HTTP 400 at the token and PAR
//! endpoints, RFC 9449 §5 and §10.1) and `use_dpop_nonce` (HTTP 400, with the
//! nonce in [`OAuthError::dpop_nonce`] for the `DPoP-Nonce` header, §8).
//! At a protected resource the same failures are answered with HTTP 401 and
//! a `WWW-Authenticate: DPoP` challenge (§7.1, §9): see
//! [`crate::userinfo::ResourceError`].

use serde_json::Value;

pub use crate::authorization::DpopProof;
use crate::error::{ErrorCode, OAuthError};
use crate::keys::{
    JwsAlg, KeyError, VerifyOptions, has_private_members, jwk_thumbprint, parse_public_jwk,
    peek_header, verify_jws,
};
use crate::policy::Policy;
use crate::secret::{constant_time_eq, sha256_b64url};
use crate::storage::{ReplayCache, ReplayKind};

use super::nonce::DpopNonces;

/// RFC 9449 §4.2 `typ` of a DPoP proof.
pub const DPOP_TYP: &str = "dpop+jwt";

/// Proofs within ±10 s of our clock must always pass (OIDF FAPI 2.0
/// `ensure-dpopproof-with-iat-10seconds-before/after-succeeds`); the window
/// is never narrower than this, whatever the configuration says.
pub const MIN_IAT_WINDOW_SECS: i64 = 15;

const MAX_PROOF_LEN: usize = 8 * 1024;
const MAX_JTI_LEN: usize = 256;

/// What a request offers for DPoP (RFC 9449 §4.3), as the server sees it.
#[derive(Debug, Clone, Copy)]
pub struct DpopCheck<'a> {
    /// Every `DPoP` header value present (header names are
    /// case-insensitive); more than one is refused (RFC 9449 §4.3 item 1).
    pub proofs: &'a [&'a str],
    /// The request method, e.g. `POST`.
    pub htm: &'a str,
    /// The request URL as the server publishes it, `scheme://host[:port]/path`
    /// (the query, if included, is ignored).
    pub htu: &'a str,
    /// At a protected resource: the access token of the request, whose hash
    /// the proof must carry in `ath` (RFC 9449 §4.2).
    pub access_token: Option<&'a str>,
    /// Whether a server nonce is demanded (RFC 9449 §8); set from
    /// [`Policy::require_dpop_nonce`].
    pub nonce_required: bool,
}

fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, description)
}

/// The answer to a DPoP proof whose `jti` was used before.
pub(crate) fn replayed() -> OAuthError {
    invalid("DPoP proof has already been used")
}

/// The `htu` comparison form (RFC 9449 §4.3 item 9, RFC 3986 §6.2.2–6.2.3):
/// scheme and host lowercase, default port dropped, query and fragment
/// ignored. `None` if `u` is not an absolute http(s) URL.
pub fn normalize_htu(u: &str) -> Option<String> {
    let url = url::Url::parse(u).ok()?;
    if !matches!(url.scheme(), "https" | "http") {
        return None;
    }
    let host = url.host_str()?;
    // `Url` already lowercases the scheme and host and reports no port when
    // it is the scheme's default.
    let mut out = format!("{}://{}", url.scheme(), host);
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(url.path());
    Some(out)
}

/// Verifies the DPoP proof of a request (RFC 9449 §4.3) and records its
/// `jti` as used. `Ok(None)` when the request carries no DPoP header; the
/// caller decides whether DPoP was required.
pub async fn verify_proof<S: ReplayCache>(
    store: &S,
    policy: &Policy,
    nonces: &DpopNonces,
    check: DpopCheck<'_>,
    now: i64,
) -> Result<Option<DpopProof>, OAuthError> {
    if !check.proofs.is_empty() && !policy.profile.offers_dpop() {
        // A deployment whose discovery offers no DPoP (Profile::offers_dpop)
        // takes no proof anywhere; per-client profiles are checked once the
        // client is known (grant::sender_binding, the request pipeline).
        return Err(OAuthError::invalid_request(format!(
            "DPoP is not offered under the {} profile: tokens are bound to the client certificate (RFC 8705)",
            policy.profile.as_str()
        )));
    }
    let proof = match check.proofs {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(invalid("more than one DPoP header")),
    };
    if proof.is_empty() || proof.len() > MAX_PROOF_LEN {
        return Err(invalid("DPoP proof is not a well-formed JWT"));
    }
    let header = peek_header(proof).map_err(|_| invalid("DPoP proof is not a well-formed JWT"))?;
    match header.get("alg").and_then(Value::as_str) {
        Some(alg) if JwsAlg::parse(alg).is_ok() => {}
        _ => {
            return Err(invalid(
                "DPoP proof must be signed with PS256, ES256 or EdDSA",
            ));
        }
    }
    let jwk_json = header
        .get("jwk")
        .ok_or_else(|| invalid("DPoP proof has no jwk header"))?;
    if has_private_members(jwk_json) {
        return Err(invalid("DPoP proof jwk must not contain a private key"));
    }
    let jwk = parse_public_jwk(jwk_json)
        .map_err(|_| invalid("DPoP proof jwk is not a usable public key"))?;

    let mut options = VerifyOptions::new(now)
        .without_exp()
        .typ(DPOP_TYP)
        .require("jti")
        .require("htm")
        .require("htu")
        .require("iat");
    // nbf/exp are not DPoP claims; proofs carrying them are still valid
    // (OIDF check-dpop-proof-nbf-exp). Freshness is iat, checked below.
    options.validate_nbf = false;
    let verified = verify_jws(proof, &jwk, &JwsAlg::ALL, &options).map_err(|e| match e {
        KeyError::WrongType { .. } => invalid("DPoP proof typ must be dpop+jwt"),
        KeyError::MissingClaim(c) => invalid(format!("DPoP proof has no {c} claim")),
        KeyError::BadSignature => invalid("DPoP proof signature is invalid"),
        KeyError::UnsupportedAlg(_) | KeyError::KeyMismatch(_) => {
            invalid("DPoP proof alg does not fit its jwk")
        }
        KeyError::UnsupportedCrit(_) => invalid("DPoP proof has an unsupported crit header"),
        _ => invalid("DPoP proof is invalid"),
    })?;
    let claims = &verified.claims;

    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or_else(|| invalid("DPoP proof jti is invalid"))?;
    let htm = claims
        .get("htm")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("DPoP proof htm is invalid"))?;
    if htm != check.htm {
        return Err(invalid("DPoP proof htm does not match the request method"));
    }
    let htu = claims
        .get("htu")
        .and_then(Value::as_str)
        .and_then(normalize_htu)
        .ok_or_else(|| invalid("DPoP proof htu is invalid"))?;
    if Some(htu) != normalize_htu(check.htu) {
        return Err(invalid("DPoP proof htu does not match the request URL"));
    }
    let iat = claims
        .get("iat")
        .and_then(|v| {
            v.as_i64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
        })
        .ok_or_else(|| invalid("DPoP proof iat is not a NumericDate"))?;
    let window = policy.dpop_iat_window_secs.max(MIN_IAT_WINDOW_SECS);
    if iat < now.saturating_sub(window) || iat > now.saturating_add(window) {
        return Err(invalid("DPoP proof iat is outside the acceptable window"));
    }
    if let Some(token) = check.access_token {
        let ath = claims
            .get("ath")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("DPoP proof has no ath claim"))?;
        if !constant_time_eq(ath.as_bytes(), sha256_b64url(token.as_bytes()).as_bytes()) {
            return Err(invalid("DPoP proof ath does not match the access token"));
        }
    }
    if check.nonce_required {
        let ok = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| nonces.is_valid(n, now));
        if !ok {
            return Err(OAuthError::new(
                ErrorCode::UseDpopNonce,
                "a DPoP nonce from the server is required",
            )
            .with_dpop_nonce(nonces.current_at(now)));
        }
    }
    let jkt = jwk_thumbprint(jwk_json).map_err(|_| invalid("DPoP proof jwk is not usable"))?;
    // RFC 9449 §11.1: a jti is single-use for as long as its iat is
    // acceptable; keyed by the key so clients cannot collide.
    let first_use = store
        .consume_once(
            ReplayKind::DpopProof,
            &format!("{jkt}:{jti}"),
            iat.saturating_add(window).saturating_add(1),
            now,
        )
        .await?;
    if !first_use {
        return Err(replayed());
    }
    Ok(Some(DpopProof {
        jkt,
        jti: jti.to_owned(),
        iat,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::client_auth::test_support::{MemStore, T0, TOKEN_URL, TestKey, b64, jti};
    use crate::policy::Profile;

    const SECRET: &[u8] = b"nonce-secret-nonce-secret-nonce!";

    fn policy() -> Policy {
        Policy::new("https://op.example", Profile::Fapi2)
    }

    fn claims() -> Value {
        json!({"jti": jti(), "htm": "POST", "htu": TOKEN_URL, "iat": T0})
    }

    /// A proof by `key` with its public JWK in the header.
    fn proof(key: &TestKey, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = claims();
        edit(&mut c);
        key.sign_as(key.alg(), json!({"typ": "dpop+jwt", "jwk": key.jwk}), &c)
    }

    fn check<'a>(proofs: &'a [&'a str]) -> DpopCheck<'a> {
        DpopCheck {
            proofs,
            htm: "POST",
            htu: TOKEN_URL,
            access_token: None,
            nonce_required: false,
        }
    }

    async fn verify(
        store: &MemStore,
        c: DpopCheck<'_>,
        now: i64,
    ) -> Result<Option<DpopProof>, OAuthError> {
        verify_proof(store, &policy(), &DpopNonces::new(SECRET), c, now).await
    }

    async fn verify_one(p: &str) -> Result<Option<DpopProof>, OAuthError> {
        verify(&MemStore::default(), check(&[p]), T0).await
    }

    fn code_of(r: Result<Option<DpopProof>, OAuthError>) -> &'static str {
        r.expect_err("expected a failure").code.as_str()
    }

    #[tokio::test]
    async fn valid_proofs_yield_the_key_thumbprint() {
        for key in [TestKey::ec(None), TestKey::ed(None), TestKey::rsa(None)] {
            let p = proof(&key, |c| c["jti"] = json!("j-1"));
            let got = verify_one(&p).await.unwrap().unwrap();
            assert_eq!(got.jkt, jwk_thumbprint(&key.jwk).unwrap());
            assert_eq!(got.jti, "j-1");
            assert_eq!(got.iat, T0);
        }
        assert_eq!(verify(&MemStore::default(), check(&[]), T0).await, Ok(None));
    }

    #[tokio::test]
    async fn malformed_or_duplicate_proofs() {
        let key = TestKey::ec(None);
        let p = proof(&key, |_| {});
        let q = proof(&key, |_| {});
        let err = verify(&MemStore::default(), check(&[&p, &q]), T0)
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_dpop_proof");
        assert_eq!(err.status(), 400);
        for garbage in ["", "not-a-jwt", "a.b.c", "e30.e30.", "..."] {
            assert_eq!(
                code_of(verify_one(garbage).await),
                "invalid_dpop_proof",
                "{garbage}"
            );
        }
        let huge = "a".repeat(9000);
        assert_eq!(code_of(verify_one(&huge).await), "invalid_dpop_proof");
    }

    #[tokio::test]
    async fn header_checks() {
        let key = TestKey::ec(None);
        let c = claims();
        let mut private = key.jwk.clone();
        private["d"] = json!(key.private_d);
        let cases = [
            ("typ", json!({"typ": "JWT", "jwk": key.jwk})),
            ("typ", json!({"jwk": key.jwk})),
            ("no jwk", json!({"typ": "dpop+jwt"})),
            ("private key", json!({"typ": "dpop+jwt", "jwk": private})),
            (
                "private key",
                json!({"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
            ),
            ("usable public key", json!({"typ": "dpop+jwt", "jwk": "x"})),
        ];
        for (why, header) in cases {
            let p = key.sign_as("ES256", header, &c);
            let err = verify_one(&p).await.unwrap_err();
            assert_eq!(err.code.as_str(), "invalid_dpop_proof", "{why}");
            assert!(err.description.as_deref().unwrap().contains(why), "{err}");
        }
        // Extra header members are tolerated.
        let p = key.sign_as(
            "ES256",
            json!({"typ": "dpop+jwt", "jwk": key.jwk, "x-extra": 1}),
            &c,
        );
        assert!(verify_one(&p).await.is_ok());
    }

    #[tokio::test]
    async fn refused_algorithms_and_bad_signatures() {
        let rsa = TestKey::rsa(None);
        let ec = TestKey::ec(None);
        for (key, alg) in [
            (&rsa, "RS256"),
            (&ec, "none"),
            (&ec, "HS256"),
            (&rsa, "HS256"),
        ] {
            let p = key.sign_as(alg, json!({"typ": "dpop+jwt", "jwk": key.jwk}), &claims());
            assert_eq!(code_of(verify_one(&p).await), "invalid_dpop_proof", "{alg}");
        }
        // Signed by another key than the one in the header.
        let other = TestKey::ec(None);
        let p = other.sign_as(
            "ES256",
            json!({"typ": "dpop+jwt", "jwk": ec.jwk}),
            &claims(),
        );
        let err = verify_one(&p).await.unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_dpop_proof");
        // Claims altered after signing.
        let good = proof(&ec, |_| {});
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = claims();
        c["htm"] = json!("GET");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(code_of(verify_one(&forged).await), "invalid_dpop_proof");
        // Header alg that does not fit the jwk.
        let p = ec.sign_as(
            "ES256",
            json!({"typ": "dpop+jwt", "jwk": rsa.jwk}),
            &claims(),
        );
        assert_eq!(code_of(verify_one(&p).await), "invalid_dpop_proof");
    }

    #[tokio::test]
    async fn required_claims() {
        let key = TestKey::ec(None);
        for claim in ["jti", "htm", "htu", "iat"] {
            let p = proof(&key, |c| {
                c.as_object_mut().unwrap().remove(claim);
            });
            assert_eq!(
                code_of(verify_one(&p).await),
                "invalid_dpop_proof",
                "{claim}"
            );
        }
        for (claim, v) in [
            ("jti", json!("")),
            ("jti", json!(5)),
            ("htm", json!(1)),
            ("htu", json!("not a url")),
            ("iat", json!("now")),
        ] {
            let p = proof(&key, |c| c[claim] = v.clone());
            assert_eq!(
                code_of(verify_one(&p).await),
                "invalid_dpop_proof",
                "{claim}={v}"
            );
        }
        // nbf and exp are tolerated.
        let p = proof(&key, |c| {
            c["nbf"] = json!(T0);
            c["exp"] = json!(T0 + 300);
        });
        assert!(verify_one(&p).await.is_ok());
    }

    #[tokio::test]
    async fn htm_and_htu_must_match_the_request() {
        let key = TestKey::ec(None);
        let p = proof(&key, |c| c["htm"] = json!("GET"));
        assert_eq!(code_of(verify_one(&p).await), "invalid_dpop_proof");
        let p = proof(&key, |c| c["htm"] = json!("post"));
        assert_eq!(code_of(verify_one(&p).await), "invalid_dpop_proof");
        for wrong in [
            "https://op.example/par",
            "https://op.example/token/",
            "https://other.example/token",
            "http://op.example/token",
            "https://op.example:8443/token",
        ] {
            let p = proof(&key, |c| c["htu"] = json!(wrong));
            assert_eq!(
                code_of(verify_one(&p).await),
                "invalid_dpop_proof",
                "{wrong}"
            );
        }
        for same in [
            "HTTPS://OP.EXAMPLE/token",
            "https://op.example:443/token",
            "https://op.example/token?x=1",
            "https://op.example/token#frag",
            "https://Op.Example:443/token?a=b#c",
        ] {
            let p = proof(&key, |c| c["htu"] = json!(same));
            assert!(verify_one(&p).await.is_ok(), "{same}");
        }
        // The request URL's query is ignored as well.
        let p = proof(&key, |_| {});
        let proofs = [p.as_str()];
        let c = DpopCheck {
            htu: "https://op.example/token?foo=bar",
            ..check(&proofs)
        };
        assert!(verify(&MemStore::default(), c, T0).await.is_ok());
        assert_eq!(
            normalize_htu("https://op.example"),
            Some("https://op.example/".into())
        );
        assert_eq!(normalize_htu("urn:x:y"), None);
    }

    #[tokio::test]
    async fn iat_window() {
        let key = TestKey::ec(None);
        for d in [-10, 10, -60, 60] {
            let p = proof(&key, |c| c["iat"] = json!(T0 + d));
            assert!(verify_one(&p).await.is_ok(), "iat {d:+}");
        }
        for d in [-3600, 3600, -61, 61] {
            let p = proof(&key, |c| c["iat"] = json!(T0 + d));
            assert_eq!(
                code_of(verify_one(&p).await),
                "invalid_dpop_proof",
                "iat {d:+}"
            );
        }
        // A window configured too narrow still lets ±10 s through.
        let mut narrow = policy();
        narrow.dpop_iat_window_secs = 1;
        let p = proof(&key, |c| c["iat"] = json!(T0 - 10));
        let proofs = [p.as_str()];
        let nonces = DpopNonces::new(SECRET);
        let r = verify_proof(&MemStore::default(), &narrow, &nonces, check(&proofs), T0).await;
        assert!(r.is_ok());
    }

    /// One proof with the given access token and nonce requirement.
    async fn verify_with(
        store: &MemStore,
        nonces: &DpopNonces,
        proof: &str,
        access_token: Option<&str>,
        nonce_required: bool,
        now: i64,
    ) -> Result<Option<DpopProof>, OAuthError> {
        let proofs = [proof];
        let c = DpopCheck {
            access_token,
            nonce_required,
            ..check(&proofs)
        };
        verify_proof(store, &policy(), nonces, c, now).await
    }

    #[tokio::test]
    async fn ath_binds_the_access_token() {
        let key = TestKey::ec(None);
        let n = DpopNonces::new(SECRET);
        let s = MemStore::default();
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        let ath = crate::secret::sha256_b64url(token.as_bytes());
        let missing = proof(&key, |_| {});
        assert_eq!(
            code_of(verify_with(&s, &n, &missing, Some(token), false, T0).await),
            "invalid_dpop_proof"
        );
        let wrong = proof(&key, |c| {
            c["ath"] = json!(crate::secret::sha256_b64url(b"other"))
        });
        assert_eq!(
            code_of(verify_with(&s, &n, &wrong, Some(token), false, T0).await),
            "invalid_dpop_proof"
        );
        let good = proof(&key, |c| c["ath"] = json!(ath));
        assert!(
            verify_with(&s, &n, &good, Some(token), false, T0)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn jti_is_single_use_per_key() {
        let store = MemStore::default();
        let key = TestKey::ec(None);
        let p = proof(&key, |c| c["jti"] = json!("same"));
        assert!(verify(&store, check(&[&p]), T0).await.is_ok());
        let err = verify(&store, check(&[&p]), T0 + 1).await.unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_dpop_proof");
        let again = proof(&key, |c| {
            c["jti"] = json!("same");
            c["iat"] = json!(T0 + 5);
        });
        assert_eq!(
            code_of(verify(&store, check(&[&again]), T0 + 5).await),
            "invalid_dpop_proof"
        );
        let other = TestKey::ec(None);
        let p = proof(&other, |c| c["jti"] = json!("same"));
        assert!(verify(&store, check(&[&p]), T0).await.is_ok());
    }

    #[tokio::test]
    async fn nonce_required_flow() {
        let s = MemStore::default();
        let n = DpopNonces::new(SECRET);
        let key = TestKey::ec(None);

        let first = proof(&key, |_| {});
        let err = verify_with(&s, &n, &first, None, true, T0)
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "use_dpop_nonce");
        assert_eq!(err.status(), 400);
        let nonce = err.dpop_nonce.clone().expect("DPoP-Nonce value");
        assert_eq!(nonce, n.current_at(T0));

        let retry = proof(&key, |c| c["nonce"] = json!(nonce));
        let ok = verify_with(&s, &n, &retry, None, true, T0 + 1).await;
        assert!(ok.unwrap().is_some());

        let bogus = proof(&key, |c| c["nonce"] = json!("made-up"));
        assert_eq!(
            code_of(verify_with(&s, &n, &bogus, None, true, T0).await),
            "use_dpop_nonce"
        );
        let stale = proof(&key, |c| c["nonce"] = json!(n.current_at(T0 - 3600)));
        assert_eq!(
            code_of(verify_with(&s, &n, &stale, None, true, T0).await),
            "use_dpop_nonce"
        );
        // Not required: a nonce is not looked at.
        let p = proof(&key, |c| c["nonce"] = json!("whatever"));
        assert!(verify_with(&s, &n, &p, None, false, T0).await.is_ok());
    }
}

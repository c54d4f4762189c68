//! ID Tokens (OpenID Connect Core §2, §3.1.3.6, §3.1.3.7, §5.5; FAPI 2.0
//! Security Profile §5.4, §5.3.2.1).
//!
//! The ID Token carries who authenticated and how, plus only what the client
//! asked for through the `claims` parameter: scope-based claims (`profile`,
//! `email`, …) are released at userinfo (OIDC Core §5.4), so the conformance
//! suite's "unrequested claims in id_token" warning never fires.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::issue::signing_failed;
use super::requested_claim_names;
use crate::authorization::{Authentication, GrantDetails};
use crate::client::Client;
use crate::error::OAuthError;
use crate::keys::{ClientEncrypter, JwsAlg, Keys};
use crate::policy::Policy;

/// The claim that carries the bank's consent id when the grant does not name
/// another ([`GrantDetails::consent_claim`]); UK Open Banking's intent id.
pub const DEFAULT_CONSENT_CLAIM: &str = "openbanking_intent_id";

/// Claims this module sets itself; a `claims` request or the consent app's
/// user claims can never override them.
const PROTOCOL_CLAIMS: [&str; 17] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "s_hash",
    "cnf",
    "sid",
];

/// The claim name of the consent id for this grant.
pub fn consent_claim_name(grant: &GrantDetails) -> &str {
    grant
        .consent_claim
        .as_deref()
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_CONSENT_CLAIM)
}

/// Whether `name` is set by the protocol rather than taken from user claims.
pub(crate) fn is_protocol_claim(name: &str) -> bool {
    PROTOCOL_CLAIMS.contains(&name)
}

/// Everything an ID Token is made of.
#[derive(Debug, Clone, Copy)]
pub struct IdTokenInput<'a> {
    /// The audience (OIDC Core §2 `aud`) and the source of the signing
    /// algorithm (`id_token_signed_response_alg`).
    pub client: &'a Client,
    pub authentication: &'a Authentication,
    /// The authorization request's `nonce`; `None` on refresh (OIDC Core
    /// §12.2) and when the request had none (§3.1.3.6: no `nonce` claim then).
    pub nonce: Option<&'a str>,
    /// The access token issued alongside, for `at_hash` (OIDC Core §3.3.2.11).
    pub access_token: Option<&'a str>,
    /// The `claims` request and the user's released claims.
    pub grant: &'a GrantDetails,
    /// The bank's consent id, written under [`consent_claim_name`].
    pub consent_id: Option<&'a str>,
    /// Claims from the token-claims hook ([`super::claims`]); protocol
    /// claims and the consent claim among them are ignored.
    pub extra_claims: Option<&'a Map<String, Value>>,
    /// Set for the id_token of the hybrid flow's authorization response.
    pub front_channel: Option<FrontChannel<'a>>,
    /// The client's encryption key, when it registered
    /// `id_token_encrypted_response_alg` (resolved by the caller, before
    /// anything one-time is spent): the signed token is then the payload
    /// of a JWE to it (OIDC Core §10.2, nested JWT).
    pub encrypter: Option<&'a ClientEncrypter>,
}

/// What the id_token of an authorization response (OIDC Core §3.3.2.11;
/// FAPI 1.0 Advanced §5.2.2.1) hashes: the code it travels with
/// (`c_hash`) and the `state` (`s_hash`, absent without a state). A
/// detached signature over both, so that neither can be swapped in the
/// browser.
#[derive(Debug, Clone, Copy)]
pub struct FrontChannel<'a> {
    pub code: &'a str,
    pub state: Option<&'a str>,
}

/// The client's `id_token_signed_response_alg` (OIDC Dynamic Registration
/// §2), PS256 when unset.
pub fn id_token_alg(client: &Client) -> Result<JwsAlg, OAuthError> {
    match client.metadata.id_token_signed_response_alg.as_deref() {
        None => Ok(JwsAlg::PS256),
        Some(alg) => JwsAlg::parse(alg).map_err(|e| {
            // Registration validates the value, so this is a stored record gone bad.
            tracing::error!(client_id = %client.id(), error = %e, "unusable id_token_signed_response_alg");
            OAuthError::server_error()
        }),
    }
}

/// OIDC Core §3.3.2.11 `at_hash` (and `c_hash`, and FAPI 1.0 Advanced
/// §5.2.2.1 `s_hash`, likewise): the left-most half of the hash of the
/// ASCII value, base64url. The hash is the
/// one of the JWS algorithm: SHA-256 for PS256 and ES256; SHA-512 for
/// Ed25519, as the OpenID conformance suite computes it for EdDSA.
pub fn at_hash(token: &str, alg: JwsAlg) -> String {
    let algorithm = match alg {
        JwsAlg::PS256 | JwsAlg::ES256 => &digest::SHA256,
        JwsAlg::EdDSA => &digest::SHA512,
    };
    let d = digest::digest(algorithm, token.as_bytes());
    let bytes = d.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// The claims of an ID Token signed with `alg` at `now` (OIDC Core §2,
/// §3.1.3.6, §5.5). `sub` is the customer as the client is shown it
/// ([`crate::subject::client_subject`]).
pub fn id_token_claims(
    policy: &Policy,
    input: &IdTokenInput<'_>,
    alg: JwsAlg,
    now: i64,
) -> Result<Map<String, Value>, OAuthError> {
    let auth = input.authentication;
    let sub = crate::subject::client_subject(policy, input.client, &auth.sub, input.consent_id)?;
    let mut claims = Map::new();
    claims.insert("iss".into(), policy.issuer.clone().into());
    claims.insert("sub".into(), sub.into());
    claims.insert("aud".into(), input.client.id().into());
    claims.insert("exp".into(), (now + policy.id_token_lifetime_secs).into());
    claims.insert("iat".into(), now.into());
    claims.insert("auth_time".into(), auth.auth_time.into());
    if let Some(nonce) = input.nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    if let Some(acr) = &auth.acr {
        claims.insert("acr".into(), acr.clone().into());
    }
    if !auth.amr.is_empty() {
        claims.insert("amr".into(), auth.amr.clone().into());
    }
    if let Some(token) = input.access_token {
        claims.insert("at_hash".into(), at_hash(token, alg).into());
    }
    if let Some(fc) = input.front_channel {
        claims.insert("c_hash".into(), at_hash(fc.code, alg).into());
        if let Some(state) = fc.state {
            claims.insert("s_hash".into(), at_hash(state, alg).into());
        }
    }
    let consent_claim = consent_claim_name(input.grant);
    for name in requested_claim_names(input.grant.claims_request.as_ref(), "id_token") {
        if is_protocol_claim(name) || name == consent_claim {
            continue;
        }
        if let Some(v) = input.grant.user_claims.get(name) {
            claims.insert(name.to_owned(), v.clone());
        }
    }
    for (name, v) in input.extra_claims.into_iter().flatten() {
        if !is_protocol_claim(name) && name != consent_claim {
            claims.insert(name.clone(), v.clone());
        }
    }
    if let Some(consent_id) = input.consent_id {
        claims.insert(consent_claim.to_owned(), consent_id.into());
    }
    Ok(claims)
}

/// Signs an ID Token for the client (JWS `typ` `JWT`, OIDC Core §2) with its
/// `id_token_signed_response_alg`, and encrypts it to the client's key when
/// it registered `id_token_encrypted_response_alg` (OIDC Core §10.2: signed,
/// then encrypted). A client that registered encryption never gets the
/// token in clear: without the encrypter this is a server error.
pub fn issue_id_token(
    keys: &Keys,
    policy: &Policy,
    input: &IdTokenInput<'_>,
    now: i64,
) -> Result<String, OAuthError> {
    let alg = id_token_alg(input.client)?;
    let claims = id_token_claims(policy, input, alg, now)?;
    let signed = keys
        .sign(alg, Some("JWT"), &claims)
        .map_err(signing_failed)?;
    match (input.encrypter, input.client.metadata.id_token_encryption()) {
        (Some(e), Some(_)) => e.encrypt_jwt(&signed).map_err(signing_failed),
        (None, None) => Ok(signed),
        (Some(_), None) | (None, Some(_)) => {
            tracing::error!(client_id = %input.client.id(), "id_token encryption not resolved for the client's registration");
            Err(OAuthError::server_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::{T0, fixture, kek};
    use crate::keys::{KeySet, VerifyOptions, peek_header};
    use serde_json::json;

    const ISSUER: &str = "https://op.example";

    fn keys() -> Keys {
        Keys::new(KeySet::build(fixture().records(), &kek(), T0).unwrap())
    }

    fn client(alg: Option<&str>) -> Client {
        let mut m = json!({
            "client_id": "tpp-1",
            "redirect_uris": ["https://tpp.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": []},
        });
        if let Some(alg) = alg {
            m["id_token_signed_response_alg"] = alg.into();
        }
        Client::new(serde_json::from_value(m).unwrap(), None).unwrap()
    }

    fn auth() -> Authentication {
        Authentication {
            sub: "user-1".into(),
            auth_time: T0 - 30,
            acr: Some("urn:openbanking:psd2:sca".into()),
            amr: vec!["pwd".into(), "otp".into()],
        }
    }

    fn grant() -> GrantDetails {
        serde_json::from_value(json!({
            "claims_request": {
                "id_token": {
                    "email": null,
                    "openbanking_intent_id": {"essential": true, "value": "intent-1"},
                    "sub": {"value": "someone-else"},
                    "acr": {"essential": true},
                    "given_name": null
                },
                "userinfo": {"name": null}
            },
            "user_claims": {"email": "ada@example.com", "name": "Ada", "sub": "spoofed"}
        }))
        .unwrap()
    }

    fn policy() -> Policy {
        Policy::new(ISSUER, crate::policy::Profile::Fapi2)
    }

    #[test]
    fn at_hash_matches_oidc_core_appendix_a3() {
        // OIDC Core Appendix A.3 example: access token and its at_hash.
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(at_hash(token, JwsAlg::PS256), "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(at_hash(token, JwsAlg::ES256), "77QmUPtjPfzWtF2AnpK9RQ");
        // Left half of SHA-512, computed independently (Python hashlib).
        assert_eq!(
            at_hash(token, JwsAlg::EdDSA),
            "q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM"
        );
    }

    #[test]
    fn front_channel_id_token_hashes_code_and_state() {
        // OIDC Core Appendix A.4: the code and its c_hash.
        let code = "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk";
        let (c, a, g) = (client(None), auth(), grant());
        let mut input = IdTokenInput {
            client: &c,
            authentication: &a,
            nonce: Some("n-0S6_WzA2Mj"),
            access_token: None,
            grant: &g,
            consent_id: Some("intent-1"),
            extra_claims: None,
            front_channel: Some(FrontChannel {
                code,
                state: Some("af0ifjsldkj"),
            }),
            encrypter: None,
        };
        let claims = id_token_claims(&policy(), &input, JwsAlg::PS256, T0).unwrap();
        assert_eq!(claims["c_hash"], json!("LDktKdoQak3Pk0cnXxCltA"));
        // Left half of SHA-256("af0ifjsldkj"), computed independently
        // (Python hashlib).
        assert_eq!(claims["s_hash"], json!("bOhtX8F73IMjSPeVAqxyTQ"));
        assert_eq!(claims["nonce"], json!("n-0S6_WzA2Mj"));
        assert_eq!(claims["openbanking_intent_id"], json!("intent-1"));
        assert!(!claims.contains_key("at_hash"));
        input.front_channel = Some(FrontChannel { code, state: None });
        let claims = id_token_claims(&policy(), &input, JwsAlg::ES256, T0).unwrap();
        assert_eq!(claims["c_hash"], json!("LDktKdoQak3Pk0cnXxCltA"));
        assert!(!claims.contains_key("s_hash"), "no state, no s_hash");
    }

    #[test]
    fn claims_carry_authentication_and_only_requested_user_claims() {
        let (c, a, g) = (client(None), auth(), grant());
        let input = IdTokenInput {
            client: &c,
            authentication: &a,
            nonce: Some("n-0S6_WzA2Mj"),
            access_token: Some("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            grant: &g,
            consent_id: Some("intent-1"),
            extra_claims: None,
            front_channel: None,
            encrypter: None,
        };
        let claims = Value::Object(id_token_claims(&policy(), &input, JwsAlg::PS256, T0).unwrap());
        assert_eq!(
            claims,
            json!({
                "iss": ISSUER,
                "sub": "user-1",
                "aud": "tpp-1",
                "exp": T0 + 600,
                "iat": T0,
                "auth_time": T0 - 30,
                "nonce": "n-0S6_WzA2Mj",
                "acr": "urn:openbanking:psd2:sca",
                "amr": ["pwd", "otp"],
                "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
                "email": "ada@example.com",
                "openbanking_intent_id": "intent-1",
            })
        );
    }

    #[test]
    fn no_nonce_no_access_token_no_consent_means_no_such_claims() {
        let (c, g) = (client(None), GrantDetails::default());
        let a = Authentication {
            acr: None,
            amr: vec![],
            ..auth()
        };
        let input = IdTokenInput {
            client: &c,
            authentication: &a,
            nonce: None,
            access_token: None,
            grant: &g,
            consent_id: None,
            extra_claims: None,
            front_channel: None,
            encrypter: None,
        };
        let claims = id_token_claims(&policy(), &input, JwsAlg::PS256, T0).unwrap();
        for absent in ["nonce", "at_hash", "acr", "amr", "openbanking_intent_id"] {
            assert!(!claims.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn consent_claim_name_is_configurable() {
        let c = client(None);
        let a = auth();
        let g = GrantDetails {
            consent_claim: Some("consent_id".into()),
            ..GrantDetails::default()
        };
        let input = IdTokenInput {
            client: &c,
            authentication: &a,
            nonce: None,
            access_token: None,
            grant: &g,
            consent_id: Some("c-9"),
            extra_claims: None,
            front_channel: None,
            encrypter: None,
        };
        let claims = id_token_claims(&policy(), &input, JwsAlg::PS256, T0).unwrap();
        assert_eq!(claims["consent_id"], "c-9");
        assert!(!claims.contains_key(DEFAULT_CONSENT_CLAIM));
    }

    #[test]
    fn signed_with_the_clients_alg_and_verifiable() {
        let keys = keys();
        let a = auth();
        let g = grant();
        for (alg, expected) in [(None, "PS256"), (Some("ES256"), "ES256")] {
            let c = client(alg);
            let input = IdTokenInput {
                client: &c,
                authentication: &a,
                nonce: None,
                access_token: None,
                grant: &g,
                consent_id: None,
                extra_claims: None,
                front_channel: None,
                encrypter: None,
            };
            let jwt = issue_id_token(&keys, &policy(), &input, T0).unwrap();
            let header = peek_header(&jwt).unwrap();
            assert_eq!(header["alg"], expected);
            assert_eq!(header["typ"], "JWT");
            let claims = keys
                .verify_own(
                    &jwt,
                    &VerifyOptions::new(T0)
                        .typ("JWT")
                        .issuer(ISSUER)
                        .audience(["tpp-1"]),
                )
                .unwrap();
            assert_eq!(claims["sub"], "user-1");
        }
    }

    /// OIDC Core §10.2: signed, then encrypted to the client's `use: enc`
    /// key (here the fixture's, whose private half `Keys` holds to open it).
    #[test]
    fn encrypted_to_the_clients_key_when_it_registered_encryption() {
        let keys = keys();
        let f = fixture();
        let (a, g) = (auth(), grant());
        let enc_jwk: Value = serde_json::from_str(&f.enc.public_jwk).unwrap();
        let mut m = client(None).metadata;
        m.jwks = Some(json!({"keys": [enc_jwk]}));
        m.id_token_encrypted_response_alg = Some("RSA-OAEP-256".into());
        m.id_token_encrypted_response_enc = Some("A256GCM".into());
        let c = Client::new(m, None).unwrap();
        let encrypter = ClientEncrypter::from_jwks(
            c.metadata.jwks.as_ref().unwrap(),
            "RSA-OAEP-256",
            "A256GCM",
        )
        .unwrap()
        .unwrap();
        let mut input = IdTokenInput {
            client: &c,
            authentication: &a,
            nonce: Some("n-1"),
            access_token: None,
            grant: &g,
            consent_id: Some("intent-1"),
            extra_claims: None,
            front_channel: None,
            encrypter: Some(&encrypter),
        };
        let jwe = issue_id_token(&keys, &policy(), &input, T0).unwrap();
        assert_eq!(jwe.split('.').count(), 5, "a compact JWE");
        let header = crate::userinfo::tests::jwe_header(&jwe);
        assert_eq!(
            (
                &header["alg"],
                &header["enc"],
                &header["cty"],
                &header["kid"]
            ),
            (
                &json!("RSA-OAEP-256"),
                &json!("A256GCM"),
                &json!("JWT"),
                &json!(f.enc.kid)
            )
        );
        let inner = String::from_utf8(keys.decrypt(&jwe).unwrap()).unwrap();
        let claims = keys
            .verify_own(
                &inner,
                &VerifyOptions::new(T0)
                    .typ("JWT")
                    .issuer(ISSUER)
                    .audience(["tpp-1"]),
            )
            .unwrap();
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["openbanking_intent_id"], "intent-1");
        // Never in clear for a client that registered encryption, and
        // never encrypted for one that did not.
        input.encrypter = None;
        assert_eq!(
            issue_id_token(&keys, &policy(), &input, T0)
                .unwrap_err()
                .code,
            crate::error::ErrorCode::ServerError
        );
        let plain = client(None);
        input.client = &plain;
        input.encrypter = Some(&encrypter);
        assert_eq!(
            issue_id_token(&keys, &policy(), &input, T0)
                .unwrap_err()
                .code,
            crate::error::ErrorCode::ServerError
        );
    }
}

//! Minting access and refresh tokens (RFC 6749 §1.4, §1.5; RFC 9068).
//!
//! Issuing is pure: it produces the value for the client and the record for
//! the store, and the grant handlers persist the records in one call
//! (`put_tokens` / `rotate_refresh`), so nothing is stored for a response
//! that is never sent.

use std::fmt;

use serde_json::{Map, Value, json};

use super::{TokenDetails, token_type};
use crate::authorization::Confirmation;
use crate::error::OAuthError;
use crate::keys::{JwsAlg, KeyError, Keys};
use crate::policy::{AccessTokenFormat, Policy};
use crate::secret::{hash_secret, new_secret, random_token};
use crate::storage::{TokenKind, TokenRecord};

/// RFC 9068 §2.1 media type of JWT access tokens.
pub const ACCESS_TOKEN_JWT_TYP: &str = "at+jwt";

/// What a token is issued for: the columns of its record and the data
/// introspection reports.
#[derive(Debug, Clone, Copy)]
pub struct TokenContext<'a> {
    pub client_id: &'a str,
    /// `None` for client-credentials tokens, which hang off no user grant.
    pub grant_id: Option<&'a str>,
    /// The end-user; `None` for client credentials.
    pub sub: Option<&'a str>,
    /// Space-delimited scope (RFC 6749 §3.3).
    pub scope: &'a str,
    /// RFC 9449 §6.1 / RFC 8705 §3.1 confirmation.
    pub cnf: &'a Confirmation,
    pub details: &'a TokenDetails,
}

/// A freshly minted token: the value handed to the client once, and the
/// record that keeps only its hash.
#[derive(Clone)]
pub struct IssuedToken {
    pub value: String,
    pub record: TokenRecord,
    /// Seconds until it expires (RFC 6749 §5.1 `expires_in`).
    pub expires_in: i64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value is a bearer credential until it is bound; keep it out of logs.
        f.debug_struct("IssuedToken")
            .field("value", &"<redacted>")
            .field("record", &self.record)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

fn record(
    value: &str,
    kind: TokenKind,
    ctx: &TokenContext<'_>,
    details: String,
    now: i64,
    expires_in: i64,
) -> TokenRecord {
    TokenRecord {
        token_hash: hash_secret(value),
        kind,
        client_id: ctx.client_id.to_owned(),
        grant_id: ctx.grant_id.map(str::to_owned),
        sub: ctx.sub.map(str::to_owned),
        scope: ctx.scope.to_owned(),
        cnf_jkt: ctx.cnf.jkt.clone(),
        cnf_x5t: ctx.cnf.x5t_s256.clone(),
        details,
        created_at: now,
        expires_at: now + expires_in,
        revoked_at: None,
    }
}

fn details_json(details: &TokenDetails) -> Result<String, OAuthError> {
    serde_json::to_string(details).map_err(|e| {
        tracing::error!(error = %e, "token details do not serialise");
        OAuthError::server_error()
    })
}

/// Maps a signing failure to `server_error`, keeping the detail in the log.
pub(crate) fn signing_failed(e: KeyError) -> OAuthError {
    tracing::error!(error = %e, "signing failed");
    OAuthError::server_error()
}

/// Our own signing algorithm for JWT access tokens: PS256 (FAPI 2.0 §5.4),
/// or the first one we hold if a deployment runs without an RSA key.
fn access_token_alg(keys: &Keys) -> Result<JwsAlg, OAuthError> {
    let algs = keys.signing_algs();
    if algs.contains(&JwsAlg::PS256) {
        return Ok(JwsAlg::PS256);
    }
    algs.first()
        .copied()
        .ok_or_else(|| signing_failed(KeyError::NoSigningKey(JwsAlg::PS256)))
}

/// The RFC 9068 §2.2 claims of a JWT access token.
fn jwt_claims(policy: &Policy, ctx: &TokenContext<'_>, now: i64, exp: i64) -> Value {
    let mut claims = Map::new();
    claims.insert("iss".into(), policy.issuer.clone().into());
    // RFC 9068 §2.2: without an end-user, `sub` identifies the client.
    // The end-user as the client is shown it (crate::subject).
    let sub = ctx.details.subject.as_deref().or(ctx.sub);
    claims.insert("sub".into(), sub.unwrap_or(ctx.client_id).into());
    claims.insert("aud".into(), policy.issuer.clone().into());
    claims.insert("exp".into(), exp.into());
    claims.insert("iat".into(), now.into());
    claims.insert("jti".into(), random_token(16).into());
    claims.insert("client_id".into(), ctx.client_id.into());
    claims.insert("scope".into(), ctx.scope.into());
    if !ctx.cnf.is_empty() {
        claims.insert("cnf".into(), json!(ctx.cnf));
    }
    let d = ctx.details;
    if let Some(t) = d.auth_time {
        claims.insert("auth_time".into(), t.into());
    }
    if let Some(acr) = &d.acr {
        claims.insert("acr".into(), acr.clone().into());
    }
    if let Some(c) = &d.consent_id {
        claims.insert("consent_id".into(), c.clone().into());
    }
    if let Some(ad) = &d.authorization_details {
        claims.insert("authorization_details".into(), ad.clone());
    }
    Value::Object(claims)
}

/// Mints an access token (RFC 6749 §1.4) valid for
/// `policy.access_token_lifetime_secs`.
///
/// Opaque tokens are 256 random bits, base64url (RFC 6749 A.12 VSCHAR). With
/// [`AccessTokenFormat::Jwt`] the token is an RFC 9068 JWT (`typ` `at+jwt`),
/// signed once here; it is stored hashed all the same, so revocation and
/// introspection treat both formats alike.
pub fn issue_access_token(
    keys: &Keys,
    policy: &Policy,
    ctx: &TokenContext<'_>,
    now: i64,
) -> Result<IssuedToken, OAuthError> {
    let expires_in = policy.access_token_lifetime_secs;
    let mut details = ctx.details.clone();
    details.token_type = Some(token_type(ctx.cnf).to_owned());
    let value = match policy.access_token_format {
        AccessTokenFormat::Opaque => new_secret(),
        AccessTokenFormat::Jwt => {
            details.format = Some("jwt".into());
            let alg = access_token_alg(keys)?;
            let claims = jwt_claims(policy, ctx, now, now + expires_in);
            keys.sign(alg, Some(ACCESS_TOKEN_JWT_TYP), &claims)
                .map_err(signing_failed)?
        }
    };
    let details = details_json(&details)?;
    let record = record(&value, TokenKind::Access, ctx, details, now, expires_in);
    Ok(IssuedToken {
        value,
        record,
        expires_in,
    })
}

/// Mints a refresh token (RFC 6749 §1.5): 256 random bits, stored hashed,
/// valid for `policy.refresh_token_lifetime_secs`, carrying the
/// confirmation of `ctx` (the grant decides it: none for confidential
/// clients, RFC 9449 §5).
pub fn issue_refresh_token(
    policy: &Policy,
    ctx: &TokenContext<'_>,
    now: i64,
) -> Result<IssuedToken, OAuthError> {
    let expires_in = policy.refresh_token_lifetime_secs;
    let value = new_secret();
    let mut details = ctx.details.clone();
    details.token_type = None;
    details.format = None;
    let details = details_json(&details)?;
    let record = record(&value, TokenKind::Refresh, ctx, details, now, expires_in);
    Ok(IssuedToken {
        value,
        record,
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::{T0, fixture, kek};
    use crate::keys::{KeySet, VerifyOptions, peek_header};
    use crate::policy::Profile;

    const ISSUER: &str = "https://op.example";

    fn keys() -> Keys {
        Keys::new(KeySet::build(fixture().records(), &kek(), T0).unwrap())
    }

    fn details() -> TokenDetails {
        TokenDetails {
            consent_id: Some("intent-1".into()),
            acr: Some("urn:openbanking:psd2:sca".into()),
            auth_time: Some(T0 - 5),
            authorization_details: Some(serde_json::json!([{"type": "account_information"}])),
            ..TokenDetails::default()
        }
    }

    #[test]
    fn opaque_access_tokens_are_random_and_stored_hashed() {
        let policy = Policy::new(ISSUER, Profile::Fapi2);
        let cnf = Confirmation {
            jkt: Some("jkt-1".into()),
            x5t_s256: None,
        };
        let d = details();
        let ctx = TokenContext {
            client_id: "tpp-1",
            grant_id: Some("g-1"),
            sub: Some("user-1"),
            scope: "openid accounts",
            cnf: &cnf,
            details: &d,
        };
        let a = issue_access_token(&keys(), &policy, &ctx, T0).unwrap();
        let b = issue_access_token(&keys(), &policy, &ctx, T0).unwrap();
        assert_ne!(a.value, b.value);
        assert_eq!(a.value.len(), 54, "clock digits + 256 random bits");
        assert_ne!(a.value[11..], b.value[11..]);
        assert!(
            a.value
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        let r = &a.record;
        assert_eq!(r.token_hash, hash_secret(&a.value));
        assert_eq!(r.kind, TokenKind::Access);
        assert_eq!(r.expires_at, T0 + policy.access_token_lifetime_secs);
        assert_eq!(a.expires_in, policy.access_token_lifetime_secs);
        assert_eq!(r.cnf_jkt.as_deref(), Some("jkt-1"));
        assert_eq!(r.grant_id.as_deref(), Some("g-1"));
        let stored: TokenDetails = serde_json::from_str(&r.details).unwrap();
        assert_eq!(stored.token_type.as_deref(), Some("DPoP"));
        assert_eq!(stored.consent_id.as_deref(), Some("intent-1"));
        assert_eq!(stored.format, None);
        assert!(!format!("{a:?}").contains(&a.value));
    }

    #[test]
    fn jwt_access_tokens_follow_rfc9068() {
        let mut policy = Policy::new(ISSUER, Profile::Fapi2);
        policy.access_token_format = AccessTokenFormat::Jwt;
        let cnf = Confirmation {
            jkt: None,
            x5t_s256: Some("x5t-1".into()),
        };
        let d = details();
        let keys = keys();
        let ctx = TokenContext {
            client_id: "tpp-1",
            grant_id: None,
            sub: None,
            scope: "accounts",
            cnf: &cnf,
            details: &d,
        };
        let t = issue_access_token(&keys, &policy, &ctx, T0).unwrap();
        let header = peek_header(&t.value).unwrap();
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "PS256");
        let claims = keys
            .verify_own(
                &t.value,
                &VerifyOptions::new(T0)
                    .typ("at+jwt")
                    .issuer(ISSUER)
                    .audience([ISSUER]),
            )
            .unwrap();
        assert_eq!(
            claims["sub"], "tpp-1",
            "client credentials: sub is the client"
        );
        assert_eq!(claims["client_id"], "tpp-1");
        assert_eq!(claims["scope"], "accounts");
        assert_eq!(claims["exp"], T0 + policy.access_token_lifetime_secs);
        assert_eq!(claims["iat"], T0);
        assert_eq!(claims["cnf"]["x5t#S256"], "x5t-1");
        assert_eq!(claims["consent_id"], "intent-1");
        assert_eq!(claims["acr"], "urn:openbanking:psd2:sca");
        assert_eq!(
            claims["authorization_details"][0]["type"],
            "account_information"
        );
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 22));
        assert_eq!(t.record.token_hash, hash_secret(&t.value));
        let stored: TokenDetails = serde_json::from_str(&t.record.details).unwrap();
        assert_eq!(stored.format.as_deref(), Some("jwt"));
        assert_eq!(stored.token_type.as_deref(), Some("Bearer"));
    }

    #[test]
    fn refresh_tokens_carry_the_binding_and_their_own_lifetime() {
        let policy = Policy::new(ISSUER, Profile::Fapi2);
        let cnf = Confirmation {
            jkt: Some("jkt-1".into()),
            x5t_s256: None,
        };
        let d = details();
        let ctx = TokenContext {
            client_id: "tpp-1",
            grant_id: Some("g-1"),
            sub: Some("user-1"),
            scope: "openid accounts",
            cnf: &cnf,
            details: &d,
        };
        let r = issue_refresh_token(&policy, &ctx, T0).unwrap();
        assert_eq!(r.record.kind, TokenKind::Refresh);
        assert_eq!(r.record.token_hash, hash_secret(&r.value));
        assert_eq!(r.record.expires_at, T0 + policy.refresh_token_lifetime_secs);
        assert_eq!(r.record.cnf_jkt.as_deref(), Some("jkt-1"));
        let stored: TokenDetails = serde_json::from_str(&r.record.details).unwrap();
        assert_eq!(stored.token_type, None);
    }
}

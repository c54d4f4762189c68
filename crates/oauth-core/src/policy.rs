//! The policy bundle: one profile switch turns on a whole set of rules.

use serde::{Deserialize, Serialize};

/// Which specification profile the provider enforces: the deployment's
/// default (`profile` in the configuration), or a client's own
/// (`fapi_profile` client metadata, [`Policy::profile_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Profile {
    /// FAPI 2.0 Security Profile (final): PAR required, PKCE S256, `aud` of
    /// client assertions exactly the issuer, sender-constrained tokens.
    #[default]
    #[serde(rename = "fapi2")]
    Fapi2,
    /// FAPI 2.0 Message Signing: as FAPI 2.0, plus signed request objects
    /// at PAR.
    #[serde(rename = "fapi2-message-signing")]
    Fapi2MessageSigning,
    /// FAPI 1.0 Advanced (final): client assertion `aud` may also be the
    /// token or PAR endpoint URL or an array containing the issuer.
    #[serde(rename = "fapi1-advanced")]
    Fapi1Advanced,
    /// UK Open Banking security profile (FAPI 1.0 Advanced rules, intents).
    #[serde(rename = "uk-ob")]
    UkOpenBanking,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Fapi2,
        Profile::Fapi2MessageSigning,
        Profile::Fapi1Advanced,
        Profile::UkOpenBanking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Fapi2 => "fapi2",
            Profile::Fapi2MessageSigning => "fapi2-message-signing",
            Profile::Fapi1Advanced => "fapi1-advanced",
            Profile::UkOpenBanking => "uk-ob",
        }
    }

    /// FAPI 2.0 §5.3.2.1 rule set (vs. FAPI 1.0 Advanced).
    pub fn is_fapi2(self) -> bool {
        matches!(self, Profile::Fapi2 | Profile::Fapi2MessageSigning)
    }

    /// Whether FAPI clients may authenticate with this method here. The UK
    /// Open Banking profile knows `private_key_jwt` and `tls_client_auth`
    /// only (its DCR rules refuse `self_signed_tls_client_auth`, and its
    /// TPPs' discovery parsers do not expect it).
    pub fn allows_fapi_auth_method(self, m: crate::client::AuthMethod) -> bool {
        !(self == Profile::UkOpenBanking && m == crate::client::AuthMethod::SelfSignedTlsClientAuth)
    }

    /// Whether DPoP (RFC 9449) binds tokens here. The UK Open Banking
    /// profile binds them to the client certificate only (RFC 8705; FAPI
    /// 1.0 Advanced §5.2.2-5, 6) and its TPPs know no DPoP, so neither
    /// discovery's `dpop_signing_alg_values_supported` nor DPoP proofs,
    /// `dpop_jkt` or `dpop_bound_access_tokens` exist under it.
    pub fn offers_dpop(self) -> bool {
        self != Profile::UkOpenBanking
    }

    /// The algorithms our own keys sign with for this profile's relying
    /// parties (id_tokens, JARM responses, JWT access tokens), and so the
    /// signing keys its view of the JWKS publishes. UK Open Banking: PS256
    /// only — the OB security profile's algorithm, and its TPPs' JWKS
    /// parsers take RSA keys only (an EC key breaks Open Banking
    /// Connector's). FAPI 1.0 Advanced §8.6 and FAPI 2.0 §5.4 also allow
    /// ES256.
    pub fn own_signing_algs(self) -> &'static [crate::keys::JwsAlg] {
        use crate::keys::JwsAlg;
        match self {
            Profile::UkOpenBanking => &[JwsAlg::PS256],
            _ => &[JwsAlg::PS256, JwsAlg::ES256],
        }
    }

    /// Key-management algorithms of encrypted request objects (discovery's
    /// `request_object_encryption_alg_values_supported`), each to the
    /// `use: enc` key of ours published for it. Under UK Open Banking the
    /// JWKS cannot name an encryption key's `alg` (see
    /// [`Profile::names_encryption_key_alg`]), so one key stands for one
    /// algorithm: RSA-OAEP-256.
    pub fn request_object_encryption_algs(self) -> &'static [&'static str] {
        match self {
            Profile::UkOpenBanking => &["RSA-OAEP-256"],
            _ => &crate::keys::decrypt::JWE_ALGS,
        }
    }

    /// Whether this profile's view of the JWKS carries the `alg` of our
    /// encryption keys (RFC 7517 §4.4, optional). Not under UK Open
    /// Banking: its TPPs parse `alg` as a JWS algorithm (Open Banking
    /// Connector knows PS256 and RS256 only) and fail on the whole JWKS at
    /// `RSA-OAEP-256`; the key is still marked `use: enc`.
    pub fn names_encryption_key_alg(self) -> bool {
        self != Profile::UkOpenBanking
    }

    /// Whether this profile's view of the JWKS publishes our key of `alg`
    /// (the keys it signs or decrypts with, [`Profile::own_signing_algs`],
    /// [`Profile::request_object_encryption_algs`]).
    pub fn publishes_key(self, alg: crate::keys::ProviderAlg) -> bool {
        match alg.signing() {
            Some(jws) => self.own_signing_algs().contains(&jws),
            None => self
                .request_object_encryption_algs()
                .contains(&alg.as_str()),
        }
    }

    /// RFC 9126 §5 `require_pushed_authorization_requests`: FAPI 2.0
    /// §5.3.2.2-2 requires PAR; FAPI 1.0 Advanced also takes the request
    /// object by value at the authorization endpoint (§5.2.2-1).
    pub fn requires_par(self) -> bool {
        self.is_fapi2()
    }

    /// Whether every authorization request must be a signed request object:
    /// FAPI 2.0 Message Signing §5.3.1; FAPI 1.0 Advanced §5.2.2-1 (by
    /// value or pushed).
    pub fn requires_signed_request_object(self) -> bool {
        self != Profile::Fapi2
    }

    /// The `response_type` values served (OIDC Discovery §3
    /// `response_types_supported`). FAPI 2.0 §5.3.2.2-1: `code` only.
    /// FAPI 1.0 Advanced §5.2.2-2: `code id_token`, or `code` with JARM.
    /// UK Open Banking: its TPPs use the hybrid flow and the OIDF UK variant
    /// forbids JARM, so `code id_token` only.
    pub fn response_types(self) -> &'static [&'static str] {
        match self {
            Profile::Fapi2 | Profile::Fapi2MessageSigning => &["code"],
            Profile::Fapi1Advanced => &["code id_token", "code"],
            Profile::UkOpenBanking => &["code id_token"],
        }
    }

    /// The `response_mode` values served (OAuth 2.0 Multiple Response Types
    /// §2.1, Form Post Response Mode §2, JARM §2.3): exactly what
    /// [`Profile::response_types`] can be answered with. `query` is not
    /// offered under FAPI 1.0: `code` there needs JARM, and a response
    /// with an id_token must not travel in the query (OAuth 2.0 Multiple
    /// Response Types §5).
    pub fn response_modes(self) -> &'static [&'static str] {
        match self {
            Profile::Fapi2 | Profile::Fapi2MessageSigning => &["query", "jwt", "query.jwt"],
            Profile::Fapi1Advanced => &["fragment", "form_post", "jwt", "query.jwt"],
            Profile::UkOpenBanking => &["fragment", "form_post"],
        }
    }
}

/// How access tokens look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessTokenFormat {
    /// Random, stored hashed; checked by introspection.
    #[default]
    Opaque,
    /// RFC 9068 JWT, signed once, also stored hashed (so it can be revoked).
    Jwt,
}

/// Everything the protocol code needs to know about the deployment, derived
/// once from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub profile: Profile,
    /// RFC 9126 §2.2 `expires_in` of a request URI.
    pub par_lifetime_secs: i64,
    /// Authorization code lifetime (FAPI: ≤ 60 s).
    pub code_lifetime_secs: i64,
    pub access_token_lifetime_secs: i64,
    pub refresh_token_lifetime_secs: i64,
    pub id_token_lifetime_secs: i64,
    /// Issue a new refresh token on every refresh (FAPI 2.0 §5.3.2.1 advises
    /// against it, so off by default).
    pub rotate_refresh_tokens: bool,
    pub access_token_format: AccessTokenFormat,
    /// RFC 9126 §5 `require_pushed_authorization_requests`.
    pub require_par: bool,
    /// FAPI 2.0 Message Signing §5.3.1: request objects at PAR.
    pub require_signed_request_object: bool,
    /// Tolerated clock skew for `iat`/`nbf`/`exp` (seconds).
    pub clock_skew_secs: i64,
    /// DPoP proof `iat` window (RFC 9449 §11.1).
    pub dpop_iat_window_secs: i64,
    /// RFC 9449 §8: require server-provided nonces in DPoP proofs.
    pub require_dpop_nonce: bool,
    /// Scopes the server knows.
    pub scopes: Vec<String>,
    /// `[subject]`: what clients are shown as `sub` ([`crate::subject`]).
    pub subject: crate::subject::SubjectPolicy,
}

impl Policy {
    /// The profile whose rules apply to `client`: its registered
    /// `fapi_profile`, else the deployment's. So one deployment can serve
    /// FAPI 2.0 clients and today's FAPI 1.0 / UK TPPs side by side, each
    /// request validated by the one pipeline with its client's rules.
    pub fn profile_for(&self, client: &crate::client::Client) -> Profile {
        client.metadata.fapi_profile.unwrap_or(self.profile)
    }

    /// A new policy for `profile`, with the defaults the configuration
    /// documents.
    pub fn new(issuer: impl Into<String>, profile: Profile) -> Self {
        Self {
            issuer: issuer.into(),
            profile,
            par_lifetime_secs: 60,
            code_lifetime_secs: 60,
            access_token_lifetime_secs: 600,
            refresh_token_lifetime_secs: 30 * 86_400,
            id_token_lifetime_secs: 600,
            rotate_refresh_tokens: false,
            access_token_format: AccessTokenFormat::Opaque,
            require_par: profile.requires_par(),
            require_signed_request_object: profile.requires_signed_request_object(),
            clock_skew_secs: 10,
            dpop_iat_window_secs: 60,
            require_dpop_nonce: false,
            scopes: vec![
                "openid".into(),
                "profile".into(),
                "email".into(),
                "offline_access".into(),
                "accounts".into(),
                "payments".into(),
                "fundsconfirmations".into(),
            ],
            subject: crate::subject::SubjectPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{JwsAlg, ProviderAlg};

    /// The UK view: RSA PS256 signatures, RSA-OAEP-256 encryption without
    /// a named alg, no DPoP; every other profile keeps all our keys.
    #[test]
    fn each_profile_has_its_view() {
        let uk = Profile::UkOpenBanking;
        assert!(!uk.offers_dpop());
        assert_eq!(uk.own_signing_algs(), &[JwsAlg::PS256]);
        assert_eq!(uk.request_object_encryption_algs(), &["RSA-OAEP-256"]);
        assert!(!uk.names_encryption_key_alg());
        assert!(uk.publishes_key(ProviderAlg::PS256));
        assert!(uk.publishes_key(ProviderAlg::RsaOaep256));
        assert!(!uk.publishes_key(ProviderAlg::ES256));
        assert!(!uk.publishes_key(ProviderAlg::RsaOaep));
        for p in [
            Profile::Fapi2,
            Profile::Fapi2MessageSigning,
            Profile::Fapi1Advanced,
        ] {
            assert!(p.offers_dpop());
            assert!(p.names_encryption_key_alg());
            assert!(
                ProviderAlg::ALL.iter().all(|a| p.publishes_key(*a)),
                "{p:?}"
            );
            assert_eq!(
                p.request_object_encryption_algs(),
                &crate::keys::decrypt::JWE_ALGS
            );
        }
        // No response mode of the UK view is a JARM one.
        assert!(!uk.response_modes().iter().any(|m| m.contains("jwt")));
    }
}

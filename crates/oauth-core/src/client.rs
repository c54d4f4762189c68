//! Clients: RFC 7591 §2 metadata (with the members of OpenID Connect Dynamic
//! Registration §2, RFC 8705 §2.1.2 and §3.4, RFC 9449 §5.2, JARM §3, RFC 9126
//! §6 and CIBA §4), validated once into a [`Client`].

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, OAuthError};
use crate::storage::ClientRecord;

/// Token endpoint authentication methods (RFC 7591 §2, RFC 8705 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    PrivateKeyJwt,
    TlsClientAuth,
    SelfSignedTlsClientAuth,
    /// Non-FAPI clients only.
    ClientSecretBasic,
    /// Non-FAPI clients only.
    ClientSecretPost,
    /// Public clients (never under FAPI; kept for completeness of parsing).
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    /// Methods FAPI 2.0 §5.3.2.1 / FAPI 1.0 Advanced §5.2.2-14 allow.
    pub fn is_fapi(self) -> bool {
        matches!(
            self,
            AuthMethod::PrivateKeyJwt
                | AuthMethod::TlsClientAuth
                | AuthMethod::SelfSignedTlsClientAuth
        )
    }

    /// Methods that rely on a client certificate.
    pub fn is_mtls(self) -> bool {
        matches!(
            self,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        )
    }
}

fn default_grant_types() -> Vec<String> {
    vec!["authorization_code".into()]
}

fn default_response_types() -> Vec<String> {
    vec!["code".into()]
}

fn default_auth_method() -> AuthMethod {
    AuthMethod::PrivateKeyJwt
}

fn yes() -> bool {
    true
}

/// Client metadata, with the RFC parameter names. Static clients are declared
/// with these names in the configuration file; registered clients carry the
/// same document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMetadata {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
    #[serde(default = "default_response_types")]
    pub response_types: Vec<String>,
    /// Space-separated scopes the client may request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default = "default_auth_method")]
    pub token_endpoint_auth_method: AuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_subject_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
    /// OIDC Registration §2: the id_token signed, then encrypted to the
    /// client's RSA `use: enc` key with this `alg` (RSA-OAEP-256 or
    /// RSA-OAEP) and `enc` (A256GCM or A128CBC-HS256; A128CBC-HS256
    /// when only `alg` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_encrypted_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_encrypted_response_enc: Option<String>,
    /// OIDC Registration §2: the UserInfo response as a JWT signed with
    /// this alg (PS256 or ES256) and/or encrypted like the id_token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_signed_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_encrypted_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_encrypted_response_enc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_object_signing_alg: Option<String>,
    /// JARM §3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_signed_response_alg: Option<String>,
    /// RFC 9449 §5.2.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// RFC 8705 §3.4.
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: bool,
    /// RFC 9126 §6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_pushed_authorization_requests: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// CIBA §4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_token_delivery_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_client_notification_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_authentication_request_signing_alg: Option<String>,
    /// CIBA §4: the client sends a `user_code` with every request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backchannel_user_code_parameter: bool,
    /// Strongroom: `false` marks a client the deployment exempts from the
    /// FAPI rules (the only way to get `client_secret_*`).
    #[serde(default = "yes")]
    pub fapi: bool,
    /// Strongroom: the profile this client's requests follow (`fapi2`,
    /// `fapi2-message-signing`, `fapi1-advanced`, `uk-ob`), overriding
    /// the deployment's `profile` ([`crate::policy::Policy::profile_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fapi_profile: Option<crate::policy::Profile>,
    /// OIDC Registration §2: `public` or `pairwise` (OIDC Core §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_type: Option<String>,
    /// OIDC Registration §2: an https URL of a JSON array holding every
    /// redirect URI (§5), whose host is the pairwise sector identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector_identifier_uri: Option<String>,
    /// Strongroom: the `sub` this client is shown (`customer`, `pairwise`
    /// or `consent`, the grant's intent id), overriding `subject_type`
    /// and the profile's and deployment's `[subject]` defaults
    /// ([`crate::subject`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<crate::subject::SubjectKind>,
}

/// The CIBA grant type (CIBA §4).
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

/// A client ready for use: metadata plus what was derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub metadata: ClientMetadata,
    /// SHA-256 of the secret, for `client_secret_*` (non-FAPI clients only).
    pub secret_hash: Option<String>,
    pub scopes: Vec<String>,
}

fn invalid_metadata(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d.into())
}

impl ClientMetadata {
    /// CIBA §4 registration metadata: a client of the CIBA grant names its
    /// delivery mode; ping and push need an https notification endpoint
    /// (and only they may have one); push is refused for FAPI clients
    /// (FAPI-CIBA §5.2.2: "shall not support CIBA push mode"); signed
    /// requests are PS256 or ES256.
    fn validate_ciba(&self) -> Result<(), OAuthError> {
        let ciba = self
            .grant_types
            .iter()
            .any(|g| g == crate::client::CIBA_GRANT);
        let mode = self.backchannel_token_delivery_mode.as_deref();
        match mode {
            None if ciba => {
                return Err(invalid_metadata(
                    "backchannel_token_delivery_mode is required for the CIBA grant (poll, ping or push)",
                ));
            }
            None | Some("poll" | "ping") => {}
            Some("push") if self.fapi => {
                return Err(invalid_metadata(
                    "backchannel_token_delivery_mode push is not allowed for FAPI clients (FAPI-CIBA: poll or ping)",
                ));
            }
            Some("push") => {}
            Some(m) => {
                return Err(invalid_metadata(format!(
                    "backchannel_token_delivery_mode {m} is not supported (poll, ping or push)"
                )));
            }
        }
        let notifies = matches!(mode, Some("ping" | "push"));
        match &self.backchannel_client_notification_endpoint {
            None if notifies => {
                return Err(invalid_metadata(
                    "backchannel_client_notification_endpoint is required for ping and push",
                ));
            }
            None => {}
            Some(_) if !notifies => {
                return Err(invalid_metadata(
                    "backchannel_client_notification_endpoint is only for ping and push",
                ));
            }
            Some(uri) => {
                let u = url::Url::parse(uri).map_err(|_| {
                    invalid_metadata("backchannel_client_notification_endpoint is not a URL")
                })?;
                if u.scheme() != "https" || u.fragment().is_some() {
                    return Err(invalid_metadata(
                        "backchannel_client_notification_endpoint must be an https URL without fragment",
                    ));
                }
            }
        }
        if let Some(alg) = &self.backchannel_authentication_request_signing_alg
            && !matches!(alg.as_str(), "PS256" | "ES256")
        {
            return Err(invalid_metadata(format!(
                "backchannel_authentication_request_signing_alg {alg} is not offered (PS256 or ES256)"
            )));
        }
        Ok(())
    }

    /// A registered `fapi_profile` must fit the rest: FAPI clients only,
    /// its client authentication methods
    /// ([`crate::policy::Profile::allows_fapi_auth_method`]) and its
    /// response types ([`crate::policy::Profile::response_types`]).
    fn validate_profile(&self) -> Result<(), OAuthError> {
        let Some(profile) = self.fapi_profile else {
            return Ok(());
        };
        if !self.fapi {
            return Err(invalid_metadata(
                "fapi_profile is for FAPI clients (fapi = false clients follow no profile)",
            ));
        }
        if !profile.allows_fapi_auth_method(self.token_endpoint_auth_method) {
            return Err(invalid_metadata(format!(
                "token_endpoint_auth_method {} is not allowed under fapi_profile {}",
                self.token_endpoint_auth_method.as_str(),
                profile.as_str()
            )));
        }
        self.check_profile_view(profile)?;
        let served = profile.response_types();
        if let Some(r) = self
            .response_types
            .iter()
            .find(|r| !served.contains(&r.as_str()))
        {
            return Err(invalid_metadata(format!(
                "response_type {r} is not served under fapi_profile {} (use {})",
                profile.as_str(),
                served.join(" or ")
            )));
        }
        Ok(())
    }

    /// What the client asks of our keys and token binding must be in its
    /// profile's view of discovery and the JWKS: DPoP only where the
    /// profile offers it ([`crate::policy::Profile::offers_dpop`]), and
    /// our signatures (id_token, JARM) only in the algorithms whose keys
    /// that view publishes ([`crate::policy::Profile::own_signing_algs`]).
    fn check_profile_view(&self, profile: crate::policy::Profile) -> Result<(), OAuthError> {
        if self.dpop_bound_access_tokens && !profile.offers_dpop() {
            return Err(invalid_metadata(format!(
                "dpop_bound_access_tokens: DPoP is not offered under profile {} (tokens are bound to the client certificate)",
                profile.as_str()
            )));
        }
        let own = profile.own_signing_algs();
        for (name, alg) in [
            (
                "id_token_signed_response_alg",
                &self.id_token_signed_response_alg,
            ),
            (
                "authorization_signed_response_alg",
                &self.authorization_signed_response_alg,
            ),
            (
                "userinfo_signed_response_alg",
                &self.userinfo_signed_response_alg,
            ),
        ] {
            if let Some(alg) = alg
                && !own.iter().any(|a| a.as_str() == alg)
            {
                return Err(invalid_metadata(format!(
                    "{name} {alg} is not offered under profile {} (use {})",
                    profile.as_str(),
                    own.iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )));
            }
        }
        Ok(())
    }

    /// [`ClientMetadata::validate`] for a client of a deployment whose
    /// profile is `deployment`. Discovery and the JWKS are the
    /// deployment's, and DPoP proofs are refused where it offers none
    /// (`sender_constraint::dpop::verify_proof`), so what any client asks
    /// of our keys and token binding, whatever its own `fapi_profile` and
    /// FAPI or not, is checked against that view as well as its own.
    pub fn validate_for(&self, deployment: crate::policy::Profile) -> Result<(), OAuthError> {
        self.validate()?;
        self.check_profile_view(deployment)
    }

    /// Checks the metadata against the FAPI rules and internal consistency.
    /// Errors are `invalid_client_metadata` / `invalid_redirect_uri`
    /// (RFC 7591 §3.2.2) with a description that says what to fix.
    pub fn validate(&self) -> Result<(), OAuthError> {
        if self.client_id.is_empty() || self.client_id.len() > 255 {
            return Err(invalid_metadata("client_id must be 1 to 255 characters"));
        }
        for uri in &self.redirect_uris {
            let u = url::Url::parse(uri).map_err(|_| {
                OAuthError::new(
                    ErrorCode::InvalidRedirectUri,
                    format!("redirect_uri {uri} is not a URL"),
                )
            })?;
            if u.fragment().is_some() {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRedirectUri,
                    format!("redirect_uri {uri} must not contain a fragment"),
                ));
            }
            if self.fapi && u.scheme() != "https" {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRedirectUri,
                    format!("redirect_uri {uri} must use https"),
                ));
            }
        }
        if self.grant_types.iter().any(|g| g == "authorization_code")
            && self.redirect_uris.is_empty()
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "redirect_uris are required for the authorization_code grant",
            ));
        }
        for g in &self.grant_types {
            if !matches!(
                g.as_str(),
                "authorization_code"
                    | "refresh_token"
                    | "client_credentials"
                    | "urn:openid:params:grant-type:ciba"
            ) {
                return Err(invalid_metadata(format!("grant_type {g} is not supported")));
            }
        }
        // Which of the two a request may use is the profile's to say
        // (crate::policy::Profile::response_types).
        for r in &self.response_types {
            if r != "code" && r != "code id_token" {
                return Err(invalid_metadata(format!(
                    "response_type {r} is not supported (code or code id_token)"
                )));
            }
        }
        let method = self.token_endpoint_auth_method;
        if self.fapi && !method.is_fapi() {
            return Err(invalid_metadata(format!(
                "token_endpoint_auth_method {} is not allowed for FAPI clients (use private_key_jwt, tls_client_auth or self_signed_tls_client_auth)",
                method.as_str()
            )));
        }
        if method == AuthMethod::None {
            return Err(invalid_metadata("public clients are not supported"));
        }
        if self.jwks.is_some() && self.jwks_uri.is_some() {
            return Err(invalid_metadata(
                "jwks and jwks_uri are mutually exclusive (RFC 7591 §2)",
            ));
        }
        if let Some(jwks) = &self.jwks
            && !jwks.get("keys").is_some_and(|k| k.is_array())
        {
            return Err(invalid_metadata("jwks must be a JWK Set with a keys array"));
        }
        if let Some(uri) = &self.jwks_uri {
            let u = url::Url::parse(uri).map_err(|_| invalid_metadata("jwks_uri is not a URL"))?;
            if u.scheme() != "https" {
                return Err(invalid_metadata("jwks_uri must use https"));
            }
        }
        let needs_keys = matches!(
            method,
            AuthMethod::PrivateKeyJwt | AuthMethod::SelfSignedTlsClientAuth
        ) || self.request_object_signing_alg.is_some();
        if needs_keys && self.jwks.is_none() && self.jwks_uri.is_none() {
            return Err(invalid_metadata(format!(
                "{} needs jwks or jwks_uri",
                if self.request_object_signing_alg.is_some()
                    && !matches!(
                        method,
                        AuthMethod::PrivateKeyJwt | AuthMethod::SelfSignedTlsClientAuth
                    )
                {
                    "request_object_signing_alg"
                } else {
                    method.as_str()
                }
            )));
        }
        if method == AuthMethod::TlsClientAuth {
            let n = [
                &self.tls_client_auth_subject_dn,
                &self.tls_client_auth_san_dns,
                &self.tls_client_auth_san_uri,
                &self.tls_client_auth_san_ip,
                &self.tls_client_auth_san_email,
            ]
            .iter()
            .filter(|v| v.is_some())
            .count();
            if n != 1 {
                return Err(invalid_metadata(
                    "tls_client_auth needs exactly one of tls_client_auth_subject_dn or tls_client_auth_san_* (RFC 8705 §2.1.2)",
                ));
            }
            if let Some(dn) = &self.tls_client_auth_subject_dn {
                crate::cert::DistinguishedName::parse_rfc4514(dn).map_err(|_| {
                    invalid_metadata(
                        "tls_client_auth_subject_dn is not an RFC 4514 distinguished name",
                    )
                })?;
            }
        }
        for (name, alg) in [
            (
                "token_endpoint_auth_signing_alg",
                &self.token_endpoint_auth_signing_alg,
            ),
            (
                "id_token_signed_response_alg",
                &self.id_token_signed_response_alg,
            ),
            (
                "request_object_signing_alg",
                &self.request_object_signing_alg,
            ),
            (
                "authorization_signed_response_alg",
                &self.authorization_signed_response_alg,
            ),
            (
                "backchannel_authentication_request_signing_alg",
                &self.backchannel_authentication_request_signing_alg,
            ),
        ] {
            if let Some(alg) = alg {
                crate::keys::JwsAlg::parse(alg).map_err(|_| {
                    invalid_metadata(format!(
                        "{name} {alg} is not allowed (PS256, ES256 or EdDSA)"
                    ))
                })?;
            }
        }
        self.validate_ciba()?;
        self.validate_profile()?;
        self.validate_subject()?;
        if let Some(alg) = &self.id_token_signed_response_alg
            && !matches!(alg.as_str(), "PS256" | "ES256")
        {
            return Err(invalid_metadata(format!(
                "id_token_signed_response_alg {alg} is not offered (PS256 or ES256)"
            )));
        }
        if let Some(alg) = &self.authorization_signed_response_alg
            && !matches!(alg.as_str(), "PS256" | "ES256")
        {
            return Err(invalid_metadata(format!(
                "authorization_signed_response_alg {alg} is not offered (PS256 or ES256)"
            )));
        }
        if let Some(alg) = &self.userinfo_signed_response_alg
            && !crate::userinfo::USERINFO_SIGNING_ALGS.contains(&alg.as_str())
        {
            return Err(invalid_metadata(format!(
                "userinfo_signed_response_alg {alg} is not offered (PS256 or ES256)"
            )));
        }
        self.validate_encryption(
            "id_token",
            &self.id_token_encrypted_response_alg,
            &self.id_token_encrypted_response_enc,
        )?;
        self.validate_encryption(
            "userinfo",
            &self.userinfo_encrypted_response_alg,
            &self.userinfo_encrypted_response_enc,
        )?;
        Ok(())
    }

    /// OIDC Registration §2 `<what>_encrypted_response_alg` / `_enc`: an
    /// `alg` and `enc` Strongroom encrypts with, no `enc` without `alg`,
    /// and a key to encrypt to: an RSA `use: enc` key for the `alg` in the
    /// inline `jwks`, or a `jwks_uri` (checked when the token is issued).
    fn validate_encryption(
        &self,
        what: &str,
        alg: &Option<String>,
        enc: &Option<String>,
    ) -> Result<(), OAuthError> {
        let Some(alg) = alg else {
            return match enc {
                Some(_) => Err(invalid_metadata(format!(
                    "{what}_encrypted_response_enc needs {what}_encrypted_response_alg (OIDC Registration §2)"
                ))),
                None => Ok(()),
            };
        };
        if !crate::keys::JWE_ALGS.contains(&alg.as_str()) {
            return Err(invalid_metadata(format!(
                "{what}_encrypted_response_alg {alg} is not offered ({})",
                crate::keys::JWE_ALGS.join(" or ")
            )));
        }
        if let Some(enc) = enc
            && !crate::keys::JWE_ENCS.contains(&enc.as_str())
        {
            return Err(invalid_metadata(format!(
                "{what}_encrypted_response_enc {enc} is not offered ({})",
                crate::keys::JWE_ENCS.join(" or ")
            )));
        }
        match (&self.jwks, &self.jwks_uri) {
            // The key an inline set holds is built as issuance builds it,
            // so one that cannot encrypt is refused now, not at every
            // token request.
            (Some(jwks), _) => match crate::keys::ClientEncrypter::from_jwks(
                jwks,
                alg,
                enc.as_deref().unwrap_or(DEFAULT_RESPONSE_ENC),
            ) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(invalid_metadata(format!(
                    "{what}_encrypted_response_alg {alg} needs an RSA key with use enc for {alg} in jwks"
                ))),
                Err(_) => Err(invalid_metadata(format!(
                    "{what}_encrypted_response_alg {alg}: the use enc key in jwks is not a usable RSA public key"
                ))),
            },
            (None, None) => Err(invalid_metadata(format!(
                "{what}_encrypted_response_alg needs jwks or jwks_uri with an RSA use enc key"
            ))),
            _ => Ok(()),
        }
    }

    /// The `alg` and `enc` to encrypt this client's id_tokens with, if it
    /// registered encryption (OIDC Registration §2: `enc` defaults to
    /// A128CBC-HS256).
    pub fn id_token_encryption(&self) -> Option<(&str, &str)> {
        encryption_pair(
            &self.id_token_encrypted_response_alg,
            &self.id_token_encrypted_response_enc,
        )
    }

    /// As [`Self::id_token_encryption`], for UserInfo responses.
    pub fn userinfo_encryption(&self) -> Option<(&str, &str)> {
        encryption_pair(
            &self.userinfo_encrypted_response_alg,
            &self.userinfo_encrypted_response_enc,
        )
    }
}

fn encryption_pair<'a>(
    alg: &'a Option<String>,
    enc: &'a Option<String>,
) -> Option<(&'a str, &'a str)> {
    Some((
        alg.as_deref()?,
        enc.as_deref().unwrap_or(DEFAULT_RESPONSE_ENC),
    ))
}

/// OIDC Registration §2: the `enc` of an encrypted response when the client
/// registered only the `alg`.
pub const DEFAULT_RESPONSE_ENC: &str = "A128CBC-HS256";

impl Client {
    /// Validates `metadata` and derives the client.
    pub fn new(
        metadata: ClientMetadata,
        secret_hash: Option<String>,
    ) -> Result<Client, OAuthError> {
        metadata.validate()?;
        if matches!(
            metadata.token_endpoint_auth_method,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        ) && secret_hash.is_none()
        {
            return Err(invalid_metadata("client_secret_* clients need a secret"));
        }
        let scopes = metadata
            .scope
            .as_deref()
            .unwrap_or("openid")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok(Client {
            metadata,
            secret_hash,
            scopes,
        })
    }

    pub fn id(&self) -> &str {
        &self.metadata.client_id
    }

    pub fn auth_method(&self) -> AuthMethod {
        self.metadata.token_endpoint_auth_method
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.metadata.grant_types.iter().any(|g| g == grant_type)
    }

    /// Whether every scope in `requested` is allowed for this client.
    pub fn allows_scopes<'a>(&self, requested: impl IntoIterator<Item = &'a str>) -> bool {
        requested
            .into_iter()
            .all(|s| self.scopes.iter().any(|a| a == s))
    }

    /// Exact string match of a redirect URI (FAPI 2.0 §5.3.2.2-5, RFC 9700 §4.1.3).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.metadata.redirect_uris.iter().any(|r| r == uri)
    }

    /// The storage form.
    pub fn to_record(&self, origin: &str, now: i64) -> ClientRecord {
        ClientRecord {
            client_id: self.metadata.client_id.clone(),
            metadata: serde_json::to_string(&self.metadata).expect("metadata serialises"),
            secret_hash: self.secret_hash.clone(),
            registration_token_hash: None,
            software_id: self.metadata.software_id.clone(),
            origin: origin.to_string(),
            created_at: now,
            updated_at: now,
        }
    }

    /// From the storage form. A record that no longer validates (e.g. after
    /// a policy change) is refused rather than used half-valid.
    ///
    /// The result is a function of the record's metadata text and secret
    /// hash alone, so each thread keeps the clients it derived lately
    /// ([`PARSED_PER_THREAD`] of them) and hands out a copy when a record
    /// comes back with exactly the same text; any change to the stored
    /// registration (RFC 7592 update, another instance's write) is a
    /// different text and is parsed and validated afresh. Per thread, so
    /// no lock is shared between requests. Measured in profiles of session
    /// flows (release build, 64 connections): this function went from 1.73 %
    /// to 0.77 % of the server's samples (the copy and the comparison).
    pub fn from_record(rec: &ClientRecord) -> Result<Client, OAuthError> {
        if let Some(hit) = PARSED.with_borrow(|parsed| {
            parsed
                .get(&rec.client_id)
                .filter(|p| p.metadata == rec.metadata && p.client.secret_hash == rec.secret_hash)
                .map(|p| p.client.clone())
        }) {
            return Ok(hit);
        }
        let metadata: ClientMetadata = serde_json::from_str(&rec.metadata).map_err(|e| {
            tracing::error!(client_id = %rec.client_id, error = %e, "stored client metadata unreadable");
            OAuthError::server_error()
        })?;
        let client = Client::new(metadata, rec.secret_hash.clone())?;
        PARSED.with_borrow_mut(|parsed| {
            if parsed.len() >= PARSED_PER_THREAD && !parsed.contains_key(&rec.client_id) {
                parsed.clear();
            }
            parsed.insert(
                rec.client_id.clone(),
                Parsed {
                    metadata: rec.metadata.clone(),
                    client: client.clone(),
                },
            );
        });
        Ok(client)
    }
}

/// How many derived clients each thread keeps (it starts over when full).
const PARSED_PER_THREAD: usize = 256;

/// A client derived from a record, and the metadata text it came from.
struct Parsed {
    metadata: String,
    client: Client,
}

thread_local! {
    static PARSED: std::cell::RefCell<std::collections::HashMap<String, Parsed>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ClientMetadata {
        serde_json::from_value(serde_json::json!({
            "client_id": "tpp-1",
            "redirect_uris": ["https://tpp.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": []},
            "scope": "openid accounts",
        }))
        .unwrap()
    }

    /// OIDC Registration §2 response encryption: our algorithms only, no
    /// `enc` without `alg`, a key to encrypt to (inline: an RSA `use: enc`
    /// key for the alg; a `jwks_uri` is checked at issuance).
    #[test]
    fn response_encryption_metadata_rules() {
        let enc_key = serde_json::json!({"kty": "RSA", "use": "enc", "alg": "RSA-OAEP-256",
            "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        let with = |f: &dyn Fn(&mut ClientMetadata)| {
            let mut m = base();
            m.jwks = Some(serde_json::json!({"keys": [enc_key]}));
            f(&mut m);
            m.validate().map_err(|e| e.description.unwrap().to_string())
        };
        with(&|m| m.id_token_encrypted_response_alg = Some("RSA-OAEP-256".into())).unwrap();
        with(&|m| {
            m.userinfo_encrypted_response_alg = Some("RSA-OAEP-256".into());
            m.userinfo_encrypted_response_enc = Some("A256GCM".into());
            m.userinfo_signed_response_alg = Some("PS256".into());
        })
        .unwrap();
        let e = with(&|m| m.id_token_encrypted_response_enc = Some("A256GCM".into())).unwrap_err();
        assert!(e.contains("needs id_token_encrypted_response_alg"), "{e}");
        let e = with(&|m| m.id_token_encrypted_response_alg = Some("RSA1_5".into())).unwrap_err();
        assert!(e.contains("RSA1_5 is not offered"), "{e}");
        let e = with(&|m| {
            m.userinfo_encrypted_response_alg = Some("RSA-OAEP-256".into());
            m.userinfo_encrypted_response_enc = Some("A128GCM".into());
        })
        .unwrap_err();
        assert!(e.contains("A128GCM is not offered"), "{e}");
        // The key is for RSA-OAEP-256 only.
        let e = with(&|m| m.id_token_encrypted_response_alg = Some("RSA-OAEP".into())).unwrap_err();
        assert!(e.contains("needs an RSA key with use enc"), "{e}");
        // A key marked for encryption that is no RSA public key.
        let e = with(&|m| {
            let mut broken = enc_key.clone();
            broken["n"] = serde_json::json!("AQAB");
            m.jwks = Some(serde_json::json!({"keys": [broken]}));
            m.id_token_encrypted_response_alg = Some("RSA-OAEP-256".into());
        })
        .unwrap_err();
        assert!(e.contains("not a usable RSA public key"), "{e}");
        let e = with(&|m| {
            m.jwks = None;
            m.id_token_encrypted_response_alg = Some("RSA-OAEP-256".into());
        })
        .unwrap_err();
        assert!(e.contains("needs jwks or jwks_uri"), "{e}");
        with(&|m| {
            m.jwks = None;
            m.token_endpoint_auth_method = AuthMethod::TlsClientAuth;
            m.tls_client_auth_subject_dn = Some("CN=tpp".into());
            m.jwks_uri = Some("https://tpp.example/jwks".into());
            m.id_token_encrypted_response_alg = Some("RSA-OAEP".into());
        })
        .unwrap();
        let e = with(&|m| m.userinfo_signed_response_alg = Some("RS256".into())).unwrap_err();
        assert!(e.contains("userinfo_signed_response_alg RS256"), "{e}");
        // enc defaults to A128CBC-HS256 (OIDC Registration §2).
        let mut m = base();
        m.id_token_encrypted_response_alg = Some("RSA-OAEP".into());
        assert_eq!(m.id_token_encryption(), Some(("RSA-OAEP", "A128CBC-HS256")));
        m.id_token_encrypted_response_enc = Some("A256GCM".into());
        assert_eq!(m.id_token_encryption(), Some(("RSA-OAEP", "A256GCM")));
        assert_eq!(m.userinfo_encryption(), None);
    }

    /// A client asks only for what its profile's view of discovery and
    /// the JWKS offers: no DPoP and no ES256 signatures of ours under UK
    /// Open Banking; either by its own fapi_profile or, with
    /// `validate_for`, by the deployment's.
    #[test]
    fn uk_clients_ask_for_what_the_uk_view_offers() {
        use crate::policy::Profile;
        let mut es = base();
        es.id_token_signed_response_alg = Some("ES256".into());
        let mut jarm_es = base();
        jarm_es.authorization_signed_response_alg = Some("ES256".into());
        let mut dpop = base();
        dpop.dpop_bound_access_tokens = true;
        for (m, what) in [
            (
                &es,
                "id_token_signed_response_alg ES256 is not offered under profile uk-ob (use PS256)",
            ),
            (
                &jarm_es,
                "authorization_signed_response_alg ES256 is not offered",
            ),
            (&dpop, "DPoP is not offered under profile uk-ob"),
        ] {
            // Fine under FAPI 2.0 and FAPI 1.0 Advanced.
            m.validate_for(Profile::Fapi2).unwrap();
            m.validate_for(Profile::Fapi1Advanced).unwrap();
            let e = m.validate_for(Profile::UkOpenBanking).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_client_metadata");
            assert!(e.description.as_deref().unwrap().contains(what), "{e:?}");
            // The client's own profile, whatever the deployment's.
            let mut own = m.clone();
            own.fapi_profile = Some(Profile::UkOpenBanking);
            own.response_types = vec!["code id_token".into()];
            assert!(
                own.validate()
                    .unwrap_err()
                    .description
                    .unwrap()
                    .contains(what)
            );
            // A fapi2 client, or a non-FAPI one, on a UK deployment is
            // served the UK view too: the JWKS holds no EC key and DPoP
            // proofs are refused there.
            let mut fapi2 = m.clone();
            fapi2.fapi_profile = Some(Profile::Fapi2);
            let e = fapi2.validate_for(Profile::UkOpenBanking).unwrap_err();
            assert!(e.description.as_deref().unwrap().contains(what), "{e:?}");
            fapi2.validate_for(Profile::Fapi2).unwrap();
            let mut plain = m.clone();
            plain.fapi = false;
            let e = plain.validate_for(Profile::UkOpenBanking).unwrap_err();
            assert!(e.description.as_deref().unwrap().contains(what), "{e:?}");
        }
        let mut ps = base();
        ps.id_token_signed_response_alg = Some("PS256".into());
        ps.validate_for(Profile::UkOpenBanking).unwrap();
    }

    /// CIBA §4 registration rules, FAPI-CIBA's "no push".
    #[test]
    fn ciba_metadata_rules() {
        let ciba = |mode: Option<&str>, endpoint: Option<&str>, fapi: bool| {
            let mut m = base();
            m.grant_types = vec![CIBA_GRANT.into()];
            m.backchannel_token_delivery_mode = mode.map(str::to_owned);
            m.backchannel_client_notification_endpoint = endpoint.map(str::to_owned);
            m.fapi = fapi;
            m.validate().map_err(|e| e.description.unwrap().to_string())
        };
        ciba(Some("poll"), None, true).unwrap();
        ciba(Some("ping"), Some("https://tpp.example/cb-ciba"), true).unwrap();
        ciba(Some("push"), Some("https://tpp.example/cb-ciba"), false).unwrap();
        let e = ciba(Some("push"), Some("https://tpp.example/cb-ciba"), true).unwrap_err();
        assert!(e.contains("push is not allowed for FAPI clients"), "{e}");
        assert!(ciba(None, None, true).unwrap_err().contains("required"));
        assert!(
            ciba(Some("ping"), None, true)
                .unwrap_err()
                .contains("required for ping")
        );
        let e = ciba(Some("ping"), Some("http://tpp.example/cb"), true).unwrap_err();
        assert!(e.contains("https"), "{e}");
        assert!(ciba(Some("poll"), Some("https://tpp.example/cb"), true).is_err());
        assert!(ciba(Some("fax"), None, true).is_err());
        let mut m = base();
        m.backchannel_authentication_request_signing_alg = Some("EdDSA".into());
        assert!(m.validate().is_err());
    }

    /// A record read again with the same text gives the same client; any
    /// change to the stored text or secret is seen at once, and a stored
    /// registration that stopped validating is refused, never served from
    /// what the thread derived before.
    #[test]
    fn records_are_derived_afresh_whenever_their_text_changes() {
        let client = Client::new(base(), None).unwrap();
        let mut rec = client.to_record("dcr", 1);
        assert_eq!(Client::from_record(&rec).unwrap(), client);
        assert_eq!(Client::from_record(&rec).unwrap(), client);

        let mut moved = base();
        moved.redirect_uris = vec!["https://tpp.example/other".into()];
        rec.metadata = serde_json::to_string(&moved).unwrap();
        let again = Client::from_record(&rec).unwrap();
        assert_eq!(again.metadata.redirect_uris, ["https://tpp.example/other"]);

        rec.secret_hash = Some("new-hash".into());
        assert_eq!(
            Client::from_record(&rec).unwrap().secret_hash.as_deref(),
            Some("new-hash")
        );

        let mut broken = moved.clone();
        broken.redirect_uris = vec!["not a url".into()];
        rec.metadata = serde_json::to_string(&broken).unwrap();
        assert!(Client::from_record(&rec).is_err());
        rec.metadata = "{".into();
        assert!(Client::from_record(&rec).is_err());
    }

    /// Each thread starts over when it holds as many clients as it keeps,
    /// and every lookup still answers the record it was given.
    #[test]
    fn many_clients_on_one_thread_each_get_their_own() {
        for i in 0..(PARSED_PER_THREAD + 10) {
            let mut m = base();
            m.client_id = format!("tpp-{i}");
            let rec = Client::new(m, None).unwrap().to_record("dcr", 1);
            assert_eq!(Client::from_record(&rec).unwrap().id(), format!("tpp-{i}"));
        }
        let len = PARSED.with_borrow(|p| p.len());
        assert!(len <= PARSED_PER_THREAD, "{len}");
    }

    #[test]
    fn defaults_follow_fapi() {
        let m = base();
        assert_eq!(m.grant_types, vec!["authorization_code"]);
        assert_eq!(m.response_types, vec!["code"]);
        assert!(m.fapi);
        let c = Client::new(m, None).unwrap();
        assert!(c.allows_scopes(["openid", "accounts"]));
        assert!(!c.allows_scopes(["payments"]));
        assert!(c.has_redirect_uri("https://tpp.example/cb"));
        assert!(!c.has_redirect_uri("https://tpp.example/cb?x=1"));
    }

    #[test]
    fn secrets_only_for_non_fapi_clients() {
        let mut m = base();
        m.token_endpoint_auth_method = AuthMethod::ClientSecretBasic;
        assert_eq!(
            m.validate().unwrap_err().code,
            ErrorCode::InvalidClientMetadata
        );
        m.fapi = false;
        assert!(Client::new(m.clone(), None).is_err(), "secret required");
        assert!(Client::new(m, Some("hash".into())).is_ok());
    }

    #[test]
    fn inconsistent_metadata_is_refused() {
        let mut m = base();
        m.redirect_uris = vec!["http://tpp.example/cb".into()];
        assert_eq!(
            m.validate().unwrap_err().code,
            ErrorCode::InvalidRedirectUri
        );
        let mut m = base();
        m.jwks = None;
        assert_eq!(
            m.validate().unwrap_err().code,
            ErrorCode::InvalidClientMetadata
        );
        let mut m = base();
        m.token_endpoint_auth_signing_alg = Some("RS256".into());
        assert!(m.validate().is_err());
        let mut m = base();
        m.token_endpoint_auth_method = AuthMethod::TlsClientAuth;
        assert!(m.validate().is_err(), "tls_client_auth needs a DN or SAN");
        m.tls_client_auth_subject_dn = Some("CN=tpp-1,O=Example TPP,C=GB".into());
        assert!(m.validate().is_ok());
        let mut m = base();
        m.response_types = vec!["code id_token".into(), "code".into()];
        assert!(m.validate().is_ok());
        m.fapi_profile = Some(crate::policy::Profile::Fapi2);
        assert!(m.validate().is_err(), "FAPI 2.0 has no hybrid flow");
        m.fapi_profile = Some(crate::policy::Profile::Fapi1Advanced);
        assert!(m.validate().is_ok());
        m.fapi_profile = Some(crate::policy::Profile::UkOpenBanking);
        assert!(
            m.validate().is_err(),
            "the UK profile serves code id_token only"
        );
        m.response_types = vec!["code id_token".into()];
        assert!(m.validate().is_ok());
        m.token_endpoint_auth_method = AuthMethod::SelfSignedTlsClientAuth;
        assert!(m.validate().is_err(), "not a UK method");
        m.fapi_profile = None;
        assert!(m.validate().is_ok());
        m.token_endpoint_auth_method = AuthMethod::PrivateKeyJwt;
        m.fapi_profile = Some(crate::policy::Profile::UkOpenBanking);
        m.fapi = false;
        assert!(m.validate().is_err(), "fapi = false follows no profile");
        m.fapi = true;
        m.fapi_profile = None;
        for bad in ["id_token", "token", "code token", "id_token code"] {
            m.response_types = vec![bad.into()];
            assert!(m.validate().is_err(), "{bad}");
        }
        assert!(
            serde_json::from_value::<ClientMetadata>(
                serde_json::json!({"client_id": "x", "bogus": 1})
            )
            .is_err()
        );
        let m: ClientMetadata =
            serde_json::from_value(serde_json::json!({"client_id": "x", "fapi_profile": "uk-ob"}))
                .unwrap();
        assert_eq!(m.fapi_profile, Some(crate::policy::Profile::UkOpenBanking));
        assert_eq!(
            serde_json::to_value(&m).unwrap()["fapi_profile"],
            serde_json::json!("uk-ob")
        );
        assert!(
            serde_json::from_value::<ClientMetadata>(
                serde_json::json!({"client_id": "x", "fapi_profile": "fapi3"})
            )
            .is_err()
        );
    }
}

/// A client that proved who it is at an endpoint, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatedClient {
    pub client: Client,
    pub method: AuthMethod,
}

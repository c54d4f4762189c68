//! Authorization server metadata: OpenID Connect Discovery 1.0 §3 and
//! RFC 8414 §2, with the members of RFC 9126 §5 (PAR), RFC 9207 §3 (`iss`),
//! RFC 8705 §3.3 and §5 (mTLS), RFC 9449 §5.1 (DPoP), JARM §4 and CIBA §4.
//!
//! The document is built from [`Capabilities`], which the server fills from
//! what it actually mounts and enables: nothing is advertised that does not
//! work.

use serde::Serialize;

use crate::keys::{JWE_ALGS, JWE_ENCS};
use crate::userinfo::USERINFO_SIGNING_ALGS;

/// What the running server offers. Each endpoint is a path relative to the
/// issuer; `None` means not served.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub jwks_path: String,
    pub authorization_path: Option<String>,
    pub token_path: Option<String>,
    pub par_path: Option<String>,
    pub userinfo_path: Option<String>,
    pub introspection_path: Option<String>,
    pub revocation_path: Option<String>,
    pub registration_path: Option<String>,
    pub backchannel_path: Option<String>,
    /// Endpoints that take client certificates are also served on this base
    /// URL (RFC 8705 §5), when mTLS runs on a separate listener.
    pub mtls_base_url: Option<String>,
    pub scopes: Vec<String>,
    pub claims: Vec<String>,
    pub response_types: Vec<String>,
    pub response_modes: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_methods: Vec<String>,
    pub signing_algs: Vec<String>,
    pub client_auth_signing_algs: Vec<String>,
    pub request_object_signing_algs: Vec<String>,
    /// Key management of encrypted request objects
    /// ([`crate::policy::Profile::request_object_encryption_algs`]).
    pub request_object_encryption_algs: Vec<String>,
    pub dpop_signing_algs: Vec<String>,
    pub acr_values: Vec<String>,
    pub require_pushed_authorization_requests: bool,
    pub require_signed_request_object: bool,
    pub tls_client_certificate_bound_access_tokens: bool,
    pub claims_parameter_supported: bool,
    pub authorization_details_types: Vec<String>,
    pub backchannel_token_delivery_modes: Vec<String>,
    pub backchannel_request_signing_algs: Vec<String>,
    /// Languages of the pages shown to the customer (BCP 47).
    pub ui_locales: Vec<String>,
}

/// The metadata document. Absent members are omitted, never `null`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed_authorization_request_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_pushed_authorization_requests: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_signed_request_object: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_authentication_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backchannel_token_delivery_modes_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backchannel_authentication_request_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_user_code_parameter_supported: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// OIDC Discovery §3: the languages of the user interface.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ui_locales_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claims_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_parameter_supported: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_types_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_modes_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grant_types_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_types_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Encrypted id_tokens (OIDC Core §10.2) to the client's `use: enc` key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub id_token_encryption_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub id_token_encryption_enc_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub userinfo_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub userinfo_encryption_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub userinfo_encryption_enc_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_object_signing_alg_values_supported: Vec<String>,
    /// Encrypted request objects (RFC 9101 §6.1) to our `use: enc` keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_object_encryption_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_object_encryption_enc_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_parameter_supported: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_uri_parameter_supported: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorization_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_certificate_bound_access_tokens: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls_endpoint_aliases: Option<MtlsAliases>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acr_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorization_details_types_supported: Vec<String>,
}

/// RFC 8705 §5: where a client presenting a certificate must go.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct MtlsAliases {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed_authorization_request_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_authentication_endpoint: Option<String>,
}

/// The JWE algorithms Strongroom encrypts with, where the response they
/// protect is served.
fn jwe_list(served: bool, values: &[&str]) -> Vec<String> {
    if served {
        values.iter().map(|v| (*v).to_owned()).collect()
    } else {
        Vec::new()
    }
}

fn join(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

impl ProviderMetadata {
    /// Builds the document for `issuer` from what the server offers.
    pub fn build(issuer: &str, caps: &Capabilities) -> Self {
        let at = |p: &Option<String>| p.as_deref().map(|p| join(issuer, p));
        let mtls_at = |p: &Option<String>| {
            caps.mtls_base_url
                .as_deref()
                .and_then(|base| p.as_deref().map(|p| join(base, p)))
        };
        let openid = caps.scopes.iter().any(|s| s == "openid");
        let has_token = caps.token_path.is_some();
        let auth_methods = if has_token {
            caps.token_endpoint_auth_methods.clone()
        } else {
            Vec::new()
        };
        let pkjwt = auth_methods.iter().any(|m| m == "private_key_jwt");
        let auth_algs = if pkjwt {
            caps.client_auth_signing_algs.clone()
        } else {
            Vec::new()
        };
        let mtls_aliases = caps
            .mtls_base_url
            .as_ref()
            .map(|_| MtlsAliases {
                token_endpoint: mtls_at(&caps.token_path),
                pushed_authorization_request_endpoint: mtls_at(&caps.par_path),
                userinfo_endpoint: mtls_at(&caps.userinfo_path),
                introspection_endpoint: mtls_at(&caps.introspection_path),
                revocation_endpoint: mtls_at(&caps.revocation_path),
                registration_endpoint: mtls_at(&caps.registration_path),
                backchannel_authentication_endpoint: mtls_at(&caps.backchannel_path),
            })
            .filter(|a| *a != MtlsAliases::default());
        let has_authz = caps.authorization_path.is_some();
        let jarm = caps.response_modes.iter().any(|m| m.ends_with("jwt"));
        ProviderMetadata {
            issuer: issuer.to_string(),
            jwks_uri: join(issuer, &caps.jwks_path),
            authorization_endpoint: at(&caps.authorization_path),
            token_endpoint: at(&caps.token_path),
            pushed_authorization_request_endpoint: at(&caps.par_path),
            require_pushed_authorization_requests: caps
                .par_path
                .as_ref()
                .map(|_| caps.require_pushed_authorization_requests),
            require_signed_request_object: (caps.par_path.is_some()
                && caps.require_signed_request_object)
                .then_some(true),
            userinfo_endpoint: at(&caps.userinfo_path),
            introspection_endpoint: at(&caps.introspection_path),
            revocation_endpoint: at(&caps.revocation_path),
            registration_endpoint: at(&caps.registration_path),
            backchannel_authentication_endpoint: at(&caps.backchannel_path),
            backchannel_token_delivery_modes_supported: caps
                .backchannel_path
                .as_ref()
                .map(|_| caps.backchannel_token_delivery_modes.clone())
                .unwrap_or_default(),
            backchannel_authentication_request_signing_alg_values_supported: caps
                .backchannel_path
                .as_ref()
                .map(|_| caps.backchannel_request_signing_algs.clone())
                .unwrap_or_default(),
            // CIBA §7.1: `user_code` is accepted from clients registered
            // with `backchannel_user_code_parameter` and checked by the bank.
            backchannel_user_code_parameter_supported: caps.backchannel_path.as_ref().map(|_| true),
            scopes_supported: caps.scopes.clone(),
            ui_locales_supported: if caps.authorization_path.is_some() {
                caps.ui_locales.clone()
            } else {
                Vec::new()
            },
            claims_supported: caps.claims.clone(),
            claims_parameter_supported: has_authz.then_some(caps.claims_parameter_supported),
            response_types_supported: caps.response_types.clone(),
            response_modes_supported: caps.response_modes.clone(),
            grant_types_supported: if has_token {
                caps.grant_types.clone()
            } else {
                Vec::new()
            },
            // OIDC Core §8: what clients may register as `subject_type`
            // (crate::subject); `consent` is Strongroom's, not OIDC's.
            subject_types_supported: if openid {
                crate::subject::SUBJECT_TYPES.map(String::from).to_vec()
            } else {
                Vec::new()
            },
            id_token_signing_alg_values_supported: if openid {
                caps.signing_algs.clone()
            } else {
                Vec::new()
            },
            id_token_encryption_alg_values_supported: jwe_list(openid, &JWE_ALGS),
            id_token_encryption_enc_values_supported: jwe_list(openid, &JWE_ENCS),
            // Of the algorithms userinfo may be signed with, those this
            // profile publishes keys for (UK: PS256 only).
            userinfo_signing_alg_values_supported: if openid && caps.userinfo_path.is_some() {
                caps.signing_algs
                    .iter()
                    .filter(|a| USERINFO_SIGNING_ALGS.contains(&a.as_str()))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            },
            userinfo_encryption_alg_values_supported: jwe_list(
                openid && caps.userinfo_path.is_some(),
                &JWE_ALGS,
            ),
            userinfo_encryption_enc_values_supported: jwe_list(
                openid && caps.userinfo_path.is_some(),
                &JWE_ENCS,
            ),
            request_object_signing_alg_values_supported: if caps.par_path.is_some() {
                caps.request_object_signing_algs.clone()
            } else {
                Vec::new()
            },
            request_object_encryption_alg_values_supported: if caps.par_path.is_some() {
                caps.request_object_encryption_algs.clone()
            } else {
                Vec::new()
            },
            request_object_encryption_enc_values_supported: if caps.par_path.is_some() {
                JWE_ENCS.map(str::to_owned).to_vec()
            } else {
                Vec::new()
            },
            request_parameter_supported: caps.par_path.as_ref().map(|_| true),
            request_uri_parameter_supported: caps.par_path.as_ref().map(|_| false),
            authorization_signing_alg_values_supported: if jarm {
                caps.signing_algs.clone()
            } else {
                Vec::new()
            },
            token_endpoint_auth_methods_supported: auth_methods.clone(),
            token_endpoint_auth_signing_alg_values_supported: auth_algs.clone(),
            introspection_endpoint_auth_methods_supported: caps
                .introspection_path
                .as_ref()
                .map(|_| auth_methods.clone())
                .unwrap_or_default(),
            introspection_endpoint_auth_signing_alg_values_supported: caps
                .introspection_path
                .as_ref()
                .map(|_| auth_algs.clone())
                .unwrap_or_default(),
            revocation_endpoint_auth_methods_supported: caps
                .revocation_path
                .as_ref()
                .map(|_| auth_methods.clone())
                .unwrap_or_default(),
            revocation_endpoint_auth_signing_alg_values_supported: caps
                .revocation_path
                .as_ref()
                .map(|_| auth_algs.clone())
                .unwrap_or_default(),
            code_challenge_methods_supported: if has_authz {
                vec!["S256".into()]
            } else {
                Vec::new()
            },
            dpop_signing_alg_values_supported: caps.dpop_signing_algs.clone(),
            tls_client_certificate_bound_access_tokens: caps
                .tls_client_certificate_bound_access_tokens
                .then_some(true),
            mtls_endpoint_aliases: mtls_aliases,
            authorization_response_iss_parameter_supported: has_authz.then_some(true),
            acr_values_supported: caps.acr_values.clone(),
            authorization_details_types_supported: caps.authorization_details_types.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jwks_when_nothing_else_is_served() {
        let caps = Capabilities {
            jwks_path: "/jwks".into(),
            ..Default::default()
        };
        let m = ProviderMetadata::build("https://op.example", &caps);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["issuer"], "https://op.example");
        assert_eq!(v["jwks_uri"], "https://op.example/jwks");
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 2, "advertises only what is served: {keys:?}");
    }

    #[test]
    fn mtls_aliases_point_at_the_mtls_listener() {
        let caps = Capabilities {
            jwks_path: "/jwks".into(),
            token_path: Some("/token".into()),
            par_path: Some("/par".into()),
            authorization_path: Some("/authorize".into()),
            mtls_base_url: Some("https://mtls.op.example:8444".into()),
            token_endpoint_auth_methods: vec!["private_key_jwt".into(), "tls_client_auth".into()],
            client_auth_signing_algs: vec!["PS256".into(), "ES256".into()],
            ..Default::default()
        };
        let v =
            serde_json::to_value(ProviderMetadata::build("https://op.example/", &caps)).unwrap();
        assert_eq!(v["token_endpoint"], "https://op.example/token");
        assert_eq!(
            v["mtls_endpoint_aliases"]["token_endpoint"],
            "https://mtls.op.example:8444/token"
        );
        assert_eq!(
            v["mtls_endpoint_aliases"]["pushed_authorization_request_endpoint"],
            "https://mtls.op.example:8444/par"
        );
        assert!(
            v["mtls_endpoint_aliases"]
                .get("userinfo_endpoint")
                .is_none()
        );
        assert_eq!(v["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            v["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            v["token_endpoint_auth_signing_alg_values_supported"],
            serde_json::json!(["PS256", "ES256"])
        );
    }
}

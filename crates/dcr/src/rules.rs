//! Ecosystem rule packs as data: what differs between UK Open Banking DCR
//! v3.3, Brazil Open Finance DCR, the AU CDR register and plain RFC 7591 is
//! a table of switches and lists, read by one validation pipeline.

use oauth_core::client::AuthMethod;
use serde::Deserialize;

use crate::config::RequestFormat;

/// Which pack a directory uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
pub enum RulePack {
    /// UK Open Banking DCR v3.3.
    #[serde(rename = "uk-ob")]
    #[default]
    UkOb,
    /// Brazil Open Finance DCR.
    #[serde(rename = "brazil")]
    Brazil,
    /// Australian Consumer Data Right register.
    #[serde(rename = "cdr")]
    Cdr,
    /// Plain RFC 7591 with a software statement.
    #[serde(rename = "rfc7591")]
    Rfc7591,
}

/// How RFC 7592 management calls authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Management {
    /// RFC 7592 §3: the `registration_access_token` of the response.
    RegistrationAccessToken,
    /// UK OB DCR v3.3: an access token from a client_credentials grant of
    /// that very client; a mismatch revokes the token.
    ClientCredentialsToken,
}

/// A certificate subject attribute tested against an SSA claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertBinding {
    /// Attribute OID in dotted form.
    pub oid: &'static str,
    /// Attribute name for messages.
    pub attr: &'static str,
    /// SSA claim it is tested against.
    pub claim: &'static str,
    pub test: CertTest,
}

/// How a [`CertBinding`] is tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertTest {
    /// A value of the attribute equals the claim.
    Equals,
    /// The attribute is absent, or a value of it ends with the claim
    /// (`organizationIdentifier` `PSDGB-OB-Unknown<org_id>`).
    EndsWithIfPresent,
    /// The subject has no such attribute.
    Absent,
}

/// The switches of one ecosystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub request_format: RequestFormat,
    /// The request JWT's `iss` must be the SSA's `software_id` (UK, Base62
    /// of at most 22 characters).
    pub request_iss_is_software_id: bool,
    pub auth_methods: &'static [AuthMethod],
    /// `redirect_uris` absent → all of the SSA's.
    pub redirect_uris_default_from_ssa: bool,
    /// `localhost` / loopback redirect URIs refused.
    pub forbid_localhost_redirects: bool,
    /// `jwks` by value refused (the keys must come from the directory).
    pub forbid_jwks_by_value: bool,
    /// A `jwks_uri` in the request must equal the SSA's `software_jwks_endpoint`.
    pub jwks_uri_must_match_ssa: bool,
    /// `token_endpoint_auth_signing_alg` required for `private_key_jwt`.
    pub require_auth_signing_alg: bool,
    /// SSA `org_status` must be `Active` when present.
    pub require_active_org: bool,
    /// The forms a transport certificate's subject may take, each a set of
    /// attributes tested against SSA claims; the certificate must fit one.
    pub cert_bindings: &'static [&'static [CertBinding]],
    pub management: Management,
    /// Response carries every SSA claim flattened (UK OBClientRegistrationResponse1).
    pub flatten_ssa_claims: bool,
    /// Maximum SSA age when the directory sets none (0 = none).
    pub default_max_ssa_age_secs: i64,
    /// The `fapi_profile` its clients get on a FAPI 1.0 deployment when
    /// they name none (UK: `uk-ob`); on FAPI 2.0 they keep the deployment's.
    pub fapi1_profile: Option<oauth_core::policy::Profile>,
}

const FAPI_METHODS: &[AuthMethod] = &[AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth];

const OID_CN: &str = "2.5.4.3";
const OID_OU: &str = "2.5.4.11";
const OID_UID: &str = "0.9.2342.19200300.100.1.1";

const OID_ORG_IDENTIFIER: &str = "2.5.4.97";

/// The UK's two transport certificate forms: the old Open Banking one (OU
/// = organisation id, CN = software id) and the OBWAC (the norm since
/// 2021: CN = organisation id, no OU, `organizationIdentifier`
/// `PSDGB-OB-…<org_id>`).
const UK_CERT: &[&[CertBinding]] = &[
    &[
        CertBinding {
            oid: OID_OU,
            attr: "OU",
            claim: "org_id",
            test: CertTest::Equals,
        },
        CertBinding {
            oid: OID_CN,
            attr: "CN",
            claim: "software_id",
            test: CertTest::Equals,
        },
    ],
    &[
        CertBinding {
            oid: OID_OU,
            attr: "OU",
            claim: "org_id",
            test: CertTest::Absent,
        },
        CertBinding {
            oid: OID_CN,
            attr: "CN",
            claim: "org_id",
            test: CertTest::Equals,
        },
        CertBinding {
            oid: OID_ORG_IDENTIFIER,
            attr: "organizationIdentifier",
            claim: "org_id",
            test: CertTest::EndsWithIfPresent,
        },
    ],
];

/// ICP-Brasil certificates: OU = organisation id, UID = software id.
const BR_CERT: &[&[CertBinding]] = &[&[
    CertBinding {
        oid: OID_OU,
        attr: "OU",
        claim: "org_id",
        test: CertTest::Equals,
    },
    CertBinding {
        oid: OID_UID,
        attr: "UID",
        claim: "software_id",
        test: CertTest::Equals,
    },
]];

impl RulePack {
    pub fn as_str(self) -> &'static str {
        match self {
            RulePack::UkOb => "uk-ob",
            RulePack::Brazil => "brazil",
            RulePack::Cdr => "cdr",
            RulePack::Rfc7591 => "rfc7591",
        }
    }

    /// The pack's switches.
    pub fn rules(self) -> Rules {
        match self {
            RulePack::UkOb => Rules {
                request_format: RequestFormat::Jwt,
                request_iss_is_software_id: true,
                auth_methods: FAPI_METHODS,
                redirect_uris_default_from_ssa: true,
                forbid_localhost_redirects: true,
                forbid_jwks_by_value: true,
                jwks_uri_must_match_ssa: true,
                require_auth_signing_alg: true,
                require_active_org: true,
                cert_bindings: UK_CERT,
                management: Management::ClientCredentialsToken,
                flatten_ssa_claims: true,
                default_max_ssa_age_secs: 0,
                fapi1_profile: Some(oauth_core::policy::Profile::UkOpenBanking),
            },
            RulePack::Brazil => Rules {
                request_format: RequestFormat::Json,
                request_iss_is_software_id: false,
                auth_methods: FAPI_METHODS,
                redirect_uris_default_from_ssa: false,
                forbid_localhost_redirects: true,
                forbid_jwks_by_value: true,
                jwks_uri_must_match_ssa: true,
                require_auth_signing_alg: false,
                require_active_org: true,
                cert_bindings: BR_CERT,
                management: Management::RegistrationAccessToken,
                flatten_ssa_claims: false,
                default_max_ssa_age_secs: 300,
                fapi1_profile: None,
            },
            // CDR register SSAs carry redirect_uris and jwks_uri directly
            // (mapped in `ssa::SoftwareStatement`); private_key_jwt only.
            RulePack::Cdr => Rules {
                request_format: RequestFormat::Jwt,
                request_iss_is_software_id: true,
                auth_methods: &[AuthMethod::PrivateKeyJwt],
                redirect_uris_default_from_ssa: true,
                forbid_localhost_redirects: true,
                forbid_jwks_by_value: true,
                jwks_uri_must_match_ssa: true,
                require_auth_signing_alg: true,
                require_active_org: false,
                cert_bindings: &[],
                management: Management::ClientCredentialsToken,
                flatten_ssa_claims: false,
                default_max_ssa_age_secs: 600,
                fapi1_profile: None,
            },
            RulePack::Rfc7591 => Rules {
                request_format: RequestFormat::Json,
                request_iss_is_software_id: false,
                auth_methods: &[
                    AuthMethod::PrivateKeyJwt,
                    AuthMethod::TlsClientAuth,
                    AuthMethod::SelfSignedTlsClientAuth,
                ],
                redirect_uris_default_from_ssa: false,
                forbid_localhost_redirects: false,
                forbid_jwks_by_value: false,
                jwks_uri_must_match_ssa: false,
                require_auth_signing_alg: false,
                require_active_org: false,
                cert_bindings: &[],
                management: Management::RegistrationAccessToken,
                flatten_ssa_claims: false,
                default_max_ssa_age_secs: 0,
                fapi1_profile: None,
            },
        }
    }
}

//! The provider's keys: the one place where JOSE signing, verification and
//! key rotation happen, and the one place that owns the algorithm allow-list.
//!
//! - [`alg`] — [`JwsAlg`] (what we accept and produce: PS256, ES256, EdDSA)
//!   and [`ProviderAlg`] (what our own keys are for). `none`, `HS*` and
//!   `RS*` cannot be represented, so no caller can ask for them.
//! - [`seal`] — private keys are stored sealed with the key-encryption key
//!   (AES-256-GCM), bound to their `kid` and `alg`.
//! - [`generate`] — fresh keys as [`KeyRecord`](crate::storage::KeyRecord)s,
//!   `kid` = RFC 7638 thumbprint.
//! - [`keyset`] — [`KeySet`] (keys parsed once, JWKS rendered once) behind the
//!   lock-free [`Keys`] handle the server shares between workers.
//! - [`rotation`] — first-start keys and zero-downtime rotation plans.
//! - [`verify`] — verification of other parties' JWS (client assertions,
//!   request objects, DPoP proofs, software statements).
//! - [`decrypt`] — JWEs made to our encryption keys (encrypted request
//!   objects).
//! - [`jwk`] — RFC 7638 thumbprints, public-JWK checks and key selection from
//!   a client's JWKS.

pub mod alg;
pub mod decrypt;
pub mod encrypt;
pub mod generate;
pub mod jwk;
pub mod keyset;
pub mod rotation;
pub mod seal;
pub mod verify;

pub use alg::{JwsAlg, ProviderAlg};
pub use decrypt::{JWE_ALGS, JWE_ENCS};
pub use encrypt::{ClientEncrypter, encryption_key};
pub use generate::generate_key;
pub use jwk::{
    PRIVATE_JWK_MEMBERS, candidate_keys, has_private_members, jwk_thumbprint, jwk_thumbprint_of,
    parse_public_jwk, select_key,
};
pub use keyset::{KeySet, Keys};
pub use rotation::{Retirement, missing_keys, plan_rotation};
pub use seal::KeyEncryptionKey;
pub use verify::{VerifiedJws, VerifyOptions, peek_header, verify_jws};

/// Everything that can go wrong with keys and JOSE objects.
///
/// Variants for which [`KeyError::is_internal`] is `false` describe the
/// presented token or key; callers map them to their surface's error code
/// (`invalid_client`, `invalid_request_object`, `invalid_dpop_proof`, …).
/// The internal ones are server faults (`server_error`) and their detail
/// must not reach the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The `alg` is not on the allow-list or not allowed for this use
    /// (RFC 8725 §3.1, FAPI 2.0 Security Profile §5.4).
    #[error("unsupported JWS algorithm {0:?}")]
    UnsupportedAlg(String),
    /// The algorithm does not fit the key (type, curve, size, `alg`, `use`).
    #[error("key does not fit: {0}")]
    KeyMismatch(String),
    /// The signature does not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// A JWE to our keys does not open (wrong key, altered ciphertext or
    /// tag).
    #[error("JWE decryption failed")]
    DecryptionFailed,
    /// Not a well-formed JWS, JWK or JWKS.
    #[error("malformed: {0}")]
    Malformed(String),
    /// `exp` is in the past (RFC 7519 §4.1.4).
    #[error("token expired")]
    Expired,
    /// `nbf` (RFC 7519 §4.1.5) or `iat` lies in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// A claim that must be present is absent.
    #[error("missing claim {0:?}")]
    MissingClaim(String),
    /// A claim is present but unacceptable (wrong `aud`, `iss`, too old `iat`,
    /// wrong JSON type).
    #[error("invalid claim {0}")]
    InvalidClaim(String),
    /// The `typ` header is absent or not the expected one (RFC 8725 §3.11).
    #[error("unexpected typ: expected {expected:?}, found {found:?}")]
    WrongType {
        expected: String,
        found: Option<String>,
    },
    /// A `crit` header names an extension we do not process (RFC 7515 §4.1.11).
    #[error("unsupported critical header parameter {0:?}")]
    UnsupportedCrit(String),
    /// The token names a `kid` that is not one of our keys.
    #[error("unknown key id {0:?}")]
    UnknownKid(String),
    /// No key of this algorithm may sign now (internal).
    #[error("no current signing key for {0}")]
    NoSigningKey(JwsAlg),
    /// The key-encryption key is not the one the stored keys were sealed
    /// with (internal; the server cannot start).
    #[error("the key-encryption key does not match the stored keys")]
    WrongKek,
    /// The configured key-encryption key is not 32 bytes of base64url
    /// (internal).
    #[error("invalid key-encryption key: {0}")]
    InvalidKek(String),
    /// The sealed private key was sealed under this key-encryption key but
    /// fails authentication: altered, or moved from another record (internal).
    #[error(
        "sealed private key of {kid:?} fails authentication (altered or moved between records)"
    )]
    SealBroken { kid: String },
    /// A stored key record is inconsistent (internal).
    #[error("key record {kid:?} is invalid: {reason}")]
    InvalidRecord { kid: String, reason: String },
    /// Claims or header could not be serialised (internal).
    #[error("cannot encode JOSE object: {0}")]
    Encode(String),
    /// The cryptographic library failed (internal).
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

impl KeyError {
    /// `true` for server-side faults whose detail must stay in the logs.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            KeyError::NoSigningKey(_)
                | KeyError::WrongKek
                | KeyError::InvalidKek(_)
                | KeyError::SealBroken { .. }
                | KeyError::InvalidRecord { .. }
                | KeyError::Encode(_)
                | KeyError::Crypto(_)
        )
    }
}

#[cfg(test)]
pub(crate) mod test_support;

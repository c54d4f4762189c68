//! The JOSE algorithm allow-list.
//!
//! FAPI 2.0 Security Profile §5.4 permits PS256, ES256 and EdDSA (Ed25519)
//! for JWS. Everything else is refused here: `none` and `HS*` because they
//! are the classic algorithm-confusion vectors (RFC 8725 §2.1, §3.1), `RS*`
//! because PKCS#1 v1.5 signatures are not allowed by FAPI. Because neither
//! enum has a variant for a refused algorithm, no caller can ask for one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::KeyError;

/// A JWS algorithm we accept from others and may produce (RFC 7518 §3.1,
/// RFC 8037 §3.1).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JwsAlg {
    /// RSASSA-PSS with SHA-256 (RFC 7518 §3.5), RSA keys of 2048 bits or more.
    PS256,
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
    /// Ed25519 (RFC 8037 §3.1).
    EdDSA,
}

impl JwsAlg {
    /// Every accepted algorithm, in order of preference for discovery
    /// metadata.
    pub const ALL: [JwsAlg; 3] = [JwsAlg::PS256, JwsAlg::ES256, JwsAlg::EdDSA];

    /// Parses a JOSE `alg` value. `alg` is case-sensitive (RFC 7515 §4.1.1),
    /// so `ps256` is refused like `none`, `HS256` or `RS256`.
    pub fn parse(s: &str) -> Result<JwsAlg, KeyError> {
        match s {
            "PS256" => Ok(JwsAlg::PS256),
            "ES256" => Ok(JwsAlg::ES256),
            "EdDSA" => Ok(JwsAlg::EdDSA),
            other => Err(KeyError::UnsupportedAlg(other.to_owned())),
        }
    }

    /// The `alg` value (RFC 7518 §7.1 registry name).
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::PS256 => "PS256",
            JwsAlg::ES256 => "ES256",
            JwsAlg::EdDSA => "EdDSA",
        }
    }

    /// The matching `jsonwebtoken` algorithm, for building a `Validation`
    /// from our choice rather than from the token's header.
    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            JwsAlg::PS256 => jsonwebtoken::Algorithm::PS256,
            JwsAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            JwsAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    /// The JWK `kty` a key for this algorithm has (RFC 7518 §6.1, RFC 8037 §2).
    pub fn key_type(self) -> &'static str {
        match self {
            JwsAlg::PS256 => "RSA",
            JwsAlg::ES256 => "EC",
            JwsAlg::EdDSA => "OKP",
        }
    }
}

impl fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwsAlg {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JwsAlg::parse(s)
    }
}

impl From<JwsAlg> for jsonwebtoken::Algorithm {
    fn from(alg: JwsAlg) -> Self {
        alg.to_jsonwebtoken()
    }
}

impl Serialize for JwsAlg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Deserialising goes through [`JwsAlg::parse`], so configuration and client
/// metadata naming a refused algorithm fail when they are loaded.
impl<'de> Deserialize<'de> for JwsAlg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        JwsAlg::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What one of the provider's own keys is for: the two signing algorithms
/// and one encryption algorithm (RFC 7518 §4.3) for JWE addressed to us
/// (encrypted request objects).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderAlg {
    /// Signing key, RSA 2048.
    PS256,
    /// Signing key, P-256.
    ES256,
    /// Encryption key (`use` = `enc`), RSA 2048, RSAES-OAEP with SHA-256.
    RsaOaep256,
    /// Encryption key (`use` = `enc`), RSA 2048, RSAES-OAEP with SHA-1
    /// (RFC 7518 §4.3; listed by FAPI 1.0 Advanced and UK Open Banking): a
    /// key of its own, so each published key names the one algorithm it is
    /// for (RFC 7517 §4.4) and strict clients find a key for either.
    RsaOaep,
}

impl ProviderAlg {
    /// The keys every provider keeps, one current key each.
    pub const ALL: [ProviderAlg; 4] = [
        ProviderAlg::PS256,
        ProviderAlg::ES256,
        ProviderAlg::RsaOaep256,
        ProviderAlg::RsaOaep,
    ];

    /// Parses the `alg` stored in a key record.
    pub fn parse(s: &str) -> Result<ProviderAlg, KeyError> {
        match s {
            "PS256" => Ok(ProviderAlg::PS256),
            "ES256" => Ok(ProviderAlg::ES256),
            "RSA-OAEP-256" => Ok(ProviderAlg::RsaOaep256),
            "RSA-OAEP" => Ok(ProviderAlg::RsaOaep),
            other => Err(KeyError::UnsupportedAlg(other.to_owned())),
        }
    }

    /// The JOSE `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderAlg::PS256 => "PS256",
            ProviderAlg::ES256 => "ES256",
            ProviderAlg::RsaOaep256 => "RSA-OAEP-256",
            ProviderAlg::RsaOaep => "RSA-OAEP",
        }
    }

    /// The JWK `use` (RFC 7517 §4.2): `sig` or `enc`.
    pub fn key_use(self) -> &'static str {
        match self {
            ProviderAlg::PS256 | ProviderAlg::ES256 => "sig",
            ProviderAlg::RsaOaep256 | ProviderAlg::RsaOaep => "enc",
        }
    }

    /// The JWS algorithm of a signing key; `None` for the encryption key.
    pub fn signing(self) -> Option<JwsAlg> {
        match self {
            ProviderAlg::PS256 => Some(JwsAlg::PS256),
            ProviderAlg::ES256 => Some(JwsAlg::ES256),
            ProviderAlg::RsaOaep256 | ProviderAlg::RsaOaep => None,
        }
    }

    /// The provider key type that signs with `alg`, if we hold such keys.
    pub fn for_signing(alg: JwsAlg) -> Option<ProviderAlg> {
        match alg {
            JwsAlg::PS256 => Some(ProviderAlg::PS256),
            JwsAlg::ES256 => Some(ProviderAlg::ES256),
            JwsAlg::EdDSA => None,
        }
    }
}

impl fmt::Display for ProviderAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderAlg {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderAlg::parse(s)
    }
}

impl Serialize for ProviderAlg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProviderAlg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ProviderAlg::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_accepts_only_fapi_algorithms() {
        for ok in ["PS256", "ES256", "EdDSA"] {
            assert_eq!(JwsAlg::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "none",
            "None",
            "NONE",
            "",
            "HS256",
            "HS384",
            "HS512",
            "RS256",
            "RS384",
            "RS512",
            "PS384",
            "PS512",
            "ES384",
            "ES512",
            "ES256K",
            "ps256",
            "Ed25519",
            "RSA-OAEP-256",
        ] {
            assert_eq!(
                JwsAlg::parse(bad),
                Err(KeyError::UnsupportedAlg(bad.to_owned())),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn serde_goes_through_the_allow_list() {
        let a: JwsAlg = serde_json::from_str("\"ES256\"").unwrap();
        assert_eq!(a, JwsAlg::ES256);
        assert!(serde_json::from_str::<JwsAlg>("\"RS256\"").is_err());
        assert!(serde_json::from_str::<JwsAlg>("\"none\"").is_err());
        assert_eq!(serde_json::to_string(&JwsAlg::EdDSA).unwrap(), "\"EdDSA\"");
        let p: ProviderAlg = serde_json::from_str("\"RSA-OAEP-256\"").unwrap();
        assert_eq!(p, ProviderAlg::RsaOaep256);
        assert_eq!(p.key_use(), "enc");
        assert_eq!(p.signing(), None);
    }

    #[test]
    fn maps_to_jsonwebtoken() {
        assert_eq!(
            JwsAlg::PS256.to_jsonwebtoken(),
            jsonwebtoken::Algorithm::PS256
        );
        assert_eq!(
            JwsAlg::ES256.to_jsonwebtoken(),
            jsonwebtoken::Algorithm::ES256
        );
        assert_eq!(
            JwsAlg::EdDSA.to_jsonwebtoken(),
            jsonwebtoken::Algorithm::EdDSA
        );
        for p in ProviderAlg::ALL {
            assert_eq!(ProviderAlg::parse(p.as_str()), Ok(p));
            if let Some(j) = p.signing() {
                assert_eq!(ProviderAlg::for_signing(j), Some(p));
            }
        }
    }
}

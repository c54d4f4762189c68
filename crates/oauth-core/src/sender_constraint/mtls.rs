//! Certificate-bound tokens (RFC 8705 §3) and the binding check for tokens
//! bound either way (RFC 8705 §3.1 `x5t#S256`, RFC 9449 §6.1 `jkt`).

use crate::authorization::{Confirmation, DpopProof};
use crate::cert::PeerCertificate;
use crate::error::{ErrorCode, OAuthError};
use crate::secret::{constant_time_eq, sha256_b64url};

/// RFC 8705 §3.1: the `x5t#S256` confirmation of a certificate, base64url
/// SHA-256 of its DER encoding.
pub fn x5t_s256(cert: &PeerCertificate) -> String {
    sha256_b64url(&cert.der)
}

/// Where a bound token is being used; decides the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingSite {
    /// A refresh token at the token endpoint: `invalid_grant` (RFC 6749
    /// §5.2, RFC 9449 §5, RFC 8705 §3).
    TokenEndpoint,
    /// An access token at a protected resource: `invalid_token` (RFC 6750
    /// §3.1, RFC 9449 §7.1, RFC 8705 §3).
    Resource,
}

impl BindingSite {
    fn error(self, description: &'static str) -> OAuthError {
        match self {
            BindingSite::TokenEndpoint => OAuthError::invalid_grant(description),
            BindingSite::Resource => OAuthError::new(ErrorCode::InvalidToken, description),
        }
    }
}

/// Checks that the request proves possession of what the token's `cnf`
/// names: for `jkt`, a verified DPoP proof made with that key; for
/// `x5t#S256`, the very certificate on this connection. Both are required
/// when both are set. An empty `cnf` (an unbound token) passes; whether
/// unbound tokens are acceptable is the caller's policy.
pub fn check_binding(
    cnf: &Confirmation,
    presented_cert: Option<&PeerCertificate>,
    dpop: Option<&DpopProof>,
    site: BindingSite,
) -> Result<(), OAuthError> {
    if let Some(jkt) = &cnf.jkt {
        let proof =
            dpop.ok_or_else(|| site.error("the token is DPoP-bound: a DPoP proof is required"))?;
        if !constant_time_eq(proof.jkt.as_bytes(), jkt.as_bytes()) {
            return Err(site.error("the DPoP proof is not made with the token's key"));
        }
    }
    if let Some(x5t) = &cnf.x5t_s256 {
        let cert = presented_cert.ok_or_else(|| {
            site.error("the token is certificate-bound: the client certificate is required")
        })?;
        if !constant_time_eq(x5t_s256(cert).as_bytes(), x5t.as_bytes()) {
            return Err(site.error("the client certificate is not the one the token is bound to"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_auth::test_support::{TestCa, self_signed_cert};

    fn proof(jkt: &str) -> DpopProof {
        DpopProof {
            jkt: jkt.into(),
            jti: "j".into(),
            iat: 0,
        }
    }

    #[test]
    fn thumbprint_is_sha256_of_the_der() {
        let (cert, _) = self_signed_cert("c");
        let t = x5t_s256(&cert);
        assert_eq!(t, cert.x5t_s256);
        assert_eq!(t.len(), 43);
        assert_eq!(
            t,
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert.der)
            )
        );
    }

    #[test]
    fn dpop_bound_tokens_need_a_proof_by_the_same_key() {
        let cnf = Confirmation {
            jkt: Some("jkt-1".into()),
            x5t_s256: None,
        };
        assert!(check_binding(&cnf, None, Some(&proof("jkt-1")), BindingSite::Resource).is_ok());
        for (dpop, what) in [(None, "no proof"), (Some(proof("jkt-2")), "other key")] {
            let e =
                check_binding(&cnf, None, dpop.as_ref(), BindingSite::TokenEndpoint).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_grant", "{what}");
            let e = check_binding(&cnf, None, dpop.as_ref(), BindingSite::Resource).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_token", "{what}");
            assert_eq!(e.status(), 401);
        }
    }

    #[test]
    fn certificate_bound_tokens_need_the_same_certificate() {
        let ca = TestCa::new();
        let cert = ca.issue(&[(rcgen::DnType::CommonName, "c")], vec![]);
        let other = ca.issue(&[(rcgen::DnType::CommonName, "c")], vec![]);
        let cnf = Confirmation {
            jkt: None,
            x5t_s256: Some(x5t_s256(&cert)),
        };
        assert!(check_binding(&cnf, Some(&cert), None, BindingSite::TokenEndpoint).is_ok());
        for (c, what) in [
            (None, "no certificate"),
            (Some(&other), "other certificate"),
        ] {
            let e = check_binding(&cnf, c, None, BindingSite::TokenEndpoint).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_grant", "{what}");
            let e = check_binding(&cnf, c, None, BindingSite::Resource).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_token", "{what}");
        }
        // A DPoP proof does not stand in for the certificate.
        assert!(check_binding(&cnf, None, Some(&proof("x")), BindingSite::Resource).is_err());
    }

    #[test]
    fn both_bindings_and_none() {
        let (cert, _) = self_signed_cert("c");
        let both = Confirmation {
            jkt: Some("k".into()),
            x5t_s256: Some(x5t_s256(&cert)),
        };
        assert!(
            check_binding(&both, Some(&cert), Some(&proof("k")), BindingSite::Resource).is_ok()
        );
        assert!(check_binding(&both, Some(&cert), None, BindingSite::Resource).is_err());
        assert!(check_binding(&both, None, Some(&proof("k")), BindingSite::Resource).is_err());
        assert!(check_binding(&Confirmation::default(), None, None, BindingSite::Resource).is_ok());
    }
}

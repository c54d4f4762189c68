//! Certificate-bound tokens (RFC 8705 §3): the `x5t#S256` confirmation. The
//! binding checks live where tokens are used (grant/refresh_token.rs,
//! userinfo.rs).

use crate::cert::PeerCertificate;
use crate::secret::sha256_b64url;

/// RFC 8705 §3.1: the `x5t#S256` confirmation of a certificate, base64url
/// SHA-256 of its DER encoding.
pub fn x5t_s256(cert: &PeerCertificate) -> String {
    sha256_b64url(&cert.der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_auth::test_support::self_signed_cert;

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
}

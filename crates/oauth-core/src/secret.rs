//! Machine-generated secrets: creation, hashing for storage, comparison.
//!
//! Codes, tokens, request URIs and client secrets carry 256 bits from the
//! system CSPRNG and are stored as SHA-256 (they are not guessable, so a slow
//! password hash would only cost time); argon2 is for passwords people choose.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A fresh random value of `bytes` bytes, base64url without padding
/// (RFC 6749 A.17 VSCHAR-safe).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("system CSPRNG failed");
    URL_SAFE_NO_PAD.encode(buf)
}

/// 256-bit random secret for codes, tokens, request URIs.
pub fn new_secret() -> String {
    random_token(32)
}

/// SHA-256 of a secret, base64url: what the store keeps.
pub fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, secret.as_bytes()))
}

/// SHA-256 of arbitrary bytes, base64url (thumbprints, `ath`, `at_hash` input).
pub fn sha256_b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, data))
}

/// Constant-time equality for secrets and their hashes.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Current UNIX time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_distinct_and_url_safe() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "32 bytes base64url = 43 chars");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn hash_is_sha256_base64url() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            hash_secret("abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"diff"));
        assert!(!constant_time_eq(b"short", b"longer"));
    }
}

//! Proof Key for Code Exchange (RFC 7636), `S256` only: FAPI 2.0 Security
//! Profile §5.3.2.2-5 forbids `plain`, which offers no protection once the
//! authorization request leaks.

use crate::secret::{SHA256_B64URL_LEN, constant_time_eq, is_sha256_b64url, sha256_b64url};

/// The only `code_challenge_method` accepted (RFC 7636 §4.2).
pub const S256: &str = "S256";

/// RFC 7636 §4.1: a verifier is 43 to 128 characters.
pub const VERIFIER_MIN_LEN: usize = 43;
/// RFC 7636 §4.1.
pub const VERIFIER_MAX_LEN: usize = 128;
/// RFC 7636 §4.2: BASE64URL(SHA256(verifier)) without padding is 43 characters.
pub const CHALLENGE_LEN: usize = SHA256_B64URL_LEN;

/// RFC 7636 §4.1 `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 7636 §4.1: `code-verifier = 43*128unreserved`.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (VERIFIER_MIN_LEN..=VERIFIER_MAX_LEN).contains(&verifier.len())
        && verifier.bytes().all(is_unreserved)
}

/// RFC 7636 §4.2: an `S256` challenge is the unpadded base64url encoding of
/// a SHA-256 digest: exactly 43 characters of the base64url alphabet.
pub fn is_valid_challenge(challenge: &str) -> bool {
    is_sha256_b64url(challenge)
}

/// The `S256` challenge of `verifier` (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    sha256_b64url(verifier.as_bytes())
}

/// RFC 7636 §4.6: `BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) ==
/// code_challenge`, compared in constant time. A verifier outside the
/// §4.1 syntax never matches, so a short guessable verifier cannot pass
/// even against a challenge computed from it.
pub fn verify(code_verifier: &str, code_challenge: &str) -> bool {
    if !is_valid_verifier(code_verifier) || !is_valid_challenge(code_challenge) {
        return false;
    }
    constant_time_eq(
        s256_challenge(code_verifier).as_bytes(),
        code_challenge.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const B_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const B_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(s256_challenge(B_VERIFIER), B_CHALLENGE);
        assert!(verify(B_VERIFIER, B_CHALLENGE));
    }

    #[test]
    fn wrong_verifier_or_challenge_fails() {
        let mut other = B_VERIFIER.to_owned();
        other.replace_range(0..1, "e");
        assert!(!verify(&other, B_CHALLENGE));
        let mut challenge = B_CHALLENGE.to_owned();
        challenge.replace_range(42..43, "d");
        assert!(!verify(B_VERIFIER, &challenge));
        // `plain` semantics: the verifier itself as challenge.
        assert!(!verify(B_VERIFIER, B_VERIFIER));
    }

    #[test]
    fn verifier_syntax_is_enforced() {
        assert!(is_valid_verifier(&"a".repeat(43)));
        assert!(is_valid_verifier(&"~._-Zz09".repeat(16)));
        assert!(!is_valid_verifier(&"a".repeat(42)));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(42))));
        assert!(!is_valid_verifier(&format!("{} ", "a".repeat(42))));
        assert!(!is_valid_verifier(&format!("{}é", "a".repeat(42))));
        // A short verifier never verifies, even against its own challenge.
        let short = "abc";
        assert!(!verify(short, &s256_challenge(short)));
        let long = "a".repeat(129);
        assert!(!verify(&long, &s256_challenge(&long)));
        let max = "a".repeat(128);
        assert!(verify(&max, &s256_challenge(&max)));
    }

    #[test]
    fn challenge_syntax_is_enforced() {
        assert!(is_valid_challenge(B_CHALLENGE));
        assert!(!is_valid_challenge(&B_CHALLENGE[..42]));
        assert!(!is_valid_challenge(&format!("{B_CHALLENGE}A")));
        assert!(!is_valid_challenge(&format!("{}=", &B_CHALLENGE[..42])));
        assert!(!is_valid_challenge(&format!("{}+", &B_CHALLENGE[..42])));
        assert!(!is_valid_challenge(&format!("{}/", &B_CHALLENGE[..42])));
        assert!(!is_valid_challenge(""));
    }
}

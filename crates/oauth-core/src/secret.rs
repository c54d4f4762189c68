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

/// 256-bit random secret for codes, tokens, request URIs, sessions: the
/// millisecond clock in hex, then 32 random bytes, base64url
/// ([`time_ordered`]).
pub fn new_secret() -> String {
    time_ordered(32)
}

/// Hex digits of the millisecond clock that lead a [`time_ordered`] value
/// (enough until the year 2527).
const CLOCK_DIGITS: usize = 11;

/// Length of a [`new_secret`]: the clock, then 32 bytes in base64url.
const SECRET_LEN: usize = CLOCK_DIGITS + 43;

/// `bytes` random bytes, base64url, after the millisecond clock in
/// lowercase hex.
///
/// The store keeps these values (or, for secrets, keys that begin with the
/// same clock, see [`hash_secret`]) in B-tree indexes. Keys that grow with
/// time are appended next to each other, so a batch of inserts dirties a
/// few index pages instead of one page per row, and a lookup or a spend
/// soon after issue finds its page still cached. Random keys spread every
/// insert over the whole index: under load SQLite then wrote and
/// checkpointed a page per row and read most of them back from disk.
/// The clock adds nothing secret and takes nothing from the random part.
/// Hex sorts the same way under every collation, PostgreSQL's included.
pub fn time_ordered(bytes: usize) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = format!("{ms:011x}");
    out.push_str(&random_token(bytes));
    out
}

/// The clock digits of a value that ends in a [`new_secret`] (a secret, or
/// a request URI around one).
fn clock_of(value: &str) -> Option<&str> {
    let start = value.len().checked_sub(SECRET_LEN)?;
    let tail = value.get(start..)?;
    // All ASCII, so index CLOCK_DIGITS is a char boundary.
    tail.as_bytes()[..CLOCK_DIGITS]
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        .then(|| &tail[..CLOCK_DIGITS])
}

/// What the store keeps of a secret: its SHA-256, base64url, led by the
/// secret's clock digits when it ends in a [`new_secret`] (54 characters),
/// so that keys grow with time like the secrets; 43 characters otherwise.
/// Either way it is a function of the presented value alone, and the two
/// forms differ in length, so no value can take another's key.
pub fn hash_secret(secret: &str) -> String {
    let hash = sha256_b64url(secret.as_bytes());
    match clock_of(secret) {
        Some(clock) => format!("{clock}{hash}"),
        None => hash,
    }
}

/// Whether `key` has a shape [`hash_secret`] gives: 43 base64url
/// characters, or the 11 clock digits before them.
pub fn is_secret_key(key: &str) -> bool {
    match key.len() {
        SHA256_B64URL_LEN => is_sha256_b64url(key),
        n if n == CLOCK_DIGITS + SHA256_B64URL_LEN && clock_of(key).is_some() => {
            is_sha256_b64url(&key[CLOCK_DIGITS..])
        }
        _ => false,
    }
}

/// Length of [`sha256_b64url`]'s output: 32 bytes, unpadded base64url.
pub const SHA256_B64URL_LEN: usize = 43;

/// Whether `text` has the shape of a [`sha256_b64url`] digest: 43
/// characters of the base64url alphabet.
pub fn is_sha256_b64url(text: &str) -> bool {
    text.len() == SHA256_B64URL_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of arbitrary bytes, base64url (thumbprints, `ath`, `at_hash` input).
pub fn sha256_b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, data))
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
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
        assert_eq!(a.len(), 54, "11 clock digits + 32 bytes base64url");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a[11..], b[11..], "the random part differs");
    }

    #[test]
    fn secrets_and_their_keys_grow_with_time() {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let a = new_secret();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_secret();
        let clock = u64::from_str_radix(&a[..11], 16).unwrap();
        assert!(clock >= ms && clock < ms + 1000, "{clock} vs {ms}");
        assert!(a < b, "{a} then {b}");
        assert!(hash_secret(&a) < hash_secret(&b));
        let g = time_ordered(16);
        assert_eq!(g.len(), 11 + 22);
        assert!(g[..11] >= b[..11]);
    }

    #[test]
    fn a_secret_key_is_its_clock_then_its_sha256() {
        let s = new_secret();
        let key = hash_secret(&s);
        assert_eq!(key.len(), 54);
        assert_eq!(key[..11], s[..11]);
        assert_eq!(key[11..], sha256_b64url(s.as_bytes()));
        // A request URI ends in a secret: its key leads with the same clock.
        let uri = format!("urn:ietf:params:oauth:request_uri:{s}");
        let uri_key = hash_secret(&uri);
        assert_eq!(uri_key[..11], s[..11]);
        assert_eq!(uri_key[11..], sha256_b64url(uri.as_bytes()));
    }

    #[test]
    fn values_without_a_clock_keep_a_plain_sha256() {
        for v in [
            "",
            "short",
            // Secrets and request URIs minted before the clock led them:
            // their stored keys stay what they were.
            &random_token(32),
            &format!("urn:ietf:params:oauth:request_uri:{}", random_token(32)),
            // 54 characters whose first eleven are not all lowercase hex.
            &format!("0123456789G{}", random_token(32)),
            &format!("0123456789A{}", random_token(32)),
        ] {
            let key = hash_secret(v);
            assert_eq!(key, sha256_b64url(v.as_bytes()), "{v}");
            assert_eq!(key.len(), 43);
        }
    }

    #[test]
    fn keys_are_recognised_by_shape() {
        for v in ["chosen by an admin", &new_secret(), &random_token(32)] {
            assert!(is_secret_key(&hash_secret(v)), "{v}");
        }
        for bad in [
            String::new(),
            "x".repeat(44),
            format!("{}=", &sha256_b64url(b"a")[..42]),
            format!("0123456789G{}", sha256_b64url(b"a")),
            format!("0123456789a{}!", &sha256_b64url(b"a")[..42]),
            "é".repeat(27),
        ] {
            assert!(!is_secret_key(&bad), "{bad}");
        }
    }

    #[test]
    fn any_presented_value_hashes_without_panicking() {
        // Multi-byte characters around every position the clock is read from.
        let s = new_secret();
        for i in 0..=s.len() {
            for ch in ["é", "€", "𝄞"] {
                let mut v = s.clone();
                v.insert_str(i, ch);
                let key = hash_secret(&v);
                assert!(key.len() == 43 || key.len() == 54);
                let mut w = s.clone();
                w.replace_range(i.min(s.len() - 1)..i.min(s.len() - 1) + 1, ch);
                let _ = hash_secret(&w);
            }
        }
        let _ = hash_secret(&"é".repeat(60));
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

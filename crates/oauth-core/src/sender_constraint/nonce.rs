//! Server-provided DPoP nonces (RFC 9449 §8, §9), stateless so that every
//! instance of the server issues and accepts the same values: the nonce of a
//! time window is HMAC-SHA256(secret, window counter), base64url. A nonce
//! is accepted in its own window and the next one, so a client that just
//! received one always has at least one full window to use it.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secret::constant_time_eq;

/// Default window length: five minutes.
pub const DEFAULT_NONCE_WINDOW_SECS: i64 = 300;

/// Issues and checks DPoP nonces (RFC 9449 §8). Build one at start from a secret the
/// server derives from its key-encryption key, and share it.
pub struct DpopNonces {
    key: hmac::Key,
    window_secs: i64,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopNonces")
            .field("window_secs", &self.window_secs)
            .finish_non_exhaustive()
    }
}

impl DpopNonces {
    /// Nonces keyed by `secret` (at least 32 bytes of key material is
    /// advisable), with five-minute windows.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_window(secret, DEFAULT_NONCE_WINDOW_SECS)
    }

    /// As [`DpopNonces::new`] with windows of `window_secs` (at least 1).
    pub fn with_window(secret: &[u8], window_secs: i64) -> Self {
        DpopNonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window_secs: window_secs.max(1),
        }
    }

    fn window(&self, now: i64) -> i64 {
        now.div_euclid(self.window_secs)
    }

    fn nonce_for(&self, window: i64) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Domain separation: the secret may be derived for other uses too.
        ctx.update(b"strongroom/dpop-nonce/v1");
        ctx.update(&window.to_be_bytes());
        // 128 bits are plenty for an unguessable nonce; base64url is NQCHAR
        // (RFC 9449 §8.1: %x21 / %x23-5B / %x5D-7E).
        URL_SAFE_NO_PAD.encode(&ctx.sign().as_ref()[..16])
    }

    /// The nonce to hand out at `now` (the `DPoP-Nonce` header).
    pub fn current_at(&self, now: i64) -> String {
        self.nonce_for(self.window(now))
    }

    /// The nonce to hand out now.
    pub fn current(&self) -> String {
        self.current_at(crate::secret::now())
    }

    /// Whether `nonce` was issued in the current or the previous window.
    pub fn is_valid(&self, nonce: &str, now: i64) -> bool {
        let w = self.window(now);
        [w, w.saturating_sub(1)]
            .iter()
            .any(|w| constant_time_eq(self.nonce_for(*w).as_bytes(), nonce.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_100; // a window boundary for 300 s windows

    #[test]
    fn nonce_is_stable_within_a_window_and_changes_after() {
        let n = DpopNonces::new(b"0123456789abcdef0123456789abcdef");
        assert_eq!(n.current_at(T), n.current_at(T + 299));
        assert_ne!(n.current_at(T), n.current_at(T + 300));
        assert_ne!(n.current_at(T), n.current_at(T - 1));
    }

    #[test]
    fn accepts_current_and_previous_window_only() {
        let n = DpopNonces::new(b"secret-one-secret-one-secret-one");
        let issued = n.current_at(T + 10);
        assert!(n.is_valid(&issued, T + 10));
        assert!(n.is_valid(&issued, T + 299));
        assert!(n.is_valid(&issued, T + 300), "previous window");
        assert!(n.is_valid(&issued, T + 599));
        assert!(!n.is_valid(&issued, T + 600), "two windows later");
        assert!(!n.is_valid(&issued, T - 1), "a future window's nonce");
        assert!(!n.is_valid("", T));
        assert!(!n.is_valid("not-a-nonce", T));
    }

    #[test]
    fn instances_with_the_same_secret_agree_and_others_do_not() {
        let a = DpopNonces::new(b"shared-secret-shared-secret-1234");
        let b = DpopNonces::new(b"shared-secret-shared-secret-1234");
        let c = DpopNonces::new(b"another-secret-another-secret-12");
        assert_eq!(a.current_at(T), b.current_at(T));
        assert!(b.is_valid(&a.current_at(T), T));
        assert!(!c.is_valid(&a.current_at(T), T));
    }

    #[test]
    fn nonce_uses_nqchar_only() {
        let n = DpopNonces::new(b"k");
        for t in [0, T, -5, i64::MAX, i64::MIN] {
            let v = n.current_at(t);
            assert!(!v.is_empty());
            assert!(
                v.bytes()
                    .all(|c| c == 0x21 || (0x23..=0x5B).contains(&c) || (0x5D..=0x7E).contains(&c)),
                "{v}"
            );
        }
        assert!(!format!("{n:?}").contains("k\""));
    }
}

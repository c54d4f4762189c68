//! Private keys at rest: AES-256-GCM under the key-encryption key (KEK).
//!
//! Sealed layout (version 1):
//!
//! ```text
//! 0x01 | kek_id (8) | nonce (12, random) | ciphertext | tag (16)
//! ```
//!
//! - `kek_id` is the first 8 bytes of HMAC-SHA256(KEK, label). It lets
//!   [`KeyEncryptionKey::open`] tell "this is the wrong KEK" (the operator
//!   configured another key: [`KeyError::WrongKek`]) from "this blob was
//!   altered or copied from another record" ([`KeyError::SealBroken`]). It
//!   reveals nothing usable about the KEK.
//! - The AAD binds the blob to its record's `kid` and `alg`, so someone with
//!   write access to the key table cannot move a private key to another
//!   record or turn an encryption key into a signing key (key separation,
//!   RFC 7517 §4.2).
//! - Random 96-bit nonces are safe here: a KEK seals a handful of keys per
//!   rotation, far below the 2^32 messages NIST SP 800-38D §8.3 allows.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::{Zeroize, Zeroizing};

use super::{KeyError, ProviderAlg};

const VERSION: u8 = 1;
const KEK_ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEK_ID_LEN;
const KEK_ID_LABEL: &[u8] = b"strongroom key-encryption-key id v1";
const AAD_LABEL: &[u8] = b"strongroom sealed private key v1";
const SETTING_AAD_LABEL: &[u8] = b"strongroom sealed setting v1";

/// The 256-bit key that seals the provider's private keys in the database.
/// Configured as 43 characters of base64url (no padding).
pub struct KeyEncryptionKey {
    key: Zeroizing<[u8; 32]>,
    id: [u8; KEK_ID_LEN],
}

impl KeyEncryptionKey {
    /// Length of the key in bytes.
    pub const LEN: usize = 32;

    /// Wraps raw key bytes.
    pub fn from_bytes(mut bytes: [u8; 32]) -> KeyEncryptionKey {
        let key = Zeroizing::new(bytes);
        bytes.zeroize();
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key[..]), KEK_ID_LABEL);
        let mut id = [0u8; KEK_ID_LEN];
        id.copy_from_slice(&tag.as_ref()[..KEK_ID_LEN]);
        KeyEncryptionKey { key, id }
    }

    /// A fresh key from the system CSPRNG (dev mode and `strongroom keys
    /// new-kek`). Like [`crate::secret::random_token`], it panics only if
    /// the operating system's CSPRNG fails, when nothing secret can be made.
    pub fn generate() -> KeyEncryptionKey {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("system CSPRNG failed");
        KeyEncryptionKey::from_bytes(bytes)
    }

    /// Parses the configured value: base64url without padding, surrounding
    /// whitespace (a trailing newline in a secrets file) ignored.
    pub fn from_base64url(s: &str) -> Result<KeyEncryptionKey, KeyError> {
        let decoded = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(s.trim())
                .map_err(|_| KeyError::InvalidKek("not base64url without padding".into()))?,
        );
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            KeyError::InvalidKek(format!("expected 32 bytes, got {}", decoded.len()))
        })?;
        Ok(KeyEncryptionKey::from_bytes(bytes))
    }

    /// The key as base64url without padding, for writing it once to a
    /// secrets file. Treat the result as a secret.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.key[..])
    }

    /// A 32-byte secret for another purpose, derived from this key with
    /// HMAC-SHA256 over a purpose label (so every instance sharing the
    /// key-encryption key derives the same value, and purposes never share
    /// a secret).
    pub fn derive_secret(&self, purpose: &[u8]) -> Zeroizing<Vec<u8>> {
        let mut label = b"strongroom derive\0".to_vec();
        label.extend_from_slice(purpose);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.key[..]), &label);
        Zeroizing::new(tag.as_ref().to_vec())
    }

    fn aead(&self) -> Result<RandomizedNonceKey, KeyError> {
        RandomizedNonceKey::new(&AES_256_GCM, &self.key[..])
            .map_err(|_| KeyError::Crypto("AES-256-GCM key setup failed".into()))
    }

    fn aad(header: &[u8], kid: &str, alg: ProviderAlg) -> Vec<u8> {
        let mut aad =
            Vec::with_capacity(AAD_LABEL.len() + header.len() + alg.as_str().len() + kid.len() + 3);
        aad.extend_from_slice(AAD_LABEL);
        aad.push(0);
        aad.extend_from_slice(header);
        aad.extend_from_slice(alg.as_str().as_bytes());
        aad.push(0);
        aad.extend_from_slice(kid.as_bytes());
        aad
    }

    /// Seals a PKCS#8 private key for the record `kid` / `alg`.
    pub fn seal(&self, kid: &str, alg: ProviderAlg, pkcs8_der: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.seal_aad(|header| Self::aad(header, kid, alg), pkcs8_der)
    }

    fn setting_aad(header: &[u8], name: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SETTING_AAD_LABEL.len() + header.len() + name.len() + 1);
        aad.extend_from_slice(SETTING_AAD_LABEL);
        aad.push(0);
        aad.extend_from_slice(header);
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    /// Seals a settings document that holds secrets (the admin API's hook
    /// configuration), bound to its `name`: the same layout as a private
    /// key, another AAD label, so neither can pass for the other.
    pub fn seal_setting(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.seal_aad(|header| Self::setting_aad(header, name), plain)
    }

    /// Opens a blob of [`seal_setting`](Self::seal_setting) for `name`.
    pub fn open_setting(&self, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.open_aad(name, |header| Self::setting_aad(header, name), sealed)
    }

    fn seal_aad(
        &self,
        aad: impl FnOnce(&[u8]) -> Vec<u8>,
        pkcs8_der: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let mut header = [0u8; HEADER_LEN];
        header[0] = VERSION;
        header[1..].copy_from_slice(&self.id);
        let aad = aad(&header);

        let mut in_out = Zeroizing::new(Vec::with_capacity(pkcs8_der.len() + TAG_LEN));
        in_out.extend_from_slice(pkcs8_der);
        let nonce = self
            .aead()?
            .seal_in_place_append_tag(Aad::from(&aad[..]), &mut *in_out)
            .map_err(|_| KeyError::Crypto("AES-256-GCM seal failed".into()))?;

        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + in_out.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// Opens a blob made by [`seal`](Self::seal) for the same `kid` and
    /// `alg`. The plaintext is wiped when dropped.
    ///
    /// Errors: [`KeyError::WrongKek`] if it was sealed under another KEK,
    /// [`KeyError::SealBroken`] if it was altered or belongs to another
    /// record, [`KeyError::InvalidRecord`] if it is not a sealed blob at all.
    pub fn open(
        &self,
        kid: &str,
        alg: ProviderAlg,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.open_aad(kid, |header| Self::aad(header, kid, alg), sealed)
    }

    fn open_aad(
        &self,
        kid: &str,
        aad: impl FnOnce(&[u8]) -> Vec<u8>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return Err(KeyError::InvalidRecord {
                kid: kid.to_owned(),
                reason: "sealed private key is truncated".into(),
            });
        }
        let (header, rest) = sealed.split_at(HEADER_LEN);
        if header[0] != VERSION {
            return Err(KeyError::InvalidRecord {
                kid: kid.to_owned(),
                reason: format!("unknown seal version {}", header[0]),
            });
        }
        if !crate::secret::constant_time_eq(&header[1..], &self.id) {
            return Err(KeyError::WrongKek);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| KeyError::Crypto("bad nonce length".into()))?;
        let aad = aad(header);

        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain_len = self
            .aead()?
            .open_in_place(nonce, Aad::from(&aad[..]), &mut buf[..])
            .map_err(|_| KeyError::SealBroken {
                kid: kid.to_owned(),
            })?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("key", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_sealed_to_their_name_apart_from_keys() {
        let kek = KeyEncryptionKey::from_bytes([9u8; 32]);
        let sealed = kek.seal_setting("hooks", b"{\"secret\":1}").unwrap();
        assert_eq!(
            &*kek.open_setting("hooks", &sealed).unwrap(),
            b"{\"secret\":1}"
        );
        assert!(
            kek.open_setting("ciba", &sealed).is_err(),
            "bound to its name"
        );
        assert!(
            kek.open("hooks", ProviderAlg::ES256, &sealed).is_err(),
            "not a key"
        );
        let other = KeyEncryptionKey::from_bytes([8u8; 32]);
        assert!(matches!(
            other.open_setting("hooks", &sealed),
            Err(KeyError::WrongKek)
        ));
    }

    #[test]
    fn derived_secrets_are_stable_and_separated_by_purpose() {
        let kek = KeyEncryptionKey::from_bytes([7u8; 32]);
        let a = kek.derive_secret(b"dpop");
        assert_eq!(a.len(), 32);
        assert_eq!(
            *a,
            *KeyEncryptionKey::from_bytes([7u8; 32]).derive_secret(b"dpop")
        );
        assert_ne!(*a, *kek.derive_secret(b"other"));
        assert_ne!(
            *a,
            *KeyEncryptionKey::from_bytes([8u8; 32]).derive_secret(b"dpop")
        );
    }

    #[test]
    fn seal_open_round_trip() {
        let kek = KeyEncryptionKey::generate();
        let sealed = kek
            .seal("kid-1", ProviderAlg::ES256, b"pkcs8 bytes")
            .unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + NONCE_LEN + 11 + TAG_LEN);
        assert!(!sealed.windows(11).any(|w| w == b"pkcs8 bytes"));
        let opened = kek.open("kid-1", ProviderAlg::ES256, &sealed).unwrap();
        assert_eq!(&opened[..], b"pkcs8 bytes");
        // A fresh nonce each time.
        assert_ne!(
            sealed,
            kek.seal("kid-1", ProviderAlg::ES256, b"pkcs8 bytes")
                .unwrap()
        );
    }

    #[test]
    fn wrong_kek_is_reported_as_such() {
        let kek = KeyEncryptionKey::generate();
        let other = KeyEncryptionKey::generate();
        let sealed = kek.seal("kid-1", ProviderAlg::PS256, b"secret").unwrap();
        assert_eq!(
            other.open("kid-1", ProviderAlg::PS256, &sealed),
            Err(KeyError::WrongKek)
        );
        assert!(KeyError::WrongKek.is_internal());
    }

    #[test]
    fn blob_moved_to_another_record_fails() {
        let kek = KeyEncryptionKey::generate();
        let sealed = kek.seal("kid-1", ProviderAlg::PS256, b"secret").unwrap();
        assert_eq!(
            kek.open("kid-2", ProviderAlg::PS256, &sealed),
            Err(KeyError::SealBroken {
                kid: "kid-2".into()
            })
        );
        // Same kid, different use: an encryption key cannot become a signing key.
        assert!(matches!(
            kek.open("kid-1", ProviderAlg::RsaOaep256, &sealed),
            Err(KeyError::SealBroken { .. })
        ));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            kek.open("kid-1", ProviderAlg::PS256, &tampered),
            Err(KeyError::SealBroken { .. })
        ));
        assert!(matches!(
            kek.open("kid-1", ProviderAlg::PS256, &sealed[..10]),
            Err(KeyError::InvalidRecord { .. })
        ));
    }

    #[test]
    fn base64url_round_trip_and_validation() {
        let kek = KeyEncryptionKey::generate();
        let text = kek.to_base64url();
        assert_eq!(text.len(), 43);
        let again = KeyEncryptionKey::from_base64url(&format!("{text}\n")).unwrap();
        let sealed = kek.seal("k", ProviderAlg::ES256, b"x").unwrap();
        assert_eq!(
            &again.open("k", ProviderAlg::ES256, &sealed).unwrap()[..],
            b"x"
        );

        assert!(matches!(
            KeyEncryptionKey::from_base64url("c2hvcnQ"),
            Err(KeyError::InvalidKek(_))
        ));
        assert!(matches!(
            KeyEncryptionKey::from_base64url("not base64!"),
            Err(KeyError::InvalidKek(_))
        ));
        assert!(!format!("{kek:?}").contains(&text));
    }
}

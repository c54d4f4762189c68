//! Shared test fixtures: RSA key generation is slow enough that tests share
//! one generated key of each kind.

use std::sync::OnceLock;

use super::{KeyEncryptionKey, ProviderAlg, generate_key};
use crate::storage::KeyRecord;

/// A fixed time, far from the epoch so `now - x` never goes negative.
pub(crate) const T0: i64 = 1_700_000_000;

pub(crate) fn kek() -> KeyEncryptionKey {
    KeyEncryptionKey::from_bytes([7u8; 32])
}

pub(crate) struct Fixture {
    pub ps256: KeyRecord,
    pub es256: KeyRecord,
    pub enc: KeyRecord,
    pub enc_oaep: KeyRecord,
}

impl Fixture {
    pub(crate) fn records(&self) -> Vec<KeyRecord> {
        vec![
            self.ps256.clone(),
            self.es256.clone(),
            self.enc.clone(),
            self.enc_oaep.clone(),
        ]
    }
}

pub(crate) fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let k = kek();
        Fixture {
            ps256: generate_key(ProviderAlg::PS256, &k, T0).unwrap(),
            es256: generate_key(ProviderAlg::ES256, &k, T0).unwrap(),
            enc: generate_key(ProviderAlg::RsaOaep256, &k, T0).unwrap(),
            enc_oaep: generate_key(ProviderAlg::RsaOaep, &k, T0).unwrap(),
        }
    })
}

//! First-start keys and zero-downtime rotation.
//!
//! A rotation never leaves a moment without a signer and never signs with
//! a key relying parties cannot have seen:
//!
//! ```text
//! now                      T = now + delay                 T + retention
//!  |-- new key published ----|-- new key signs ---------------------------->
//!  |-- old key signs --------|-- old key verifies, published --|  (gone)
//! ```
//!
//! Both functions return records and retirements; the caller stores them in
//! one transaction with [`KeyRepository::rotate_keys`](crate::storage::KeyRepository::rotate_keys).

use super::keyset::is_active;
use super::{KeyEncryptionKey, KeyError, ProviderAlg, generate_key};
use crate::storage::KeyRecord;

/// `(kid, retired_at, expires_at)`, as
/// [`KeyRepository::rotate_keys`](crate::storage::KeyRepository::rotate_keys) takes it.
pub type Retirement = (String, i64, i64);

fn live(existing: &[KeyRecord], now: i64) -> impl Iterator<Item = &KeyRecord> {
    existing
        .iter()
        .filter(move |r| r.expires_at.is_none_or(|e| e > now))
}

/// Opens every live key with `kek` before anything new is sealed with it, so
/// a wrong key-encryption key fails with [`KeyError::WrongKek`] instead of
/// leaving the table with keys under two different KEKs.
fn check_kek(existing: &[KeyRecord], kek: &KeyEncryptionKey, now: i64) -> Result<(), KeyError> {
    for rec in live(existing, now) {
        let alg = ProviderAlg::parse(&rec.alg).map_err(|_| KeyError::InvalidRecord {
            kid: rec.kid.clone(),
            reason: format!("unknown alg {:?}", rec.alg),
        })?;
        kek.open(&rec.kid, alg, &rec.private_sealed)?;
    }
    Ok(())
}

/// The keys to create at start: one for each [`ProviderAlg`] that has no key
/// active at `now` (activated, not retired, not expired). A key that is only
/// scheduled for later does not count, since something must sign now; the
/// new key is superseded when the scheduled one activates.
pub fn missing_keys(
    existing: &[KeyRecord],
    kek: &KeyEncryptionKey,
    now: i64,
) -> Result<Vec<KeyRecord>, KeyError> {
    check_kek(existing, kek, now)?;
    let mut out = Vec::new();
    for alg in ProviderAlg::ALL {
        let usable = live(existing, now).any(|r| r.alg == alg.as_str() && is_active(r, now));
        if !usable {
            out.push(generate_key(alg, kek, now)?);
        }
    }
    Ok(out)
}

/// Plans a rotation (`strongroom keys rotate`) and returns `(insert,
/// retire)` for `rotate_keys`: a new key per [`ProviderAlg`], published at
/// once and active from `T = now + activation_delay_secs`, so relying
/// parties that cache our JWKS (OpenID Connect Core §10.1.1) have it before
/// they see a token signed with it.
///
/// Every live key of the same algorithm that would still be in service at
/// `T` (not retired, or retired after `T`) is retired at `T` and expires at
/// `T + verification_retention_secs` (negative durations count as 0): it
/// keeps signing until the new key takes over, then stays published for
/// verification until everything it signed has expired. Keys already
/// retired by `T` keep their dates. A retired encryption key leaves the
/// JWKS at `T` (see [`KeySet::build`](super::KeySet::build)).
///
/// A key still pending from an earlier rotation keeps its activation time
/// and is retired at `T` like the others, so it signs between its own
/// activation and `T` if that comes first, and never otherwise. This way a
/// second rotation before the first completes never opens a gap without a
/// signer and never brings forward a key relying parties may not have yet.
pub fn plan_rotation(
    existing: &[KeyRecord],
    kek: &KeyEncryptionKey,
    now: i64,
    activation_delay_secs: i64,
    verification_retention_secs: i64,
) -> Result<(Vec<KeyRecord>, Vec<Retirement>), KeyError> {
    check_kek(existing, kek, now)?;
    let takeover = now.saturating_add(activation_delay_secs.max(0));
    let expiry = takeover.saturating_add(verification_retention_secs.max(0));

    let mut insert = Vec::new();
    let mut retire = Vec::new();
    for alg in ProviderAlg::ALL {
        let mut key = generate_key(alg, kek, now)?;
        key.active_from = takeover;
        insert.push(key);
        for rec in live(existing, now).filter(|r| r.alg == alg.as_str()) {
            if rec.retired_at.is_none_or(|r| r > takeover) {
                retire.push((rec.kid.clone(), takeover, expiry));
            }
        }
    }
    Ok((insert, retire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::{T0, fixture, kek};
    use crate::keys::{JwsAlg, KeySet, VerifyOptions};
    use serde_json::{Value, json};

    struct Plan {
        insert: Vec<KeyRecord>,
        retire: Vec<Retirement>,
    }

    fn plan(existing: &[KeyRecord], now: i64, delay: i64, retain: i64) -> Plan {
        let (insert, retire) = plan_rotation(existing, &kek(), now, delay, retain).unwrap();
        Plan { insert, retire }
    }

    /// What a store does with a plan.
    fn apply(existing: &[KeyRecord], plan: &Plan) -> Vec<KeyRecord> {
        let mut out: Vec<KeyRecord> = existing
            .iter()
            .cloned()
            .map(|mut r| {
                if let Some((_, ret, exp)) = plan.retire.iter().find(|(k, _, _)| *k == r.kid) {
                    r.retired_at = Some(*ret);
                    r.expires_at = Some(*exp);
                }
                r
            })
            .collect();
        out.extend(plan.insert.iter().cloned());
        out
    }

    fn jwks_kids(set: &KeySet) -> Vec<String> {
        let v: Value = serde_json::from_slice(&set.jwks_json()).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn first_start_generates_all_then_nothing() {
        let k = kek();
        let created = missing_keys(&[], &k, T0).unwrap();
        let algs: Vec<&str> = created.iter().map(|r| r.alg.as_str()).collect();
        assert_eq!(algs, ["PS256", "ES256", "RSA-OAEP-256", "RSA-OAEP"]);
        assert!(
            missing_keys(&fixture().records(), &k, T0)
                .unwrap()
                .is_empty()
        );

        // An upgrade that finds signing keys but no encryption keys adds only those.
        let f = fixture();
        let partial = vec![f.ps256.clone(), f.es256.clone()];
        let added = missing_keys(&partial, &k, T0).unwrap();
        let algs: Vec<&str> = added.iter().map(|r| r.alg.as_str()).collect();
        assert_eq!(algs, ["RSA-OAEP-256", "RSA-OAEP"]);

        // A wrong KEK generates nothing.
        let other = KeyEncryptionKey::from_bytes([9u8; 32]);
        assert_eq!(missing_keys(&partial, &other, T0), Err(KeyError::WrongKek));
    }

    #[test]
    fn rotation_timeline() {
        const DELAY: i64 = 3600;
        const RETAIN: i64 = 86_400;
        let f = fixture();
        let k = kek();
        let now = T0 + 100;
        let before = KeySet::build(f.records(), &k, now).unwrap();
        let old_token = before
            .sign(JwsAlg::PS256, None, &json!({"exp": now + 7200}))
            .unwrap();

        let plan = plan(&f.records(), now, DELAY, RETAIN);
        assert_eq!(plan.insert.len(), 4);
        let takeover = now + DELAY;
        for r in &plan.insert {
            assert_eq!(r.active_from, takeover);
            assert_eq!(r.created_at, now);
        }
        let mut retired: Vec<&str> = plan.retire.iter().map(|(k, _, _)| k.as_str()).collect();
        retired.sort_unstable();
        let mut expected = vec![
            f.ps256.kid.as_str(),
            f.es256.kid.as_str(),
            f.enc.kid.as_str(),
            f.enc_oaep.kid.as_str(),
        ];
        expected.sort_unstable();
        assert_eq!(retired, expected);
        assert!(
            plan.retire
                .iter()
                .all(|(_, r, e)| *r == takeover && *e == takeover + RETAIN)
        );

        let table = apply(&f.records(), &plan);
        let new_ps = &plan.insert[0];
        let new_enc = &plan.insert[2];

        // Right after: new keys published, old keys still sign.
        let t1 = KeySet::build(&table, &k, now + 1).unwrap();
        assert_eq!(t1.signing_kid(JwsAlg::PS256), Some(f.ps256.kid.as_str()));
        let kids = jwks_kids(&t1);
        assert_eq!(kids.len(), 8);
        assert!(kids.contains(&new_ps.kid) && kids.contains(&new_enc.kid));
        assert_eq!(t1.next_change(), Some(takeover));
        assert!(!t1.needs_refresh(takeover - 1));
        assert!(t1.needs_refresh(takeover));

        // After activation: the new key signs, the old still verifies and is published.
        let t2 = KeySet::build(&table, &k, takeover).unwrap();
        assert_eq!(t2.signing_kid(JwsAlg::PS256), Some(new_ps.kid.as_str()));
        assert_eq!(
            t2.signing_kid(JwsAlg::ES256),
            Some(plan.insert[1].kid.as_str())
        );
        let token = t2
            .sign(JwsAlg::PS256, None, &json!({"exp": takeover + 60}))
            .unwrap();
        assert_eq!(
            crate::keys::peek_header(&token).unwrap()["kid"],
            new_ps.kid.as_str()
        );
        assert!(t2.verify(&old_token, &VerifyOptions::new(takeover)).is_ok());
        let kids = jwks_kids(&t2);
        assert!(kids.contains(&f.ps256.kid) && kids.contains(&f.es256.kid));
        // The retired encryption key is withdrawn so clients stop encrypting to it.
        assert!(!kids.contains(&f.enc.kid) && !kids.contains(&f.enc_oaep.kid));
        assert_eq!(kids.len(), 6);
        assert_eq!(kids[0], new_ps.kid);
        assert_eq!(t2.next_change(), Some(takeover + RETAIN));

        // After retention: the old keys are gone entirely.
        let t3 = KeySet::build(&table, &k, takeover + RETAIN).unwrap();
        let kids = jwks_kids(&t3);
        assert_eq!(kids.len(), 4);
        assert!(!kids.contains(&f.ps256.kid));
        assert!(!t3.has_verification_key(&f.ps256.kid));
        assert_eq!(t3.next_change(), None);
        assert!(matches!(
            t3.verify(
                &old_token,
                &VerifyOptions::new(takeover + RETAIN).without_exp()
            ),
            Err(KeyError::UnknownKid(_))
        ));
        assert!(
            missing_keys(&table, &k, takeover + RETAIN)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn second_rotation_before_the_first_completes() {
        let f = fixture();
        let k = kek();
        // First rotation with a long delay, second with a short one.
        let p1 = plan(&f.records(), T0, 7200, 1000);
        let table = apply(&f.records(), &p1);
        let p2 = plan(&table, T0 + 60, 600, 1000);
        let takeover2 = T0 + 660;
        // Old keys and the still-pending first-round keys retire at the second takeover.
        assert_eq!(p2.retire.len(), 8);
        assert!(
            p2.retire
                .iter()
                .all(|(_, r, e)| *r == takeover2 && *e == takeover2 + 1000)
        );
        let table = apply(&table, &p2);
        // Before takeover2 the original keys sign; from it, the second round; never a gap.
        for t in [
            T0 + 61,
            takeover2 - 1,
            takeover2,
            T0 + 7200,
            takeover2 + 1000,
        ] {
            let set = KeySet::build(&table, &k, t).unwrap();
            assert_eq!(
                set.signing_algs(),
                vec![JwsAlg::PS256, JwsAlg::ES256],
                "at {t}"
            );
            let want = if t < takeover2 {
                &f.ps256.kid
            } else {
                &p2.insert[0].kid
            };
            assert_eq!(
                set.signing_kid(JwsAlg::PS256),
                Some(want.as_str()),
                "at {t}"
            );
        }
        // The first round's PS256 key never signed and is gone after retention.
        let set = KeySet::build(&table, &k, takeover2 + 1000).unwrap();
        assert!(!set.has_verification_key(&p1.insert[0].kid));
    }

    #[test]
    fn rotation_with_wrong_kek_fails_before_generating() {
        let other = KeyEncryptionKey::from_bytes([9u8; 32]);
        assert_eq!(
            plan_rotation(&fixture().records(), &other, T0, 1, 1),
            Err(KeyError::WrongKek)
        );
    }
}

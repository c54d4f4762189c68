//! What one core allows: JWS sign/verify rates for PS256 and ES256 with the
//! code the server signs and verifies with (`oauth_core::keys`), and argon2id
//! password checks with the server's own hasher (`strongroom::users`).

use std::time::{Duration, Instant};

use oauth_core::keys::{
    JwsAlg, KeyEncryptionKey, KeySet, ProviderAlg, VerifyOptions, generate_key,
};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct CryptoLimits {
    pub ps256_sign_per_sec: f64,
    pub ps256_verify_per_sec: f64,
    pub es256_sign_per_sec: f64,
    pub es256_verify_per_sec: f64,
    pub argon2_hashes_per_sec: f64,
}

fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    // Warm up once (lazy init, caches), then count whole operations.
    op();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget || n < 3 {
        op();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Measures on the calling thread (one core).
pub fn measure(budget: Duration) -> CryptoLimits {
    let kek = KeyEncryptionKey::generate();
    let now = oauth_core::secret::now();
    let records = vec![
        generate_key(ProviderAlg::PS256, &kek, now).expect("PS256 key"),
        generate_key(ProviderAlg::ES256, &kek, now).expect("ES256 key"),
    ];
    let set = KeySet::build(&records, &kek, now).expect("key set");
    let claims = serde_json::json!({
        "iss": "https://localhost:8443", "sub": "tpp-bench", "aud": "https://localhost:8443",
        "iat": now, "exp": now + 60, "jti": "bench-jti-0123456789",
    });
    let opts = VerifyOptions::new(now);
    let one = |alg: JwsAlg| {
        let token = set.sign(alg, None, &claims).expect("sign");
        let sign = rate(budget, || {
            std::hint::black_box(set.sign(alg, None, &claims).expect("sign"));
        });
        let verify = rate(budget, || {
            std::hint::black_box(set.verify(&token, &opts).expect("verify"));
        });
        (sign, verify)
    };
    let (ps_s, ps_v) = one(JwsAlg::PS256);
    let (es_s, es_v) = one(JwsAlg::ES256);
    let argon2 = rate(budget, || {
        std::hint::black_box(strongroom::users::hash_password("correct horse").expect("argon2"));
    });
    CryptoLimits {
        ps256_sign_per_sec: ps_s,
        ps256_verify_per_sec: ps_v,
        es256_sign_per_sec: es_s,
        es256_verify_per_sec: es_v,
        argon2_hashes_per_sec: argon2,
    }
}

/// Signature work the server does per request (or per flow) of a case.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SigWork {
    pub es256_verify: u32,
    pub ps256_sign: u32,
}

impl CryptoLimits {
    /// Requests per second `cores` cores could serve if they did nothing
    /// but this case's signature work; `None` when the case signs nothing.
    pub fn limit(&self, work: SigWork, cores: f64) -> Option<f64> {
        self.sig_secs(work).map(|secs| cores / secs)
    }

    /// CPU seconds one request's signature work takes on one core; `None`
    /// when the case signs nothing.
    pub fn sig_secs(&self, work: SigWork) -> Option<f64> {
        let secs = work.es256_verify as f64 / self.es256_verify_per_sec
            + work.ps256_sign as f64 / self.ps256_sign_per_sec;
        (secs > 0.0).then_some(secs)
    }

    /// The server's own CPU per request as a multiple of the request's
    /// signature work: 1× would be a server that does nothing but verify and
    /// sign. Unlike the share of the crypto limit, this leaves out the load
    /// driver, which shares the cores.
    pub fn cpu_over_sig(
        &self,
        work: SigWork,
        server_cpu_percent: f64,
        req_per_sec: f64,
    ) -> Option<f64> {
        let sig = self.sig_secs(work)?;
        (req_per_sec > 0.0).then(|| server_cpu_percent / 100.0 / req_per_sec / sig)
    }

    /// Completed fresh-login flows per second when each adds one argon2 check
    /// to a session flow that runs at `session_flows_per_sec`, on `cores`.
    pub fn fresh_login_rate(&self, session_flows_per_sec: f64, cores: f64) -> f64 {
        if session_flows_per_sec <= 0.0 {
            return 0.0;
        }
        1.0 / (1.0 / session_flows_per_sec + 1.0 / (self.argon2_hashes_per_sec * cores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token case's work: the client assertion and the DPoP proof.
    const TWO_VERIFIES: SigWork = SigWork {
        es256_verify: 2,
        ps256_sign: 0,
    };

    fn fixed() -> CryptoLimits {
        CryptoLimits {
            ps256_sign_per_sec: 1000.0,
            ps256_verify_per_sec: 30000.0,
            es256_sign_per_sec: 40000.0,
            es256_verify_per_sec: 10000.0,
            argon2_hashes_per_sec: 20.0,
        }
    }

    #[test]
    fn limit_adds_the_costs_of_each_signature() {
        let l = fixed();
        assert!((l.limit(TWO_VERIFIES, 2.0).unwrap() - 10000.0).abs() < 1e-6);
        let flow = SigWork {
            es256_verify: 4,
            ps256_sign: 1,
        };
        // 4/10000 + 1/1000 = 1.4 ms per flow on one core.
        assert!((l.limit(flow, 1.0).unwrap() - 1.0 / 0.0014).abs() < 1e-6);
        assert_eq!(l.limit(SigWork::default(), 2.0), None);
    }

    #[test]
    fn server_cpu_is_compared_with_its_signature_work() {
        let l = fixed();
        // 150 % CPU at 3 000 req/s is 500 µs a request; two verifications
        // at 10 000/s are 200 µs: 2.5×.
        let x = l.cpu_over_sig(TWO_VERIFIES, 150.0, 3000.0).unwrap();
        assert!((x - 2.5).abs() < 1e-9, "{x}");
        assert_eq!(l.cpu_over_sig(SigWork::default(), 150.0, 3000.0), None);
        assert_eq!(l.cpu_over_sig(TWO_VERIFIES, 150.0, 0.0), None);
    }

    #[test]
    fn fresh_logins_are_bounded_by_argon2() {
        let l = fixed();
        let r = l.fresh_login_rate(1000.0, 2.0);
        assert!(r < 40.0 && r > 38.0, "{r}");
        assert_eq!(l.fresh_login_rate(0.0, 2.0), 0.0);
    }

    #[test]
    fn measured_rates_are_positive() {
        let l = measure(Duration::from_millis(20));
        for r in [
            l.ps256_sign_per_sec,
            l.ps256_verify_per_sec,
            l.es256_sign_per_sec,
            l.es256_verify_per_sec,
            l.argon2_hashes_per_sec,
        ] {
            assert!(r.is_finite() && r > 0.0, "{l:?}");
        }
        // RSA signing is far slower than RSA verification.
        assert!(l.ps256_sign_per_sec < l.ps256_verify_per_sec, "{l:?}");
    }
}

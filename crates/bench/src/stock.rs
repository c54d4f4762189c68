//! The driver's signatures, made ahead of each cell's measured window.
//!
//! Every request of the signature-bound cases carries JWTs the driver signs
//! fresh (client assertions, DPoP proofs, registration requests), each with
//! its own `jti`. On this machine the driver shares the servers' cores, so
//! its signing took CPU from whichever server was measured. Now the warm-up
//! counts what each kind of request signs; before the measured window the
//! driver signs that many again, scaled to the window (with room for the
//! faster rate once it no longer signs), on every core, and the window's
//! requests take them. Each is still used once, seconds after it was
//! signed, well inside every lifetime the servers check (60 s and more).
//! When the stock of a kind runs out, the request signs its own, counted in
//! [`Stock::signed_in_window`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::setup::{Registrant, Tpp};

/// What a signature is over, apart from its fresh `jti` and times.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A private_key_jwt client assertion for this audience.
    Assertion { aud: String },
    /// A DPoP proof for this method and URL, bound to this access token.
    Dpop {
        htm: &'static str,
        htu: String,
        token: Option<String>,
    },
    /// A UK Open Banking registration request for this audience.
    Registration { aud: String },
    /// A signed CIBA authentication request for this audience, with its
    /// own binding message.
    CibaRequest { aud: String },
}

impl Kind {
    fn sign(&self, tpp: &Tpp, registrant: &Registrant) -> String {
        match self {
            Kind::Assertion { aud } => tpp.assertion(aud),
            Kind::Dpop { htm, htu, token } => tpp.dpop_proof(htm, htu, token.as_deref()),
            Kind::Registration { aud } => registrant.request(aud),
            Kind::CibaRequest { aud } => tpp.ciba_request(aud),
        }
    }
}

#[derive(Default)]
pub struct Stock {
    /// Signed on demand since the last [`Stock::reset`], by kind.
    counts: Mutex<HashMap<Kind, u64>>,
    ready: Mutex<HashMap<Kind, Vec<String>>>,
    /// Signed on demand since the last [`Stock::fill`].
    since_fill: AtomicU64,
}

impl Stock {
    /// A signature of `kind`: one made ahead if any is left, else a fresh one.
    pub fn take(&self, kind: Kind, tpp: &Tpp, registrant: &Registrant) -> String {
        if let Some(jwt) = self
            .ready
            .lock()
            .expect("stock lock")
            .get_mut(&kind)
            .and_then(Vec::pop)
        {
            return jwt;
        }
        let jwt = kind.sign(tpp, registrant);
        *self
            .counts
            .lock()
            .expect("stock lock")
            .entry(kind)
            .or_default() += 1;
        self.since_fill.fetch_add(1, Ordering::Relaxed);
        jwt
    }

    /// Forgets what was counted and made (before a cell's warm-up).
    pub fn reset(&self) {
        self.counts.lock().expect("stock lock").clear();
        self.ready.lock().expect("stock lock").clear();
        self.since_fill.store(0, Ordering::Relaxed);
    }

    /// Signs `scale` times what was counted since the reset, of each kind,
    /// on `threads` threads, stopping at `budget`. Returns how many it made.
    pub fn fill(
        &self,
        scale: f64,
        threads: usize,
        budget: Duration,
        tpp: &Tpp,
        registrant: &Registrant,
    ) -> u64 {
        let want: Vec<(Kind, u64)> = self
            .counts
            .lock()
            .expect("stock lock")
            .iter()
            .map(|(k, n)| (k.clone(), (*n as f64 * scale).ceil() as u64))
            .collect();
        let deadline = Instant::now() + budget;
        let threads = threads.max(1);
        // Thread `i` makes the `i`-th, `i + threads`-th … signature of every
        // kind, the kinds in turn, so that a deadline leaves some of each.
        let most = want.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let made: Vec<Vec<Vec<String>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|i| {
                    let want = &want;
                    s.spawn(move || {
                        let mut out = vec![Vec::new(); want.len()];
                        for round in (i..most).step_by(threads) {
                            if Instant::now() >= deadline {
                                break;
                            }
                            for ((kind, n), jwts) in want.iter().zip(&mut out) {
                                if round < *n {
                                    jwts.push(kind.sign(tpp, registrant));
                                }
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("signing thread"))
                .collect()
        });
        let mut ready = self.ready.lock().expect("stock lock");
        let mut total = 0;
        for part in made {
            for ((kind, _), mut jwts) in want.iter().zip(part) {
                total += jwts.len() as u64;
                ready.entry(kind.clone()).or_default().append(&mut jwts);
            }
        }
        self.since_fill.store(0, Ordering::Relaxed);
        total
    }

    /// Signatures requests had to make themselves since the last fill.
    pub fn signed_in_window(&self) -> u64 {
        self.since_fill.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn registrant() -> Registrant {
        Registrant {
            tpp: Tpp::new("stock-registrant"),
            ssa: "ssa".into(),
            transport: (String::new(), String::new()),
            subject_dn: "CN=stock".into(),
        }
    }

    fn decode_claims(jwt: &str) -> serde_json::Value {
        let payload = jwt.split('.').nth(1).expect("a JWS");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
    }

    #[test]
    fn what_the_warm_up_signed_is_made_again_scaled_and_each_is_used_once() {
        let tpp = Tpp::new("stock-test");
        let reg = registrant();
        let stock = Stock::default();
        let a = || Kind::Assertion {
            aud: "https://op.example".into(),
        };
        let d = || Kind::Dpop {
            htm: "POST",
            htu: "https://op.example/token".into(),
            token: None,
        };
        // Warm-up: 3 assertions and 1 proof, all signed on demand.
        for _ in 0..3 {
            stock.take(a(), &tpp, &reg);
        }
        stock.take(d(), &tpp, &reg);
        assert_eq!(stock.signed_in_window(), 4);
        let made = stock.fill(2.0, 2, Duration::from_secs(60), &tpp, &reg);
        assert_eq!(made, 8, "twice 3 assertions and twice 1 proof");
        assert_eq!(stock.signed_in_window(), 0);
        let mut jtis = std::collections::HashSet::new();
        for _ in 0..6 {
            let jwt = stock.take(a(), &tpp, &reg);
            let c = decode_claims(&jwt);
            assert_eq!(c["aud"], "https://op.example");
            assert!(jtis.insert(c["jti"].as_str().unwrap().to_string()));
        }
        assert_eq!(stock.signed_in_window(), 0, "all six came from the stock");
        // The seventh is signed on demand, and still fresh.
        let c = decode_claims(&stock.take(a(), &tpp, &reg));
        assert!(jtis.insert(c["jti"].as_str().unwrap().to_string()));
        assert_eq!(stock.signed_in_window(), 1);
        let c = decode_claims(&stock.take(d(), &tpp, &reg));
        assert_eq!(c["htu"], "https://op.example/token");
        assert_eq!(c["htm"], "POST");
        // A kind never counted is signed on demand.
        let other = Kind::Assertion {
            aud: "https://other.example".into(),
        };
        let c = decode_claims(&stock.take(other, &tpp, &reg));
        assert_eq!(c["aud"], "https://other.example");
        stock.reset();
        assert_eq!(stock.fill(5.0, 2, Duration::from_secs(60), &tpp, &reg), 0);
    }

    #[test]
    fn the_budget_stops_the_filling() {
        let tpp = Tpp::new("stock-budget");
        let reg = registrant();
        let stock = Stock::default();
        let a = Kind::Assertion {
            aud: "https://op.example".into(),
        };
        stock.take(a.clone(), &tpp, &reg);
        let made = stock.fill(1e9, 2, Duration::ZERO, &tpp, &reg);
        assert_eq!(made, 0, "no time, no signatures");
    }
}

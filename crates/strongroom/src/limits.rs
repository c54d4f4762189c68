//! Rate limits at the back-channel endpoints (token, PAR, introspection,
//! revocation, CIBA, registration): per source address before the client
//! is authenticated (what a flood costs before anyone is known) and per
//! client after (one client cannot take another's share). Over the limit:
//! `429` with `Retry-After` and `temporarily_unavailable`.
//!
//! GCRA limiters from the `governor` crate, keyed, lock-free per key
//! (sharded maps): no global lock on the hot path. Counted **per instance**:
//! a counter shared through the database would add a write to every request
//! (the endpoints' cost doubled to throttle a few); with N instances behind
//! a load balancer the effective limit is N times the configured one, so
//! configure `rate / N`, or limit at the load balancer too. Keys idle for a
//! minute are dropped by the server's minute sweep, so a flood of distinct
//! addresses or client ids costs memory for a minute at most.
//!
//! The source is the TCP peer: behind a load balancer that is the balancer,
//! so `per_source_per_sec` belongs on instances reached directly (or stays
//! 0 and the balancer limits by client address).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use oauth_core::error::{ErrorCode, OAuthError};
use serde::Deserialize;

use crate::http::ApiError;

/// `[limits]`: requests per second and bursts; 0 turns a limit off (the
/// default: the loopback dev set-up has none).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Per authenticated client, across the back-channel endpoints.
    pub per_client_per_sec: u32,
    /// Requests a client may send at once beyond the rate (0: twice the
    /// rate).
    pub per_client_burst: u32,
    /// Per source address, before authentication.
    pub per_source_per_sec: u32,
    /// As `per_client_burst`, per source address.
    pub per_source_burst: u32,
}

impl LimitsConfig {
    /// Errors are `(key, problem)`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        for (rate, burst, key) in [
            (
                self.per_client_per_sec,
                self.per_client_burst,
                "limits.per_client_burst",
            ),
            (
                self.per_source_per_sec,
                self.per_source_burst,
                "limits.per_source_burst",
            ),
        ] {
            if rate == 0 && burst != 0 {
                return Err((key, "a burst needs a rate (…_per_sec)"));
            }
        }
        Ok(())
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    rate: u32,
    burst: u32,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(rate)?;
    let twice = NonZeroU32::MIN.saturating_add(1);
    let burst = NonZeroU32::new(burst).unwrap_or(rate.saturating_mul(twice));
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

/// One request against `key`'s share of `l`; over it, the 429 (and the
/// security event, naming the client when it is known).
fn over<K: std::hash::Hash + Eq + Clone>(
    l: &DefaultKeyedRateLimiter<K>,
    key: &K,
    limit: &'static str,
    client_id: Option<&str>,
) -> Result<(), ApiError> {
    l.check_key(key).map_err(|not_until| {
        tracing::info!(
            target: "strongroom::security",
            event = "rate_limited",
            limit,
            client_id,
            "request over a rate limit"
        );
        limited(
            not_until.wait_time_from(DefaultClock::default().now()),
            limit,
        )
    })
}

/// The limiters of one instance.
pub struct Limits {
    per_client: Option<DefaultKeyedRateLimiter<String>>,
    per_source: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_client", &self.per_client.is_some())
            .field("per_source", &self.per_source.is_some())
            .finish()
    }
}

/// The answer over a limit: 429, `Retry-After` in whole seconds (at least
/// 1), the OAuth error body.
fn limited(wait: Duration, what: &'static str) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    crate::telemetry::rate_limited(what);
    ApiError {
        error: OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many requests: retry after the time in Retry-After",
        ),
        basic_challenge: false,
        retry_after: Some(secs.max(1)),
    }
}

impl Limits {
    pub fn new(cfg: &LimitsConfig) -> Limits {
        Limits {
            per_client: limiter(cfg.per_client_per_sec, cfg.per_client_burst),
            per_source: limiter(cfg.per_source_per_sec, cfg.per_source_burst),
        }
    }

    /// Before authentication: the source address's share.
    pub fn check_source(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match (&self.per_source, ip) {
            (Some(l), Some(ip)) => over(l, &ip, "source", None),
            _ => Ok(()),
        }
    }

    /// After authentication: the client's share.
    pub fn check_client(&self, client_id: &str) -> Result<(), ApiError> {
        match &self.per_client {
            Some(l) => over(l, &client_id.to_owned(), "client", Some(client_id)),
            None => Ok(()),
        }
    }

    /// Drops the state of keys idle long enough to be full again (the
    /// server's minute sweep).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_client {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_source {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys held (tests and diagnostics).
    pub fn keys_held(&self) -> (usize, usize) {
        (
            self.per_client.as_ref().map_or(0, |l| l.len()),
            self.per_source.as_ref().map_or(0, |l| l.len()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_burst_then_refusal_per_key() {
        let off = Limits::new(&LimitsConfig::default());
        for _ in 0..1000 {
            assert!(off.check_client("c").is_ok());
            assert!(off.check_source(Some([10, 0, 0, 1].into())).is_ok());
        }
        let l = Limits::new(&LimitsConfig {
            per_client_per_sec: 2,
            per_client_burst: 3,
            per_source_per_sec: 1,
            ..LimitsConfig::default()
        });
        for _ in 0..3 {
            assert!(l.check_client("a").is_ok());
        }
        let e = l.check_client("a").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::TemporarilyUnavailable);
        assert_eq!(e.retry_after, Some(1));
        assert!(l.check_client("b").is_ok(), "another client's share");
        // Source: burst defaults to twice the rate.
        let ip = Some(IpAddr::from([192, 0, 2, 7]));
        assert!(l.check_source(ip).is_ok() && l.check_source(ip).is_ok());
        assert!(l.check_source(ip).is_err());
        assert!(l.check_source(None).is_ok(), "no address, no key");
        assert_eq!(l.keys_held(), (2, 1));
    }

    #[test]
    fn validation() {
        let bad = LimitsConfig {
            per_client_burst: 5,
            ..LimitsConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "limits.per_client_burst");
        assert!(LimitsConfig::default().validate().is_ok());
    }
}

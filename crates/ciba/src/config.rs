//! The `[ciba]` section of the server configuration (docs/hooks.md §10).

use serde::{Deserialize, Serialize};

/// CIBA: the bank's resolve and notify hooks, expiry and polling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CibaConfig {
    /// The bank's resolve hook: hint → customer, server to server.
    pub resolve_url: String,
    /// The bank's notify hook: a request awaits the customer.
    pub notify_url: String,
    /// Bearer token Strongroom presents to both hooks.
    pub service_token: String,
    /// `expires_in` when the client sends no `requested_expiry`.
    pub default_expiry_secs: i64,
    /// The largest `requested_expiry` accepted (CIBA §7.1).
    pub max_expiry_secs: i64,
    /// The polling interval (CIBA §7.3); each `slow_down` adds 5 s.
    pub interval_secs: i64,
    /// Timeout of each outbound call (hooks, ping, push).
    pub timeout_ms: u64,
}

impl Default for CibaConfig {
    fn default() -> Self {
        CibaConfig {
            resolve_url: String::new(),
            notify_url: String::new(),
            service_token: String::new(),
            default_expiry_secs: 300,
            max_expiry_secs: 600,
            interval_secs: 5,
            timeout_ms: 3000,
        }
    }
}

fn check_url(key: &str, v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err(format!("ciba.{key}: required"));
    }
    let u = url::Url::parse(v).map_err(|e| format!("ciba.{key}: {e}"))?;
    if !matches!(u.scheme(), "https" | "http") || u.fragment().is_some() {
        return Err(format!(
            "ciba.{key}: must be an http(s) URL without fragment"
        ));
    }
    Ok(())
}

impl CibaConfig {
    /// Checks the section; errors are `ciba.<key>: <problem>`.
    pub fn validate(&self) -> Result<(), String> {
        check_url("resolve_url", &self.resolve_url)?;
        check_url("notify_url", &self.notify_url)?;
        if self.service_token.is_empty() {
            return Err("ciba.service_token: required".into());
        }
        if !(10..=3600).contains(&self.max_expiry_secs) {
            return Err("ciba.max_expiry_secs: must be between 10 and 3600".into());
        }
        if !(1..=self.max_expiry_secs).contains(&self.default_expiry_secs) {
            return Err("ciba.default_expiry_secs: must be between 1 and max_expiry_secs".into());
        }
        if !(1..=60).contains(&self.interval_secs) {
            return Err("ciba.interval_secs: must be between 1 and 60".into());
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("ciba.timeout_ms: must be between 100 and 60000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> CibaConfig {
        CibaConfig {
            resolve_url: "http://127.0.0.1:8070/internal/ciba/resolve".into(),
            notify_url: "http://127.0.0.1:8070/internal/ciba/notify".into(),
            service_token: "t".into(),
            ..CibaConfig::default()
        }
    }

    #[test]
    fn validates_keys() {
        good().validate().unwrap();
        let mut c = good();
        c.resolve_url = "ftp://x".into();
        assert!(c.validate().unwrap_err().starts_with("ciba.resolve_url"));
        let mut c = good();
        c.default_expiry_secs = 900;
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("ciba.default_expiry_secs")
        );
        let mut c = good();
        c.service_token.clear();
        assert!(c.validate().unwrap_err().starts_with("ciba.service_token"));
    }
}

//! Outbound calls: the bank's resolve and notify hooks (docs/hooks.md §10),
//! and ping / push delivery to the client (CIBA §10.2, §10.3).
//!
//! Resolve is on the request path (its answer decides the response);
//! notify, ping and push run off it through the outbox (`crate::outbox`),
//! retried with backoff by whichever instance claims them, and their
//! failure never loses the request: it stays in the database and pollable.

use std::time::Duration;

use oauth_core::error::{ErrorCode, OAuthError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CibaConfig;
use crate::request::HintType;

/// Attempts of a notify, ping or push before it is given up (and logged).
pub const ATTEMPTS: u32 = 4;
/// The first retry's delay; each further one doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Largest answer body read from a hook.
const MAX_BODY: usize = 64 * 1024;

/// The outbound HTTP client of CIBA, with the configuration.
pub struct Hooks {
    cfg: CibaConfig,
    http: reqwest::Client,
    /// The key ping and push `auth_req_id`s are derived with.
    delivery_key: Vec<u8>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("resolve_url", &self.cfg.resolve_url)
            .finish_non_exhaustive()
    }
}

/// The body of the resolve hook.
#[derive(Debug, Clone, Serialize)]
pub struct ResolveQuery<'a> {
    pub client_id: &'a str,
    pub hint_type: HintType,
    pub hint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Resolved {
    sub: String,
}

#[derive(Deserialize)]
struct HookErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The body of the notify hook (docs/hooks.md §10b). Absent members are
/// omitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub handle: String,
    pub sub: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding_message: Option<String>,
    pub scope: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    pub expires_at: i64,
}

/// How one attempt of a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// Refused or unreachable: worth another attempt.
    Retry,
    /// 401 or 403 from a client, a redirect (not followed), not https.
    GiveUp,
}

fn unavailable(what: &str) -> OAuthError {
    tracing::warn!(problem = what, "CIBA resolve hook unavailable");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the bank cannot identify customers right now, try again later",
    )
}

impl Hooks {
    /// `tls`: the client TLS configuration (trust roots, crypto provider)
    /// that the server owns.
    /// `delivery_key`: a secret the database does not hold (derived from
    /// the key-encryption key), for [`crate::flow::derive_auth_req_id`].
    pub fn new(
        cfg: CibaConfig,
        tls: rustls::ClientConfig,
        delivery_key: Vec<u8>,
    ) -> Result<Hooks, String> {
        if delivery_key.len() < 32 {
            return Err("ciba: the delivery key must have 256 bits".into());
        }
        cfg.validate()?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms))
            // CIBA ping (FAPI-CIBA): redirects are never followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("ciba: HTTP client: {e}"))?;
        Ok(Hooks {
            cfg,
            http,
            delivery_key,
        })
    }

    pub fn config(&self) -> &CibaConfig {
        &self.cfg
    }

    pub fn delivery_key(&self) -> &[u8] {
        &self.delivery_key
    }

    /// Resolve hook: the customer a hint names. 404 → `unknown_user_id`;
    /// 400 → `invalid_request` (or the bank's `invalid_user_code` /
    /// `expired_login_hint_token`); anything else, or no answer in time →
    /// `temporarily_unavailable`.
    pub async fn resolve(&self, q: &ResolveQuery<'_>) -> Result<String, OAuthError> {
        let started = std::time::Instant::now();
        let res = self
            .http
            .post(&self.cfg.resolve_url)
            .bearer_auth(&self.cfg.service_token)
            .json(q)
            .send()
            .await
            .map_err(|e| {
                oauth_core::telemetry::outbound("ciba_resolve", started, None);
                unavailable(if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                })
            })?;
        oauth_core::telemetry::outbound("ciba_resolve", started, Some(res.status().as_u16()));
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|_| unavailable("body"))?;
        if body.len() > MAX_BODY {
            return Err(unavailable("oversized answer"));
        }
        match status {
            200 => {
                let r: Resolved =
                    serde_json::from_slice(&body).map_err(|_| unavailable("malformed answer"))?;
                if r.sub.is_empty() || r.sub.len() > 255 {
                    return Err(unavailable("malformed answer"));
                }
                Ok(r.sub)
            }
            404 => Err(OAuthError::new(
                ErrorCode::UnknownUserId,
                "the hint does not identify a customer",
            )),
            400 => {
                let e: Option<HookErrorBody> = serde_json::from_slice(&body).ok();
                let code = match e.as_ref().map(|e| e.error.as_str()) {
                    Some("invalid_user_code") => ErrorCode::InvalidUserCode,
                    Some("expired_login_hint_token") => ErrorCode::ExpiredLoginHintToken,
                    Some("unknown_user_id") => ErrorCode::UnknownUserId,
                    _ => ErrorCode::InvalidRequest,
                };
                let d = e
                    .and_then(|e| e.error_description)
                    .filter(|d| d.len() <= 200)
                    .unwrap_or_else(|| "the bank cannot use this hint".into());
                Err(OAuthError::new(code, d))
            }
            _ => Err(unavailable("unexpected status")),
        }
    }

    /// One attempt of an outbox delivery (`crate::outbox`): the notify
    /// hook (`kind` `notify`, the service token as Bearer), a ping or a push
    /// (the client's `client_notification_token` as Bearer; https only, no
    /// redirect followed, 401 and 403 not retried).
    pub async fn send_once(&self, kind: &str, target: &str, bearer: &str, body: &str) -> Attempt {
        let to_client = kind != "notify";
        if to_client && !target.starts_with("https://") {
            tracing::warn!(
                event = "ciba_delivery_given_up",
                kind,
                "notification endpoint is not https"
            );
            return Attempt::GiveUp;
        }
        let started = std::time::Instant::now();
        let res = self
            .http
            .post(target)
            .bearer_auth(bearer)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        let metric = match kind {
            "notify" => "ciba_notify",
            "ping" => "ciba_ping",
            _ => "ciba_push",
        };
        oauth_core::telemetry::outbound(
            metric,
            started,
            res.as_ref().ok().map(|r| r.status().as_u16()),
        );
        match res {
            Ok(r) if r.status().is_success() => Attempt::Sent,
            Ok(r)
                if to_client
                    && (matches!(r.status().as_u16(), 401 | 403)
                        || r.status().is_redirection()) =>
            {
                tracing::warn!(
                    event = "ciba_delivery_given_up",
                    kind,
                    status = r.status().as_u16(),
                    "the client's notification endpoint refused; not retried"
                );
                Attempt::GiveUp
            }
            Ok(r) => {
                tracing::warn!(
                    event = "ciba_delivery_failed",
                    kind,
                    status = r.status().as_u16(),
                    "CIBA delivery refused"
                );
                Attempt::Retry
            }
            Err(e) => {
                tracing::warn!(
                    event = "ciba_delivery_failed",
                    kind,
                    timeout = e.is_timeout(),
                    "CIBA delivery target unreachable"
                );
                Attempt::Retry
            }
        }
    }

    /// The Bearer token of the notify hook.
    pub fn service_token(&self) -> &str {
        &self.cfg.service_token
    }
}

//! The consent bridge: the bank's own login app, consent app and consent
//! service behind interception hooks (see `docs/hooks.md`).
//!
//! - *intent check* ([`Bridge::check_intent`]), server to server: the intent
//!   a request names must exist, belong to the client and await
//!   authorisation, or the request is refused before the customer sees
//!   anything;
//! - *authentication* and *consent*, browser redirects: the customer goes to
//!   the bank's app with a hand-off token ([`Bridge::seal_handoff`]) and comes
//!   back with a result token ([`Bridge::open_result`]).
//!
//! Hand-off and result tokens are JWTs, either encrypted with a shared
//! secret (JWE `alg: dir`, `enc: A256GCM`) or signed (hand-offs with
//! Strongroom's key, results with the bank's key found in its JWKS). They
//! expire quickly, are single use ([`ReplayKind::HookResult`]) and carry a
//! session binding (`sid`) that must match the interaction they return to.
//!
//! No HTTP framework here: the server maps outcomes to pages and redirects.

pub mod config;
pub mod token;

use std::sync::Mutex;
use std::time::Duration;

use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::keys::Keys;
use oauth_core::storage::ReplayCache;
use oauth_core::token::{ClaimsHook, ClaimsQuery, ExtraClaims};
use serde::Deserialize;
use serde_json::Value;

pub use config::{HooksConfig, TokenMode};
pub use token::{Handoff, HookError, HookResult, Purpose};

/// The status a UK-style consent must have for the customer to authorise it.
pub const AWAITING_AUTHORISATION: &str = "AwaitingAuthorisation";

/// The consent service's answer to an intent look-up.
#[derive(Debug, Clone, Deserialize)]
pub struct IntentStatus {
    #[serde(alias = "ConsentId", default)]
    pub consent_id: Option<String>,
    #[serde(alias = "ClientId")]
    pub client_id: String,
    #[serde(alias = "Status")]
    pub status: String,
}

/// The body of the revocation webhook (docs/hooks.md §7a).
#[derive(Debug, Clone, serde::Serialize, Deserialize, PartialEq)]
pub struct RevocationNotice {
    /// Always `token_revoked`.
    pub event: String,
    /// Unique per notice: the bank may drop duplicates.
    pub jti: String,
    pub iat: i64,
    pub consent_id: String,
    pub client_id: String,
    /// `access_token` (that token alone) or `refresh_token` (every token of
    /// the grant).
    pub token_type: String,
}

/// The hooks of one deployment, ready to use: configuration, the outbound
/// HTTP client and (signed mode) the bank's cached JWKS.
pub struct Bridge {
    cfg: HooksConfig,
    /// Strongroom's issuer: `iss` of hand-offs, `aud` of results.
    issuer: String,
    http: reqwest::Client,
    secret: Option<[u8; 32]>,
    jwks_cache: Mutex<Option<(Value, i64)>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("issuer", &self.issuer)
            .field("mode", &self.cfg.token_mode)
            .finish_non_exhaustive()
    }
}

/// How long the bank's JWKS is cached (signed mode).
const JWKS_CACHE_SECS: i64 = 300;

impl Bridge {
    /// Builds the bridge; `tls` is the client TLS configuration for the
    /// bank's services (the server owns the trust roots and the crypto
    /// provider). Errors name the config key.
    pub fn new(
        cfg: HooksConfig,
        issuer: &str,
        tls: rustls::ClientConfig,
    ) -> Result<Bridge, String> {
        cfg.validate()?;
        let secret = match cfg.token_mode {
            TokenMode::Encrypted => Some(cfg.secret_bytes()?),
            TokenMode::Signed => None,
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("hooks: HTTP client: {e}"))?;
        Ok(Bridge {
            cfg,
            issuer: issuer.to_owned(),
            http,
            secret,
            jwks_cache: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &HooksConfig {
        &self.cfg
    }

    /// Whether the hooks handle a request of `client_id` with these
    /// `acr_values` (a client listed in `clients`, or a requested acr listed
    /// in `acr_values`).
    pub fn applies(&self, client_id: &str, acr_values: &[String]) -> bool {
        self.cfg.applies(client_id, acr_values)
    }

    /// Intent check (docs/hooks.md §3): `GET {consent_service_url}/{intent}`.
    /// A missing intent, another client's, or one not awaiting authorisation
    /// is `invalid_request`; the service down, slow or answering nonsense is
    /// `temporarily_unavailable`.
    pub async fn check_intent(&self, intent_id: &str, client_id: &str) -> Result<(), OAuthError> {
        if intent_id.is_empty()
            || intent_id.len() > 128
            || !intent_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(OAuthError::invalid_request(
                "the intent id is not well formed",
            ));
        }
        let url = format!(
            "{}/{}",
            self.cfg.consent_service_url.trim_end_matches('/'),
            intent_id
        );
        let mut req = self.http.get(&url).header("accept", "application/json");
        if !self.cfg.consent_service_token.is_empty() {
            req = req.bearer_auth(&self.cfg.consent_service_token);
        }
        let unavailable = |what: &str| {
            tracing::warn!(
                client_id,
                problem = what,
                "intent check: consent service unavailable"
            );
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the bank's consent service is unavailable, try again later",
            )
        };
        let started = std::time::Instant::now();
        let res = req.send().await;
        timed("consent_service", started, &res);
        let res = res.map_err(|e| {
            unavailable(if e.is_timeout() {
                "timeout"
            } else {
                "unreachable"
            })
        })?;
        match res.status().as_u16() {
            200 => {}
            404 => {
                tracing::info!(client_id, "intent check: unknown intent");
                return Err(OAuthError::invalid_request(
                    "the consent named in the request does not exist",
                ));
            }
            _ => return Err(unavailable("unexpected status")),
        }
        let body = res.bytes().await.map_err(|_| unavailable("body"))?;
        if body.len() > 64 * 1024 {
            return Err(unavailable("oversized answer"));
        }
        let intent: IntentStatus =
            serde_json::from_slice(&body).map_err(|_| unavailable("malformed answer"))?;
        if intent.client_id != client_id {
            tracing::warn!(
                client_id,
                "intent check: the consent belongs to another client"
            );
            return Err(OAuthError::invalid_request(
                "the consent named in the request belongs to another client",
            ));
        }
        if intent.status != AWAITING_AUTHORISATION {
            tracing::info!(client_id, status = %intent.status, "intent check: not awaiting authorisation");
            return Err(OAuthError::invalid_request(
                "the consent named in the request is not awaiting authorisation",
            ));
        }
        Ok(())
    }

    /// The hand-off token for the bank's login or consent app.
    pub fn seal_handoff(&self, keys: &Keys, h: &Handoff) -> Result<String, OAuthError> {
        match self.cfg.token_mode {
            TokenMode::Encrypted => token::encrypt(self.secret_ref()?, h),
            TokenMode::Signed => token::sign(keys, h),
        }
    }

    /// Opens a result token that came back in the browser, checks it
    /// (docs/hooks.md §5) and spends its `jti`: afterwards it cannot be
    /// used again, on any instance. `sid` is the binding of the interaction
    /// it returns to.
    pub async fn open_result<S: ReplayCache>(
        &self,
        store: &S,
        result: &str,
        sid: &str,
        purpose: Purpose,
        now: i64,
    ) -> Result<HookResult, HookError> {
        if result.len() > 16 * 1024 {
            return Err(HookError::Malformed);
        }
        let claims = match self.cfg.token_mode {
            TokenMode::Encrypted => {
                token::decrypt(self.secret_ref().map_err(|_| HookError::Malformed)?, result)?
            }
            TokenMode::Signed => self.verify_signed(result, now).await?,
        };
        let r = token::check_result(
            claims,
            &self.cfg.bank_issuer,
            &self.issuer,
            sid,
            purpose,
            self.cfg.token_lifetime_secs,
            now,
        )?;
        match store
            .consume_once(
                oauth_core::storage::ReplayKind::HookResult,
                &oauth_core::secret::hash_secret(&format!("{}:{}", self.cfg.bank_issuer, r.jti)),
                r.exp.saturating_add(token::LEEWAY_SECS),
                now,
            )
            .await
        {
            Ok(true) => Ok(r),
            Ok(false) => Err(HookError::Replayed),
            Err(_) => Err(HookError::Unavailable),
        }
    }

    /// Outbound webhook (docs/hooks.md §7a): tells the bank that a TPP
    /// revoked a token under `consent_id`. Best effort: failures are logged
    /// and never reach the TPP, whose revocation has already happened.
    /// Returns whether the bank acknowledged it (2xx).
    pub async fn notify_revocation(&self, n: &RevocationNotice) -> bool {
        if self.cfg.revocation_webhook_url.is_empty() {
            return false;
        }
        let mut req = self.http.post(&self.cfg.revocation_webhook_url).json(n);
        if !self.cfg.revocation_webhook_token.is_empty() {
            req = req.bearer_auth(&self.cfg.revocation_webhook_token);
        }
        let started = std::time::Instant::now();
        let res = req.send().await;
        timed("revocation_webhook", started, &res);
        match res {
            Ok(res) if res.status().is_success() => {
                tracing::info!(event = "revocation_webhook_sent", client_id = %n.client_id, "bank notified of a TPP revocation");
                true
            }
            Ok(res) => {
                tracing::warn!(
                    event = "revocation_webhook_failed",
                    status = res.status().as_u16(),
                    "the bank refused the revocation notice"
                );
                false
            }
            Err(e) => {
                tracing::warn!(
                    event = "revocation_webhook_failed",
                    timeout = e.is_timeout(),
                    "the bank's revocation webhook is unreachable"
                );
                false
            }
        }
    }

    /// Whether a revocation webhook is configured.
    pub fn notifies_revocations(&self) -> bool {
        !self.cfg.revocation_webhook_url.is_empty()
    }

    fn secret_ref(&self) -> Result<&[u8; 32], OAuthError> {
        self.secret.as_ref().ok_or_else(OAuthError::server_error)
    }

    async fn verify_signed(&self, result: &str, now: i64) -> Result<Value, HookError> {
        let cached = self
            .jwks_cache
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|(_, at)| now - at < JWKS_CACHE_SECS)
            .map(|(v, _)| v);
        let jwks = match cached {
            Some(j) => j,
            None => {
                let j = self.fetch_jwks().await?;
                if let Ok(mut c) = self.jwks_cache.lock() {
                    *c = Some((j.clone(), now));
                }
                j
            }
        };
        token::verify(&jwks, result, now)
    }

    async fn fetch_jwks(&self) -> Result<Value, HookError> {
        let started = std::time::Instant::now();
        let res = self.http.get(&self.cfg.bank_jwks_url).send().await;
        timed("bank_jwks", started, &res);
        let res = res.map_err(|_| HookError::Unavailable)?;
        if !res.status().is_success() {
            return Err(HookError::Unavailable);
        }
        let body = res.bytes().await.map_err(|_| HookError::Unavailable)?;
        if body.len() > 64 * 1024 {
            return Err(HookError::Unavailable);
        }
        serde_json::from_slice(&body).map_err(|_| HookError::Unavailable)
    }
}

/// The token-claims hook (docs/hooks.md §6a): `POST {claims_url}` with the
/// issuance's [`ClaimsQuery`] as JSON, bearer `consent_service_token`.
/// `200` with [`ExtraClaims`] enriches the tokens, `204` adds nothing;
/// anything else, a timeout or an unreadable answer is
/// `temporarily_unavailable` and the token request issues nothing.
impl ClaimsHook for Bridge {
    async fn token_claims(&self, q: &ClaimsQuery<'_>) -> Result<Option<ExtraClaims>, OAuthError> {
        if !self.cfg.claims_apply(q.client_id, q.acr) {
            return Ok(None);
        }
        let unavailable = |what: &str| {
            tracing::warn!(
                event = "claims_hook_failed",
                client_id = q.client_id,
                problem = what,
                "token claims: the bank's service is unavailable"
            );
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the bank's claims service is unavailable, try again later",
            )
        };
        let mut req = self
            .http
            .post(&self.cfg.claims_url)
            .header("accept", "application/json")
            .json(q);
        if !self.cfg.consent_service_token.is_empty() {
            req = req.bearer_auth(&self.cfg.consent_service_token);
        }
        let started = std::time::Instant::now();
        let res = req.send().await;
        timed("claims_hook", started, &res);
        let res = res.map_err(|e| {
            unavailable(if e.is_timeout() {
                "timeout"
            } else {
                "unreachable"
            })
        })?;
        match res.status().as_u16() {
            200 => {}
            204 => return Ok(None),
            _ => return Err(unavailable("unexpected status")),
        }
        let body = res.bytes().await.map_err(|_| unavailable("body"))?;
        if body.len() > 64 * 1024 {
            return Err(unavailable("oversized answer"));
        }
        serde_json::from_slice::<ExtraClaims>(&body)
            .map(Some)
            .map_err(|_| unavailable("malformed answer"))
    }
}

/// Times one call to the bank (docs/operations.md, outbound metrics).
fn timed(
    target: &'static str,
    started: std::time::Instant,
    res: &Result<reqwest::Response, reqwest::Error>,
) {
    oauth_core::telemetry::outbound(
        target,
        started,
        res.as_ref().ok().map(|r| r.status().as_u16()),
    );
}

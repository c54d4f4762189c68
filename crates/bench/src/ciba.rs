//! The CIBA case (`--cases ciba`): a decoupled journey per iteration, on
//! one connection: the signed backchannel authentication request, one poll
//! while the customer has not answered (`authorization_pending`), the
//! customer's approval, and the redemption (tokens, DPoP-bound).
//!
//! Who approves differs by server, each its best way:
//! - Strongroom asks the bank: its resolve hook (hint → customer, on the
//!   request path) and notify hook (off it) are answered by [`BankSide`], a
//!   plain-HTTP server in the driver on loopback; the bank's app back end
//!   then posts the decision to `POST /bank/ciba/{handle}/decision` with
//!   the bank's token and a result token (A256GCM, docs/hooks.md §10c).
//! - node-oidc-provider's own hooks (`processLoginHint`,
//!   `triggerAuthenticationDevice`) run in its process; its approval is
//!   `provider.backchannelResult()` behind `POST /bench/ciba/decision`
//!   (bench/peer/server.js), without a token to check.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

use oauth_core::secret::{now, random_token, sha256};

/// The bank issuer, token and key of the `[hooks]` section Strongroom gets.
pub const BANK_ISSUER: &str = "bench-bank";
pub const BANK_API_TOKEN: &str = "bench-bank-api-token-0001";
pub const SERVICE_TOKEN: &str = "bench-ciba-service-token";
pub const SHARED_SECRET: [u8; 32] = [0x5b; 32];
/// The customer every request names, and who the bank resolves it to.
pub const LOGIN_HINT: &str = "bench-user";
pub const CUSTOMER: &str = "sub-bench-0001";

/// How long a request waits for the bank's notice before the iteration
/// fails (it arrives within milliseconds).
const NOTICE_WAIT: Duration = Duration::from_secs(10);

enum Slot {
    /// The notice came first: its handle.
    Arrived(String),
    /// The driver waits for it.
    Waiting(tokio::sync::oneshot::Sender<String>),
}

/// The bank's side of Strongroom's CIBA hooks, in the driver.
pub struct BankSide {
    pub url: String,
    /// Pending notices by binding message (unique per request).
    slots: Mutex<HashMap<String, Slot>>,
}

impl BankSide {
    /// Binds the listener now (its URL goes into Strongroom's
    /// configuration); [`BankSide::serve`] answers on it.
    pub fn bind() -> Result<(Arc<BankSide>, TcpListener), String> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bank side: {e}"))?;
        let addr = l.local_addr().map_err(|e| format!("bank side: {e}"))?;
        l.set_nonblocking(true)
            .map_err(|e| format!("bank side: {e}"))?;
        Ok((
            Arc::new(BankSide {
                url: format!("http://{addr}"),
                slots: Mutex::new(HashMap::new()),
            }),
            l,
        ))
    }

    /// The `[hooks]` and `[ciba]` sections of Strongroom's configuration.
    pub fn config(&self) -> (Value, Value) {
        let secret = crate::setup::b64(&SHARED_SECRET);
        (
            json!({
                // Unused by the bench's other cases: no client goes through
                // the bank's login and consent pages.
                "login_url": format!("{}/hooks/login", self.url),
                "consent_url": format!("{}/hooks/consent", self.url),
                "shared_secret": secret,
                "bank_issuer": BANK_ISSUER,
                "require_intent": false,
                "bank_api_token_sha256": sha256(&[BANK_API_TOKEN.as_bytes()])
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            }),
            json!({
                "resolve_url": format!("{}/resolve", self.url),
                "notify_url": format!("{}/notify", self.url),
                "service_token": SERVICE_TOKEN,
                "interval_secs": 1,
            }),
        )
    }

    /// Answers the hooks until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> Result<(), String> {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|e| format!("bank side: {e}"))?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, std::convert::Infallible>(me.answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let reply = |status: u16, body: Value| {
            hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("response")
        };
        let authorized = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {SERVICE_TOKEN}"));
        let path = req.uri().path().to_string();
        let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
            return reply(400, json!({"error": "invalid_request"}));
        };
        if !authorized {
            return reply(401, json!({"error": "invalid_token"}));
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        match path.as_str() {
            "/resolve" if v["hint"] == LOGIN_HINT => reply(200, json!({"sub": CUSTOMER})),
            "/resolve" => reply(404, json!({"error": "unknown_user_id"})),
            "/notify" => {
                let (Some(msg), Some(handle)) =
                    (v["binding_message"].as_str(), v["handle"].as_str())
                else {
                    return reply(400, json!({"error": "invalid_request"}));
                };
                self.arrived(msg, handle.to_string());
                reply(204, Value::Null)
            }
            _ => reply(404, json!({"error": "not_found"})),
        }
    }

    fn arrived(&self, msg: &str, handle: String) {
        let mut slots = self.slots.lock().expect("slots");
        match slots.remove(msg) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(handle);
            }
            _ => {
                slots.insert(msg.to_string(), Slot::Arrived(handle));
            }
        }
    }

    /// The handle of the request with this binding message, once notified.
    pub async fn handle(&self, msg: &str) -> Result<String, String> {
        let rx = {
            let mut slots = self.slots.lock().expect("slots");
            match slots.remove(msg) {
                Some(Slot::Arrived(h)) => return Ok(h),
                _ => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    slots.insert(msg.to_string(), Slot::Waiting(tx));
                    rx
                }
            }
        };
        match tokio::time::timeout(NOTICE_WAIT, rx).await {
            Ok(Ok(h)) => Ok(h),
            _ => {
                self.slots.lock().expect("slots").remove(msg);
                Err(format!(
                    "no notice from Strongroom for {msg} within {NOTICE_WAIT:?}"
                ))
            }
        }
    }

    /// The body of the decision API: the customer approved, for the
    /// customer the request was resolved to.
    pub fn approval(&self, issuer: &str, handle: &str) -> Result<String, String> {
        let t = now();
        let claims = json!({
            "iss": BANK_ISSUER, "aud": issuer, "iat": t, "exp": t + 60, "jti": random_token(16),
            "purpose": "ciba", "handle": handle, "status": "approved", "sub": CUSTOMER,
            "acr": "urn:openbanking:psd2:sca", "amr": ["pwd", "hwk"], "auth_time": t,
        });
        let token = consent_bridge::token::encrypt(&SHARED_SECRET, &claims)
            .map_err(|e| format!("result token: {e:?}"))?;
        Ok(json!({ "result": token }).to_string())
    }
}

/// The binding message a signed request carries (it is unique per request:
/// the bank side finds the request's handle by it).
pub fn binding_message_of(request_jwt: &str) -> Result<String, String> {
    use base64::Engine as _;
    let payload = request_jwt
        .split('.')
        .nth(1)
        .ok_or("request object is not a JWS")?;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| format!("request object: {e}"))?,
    )
    .map_err(|e| format!("request object: {e}"))?;
    claims["binding_message"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "request object without binding_message".into())
}

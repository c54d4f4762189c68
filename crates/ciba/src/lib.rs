//! Client-Initiated Backchannel Authentication (OpenID Connect CIBA Core
//! 1.0, FAPI-CIBA): the customer approves in the bank's app, decoupled from
//! the device the TPP runs on.
//!
//! - [`request`] — the authentication request (CIBA §7.1): the shared
//!   authorization-request steps of `oauth_core::request`, the signed
//!   request path through the same request-object verification as JAR,
//!   then the CIBA checks (hints, `binding_message`, `user_code`,
//!   `requested_expiry`, `client_notification_token`).
//! - [`flow`] — the state machine: a request is stored `pending` under the
//!   SHA-256 of its `auth_req_id`; the bank's decision moves it once to
//!   `approved` (with its grant) or `denied`; the token endpoint redeems an
//!   approved one once (the row is deleted); `expired` is its `expires_at`
//!   passing. Every move is one conditional database write.
//! - [`hooks`] — the outbound calls: the bank's resolve and notify hooks
//!   (docs/hooks.md §10), ping and push delivery to the client.
//! - [`outbox`] — those deliveries as database rows, attempted by whichever
//!   instance holds or claims them, so none is lost to a restart.
//! - [`config`] — the `[ciba]` section.
//!
//! No HTTP framework here: the server extracts inputs and maps outcomes.

pub mod config;
pub mod flow;
pub mod hooks;
pub mod outbox;
pub mod request;

pub use config::CibaConfig;

/// The CIBA grant type (CIBA §10.1).
pub const GRANT_TYPE: &str = oauth_core::client::CIBA_GRANT;

/// The id_token claim naming the request (CIBA §10.1.1).
pub const AUTH_REQ_ID_CLAIM: &str = "urn:openid:params:jwt:claim:auth_req_id";

/// How much `interval` grows at each `slow_down` (CIBA §11, like RFC 8628
/// §3.5).
pub const SLOW_DOWN_STEP_SECS: i64 = 5;

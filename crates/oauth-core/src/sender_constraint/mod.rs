//! Sender-constrained tokens: DPoP (RFC 9449) and mutual-TLS certificate
//! binding (RFC 8705 §3), as FAPI 2.0 Security Profile §5.3.2.1 requires.
//!
//! - [`dpop`] verifies a request's DPoP proof into a [`DpopProof`]
//!   (thumbprint `jkt`), refusing replays through the replay cache.
//! - [`nonce`] issues and checks stateless server nonces shared by all
//!   instances.
//! - [`mtls`] computes `x5t#S256`; the checks that a request holds what a
//!   token's `cnf` names are where tokens are used (refresh, userinfo).

pub mod dpop;
pub mod mtls;
pub mod nonce;

pub use crate::authorization::{Confirmation, DpopProof};
pub use dpop::{DpopCheck, normalize_htu, verify_proof};
pub use mtls::x5t_s256;
pub use nonce::DpopNonces;

//! Sender-constrained tokens: DPoP (RFC 9449) and mutual-TLS certificate
//! binding (RFC 8705 §3), as FAPI 2.0 Security Profile §5.3.2.1 requires.
//!
//! - [`dpop`] verifies a request's DPoP proof into a [`DpopProof`]
//!   (thumbprint `jkt`), refusing replays through the replay cache.
//! - [`nonce`] issues and checks stateless server nonces shared by all
//!   instances.
//! - [`mtls`] computes `x5t#S256` and checks that a request holds the key
//!   or certificate a token's `cnf` names.

pub mod dpop;
pub mod mtls;
pub mod nonce;

pub use crate::authorization::{Confirmation, DpopProof};
pub use dpop::{DpopCheck, ResourceChallenge, normalize_htu, resource_challenge, verify_proof};
pub use mtls::{BindingSite, check_binding, x5t_s256};
pub use nonce::DpopNonces;

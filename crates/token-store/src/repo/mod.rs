//! One module per contract of `oauth_core::storage`, each an `impl … for
//! Store`.

pub(crate) mod admin;
mod authorize;
mod ciba;
pub(crate) mod clients;
mod codes;
pub(crate) mod grants;
mod health;
mod keys;
pub(crate) mod par;
pub(crate) mod replay;
pub(crate) mod sessions;
mod token_reads;
pub(crate) mod tokens;

pub use authorize::AuthorizeReads;
pub use token_reads::TokenReads;

//! One module per contract of `oauth_core::storage`, each an `impl … for
//! Store`.

mod ciba;
mod clients;
mod codes;
mod grants;
mod health;
mod keys;
pub(crate) mod par;
pub(crate) mod replay;
pub(crate) mod sessions;
mod tokens;

//! One module per contract of `oauth_core::storage`, each an `impl … for
//! Store`.

mod ciba;
mod clients;
mod codes;
mod grants;
mod health;
mod keys;
mod par;
pub(crate) mod replay;
mod sessions;
mod tokens;

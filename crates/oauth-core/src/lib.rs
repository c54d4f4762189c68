//! Strongroom protocol logic: OAuth 2.0, OpenID Connect and FAPI, with no HTTP
//! framework in it. Handlers in the server extract typed inputs, call one
//! function here and map the typed outcome to HTTP.

pub mod cert;
pub mod discovery;
pub mod error;
pub mod keys;
pub mod secret;
pub mod storage;

//! Strongroom protocol logic: OAuth 2.0, OpenID Connect and FAPI, with no HTTP
//! framework in it. Handlers in the server extract typed inputs, call one
//! function here and map the typed outcome to HTTP.

pub mod authorization;
pub mod cert;
pub mod client;
pub mod client_auth;
pub mod discovery;
pub mod error;
pub mod grant;
pub mod introspection;
pub mod jwks_resolver;
pub mod keys;
pub mod policy;
pub mod replay;
pub mod request;
pub mod revocation;
pub mod secret;
pub mod sender_constraint;
pub mod storage;
pub mod subject;
pub mod telemetry;
pub mod text;
pub mod token;
pub mod userinfo;

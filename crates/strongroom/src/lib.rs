//! The Strongroom server: assembles the protocol crates behind actix-web with
//! rustls. Handlers are thin: extract, call one function, map the result.

pub mod config;
pub mod devcerts;
pub mod http;
pub mod startup;
pub mod tls;

//! The Strongroom server: assembles the protocol crates behind actix-web with
//! rustls. Handlers are thin: extract, call one function, map the result.

pub mod admin;
pub mod admin_cli;
pub mod api;
pub mod bank_api;
pub mod ciba;
pub mod config;
pub mod connections;
pub mod devcerts;
pub mod fetch;
pub mod http;
pub mod interaction;
pub mod limits;
pub mod otlp;
pub mod public_url;
pub mod registration;
pub mod startup;
pub mod telemetry;
pub mod theme;
pub mod tls;
pub mod try_flow;
pub mod users;

//! End-to-end tests through the real HTTPS server, on SQLite and PostgreSQL.
//! One test binary for the crate (modules below), so the workspace links once.

mod admin;
mod binding;
mod by_value;
mod ciba;
mod cli;
mod connections;
mod consent_bridge;
mod dcr;
mod encrypted_responses;
mod fapi;
mod fapi1_conformance;
mod fapi_errors;
mod foundation;
mod harness;
mod hybrid;
mod input;
mod ops;
mod otlp;
mod pages;
mod shutdown;
mod subject;
mod tpp;
mod try_flow;
mod uk;

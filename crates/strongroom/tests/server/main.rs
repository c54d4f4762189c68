//! End-to-end tests through the real HTTPS server, on SQLite and PostgreSQL.
//! One test binary for the crate (modules below), so the workspace links once.

mod foundation;
mod harness;

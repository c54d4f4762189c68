//! The suite's relying party, HTTPS clients, PKI and server launcher, as a
//! library: the `conformance` binary runs the OIDF plans with them, and the
//! reliability suite (crates/reliability) drives several instances with the
//! same independent client code.

pub mod ciba;
pub mod fapi1;
pub mod flow;
pub mod jose;
pub mod kit;
pub mod modules;
pub mod server;

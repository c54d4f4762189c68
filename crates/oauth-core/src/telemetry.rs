//! Metric names that protocol crates record through the `metrics` facade
//! (the server installs the exporter; without one these are no-ops).
//! Label values come from closed sets only (docs/operations.md).

use std::time::Instant;

/// Single-use values refused as replays, by `kind` ([`crate::storage::ReplayKind`]).
pub const REPLAYS_REFUSED: &str = "strongroom_replays_refused_total";

/// Outbound calls (clients' `jwks_uri`, the bank's hooks), by `target` and
/// `outcome` (the status class, or `error` when no answer came).
pub const OUTBOUND_DURATION: &str = "strongroom_outbound_request_duration_seconds";

/// Times one outbound call to `target` that started at `started`;
/// `status` is the answer's HTTP status (`None`: none came).
pub fn outbound(target: &'static str, started: Instant, status: Option<u16>) {
    let outcome = match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(_) => "5xx",
        None => "error",
    };
    metrics::histogram!(OUTBOUND_DURATION, "target" => target, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

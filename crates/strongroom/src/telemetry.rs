//! What an operator watches (docs/operations.md): Prometheus metrics on the
//! internal listener, one span per request with its request id, and the
//! access log line that ends it.
//!
//! Every label value is from a closed set: route patterns (never raw
//! paths), status classes, the OAuth error codes of [`ErrorCode`], grant
//! types, replay kinds, and client_ids of registered clients only, at most
//! [`MAX_CLIENT_LABELS`] of them. Nothing a client sends in free text, no
//! token, code, secret or personal data, becomes a label.
//!
//! The recorder is the `metrics` facade's process-wide one (the facade is
//! global by design; protocol crates call `metrics::counter!` without
//! knowing the exporter). Recording takes no lock shared by all requests:
//! the exporter's registry is sharded and its histograms are lock-free
//! buckets.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpResponse, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use oauth_core::error::ErrorCode;
use tracing::Instrument as _;

use crate::http::AppState;

/// Requests, by route pattern and status class, with the OAuth error code.
pub const HTTP_REQUESTS: &str = "strongroom_http_requests_total";
/// Request latency, by route pattern and status class.
pub const HTTP_DURATION: &str = "strongroom_http_request_duration_seconds";
/// Access and refresh tokens issued, by grant type and client.
pub const TOKENS_ISSUED: &str = "strongroom_tokens_issued_total";
/// Single-use values refused as replays, by kind (oauth-core records it).
pub const REPLAYS_REFUSED: &str = oauth_core::telemetry::REPLAYS_REFUSED;
/// Client authentications that failed, by endpoint.
pub const CLIENT_AUTH_FAILURES: &str = "strongroom_client_auth_failures_total";
/// Requests refused over a rate limit (`[limits]`), by `limit` (`client`,
/// `source`).
pub const RATE_LIMITED: &str = "strongroom_rate_limited_total";
/// Calls to clients' `jwks_uri` and the bank's hooks, by target and outcome.
pub const OUTBOUND_DURATION: &str = oauth_core::telemetry::OUTBOUND_DURATION;
/// Database connections, by state (`idle`, `in_use`), and the pool's size.
pub const DB_CONNECTIONS: &str = "strongroom_db_pool_connections";
pub const DB_MAX: &str = "strongroom_db_pool_max_connections";
/// Query latency, by operation kind (`token_store::OPERATIONS`) and access
/// (`read`, `write`); the store records it.
pub const DB_QUERY_DURATION: &str = token_store::DB_QUERY_DURATION;
/// Grants not revoked (the consent records in force), read at scrape time.
pub const ACTIVE_GRANTS: &str = "strongroom_active_grants";
/// Age of the signing key in use, by algorithm.
pub const KEY_AGE: &str = "strongroom_signing_key_age_seconds";
/// When the key set next changes (a published key starts signing, or a
/// retired one goes), Unix time; absent when nothing is scheduled.
pub const KEY_NEXT_CHANGE: &str = "strongroom_key_next_change_timestamp_seconds";
/// Connections ended by a client fault (malformed HTTP, reset, timeout).
pub const CLIENT_FAULTS: &str = "strongroom_connections_client_faults_total";
/// Set to 1, labelled with the version: which build an instance runs.
pub const BUILD_INFO: &str = "strongroom_build_info";

/// Every series the server exports: the Grafana dashboard may use these
/// and no other (`deploy/grafana/check-dashboard.sh`).
pub const SERIES: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_DURATION,
    TOKENS_ISSUED,
    REPLAYS_REFUSED,
    CLIENT_AUTH_FAILURES,
    RATE_LIMITED,
    OUTBOUND_DURATION,
    DB_CONNECTIONS,
    DB_MAX,
    DB_QUERY_DURATION,
    ACTIVE_GRANTS,
    KEY_AGE,
    KEY_NEXT_CHANGE,
    CLIENT_FAULTS,
    BUILD_INFO,
];

/// Distinct client_id label values before further clients count as `other`.
pub const MAX_CLIENT_LABELS: usize = 1000;

/// Latency buckets (seconds): a login's argon2 and the bank's hooks sit at
/// the top, token and PAR calls at the bottom.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Database query buckets (seconds): a SQLite read takes tens of
/// microseconds, a PostgreSQL round trip about a millisecond, a write
/// queued behind a group commit a few.
const DB_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The process-wide recorder, installed on first use (tests start several
/// servers in one process; they share it).
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("buckets are not empty")
            // A full match wins over the suffix.
            .set_buckets_for_metric(Matcher::Full(DB_QUERY_DURATION.into()), DB_BUCKETS)
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder (a test's) may be installed already; this one's
        // handle then renders nothing, which only a test would notice.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// HELP lines for the exposition.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route pattern, status class and OAuth error code"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by route pattern and status class"
    );
    describe_counter!(
        TOKENS_ISSUED,
        "Tokens issued by grant type and client_id (registered clients only)"
    );
    describe_counter!(
        REPLAYS_REFUSED,
        "Single-use values (jti, hand-off tokens) refused as replays"
    );
    describe_counter!(
        CLIENT_AUTH_FAILURES,
        "Failed client authentications by endpoint"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused over a rate limit, by limit (client, source)"
    );
    // Present from the start (0), so a dashboard's query has a series.
    for limit in ["client", "source"] {
        metrics::counter!(RATE_LIMITED, "limit" => limit).increment(0);
    }
    describe_histogram!(
        OUTBOUND_DURATION,
        Unit::Seconds,
        "Calls to client jwks_uri and the bank's hooks, by target and outcome"
    );
    describe_gauge!(DB_CONNECTIONS, "Database pool connections by state");
    describe_gauge!(DB_MAX, "Database pool size");
    describe_histogram!(
        DB_QUERY_DURATION,
        Unit::Seconds,
        "Database query latency (waiting for a connection included), by operation and access"
    );
    describe_gauge!(ACTIVE_GRANTS, "Grants not revoked");
    describe_gauge!(
        KEY_AGE,
        "Seconds since the signing key in use started signing, by alg"
    );
    describe_gauge!(
        KEY_NEXT_CHANGE,
        "Unix time of the next scheduled key activation or retirement"
    );
    describe_counter!(CLIENT_FAULTS, "Connections ended by a client fault");
    describe_gauge!(BUILD_INFO, "1, labelled with the running version");
}

/// `"2xx"` … `"5xx"`.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A route pattern as a label value: `/interaction/{id}/login` becomes
/// `/interaction/:id/login`, so that queries need not escape braces in
/// regular expressions and simple text-format parsers read it.
fn route_label(pattern: String) -> String {
    if !pattern.contains('{') {
        return pattern;
    }
    pattern.replace('{', ":").replace('}', "")
}

/// The OAuth error code of an error response, put there by the one place
/// that renders each kind of error, for the request's metrics and log line.
#[derive(Debug, Clone, Copy)]
pub struct ErrorLabel(pub &'static str);

impl ErrorLabel {
    pub fn of(code: ErrorCode) -> ErrorLabel {
        ErrorLabel(code.as_str())
    }
}

/// The request's span, for code below the handler's own span that records
/// `client_id` on it.
#[derive(Clone)]
pub struct RequestSpan(pub tracing::Span);

/// Records `client_id` on the request's span (the access log line has it).
pub fn record_client(req: &actix_web::HttpRequest, client_id: &str) {
    if let Some(span) = req.extensions().get::<RequestSpan>() {
        span.0.record("client_id", client_id);
    }
}

/// The request id: the trace id of a valid W3C `traceparent` (Trace
/// Context §3.2), so the bank's gateway and Strongroom's logs join up;
/// otherwise 16 random bytes in the same form.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id)
        .map_or_else(new_trace_id, str::to_owned)
}

/// The trace id of `version-traceid-parentid-flags`: lowercase hex of the
/// right lengths, version not `ff`, ids not all zero.
fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    // Version 00 has exactly four fields; later versions may add more.
    let ok = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace, 32)
        && nonzero(trace)
        && hex(parent, 16)
        && nonzero(parent)
        && hex(flags, 2);
    ok.then_some(trace)
}

fn new_trace_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    // The CSPRNG cannot fail on supported platforms; an all-zero id would
    // only make one request's log lines harder to tell apart.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}

/// The outermost middleware of the public listeners: opens the request's
/// span (request id, method, route pattern, client_id once known), counts
/// and times the request by route pattern, status class and error code,
/// and writes one access line at the end (target `strongroom::access`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let span = tracing::info_span!(
        "request",
        request_id = tracing::field::Empty,
        method = %req.method(),
        route = tracing::field::Empty,
        client_id = tracing::field::Empty,
    );
    // Made only when something will log it. With trace export, the
    // trace's id (a `traceparent`'s, or the new trace's).
    if !span.is_disabled() {
        let id = crate::otlp::continue_trace(&span, req.headers())
            .unwrap_or_else(|| request_id(req.headers()));
        span.record("request_id", id.as_str());
    }
    req.extensions_mut().insert(RequestSpan(span.clone()));
    let res = next.call(req).instrument(span.clone()).await?;
    let elapsed = start.elapsed();
    let route = res
        .request()
        .match_pattern()
        .map_or_else(|| "unmatched".to_owned(), route_label);
    let status = res.status().as_u16();
    let class = status_class(status);
    let error = res
        .response()
        .extensions()
        .get::<ErrorLabel>()
        .map_or("none", |e| e.0);
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => class, "error" => error)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route.clone(), "status" => class)
        .record(elapsed.as_secs_f64());
    span.record("route", route.as_str());
    span.in_scope(|| {
        tracing::info!(
            target: "strongroom::access",
            status,
            error,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    Ok(res)
}

/// Counts a token issued to a registered client (`client_id` comes from
/// the authenticated client, never from the request).
pub fn token_issued(grant_type: &'static str, client_id: &str) {
    metrics::counter!(TOKENS_ISSUED, "grant_type" => grant_type, "client_id" => client_label(client_id))
        .increment(1);
}

/// `client_id` as a label value: the first [`MAX_CLIENT_LABELS`] distinct
/// clients by name, every later one as `other`, so that mass registration
/// cannot grow the exposition without bound.
fn client_label(client_id: &str) -> String {
    use std::collections::HashSet;
    use std::sync::RwLock;
    static SEEN: OnceLock<RwLock<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    // Read-mostly: the write lock is taken once per new client, ever.
    if seen
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(client_id)
    {
        return client_id.to_owned();
    }
    let mut w = seen
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if w.len() < MAX_CLIENT_LABELS {
        w.insert(client_id.to_owned());
        client_id.to_owned()
    } else if w.contains(client_id) {
        client_id.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Counts a failed client authentication at `endpoint`.
pub fn rate_limited(limit: &'static str) {
    metrics::counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

pub fn client_auth_failed(endpoint: &'static str) {
    metrics::counter!(CLIENT_AUTH_FAILURES, "endpoint" => endpoint).increment(1);
}

/// The internal listener's app: `GET /metrics`. The admin API (issue 26)
/// will be mounted here too, never on the public listeners.
/// `/healthz` and `/readyz` are here too, for probes and `strongroom
/// health` that cannot verify the public listeners' certificates.
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(scrape))
        .route("/healthz", web::get().to(crate::http::healthz))
        .route("/readyz", web::get().to(crate::http::readyz));
}

/// `GET /metrics`: the gauges read now (pool, active grants, keys), then
/// the exposition.
async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.store.pool_state();
    metrics::gauge!(DB_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle_connections));
    metrics::gauge!(DB_CONNECTIONS, "state" => "in_use")
        .set(f64::from(pool.connections - pool.idle_connections));
    metrics::gauge!(DB_MAX).set(f64::from(pool.max_size));
    // Queries run on the blocking pool; a scrape while the database is
    // away keeps the last values.
    if let Ok(n) = state.store.count_active_grants().await {
        metrics::gauge!(ACTIVE_GRANTS).set(n as f64);
    }
    let now = oauth_core::secret::now();
    {
        use oauth_core::storage::KeyRepository as _;
        // The database's view (every instance shares it); a scrape while
        // the database is away keeps the last values.
        if let Ok(keys) = state.store.list_keys(now).await {
            for k in keys.iter().filter(|k| {
                k.key_use == "sig" && k.active_from <= now && k.retired_at.is_none_or(|r| r > now)
            }) {
                metrics::gauge!(KEY_AGE, "alg" => k.alg.clone()).set((now - k.active_from) as f64);
            }
        }
    }
    if let Some(t) = state.keys.next_change() {
        metrics::gauge!(KEY_NEXT_CHANGE).set(t as f64);
    }
    let faults = crate::startup::client_faults();
    metrics::counter!(CLIENT_FAULTS).absolute(faults);
    let handle = recorder();
    handle.run_upkeep();
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(handle.render())
}

/// How often histograms are folded into their buckets: the exporter keeps
/// each observation until then, so at 50 000 requests a second this is
/// about 400 kB a second of samples (measured: a 5 s period added 5 MiB of
/// peak memory under the discovery bench).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(good), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        // A later version may carry more fields.
        assert!(trace_id("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473\n-00f067aa0ba902b7-01",
            "00-\"quoted\"-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(bad), None, "{bad:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::HeaderName::from_static("traceparent"),
            HeaderValue::from_static("garbage"),
        );
        let made = request_id(&h);
        assert_eq!(made.len(), 32);
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(made, request_id(&h), "fresh each time");
    }

    #[test]
    fn client_labels_are_bounded() {
        let first = client_label("client-a");
        assert_eq!(first, "client-a");
        for i in 0..MAX_CLIENT_LABELS + 10 {
            client_label(&format!("flood-{i}"));
        }
        assert_eq!(client_label("client-a"), "client-a", "known ones stay");
        assert_eq!(client_label("a-newcomer"), "other");
    }

    #[test]
    fn route_labels_have_no_braces() {
        assert_eq!(
            route_label("/interaction/{id}/login".into()),
            "/interaction/:id/login"
        );
        assert_eq!(route_label("/token".into()), "/token");
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(302), "3xx");
        assert_eq!(status_class(401), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}

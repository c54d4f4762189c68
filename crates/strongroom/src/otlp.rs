//! OpenTelemetry trace export (issue 28 §2), off unless `[telemetry]
//! otlp_endpoint` is set: the server's `tracing` spans (a request's span and
//! the handler and protocol spans under it) become OTLP spans, batched by
//! the SDK on a thread of its own and posted as protobuf to the collector.
//!
//! A request that carries a W3C `traceparent` continues that trace (its
//! span is a child of the caller's), so the request id in the logs, the
//! trace id in the collector and the bank gateway's trace are one id. A
//! request without one starts a trace, and its request id is that trace's
//! id too.
//!
//! Nothing here runs when export is off: no layer is installed and
//! [`continue_trace`] returns at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// How long one export may take: at shutdown, what the drain's budget
/// still has to wait for a collector that does not answer.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Set once the layer is installed; read on every request.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The exporter's pipeline, flushed and stopped when dropped (the end of
/// `main`), so that the spans of the last requests reach the collector.
pub struct Export(SdkTracerProvider);

impl Drop for Export {
    fn drop(&mut self) {
        EXPORTING.store(false, Ordering::Release);
        if let Err(e) = self.0.shutdown() {
            eprintln!("strongroom: exporting the last spans: {e}");
        }
    }
}

/// The pipeline to `traces_url` and its tracer, for a
/// `tracing_opentelemetry` layer.
///
/// # Errors
///
/// When the exporter cannot be built (its HTTP client).
pub fn pipeline(traces_url: &str) -> Result<(Export, opentelemetry_sdk::trace::Tracer), String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(traces_url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("strongroom")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("strongroom");
    EXPORTING.store(true, Ordering::Release);
    Ok((Export(provider), tracer))
}

/// With export on: makes `span` (a request's) continue the trace of the
/// request's `traceparent`, if it has a valid one, and returns the span's
/// trace id (lowercase hex), the request's id. `None` with export off.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) -> Option<String> {
    use opentelemetry::propagation::TextMapPropagator as _;
    if !EXPORTING.load(Ordering::Acquire) {
        return None;
    }
    let parent =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Only fails when the span is not an OpenTelemetry one (disabled).
        let _ = span.set_parent(parent);
    }
    let id = span.context().span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

/// actix's headers as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(actix_web::http::header::HeaderName::as_str)
            .collect()
    }
}

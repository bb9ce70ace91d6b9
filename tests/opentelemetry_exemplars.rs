//! With the layer's `opentelemetry` feature and tracing-opentelemetry in the subscriber,
//! a request span's exemplars carry the trace of its OpenTelemetry span, with no field
//! of its own. Run with `cargo test --features otel --test opentelemetry_exemplars`.

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::ExporterBuilder;
use opentelemetry::trace::TracerProvider as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

#[test]
fn exemplars_carry_the_opentelemetry_trace_of_the_request() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("test");
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .build()
        .expect("layer");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(layer);
    let trace_id = tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 3u64,
            tokens_out = Empty
        );
        let trace_id = {
            use opentelemetry::trace::TraceContextExt;
            request
                .context()
                .span()
                .span_context()
                .trace_id()
                .to_string()
        };
        request.in_scope(|| tracing::info!(first_token = true));
        request.record("tokens_out", 2u64);
        trace_id
    });
    assert_eq!(trace_id.len(), 32);
    assert_ne!(trace_id, "0".repeat(32));
    let (content_type, body) = handle.render_negotiated(Some("application/openmetrics-text"));
    assert!(content_type.starts_with("application/openmetrics-text"));
    let exemplar = format!("# {{trace_id=\"{trace_id}\",span_id=\"");
    for histogram in ["llm_ttft_seconds_bucket", "llm_e2e_latency_seconds_bucket"] {
        assert!(
            body.lines()
                .any(|l| l.starts_with(histogram) && l.contains(&exemplar)),
            "{histogram} has no exemplar of {trace_id}:\n{body}"
        );
    }
}

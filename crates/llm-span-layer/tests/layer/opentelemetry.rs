//! Feature `opentelemetry`: without a `trace_id` field, a request's samples carry the trace
//! of its OpenTelemetry span, when tracing-opentelemetry runs in the same subscriber.
//!
//! No SDK: opentelemetry's no-op tracer gives each span its parent's span context, so a
//! request span whose parent is a remote context (as a propagator extracts it from a
//! `traceparent` header) has that trace. `cargo test -p llm-span-layer --all-features`
//! runs it; the root package's `opentelemetry_exemplars` test does the same with the SDK.

use std::sync::Arc;

use crate::support::{TraceCapture, TracedSample, TracedSamples};
use llm_span_layer::exemplar::TraceContext;
use llm_span_layer::LlmSpanLayer;
use opentelemetry::trace::noop::NoopTracer;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::Context;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::prelude::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

/// The samples of one request, whose OpenTelemetry parent is `parent`.
fn request_with_parent(parent: Context) -> Vec<TracedSample> {
    let samples = TracedSamples::default();
    let layer = LlmSpanLayer::builder()
        .with_recorder(TraceCapture(Arc::clone(&samples)))
        .build()
        .expect("layer");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(NoopTracer::new()))
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 3u64,
            tokens_out = Empty
        );
        request.set_parent(parent).expect("parent set before use");
        request.in_scope(|| tracing::info!(first_token = true));
        request.record("tokens_out", 2u64);
    });
    let samples = samples.lock().expect("samples");
    samples.clone()
}

fn remote(trace: &str, span: &str) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex(trace).expect("hex"),
        SpanId::from_hex(span).expect("hex"),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

#[test]
fn samples_carry_the_trace_of_the_opentelemetry_span() {
    let samples = request_with_parent(remote(TRACE, SPAN));
    let expected = TraceContext::from_hex(TRACE, Some(SPAN));
    assert!(expected.is_some());
    let traced: Vec<&str> = samples
        .iter()
        .filter(|sample| sample.trace == expected)
        .map(|sample| sample.name.as_str())
        .collect();
    assert_eq!(traced, ["llm_ttft_seconds", "llm_e2e_latency_seconds"]);
}

#[test]
fn an_invalid_opentelemetry_span_gives_no_trace() {
    for parent in [Context::new(), remote(&"0".repeat(32), SPAN)] {
        let samples = request_with_parent(parent);
        assert_eq!(samples.len(), 4, "{samples:?}");
        assert!(
            samples.iter().all(|sample| sample.trace.is_none()),
            "{samples:?}"
        );
    }
}

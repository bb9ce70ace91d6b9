//! A request's trace id reaches the recorder with its time to first token, latency and
//! queue wait samples, and only with those; invalid ids are counted and never used.

use std::sync::Arc;

use crate::support::{Harness, TraceCapture, TracedSamples};
use llm_span_layer::exemplar::{self, TraceContext};
use llm_span_layer::LlmSpanLayer;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

#[test]
fn the_trace_goes_with_ttft_latency_and_queue_samples_only() {
    let samples = TracedSamples::default();
    let layer = LlmSpanLayer::builder()
        .with_recorder(TraceCapture(Arc::clone(&samples)))
        .build()
        .expect("layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 5u64,
            tokens_out = Empty,
            trace_id = Empty,
            span_id = SPAN
        );
        // Recorded later (a router that learns it from a header, say).
        request.record("trace_id", TRACE);
        drop(tracing::info_span!(parent: &request, "queue"));
        request.in_scope(|| tracing::info!(first_token = true));
        request.in_scope(|| tracing::info!(tokens_out_delta = 4u64, finish_reason = "stop"));
        drop(request);
        // Without a trace id: no exemplar.
        drop(tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
    });
    let expected = TraceContext::from_hex(TRACE, Some(SPAN));
    assert!(expected.is_some());
    let samples = samples.lock().expect("samples");
    let traced: Vec<&str> = samples
        .iter()
        .filter(|sample| sample.trace == expected)
        .map(|sample| sample.name.as_str())
        .collect();
    assert_eq!(
        traced,
        [
            "llm_ttft_seconds",
            "llm_queue_wait_seconds",
            "llm_e2e_latency_seconds"
        ]
    );
    let untraced = samples
        .iter()
        .filter(|sample| sample.trace.is_none())
        .count();
    // Decode speed (two histograms) of the first request, latency of the second.
    assert_eq!(untraced, 3, "{samples:?}");
    assert_eq!(exemplar::current(), None, "nothing left behind");
    // Each traced sample comes with the time the layer took it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    for sample in samples.iter().filter(|sample| sample.trace.is_some()) {
        let time = sample.time.expect("the layer knows the sample's time");
        assert!((now - 60.0..=now).contains(&time), "{time} vs {now}");
    }
}

#[test]
fn invalid_trace_ids_are_counted_and_never_used() {
    let h = Harness::new();
    h.run(|| {
        for (trace, span) in [
            ("00000000000000000000000000000000", None),
            ("4bf92f3577b34da6a3ce929d0e0e473", None),
            ("zzf92f3577b34da6a3ce929d0e0e4736", None),
            (TRACE, Some("0000000000000000")),
            (TRACE, Some("short")),
        ] {
            let request = tracing::info_span!(
                "generate",
                model = "m",
                tokens_in = 1u64,
                tokens_out = 1u64,
                trace_id = trace,
                span_id = Empty
            );
            if let Some(span) = span {
                request.record("span_id", span);
            }
        }
        drop(tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 1u64,
            tokens_out = 1u64,
            trace_id = 42u64
        ));
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("invalid_trace_id"), 6);
    assert_eq!(
        m.counter("llm_requests_total", &[("model", "m"), ("status", "ok")]),
        6
    );
}

//! OpenTelemetry GenAI names produce the same metrics as the short names.

mod common;

use common::{assert_all_close, Harness};
use tracing::field::Empty;

fn short_names(h: &Harness) {
    let span = tracing::info_span!(
        "generate",
        model = "m",
        tokens_in = 10u64,
        tokens_cached = 4u64,
        tokens_out = Empty,
        finish_reason = Empty
    );
    let _g = span.enter();
    h.advance(0.5);
    tracing::info!(first_token = true);
    h.advance(0.5);
    span.record("tokens_out", 6u64);
    span.record("finish_reason", "stop");
}

fn otel_names(h: &Harness) {
    let span = tracing::info_span!(
        "chat m",
        gen_ai.operation.name = "chat",
        gen_ai.request.model = "m",
        gen_ai.usage.input_tokens = 10u64,
        gen_ai.usage.cache_read.input_tokens = 4u64,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.response.finish_reasons = Empty,
        otel.status_code = Empty
    );
    let _g = span.enter();
    h.advance(0.5);
    tracing::info!(first_token = true);
    h.advance(0.5);
    span.record("gen_ai.usage.output_tokens", 6u64);
    span.record(
        "gen_ai.response.finish_reasons",
        tracing::field::debug(["stop"]),
    );
    span.record("otel.status_code", "OK");
}

fn check(h: &Harness) {
    let m = h.snapshot();
    let model = [("model", "m")];
    assert_eq!(
        m.counter("llm_tokens_total", &[("model", "m"), ("type", "input")]),
        10
    );
    assert_eq!(
        m.counter("llm_tokens_total", &[("model", "m"), ("type", "output")]),
        6
    );
    assert_eq!(m.counter("llm_cached_input_tokens_total", &model), 4);
    assert_eq!(
        m.counter("llm_requests_total", &[("model", "m"), ("status", "ok")]),
        1
    );
    assert_eq!(
        m.counter(
            "llm_finish_reasons_total",
            &[("model", "m"), ("reason", "stop")]
        ),
        1
    );
    assert_all_close(&m.histogram("llm_ttft_seconds", &model), &[0.5]);
    assert_all_close(&m.histogram("llm_e2e_latency_seconds", &model), &[1.0]);
    assert_all_close(
        &m.histogram("llm_time_per_output_token_seconds", &model),
        &[0.1],
    );
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn short_field_names() {
    let h = Harness::new();
    h.run(|| short_names(&h));
    check(&h);
}

#[test]
fn opentelemetry_genai_field_names() {
    let h = Harness::new();
    h.run(|| otel_names(&h));
    check(&h);
}

#[test]
fn response_model_is_the_fallback_model() {
    let h = Harness::new();
    h.run(|| {
        let span = tracing::info_span!(
            "chat",
            gen_ai.request.model = Empty,
            gen_ai.response.model = Empty,
            gen_ai.usage.input_tokens = 3u64,
            gen_ai.usage.output_tokens = Empty
        );
        span.record("gen_ai.response.model", "served-model");
        span.record("gen_ai.usage.output_tokens", 1u64);
    });
    let m = h.snapshot();
    assert_eq!(
        m.label_values("llm_requests_total", "model"),
        ["served-model"]
    );
}

#[test]
fn otel_error_status_fails_the_request() {
    let h = Harness::new();
    h.run(|| {
        let span = tracing::info_span!(
            "chat",
            gen_ai.request.model = "m",
            gen_ai.usage.input_tokens = 3u64,
            otel.status_code = Empty,
            error.type = Empty
        );
        span.record("error.type", "timeout");
        span.record("otel.status_code", "ERROR");
    });
    let m = h.snapshot();
    assert_eq!(
        m.counter("llm_requests_total", &[("model", "m"), ("status", "error")]),
        1
    );
}

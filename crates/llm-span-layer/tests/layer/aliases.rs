//! OpenTelemetry GenAI names produce the same metrics as the short names.

use crate::support::Expect::{Counter, Samples};
use crate::support::{assert_all_close, Harness};
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
    m.assert_series(&[
        Counter("llm_tokens_total{model=m,type=input}", 10),
        Counter("llm_tokens_total{model=m,type=output}", 6),
        Counter("llm_cached_input_tokens_total{model=m}", 4),
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Counter("llm_finish_reasons_total{model=m,reason=stop}", 1),
        Samples("llm_ttft_seconds{model=m}", &[0.5]),
        Samples("llm_e2e_latency_seconds{model=m}", &[1.0]),
        Samples("llm_time_per_output_token_seconds{model=m}", &[0.1]),
    ]);
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

/// A streamed chat as genai records it (feature `otel`): a span never entered, usage and
/// finish reasons recorded at the end, the time to its first chunk recorded when the
/// chunk comes.
fn genai_chat(h: &Harness, first_chunk_after: f64, end_after: f64) -> tracing::Span {
    let span = tracing::info_span!(
        target: "genai::otel::span",
        "genai.chat",
        otel.status_code = Empty,
        error.type = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = "openai",
        gen_ai.request.model = "m",
        gen_ai.request.stream = true,
        gen_ai.response.model = Empty,
        gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read.input_tokens = Empty,
        gen_ai.usage.cache_creation.input_tokens = Empty,
        gen_ai.response.time_to_first_chunk = Empty
    );
    h.advance(first_chunk_after);
    span.record("gen_ai.response.time_to_first_chunk", first_chunk_after);
    h.advance(end_after - first_chunk_after);
    span
}

#[test]
fn a_time_to_first_chunk_recorded_on_the_span_marks_the_first_token() {
    let h = Harness::new();
    h.run(|| {
        let span = genai_chat(&h, 0.25, 1.25);
        span.record("gen_ai.response.finish_reasons", r#"["stop"]"#);
        span.record("gen_ai.usage.input_tokens", 12i64);
        span.record("gen_ai.usage.output_tokens", 11i64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_ttft_seconds{model=m}", &[0.25]),
        // Ten tokens after the first, in the second between first chunk and end.
        Samples("llm_time_per_output_token_seconds{model=m}", &[0.1]),
        Samples("llm_tokens_per_second{model=m}", &[10.0]),
        Samples("llm_e2e_latency_seconds{model=m}", &[1.25]),
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Counter("llm_finish_reasons_total{model=m,reason=stop}", 1),
        Counter("llm_tokens_total{model=m,type=input}", 12),
        Counter("llm_tokens_total{model=m,type=output}", 11),
    ]);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn a_stream_dropped_after_its_first_chunk_is_cancelled_with_its_ttft() {
    let h = Harness::new();
    h.run(|| drop(genai_chat(&h, 0.5, 0.75)));
    let m = h.snapshot();
    assert_all_close(&m.histogram("llm_ttft_seconds", &[("model", "m")]), &[0.5]);
    let cancelled = [("model", "m"), ("status", "cancelled")];
    assert_eq!(m.counter("llm_requests_total", &cancelled), 1);
}

#[test]
fn a_time_to_first_chunk_that_is_no_duration_is_malformed_and_a_second_one_a_duplicate() {
    let h = Harness::new();
    h.run(|| {
        for bad in [-1.0, f64::NAN] {
            let span = genai_chat(&h, 0.0, 0.0);
            // genai_chat recorded 0.0, a valid first chunk: a second one is a duplicate.
            span.record("gen_ai.response.time_to_first_chunk", bad);
        }
        let span = tracing::info_span!(
            "genai.chat",
            gen_ai.request.model = "m",
            gen_ai.usage.input_tokens = 1u64,
            gen_ai.response.time_to_first_chunk = Empty
        );
        span.record("gen_ai.response.time_to_first_chunk", "soon");
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("malformed_value"), 3);
    assert_eq!(
        m.anomalies("duplicate_first_token"),
        0,
        "malformed values mark nothing"
    );
    assert_eq!(m.histogram("llm_ttft_seconds", &[("model", "m")]).len(), 2);
}

/// An embeddings call as genai records it.
fn genai_embeddings() -> tracing::Span {
    tracing::info_span!(
        target: "genai::otel::span",
        "genai.embeddings",
        otel.status_code = Empty,
        error.type = Empty,
        gen_ai.operation.name = "embeddings",
        gen_ai.provider.name = "openai",
        gen_ai.request.model = "e",
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty
    )
}

#[test]
fn an_embeddings_call_is_a_request_that_answers_once() {
    let prices = llm_span_layer::PriceTable::new().with_model(
        "e",
        llm_span_layer::ModelPrice::usd_per_million_tokens(0.02, 0.0).expect("valid"),
    );
    let h = Harness::with(|b| b.with_prices(prices));
    h.run(|| {
        // Answered: response model and usage recorded.
        let span = genai_embeddings();
        h.advance(0.2);
        span.record("gen_ai.response.model", "e");
        span.record("gen_ai.usage.input_tokens", 7i64);
        drop(span);
        // Failed.
        let span = genai_embeddings();
        span.record("otel.status_code", "error");
        span.record("error.type", "404");
        drop(span);
        // Dropped before any answer: cancelled, as a generation would be.
        drop(genai_embeddings());
        // Token events on it neither mark a first token nor bind it early.
        let span = genai_embeddings();
        span.in_scope(|| tracing::info!(tokens_out_delta = 2u64));
        span.record("gen_ai.usage.input_tokens", 3i64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=e,status=ok}", 2),
        Counter("llm_requests_total{model=e,status=error}", 1),
        Counter("llm_requests_total{model=e,status=cancelled}", 1),
        Counter("llm_tokens_total{model=e,type=input}", 10),
        Counter("llm_tokens_total{model=e,type=output}", 2),
        // 10 input tokens at 20,000 picodollars each.
        Counter("llm_cost_pico_usd_total{model=e}", 200_000),
        Samples("llm_ttft_seconds{model=e}", &[]),
        Samples("llm_tokens_per_second{model=e}", &[]),
        Samples("llm_e2e_latency_seconds{model=e}", &[0.2, 0.0]),
    ]);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn generation_operations_keep_the_generation_rules() {
    let h = Harness::new();
    h.run(|| {
        for operation in ["chat", "text_completion", "generate_content"] {
            let span = tracing::info_span!(
                "op",
                gen_ai.operation.name = operation,
                gen_ai.request.model = "m",
                gen_ai.usage.input_tokens = 3u64
            );
            span.in_scope(|| tracing::info!(first_token = true));
        }
        // The input tokens given at creation do not complete a generation.
        drop(tracing::info_span!(
            "op",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = "m",
            gen_ai.usage.input_tokens = 3u64
        ));
        // An operation name that is not text is malformed, and the request a generation.
        let span = tracing::info_span!(
            "op",
            gen_ai.operation.name = 5u64,
            gen_ai.request.model = "m",
            gen_ai.usage.input_tokens = 3u64
        );
        span.in_scope(|| tracing::info!(first_token = true));
    });
    let m = h.snapshot();
    assert_eq!(m.histogram("llm_ttft_seconds", &[("model", "m")]).len(), 4);
    let cancelled = [("model", "m"), ("status", "cancelled")];
    assert_eq!(m.counter("llm_requests_total", &cancelled), 5);
    assert_eq!(m.anomalies("malformed_value"), 1);
}

#[test]
fn langchain_rust_field_names_count_on_its_llm_generate_span_only() {
    let h = Harness::new();
    h.run(|| {
        let llm = |name| {
            tracing::info_span!(
                "llm.generate",
                provider = "openai",
                model = name,
                stream = false,
                prompt_tokens = Empty,
                completion_tokens = Empty,
                total_tokens = Empty,
                tool_calls = Empty,
                error = Empty
            )
        };
        let span = llm("m");
        span.record("prompt_tokens", 9u32);
        span.record("completion_tokens", 4u32);
        span.record("total_tokens", 13u32);
        drop(span);
        let span = llm("m");
        span.record("error", tracing::field::display("connection refused"));
        drop(span);
        // The same field names on another span are no request.
        drop(tracing::info_span!(
            "prefill",
            model = "m",
            prompt_tokens = 100u64,
            completion_tokens = 1u64
        ));
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Counter("llm_requests_total{model=m,status=error}", 1),
        Counter("llm_tokens_total{model=m,type=input}", 9),
        Counter("llm_tokens_total{model=m,type=output}", 4),
    ]);
    assert_eq!(m.sum("llm_requests_total"), 2);
}

#[test]
fn the_provider_a_framework_records_can_be_allowlisted_as_a_label() {
    let h = Harness::with(|b| b.with_label_as("gen_ai.provider.name", "provider"));
    h.run(|| {
        let span = genai_chat(&h, 0.1, 0.2);
        span.record("gen_ai.usage.input_tokens", 2i64);
        span.record("gen_ai.usage.output_tokens", 3i64);
    });
    let m = h.snapshot();
    let ok = [("model", "m"), ("provider", "openai"), ("status", "ok")];
    assert_eq!(m.counter("llm_requests_total", &ok), 1);
}

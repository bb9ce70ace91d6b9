//! The operation families (`catalog::OPERATION_METRICS`): nothing until the process asks
//! for them, then every request by GenAI operation and provider, with the semantics the
//! OpenTelemetry GenAI conventions give their metrics (durations of every outcome, time to
//! first token and decode time of successful requests only, tokens per request).

use llm_span_layer::catalog;
use tracing::field::Empty;

use crate::support::{assert_all_close, Harness, Metrics};

const DURATION: &str = catalog::OPERATION_DURATION_SECONDS;
const TTFT: &str = catalog::OPERATION_TTFT_SECONDS;
const PER_TOKEN: &str = catalog::OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS;
const TOKENS: &str = catalog::OPERATION_TOKENS;

/// A streamed chat: first token after 0.5 s, 5 output tokens, done after 2.5 s.
fn chat(h: &Harness, provider: &str) {
    let span = tracing::info_span!(
        "chat m",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider,
        gen_ai.request.model = "m",
        gen_ai.usage.input_tokens = 10u64,
        gen_ai.usage.output_tokens = Empty
    );
    let _g = span.enter();
    h.advance(0.5);
    tracing::info!(first_token = true);
    h.advance(2.0);
    span.record("gen_ai.usage.output_tokens", 5u64);
}

/// A chat that fails after its first token: 1 s in all.
fn failed_chat(h: &Harness) {
    let span = tracing::info_span!(
        "chat m",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = "openai",
        gen_ai.request.model = "m",
        gen_ai.usage.input_tokens = 7u64,
        error.type = Empty
    );
    let _g = span.enter();
    h.advance(0.2);
    tracing::info!(first_token = true);
    h.advance(0.8);
    span.record("error.type", "timeout");
}

fn embeddings(h: &Harness, operation: &str) {
    let span = tracing::info_span!(
        "embeddings m",
        gen_ai.operation.name = operation,
        gen_ai.system = "openai",
        gen_ai.request.model = "m",
        gen_ai.usage.input_tokens = Empty
    );
    let _g = span.enter();
    h.advance(0.25);
    span.record("gen_ai.usage.input_tokens", 3u64);
}

/// A stream that reports no output total: 3 deltas, then a finish reason after 1.5 s.
fn stream(h: &Harness) {
    let span = tracing::info_span!(
        "chat m",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = "vllm",
        gen_ai.request.model = "m",
        gen_ai.usage.input_tokens = 2u64
    );
    let _g = span.enter();
    h.advance(0.5);
    for _ in 0..3 {
        tracing::info!(tokens_out_delta = 1u64);
        h.advance(0.25);
    }
    h.advance(0.25);
    tracing::info!(finish_reason = "stop");
}

/// Two completions that generate nothing: one records a total of 0, the other declared
/// 0 at creation and streams nothing. Both are requests that reported 0 output tokens.
fn empty_completions() {
    let span = tracing::info_span!(
        "completion",
        gen_ai.operation.name = "text_completion",
        model = "m",
        tokens_in = 1u64,
        tokens_out = Empty
    );
    span.record("tokens_out", 0u64);
    drop(span);
    let _declared = tracing::info_span!(
        "completion",
        gen_ai.operation.name = "text_completion",
        model = "m",
        tokens_in = 1u64,
        tokens_out = 0u64
    );
}

/// A request that names neither operation nor provider, dropped after 0.75 s.
fn cancelled(h: &Harness) {
    let span = tracing::info_span!("generate", model = "m", tokens_in = 4u64);
    let _g = span.enter();
    h.advance(0.75);
}

fn operation_families(m: &Metrics) -> Vec<String> {
    catalog::OPERATION_METRICS
        .iter()
        .filter(|def| !m.series(def.name).is_empty())
        .map(|def| def.name.to_owned())
        .collect()
}

pub(crate) fn nothing_until_asked_then_every_request_by_operation_and_provider() {
    let h = Harness::new();
    h.run(|| chat(&h, "openai"));
    let m = h.snapshot();
    assert_eq!(
        m.counter("llm_requests_total", &[("model", "m"), ("status", "ok")]),
        1
    );
    assert_eq!(
        operation_families(&m),
        Vec::<String>::new(),
        "not asked for"
    );

    catalog::enable_operation_metrics();
    assert!(catalog::operation_metrics_enabled());
    let h = Harness::new();
    h.run(|| {
        chat(&h, "openai");
        failed_chat(&h);
        embeddings(&h, "embeddings");
        cancelled(&h);
        stream(&h);
        empty_completions();
    });
    let m = h.snapshot();
    let chat = [
        ("model", "m"),
        (catalog::OPERATION_LABEL, "chat"),
        (catalog::PROVIDER_LABEL, "openai"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut pairs = chat.to_vec();
        pairs.push(extra);
        pairs
    };
    assert_all_close(&m.histogram(DURATION, &with(("status", "ok"))), &[2.5]);
    assert_all_close(&m.histogram(DURATION, &with(("status", "error"))), &[1.0]);
    assert_all_close(&m.histogram(DURATION, &with(("status", "cancelled"))), &[]);
    // Successful requests only: the failed chat's first token (0.2 s) is not in it,
    // though the layer's own time to first token has it.
    assert_all_close(&m.histogram(TTFT, &chat), &[0.5]);
    assert_all_close(
        &m.histogram("llm_ttft_seconds", &[("model", "m")]),
        &[0.5, 0.2, 0.5],
    );
    assert_all_close(&m.histogram(PER_TOKEN, &chat), &[0.5]);
    assert_all_close(&m.histogram(TOKENS, &with(("type", "input"))), &[10.0, 7.0]);
    // The failed chat reported no output tokens: nothing to record.
    assert_all_close(&m.histogram(TOKENS, &with(("type", "output"))), &[5.0]);

    let embeddings = [
        ("model", "m"),
        (catalog::OPERATION_LABEL, "embeddings"),
        (catalog::PROVIDER_LABEL, "openai"),
    ];
    let mut ok = embeddings.to_vec();
    ok.push(("status", "ok"));
    assert_all_close(&m.histogram(DURATION, &ok), &[0.25]);
    assert_all_close(&m.histogram(TTFT, &embeddings), &[]);
    let mut input = embeddings.to_vec();
    input.push(("type", "input"));
    assert_all_close(&m.histogram(TOKENS, &input), &[3.0]);

    // Streamed tokens count as reported output: 3 tokens, 1 s from the first to the end.
    let streamed = [
        ("model", "m"),
        (catalog::OPERATION_LABEL, "chat"),
        (catalog::PROVIDER_LABEL, "vllm"),
    ];
    let mut output = streamed.to_vec();
    output.push(("type", "output"));
    assert_all_close(&m.histogram(TOKENS, &output), &[3.0]);
    assert_all_close(&m.histogram(TTFT, &streamed), &[0.5]);
    assert_all_close(&m.histogram(PER_TOKEN, &streamed), &[0.5]);

    let unnamed = [
        ("model", "m"),
        (catalog::OPERATION_LABEL, "unknown"),
        (catalog::PROVIDER_LABEL, "unknown"),
    ];
    let mut cancelled = unnamed.to_vec();
    cancelled.push(("status", "cancelled"));
    assert_all_close(&m.histogram(DURATION, &cancelled), &[0.75]);
    let mut input = unnamed.to_vec();
    input.push(("type", "input"));
    assert_all_close(&m.histogram(TOKENS, &input), &[4.0]);
    let completion = [
        ("model", "m"),
        (catalog::OPERATION_LABEL, "text_completion"),
        (catalog::PROVIDER_LABEL, "unknown"),
    ];
    for (token_type, expected) in [("input", [1.0, 1.0]), ("output", [0.0, 0.0])] {
        let mut pairs = completion.to_vec();
        pairs.push(("type", token_type));
        assert_all_close(&m.histogram(TOKENS, &pairs), &expected);
    }
    assert_eq!(
        m.label_values(DURATION, catalog::OPERATION_LABEL),
        ["chat", "embeddings", "text_completion", "unknown"]
    );
    assert_eq!(
        m.label_values(DURATION, catalog::PROVIDER_LABEL),
        ["openai", "unknown", "vllm"]
    );
    assert_eq!(m.all_anomalies(), 0);
}

pub(crate) fn an_allowlisted_provider_is_read_from_its_label() {
    let h = Harness::with(|b| b.with_label_as("gen_ai.system", "provider"));
    h.run(|| embeddings(&h, "embeddings"));
    let m = h.snapshot();
    assert_eq!(
        m.counter(
            "llm_requests_total",
            &[("model", "m"), ("provider", "openai"), ("status", "ok")]
        ),
        1
    );
    let pairs = [
        ("model", "m"),
        ("provider", "openai"),
        (catalog::OPERATION_LABEL, "embeddings"),
        (catalog::PROVIDER_LABEL, "openai"),
        ("status", "ok"),
    ];
    assert_all_close(&m.histogram(DURATION, &pairs), &[0.25]);
}

pub(crate) fn operation_series_are_capped_with_the_label_sets() {
    let h = Harness::with(|b| b.with_max_series(2));
    h.run(|| {
        // A series seen before takes no more room.
        for operation in ["embeddings", "embeddings", "rerank", "moderation"] {
            embeddings(&h, operation);
        }
    });
    let m = h.snapshot();
    assert_eq!(
        m.label_values(DURATION, catalog::OPERATION_LABEL),
        ["__overflow__", "embeddings", "rerank"]
    );
    let overflow = [
        ("model", "__overflow__"),
        (catalog::OPERATION_LABEL, "__overflow__"),
        (catalog::PROVIDER_LABEL, "__overflow__"),
        ("status", "ok"),
    ];
    assert_all_close(&m.histogram(DURATION, &overflow), &[0.25]);
    let embeddings = [
        ("model", "m"),
        (catalog::OPERATION_LABEL, "embeddings"),
        (catalog::PROVIDER_LABEL, "openai"),
        ("status", "ok"),
    ];
    assert_all_close(&m.histogram(DURATION, &embeddings), &[0.25, 0.25]);
    assert_eq!(m.anomalies("series_overflow"), 1);
    assert_eq!(m.all_anomalies(), 1);
}

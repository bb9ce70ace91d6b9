//! Code already instrumented with OpenTelemetry GenAI semantic-convention names
//! (as for `tracing-opentelemetry`) produces the same metrics unchanged.
//!
//! `cargo run --example otel_genai`

use llm_span_layer::LlmSpanLayer;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

#[tracing::instrument(
    name = "chat",
    skip_all,
    fields(
        otel.name = format!("chat {model}"),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.request.model = %model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.response.finish_reasons = Empty,
    )
)]
fn chat(model: &str, messages: &[&str]) -> String {
    let span = tracing::Span::current();
    span.record(
        "gen_ai.usage.input_tokens",
        messages
            .iter()
            .map(|m| m.split_whitespace().count())
            .sum::<usize>(),
    );
    tracing::info!(first_token = true);
    let answer = "Rust is a systems programming language.";
    span.record("gen_ai.response.model", model);
    span.record(
        "gen_ai.usage.output_tokens",
        answer.split_whitespace().count(),
    );
    span.record(
        "gen_ai.response.finish_reasons",
        tracing::field::debug(["stop"]),
    );
    span.record("otel.status_code", "OK");
    answer.to_owned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (recorder, handle) = llm_span_prometheus::ExporterBuilder::new().build()?;
    let layer = LlmSpanLayer::builder().with_recorder(recorder).build()?;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        chat("mistral-7b-instruct", &["You are terse.", "What is Rust?"]);
        chat("mistral-7b-instruct", &["You are terse.", "What is Go?"]);
    });
    for line in handle
        .render()
        .lines()
        .filter(|l| l.starts_with("llm_") && !l.contains("_bucket"))
    {
        println!("{line}");
    }
    Ok(())
}

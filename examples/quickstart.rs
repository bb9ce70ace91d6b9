//! The shortest complete program: an existing `fmt` subscriber plus the layer, the
//! exporter serving /metrics, a few instrumented calls, and the scrape printed.
//!
//! `cargo run --example quickstart`

use std::io::{Read, Write};

use llm_span_layer::LlmSpanLayer;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

#[tracing::instrument(skip_all, fields(model = %model, tokens_in = prompt.split_whitespace().count(), tokens_out = Empty))]
fn generate(model: &str, prompt: &str) -> String {
    std::thread::sleep(std::time::Duration::from_millis(30)); // prefill
    tracing::info!(first_token = true);
    let output = "Paris is the capital of France.";
    std::thread::sleep(std::time::Duration::from_millis(20)); // decode
    tracing::Span::current().record("tokens_out", output.split_whitespace().count());
    output.to_owned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A free port here; applications use the default 127.0.0.1:9000.
    let metrics = llm_span_prometheus::ExporterBuilder::from_env()?
        .with_listen_addr(([127, 0, 0, 1], 0))
        .install()?;

    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer()) // the existing setup
        .with(LlmSpanLayer::new()) // the one added line
        .init();

    for prompt in [
        "What is the capital of France?",
        "Name the capital city of France, please.",
    ] {
        generate("llama-3.1-8b-instruct", prompt);
    }

    let mut stream = std::net::TcpStream::connect(metrics.local_addr())?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    for line in body
        .lines()
        .filter(|l| l.starts_with("llm_") && !l.contains("_bucket"))
    {
        println!("{line}");
    }
    Ok(())
}

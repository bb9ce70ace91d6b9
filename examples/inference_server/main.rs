//! A simulated LLM inference server whose `/metrics` fills with per-model numbers.
//!
//! It is instrumented only with `#[instrument]`, `Span::record` and events (see
//! `engine.rs`); `llm-span-layer` turns them into metrics and `llm-span-prometheus`
//! serves them. Run `cargo run --example inference_server -- --help` for the flags.
//!
//! The files, in reading order:
//! - `main.rs`: start-up: the exporter, the tracing subscriber, serving, shutdown;
//! - `config.rs`: the flags (clap);
//! - `api.rs`: the HTTP API (axum): the OpenAI API (chat completions, embeddings, models)
//!   and the legacy completions: validation, JSON, SSE streaming;
//! - `engine.rs`: the simulated models and their spans;
//! - `admin.rs`: `--admin`'s run-time speed changes, free of any HTTP framework.

mod admin;
mod api;
mod config;
mod engine;
mod trace;

use std::error::Error;
use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use llm_span_layer::{LlmSpanLayer, PriceTable};
use tokio::net::TcpListener;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::prelude::*;

use crate::api::Api;
use crate::config::Config;
use crate::engine::Engine;

/// How long in-flight requests may take to finish after Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    // Exits by itself, after printing, on `--help` or a bad flag.
    let config = Config::from_args();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn Error>> {
    // The metrics side: a Prometheus recorder and a secured /metrics listener, set up
    // from the LLM_METRICS_* variables.
    let mut exporter = llm_span_prometheus::ExporterBuilder::from_env()?;
    if let Some(addr) = config.metrics_listen {
        exporter = exporter.with_listen_addr(addr);
    }
    let metrics = exporter.install()?;

    let prices = match &config.prices {
        Some(path) => PriceTable::from_file(path)?,
        None => PriceTable::parse(config::DEFAULT_PRICES)?,
    };
    let layer = LlmSpanLayer::builder().with_prices(prices).build()?;
    install_tracing(layer);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let engine = Arc::new(Engine::new(&config));
    tokio::spawn(engine.clone().report_gpu_memory());
    let app = api::router(
        Api::new(engine.clone(), config.max_prompt_tokens),
        config.admin,
    );

    // The first line is read by the integration tests: keep its form.
    let api_addr = listener.local_addr()?;
    let metrics_url = format!("{}://{}/metrics", metrics_scheme(), metrics.local_addr());
    println!("inference_server: API on http://{api_addr}, metrics on {metrics_url}");
    let models: Vec<&str> = engine.models.iter().map(|m| m.spec.name.as_str()).collect();
    println!("  models: {}", models.join(", "));
    println!(
        "  try:    curl -s http://{api_addr}/v1/chat/completions -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello there\"}}],\"max_tokens\":32}}'",
        models.first().copied().unwrap_or("?")
    );
    println!("  load:   cargo run -p llm-span-testkit --bin load-generator -- --target http://{api_addr}");
    println!("  then:   curl -s {metrics_url} | grep '^llm_'");

    serve(listener, app).await?;
    metrics.shutdown();
    Ok(())
}

/// Logs and metrics from the same spans.
///
/// The log filter is attached to the fmt layer only (a per-layer filter). A global
/// filter (`.with(filter)` on the registry, or `fmt().with_max_level(..)`) would also
/// hide the `info`-level request spans from the metrics layer, and `/metrics` would
/// stay empty: the metrics layer must see every request whatever the log level.
fn install_tracing(metrics_layer: LlmSpanLayer) {
    // RUST_LOG as usual (`RUST_LOG=info`, `RUST_LOG=inference_server=debug`, ...);
    // warnings and errors when it is unset.
    let log_filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(log_filter))
        .with(metrics_layer)
        .init();
}

/// `https` when the exporter serves TLS: it does when LLM_METRICS_TLS_CERT and
/// LLM_METRICS_TLS_KEY are both set, and refuses to start with only one of them.
fn metrics_scheme() -> &'static str {
    let tls = std::env::var("LLM_METRICS_TLS_CERT").is_ok_and(|v| !v.trim().is_empty());
    if tls {
        "https"
    } else {
        "http"
    }
}

/// Serves until Ctrl-C, then stops accepting connections and gives in-flight requests
/// [`SHUTDOWN_GRACE`] to finish.
async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        println!("inference_server: shutting down");
    });
    // A second listener for the same Ctrl-C: the graceful shutdown waits for every
    // in-flight request, and a long stream must not keep the process alive.
    let grace_over = async {
        let _ = tokio::signal::ctrl_c().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        println!("inference_server: in-flight requests cut short");
    };
    tokio::select! {
        result = server.into_future() => result,
        () = grace_over => Ok(()),
    }
}

//! A simulated LLM inference server whose `/metrics` fills with per-model numbers.
//!
//! It is instrumented only with `#[instrument]`, `Span::record` and events (see
//! `engine.rs`); `llm-span-layer` turns them into metrics and `llm-span-prometheus`
//! serves them. Run `cargo run --example inference_server -- --help` for the flags.

mod api;
mod config;
mod engine;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use llm_span_layer::{LlmSpanLayer, PriceTable};
use tokio::net::TcpListener;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::api::Api;
use crate::config::Config;
use crate::engine::Engine;

fn main() -> ExitCode {
    // Exits by itself, after printing, on `--help` or a bad flag.
    let config = Config::from_args();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn prices(config: &Config) -> Result<PriceTable, String> {
    match &config.prices {
        Some(path) => PriceTable::from_file(path).map_err(|e| e.to_string()),
        None => PriceTable::parse(config::DEFAULT_PRICES).map_err(|e| e.to_string()),
    }
}

fn run(config: Config) -> Result<(), String> {
    // The metrics side: a Prometheus recorder and a secured /metrics listener.
    let mut exporter =
        llm_span_prometheus::ExporterBuilder::from_env().map_err(|e| e.to_string())?;
    if let Some(addr) = config.metrics_listen {
        exporter = exporter.with_listen_addr(addr);
    }
    let metrics = exporter.install().map_err(|e| e.to_string())?;
    let metrics_addr = metrics.local_addr();

    // The application's tracing setup, plus one layer.
    let layer = LlmSpanLayer::builder()
        .with_prices(prices(&config)?)
        .build()
        .map_err(|e| e.to_string())?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::WARN))
        .with(layer)
        .init();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let api_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let engine = Arc::new(Engine::new(&config));
        let api = Arc::new(Api::new(engine.clone(), config.max_prompt_tokens));
        tokio::spawn(engine.clone().report_gpu_memory());
        let models: Vec<&str> = engine.models.iter().map(|m| m.spec.name.as_str()).collect();
        println!("inference_server: API on http://{api_addr}, metrics on http://{metrics_addr}/metrics");
        println!("  models: {}", models.join(", "));
        println!(
            "  try:    curl -s http://{api_addr}/v1/completions -d '{{\"model\":\"{}\",\"prompt\":\"Hello there\",\"max_tokens\":32}}'",
            models.first().copied().unwrap_or("?")
        );
        println!("  load:   cargo run --example load_generator -- --target http://{api_addr}");
        println!("  then:   curl -s http://{metrics_addr}/metrics | grep '^llm_'");
        serve(listener, api).await;
        Ok::<(), String>(())
    })?;
    metrics.shutdown();
    Ok(())
}

async fn serve(listener: TcpListener, api: Arc<Api>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tokio::signal::ctrl_c() => {
                println!("inference_server: shutting down");
                return;
            }
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| api.clone().handle(request));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

//! Serve /metrics from your own axum router, behind basic auth, instead of a second
//! port. The exporter still runs upkeep in the background; you only render.
//!
//! `cargo run --example axum_router` serves on a free port, checks itself with and
//! without credentials, and exits.

use std::io::{Read, Write};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::{MetricsHandle, CONTENT_TYPE};
use tracing_subscriber::prelude::*;

struct Metrics {
    handle: MetricsHandle,
    /// `Basic base64(user:password)`, precomputed.
    expected_authorization: String,
}

/// Compares without stopping at the first difference, so timing reveals nothing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

async fn metrics(State(state): State<Arc<Metrics>>, headers: HeaderMap) -> impl IntoResponse {
    let given = headers
        .get(header::AUTHORIZATION)
        .map_or(&b""[..], |v| v.as_bytes());
    if !constant_time_eq(given, state.expected_authorization.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"metrics\"")],
            String::new(),
        );
    }
    // Rendering walks every series: keep it off the async workers.
    let handle = state.handle.clone();
    let body = tokio::task::spawn_blocking(move || handle.render())
        .await
        .unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

fn get_metrics(addr: std::net::SocketAddr, authorization: Option<&str>) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Installs the recorder globally without a listener of its own.
    let handle = llm_span_prometheus::ExporterBuilder::new().install_recorder()?;
    tracing_subscriber::registry()
        .with(LlmSpanLayer::new())
        .init();

    // Credentials come from the environment in real deployments; never hard-code them.
    let password = std::env::var("METRICS_PASSWORD").unwrap_or_else(|_| "change-me".to_owned());
    // "prometheus:<password>" in base64, written out to keep the example dependency-free.
    let expected_authorization = format!("Basic {}", base64(&format!("prometheus:{password}")));
    let state = Arc::new(Metrics {
        handle,
        expected_authorization: expected_authorization.clone(),
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(|| async { "your application" }))
        .with_state(state);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });

        let span = tracing::info_span!(
            "generate",
            model = "llama-3.1-8b-instruct",
            tokens_in = 12,
            tokens_out = 40
        );
        span.in_scope(|| tracing::info!(first_token = true));
        drop(span);

        let anonymous = tokio::task::spawn_blocking(move || get_metrics(addr, None)).await??;
        println!(
            "without credentials: {}",
            anonymous.lines().next().unwrap_or("")
        );
        let authorized =
            tokio::task::spawn_blocking(move || get_metrics(addr, Some(&expected_authorization)))
                .await??;
        println!(
            "with credentials:    {}",
            authorized.lines().next().unwrap_or("")
        );
        for line in authorized
            .lines()
            .filter(|l| l.starts_with("llm_tokens_total"))
        {
            println!("  {line}");
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

fn base64(input: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

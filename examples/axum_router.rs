//! Serve /metrics from your own axum router, behind basic auth, instead of a second
//! port: you only render, in the format the scraper asks for (OpenMetrics with exemplars
//! for Prometheus, the text format for curl). Credentials are compared in constant time
//! (`subtle`) and encoded with `base64`, the crates llm-span-prometheus uses itself.
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
use base64::Engine as _;
use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::MetricsHandle;
use tracing_subscriber::prelude::*;

struct Metrics {
    handle: MetricsHandle,
    /// `Basic base64(user:password)`, precomputed.
    expected_authorization: String,
}

/// Whether the `Authorization` header is the expected one. `subtle` compares without
/// stopping at the first difference, so timing reveals nothing about the secret.
fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    let given = headers
        .get(header::AUTHORIZATION)
        .map_or(&b""[..], |v| v.as_bytes());
    bool::from(given.ct_eq(expected.as_bytes()))
}

async fn metrics(State(state): State<Arc<Metrics>>, headers: HeaderMap) -> impl IntoResponse {
    if !authorized(&headers, &state.expected_authorization) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"metrics\"")],
            String::new(),
        )
            .into_response();
    }
    // Rendering walks every series: keep it off the async workers.
    let handle = state.handle.clone();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok((content_type, body)) =
        tokio::task::spawn_blocking(move || handle.render_negotiated(accept.as_deref())).await
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
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
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{password}"));
    let expected_authorization = format!("Basic {credentials}");
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

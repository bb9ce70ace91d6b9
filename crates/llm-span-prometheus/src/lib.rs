//! Prometheus exporter for [`llm_span_layer`]: a recorder whose histograms are real
//! Prometheus histograms with LLM-fit buckets, and a small, secure `/metrics` listener.
//!
//! Two lines in an application:
//!
//! ```no_run
//! use llm_span_layer::LlmSpanLayer;
//! use tracing_subscriber::prelude::*;
//!
//! # fn main() -> Result<(), llm_span_prometheus::ExporterError> {
//! // Serves http://127.0.0.1:9000/metrics (LLM_METRICS_* variables can change that).
//! let _metrics = llm_span_prometheus::install()?;
//! tracing_subscriber::registry().with(LlmSpanLayer::new()).init();
//! # Ok(())
//! # }
//! ```
//!
//! Keep the returned [`ExporterHandle`]: dropping it stops the listener (or call
//! [`ExporterHandle::detach`]).
//!
//! The same with a listener on a free port, a recorder given to the layer rather than
//! installed globally, and a scrape:
//!
//! ```
//! use std::io::{Read, Write};
//! use llm_span_layer::LlmSpanLayer;
//! use llm_span_prometheus::ExporterBuilder;
//! use tracing_subscriber::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (recorder, server) = ExporterBuilder::new()
//!     .with_listen_addr(([127, 0, 0, 1], 0))
//!     .with_global_label("service", "chat")
//!     .with_bearer_token("s3cr3t")
//!     .spawn()?;
//! let layer = LlmSpanLayer::builder().with_recorder(recorder).build()?;
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("generate", model = "llama-3.1-8b", tokens_in = 12, tokens_out = 3);
//!     let _enter = span.enter();
//!     tracing::info!(first_token = true);
//! });
//!
//! let mut stream = std::net::TcpStream::connect(server.local_addr())?;
//! stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cr3t\r\nConnection: close\r\n\r\n")?;
//! let mut response = String::new();
//! stream.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK"));
//! assert!(response.contains(r#"llm_tokens_total{service="chat",model="llama-3.1-8b",type="input"} 12"#));
//! assert!(response.contains(r#"llm_ttft_seconds_bucket{service="chat",model="llama-3.1-8b",le="+Inf"} 1"#));
//! server.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # The recorder
//!
//! Every series is kept by this crate, in one store: a [`metrics-util`] registry of typed
//! series (whole-number counters, gauges, fixed-bucket histograms, the cost in
//! picodollars), written straight from that store in either format. Nothing runs in the
//! background and nothing waits for a scrape.
//!
//! - Every histogram is fixed buckets of atomic counters: the catalog's get
//!   [`buckets::PRESETS`], yours [`buckets::DEFAULT`] (either overridable with
//!   [`ExporterBuilder::with_buckets`] and [`ExporterBuilder::with_default_buckets`]), so
//!   nothing renders as a summary and `histogram_quantile` works on every histogram and
//!   across instances. A sample is a binary search and two atomic additions; nothing is
//!   allocated, and every scrape has monotone buckets whose `+Inf` equals `_count`. `_sum`
//!   includes every sample in `_count` and may include samples being recorded at that
//!   instant.
//! - The layer's cost counter (`llm_cost_pico_usd_total`, integer picodollars) is kept
//!   past 64 bits and served as `llm_cost_usd_total`, in US dollars, as an exact decimal.
//! - The request gauges (`llm_active_requests`, `llm_queue_depth`): a series that only
//!   requests not bound yet passed through (registered with
//!   [`llm_span_layer::catalog::PENDING_GAUGE_TARGET`], such as `tenant="unknown"`
//!   before authentication) is left out while it is 0, so it leaves nothing behind.
//! - HELP text comes from the catalog, and [`MetricsHandle::render`] adds `# HELP` and
//!   `# TYPE` for catalog families that have no series yet, so the output names every
//!   family from the first scrape and passes `promtool check metrics` without warnings.
//!   Families come in name order, series in label order, so two renders of unchanged
//!   metrics are byte-identical.
//! - One family per name, in both formats: a family that takes a name another one
//!   took (its OpenMetrics family name, or a sample name its type reserves there:
//!   `_total` and `_created` of a counter, `_bucket`, `_count`, `_sum` and `_created`
//!   of a histogram) is left out. The layer's families come first, then the
//!   application's in name order, then the `process_*` readings (an application that
//!   registers its own `process_*` metrics keeps them).
//!   `llm_exporter_name_clashes` counts the families each scrape left out.
//! - `llm_layer_request_spans_enabled` says at each scrape whether request spans can
//!   reach the layer at all ([`llm_span_layer::request_spans_enabled`]).
//! - Global labels ([`ExporterBuilder::with_global_label`]) go on every series.
//! - With the `process` feature, `process_cpu_seconds_total`,
//!   `process_start_time_seconds`, `process_resident_memory_bytes` and
//!   `process_open_fds` are read from `/proc` at each scrape (Linux).
//!
//! To serve `/metrics` yourself, use [`ExporterBuilder::install_recorder`] (global) or
//! [`ExporterBuilder::build`] (not global) and answer with
//! [`MetricsHandle::render_negotiated`], given the request's `Accept` header: it returns
//! the content type with the body (OpenMetrics 1.0, with exemplars, when the scraper
//! prefers it; the text format 0.0.4, [`CONTENT_TYPE`], otherwise). [`MetricsHandle::render`]
//! always gives the text format.
//!
//! # The listener
//!
//! | request | response |
//! |---|---|
//! | `GET /metrics`, `HEAD /metrics` | 200, `Content-Type: text/plain; version=0.0.4; charset=utf-8`, or OpenMetrics 1.0 when `Accept` prefers it (HEAD: headers only); gzip-encoded when `Accept-Encoding` admits gzip |
//! | other methods on `/metrics` | 405 with `Allow: GET, HEAD` (after the allowlist and authentication: an anonymous `POST` gets 401) |
//! | `GET /health`, `HEAD /health` | 200 `ok`: no allowlist, no authentication (it tells only that the process is up) |
//! | client outside the allowlist | 403 |
//! | missing or wrong credentials | 401 with `WWW-Authenticate: Basic realm="metrics"` and/or `Bearer realm="metrics"` |
//! | a request with a body | 413, connection closed |
//! | more than 32 header lines, or more than 8 KiB of them | 431 |
//! | `/metrics` while the bodies in flight would pass their budget | 503 with `Retry-After: 1` |
//! | any other path | 404 |
//!
//! - Binds `127.0.0.1:9000` by default. A non-loopback address with neither
//!   authentication nor an allowlist is refused with
//!   [`ExporterError::PublicBindWithoutAuth`] unless you call
//!   [`ExporterBuilder::allow_unauthenticated_public_bind`].
//! - Allowlist entries are IPv4 or IPv6 networks (`10.0.0.0/8`; a bare address is a
//!   /32 or /128). IPv4 clients of a dual-stack `[::]` socket (`::ffff:a.b.c.d`) match
//!   IPv4 networks.
//! - Basic and bearer credentials are compared in constant time; they never appear in
//!   `Debug` output, logs or errors ([`Secret`]). Give them as files, so that they are not
//!   on a command line.
//! - The listener runs on its own thread with its own single-threaded runtime, never
//!   on yours; rendering runs on its blocking pool. A client has 5 s to send its
//!   headers, a connection lives at most 30 s, at most 64 connections are served at
//!   once, and request headers are capped at 8 KiB and 32 header lines (more get 431).
//!   At the cap, a new connection evicts the oldest one that was never served metrics
//!   (silent, refused with 401 or 403, or asking for `/health` only), so clients that
//!   may not scrape cannot lock Prometheus out; when every connection was served
//!   metrics, the new one is closed at once.
//! - Bodies being sent hold at most 64 MiB together
//!   ([`ExporterBuilder::with_max_bytes_in_flight`]), or one body when it is larger: a
//!   scrape whose body would pass that gets 503 with `Retry-After: 1`, so clients that
//!   stop reading cannot hold one body each.
//! - [`ExporterHandle::shutdown`] (or drop) closes the port, lets in-flight scrapes
//!   finish (5 s at most) and joins the thread. A port in use is an immediate
//!   [`ExporterError::AddressInUse`], not a hang.
//! - With the `tls` feature, `ExporterBuilder::with_tls(cert, key)` serves HTTPS from PEM
//!   files (rustls with the ring provider, TLS 1.2 and 1.3; [`manual::tls`]).
//! - What a scrape gets (text format 0.0.4 or OpenMetrics 1.0 with exemplars, gzip, the
//!   cost in dollars): [`manual::formats`].
//!
//! # Configuration
//!
//! ## Environment variables
//!
//! [`install`] and [`ExporterBuilder::from_env`] read these; `with_*` calls made after
//! `from_env` override them (allowed networks add up).
//!
//! | variable | meaning | example |
//! |---|---|---|
//! | `LLM_METRICS_LISTEN` | listen socket address | `0.0.0.0:9000`, `[::]:9000` |
//! | `LLM_METRICS_ALLOW` | comma-separated allowed networks | `10.0.0.0/8,127.0.0.1` |
//! | `LLM_METRICS_BASIC_AUTH_USER` | basic auth user name | `prometheus` |
//! | `LLM_METRICS_BASIC_AUTH_PASSWORD` | basic auth password | |
//! | `LLM_METRICS_BASIC_AUTH_PASSWORD_FILE` | file holding the password (one trailing newline is ignored) | `/run/secrets/metrics-password` |
//! | `LLM_METRICS_BEARER_TOKEN` | bearer token | |
//! | `LLM_METRICS_BEARER_TOKEN_FILE` | file holding the bearer token | `/run/secrets/metrics-token` |
//! | `LLM_METRICS_ALLOW_PUBLIC` | `1` allows a public bind without auth or allowlist | `1` |
//! | `LLM_METRICS_GLOBAL_LABELS` | comma-separated `name=value` labels for every series | `service=chat,region=eu` |
//! | `LLM_METRICS_TLS_CERT` | PEM certificate chain (feature `tls`) | `/etc/metrics/tls.crt` |
//! | `LLM_METRICS_TLS_KEY` | PEM private key (feature `tls`) | `/etc/metrics/tls.key` |
//! | `LLM_METRICS_NAMING` | comma-separated naming profiles ([`Naming`]): `llm` (default), `vllm`, `otel` | `llm,vllm` |
//! | `LLM_METRICS_OTEL_ROLES` | comma-separated roles of the `otel` profile ([`OtelRole`]): `client`, `server` (default: both) | `server` |
//!
//! Empty variables count as unset, except credential variables: a set but empty
//! credential is an error, so that a secret that failed to mount does not open the
//! endpoint. Setting both a credential and its `_FILE` variant is an error.
//!
//! ## Builder methods
//!
//! | method | variable | default |
//! |---|---|---|
//! | [`with_listen_addr(addr)`](ExporterBuilder::with_listen_addr) | `LLM_METRICS_LISTEN` | `127.0.0.1:9000` ([`DEFAULT_LISTEN_ADDR`]) |
//! | [`with_allowed_network("10.0.0.0/8")`](ExporterBuilder::with_allowed_network) (repeatable; IPv4 or IPv6, bare IP = /32 or /128) | `LLM_METRICS_ALLOW` (comma-separated) | none |
//! | [`with_basic_auth(user, password)`](ExporterBuilder::with_basic_auth) | `LLM_METRICS_BASIC_AUTH_USER` + `LLM_METRICS_BASIC_AUTH_PASSWORD` or `..._PASSWORD_FILE` | none |
//! | [`with_bearer_token(token)`](ExporterBuilder::with_bearer_token) | `LLM_METRICS_BEARER_TOKEN` or `LLM_METRICS_BEARER_TOKEN_FILE` | none |
//! | [`allow_unauthenticated_public_bind()`](ExporterBuilder::allow_unauthenticated_public_bind) | `LLM_METRICS_ALLOW_PUBLIC=1` | refused |
//! | [`with_global_label(name, value)`](ExporterBuilder::with_global_label) | `LLM_METRICS_GLOBAL_LABELS=service=chat,region=eu` | none |
//! | [`with_naming([Naming::Llm, Naming::Vllm])`](ExporterBuilder::with_naming) | `LLM_METRICS_NAMING=llm,vllm` | `llm` |
//! | [`with_otel_roles([OtelRole::Server])`](ExporterBuilder::with_otel_roles) | `LLM_METRICS_OTEL_ROLES=server` | `client,server` |
//! | `with_tls(cert_path, key_path)` (feature `tls`, [`manual::tls`]) | `LLM_METRICS_TLS_CERT`, `LLM_METRICS_TLS_KEY`: paths of PEM files, not PEM text | plain HTTP |
//! | [`with_buckets(metric, &[..])`](ExporterBuilder::with_buckets) | | the presets below |
//! | [`with_default_buckets(&[..])`](ExporterBuilder::with_default_buckets) (histograms outside the catalog) | | [`buckets::DEFAULT`], the Prometheus client defaults |
//! | [`with_header_read_timeout`](ExporterBuilder::with_header_read_timeout), [`with_connection_timeout`](ExporterBuilder::with_connection_timeout), [`with_shutdown_timeout`](ExporterBuilder::with_shutdown_timeout) (at most a day, [`MAX_HTTP_TIMEOUT`]) | | 5 s, 30 s, 5 s |
//! | [`with_max_connections(n)`](ExporterBuilder::with_max_connections) (1 to 65,536, [`MAX_CONNECTIONS_LIMIT`]) | | 64 |
//!
//! Configuring it in code, serving `/metrics` from your own router, and the Prometheus
//! scrape job: [`manual::scraping`].
//!
//! # Bucket choices
//!
//! Each histogram of the layer has explicit buckets, chosen from the OpenTelemetry GenAI
//! and vLLM boundaries plus every threshold the shipped alerts use ([`buckets`] has the
//! values and the reasons):
//!
//! | histogram | buckets (upper bounds; `+Inf` is added) |
//! |---|---|
//! | `llm_ttft_seconds` | 0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25 0.5 0.75 1 2 2.5 5 7.5 10 20 40 80 160 320 640 |
//! | `llm_e2e_latency_seconds` | 0.01 doubling to 2621.44, plus 1 2 5 10 30 60 |
//! | `llm_time_per_output_token_seconds` | 0.001 0.0025 0.005 0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.4 0.5 0.75 1 2.5 |
//! | `llm_tokens_per_second` | 1 2 5 10 20 30 50 75 100 150 200 300 500 1000 2000 5000 |
//! | `llm_queue_wait_seconds` | 0.001 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2 2.5 5 10 30 60 120 300 600 |
//!
//! `llm_e2e_latency_seconds` uses the OpenTelemetry doubling series from 0.01 s to
//! 2621.44 s plus the round thresholds 1, 2, 5, 10, 30 and 60 s, so that alerts and SLOs
//! such as "99 % of requests under 10 s" read an exact bucket.
//!
//! # The manual
//!
//! | chapter | what it covers |
//! |---|---|
//! | [`manual::formats`] | histograms and their storage, text format and OpenMetrics, exemplars, gzip, cost in dollars, process metrics |
//! | [`manual::tls`] | HTTPS: certificate files, a self-signed certificate to try it, the scrape job |
//! | [`manual::scraping`] | configuration in code, your own router, the Prometheus scrape job, global labels |
//! | [`manual::naming`] | naming profiles: the layer's names, vLLM's (`vllm:`, `model_name`, vLLM's buckets) or the OpenTelemetry GenAI conventions' (`gen_ai_*`, client and server roles, advisory buckets), what maps to what, what is absent |
//!
//! What the layer reads and emits (the span contract, the metrics reference, prices,
//! exemplars): [`llm_span_layer::manual`].
//!
//! [`metrics-util`]: https://docs.rs/metrics-util

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs (`--cfg docsrs`, nightly) marks the items of the `tls` and `process` features.
#![cfg_attr(docsrs, feature(doc_cfg))]

// Where things live, top to bottom: `builder` (ExporterBuilder, checks of its
// settings), reading `env` (LLM_METRICS_* variables); `server` (the listener),
// `negotiate` (what a scraper accepts), `auth` (Secret, basic and bearer checks),
// `allow` (the network allowlist), `tls`; `recorder` (MetricsRecorder, MetricsHandle);
// `store` (one registry of every series, HELP text, the families of a render);
// `series` (one series of each type: `histogram` for fixed buckets, `cost` for
// picodollars); `exposition` (the writer of both formats); `process`; `buckets`
// (presets); `error` (ExporterError).
mod allow;
mod auth;
pub mod buckets;
mod builder;
mod cost;
mod env;
mod error;
mod exposition;
mod histogram;
pub mod manual;
mod naming;
mod negotiate;
mod otel;
#[cfg(feature = "process")]
mod process;
mod recorder;
mod series;
mod server;
mod store;
#[cfg(feature = "tls")]
mod tls;
mod vllm;

pub use auth::Secret;
pub use builder::{
    ExporterBuilder, DEFAULT_LISTEN_ADDR, DEFAULT_MAX_BYTES_IN_FLIGHT, MAX_CONNECTIONS_LIMIT,
    MAX_HTTP_TIMEOUT,
};
pub use error::ExporterError;
pub use naming::{Naming, OtelRole};
pub use recorder::{MetricsHandle, MetricsRecorder};
pub use server::ExporterHandle;

/// The `Content-Type` of a `/metrics` response in the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = server::CONTENT_TYPE;
/// The `Content-Type` of a `/metrics` response in OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Configures the exporter from `LLM_METRICS_*` environment variables, starts the
/// listener and installs the recorder globally: `ExporterBuilder::from_env()?.install()`.
pub fn install() -> Result<ExporterHandle, ExporterError> {
    ExporterBuilder::from_env()?.install()
}

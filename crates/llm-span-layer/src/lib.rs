//! A [`tracing_subscriber::Layer`] that turns spans of LLM inference into exact,
//! Prometheus-ready [`metrics`].
//!
//! Add [`LlmSpanLayer`] to the subscriber you already have, annotate inference
//! functions with a `model` and an input-token field, emit a first-token event, and
//! the layer counts tokens, requests, cost, time to first token, latency, decode speed,
//! active requests and queue depth per model, with no metrics code of your own.
//!
//! ```
//! use llm_span_layer::LlmSpanLayer;
//! use tracing::field::Empty;
//! use tracing_subscriber::prelude::*;
//!
//! # let recorder = metrics_util::debugging::DebuggingRecorder::new();
//! # let snapshotter = recorder.snapshotter();
//! # let layer = LlmSpanLayer::builder().with_recorder(recorder).build().unwrap();
//! // In an application: `LlmSpanLayer::new()` and a recorder such as llm-span-prometheus.
//! let subscriber = tracing_subscriber::registry().with(layer);
//!
//! #[tracing::instrument(skip_all, fields(model = %model, tokens_in = prompt.len(), tokens_out = Empty))]
//! fn generate(model: &str, prompt: &[u32]) -> Vec<u32> {
//!     // ... prefill ...
//!     tracing::info!(first_token = true);
//!     // ... decode ...
//!     let output = vec![1, 2, 3];
//!     tracing::Span::current().record("tokens_out", output.len());
//!     output
//! }
//!
//! tracing::subscriber::with_default(subscriber, || generate("llama-3.1-8b", &[7; 12]));
//! # let tokens: u64 = snapshotter.snapshot().into_vec().into_iter()
//! #     .filter(|(k, ..)| k.key().name() == "llm_tokens_total")
//! #     .map(|(.., v)| match v { metrics_util::debugging::DebugValue::Counter(n) => n, _ => 0 })
//! #     .sum();
//! # assert_eq!(tokens, 15);
//! ```
//!
//! # The span contract
//!
//! A **request span** declares a model field and an input-token field (either may be
//! [`Empty`](tracing_core::field::Empty) at creation and recorded later), or has a name given
//! to [`LlmSpanLayerBuilder::with_request_span_name`]. Events inside it (a first token,
//! streamed token counts, a finish reason, anything at `ERROR` level) update it; a
//! child span named `queue` marks the time it waited for a slot. The layer never
//! disables a callsite, so other layers see everything they saw before.
//!
//! Every field the layer reads, its OpenTelemetry GenAI aliases and what it means are
//! listed in the [span contract](manual::contract) (the same list in code:
//! [`fields::CONTRACT`]); the [semantics](manual::semantics) say when each metric moves.
//!
//! Emit contract spans and events at `INFO` or above, and filter your logs with a
//! per-layer filter (`fmt::layer().with_filter(..)`): a *global* filter at `WARN`
//! disables `INFO` request spans for every layer, this one included.
//!
//! # Metrics
//!
//! The [metrics reference](manual::metrics_reference) lists every family with its labels,
//! unit and meaning, and the anomaly reasons; [`catalog::METRICS`] is the same list in
//! code, with the help texts, and [`catalog`] the closed sets of label values. Cost needs
//! [prices](manual::prices); exemplars lead from a slow bucket to its
//! [trace](manual::exemplars).
//!
//! # The manual
//!
//! | chapter | what it covers |
//! |---|---|
//! | [`manual::contract`] | request spans, events and queue spans; fields and aliases; levels and filters |
//! | [`manual::semantics`] | time, decode speed, status, label binding, tokens, cost, queue phases, reloads, caps |
//! | [`manual::metrics_reference`] | every metric family, its labels and unit; anomaly reasons |
//! | [`manual::prices`] | [`PriceTable`] and [`ModelPrice`] in code, price files |
//! | [`manual::exemplars`] | trace ids, exemplars in OpenMetrics scrapes, Grafana, where they survive |
//!
//! Serving the metrics to Prometheus (the `/metrics` listener, its configuration
//! variables, TLS, formats, bucket boundaries) is the crate llm-span-prometheus's part.
//!
//! # Recorders
//!
//! Any `metrics` recorder receives the metrics. Handles are registered once per series
//! and reused. By default the layer uses the recorder current at registration (a local
//! recorder, else the global one), keeping a separate set of handles per recorder, so the
//! recorder may be installed before or after the layer. A request span opened before the
//! recorder is installed moves to it when it binds (at its first token, at the latest
//! when it ends): it is counted in full, and shows in `llm_active_requests` and
//! `llm_queue_depth` from then on. Recorders are told apart by address, at most 8 of
//! them: the global one always works, but a recorder created after another was dropped
//! may reuse its address and its stale handles, and receive nothing. Give the layer its
//! own recorder with [`LlmSpanLayerBuilder::with_recorder`] in tests, which create and
//! drop recorders (`with_local_recorder`) and run on several threads.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals;
mod builder;
pub mod catalog;
mod containers;
mod contract;
mod decode;
mod entered;
pub mod exemplar;
#[cfg(test)]
mod fast_path_tests;
mod layer;
pub mod manual;
#[cfg(feature = "opentelemetry")]
mod otel;
mod pricing;
mod recorders;
mod reentry;
mod request;
mod series;
mod sinks;

pub use builder::{ConfigError, LlmSpanLayerBuilder};
pub use contract::fields;
pub use layer::LlmSpanLayer;
pub use pricing::{ModelPrice, PriceError, PriceTable};

/// Whether request spans at `INFO` can reach this layer at all.
///
/// `false` when the process-wide maximum level is below `INFO`: a *global* filter
/// (a global `EnvFilter` at `warn`, say, or `fmt().with_env_filter(..)`) disables `INFO`
/// spans for every layer before any layer sees them, and no request is counted. Give
/// the filter to the log layer instead (`fmt::layer().with_filter(..)`). The exporter
/// `llm-span-prometheus` serves this as the gauge `llm_layer_request_spans_enabled`; with
/// another recorder, check it after installing the subscriber.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// use tracing_subscriber::filter::LevelFilter;
///
/// // Logs at WARN through a per-layer filter: requests still reach the layer.
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::WARN))
///     .with(llm_span_layer::LlmSpanLayer::new());
/// tracing::subscriber::with_default(subscriber, || {
///     assert!(llm_span_layer::request_spans_enabled());
/// });
/// ```
pub fn request_spans_enabled() -> bool {
    tracing_core::LevelFilter::current() >= tracing_core::LevelFilter::INFO
}

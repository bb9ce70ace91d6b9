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
//! A **request span** is a span that declares a model field and an input-token field
//! (either may be [`Empty`](tracing::field::Empty) at creation and recorded later), or
//! whose name was given to [`LlmSpanLayerBuilder::with_request_span_name`]. The class
//! of each callsite is decided once, when it registers; the layer never disables a
//! callsite, so other layers see everything they saw before.
//!
//! | field (span) | aliases | meaning |
//! |---|---|---|
//! | `model` | `gen_ai.request.model` | model name; the `model` label |
//! | `gen_ai.response.model` | | model name, used only if the request names none |
//! | `model_revision` | | feeds `llm_model_info{model,revision}` |
//! | `tokens_in` | `gen_ai.usage.input_tokens` | prompt tokens |
//! | `tokens_out` | `gen_ai.usage.output_tokens` | generated tokens (the request's total) |
//! | `tokens_cached` | `gen_ai.usage.cache_read.input_tokens` | prompt tokens served from the prefix cache |
//! | `finish_reason` | `gen_ai.response.finish_reasons` | why generation stopped |
//! | `status` | `otel.status_code` | `ok`, `error` or `cancelled` (overrides the inferred status) |
//! | `error` | `error.type` | any value but `false` marks the request failed |
//!
//! Events inside the request span or any of its descendants (the layer walks the
//! scope to the nearest request span):
//!
//! | event field | meaning |
//! |---|---|
//! | `first_token` | the first output token exists: TTFT is recorded (once; a second is an anomaly) |
//! | `tokens_out_delta = n` | `n` more output tokens were streamed; counted at once; the first also marks the first token |
//! | `finish_reason` | generation completed: the end time for latency and decode speed |
//! | `tokens_in`, `tokens_out`, `tokens_cached` | the same as recording them on the span |
//! | any field at `ERROR` level | the request failed (`#[instrument(err)]` emits such an event) |
//! | `gpu_memory_used_bytes` (+ `gpu`) | sets `llm_gpu_memory_used_bytes{gpu}`; needs no request |
//! | `kv_cache_usage_ratio` (+ `model`) | sets `llm_kv_cache_usage_ratio{model}`; without `model`, the enclosing request's |
//!
//! Emit contract events at `INFO` or above: a global filter at `INFO` hides a `DEBUG`
//! first-token event from every layer.
//!
//! A **queue span** is a child of a request span named `queue` (see
//! [`LlmSpanLayerBuilder::with_queue_span_name`]); while it is open the request counts
//! in `llm_queue_depth`, and its lifetime is observed in `llm_queue_wait_seconds`.
//!
//! Values may be `u64`, `i64`, integral `f64`, `&str`, or `%`/`?` formatted. Token
//! counts must be integers from 0 to 2^32 - 1; anything else is dropped and counted in
//! `llm_layer_anomalies_total{reason="malformed_value"}`.
//!
//! # Semantics
//!
//! - **Time** comes from a monotonic [`quanta::Clock`] (injectable with
//!   [`LlmSpanLayerBuilder::with_clock`]), never from enter/exit, which async spans do
//!   on every poll. TTFT is first-token event minus span creation. End-to-end latency
//!   is span creation to the completion event, or to span close if there is none.
//! - **Decode speed**: with `n` output tokens, a first token at `f` and an end at `e`,
//!   time per output token is `(e - f) / (n - 1)` and tokens per second is
//!   `(n - 1) / (e - f)`. Nothing is recorded for `n < 2` or without a first token.
//! - **Status**: an explicit `status` wins; else an error seen in scope makes it
//!   `error`; else `ok` if the request signalled completion (a finish reason or a
//!   recorded `tokens_out`), else `cancelled` (the span closed early, as when a future
//!   is dropped mid-stream). End-to-end latency and decode speed are recorded for `ok`
//!   requests only; TTFT for every request that produced a first token.
//! - **Labels** are bound when a request's series is first needed (at creation when
//!   the model is known); later changes of the model or extra labels are ignored.
//!   `llm_active_requests` goes up then and down at span close, so it returns to 0
//!   however requests end, on whatever thread the span closes.
//! - **Cardinality**: at most [`LlmSpanLayerBuilder::with_max_models`] distinct models
//!   (default 100), [`LlmSpanLayerBuilder::with_max_label_values`] values per extra label
//!   (default 100) and [`LlmSpanLayerBuilder::with_max_series`] label combinations
//!   (default 1000); further values, empty ones excepted, become `__overflow__` and are
//!   counted as anomalies. Values longer than
//!   128 bytes or with control characters are `__overflow__` too.
//! - **Cost** is `llm_cost_micro_usd_total`, an integer counter of micro-dollars that
//!   carries sub-micro-dollar remainders exactly. Models without a price count their
//!   tokens in `llm_unpriced_tokens_total` instead.
//!
//! # Metrics
//!
//! [`catalog::METRICS`] lists every family with its type, labels, unit and help text.
//!
//! # Recorders
//!
//! Handles are registered once per series and reused. By default the layer uses the
//! recorder current at registration (a local recorder, else the global one), keeping
//! a separate set of handles per recorder, so it works when the recorder is installed
//! after the layer. Recorders are told apart by address, at most 8 of them: the global
//! one always works, but a recorder created after another was dropped may reuse its
//! address and its stale handles. Give the layer its own recorder with
//! [`LlmSpanLayerBuilder::with_recorder`] in tests, which create and drop recorders and
//! run on several threads.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod callsites;
pub mod catalog;
mod contract;
mod inflight;
mod labels;
mod layer;
mod pricing;
mod series;
mod state;
mod table;
mod update;

pub use contract::fields;
pub use layer::{ConfigError, LlmSpanLayer, LlmSpanLayerBuilder};
pub use pricing::{ModelPrice, PriceError, PriceTable};

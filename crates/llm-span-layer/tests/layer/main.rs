//! The layer's integration tests that can share a process: one test binary, a module per
//! behaviour, on one harness (`support`).
//!
//! Each test builds its own layer, recorder and subscriber and sets that subscriber only
//! on its own threads, so the tests run in parallel. What is process-wide stays out of
//! this binary: `process/` holds the tests that read or set it (the peak resident
//! memory, the `tracing` maximum level, the global `metrics` recorder). Every subscriber
//! here has the layer's level (TRACE), so the maximum level they share never hides a span
//! of another test.

mod support;

mod aliases;
mod async_runtime;
mod callsite_registration;
mod cardinality;
mod config;
mod cost;
mod edges;
mod errors;
mod events;
mod exemplars;
mod in_flight;
mod malformed;
#[cfg(feature = "opentelemetry")]
mod opentelemetry;
mod operation_sequences;
mod recorders;
mod request_metrics;
mod request_semantics;
mod streaming;

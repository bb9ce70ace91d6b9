//! The exporter's integration tests that can share a process: one test binary, a module
//! per behaviour.
//!
//! Two binaries are apart, because they depend on what is process-wide: `process/` puts
//! the recorder in the global `metrics` slot (once per process) and counts this process's
//! threads, and `secret_zeroing.rs` replaces the global allocator and watches every block
//! freed.
//!
//! What is process-wide here: the layer's `llm_layer_request_spans_enabled` reads the
//! `tracing` maximum level, which every new subscriber (in `layer` and `openmetrics`)
//! moves. A test that compares two scrapes byte for byte holds the level while it runs
//! (`support::hold_max_level`), or leaves that line out.

mod support;

mod config;
mod golden;
mod http;
mod layer;
mod openmetrics;
mod otel;
#[cfg(feature = "tls")]
mod tls;

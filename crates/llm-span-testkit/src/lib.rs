//! Shared pieces of the llm-span workspace's tests, examples and benchmarks.
//!
//! Not published, and not the product: the product is `llm-span-layer` and
//! `llm-span-prometheus`. The demo server and the load generator agree on tokenization
//! and randomness through [`demo`]; the layer's tests read what it recorded through
//! [`recorded`]; tests run the demo server and the load generator
//! through [`process`], read scrapes through [`prom`], speak raw HTTP through [`http`] and
//! check expositions and rule files through [`promtool`] (and against the OpenTelemetry
//! GenAI conventions through [`otel_conformance`]), and read the workspace's own files
//! through [`shipped`]. When a test needs a tool that is not installed, [`tools`]
//! decides whether it skips or fails.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod demo;
pub mod http;
pub mod openmetrics;
pub mod otel_conformance;
pub mod process;
pub mod prom;
pub mod prometheus;
pub mod promtool;
pub mod recorded;
pub mod shipped;
pub mod tools;

/// The README, whose Rust code blocks `cargo test --doc` compiles and runs (those marked
/// `no_run`, which bind fixed ports or read secrets, are compiled only).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// `llm-span-layer`'s README, its page on crates.io: its Rust code blocks, as above.
#[cfg(doctest)]
#[doc = include_str!("../../llm-span-layer/README.md")]
pub struct LayerReadmeDoctests;

/// `llm-span-prometheus`'s README, its page on crates.io: its Rust code blocks, as above.
#[cfg(doctest)]
#[doc = include_str!("../../llm-span-prometheus/README.md")]
pub struct PrometheusReadmeDoctests;

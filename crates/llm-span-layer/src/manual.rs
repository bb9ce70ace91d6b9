//! The manual: what the layer reads, what it emits, and when.
//!
//! Documentation only; these modules hold no items.
//!
//! - [`contract`]: the span contract, the request spans, events and queue spans the layer
//!   reads, their fields and their OpenTelemetry GenAI aliases, levels and filters.
//! - [`semantics`]: when each metric moves (time, status, label binding, tokens, cost,
//!   queue phases, reloads, cardinality caps).
//! - [`metrics_reference`]: every metric family, its labels and unit, and the anomaly
//!   reasons.
//! - [`prices`]: prices per model, in code or from a price file.
//! - [`exemplars`]: from a slow bucket to its trace, and where exemplars survive.
//!
//! The exporter's side (the `/metrics` listener, its configuration variables, TLS, formats
//! and bucket boundaries) is documented in the crate llm-span-prometheus.

#[doc = include_str!("../docs/contract.md")]
pub mod contract {}

#[doc = include_str!("../docs/semantics.md")]
pub mod semantics {}

#[doc = include_str!("../docs/metrics_reference.md")]
pub mod metrics_reference {}

#[doc = include_str!("../docs/prices.md")]
pub mod prices {}

#[doc = include_str!("../docs/exemplars.md")]
pub mod exemplars {}

//! The manual: formats, TLS, scraping and naming profiles.
//!
//! Documentation only; these modules hold no items. The listener's routes and limits, the
//! configuration variables and the bucket boundaries are on the
//! [crate](crate#the-listener) page.
//!
//! - [`formats`]: histograms and their storage, the text format 0.0.4 and OpenMetrics 1.0
//!   with exemplars, gzip, the cost in dollars, process metrics.
//! - [`tls`]: HTTPS with the `tls` feature.
//! - [`scraping`]: configuration in code, `/metrics` in your own router, the Prometheus
//!   scrape job.
//! - [`naming`]: naming profiles: the layer's names, vLLM's (`vllm:`, `model_name`), or the
//!   OpenTelemetry GenAI conventions' (`gen_ai_*`).

#[doc = include_str!("../docs/formats.md")]
pub mod formats {}

#[doc = include_str!("../docs/tls.md")]
pub mod tls {}

#[doc = include_str!("../docs/scraping.md")]
pub mod scraping {}

#[doc = include_str!("../docs/naming.md")]
pub mod naming {}

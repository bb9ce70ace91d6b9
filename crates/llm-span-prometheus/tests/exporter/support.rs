//! What several modules of this binary use.

/// Holds the `tracing` maximum level at TRACE while the returned dispatcher lives.
///
/// Every scrape has `llm_layer_request_spans_enabled`, which reads that process-wide
/// level; a new subscriber moves it (from OFF to TRACE the first time), and the tests of
/// `layer` and `openmetrics` make theirs at any moment. While this one lives, every
/// recomputation of the level counts it, so a test that compares two scrapes byte for
/// byte sees the same value in both.
#[must_use = "the level is held only while the dispatcher lives"]
pub(crate) fn hold_max_level() -> tracing::Dispatch {
    tracing::Dispatch::new(tracing_subscriber::registry())
}

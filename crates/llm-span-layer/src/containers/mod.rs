//! The concurrent containers the layer's hot path reads.
//!
//! Everything looked up per request is bounded by configuration and never removed, so
//! the home-made ones are insert-only tables written under a writers' lock and read with
//! atomic loads; their memory grows with what they hold, not with their caps. Label
//! interning is the exception: a capped [`dashmap::DashMap`], as the home-made table saved
//! nothing there (BENCHMARKS.md, "Containers: home-made against dashmap/std"):
//! - [`segments`]: an array whose memory grows with the highest index used;
//! - [`table`]: the insert-only hash table the others build on, and its hashers;
//! - [`callsites`]: every callsite seen, with its class;
//! - [`labels`]: interned label values, capped per label (a `DashMap`, and [`segments`]
//!   for the text and price of an id);
//! - [`inflight`]: the state of open request and queue spans, keyed by span id;
//! - [`lane`]: a streaming request's delta tokens, added without its lock.

pub(crate) mod callsites;
pub(crate) mod inflight;
pub(crate) mod labels;
pub(crate) mod lane;
pub(crate) mod segments;
pub(crate) mod table;

/// Runs a loom model of a container (its `mod loom`, under `--cfg llm_span_loom`): every
/// interleaving of its threads up to three preemptions, the bound that keeps each model to
/// seconds.
#[cfg(all(test, llm_span_loom))]
fn loom_model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = ::loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(test);
}

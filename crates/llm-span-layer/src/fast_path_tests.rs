//! The fast paths are taken where they should be, and only there: the thread's enter
//! hint (an event finds its request without asking the registry) and a bound request's
//! stream lane (a delta event counts without the request's lock). Their slow paths count
//! the same, so the integration tests cannot tell whether a fast path ran: these tests
//! look at the layer's own state.

use llm_span_testkit::recorded::Metrics;
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use tracing::field::Empty;
use tracing::Dispatch;
use tracing_core::span::Id;
use tracing_subscriber::prelude::*;

use crate::LlmSpanLayer;

struct Setup {
    dispatch: Dispatch,
    snapshotter: Snapshotter,
}

impl Setup {
    fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let layer = LlmSpanLayer::builder()
            .with_recorder(recorder)
            .with_clock(quanta::Clock::mock().0)
            .build()
            .expect("valid layer");
        Self {
            dispatch: Dispatch::new(tracing_subscriber::registry().with(layer)),
            snapshotter,
        }
    }

    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    fn layer(&self) -> &LlmSpanLayer {
        self.dispatch
            .downcast_ref::<LlmSpanLayer>()
            .expect("the subscriber holds the layer")
    }

    /// Tokens the lane of `span` holds, not folded yet; `None`: its lane is closed.
    fn lane(&self, span: &tracing::Span) -> Option<u64> {
        self.layer().lane_pending(&span_id(span))
    }

    /// A counter's value by name and labels (what changed since the last snapshot).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        Metrics::of(&self.snapshotter).counter(name, labels)
    }
}

fn span_id(span: &tracing::Span) -> Id {
    span.id().expect("an enabled span")
}

const OUTPUT: &[(&str, &str)] = &[("model", "m"), ("type", "output")];

#[test]
fn delta_events_of_a_bound_request_take_the_lane_whatever_their_integer_type() {
    let setup = Setup::new();
    setup.run(|| {
        let span = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
        let entered = span.enter();
        assert_eq!(
            setup.layer().lane_pending(&span_id(&span)),
            None,
            "no lane before the first token"
        );
        // The first token binds the request (the general path), which opens its lane.
        tracing::info!(tokens_out_delta = 1u64);
        assert_eq!(setup.lane(&span), Some(0), "open, nothing pending");
        tracing::info!(tokens_out_delta = 2u64);
        assert_eq!(setup.lane(&span), Some(2), "a u64 delta took the lane");
        tracing::info!(tokens_out_delta = 3);
        assert_eq!(setup.lane(&span), Some(5), "an i64 delta took the lane");
        // Another integer field beside the delta is not the delta.
        tracing::info!(tokens_out_delta = 4u64, chunk = 40u64);
        tracing::info!(tokens_out_delta = 5, chunk = 50);
        assert_eq!(setup.lane(&span), Some(14));
        // Not an integer count: the general path, which folds the lane on its way.
        tracing::info!(tokens_out_delta = "6");
        assert_eq!(setup.lane(&span), Some(0));
        drop(entered);
        assert_eq!(setup.counter("llm_tokens_total", OUTPUT), 21);
        drop(span);
    });
}

#[test]
fn a_request_not_bound_yet_keeps_its_lane_closed_even_where_its_series_counts() {
    let setup = Setup::new();
    setup.run(|| {
        // A request that never learns its model binds to `unknown` at close: that
        // series has its counters from then on.
        drop(tracing::info_span!(
            "generate",
            model = Empty,
            tokens_in = 1u64
        ));
        let span = tracing::info_span!("generate", model = Empty, tokens_in = 1u64);
        span.in_scope(|| {
            tracing::info!(tokens_out_delta = 1u64);
            tracing::info!(tokens_out_delta = 2u64);
            assert_eq!(setup.lane(&span), None, "its labels are still open");
        });
        span.record("model", "m");
        span.in_scope(|| tracing::info!(tokens_out_delta = 4u64));
        assert_eq!(setup.lane(&span), Some(0), "bound now: the lane opened");
        assert_eq!(setup.counter("llm_tokens_total", OUTPUT), 7);
        drop(span);
    });
}

#[test]
fn an_event_after_its_request_was_exited_is_outside_it() {
    let setup = Setup::new();
    setup.run(|| {
        let span = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
        span.in_scope(|| tracing::info!(tokens_out_delta = 1u64));
        // Contextual, with no span entered: it belongs to no request.
        tracing::info!(tokens_out_delta = 10u64);
        assert_eq!(setup.counter("llm_tokens_total", OUTPUT), 1);
        drop(span);
    });
}

#[test]
fn the_enter_hint_of_one_subscriber_is_not_taken_by_another() {
    // Two fresh registries give their first spans the same id.
    let (a, b) = (Setup::new(), Setup::new());
    a.run(|| {
        let outer = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
        let _entered = outer.enter();
        b.run(|| {
            let inner = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
            assert_eq!(span_id(&inner), span_id(&outer));
            // B has no current span: the delta belongs to no request of B's, although
            // A's hint names a span id that B tracks too.
            tracing::info!(tokens_out_delta = 10u64);
            drop(inner);
        });
        assert_eq!(b.counter("llm_tokens_total", OUTPUT), 0);
        tracing::info!(tokens_out_delta = 1u64);
        assert_eq!(a.counter("llm_tokens_total", OUTPUT), 1);
    });
}

#[test]
fn a_callsite_seen_before_is_found_from_its_hint() {
    let setup = Setup::new();
    // Creating the span classifies its callsite and stores the hint.
    let span = setup.run(|| tracing::info_span!("generate", model = "m", tokens_in = 1u64));
    let hits = || crate::layer::CALLSITE_HINT_HITS.with(std::cell::Cell::get);
    let metadata = span.metadata().expect("an enabled span");
    let before = hits();
    let (entry, class) = setup.layer().callsite(metadata).expect("a request span");
    assert!(matches!(
        class,
        crate::contract::CallsiteClass::Request { .. }
    ));
    assert_eq!(hits(), before + 1, "found from its hint");
    assert_eq!(
        setup.layer().callsite(metadata).map(|(e, _)| e),
        Some(entry)
    );
    assert_eq!(hits(), before + 2);
    setup.run(|| drop(span));
}

#[test]
fn requests_take_the_lane_after_many_rollouts() {
    // 100 models rolled through three revisions: 300 (model, revision) pairs. The last
    // rollout's requests still stream through the lane, and so does one whose revision
    // is past the revision cap (100 values: shown nowhere, counted as `label_overflow`).
    let setup = Setup::new();
    setup.run(|| {
        for revision in ["v1", "v2", "v3"] {
            for model in 0..100 {
                let model = format!("model-{model}");
                let span = tracing::info_span!(
                    "generate",
                    model = model.as_str(),
                    model_revision = revision,
                    tokens_in = 1u64
                );
                let id = span_id(&span);
                drop(span);
                // Closed, it leaves the table (else the ids the registry reuses pile up
                // in it, and this test takes minutes).
                assert!(
                    !setup.layer().tracks(&id),
                    "{model}@{revision} still tracked"
                );
            }
        }
        for revision in ["v3", "past-the-cap"] {
            for value in 0..97 {
                drop(tracing::info_span!(
                    "generate",
                    model = "m",
                    model_revision = value,
                    tokens_in = 1u64
                ));
            }
            let span = tracing::info_span!(
                "generate",
                model = "model-99",
                model_revision = revision,
                tokens_in = 1u64
            );
            span.in_scope(|| {
                tracing::info!(tokens_out_delta = 1u64);
                tracing::info!(tokens_out_delta = 2u64);
            });
            assert_eq!(
                setup.lane(&span),
                Some(2),
                "{revision}: the second delta took the lane"
            );
            drop(span);
        }
    });
}

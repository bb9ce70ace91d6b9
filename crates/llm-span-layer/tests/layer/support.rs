//! The harness of the layer's tests: a layer wired to a `DebuggingRecorder` and a mock
//! clock, behind a dispatcher that is only ever set thread-locally (tests run in parallel),
//! and what a test reads back. `process/main.rs` includes this file too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use llm_span_layer::exemplar::{self, TraceContext};
use llm_span_layer::{LlmSpanLayer, LlmSpanLayerBuilder};
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use quanta::{Clock, Mock};
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

// What a test reads back, shared with the layer's fast-path unit tests (the testkit's).
pub(crate) use llm_span_testkit::recorded::{assert_all_close, assert_close, Expect, Metrics};

pub(crate) struct Harness {
    pub(crate) dispatch: Dispatch,
    pub(crate) clock: Arc<Mock>,
    clock_handle: Clock,
    recorder: Arc<DebuggingRecorder>,
    snapshotter: Snapshotter,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(|builder| builder)
    }

    pub(crate) fn with(configure: impl FnOnce(LlmSpanLayerBuilder) -> LlmSpanLayerBuilder) -> Self {
        let recorder = Arc::new(DebuggingRecorder::new());
        let snapshotter = recorder.snapshotter();
        let (clock, mock) = Clock::mock();
        let layer = configure(
            LlmSpanLayer::builder()
                .with_recorder(Arc::clone(&recorder))
                .with_clock(clock.clone()),
        )
        .build()
        .expect("valid layer configuration");
        let dispatch = dispatch(layer);
        Self {
            dispatch,
            clock: mock,
            clock_handle: clock,
            recorder,
            snapshotter,
        }
    }

    /// A builder for another layer writing to this harness's recorder and clock.
    pub(crate) fn layer_builder(&self) -> LlmSpanLayerBuilder {
        LlmSpanLayer::builder()
            .with_recorder(Arc::clone(&self.recorder))
            .with_clock(self.clock_handle.clone())
    }

    /// Runs `f` with this harness's subscriber as the thread's default.
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    pub(crate) fn advance(&self, seconds: f64) {
        self.clock.increment(Duration::from_secs_f64(seconds));
    }

    /// What changed since the previous snapshot (snapshots are destructive).
    pub(crate) fn snapshot(&self) -> Metrics {
        Metrics::of(&self.snapshotter)
    }
}

/// A dispatcher of `layer` alone over a registry, to set as a thread's default.
pub(crate) fn dispatch(layer: LlmSpanLayer) -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// A layer writing to a `DebuggingRecorder` of its own, on the real clock, and what reads
/// that recorder back (`Metrics::of`): for a test that builds its own subscriber.
pub(crate) fn recording_layer() -> (LlmSpanLayer, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .build()
        .expect("valid layer");
    (layer, snapshotter)
}

/// A histogram sample as [`TraceCapture`] saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TracedSample {
    pub(crate) name: String,
    /// The trace current while the sample was recorded.
    pub(crate) trace: Option<TraceContext>,
    /// The time the layer gave a traced sample, in seconds since the Unix epoch.
    pub(crate) time: Option<f64>,
}

pub(crate) type TracedSamples = Arc<Mutex<Vec<TracedSample>>>;

/// A recorder that keeps every histogram sample with its trace (counters and gauges are
/// no-ops): what an exemplar-keeping recorder is given.
pub(crate) struct TraceCapture(pub(crate) TracedSamples);

struct TraceCaptureHistogram {
    name: String,
    samples: TracedSamples,
}

impl metrics::HistogramFn for TraceCaptureHistogram {
    fn record(&self, _: f64) {
        let sample = TracedSample {
            name: self.name.clone(),
            trace: exemplar::current(),
            time: exemplar::current_with_time().and_then(|(_, time)| time),
        };
        self.samples.lock().expect("samples").push(sample);
    }
}

/// The `describe_*` methods of a `metrics::Recorder` that keeps no descriptions, for the
/// `impl` of a test's recorder (`TraceCapture` below; `cardinality`'s gauge recorder).
macro_rules! no_descriptions {
    () => {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
    };
}
pub(crate) use no_descriptions;

impl metrics::Recorder for TraceCapture {
    no_descriptions!();
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(TraceCaptureHistogram {
            name: key.name().to_owned(),
            samples: Arc::clone(&self.0),
        }))
    }
}

/// The loop size of a slow test: `full`, or `under_mutants` when `LLM_SPAN_MUTANTS` is set, as
/// `scripts/mutants.sh` sets it, where the suite runs once per mutant.
pub(crate) fn loop_size(full: u32, under_mutants: u32) -> u32 {
    if std::env::var_os("LLM_SPAN_MUTANTS").is_some() {
        under_mutants
    } else {
        full
    }
}

/// Forty finished requests, each under its own model, spread over 13 tenants.
pub(crate) fn requests_across_models_and_tenants() {
    for i in 0..40 {
        let model = format!("model-{i}");
        let tenant = format!("tenant-{}", i % 13);
        drop(tracing::info_span!(
            "generate",
            model = model.as_str(),
            tenant = tenant.as_str(),
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
    }
}

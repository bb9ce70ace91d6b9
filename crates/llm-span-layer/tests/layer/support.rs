//! The harness of the layer's tests: a layer wired to a `DebuggingRecorder` and a mock
//! clock, behind a dispatcher that is only ever set thread-locally (tests run in parallel),
//! and what a test reads back. `process/main.rs` includes this file too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llm_span_layer::exemplar::{self, TraceContext};
use llm_span_layer::{LlmSpanLayer, LlmSpanLayerBuilder};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use quanta::{Clock, Mock};
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

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

pub(crate) struct Metrics(HashMap<(String, BTreeMap<String, String>), DebugValue>);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Metrics {
    /// A snapshot of any `DebuggingRecorder` (destructive, as its snapshots are).
    pub(crate) fn of(snapshotter: &Snapshotter) -> Self {
        let mut values = HashMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: BTreeMap<String, String> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            values.insert((key.name().to_owned(), labels), value);
        }
        Metrics(values)
    }

    pub(crate) fn get(&self, name: &str, pairs: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0.get(&(name.to_owned(), labels(pairs)))
    }

    /// A counter's value; panics if the series was never registered.
    pub(crate) fn counter(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        match self.get(name, pairs) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name}{pairs:?} is not a registered counter: {other:?}\n{self:#?}"),
        }
    }

    pub(crate) fn gauge(&self, name: &str, pairs: &[(&str, &str)]) -> f64 {
        match self.get(name, pairs) {
            Some(DebugValue::Gauge(v)) => v.into_inner(),
            other => panic!("{name}{pairs:?} is not a registered gauge: {other:?}\n{self:#?}"),
        }
    }

    pub(crate) fn histogram(&self, name: &str, pairs: &[(&str, &str)]) -> Vec<f64> {
        match self.get(name, pairs) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            other => panic!("{name}{pairs:?} is not a registered histogram: {other:?}\n{self:#?}"),
        }
    }

    pub(crate) fn anomalies(&self, reason: &str) -> u64 {
        self.counter("llm_layer_anomalies_total", &[("reason", reason)])
    }

    /// Sum of every anomaly reason.
    pub(crate) fn all_anomalies(&self) -> u64 {
        self.sum("llm_layer_anomalies_total")
    }

    /// Sum of a counter family over all its series.
    pub(crate) fn sum(&self, name: &str) -> u64 {
        self.sum_of(name, &[])
    }

    /// Sum of a counter family over the series that have all of `pairs` among their labels.
    pub(crate) fn sum_of(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        self.0
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && pairs
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    }

    /// Label sets of a family.
    pub(crate) fn series(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let mut series: Vec<_> = self
            .0
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .collect();
        series.sort();
        series
    }

    /// Distinct values a label takes in a family.
    pub(crate) fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .series(name)
            .into_iter()
            .filter_map(|l| l.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rows: Vec<String> = self
            .0
            .iter()
            .map(|((name, labels), value)| format!("{name}{labels:?} = {value:?}"))
            .collect();
        rows.sort();
        f.debug_list().entries(rows).finish()
    }
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

/// One row of a table given to [`Metrics::assert_series`]: a series, written as Prometheus
/// shows it (`family{label=value,...}`, or a bare family), and what it must hold.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect<'a> {
    /// A registered counter of exactly this value.
    Counter(&'a str, u64),
    /// A registered gauge of exactly this value.
    Gauge(&'a str, f64),
    /// A registered gauge of this value to within rounding ([`assert_close`]).
    GaugeClose(&'a str, f64),
    /// A registered histogram of exactly these samples, each to within rounding
    /// ([`assert_all_close`]); `&[]` for a registered histogram with no sample.
    Samples(&'a str, &'a [f64]),
    /// No series of this family and labels at all.
    Absent(&'a str),
}

/// A series written as Prometheus shows it, `family{label=value,...}` (or a bare family),
/// as its family and label pairs.
fn parse_series(series: &str) -> (&str, Vec<(&str, &str)>) {
    let Some((name, labels)) = series.split_once('{') else {
        return (series, Vec::new());
    };
    let labels = labels
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("{series}: no closing brace"));
    let pairs = labels
        .split(',')
        .map(|pair| {
            pair.split_once('=')
                .unwrap_or_else(|| panic!("{series}: {pair} is not label=value"))
        })
        .collect();
    (name, pairs)
}

impl Metrics {
    /// Checks every row of `table`; a failure names its row's series.
    #[track_caller]
    pub(crate) fn assert_series(&self, table: &[Expect<'_>]) {
        for &row in table {
            match row {
                Expect::Counter(series, value) => {
                    let (name, pairs) = parse_series(series);
                    assert_eq!(self.counter(name, &pairs), value, "{series}");
                }
                Expect::Gauge(series, value) => {
                    let (name, pairs) = parse_series(series);
                    assert_eq!(self.gauge(name, &pairs), value, "{series}");
                }
                Expect::GaugeClose(series, value) => {
                    let (name, pairs) = parse_series(series);
                    let actual = self.gauge(name, &pairs);
                    assert!(
                        is_close(actual, value),
                        "{series}: expected {value}, got {actual}"
                    );
                }
                Expect::Samples(series, values) => {
                    let (name, pairs) = parse_series(series);
                    let actual = self.histogram(name, &pairs);
                    assert!(
                        all_close(&actual, values),
                        "{series}: expected {values:?}, got {actual:?}"
                    );
                }
                Expect::Absent(series) => {
                    let (name, pairs) = parse_series(series);
                    let found = self.get(name, &pairs);
                    assert!(found.is_none(), "{series} is {found:?}, not absent");
                }
            }
        }
    }
}

/// Two floats equal to within rounding of a few ulps.
fn is_close(actual: f64, expected: f64) -> bool {
    let tolerance = 1e-12 * expected.abs().max(1.0);
    (actual - expected).abs() <= tolerance
}

/// As many floats as expected, each [`is_close`] to its own.
fn all_close(actual: &[f64], expected: &[f64]) -> bool {
    actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| is_close(*a, *e))
}

/// Asserts two floats are equal to within rounding of a few ulps.
#[track_caller]
pub(crate) fn assert_close(actual: f64, expected: f64) {
    assert!(
        is_close(actual, expected),
        "expected {expected}, got {actual}"
    );
}

#[track_caller]
pub(crate) fn assert_all_close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert_close(*a, *e);
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

//! The storage of one series of each type, and how a key becomes one: its family's name
//! and its label pairs are written once, when the series is created; recording is an
//! atomic operation on the series, with no lock and no allocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use llm_span_layer::catalog;
use metrics::Key;

use crate::cost::PicoCost;
use crate::exposition::{label_name, metric_name, write_label_pairs, CounterValue, Float};
use crate::histogram::{FixedHistogram, HistogramSnapshot};
use crate::naming::{Naming, Namings};

/// The name the cost is served under, in US dollars.
pub(crate) const COST_USD_TOTAL: &str = "llm_cost_usd_total";
pub(crate) const COST_USD_HELP: &str =
    "Cost of the tokens of priced models, in US dollars (counted exactly, in picodollars).";

/// The histograms whose buckets keep exemplars (shown in OpenMetrics scrapes).
const EXEMPLAR_HISTOGRAMS: [&str; 3] = [
    catalog::TTFT_SECONDS,
    catalog::E2E_LATENCY_SECONDS,
    catalog::QUEUE_WAIT_SECONDS,
];

/// The request gauges: left out of a scrape while 0 if only pending label sets asked
/// for them (see [`catalog::PENDING_GAUGE_TARGET`]).
pub(crate) const REQUEST_GAUGES: [&str; 2] = [catalog::ACTIVE_REQUESTS, catalog::QUEUE_DEPTH];

/// The name a catalog family is served under, with its help text.
pub(crate) fn served_as(def: &catalog::MetricDef) -> (&'static str, &'static str) {
    if def.name == catalog::COST_PICO_USD_TOTAL {
        (COST_USD_TOTAL, COST_USD_HELP)
    } else {
        (def.name, def.help)
    }
}

/// Whether `name` is one a catalog family is served under.
pub(crate) fn in_catalog(name: &str) -> bool {
    catalog::METRICS.iter().any(|def| served_as(def).0 == name)
}

/// Whether `name` is one of the layer's operation families
/// ([`catalog::OPERATION_METRICS`]): never served under its own name, under any profile,
/// only through the `otel` profile's families.
pub(crate) fn is_operation(name: &str) -> bool {
    catalog::OPERATION_METRICS
        .iter()
        .any(|def| def.name == name)
}

/// What every series has: the name of its family and its label pairs as written, and
/// the same for each of vLLM's families it appears in (profile `vllm`) and each of the
/// OpenTelemetry GenAI families (profile `otel`).
#[derive(Debug)]
pub(crate) struct SeriesName {
    pub(crate) family: Arc<str>,
    pub(crate) labels: Arc<str>,
    pub(crate) vllm: Box<[(&'static str, Arc<str>)]>,
    pub(crate) otel: Box<[(&'static str, Arc<str>)]>,
}

/// A counter: a whole number, or the cost in picodollars (kept past 64 bits, served in
/// dollars).
#[derive(Debug)]
pub(crate) struct CounterSeries {
    pub(crate) name: SeriesName,
    count: CounterCount,
}

#[derive(Debug)]
enum CounterCount {
    Whole(AtomicU64),
    /// The cost, and the last value a scrape showed (reads never go below it).
    Picodollars {
        cost: PicoCost,
        shown: Mutex<u128>,
    },
}

impl CounterSeries {
    pub(crate) fn value(&self) -> CounterValue {
        match &self.count {
            CounterCount::Whole(count) => CounterValue::Count(count.load(Ordering::Acquire)),
            CounterCount::Picodollars { cost, shown } => {
                let mut shown = shown.lock().unwrap_or_else(PoisonError::into_inner);
                *shown = cost.read(*shown);
                CounterValue::Picodollars(*shown)
            }
        }
    }
}

impl metrics::CounterFn for CounterSeries {
    fn increment(&self, value: u64) {
        match &self.count {
            CounterCount::Whole(count) => {
                count.fetch_add(value, Ordering::Release);
            }
            CounterCount::Picodollars { cost, .. } => cost.add(value),
        }
    }

    fn absolute(&self, value: u64) {
        match &self.count {
            CounterCount::Whole(count) => {
                count.fetch_max(value, Ordering::AcqRel);
            }
            CounterCount::Picodollars { cost, .. } => metrics::CounterFn::absolute(cost, value),
        }
    }
}

/// A gauge, and whether a scrape shows it at 0: request gauges only once a registration
/// other than a pending label set's asked for them, every other gauge always.
#[derive(Debug)]
pub(crate) struct GaugeSeries {
    pub(crate) name: SeriesName,
    value: metrics::atomics::AtomicU64,
    shown_at_zero: AtomicBool,
}

impl GaugeSeries {
    /// The value a scrape shows, if it shows the series.
    pub(crate) fn shown_value(&self) -> Option<f64> {
        let value = f64::from_bits(self.value.load(Ordering::Acquire));
        (value != 0.0 || self.shown_at_zero.load(Ordering::Relaxed)).then_some(value)
    }

    /// Shows the series at 0 from now on.
    pub(crate) fn show_at_zero(&self) {
        self.shown_at_zero.store(true, Ordering::Relaxed);
    }
}

impl metrics::GaugeFn for GaugeSeries {
    fn increment(&self, value: f64) {
        self.value.increment(value);
    }

    fn decrement(&self, value: f64) {
        self.value.decrement(value);
    }

    fn set(&self, value: f64) {
        self.value.set(value);
    }
}

/// A histogram of fixed buckets (see [`crate::histogram`]).
#[derive(Debug)]
pub(crate) struct HistogramSeries {
    pub(crate) name: SeriesName,
    pub(crate) layout: Arc<BucketLayout>,
    pub(crate) histogram: FixedHistogram,
}

impl metrics::HistogramFn for HistogramSeries {
    fn record(&self, value: f64) {
        self.histogram.record(value);
    }
}

/// The buckets of a histogram family: the bounds it stores (those of every profile that
/// serves it, merged), and the view of each profile.
#[derive(Debug)]
pub(crate) struct BucketLayout {
    bounds: Arc<[f64]>,
    pub(crate) llm: BucketView,
    pub(crate) vllm: Option<BucketView>,
    pub(crate) otel: Option<BucketView>,
}

impl BucketLayout {
    /// Buckets at `bounds`, and also at `vllm`'s and `otel`'s when those profiles serve
    /// the family.
    pub(crate) fn new(bounds: &[f64], vllm: Option<&[f64]>, otel: Option<&[f64]>) -> Arc<Self> {
        let mut stored = bounds.to_vec();
        for other in [vllm, otel].into_iter().flatten() {
            stored.extend_from_slice(other);
        }
        stored.sort_by(f64::total_cmp);
        stored.dedup();
        let llm = BucketView::new(&stored, bounds, |bound| bound.to_string());
        let vllm = vllm.map(|vllm| BucketView::new(&stored, vllm, crate::vllm::le));
        let otel = otel.map(|otel| BucketView::new(&stored, otel, |b| Float(b).to_string()));
        Arc::new(Self {
            bounds: stored.into(),
            llm,
            vllm,
            otel,
        })
    }
}

/// A profile's buckets over the stored ones: their `le` values as written, and where each
/// one's cumulative count is among the stored buckets.
#[derive(Debug)]
pub(crate) struct BucketView {
    /// The bounds as written, then `+Inf`.
    pub(crate) le: Arc<[Box<str>]>,
    /// The stored bucket of each of the view's, `+Inf` last; `None` when they are the same.
    stored: Option<Box<[usize]>>,
}

impl BucketView {
    /// `bounds` are among `stored` (both sorted).
    fn new(stored: &[f64], bounds: &[f64], write: impl Fn(f64) -> String) -> Self {
        let le = bounds
            .iter()
            .map(|bound| write(*bound).into_boxed_str())
            .chain(["+Inf".into()])
            .collect();
        let position = |bound: &f64| stored.iter().position(|s| s == bound).unwrap_or(0);
        let same = stored.len() == bounds.len();
        Self {
            le,
            stored: (!same).then(|| bounds.iter().map(position).chain([stored.len()]).collect()),
        }
    }

    /// The snapshot of the stored buckets as the view's: cumulative counts at its bounds,
    /// and in each bucket the newest exemplar of the stored buckets it covers.
    pub(crate) fn project(&self, snapshot: HistogramSnapshot) -> HistogramSnapshot {
        let Some(stored) = &self.stored else {
            return snapshot;
        };
        let cumulative = stored.iter().map(|i| snapshot.cumulative[*i]).collect();
        let exemplars = if snapshot.exemplars.is_empty() {
            Vec::new()
        } else {
            let mut first = 0;
            stored
                .iter()
                .map(|last| {
                    let covered = &snapshot.exemplars[first..=*last];
                    first = last + 1;
                    covered
                        .iter()
                        .flatten()
                        .copied()
                        .max_by(|a, b| a.timestamp.total_cmp(&b.timestamp))
                })
                .collect()
        };
        HistogramSnapshot {
            cumulative,
            sum: snapshot.sum,
            exemplars,
        }
    }
}

/// Which buckets a histogram gets: a per-name choice, else the default.
#[derive(Debug)]
pub(crate) struct Buckets {
    by_name: HashMap<String, Arc<BucketLayout>>,
    default: Arc<BucketLayout>,
}

impl Buckets {
    pub(crate) fn new(by_name: HashMap<String, Arc<BucketLayout>>, default: &[f64]) -> Self {
        Self {
            by_name,
            default: BucketLayout::new(default, None, None),
        }
    }

    fn layout(&self, name: &str) -> &Arc<BucketLayout> {
        self.by_name.get(name).unwrap_or(&self.default)
    }
}

/// Makes the series of new keys (the `Storage` of a `metrics-util` registry).
#[derive(Debug)]
pub(crate) struct SeriesMaker {
    global_labels: Vec<(String, String)>,
    namings: Namings,
    buckets: Buckets,
    /// One allocation per family name, shared by its series (a render groups series by
    /// family with a pointer comparison first).
    family_names: Mutex<HashMap<String, Arc<str>>>,
}

impl SeriesMaker {
    pub(crate) fn new(
        global_labels: Vec<(String, String)>,
        namings: Namings,
        buckets: Buckets,
    ) -> Self {
        Self {
            global_labels,
            namings,
            buckets,
            family_names: Mutex::default(),
        }
    }

    fn family(&self, name: &str) -> Arc<str> {
        let name = metric_name(name);
        let mut names = self
            .family_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            names
                .entry(name)
                .or_insert_with_key(|name| name.as_str().into()),
        )
    }

    /// A key's series name. Global labels come first; a key label whose name (as
    /// written) is taken replaces the earlier value in place (as metrics-exporter-prometheus
    /// does with global labels), so no series carries a label twice.
    fn name(&self, key: &Key, family: Arc<str>) -> SeriesName {
        let mut pairs: Vec<(String, &str)> = self
            .global_labels
            .iter()
            .map(|(k, v)| (label_name(k), v.as_str()))
            .collect();
        for label in key.labels() {
            let name = label_name(label.key());
            match pairs.iter_mut().find(|(taken, _)| *taken == name) {
                Some(pair) => pair.1 = label.value(),
                None => pairs.push((name, label.value())),
            }
        }
        let mut labels = String::new();
        write_label_pairs(&mut labels, pairs.iter().map(|(k, v)| (k.as_str(), *v)));
        let vllm = if self.namings.serves(Naming::Vllm) {
            written(crate::vllm::targets(key.name(), &pairs))
        } else {
            Box::default()
        };
        let otel = if self.namings.serves(Naming::Otel) {
            written(crate::otel::targets(key.name(), &pairs, self.namings))
        } else {
            Box::default()
        };
        SeriesName {
            family,
            labels: labels.into(),
            vllm,
            otel,
        }
    }
}

/// A profile's families of a series, each with its label pairs as written.
fn written(targets: Vec<(&'static str, Vec<(String, String)>)>) -> Box<[(&'static str, Arc<str>)]> {
    targets
        .into_iter()
        .map(|(family, pairs)| {
            let mut labels = String::new();
            write_label_pairs(
                &mut labels,
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            (family, labels.into())
        })
        .collect()
}

impl SeriesMaker {
    pub(crate) fn namings(&self) -> Namings {
        self.namings
    }
}

impl metrics_util::registry::Storage<Key> for SeriesMaker {
    type Counter = Arc<CounterSeries>;
    type Gauge = Arc<GaugeSeries>;
    type Histogram = Arc<HistogramSeries>;

    fn counter(&self, key: &Key) -> Self::Counter {
        let (family, count) = if key.name() == catalog::COST_PICO_USD_TOTAL {
            let count = CounterCount::Picodollars {
                cost: PicoCost::default(),
                shown: Mutex::new(0),
            };
            (self.family(COST_USD_TOTAL), count)
        } else {
            let count = CounterCount::Whole(AtomicU64::new(0));
            (self.family(key.name()), count)
        };
        Arc::new(CounterSeries {
            name: self.name(key, family),
            count,
        })
    }

    fn gauge(&self, key: &Key) -> Self::Gauge {
        Arc::new(GaugeSeries {
            name: self.name(key, self.family(key.name())),
            value: metrics::atomics::AtomicU64::new(0),
            shown_at_zero: AtomicBool::new(!REQUEST_GAUGES.contains(&key.name())),
        })
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        let layout = Arc::clone(self.buckets.layout(key.name()));
        let exemplars = EXEMPLAR_HISTOGRAMS.contains(&key.name());
        Arc::new(HistogramSeries {
            name: self.name(key, self.family(key.name())),
            histogram: FixedHistogram::new(Arc::clone(&layout.bounds), exemplars),
            layout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{CounterFn, GaugeFn, HistogramFn, Label};
    use metrics_util::registry::Storage;

    fn maker() -> SeriesMaker {
        let by_name = HashMap::from([("h".to_owned(), BucketLayout::new(&[0.5, 1.0], None, None))]);
        SeriesMaker::new(
            vec![
                ("service".into(), "chat".into()),
                ("bad-name".into(), "x".into()),
            ],
            Namings::default(),
            Buckets::new(by_name, &[2.0]),
        )
    }

    #[test]
    fn key_labels_replace_global_ones_of_the_same_written_name_in_place() {
        let key = Key::from_parts(
            "a-b",
            vec![
                Label::new("model", "m"),
                Label::new("service", "override"),
                Label::new("bad_name", "y"),
                Label::new("model", "again"),
            ],
        );
        let series = maker().counter(&key);
        assert_eq!(&*series.name.family, "a_b");
        assert_eq!(
            &*series.name.labels,
            "service=\"override\",bad_name=\"y\",model=\"again\""
        );
    }

    #[test]
    fn series_of_one_family_share_its_name() {
        let maker = maker();
        let a = maker.gauge(&Key::from_parts("g", vec![Label::new("k", "a")]));
        let b = maker.gauge(&Key::from_parts("g", vec![Label::new("k", "b")]));
        let other = maker.gauge(&Key::from_name("g2"));
        assert!(Arc::ptr_eq(&a.name.family, &b.name.family));
        assert_eq!(&*other.name.family, "g2");
    }

    #[test]
    fn counters_count_and_take_absolute_values_upwards() {
        let counter = maker().counter(&Key::from_name("c"));
        counter.increment(3);
        counter.increment(4);
        assert_eq!(counter.value(), CounterValue::Count(7));
        counter.absolute(5);
        assert_eq!(counter.value(), CounterValue::Count(7));
        counter.absolute(10);
        assert_eq!(counter.value(), CounterValue::Count(10));
    }

    #[test]
    fn the_cost_is_counted_in_picodollars_and_served_in_dollars() {
        let cost = maker().counter(&Key::from_parts(
            catalog::COST_PICO_USD_TOTAL,
            vec![Label::new("model", "m")],
        ));
        assert_eq!(&*cost.name.family, COST_USD_TOTAL);
        cost.increment(u64::MAX);
        cost.increment(2);
        assert_eq!(
            cost.value(),
            CounterValue::Picodollars(u128::from(u64::MAX) + 2)
        );
        let fresh = maker().counter(&Key::from_name(catalog::COST_PICO_USD_TOTAL));
        fresh.absolute(5_000_000);
        fresh.absolute(3);
        assert_eq!(fresh.value(), CounterValue::Picodollars(5_000_000));
    }

    #[test]
    fn request_gauges_are_hidden_at_zero_until_asked_to_show() {
        let maker = maker();
        let active = maker.gauge(&Key::from_name(catalog::ACTIVE_REQUESTS));
        let queue = maker.gauge(&Key::from_name(catalog::QUEUE_DEPTH));
        let other = maker.gauge(&Key::from_name("app_queue"));
        assert_eq!(
            (
                active.shown_value(),
                queue.shown_value(),
                other.shown_value()
            ),
            (None, None, Some(0.0))
        );
        queue.increment(2.0);
        queue.decrement(0.5);
        assert_eq!(queue.shown_value(), Some(1.5));
        queue.set(0.0);
        assert_eq!(queue.shown_value(), None);
        active.show_at_zero();
        assert_eq!(active.shown_value(), Some(0.0));
    }

    #[test]
    fn a_layout_stores_every_profile_s_bounds_and_each_view_reads_its_own() {
        let layout = BucketLayout::new(&[0.5, 1.0, 2.0], Some(&[0.3, 1.0, 5.0]), None);
        assert_eq!(&*layout.bounds, [0.3, 0.5, 1.0, 2.0, 5.0]);
        let vllm = layout.vllm.as_ref().expect("vllm view");
        assert_eq!(
            &*layout.llm.le,
            ["0.5".into(), "1".into(), "2".into(), "+Inf".into()]
        );
        assert_eq!(
            &*vllm.le,
            ["0.3".into(), "1.0".into(), "5.0".into(), "+Inf".into()]
        );
        let histogram = FixedHistogram::new(Arc::clone(&layout.bounds), true);
        let trace = |id: &str| {
            llm_span_layer::exemplar::TraceContext::from_hex(id, None).expect("trace id")
        };
        // Stored buckets: 0.3 0.5 1 2 5 +Inf.
        for value in [0.1, 0.4, 0.45, 0.9, 1.5, 3.0, 7.0] {
            histogram.record(value);
        }
        llm_span_layer::exemplar::with_trace(
            Some(trace("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")),
            || histogram.record(0.45),
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        llm_span_layer::exemplar::with_trace(
            Some(trace("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")),
            || histogram.record(0.2),
        );
        llm_span_layer::exemplar::with_trace(
            Some(trace("cccccccccccccccccccccccccccccccc")),
            || histogram.record(9.0),
        );
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative, [2, 5, 6, 7, 8, 10]);
        let llm = layout.llm.project(snapshot.clone());
        assert_eq!(llm.cumulative, [5, 6, 7, 10]);
        assert_eq!((llm.sum, llm.count()), (snapshot.sum, 10));
        let id = |e: &Option<crate::histogram::Exemplar>| e.map(|e| e.trace.trace_id_hex());
        let ids: Vec<Option<String>> = llm.exemplars.iter().map(id).collect();
        // le=0.5 covers 0.3 and 0.5: the newer (0.2, recorded last) wins; +Inf covers 5 and +Inf.
        assert_eq!(
            ids,
            [Some("b".repeat(32)), None, None, Some("c".repeat(32))]
        );
        let vllm = vllm.project(snapshot.clone());
        assert_eq!(vllm.cumulative, [2, 6, 8, 10]);
        let ids: Vec<Option<String>> = vllm.exemplars.iter().map(id).collect();
        assert_eq!(
            ids,
            [
                Some("b".repeat(32)),
                Some("a".repeat(32)),
                None,
                Some("c".repeat(32))
            ]
        );
        // Without a second profile the view is the stored buckets, untouched.
        let plain = BucketLayout::new(&[1.0], None, None);
        assert!(plain.vllm.is_none());
        let one = FixedHistogram::new(Arc::clone(&plain.bounds), false);
        one.record(0.5);
        assert_eq!(plain.llm.project(one.snapshot()), one.snapshot());
    }

    #[test]
    fn with_the_vllm_profile_a_series_knows_its_vllm_families() {
        let maker = SeriesMaker::new(
            vec![("service".into(), "chat".into())],
            Namings::new(&[Naming::Llm, Naming::Vllm]).expect("profiles"),
            Buckets::new(HashMap::new(), &[1.0]),
        );
        let key = Key::from_parts(
            catalog::TOKENS_TOTAL,
            vec![Label::new("model", "m"), Label::new("type", "input")],
        );
        let series = maker.counter(&key);
        let targets: Vec<(&str, &str)> = series
            .name
            .vllm
            .iter()
            .map(|(family, labels)| (*family, &**labels))
            .collect();
        assert_eq!(
            targets,
            [
                (
                    "vllm:prompt_tokens_total",
                    "service=\"chat\",model_name=\"m\""
                ),
                (
                    "vllm:prefix_cache_queries_total",
                    "service=\"chat\",model_name=\"m\""
                )
            ]
        );
        assert!(self::maker().counter(&key).name.vllm.is_empty(), "llm only");
    }

    #[test]
    fn with_the_otel_profile_a_series_knows_its_families_and_its_buckets() {
        let layout = BucketLayout::new(&[0.5, 1.0], None, Some(&[0.25, 1.0, 4.0]));
        assert_eq!(&*layout.bounds, [0.25, 0.5, 1.0, 4.0]);
        assert!(layout.vllm.is_none());
        let otel = layout.otel.as_ref().expect("otel view");
        assert_eq!(
            &*otel.le,
            ["0.25".into(), "1".into(), "4".into(), "+Inf".into()]
        );
        let histogram = FixedHistogram::new(Arc::clone(&layout.bounds), false);
        for value in [0.2, 0.7, 3.0, 9.0] {
            histogram.record(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative, [1, 1, 2, 3, 4]);
        let projected = otel.project(snapshot.clone());
        assert_eq!(projected.cumulative, [1, 2, 3, 4]);
        assert_eq!((projected.sum, projected.count()), (snapshot.sum, 4));
        assert_eq!(layout.llm.project(snapshot).cumulative, [1, 2, 4]);
        // All three profiles: the union, each view its own.
        let all = BucketLayout::new(&[1.0], Some(&[2.0]), Some(&[3.0]));
        assert_eq!(&*all.bounds, [1.0, 2.0, 3.0]);
        let le = |view: &Option<BucketView>| view.as_ref().map(|v| v.le.to_vec());
        assert_eq!(le(&all.vllm), Some(vec!["2.0".into(), "+Inf".into()]));
        assert_eq!(le(&all.otel), Some(vec!["3".into(), "+Inf".into()]));
        assert_eq!(&*all.llm.le, ["1".into(), "+Inf".into()]);

        let maker = SeriesMaker::new(
            vec![("service".into(), "chat".into())],
            Namings::new(&[Naming::Otel]).expect("profiles"),
            Buckets::new(HashMap::new(), &[1.0]),
        );
        let key = Key::from_parts(
            catalog::OPERATION_DURATION_SECONDS,
            vec![
                Label::new("model", "m"),
                Label::new(catalog::OPERATION_LABEL, "chat"),
                Label::new(catalog::PROVIDER_LABEL, "openai"),
                Label::new("status", "error"),
            ],
        );
        let series = maker.histogram(&key);
        let targets: Vec<(&str, &str)> = series
            .name
            .otel
            .iter()
            .map(|(family, labels)| (*family, &**labels))
            .collect();
        let labels = "service=\"chat\",gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",error_type=\"_OTHER\"";
        assert_eq!(
            targets,
            [
                ("gen_ai_client_operation_duration_seconds", labels),
                ("gen_ai_server_request_duration_seconds", labels)
            ]
        );
        assert!(series.name.vllm.is_empty());
        assert!(
            self::maker().histogram(&key).name.otel.is_empty(),
            "llm only"
        );
    }

    #[test]
    fn histograms_get_their_name_s_buckets_or_the_default_and_exemplar_slots_by_family() {
        let maker = maker();
        let h = maker.histogram(&Key::from_name("h"));
        let other = maker.histogram(&Key::from_name("other"));
        assert_eq!(&*h.layout.llm.le, ["0.5".into(), "1".into(), "+Inf".into()]);
        assert_eq!(&*other.layout.llm.le, ["2".into(), "+Inf".into()]);
        h.record(0.7);
        assert_eq!(h.histogram.snapshot().cumulative, [0, 1, 1]);
        assert!(h.histogram.snapshot().exemplars.is_empty());
        let ttft = maker.histogram(&Key::from_name(catalog::TTFT_SECONDS));
        assert_eq!(ttft.histogram.snapshot().exemplars.len(), 2);
    }
}

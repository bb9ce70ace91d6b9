//! The series this crate stores itself rather than in metrics-exporter-prometheus:
//! every histogram of the catalog (fixed buckets, see [`crate::histogram`]), the cost
//! counter (served in dollars, see [`crate::cost`]) and the request gauges (left out
//! while 0 when only requests not bound yet passed through their label set, see
//! [`catalog::PENDING_GAUGE_TARGET`]).
//!
//! Registration takes a lock (once per series); recording takes none. A scrape copies
//! the list of series under the lock, then reads each series with atomic loads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use llm_span_layer::catalog;
use metrics::{Counter, Gauge, Histogram, Key, Metadata};

use crate::cost::{write_usd, PicoCost};
use crate::exposition::{escape_help, write_label_pairs, write_sample, Family, Float, Format};
use crate::histogram::{Exemplar, FixedHistogram};

/// The histograms whose buckets keep exemplars (shown in OpenMetrics scrapes).
const EXEMPLAR_HISTOGRAMS: [&str; 3] = [
    catalog::TTFT_SECONDS,
    catalog::E2E_LATENCY_SECONDS,
    catalog::QUEUE_WAIT_SECONDS,
];

/// The most UTF-8 characters an exemplar's label names and values may have together
/// (OpenMetrics 1.0).
const EXEMPLAR_LABELS_MAX: usize = 128;

/// The name the cost is served under, in US dollars.
pub(crate) const COST_USD_TOTAL: &str = "llm_cost_usd_total";
const COST_USD_HELP: &str =
    "Cost of the tokens of priced models, in US dollars (counted exactly, in picodollars).";

/// One series: its label pairs, written once at registration, and its storage.
#[derive(Debug)]
pub(crate) struct Series<T> {
    labels: Box<str>,
    metric: T,
}

impl metrics::HistogramFn for Series<FixedHistogram> {
    fn record(&self, value: f64) {
        self.metric.record(value);
    }
}

/// A cost series and the last value a scrape showed (reads never go below it).
#[derive(Debug, Default)]
pub(crate) struct CostSeries {
    cost: PicoCost,
    shown: Mutex<u128>,
}

impl metrics::CounterFn for Series<CostSeries> {
    fn increment(&self, value: u64) {
        self.metric.cost.add(value);
    }

    fn absolute(&self, value: u64) {
        metrics::CounterFn::absolute(&self.metric.cost, value);
    }
}

/// A request gauge (`llm_active_requests`, `llm_queue_depth`): its value, and whether
/// a registration other than a pending label set's asked for it, which shows it at 0 too.
#[derive(Debug, Default)]
pub(crate) struct RequestGauge {
    value: metrics::atomics::AtomicU64,
    shown_at_zero: AtomicBool,
}

impl metrics::GaugeFn for Series<RequestGauge> {
    fn increment(&self, value: f64) {
        self.metric.value.increment(value);
    }

    fn decrement(&self, value: f64) {
        self.metric.value.decrement(value);
    }

    fn set(&self, value: f64) {
        self.metric.value.set(value);
    }
}

/// The request gauges' families.
const REQUEST_GAUGES: [&str; 2] = [catalog::ACTIVE_REQUESTS, catalog::QUEUE_DEPTH];

/// The series of one family, by key and in registration order.
#[derive(Debug)]
struct SeriesList<T> {
    by_key: HashMap<Key, Arc<Series<T>>>,
    in_order: Vec<Arc<Series<T>>>,
}

impl<T> Default for SeriesList<T> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            in_order: Vec::new(),
        }
    }
}

/// A catalog histogram: its bounds, written once, and its series.
#[derive(Debug)]
struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    bounds: Arc<[f64]>,
    /// `le` values as written: the bounds, then `+Inf`.
    le: Box<[String]>,
    exemplars: bool,
    series: Mutex<SeriesList<FixedHistogram>>,
}

/// Everything stored here, and the global labels every series carries.
#[derive(Debug)]
pub(crate) struct Owned {
    global_labels: Vec<(String, String)>,
    histograms: Vec<HistogramFamily>,
    costs: Mutex<SeriesList<CostSeries>>,
    /// By family, in the order of [`REQUEST_GAUGES`].
    request_gauges: [Mutex<SeriesList<RequestGauge>>; 2],
}

impl Owned {
    /// `buckets` gives the bounds of each catalog histogram.
    pub(crate) fn new(
        global_labels: Vec<(String, String)>,
        buckets: impl Fn(&str) -> Vec<f64>,
    ) -> Self {
        let histograms = catalog::METRICS
            .iter()
            .filter(|def| def.kind == catalog::MetricKind::Histogram)
            .map(|def| {
                let bounds: Arc<[f64]> = buckets(def.name).into();
                // Written as metrics-exporter-prometheus writes its buckets' bounds.
                let le = bounds
                    .iter()
                    .map(|bound| bound.to_string())
                    .chain(["+Inf".to_owned()])
                    .collect();
                HistogramFamily {
                    name: def.name,
                    help: def.help,
                    bounds,
                    le,
                    exemplars: EXEMPLAR_HISTOGRAMS.contains(&def.name),
                    series: Mutex::default(),
                }
            })
            .collect();
        Self {
            global_labels,
            histograms,
            costs: Mutex::default(),
            request_gauges: Default::default(),
        }
    }

    /// The label pairs of a series: global labels first, a key label of the same name
    /// replacing a global one in place (as metrics-exporter-prometheus does).
    fn label_text(&self, key: &Key) -> Box<str> {
        let mut pairs: Vec<(&str, &str)> = self
            .global_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for label in key.labels() {
            match pairs.iter_mut().find(|(name, _)| *name == label.key()) {
                Some(pair) => pair.1 = label.value(),
                None => pairs.push((label.key(), label.value())),
            }
        }
        let mut text = String::new();
        write_label_pairs(&mut text, pairs);
        text.into_boxed_str()
    }

    /// A handle for `key` if this crate stores its histogram.
    pub(crate) fn histogram(&self, key: &Key) -> Option<Histogram> {
        let family = self.histograms.iter().find(|f| f.name == key.name())?;
        let series = register(&family.series, key, || Series {
            labels: self.label_text(key),
            metric: FixedHistogram::new(Arc::clone(&family.bounds), family.exemplars),
        });
        Some(Histogram::from_arc(series))
    }

    /// A handle for `key` if this crate stores that counter (the cost).
    pub(crate) fn counter(&self, key: &Key) -> Option<Counter> {
        if key.name() != catalog::COST_PICO_USD_TOTAL {
            return None;
        }
        let series = register(&self.costs, key, || Series {
            labels: self.label_text(key),
            metric: CostSeries::default(),
        });
        Some(Counter::from_arc(series))
    }

    /// A handle for `key` if it is a request gauge; shown at 0 once any registration
    /// but a pending label set's (its metadata target) asked for it.
    pub(crate) fn gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Option<Gauge> {
        let family = REQUEST_GAUGES.iter().position(|name| *name == key.name())?;
        let series = register(&self.request_gauges[family], key, || Series {
            labels: self.label_text(key),
            metric: RequestGauge::default(),
        });
        if metadata.target() != catalog::PENDING_GAUGE_TARGET {
            series.metric.shown_at_zero.store(true, Ordering::Relaxed);
        }
        Some(Gauge::from_arc(series))
    }

    /// The families stored here, with their samples (and, in OpenMetrics, exemplars);
    /// a family with no series yet is left to the caller's catalog completion.
    pub(crate) fn families(&self, format: Format) -> Vec<Family<'static>> {
        let mut families = Vec::with_capacity(self.histograms.len() + 1);
        for family in &self.histograms {
            let series = snapshot(&family.series);
            if series.is_empty() {
                continue;
            }
            // About 40 bytes of name and value per line, plus the labels.
            let lines = family.le.len() + 2;
            let size = series.iter().map(|s| lines * (s.labels.len() + 48)).sum();
            let mut out = String::with_capacity(size);
            for series in &series {
                let snapshot = series.metric.snapshot();
                for (bucket, (le, count)) in family.le.iter().zip(&snapshot.cumulative).enumerate()
                {
                    write_sample(
                        &mut out,
                        family.name,
                        "_bucket",
                        &series.labels,
                        Some(("le", le)),
                        count,
                    );
                    let exemplar = snapshot.exemplars.get(bucket).copied().flatten();
                    if let (Format::OpenMetrics, Some(exemplar)) = (format, exemplar) {
                        write_exemplar(&mut out, &exemplar);
                    }
                }
                write_sample(
                    &mut out,
                    family.name,
                    "_sum",
                    &series.labels,
                    None,
                    Float(snapshot.sum),
                );
                write_sample(
                    &mut out,
                    family.name,
                    "_count",
                    &series.labels,
                    None,
                    snapshot.count(),
                );
            }
            families.push(Family {
                name: family.name.into(),
                kind: "histogram".into(),
                help: Some(escape_help(family.help).into()),
                samples: out.into(),
            });
        }
        for (name, list) in REQUEST_GAUGES.iter().zip(&self.request_gauges) {
            let mut out = String::new();
            for series in snapshot(list) {
                let value = f64::from_bits(series.metric.value.load(Ordering::Relaxed));
                if value != 0.0 || series.metric.shown_at_zero.load(Ordering::Relaxed) {
                    // As metrics-exporter-prometheus writes gauges (`1`, not `1.0`).
                    write_sample(&mut out, name, "", &series.labels, None, value);
                }
            }
            if !out.is_empty() {
                let help = catalog::METRICS.iter().find(|def| def.name == *name);
                families.push(Family {
                    name: (*name).into(),
                    kind: "gauge".into(),
                    help: help.map(|def| escape_help(def.help).into()),
                    samples: out.into(),
                });
            }
        }
        let costs = snapshot(&self.costs);
        if !costs.is_empty() {
            let mut out = String::new();
            for series in &costs {
                let mut shown = series
                    .metric
                    .shown
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *shown = series.metric.cost.read(*shown);
                let mut usd = String::new();
                write_usd(&mut usd, *shown);
                write_sample(&mut out, COST_USD_TOTAL, "", &series.labels, None, usd);
            }
            families.push(Family {
                name: COST_USD_TOTAL.into(),
                kind: "counter".into(),
                help: Some(escape_help(COST_USD_HELP).into()),
                samples: out.into(),
            });
        }
        families
    }
}

/// Appends ` # {trace_id="..",span_id=".."} value timestamp` to the sample line just
/// written. The span id is left out if the label set would pass the OpenMetrics limit,
/// and the whole exemplar if even the trace id would.
fn write_exemplar(out: &mut String, exemplar: &Exemplar) {
    use std::fmt::Write as _;
    let trace_id = exemplar.trace.trace_id_hex();
    let span_id = exemplar.trace.span_id_hex();
    let Some(labels) = exemplar_labels(&trace_id, span_id.as_deref()) else {
        return;
    };
    // The sample line ends in a line feed: the exemplar goes before it.
    if out.ends_with('\n') {
        out.pop();
    }
    let _ = writeln!(
        out,
        " # {{{labels}}} {} {:.3}",
        Float(exemplar.value),
        exemplar.timestamp
    );
}

/// An exemplar's label pairs within the OpenMetrics limit on their characters.
fn exemplar_labels(trace_id: &str, span_id: Option<&str>) -> Option<String> {
    let chars = |pairs: &[(&str, &str)]| -> usize {
        pairs
            .iter()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum()
    };
    let mut pairs = vec![("trace_id", trace_id)];
    if let Some(span_id) = span_id {
        pairs.push(("span_id", span_id));
        if chars(&pairs) > EXEMPLAR_LABELS_MAX {
            pairs.pop();
        }
    }
    if chars(&pairs) > EXEMPLAR_LABELS_MAX {
        return None;
    }
    let mut text = String::new();
    write_label_pairs(&mut text, pairs);
    Some(text)
}

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

fn register<T>(
    list: &Mutex<SeriesList<T>>,
    key: &Key,
    make: impl FnOnce() -> Series<T>,
) -> Arc<Series<T>> {
    let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(series) = list.by_key.get(key) {
        return Arc::clone(series);
    }
    let series = Arc::new(make());
    list.by_key.insert(key.clone(), Arc::clone(&series));
    list.in_order.push(Arc::clone(&series));
    series
}

/// The series of a family as they are now: a copy of the list, so that registration
/// never waits for a scrape.
fn snapshot<T>(list: &Mutex<SeriesList<T>>) -> Vec<Arc<Series<T>>> {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .in_order
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Label;

    fn owned() -> Owned {
        Owned::new(vec![("service".into(), "chat".into())], |_| vec![0.5, 1.0])
    }

    #[test]
    fn catalog_histograms_and_the_cost_are_stored_here_and_nothing_else() {
        let owned = owned();
        assert!(owned
            .histogram(&Key::from_name(catalog::TTFT_SECONDS))
            .is_some());
        assert!(owned.histogram(&Key::from_name("my_histogram")).is_none());
        assert!(owned
            .counter(&Key::from_name(catalog::COST_PICO_USD_TOTAL))
            .is_some());
        assert!(owned
            .counter(&Key::from_name(catalog::REQUESTS_TOTAL))
            .is_none());
    }

    #[test]
    fn series_render_with_global_labels_and_one_storage_per_key() {
        let owned = owned();
        let key = Key::from_parts(
            catalog::TTFT_SECONDS,
            vec![Label::new("model", "m"), Label::new("service", "override")],
        );
        owned.histogram(&key).expect("catalog").record(0.7);
        owned.histogram(&key).expect("same series").record(0.2);
        let cost = Key::from_parts(catalog::COST_PICO_USD_TOTAL, vec![Label::new("model", "m")]);
        owned
            .counter(&cost)
            .expect("cost")
            .increment(2_500_000_000_000);
        let families = owned.families(Format::Text);
        let text: String = families.iter().map(|f| f.samples.to_string()).collect();
        assert_eq!(
            text,
            "llm_ttft_seconds_bucket{service=\"override\",model=\"m\",le=\"0.5\"} 1\n\
             llm_ttft_seconds_bucket{service=\"override\",model=\"m\",le=\"1\"} 2\n\
             llm_ttft_seconds_bucket{service=\"override\",model=\"m\",le=\"+Inf\"} 2\n\
             llm_ttft_seconds_sum{service=\"override\",model=\"m\"} 0.8999999999999999\n\
             llm_ttft_seconds_count{service=\"override\",model=\"m\"} 2\n\
             llm_cost_usd_total{service=\"chat\",model=\"m\"} 2.5\n"
        );
        assert_eq!(families.len(), 2, "families without series are left out");
    }

    fn trace(id: &str) -> Option<llm_span_layer::exemplar::TraceContext> {
        llm_span_layer::exemplar::TraceContext::from_hex(id, Some("00f067aa0ba902b7"))
    }

    #[test]
    fn exemplars_show_in_openmetrics_only_and_the_latest_wins() {
        use llm_span_layer::exemplar::with_trace;
        let owned = owned();
        let ttft = owned
            .histogram(&Key::from_parts(
                catalog::TTFT_SECONDS,
                vec![Label::new("model", "m")],
            ))
            .expect("catalog");
        let tpot = owned
            .histogram(&Key::from_parts(
                catalog::TIME_PER_OUTPUT_TOKEN_SECONDS,
                vec![Label::new("model", "m")],
            ))
            .expect("catalog");
        with_trace(trace("4bf92f3577b34da6a3ce929d0e0e4736"), || {
            ttft.record(0.7)
        });
        with_trace(trace("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), || {
            ttft.record(0.9)
        });
        with_trace(trace("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"), || {
            ttft.record(0.1)
        });
        // Without a trace: counted, no exemplar change.
        ttft.record(0.95);
        // Time per output token keeps none.
        with_trace(trace("cccccccccccccccccccccccccccccccc"), || {
            tpot.record(0.3)
        });
        let text: String = owned
            .families(Format::OpenMetrics)
            .iter()
            .map(|f| f.samples.to_string())
            .collect();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        let exemplar = |line: &str| line.split(" # ").nth(1).map(str::to_owned);
        assert_eq!(
            exemplar(lines[0]).as_deref().map(|e| e
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")),
            Some(
                "{trace_id=\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\",span_id=\"00f067aa0ba902b7\"} 0.1"
                    .to_owned()
            )
        );
        assert!(lines[0]
            .starts_with("llm_ttft_seconds_bucket{service=\"chat\",model=\"m\",le=\"0.5\"} 1 # "));
        assert!(lines[1].starts_with("llm_ttft_seconds_bucket{service=\"chat\",model=\"m\",le=\"1\"} 4 # {trace_id=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""), "the latest sample of the bucket: {}", lines[1]);
        let timestamp: f64 = lines[1]
            .rsplit(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("timestamp");
        assert!(timestamp > 1.7e9, "{timestamp}");
        let text: String = owned
            .families(Format::Text)
            .iter()
            .map(|f| f.samples.to_string())
            .collect();
        assert!(!text.contains('#'), "no exemplars in the text format 0.0.4");
    }

    #[test]
    fn exemplar_label_sets_stay_within_128_characters() {
        let trace = "a".repeat(32);
        assert_eq!(
            exemplar_labels(&trace, Some("00f067aa0ba902b7")).as_deref(),
            Some(format!("trace_id=\"{trace}\",span_id=\"00f067aa0ba902b7\"").as_str())
        );
        // 8 + 120 = 128: fits; the span id would not.
        let long = "b".repeat(120);
        assert_eq!(
            exemplar_labels(&long, Some("00f067aa0ba902b7")),
            Some(format!("trace_id=\"{long}\""))
        );
        assert_eq!(exemplar_labels(&"c".repeat(121), None), None);
        // Characters, not bytes.
        assert!(exemplar_labels(&"é".repeat(120), None).is_some());
    }

    #[test]
    fn the_cost_takes_absolute_values() {
        let owned = owned();
        let cost = Key::from_parts(catalog::COST_PICO_USD_TOTAL, vec![Label::new("model", "m")]);
        owned.counter(&cost).expect("cost").absolute(5_000_000);
        let text: String = owned
            .families(Format::Text)
            .iter()
            .map(|f| f.samples.to_string())
            .collect();
        assert_eq!(
            text,
            "llm_cost_usd_total{service=\"chat\",model=\"m\"} 0.000005\n"
        );
    }

    #[test]
    fn exemplar_labels_may_use_all_128_characters() {
        // trace_id (8) + span_id (7) + a 16-character span id: 97 characters of trace id
        // make exactly 128, the OpenMetrics limit, which is allowed.
        let trace = "a".repeat(128 - 8 - 7 - 16);
        let span = "b".repeat(16);
        assert_eq!(
            exemplar_labels(&trace, Some(&span)),
            Some(format!("trace_id=\"{trace}\",span_id=\"{span}\""))
        );
        // One more and the span id is left out; past 128 alone, no exemplar.
        let longer = format!("{trace}a");
        assert_eq!(
            exemplar_labels(&longer, Some(&span)),
            Some(format!("trace_id=\"{longer}\""))
        );
        let at_limit = "c".repeat(128 - 8);
        assert_eq!(
            exemplar_labels(&at_limit, None),
            Some(format!("trace_id=\"{at_limit}\""))
        );
        assert_eq!(exemplar_labels(&format!("{at_limit}c"), None), None);
    }
}

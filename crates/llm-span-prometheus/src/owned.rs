//! The series this crate stores itself rather than in metrics-exporter-prometheus:
//! every histogram of the catalog (fixed buckets, see [`crate::histogram`]) and the cost
//! counter (served in dollars, see [`crate::cost`]).
//!
//! Registration takes a lock (once per series); recording takes none. A scrape copies
//! the list of series under the lock, then reads each series with atomic loads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use llm_span_layer::catalog;
use metrics::{Counter, Histogram, Key};

use crate::cost::{write_usd, PicoCost};
use crate::exposition::{escape_help, write_label_pairs, write_sample, Family, Float};
use crate::histogram::FixedHistogram;

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
    series: Mutex<SeriesList<FixedHistogram>>,
}

/// Everything stored here, and the global labels every series carries.
#[derive(Debug)]
pub(crate) struct Owned {
    global_labels: Vec<(String, String)>,
    histograms: Vec<HistogramFamily>,
    costs: Mutex<SeriesList<CostSeries>>,
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
                    series: Mutex::default(),
                }
            })
            .collect();
        Self {
            global_labels,
            histograms,
            costs: Mutex::default(),
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
            metric: FixedHistogram::new(Arc::clone(&family.bounds)),
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

    /// The families stored here, with their samples; a family with no series yet
    /// is left to the caller's catalog completion.
    pub(crate) fn families(&self) -> Vec<Family<'static>> {
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
                for (le, count) in family.le.iter().zip(&snapshot.cumulative) {
                    write_sample(
                        &mut out,
                        family.name,
                        "_bucket",
                        &series.labels,
                        Some(("le", le)),
                        count,
                    );
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

/// The name a catalog family is served under, with its help text.
pub(crate) fn served_as(def: &catalog::MetricDef) -> (&'static str, &'static str) {
    if def.name == catalog::COST_PICO_USD_TOTAL {
        (COST_USD_TOTAL, COST_USD_HELP)
    } else {
        (def.name, def.help)
    }
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
        let families = owned.families();
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
}

//! What a test reads back from a `metrics-util` `DebuggingRecorder`: [`Metrics`], one
//! snapshot by family and labels, with exact accessors and tables of expected series
//! ([`Expect`], [`Metrics::assert_series`]). The layer's integration tests and its
//! fast-path unit tests share it.

use std::collections::{BTreeMap, HashMap};

use metrics_util::debugging::{DebugValue, Snapshotter};

/// Every series of one `DebuggingRecorder` snapshot, by family name and label set.
pub struct Metrics(HashMap<(String, BTreeMap<String, String>), DebugValue>);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Metrics {
    /// A snapshot of any `DebuggingRecorder` (destructive, as its snapshots are).
    pub fn of(snapshotter: &Snapshotter) -> Self {
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

    /// A series' value, if registered.
    pub fn get(&self, name: &str, pairs: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0.get(&(name.to_owned(), labels(pairs)))
    }

    /// A counter's value; panics if the series was never registered.
    pub fn counter(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        match self.get(name, pairs) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name}{pairs:?} is not a registered counter: {other:?}\n{self:#?}"),
        }
    }

    /// A gauge's value; panics if the series was never registered.
    pub fn gauge(&self, name: &str, pairs: &[(&str, &str)]) -> f64 {
        match self.get(name, pairs) {
            Some(DebugValue::Gauge(v)) => v.into_inner(),
            other => panic!("{name}{pairs:?} is not a registered gauge: {other:?}\n{self:#?}"),
        }
    }

    /// A histogram's samples; panics if the series was never registered.
    pub fn histogram(&self, name: &str, pairs: &[(&str, &str)]) -> Vec<f64> {
        match self.get(name, pairs) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            other => panic!("{name}{pairs:?} is not a registered histogram: {other:?}\n{self:#?}"),
        }
    }

    /// The layer's anomaly count for `reason` (`llm_layer_anomalies_total`).
    pub fn anomalies(&self, reason: &str) -> u64 {
        self.counter("llm_layer_anomalies_total", &[("reason", reason)])
    }

    /// Sum of every anomaly reason.
    pub fn all_anomalies(&self) -> u64 {
        self.sum("llm_layer_anomalies_total")
    }

    /// Sum of a counter family over all its series.
    pub fn sum(&self, name: &str) -> u64 {
        self.sum_of(name, &[])
    }

    /// Sum of a counter family over the series that have all of `pairs` among their labels.
    pub fn sum_of(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
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
    pub fn series(&self, name: &str) -> Vec<BTreeMap<String, String>> {
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
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
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

/// One row of a table given to [`Metrics::assert_series`]: a series, written as Prometheus
/// shows it (`family{label=value,...}`, or a bare family), and what it must hold.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
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
    pub fn assert_series(&self, table: &[Expect<'_>]) {
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
pub fn assert_close(actual: f64, expected: f64) {
    assert!(
        is_close(actual, expected),
        "expected {expected}, got {actual}"
    );
}

/// Asserts as many floats as expected, each equal to its own to within rounding.
#[track_caller]
pub fn assert_all_close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert_close(*a, *e);
    }
}

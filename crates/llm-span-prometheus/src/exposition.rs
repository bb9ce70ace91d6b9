//! The writer: one `/metrics` body from typed families, in the Prometheus text format
//! 0.0.4 or in OpenMetrics 1.0 text, in one pass.
//!
//! Families are written in name order, each with its `# HELP` and `# TYPE`, and the
//! series of a family in the order of their label text, so two renders of unchanged
//! metrics are byte-identical. Nothing here parses exposition text.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::cost::write_usd;
use crate::histogram::{Exemplar, HistogramSnapshot};

/// The format of a `/metrics` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => crate::CONTENT_TYPE,
            Format::OpenMetrics => crate::OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The value of one counter series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CounterValue {
    /// A `metrics` counter: a whole number.
    Count(u64),
    /// A counter read from elsewhere in a unit (CPU seconds, feature `process`).
    #[cfg_attr(not(feature = "process"), allow(dead_code))]
    Float(f64),
    /// Picodollars, written in US dollars as an exact decimal.
    Picodollars(u128),
}

/// The series of a family, by type; each series is its label pairs, as written between
/// the braces, and its value.
#[derive(Debug)]
pub(crate) enum Samples {
    Counter(Vec<(Arc<str>, CounterValue)>),
    Gauge(Vec<(Arc<str>, f64)>),
    /// `le` holds the buckets' bounds as written, `+Inf` last.
    Histogram {
        le: Arc<[Box<str>]>,
        series: Vec<(Arc<str>, HistogramSnapshot)>,
    },
}

impl Samples {
    /// The type's name in the text format 0.0.4.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Samples::Counter(_) => "counter",
            Samples::Gauge(_) => "gauge",
            Samples::Histogram { .. } => "histogram",
        }
    }

    /// Series in the order of their label text; of two series with the same text (keys
    /// whose label names differ only in characters the format cannot show), the first
    /// registered is kept, so that no body holds a series twice.
    fn sort(&mut self) {
        fn sort<T>(series: &mut Vec<(Arc<str>, T)>) {
            series.sort_by(|a, b| a.0.cmp(&b.0));
            series.dedup_by(|later, kept| later.0 == kept.0);
        }
        match self {
            Samples::Counter(series) => sort(series),
            Samples::Gauge(series) => sort(series),
            Samples::Histogram { series, .. } => sort(series),
        }
    }
}

/// One metric family: its name, HELP text (unescaped) and series.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: Arc<str>,
    pub(crate) help: Option<Arc<str>>,
    pub(crate) samples: Samples,
}

impl Family {
    /// A family's name and type in OpenMetrics: a counter family is named without
    /// `_total`, its samples keep it; a counter whose name lacks it can only be `unknown`.
    fn openmetrics_name(&self) -> (&str, &'static str) {
        match (&self.samples, self.name.strip_suffix("_total")) {
            (Samples::Counter(_), Some(base)) => (base, "counter"),
            (Samples::Counter(_), None) => (&self.name, "unknown"),
            (samples, _) => (&self.name, samples.kind()),
        }
    }

    /// The names the family takes: its OpenMetrics family name and the sample names its
    /// type reserves there (as OpenMetrics parsers check them). They include every name
    /// it has in the text format, so two families that take no name in common are valid
    /// together in both formats.
    pub(crate) fn taken_names(&self) -> Vec<String> {
        let (name, kind) = self.openmetrics_name();
        let suffixes: &[&str] = match kind {
            "counter" => &["", "_total", "_created"],
            "histogram" => &["", "_bucket", "_count", "_sum", "_created"],
            _ => &[""],
        };
        suffixes
            .iter()
            .map(|suffix| format!("{name}{suffix}"))
            .collect()
    }
}

/// Keeps, in order, each family that takes no name already `taken` (see
/// [`Family::taken_names`]), and adds its names; returns how many families it left out.
pub(crate) fn drop_clashes(families: &mut Vec<Family>, taken: &mut HashSet<String>) -> usize {
    let before = families.len();
    families.retain(|family| {
        let names = family.taken_names();
        let free = names.iter().all(|name| !taken.contains(name));
        if free {
            taken.extend(names);
        }
        free
    });
    before - families.len()
}

/// Writes the families in name order, their series in label order, in `format`.
pub(crate) fn write(mut families: Vec<Family>, format: Format) -> String {
    families.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::with_capacity(estimated_size(&families));
    for family in &mut families {
        family.samples.sort();
        write_family(&mut out, family, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// The body's length, about: the capacity to reserve, so that the body is not copied
/// as it grows. Per line, the name and value take about 40 bytes, plus the labels.
fn estimated_size(families: &[Family]) -> usize {
    let mut size = "# EOF\n".len();
    for family in families {
        let lines = |labels: &str, lines: usize| lines * (family.name.len() + labels.len() + 40);
        size += 2 * family.name.len() + family.help.as_deref().map_or(0, str::len) + 24;
        size += match &family.samples {
            Samples::Counter(series) => series.iter().map(|(l, _)| lines(l, 1)).sum::<usize>(),
            Samples::Gauge(series) => series.iter().map(|(l, _)| lines(l, 1)).sum(),
            Samples::Histogram { le, series } => {
                series.iter().map(|(l, _)| lines(l, le.len() + 2)).sum()
            }
        };
    }
    size
}

fn write_family(out: &mut String, family: &Family, format: Format) {
    let (name, kind) = match format {
        Format::Text => (&*family.name, family.samples.kind()),
        Format::OpenMetrics => family.openmetrics_name(),
    };
    if let Some(help) = &family.help {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        write_help(out, help, format);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
    let name = &*family.name;
    match &family.samples {
        Samples::Counter(series) => {
            for (labels, value) in series {
                write_name(out, name, "", labels, None);
                match *value {
                    CounterValue::Count(count) => {
                        let _ = writeln!(out, " {count}");
                    }
                    CounterValue::Float(value) => {
                        let _ = writeln!(out, " {}", Float(value));
                    }
                    CounterValue::Picodollars(pico) => {
                        out.push(' ');
                        write_usd(out, pico);
                        out.push('\n');
                    }
                }
            }
        }
        Samples::Gauge(series) => {
            for (labels, value) in series {
                write_name(out, name, "", labels, None);
                let _ = writeln!(out, " {}", Float(*value));
            }
        }
        Samples::Histogram { le, series } => {
            for (labels, snapshot) in series {
                for (bucket, (le, count)) in le.iter().zip(&snapshot.cumulative).enumerate() {
                    write_name(out, name, "_bucket", labels, Some(le));
                    let _ = write!(out, " {count}");
                    let exemplar = snapshot.exemplars.get(bucket).copied().flatten();
                    if let (Format::OpenMetrics, Some(exemplar)) = (format, exemplar) {
                        write_exemplar(out, &exemplar);
                    }
                    out.push('\n');
                }
                write_name(out, name, "_sum", labels, None);
                let _ = writeln!(out, " {}", Float(snapshot.sum));
                write_name(out, name, "_count", labels, None);
                let _ = writeln!(out, " {}", snapshot.count());
            }
        }
    }
}

/// Writes `name{labels,le="bound"}` (no braces when there are no labels).
fn write_name(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<&str>) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    out.push_str(labels);
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str("le=\"");
        out.push_str(le);
        out.push('"');
    }
    out.push('}');
}

/// HELP text: the text format 0.0.4 escapes backslash and line feed; OpenMetrics double
/// quotes too.
fn write_help(out: &mut String, help: &str, format: Format) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// The most UTF-8 characters an exemplar's label names and values may have together
/// (OpenMetrics 1.0).
const EXEMPLAR_LABELS_MAX: usize = 128;

/// Appends ` # {trace_id="..",span_id=".."} value timestamp` to a bucket line. The span
/// id is left out if the label set would pass the OpenMetrics limit, and the whole
/// exemplar if even the trace id would.
fn write_exemplar(out: &mut String, exemplar: &Exemplar) {
    let trace_id = exemplar.trace.trace_id_hex();
    let span_id = exemplar.trace.span_id_hex();
    let Some(labels) = exemplar_labels(&trace_id, span_id.as_deref()) else {
        return;
    };
    let _ = write!(
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

/// A metric name as both formats allow it: `[a-zA-Z_:][a-zA-Z0-9_:]*`, any other
/// character replaced by `_` (as metrics-exporter-prometheus does).
pub(crate) fn metric_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let valid =
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
            if valid {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label name as both formats allow it: `[a-zA-Z_][a-zA-Z0-9_]*`, any other character
/// replaced by `_`.
pub(crate) fn label_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let valid = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
            if valid {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Appends `name="value"` label pairs, names made valid and values escaped, without
/// braces.
pub(crate) fn write_label_pairs<'l>(
    out: &mut String,
    labels: impl IntoIterator<Item = (&'l str, &'l str)>,
) {
    for (index, (name, value)) in labels.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&label_name(name));
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A float as both formats read it: a whole number without a fraction (`3`, as
/// metrics-exporter-prometheus wrote gauges), else the shortest digits that round-trip
/// (`0.1`, `1e300`), and `+Inf`, `-Inf`, `NaN`.
pub(crate) struct Float(pub(crate) f64);

/// Whole numbers up to this are written without an exponent (`2^53`: every integer up
/// to it is exact in an `f64`).
const WHOLE_MAX: f64 = 9_007_199_254_740_992.0;

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.0;
        if value.is_nan() {
            f.write_str("NaN")
        } else if value.is_infinite() {
            f.write_str(if value > 0.0 { "+Inf" } else { "-Inf" })
        } else if value.fract() == 0.0 && value.abs() <= WHOLE_MAX {
            // `-0.0` is written `-0`, which both formats read as 0.
            write!(f, "{value}")
        } else {
            // Debug prints the shortest digits that round-trip, with an exponent for
            // very large or small values (Display would print every digit of 1e300).
            write!(f, "{value:?}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(name: &str, series: &[(&str, u64)]) -> Family {
        Family {
            name: name.into(),
            help: None,
            samples: Samples::Counter(
                series
                    .iter()
                    .map(|(l, v)| ((*l).into(), CounterValue::Count(*v)))
                    .collect(),
            ),
        }
    }

    fn gauge(name: &str, series: &[(&str, f64)]) -> Family {
        Family {
            name: name.into(),
            help: None,
            samples: Samples::Gauge(series.iter().map(|(l, v)| ((*l).into(), *v)).collect()),
        }
    }

    fn histogram(name: &str, series: &[(&str, [u64; 2], f64)]) -> Family {
        Family {
            name: name.into(),
            help: None,
            samples: Samples::Histogram {
                le: ["1".into(), "+Inf".into()].into(),
                series: series
                    .iter()
                    .map(|(l, cumulative, sum)| {
                        (
                            (*l).into(),
                            HistogramSnapshot {
                                cumulative: cumulative.to_vec(),
                                sum: *sum,
                                exemplars: Vec::new(),
                            },
                        )
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn families_in_name_order_and_series_in_label_order() {
        let mut b = counter("b_total", &[("x=\"2\"", 4), ("x=\"1\"", 3)]);
        b.help = Some("B help".into());
        let families = vec![
            b,
            gauge("a", &[("", 1.5)]),
            histogram("c", &[("k=\"b\"", [0, 1], 2.0), ("k=\"a\"", [1, 2], 0.5)]),
        ];
        assert_eq!(
            write(families, Format::Text),
            "# TYPE a gauge\na 1.5\n\
             # HELP b_total B help\n# TYPE b_total counter\nb_total{x=\"1\"} 3\nb_total{x=\"2\"} 4\n\
             # TYPE c histogram\n\
             c_bucket{k=\"a\",le=\"1\"} 1\nc_bucket{k=\"a\",le=\"+Inf\"} 2\nc_sum{k=\"a\"} 0.5\nc_count{k=\"a\"} 2\n\
             c_bucket{k=\"b\",le=\"1\"} 0\nc_bucket{k=\"b\",le=\"+Inf\"} 1\nc_sum{k=\"b\"} 2\nc_count{k=\"b\"} 1\n"
        );
    }

    #[test]
    fn series_with_the_same_label_text_are_written_once() {
        let family = counter("a_total", &[("k=\"1\"", 1), ("k=\"0\"", 5), ("k=\"1\"", 2)]);
        assert_eq!(
            write(vec![family], Format::Text),
            "# TYPE a_total counter\na_total{k=\"0\"} 5\na_total{k=\"1\"} 1\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let mut b = counter("b_total", &[("x=\"1\"", 3)]);
        b.help = Some("B \"help\"\\\n".into());
        let mut odd = counter("odd", &[("", 1)]);
        odd.help = Some("say \"hi\"".into());
        let text = write(vec![b, odd], Format::OpenMetrics);
        assert_eq!(
            text,
            "# HELP b B \\\"help\\\"\\\\\\n\n# TYPE b counter\nb_total{x=\"1\"} 3\n\
             # HELP odd say \\\"hi\\\"\n# TYPE odd unknown\nodd 1\n# EOF\n"
        );
        let mut b = counter("b_total", &[]);
        b.help = Some("B \"help\"\\\n".into());
        assert_eq!(
            write(vec![b], Format::Text),
            "# HELP b_total B \"help\"\\\\\\n\n# TYPE b_total counter\n"
        );
    }

    #[test]
    fn counters_in_a_unit_and_in_dollars() {
        let family = Family {
            name: "c_total".into(),
            help: None,
            samples: Samples::Counter(vec![
                ("k=\"a\"".into(), CounterValue::Float(1.25)),
                (
                    "k=\"b\"".into(),
                    CounterValue::Picodollars(2_500_000_000_001),
                ),
                ("k=\"c\"".into(), CounterValue::Float(3.0)),
            ]),
        };
        assert_eq!(
            write(vec![family], Format::Text),
            "# TYPE c_total counter\nc_total{k=\"a\"} 1.25\nc_total{k=\"b\"} 2.500000000001\nc_total{k=\"c\"} 3\n"
        );
    }

    #[test]
    fn families_take_their_openmetrics_name_and_their_type_s_sample_names() {
        assert_eq!(
            counter("a_total", &[]).taken_names(),
            ["a", "a_total", "a_created"]
        );
        assert_eq!(counter("a", &[]).taken_names(), ["a"]);
        assert_eq!(
            histogram("h", &[]).taken_names(),
            ["h", "h_bucket", "h_count", "h_sum", "h_created"]
        );
        assert_eq!(gauge("g_total", &[]).taken_names(), ["g_total"]);
    }

    #[test]
    fn the_first_family_to_take_a_name_keeps_it() {
        let mut families = vec![
            gauge("a", &[]),
            counter("a_total", &[]),
            counter("b_total", &[]),
            gauge("h_sum", &[]),
            histogram("h", &[]),
        ];
        let mut taken = HashSet::from(["b_created".to_owned()]);
        assert_eq!(drop_clashes(&mut families, &mut taken), 3);
        let kept: Vec<&str> = families.iter().map(|f| &*f.name).collect();
        assert_eq!(kept, ["a", "h_sum"]);
        assert_eq!(taken.len(), 3, "{taken:?}");
    }

    #[test]
    fn labels_and_values_are_escaped() {
        let mut out = String::new();
        write_label_pairs(
            &mut out,
            [("model", "a\"b\\c\nd"), ("bad-name", "x"), ("9", "y")],
        );
        assert_eq!(out, "model=\"a\\\"b\\\\c\\nd\",bad_name=\"x\",_=\"y\"");
        let floats: Vec<String> = [
            0.1,
            1.0,
            -2.0,
            1e300,
            1e-7,
            9_007_199_254_740_992.0,
            18_014_398_509_481_984.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ]
        .iter()
        .map(|v| Float(*v).to_string())
        .collect();
        assert_eq!(
            floats,
            [
                "0.1",
                "1",
                "-2",
                "1e300",
                "1e-7",
                "9007199254740992",
                "1.8014398509481984e16",
                "+Inf",
                "-Inf",
                "NaN"
            ]
        );
    }

    #[test]
    fn names_keep_letters_underscores_and_digits_after_the_first() {
        let mut out = String::new();
        write_label_pairs(
            &mut out,
            [
                ("a1", "v"),
                ("_b", "w"),
                ("1c", "x"),
                ("d-e9:", "y\"q\"\n\\"),
            ],
        );
        assert_eq!(out, r#"a1="v",_b="w",_c="x",d_e9_="y\"q\"\n\\""#);
        assert_eq!(metric_name("vllm:a-b9"), "vllm:a_b9");
        assert_eq!(metric_name("9a:"), "_a:");
        assert_eq!(metric_name("é"), "_");
    }

    #[test]
    fn a_bucket_line_carries_its_exemplar_in_openmetrics_only() {
        let trace = llm_span_layer::exemplar::TraceContext::from_hex(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            Some("00f067aa0ba902b7"),
        )
        .expect("trace");
        let exemplar = Exemplar {
            trace,
            value: 0.3,
            timestamp: 1_700_000_000.25,
        };
        let family = || Family {
            name: "h".into(),
            help: None,
            samples: Samples::Histogram {
                le: ["1".into(), "+Inf".into()].into(),
                series: vec![(
                    "".into(),
                    HistogramSnapshot {
                        cumulative: vec![1, 1],
                        sum: 0.3,
                        exemplars: vec![Some(exemplar), None],
                    },
                )],
            },
        };
        assert_eq!(
            write(vec![family()], Format::OpenMetrics),
            "# TYPE h histogram\n\
             h_bucket{le=\"1\"} 1 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\"} 0.3 1700000000.250\n\
             h_bucket{le=\"+Inf\"} 1\nh_sum 0.3\nh_count 1\n# EOF\n"
        );
        assert_eq!(
            write(vec![family()], Format::Text),
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.3\nh_count 1\n"
        );
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

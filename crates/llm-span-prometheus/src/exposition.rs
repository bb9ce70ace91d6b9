//! Writing one `/metrics` body from families of two origins: those the upstream
//! recorder renders (counters, gauges, histograms outside the catalog) and those this
//! crate keeps itself (the catalog's histograms, the cost in dollars, process metrics).
//!
//! Families are written in name order, each with its `# HELP` and `# TYPE`, in the
//! Prometheus text format 0.0.4 or in OpenMetrics 1.0 text.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

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

/// One metric family: its metadata and its sample lines.
#[derive(Debug)]
pub(crate) struct Family<'a> {
    pub(crate) name: Cow<'a, str>,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub(crate) kind: Cow<'a, str>,
    /// HELP text escaped for the text format 0.0.4 (backslash and line feed).
    pub(crate) help: Option<Cow<'a, str>>,
    /// Sample lines, each ending in a line feed, written by the family's owner.
    pub(crate) samples: Cow<'a, str>,
}

impl<'a> Family<'a> {
    /// A family with no samples yet: HELP and TYPE only.
    pub(crate) fn empty(name: &'a str, kind: &'a str, help: &str) -> Self {
        Family {
            name: Cow::Borrowed(name),
            kind: Cow::Borrowed(kind),
            help: Some(Cow::Owned(escape_help(help))),
            samples: Cow::Borrowed(""),
        }
    }
}

/// Splits the upstream recorder's 0.0.4 output into families. Lines that belong to no
/// family (there are none in practice) are dropped rather than misattributed.
pub(crate) fn split_families(text: &str) -> Vec<Family<'_>> {
    /// Gives the family being read its sample lines.
    fn close<'a>(text: &'a str, families: &mut [Family<'a>], samples: &mut Option<(usize, usize)>) {
        if let (Some(family), Some((start, end))) = (families.last_mut(), samples.take()) {
            family.samples = Cow::Borrowed(&text[start..end]);
        }
    }
    let mut families: Vec<Family<'_>> = Vec::new();
    let mut samples: Option<(usize, usize)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim_end_matches('\n');
        if trimmed.is_empty() {
            continue;
        }
        let meta = trimmed
            .strip_prefix("# HELP ")
            .map(|rest| (true, rest))
            .or_else(|| trimmed.strip_prefix("# TYPE ").map(|rest| (false, rest)));
        if let Some((is_help, rest)) = meta {
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            if families.last().is_none_or(|f| f.name != name) {
                close(text, &mut families, &mut samples);
                families.push(Family {
                    name: Cow::Borrowed(name),
                    kind: Cow::Borrowed("untyped"),
                    help: None,
                    samples: Cow::Borrowed(""),
                });
            }
            if let Some(family) = families.last_mut() {
                if is_help {
                    family.help = Some(Cow::Borrowed(value));
                } else {
                    family.kind = Cow::Borrowed(value);
                }
            }
        } else if trimmed.starts_with('#') {
            continue;
        } else if !families.is_empty() {
            let range = samples.get_or_insert((start, start));
            range.1 = offset;
        }
    }
    close(text, &mut families, &mut samples);
    families
}

/// Writes the families in name order, in `format`.
pub(crate) fn write(mut families: Vec<Family<'_>>, format: Format) -> String {
    families.sort_by(|a, b| a.name.cmp(&b.name));
    let size: usize = families
        .iter()
        .map(|f| f.samples.len() + f.name.len() * 2 + 64)
        .sum();
    let mut out = String::with_capacity(size + 16);
    for family in &families {
        write_family(&mut out, family, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A family's name and type in OpenMetrics.
fn openmetrics_name<'f>(family: &'f Family<'_>) -> (&'f str, &'f str) {
    match &*family.kind {
        // An OpenMetrics counter family is named without `_total`; its samples
        // keep it. A counter whose samples lack it can only be `unknown`.
        "counter" => match family.name.strip_suffix("_total") {
            Some(base) => (base, "counter"),
            None => (&family.name, "unknown"),
        },
        "untyped" => (&family.name, "unknown"),
        kind => (&family.name, kind),
    }
}

/// The names a family takes: its OpenMetrics family name and the sample names its type
/// reserves there (as OpenMetrics parsers check them). They include every name it has in
/// the text format, so two families that take no name in common are valid together in
/// both formats.
pub(crate) fn taken_names(family: &Family<'_>) -> Vec<String> {
    let (name, kind) = openmetrics_name(family);
    let suffixes: &[&str] = match kind {
        "counter" => &["", "_total", "_created"],
        "histogram" | "summary" => &["", "_bucket", "_count", "_sum", "_created"],
        _ => &[""],
    };
    suffixes
        .iter()
        .map(|suffix| format!("{name}{suffix}"))
        .collect()
}

/// Keeps, in order, each family that takes no name already `taken` (see
/// [`taken_names`]), and adds its names; returns how many families it left out.
pub(crate) fn drop_clashes(families: &mut Vec<Family<'_>>, taken: &mut HashSet<String>) -> usize {
    let before = families.len();
    families.retain(|family| {
        let names = taken_names(family);
        let free = names.iter().all(|name| !taken.contains(name));
        if free {
            taken.extend(names);
        }
        free
    });
    before - families.len()
}

/// Puts a family's series in a stable order, by their text: one line per series, or for
/// a histogram or summary its lines together (buckets in `le` order, `_sum`, `_count`,
/// as their writer put them), so that two renders of unchanged metrics are identical.
pub(crate) fn sort_series(family: &mut Family<'_>) {
    let together = matches!(&*family.kind, "histogram" | "summary");
    let last = format!("{}_count", family.name);
    let samples = &*family.samples;
    let mut series = Vec::new();
    let (mut start, mut end) = (0, 0);
    for line in samples.split_inclusive('\n') {
        end += line.len();
        if !together || line.starts_with(&last) {
            series.push(&samples[start..end]);
            start = end;
        }
    }
    series.push(&samples[start..]);
    series.sort_unstable();
    family.samples = Cow::Owned(series.concat());
}

fn write_family(out: &mut String, family: &Family<'_>, format: Format) {
    let (name, kind): (&str, &str) = match format {
        Format::Text => (&family.name, &family.kind),
        Format::OpenMetrics => openmetrics_name(family),
    };
    if let Some(help) = &family.help {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        match format {
            Format::Text => out.push_str(help),
            // OpenMetrics escapes double quotes in HELP too.
            Format::OpenMetrics => {
                for c in help.chars() {
                    if c == '"' {
                        out.push_str("\\\"");
                    } else {
                        out.push(c);
                    }
                }
            }
        }
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
    out.push_str(&family.samples);
}

/// Escapes HELP text for the text format 0.0.4.
pub(crate) fn escape_help(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Appends `name="value"` label pairs, escaped, without braces.
pub(crate) fn write_label_pairs<'l>(
    out: &mut String,
    labels: impl IntoIterator<Item = (&'l str, &'l str)>,
) {
    for (index, (name, value)) in labels.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        for (i, c) in name.chars().enumerate() {
            let valid = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
            out.push(if valid { c } else { '_' });
        }
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

/// Writes a sample line: `name{labels,extra} value`. `labels` are pre-rendered pairs.
pub(crate) fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some((key, text)) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            out.push_str(text);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A float as both formats read it: shortest round-trip digits, `+Inf`, `-Inf`, `NaN`.
pub(crate) struct Float(pub(crate) f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.0;
        if value.is_nan() {
            f.write_str("NaN")
        } else if value.is_infinite() {
            f.write_str(if value > 0.0 { "+Inf" } else { "-Inf" })
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

    const UPSTREAM: &str = "# HELP b_total B help\n# TYPE b_total counter\nb_total{x=\"1\"} 3\nb_total{x=\"2\"} 4\n\n# TYPE a gauge\na 1.5\n\n# HELP c C\n# TYPE c histogram\nc_bucket{le=\"1\"} 1\nc_bucket{le=\"+Inf\"} 2\nc_sum 3\nc_count 2\n\n";

    #[test]
    fn upstream_families_are_split_whole() {
        let families = split_families(UPSTREAM);
        let names: Vec<&str> = families.iter().map(|f| &*f.name).collect();
        assert_eq!(names, ["b_total", "a", "c"]);
        assert_eq!(families[0].kind, "counter");
        assert_eq!(families[0].help.as_deref(), Some("B help"));
        assert_eq!(
            families[0].samples,
            "b_total{x=\"1\"} 3\nb_total{x=\"2\"} 4\n"
        );
        assert_eq!(families[1].help, None);
        assert_eq!(families[1].samples, "a 1.5\n");
        assert_eq!(families[2].samples.lines().count(), 4);
    }

    #[test]
    fn families_are_written_in_name_order() {
        let text = write(split_families(UPSTREAM), Format::Text);
        assert_eq!(
            text,
            "# TYPE a gauge\na 1.5\n# HELP b_total B help\n# TYPE b_total counter\nb_total{x=\"1\"} 3\nb_total{x=\"2\"} 4\n# HELP c C\n# TYPE c histogram\nc_bucket{le=\"1\"} 1\nc_bucket{le=\"+Inf\"} 2\nc_sum 3\nc_count 2\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let mut families = split_families(UPSTREAM);
        families.push(Family {
            name: "odd".into(),
            kind: "counter".into(),
            help: Some("say \"hi\"".into()),
            samples: "odd 1\n".into(),
        });
        let text = write(families, Format::OpenMetrics);
        assert!(
            text.contains("# HELP b B help\n# TYPE b counter\nb_total{x=\"1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP odd say \\\"hi\\\"\n# TYPE odd unknown\nodd 1\n"),
            "{text}"
        );
        assert!(text.ends_with("odd 1\n# EOF\n"), "{text}");
    }

    fn family(name: &'static str, kind: &'static str, samples: &'static str) -> Family<'static> {
        Family {
            name: name.into(),
            kind: kind.into(),
            help: None,
            samples: samples.into(),
        }
    }

    #[test]
    fn families_take_their_openmetrics_name_and_their_type_s_sample_names() {
        let taken = |name, kind| taken_names(&family(name, kind, ""));
        assert_eq!(taken("a_total", "counter"), ["a", "a_total", "a_created"]);
        assert_eq!(taken("a", "counter"), ["a"]);
        assert_eq!(
            taken("h", "histogram"),
            ["h", "h_bucket", "h_count", "h_sum", "h_created"]
        );
        assert_eq!(
            taken("s", "summary"),
            ["s", "s_bucket", "s_count", "s_sum", "s_created"]
        );
        assert_eq!(taken("g_total", "gauge"), ["g_total"]);
        assert_eq!(taken("u_total", "untyped"), ["u_total"]);
    }

    #[test]
    fn the_first_family_to_take_a_name_keeps_it() {
        let mut families = vec![
            family("a", "gauge", ""),
            family("a_total", "counter", ""),
            family("b_total", "counter", ""),
            family("h_sum", "gauge", ""),
            family("h", "histogram", ""),
        ];
        let mut taken = HashSet::from(["b_created".to_owned()]);
        assert_eq!(drop_clashes(&mut families, &mut taken), 3);
        let kept: Vec<&str> = families.iter().map(|f| &*f.name).collect();
        assert_eq!(kept, ["a", "h_sum"]);
        assert_eq!(taken.len(), 3, "{taken:?}");
    }

    #[test]
    fn series_are_sorted_and_a_histogram_s_lines_stay_together() {
        let mut gauge = family("g", "gauge", "g{k=\"b\"} 1\ng{k=\"a\"} 2\ng{k=\"c\"} 0\n");
        sort_series(&mut gauge);
        assert_eq!(gauge.samples, "g{k=\"a\"} 2\ng{k=\"b\"} 1\ng{k=\"c\"} 0\n");
        let b = "h_bucket{k=\"b\",le=\"1\"} 0\nh_bucket{k=\"b\",le=\"+Inf\"} 1\nh_sum{k=\"b\"} 2\nh_count{k=\"b\"} 1\n";
        let a = "h_bucket{k=\"a\",le=\"1\"} 1\nh_bucket{k=\"a\",le=\"+Inf\"} 1\nh_sum{k=\"a\"} 0.5\nh_count{k=\"a\"} 1\n";
        let mut histogram = family("h", "histogram", "");
        histogram.samples = format!("{b}{a}").into();
        sort_series(&mut histogram);
        assert_eq!(histogram.samples, format!("{a}{b}"));
    }

    #[test]
    fn labels_and_values_are_escaped() {
        let mut out = String::new();
        write_label_pairs(
            &mut out,
            [("model", "a\"b\\c\nd"), ("bad-name", "x"), ("9", "y")],
        );
        assert_eq!(out, "model=\"a\\\"b\\\\c\\nd\",bad_name=\"x\",_=\"y\"");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        let floats: Vec<String> = [
            0.1,
            1.0,
            1e300,
            1e-7,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ]
        .iter()
        .map(|v| Float(*v).to_string())
        .collect();
        assert_eq!(
            floats,
            ["0.1", "1.0", "1e300", "1e-7", "+Inf", "-Inf", "NaN"]
        );
        let mut line = String::new();
        write_sample(&mut line, "x", "_bucket", "", Some(("le", "0.5")), 3);
        write_sample(&mut line, "x", "_sum", "a=\"1\"", None, Float(2.5));
        assert_eq!(line, "x_bucket{le=\"0.5\"} 3\nx_sum{a=\"1\"} 2.5\n");
    }

    #[test]
    fn label_names_keep_letters_underscores_and_digits_after_the_first() {
        let mut out = String::new();
        write_label_pairs(
            &mut out,
            [
                ("a1", "v"),
                ("_b", "w"),
                ("1c", "x"),
                ("d-e9", "y\"q\"\n\\"),
            ],
        );
        assert_eq!(out, r#"a1="v",_b="w",_c="x",d_e9="y\"q\"\n\\""#);
    }
}

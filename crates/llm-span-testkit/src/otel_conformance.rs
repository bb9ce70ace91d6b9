//! A `/metrics` body checked against the OpenTelemetry GenAI metric conventions under the
//! OpenTelemetry to Prometheus translation, as the workspace's fixture holds them
//! ([`FIXTURE`]: names, instruments, units, descriptions, attributes with their requirement
//! levels and Prometheus label names, advisory bucket boundaries).
//!
//! [`violations`] lists what does not conform, [`assert_conforms`] panics with that list.
//! The exporter's tests run it on rendered bodies; a workspace test can run it on a live
//! `/metrics` the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::prom::Scrape;

/// The fixture, relative to the workspace root.
pub const FIXTURE: &str = "tests/fixtures/otel-genai-semconv-1.41.0.json";

/// The fixture's path in this workspace.
pub fn fixture_path() -> PathBuf {
    crate::shipped::path(FIXTURE)
}

/// One attribute of a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute (`gen_ai.request.model`).
    pub name: String,
    /// Its label name (`gen_ai_request_model`).
    pub label: String,
    /// `required`, `conditionally_required` or `recommended`.
    pub requirement_level: String,
    /// The values the conventions name, if any (`_OTHER`, `input`, `output`, ...).
    pub well_known_values: Vec<String>,
}

/// One metric of the conventions.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The OpenTelemetry name (`gen_ai.client.token.usage`).
    pub name: String,
    /// The Prometheus family name.
    pub prometheus_name: String,
    /// `histogram` (every GenAI metric of the version read).
    pub instrument: String,
    /// The description: the HELP text.
    pub description: String,
    /// The unit word the translation appends (`seconds`), if any.
    pub unit_suffix: Option<String>,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
    /// The advisory bucket boundaries.
    pub buckets: Vec<f64>,
}

/// The conventions as the fixture holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Conventions {
    /// The version read (`1.41.0`).
    pub version: String,
    /// Every metric.
    pub metrics: Vec<Metric>,
}

impl Conventions {
    /// Reads the fixture at `path`; panics naming it when it cannot be read or lacks a field.
    pub fn load(path: &Path) -> Conventions {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let string = |value: &serde_json::Value, field: &str| -> String {
            value[field]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no string {field} in {value}", path.display()))
                .to_owned()
        };
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let metrics = json["metrics"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no metrics", path.display()))
            .iter()
            .map(|metric| Metric {
                name: string(metric, "name"),
                prometheus_name: string(metric, "prometheus_name"),
                instrument: string(metric, "instrument"),
                description: string(metric, "description"),
                unit_suffix: metric["prometheus_unit_suffix"].as_str().map(str::to_owned),
                attributes: metric["attributes"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}: no attributes in {metric}", path.display()))
                    .iter()
                    .map(|attribute| Attribute {
                        name: string(attribute, "name"),
                        label: string(attribute, "prometheus_label"),
                        requirement_level: string(attribute, "requirement_level"),
                        well_known_values: strings(&attribute["well_known_values"]),
                    })
                    .collect(),
                buckets: metric["advisory_bucket_boundaries"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}: no boundaries in {metric}", path.display()))
                    .iter()
                    .map(|b| b.as_f64().expect("a boundary is a number"))
                    .collect(),
            })
            .collect();
        let mut conventions = Conventions {
            version: string(&json, "semconv_version"),
            metrics,
        };
        // Values named for an attribute in general (gen_ai.token.type: input, output).
        for metric in &mut conventions.metrics {
            for attribute in &mut metric.attributes {
                if attribute.well_known_values.is_empty() {
                    attribute.well_known_values =
                        strings(&json["well_known_values"][attribute.name.as_str()]);
                }
            }
        }
        conventions
    }

    /// The metric whose Prometheus name is `name`.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.prometheus_name == name)
    }
}

/// What a body is expected to serve.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The Prometheus names of the conventions' families the body must serve, and the only
    /// `gen_ai_` families it may serve (those of the roles served).
    pub families: &'a [&'a str],
    /// Labels allowed besides the metrics' attributes and `le`: extra and global labels
    /// (an OpenTelemetry SDK's exporter would add `otel_scope_name` and its siblings).
    pub extra_labels: &'a [&'a str],
    /// The attributes whose values must be among those the conventions name (most
    /// attributes are open: `gen_ai.provider.name` may be any provider).
    pub closed_attributes: &'a [&'a str],
}

impl<'a> Expected<'a> {
    /// `families`, no extra label, `gen_ai.token.type` only `input` or `output`.
    pub fn families(families: &'a [&'a str]) -> Self {
        Self {
            families,
            extra_labels: &[],
            closed_attributes: &["gen_ai.token.type"],
        }
    }
}

/// What in `text` (the text format 0.0.4) and `openmetrics` (the same metrics in
/// OpenMetrics 1.0, if given) does not conform to the conventions in `fixture`, one line
/// per violation. Checks, for each expected family: the name is the conventions'
/// Prometheus name, with `# TYPE` of the instrument and `# HELP` of the description; the
/// unit is the name's suffix, and a `# UNIT` line, if any, says the same (none for a
/// metric without a unit); every series has `_bucket` lines at exactly the advisory
/// boundaries plus `+Inf`, a `_sum` and a `_count` equal to the `+Inf` bucket; every label
/// is an attribute's label, `le` on buckets or an allowed extra label; every required
/// attribute's label is on every series; `error_type` only where the metric has
/// `error.type`, and never `ok`; only the values the conventions name for the attributes
/// `closed_attributes` lists; no `_total`; no `gen_ai_` family that is not expected.
pub fn violations(
    fixture: &Path,
    text: &str,
    openmetrics: Option<&str>,
    expected: &Expected<'_>,
) -> Vec<String> {
    let conventions = Conventions::load(fixture);
    let mut found = Vec::new();
    let scrape = match Scrape::parse(text) {
        Ok(scrape) => scrape,
        Err(e) => return vec![format!("the text format does not parse: {e}")],
    };
    let served: BTreeSet<&str> = scrape
        .types
        .keys()
        .map(String::as_str)
        .filter(|name| name.starts_with("gen_ai_"))
        .collect();
    for name in &served {
        if !expected.families.contains(name) {
            found.push(format!("{name}: served, but not expected"));
        }
    }
    for sample in &scrape.samples {
        if sample.name.starts_with("gen_ai_") && sample.name.ends_with("_total") {
            found.push(format!("{}: a _total sample", sample.key()));
        }
    }
    for name in expected.families {
        let Some(metric) = conventions.metric(name) else {
            found.push(format!(
                "{name}: not a Prometheus name of the conventions {}",
                conventions.version
            ));
            continue;
        };
        check_family(metric, &scrape, expected, &mut found);
        if let Some(openmetrics) = openmetrics {
            check_openmetrics(metric, openmetrics, &mut found);
        }
    }
    found
}

/// [`violations`], panicking with every one of them and the body.
pub fn assert_conforms(
    fixture: &Path,
    text: &str,
    openmetrics: Option<&str>,
    expected: &Expected<'_>,
) {
    let found = violations(fixture, text, openmetrics, expected);
    assert!(
        found.is_empty(),
        "the body does not conform to the OpenTelemetry GenAI conventions ({}):\n  {}\n\n{text}",
        fixture.display(),
        found.join("\n  ")
    );
}

fn check_family(
    metric: &Metric,
    scrape: &Scrape,
    expected: &Expected<'_>,
    found: &mut Vec<String>,
) {
    let name = metric.prometheus_name.as_str();
    match scrape.types.get(name) {
        Some(kind) if *kind == metric.instrument => {}
        Some(kind) => found.push(format!("{name}: TYPE {kind}, not {}", metric.instrument)),
        None => found.push(format!("{name}: no TYPE line (not served)")),
    }
    match scrape.help.get(name) {
        Some(help) if *help == metric.description => {}
        Some(help) => found.push(format!(
            "{name}: HELP {help:?}, not {:?}",
            metric.description
        )),
        None => found.push(format!("{name}: no HELP line")),
    }
    if let Some(unit) = &metric.unit_suffix {
        if !name.ends_with(&format!("_{unit}")) {
            found.push(format!("{name}: the unit {unit} is not its suffix"));
        }
    }
    let has_error_type = metric.attributes.iter().any(|a| a.name == "error.type");
    // Series by their labels without `le`: the bounds of their buckets, `+Inf`, sum, count.
    #[derive(Default)]
    struct Series {
        bounds: Vec<f64>,
        infinity: Option<f64>,
        sum: bool,
        count: Option<f64>,
    }
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for sample in &scrape.samples {
        let Some(suffix) = sample.name.strip_prefix(name) else {
            continue;
        };
        if !["_bucket", "_sum", "_count"].contains(&suffix) {
            if suffix.is_empty() {
                found.push(format!(
                    "{}: a sample with the family's bare name",
                    sample.key()
                ));
            }
            continue;
        }
        for label in sample.labels.keys() {
            let allowed = metric.attributes.iter().any(|a| a.label == *label)
                || (label == "le" && suffix == "_bucket")
                || expected.extra_labels.contains(&label.as_str());
            if !allowed {
                found.push(format!("{}: label {label} is no attribute's", sample.key()));
            }
        }
        for attribute in &metric.attributes {
            let value = sample.labels.get(&attribute.label);
            if attribute.requirement_level == "required" && value.is_none() {
                found.push(format!(
                    "{}: no {} (required {})",
                    sample.key(),
                    attribute.label,
                    attribute.name
                ));
            }
            if let Some(value) = value {
                let closed = expected
                    .closed_attributes
                    .contains(&attribute.name.as_str());
                if closed && !attribute.well_known_values.contains(value) {
                    found.push(format!(
                        "{}: {}={value:?} is not one of {:?}",
                        sample.key(),
                        attribute.label,
                        attribute.well_known_values
                    ));
                }
            }
        }
        match sample.labels.get("error_type") {
            Some(_) if !has_error_type => found.push(format!(
                "{}: error_type on a metric without error.type",
                sample.key()
            )),
            Some(value) if value.is_empty() || value == "ok" => found.push(format!(
                "{}: error_type {value:?} for a success",
                sample.key()
            )),
            _ => {}
        }
        let mut labels = sample.labels.clone();
        let le = labels.remove("le");
        let key = format!("{labels:?}");
        let entry = series.entry(key).or_default();
        match (suffix, le) {
            ("_bucket", Some(le)) if le == "+Inf" => entry.infinity = Some(sample.value),
            ("_bucket", Some(le)) => match le.parse::<f64>() {
                Ok(bound) => entry.bounds.push(bound),
                Err(_) => found.push(format!("{}: le is not a number", sample.key())),
            },
            ("_bucket", None) => found.push(format!("{}: a bucket without le", sample.key())),
            ("_sum", _) => entry.sum = true,
            _ => entry.count = Some(sample.value),
        }
    }
    for (labels, one) in &series {
        if one.bounds != metric.buckets {
            found.push(format!(
                "{name}{labels}: bucket bounds {:?}, not the advisory {:?}",
                one.bounds, metric.buckets
            ));
        }
        if one.infinity.is_none() || one.infinity != one.count {
            found.push(format!(
                "{name}{labels}: +Inf bucket {:?} and _count {:?} differ",
                one.infinity, one.count
            ));
        }
        if !one.sum {
            found.push(format!("{name}{labels}: no _sum"));
        }
    }
}

/// The metadata of the OpenMetrics body: TYPE and HELP as in the text format, and a UNIT
/// line, if any, that names the unit suffix (none for a metric without a unit).
fn check_openmetrics(metric: &Metric, body: &str, found: &mut Vec<String>) {
    let name = metric.prometheus_name.as_str();
    let meta = |kind: &str| -> Option<&str> {
        let prefix = format!("# {kind} {name} ");
        body.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
    };
    if meta("TYPE") != Some(metric.instrument.as_str()) {
        found.push(format!(
            "{name}: OpenMetrics TYPE {:?}, not {}",
            meta("TYPE"),
            metric.instrument
        ));
    }
    if meta("HELP") != Some(metric.description.as_str()) {
        found.push(format!("{name}: OpenMetrics HELP {:?}", meta("HELP")));
    }
    let bare_unit = body.lines().any(|line| line == format!("# UNIT {name}"));
    match (meta("UNIT"), &metric.unit_suffix) {
        (None, _) if !bare_unit => {}
        (Some(unit), Some(suffix)) if unit == suffix => {}
        (unit, suffix) => found.push(format!(
            "{name}: OpenMetrics UNIT {unit:?}, the conventions' {suffix:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conventions() -> Conventions {
        Conventions::load(&fixture_path())
    }

    /// A conforming text body of `metrics`: one series each, with every required label.
    fn conforming(names: &[&str]) -> String {
        let conventions = conventions();
        let mut body = String::new();
        for name in names {
            let metric = conventions.metric(name).expect("a metric");
            body.push_str(&format!(
                "# HELP {name} {}\n# TYPE {name} histogram\n",
                metric.description
            ));
            let labels: Vec<String> = metric
                .attributes
                .iter()
                .filter(|a| a.requirement_level == "required")
                .map(|a| {
                    let value = a.well_known_values.first().map_or("x", String::as_str);
                    format!("{}=\"{value}\"", a.label)
                })
                .chain(["gen_ai_request_model=\"m\"".to_owned()])
                .collect();
            let labels = labels.join(",");
            for bound in &metric.buckets {
                body.push_str(&format!("{name}_bucket{{{labels},le=\"{bound}\"}} 0\n"));
            }
            body.push_str(&format!("{name}_bucket{{{labels},le=\"+Inf\"}} 1\n"));
            body.push_str(&format!("{name}_sum{{{labels}}} 100\n"));
            body.push_str(&format!("{name}_count{{{labels}}} 1\n"));
        }
        body
    }

    const ALL: [&str; 5] = [
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_server_request_duration_seconds",
        "gen_ai_server_time_to_first_token_seconds",
        "gen_ai_server_time_per_output_token_seconds",
    ];

    #[test]
    fn the_fixture_is_read_whole() {
        let conventions = conventions();
        assert_eq!(conventions.version, "1.41.0");
        let names: Vec<&str> = conventions
            .metrics
            .iter()
            .map(|m| m.prometheus_name.as_str())
            .collect();
        assert_eq!(names, ALL);
        let usage = conventions.metric(ALL[0]).expect("token usage");
        assert_eq!(usage.unit_suffix, None);
        assert_eq!(usage.buckets.len(), 14);
        assert_eq!(usage.buckets.last(), Some(&67_108_864.0));
        let token_type = usage
            .attributes
            .iter()
            .find(|a| a.label == "gen_ai_token_type")
            .expect("token type");
        assert_eq!(token_type.well_known_values, ["input", "output"]);
        let duration = conventions.metric(ALL[2]).expect("duration");
        assert_eq!(duration.unit_suffix.as_deref(), Some("seconds"));
        assert_eq!(duration.buckets.first(), Some(&0.01));
        assert_eq!(duration.buckets.last(), Some(&81.92));
    }

    #[test]
    fn a_conforming_body_passes() {
        let body = conforming(&ALL);
        let expected = Expected::families(&ALL);
        assert_eq!(
            violations(&fixture_path(), &body, None, &expected),
            Vec::<String>::new()
        );
        let openmetrics = format!(
            "# HELP gen_ai_server_request_duration_seconds {}\n# TYPE gen_ai_server_request_duration_seconds histogram\n# UNIT gen_ai_server_request_duration_seconds seconds\n# EOF\n",
            conventions().metric(ALL[2]).expect("duration").description
        );
        let server = Expected::families(&ALL[2..3]);
        let text = conforming(&ALL[2..3]);
        assert_eq!(
            violations(&fixture_path(), &text, Some(&openmetrics), &server),
            Vec::<String>::new()
        );
    }

    /// The violations of `body` against the server's request duration alone.
    fn of(body: &str, openmetrics: Option<&str>) -> Vec<String> {
        violations(
            &fixture_path(),
            body,
            openmetrics,
            &Expected::families(&ALL[2..3]),
        )
    }

    #[test]
    fn each_kind_of_violation_is_reported() {
        let name = ALL[2];
        let good = conforming(&[name]);
        let one = |body: String, needle: &str| {
            let found = of(&body, None);
            assert!(
                found.iter().any(|v| v.contains(needle)),
                "{needle:?} not in {found:?}\n{body}"
            );
        };
        let lines = |keep: &dyn Fn(&str) -> Option<String>| -> String {
            good.lines().filter_map(keep).map(|l| l + "\n").collect()
        };
        one(
            good.replace("le=\"0.02\"", "le=\"0.025\""),
            "not the advisory",
        );
        one(
            lines(&|l| (!l.contains("le=\"81.92\"")).then(|| l.to_owned())),
            "not the advisory",
        );
        one(
            good.replace("gen_ai_request_model", "model"),
            "label model is no attribute's",
        );
        one(
            good.replace("gen_ai_operation_name=\"chat\",", ""),
            "no gen_ai_operation_name (required",
        );
        one(
            good.replace(
                "# TYPE gen_ai_server_request_duration_seconds histogram",
                "# TYPE gen_ai_server_request_duration_seconds summary",
            ),
            "TYPE summary",
        );
        one(
            good.replace("GenAI server", "GenAI-server")
                .replace("Generative AI server", "Generative AI"),
            "HELP",
        );
        one(good.replace(&format!("{name}_sum"), "other_sum"), "no _sum");
        one(
            lines(&|l| {
                Some(match l.strip_suffix(" 1") {
                    Some(rest) if l.starts_with(&format!("{name}_count")) => format!("{rest} 2"),
                    _ => l.to_owned(),
                })
            }),
            "differ",
        );
        one(
            good.replace(
                "gen_ai_request_model=\"m\"",
                "gen_ai_request_model=\"m\",error_type=\"ok\"",
            ),
            "for a success",
        );
        one(String::new(), "no TYPE line");
        one(
            format!("{good}# TYPE gen_ai_server_other histogram\n"),
            "gen_ai_server_other: served, but not expected",
        );
        one(
            format!("{good}# TYPE gen_ai_x_total counter\ngen_ai_x_total 1\n"),
            "a _total sample",
        );
        one("a{ 1\n".to_owned(), "does not parse");
        // Where the metric has no error.type, error_type is a violation of its own.
        let ttft = conforming(&[ALL[3]]).replace(
            "gen_ai_request_model=\"m\"",
            "gen_ai_request_model=\"m\",error_type=\"_OTHER\"",
        );
        let found = violations(
            &fixture_path(),
            &ttft,
            None,
            &Expected::families(&ALL[3..4]),
        );
        assert!(
            found
                .iter()
                .any(|v| v.contains("error_type on a metric without error.type")),
            "{found:?}"
        );
        // A token type the conventions do not name.
        let usage = conforming(&[ALL[0]]).replace(
            "gen_ai_token_type=\"input\"",
            "gen_ai_token_type=\"cached\"",
        );
        let found = violations(
            &fixture_path(),
            &usage,
            None,
            &Expected::families(&ALL[0..1]),
        );
        assert!(
            found.iter().any(|v| v.contains("\"cached\" is not one of")),
            "{found:?}"
        );
        // An extra label passes once allowed.
        let extra = good.replace(
            "gen_ai_request_model=\"m\"",
            "gen_ai_request_model=\"m\",service=\"chat\"",
        );
        assert_eq!(of(&extra, None).len(), 17, "every sample");
        let allowed = Expected {
            extra_labels: &["service"],
            ..Expected::families(&ALL[2..3])
        };
        assert_eq!(
            violations(&fixture_path(), &extra, None, &allowed),
            Vec::<String>::new()
        );
        // A name that is not the conventions'.
        let found = violations(
            &fixture_path(),
            &good,
            None,
            &Expected::families(&["gen_ai_server_request_duration"]),
        );
        assert!(
            found
                .iter()
                .any(|v| v.contains("not a Prometheus name of the conventions 1.41.0")),
            "{found:?}"
        );
    }

    #[test]
    fn openmetrics_metadata_is_checked_units_too() {
        let name = ALL[2];
        let help = conventions()
            .metric(name)
            .expect("duration")
            .description
            .clone();
        let text = conforming(&[name]);
        let body =
            |unit: &str| format!("# HELP {name} {help}\n# TYPE {name} histogram\n{unit}# EOF\n");
        assert_eq!(of(&text, Some(&body(""))), Vec::<String>::new());
        let found = of(&text, Some(&body(&format!("# UNIT {name} milliseconds\n"))));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("UNIT Some(\"milliseconds\")"),
            "{found:?}"
        );
        let found = of(&text, Some(&format!("# TYPE {name} gauge\n# EOF\n")));
        assert_eq!(found.len(), 2, "{found:?}");
        // A metric without a unit has no UNIT line.
        let usage = ALL[0];
        let usage_help = conventions()
            .metric(usage)
            .expect("usage")
            .description
            .clone();
        let found = violations(
            &fixture_path(),
            &conforming(&[usage]),
            Some(&format!("# HELP {usage} {usage_help}\n# TYPE {usage} histogram\n# UNIT {usage} tokens\n# EOF\n")),
            &Expected::families(&ALL[0..1]),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("the conventions' None"), "{found:?}");
    }

    #[test]
    #[should_panic(expected = "does not conform to the OpenTelemetry GenAI conventions")]
    fn assert_conforms_panics_with_the_violations() {
        assert_conforms(&fixture_path(), "", None, &Expected::families(&ALL[2..3]));
    }
}

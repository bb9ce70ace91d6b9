//! The one reader of the Prometheus text format (0.0.4) of the tests: a strict parser.
//!
//! Render order is not stable across scrapes, so tests compare parsed values, never
//! strings. Anything the format does not allow is an error naming the line.
//!
//! A [`Scrape`] answers by name and labels ([`Scrape::value`], [`Scrape::sum`],
//! [`Scrape::matching`]), or as a map from series keys written the way a test writes
//! them, `name{a="1",b="2"}` ([`Scrape::series`], [`series`], [`series_key`]).
//! [`scrape`] fetches and parses a `/metrics` endpoint.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;

/// The content type of the text format, as an exporter must announce it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, with any `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// `name{a="1",b="2"}`, labels sorted by name and values escaped as in the format;
    /// just `name` without labels.
    pub fn key(&self) -> String {
        if self.labels.is_empty() {
            return self.name.clone();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(name, value)| {
                let value = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{name}=\"{value}\"")
            })
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Samples in the order they appeared.
    pub samples: Vec<Sample>,
    /// `# TYPE` per family.
    pub types: HashMap<String, String>,
    /// `# HELP` per family.
    pub help: HashMap<String, String>,
}

/// A line that is not valid text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Scrape {
    /// Parses a whole exposition.
    pub fn parse(text: &str) -> Result<Scrape, ParseError> {
        let mut scrape = Scrape::default();
        for (index, line) in text.lines().enumerate() {
            let err = |message: String| ParseError {
                line: index + 1,
                message,
            };
            if line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        const KINDS: [&str; 5] =
                            ["counter", "gauge", "histogram", "summary", "untyped"];
                        if !KINDS.contains(&kind) {
                            return Err(err(format!("unknown type {kind:?}")));
                        }
                        if scrape
                            .types
                            .insert(name.to_owned(), kind.to_owned())
                            .is_some()
                        {
                            return Err(err(format!("second TYPE for {name}")));
                        }
                    }
                    (Some("HELP"), Some(name), help) => {
                        scrape
                            .help
                            .insert(name.to_owned(), help.unwrap_or("").to_owned());
                    }
                    _ => {}
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            scrape.samples.push(parse_sample(line).map_err(err)?);
        }
        Ok(scrape)
    }

    /// [`Scrape::parse`], panicking with the error and the whole text when it fails.
    pub fn parse_or_panic(text: &str) -> Scrape {
        Scrape::parse(text).unwrap_or_else(|e| panic!("the scrape does not parse: {e}\n{text}"))
    }

    /// Every sample's value by its [`Sample::key`]; panics on a series that appears twice.
    pub fn series(&self) -> HashMap<String, f64> {
        let mut series = HashMap::new();
        for sample in &self.samples {
            let key = sample.key();
            assert!(
                series.insert(key.clone(), sample.value).is_none(),
                "duplicate series {key}"
            );
        }
        series
    }

    /// The value of the sample with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Sum over every sample of `name` whose labels include all of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|s| s.value).sum()
    }

    /// Samples of `name` whose labels include all of `filter`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Every distinct value of `label` among samples of `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }

    /// Counter-like samples keyed by name and labels, for comparing two scrapes.
    pub fn by_series(&self) -> HashMap<(String, BTreeMap<String, String>), f64> {
        self.samples
            .iter()
            .map(|s| ((s.name.clone(), s.labels.clone()), s.value))
            .collect()
    }
}

/// The samples of `text` by series key ([`Scrape::series`]); panics when `text` does
/// not parse or repeats a series.
pub fn series(text: &str) -> HashMap<String, f64> {
    Scrape::parse_or_panic(text).series()
}

/// The key [`Sample::key`] gives the series written in `series` (`name` or
/// `name{labels}`, labels in any order); panics when it is not a valid series.
pub fn series_key(series: &str) -> String {
    parse_sample(&format!("{series} 0"))
        .unwrap_or_else(|e| panic!("{series:?} is not a series: {e}"))
        .key()
}

/// Fetches `/metrics` from `addr`, asserts status 200 and parses the body strictly.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let response = crate::http::get(addr, "/metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    Scrape::parse_or_panic(&response.body)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let value = parse_value(value)?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("invalid timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err(format!("trailing text in {line:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("invalid value {text:?}")),
    }
}

type Labels<'a> = (BTreeMap<String, String>, &'a str);

fn parse_labels(mut text: &str) -> Result<Labels<'_>, String> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = text.find('=').ok_or("label without '='")?;
        let key = text[..eq].trim();
        if !is_label_name(key) {
            return Err(format!("invalid label name {key:?}"));
        }
        let after = text[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => return Err(format!("invalid escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("duplicate label {key:?}"));
        }
        text = after[end + 1..].trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_families_samples_and_escapes() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total{model=\"x\\\"y\",k=\"1\\n2\"} 3\n\nh_bucket{le=\"+Inf\"} 4 1700000000\n";
        let scrape = Scrape::parse(text).expect("valid");
        assert_eq!(scrape.types["a_total"], "counter");
        assert_eq!(
            scrape.value("a_total", &[("model", "x\"y"), ("k", "1\n2")]),
            Some(3.0)
        );
        assert_eq!(scrape.value("h_bucket", &[("le", "+Inf")]), Some(4.0));
        assert_eq!(scrape.sum("a_total", &[("k", "1\n2")]), 3.0);
    }

    #[test]
    fn rejects_what_the_format_forbids() {
        for bad in [
            "a{b=\"c} 1",
            "a{b=c} 1",
            "a{b=\"c\",b=\"d\"} 1",
            "a 1 2 3",
            "a x",
            "1a 1",
            "# TYPE a sometimes",
            "a{b=\"\\q\"} 1",
        ] {
            assert!(Scrape::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn series_keys_sort_labels_and_escape_values() {
        let text = "a_total{z=\"1\",b=\"q\\\"x\"} 2\nup 1\n";
        let series = series(text);
        assert_eq!(series.get("up"), Some(&1.0));
        let key = series_key("a_total{z=\"1\",b=\"q\\\"x\"}");
        assert_eq!(key, "a_total{b=\"q\\\"x\",z=\"1\"}");
        assert_eq!(series.get(&key), Some(&2.0));
    }

    #[test]
    #[should_panic(expected = "duplicate series")]
    fn a_repeated_series_is_refused() {
        series("a{b=\"1\"} 1\na{b=\"1\"} 2\n");
    }
}

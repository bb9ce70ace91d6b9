//! The README's metrics reference table lists exactly what the layer emits.

use llm_span_layer::catalog::{MetricKind, METRICS};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// Rows of the reference table: (name, type, labels).
fn rows(readme: &str) -> Vec<(String, String, Vec<String>)> {
    let start = readme
        .find("## Metrics reference")
        .expect("reference section");
    let section = &readme[start..];
    // The section ends at the next heading of the same level.
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter(|line| line.starts_with("| `llm_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let labels = cells[3]
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            (name, cells[2].to_owned(), labels)
        })
        .collect()
}

#[test]
fn every_metric_has_a_matching_row_and_no_row_is_stale() {
    let readme = readme();
    let rows = rows(&readme);
    assert_eq!(rows.len(), METRICS.len(), "one row per metric family");
    for def in METRICS {
        let (_, kind, labels) = rows
            .iter()
            .find(|(name, ..)| name == def.name)
            .unwrap_or_else(|| panic!("{} has no row in the README", def.name));
        let expected_kind = match def.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        assert_eq!(kind, expected_kind, "{}", def.name);
        let mut expected: Vec<String> = def.labels.iter().map(|l| (*l).to_owned()).collect();
        if def.per_request_series {
            expected.insert(0, "model".to_owned());
        }
        assert_eq!(labels, &expected, "{}", def.name);
    }
}

#[test]
fn every_anomaly_reason_is_documented() {
    let readme = readme();
    for reason in llm_span_layer::catalog::ANOMALY_REASON_VALUES {
        assert!(
            readme.contains(&format!("`{reason}`")),
            "{reason} is not in the README"
        );
    }
}

//! The README's metrics reference table lists exactly what the layer emits.

use llm_span_layer::catalog::METRICS;

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
        assert_eq!(kind, def.kind.as_str(), "{}", def.name);
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
    for reason in llm_span_layer::catalog::Anomaly::ALL
        .iter()
        .map(|a| a.as_str())
    {
        assert!(
            readme.contains(&format!("`{reason}`")),
            "{reason} is not in the README"
        );
    }
}

/// The first column (and, for the span table, the aliases column) of the tables in the
/// README's "The span contract" section: (first cell, second cell) per row.
fn contract_rows(readme: &str, header: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let start = readme
        .find("## The span contract")
        .expect("contract section");
    let section = &readme[start..];
    let table = &section[section.find(header).expect("table header")..];
    let codes = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            // `tokens_out_delta = n` names the field `tokens_out_delta`.
            .filter_map(|code| code.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    };
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (codes(cells[1]), codes(cells[2]))
        })
        .collect()
}

#[test]
fn the_contract_table_lists_every_field_and_alias() {
    use llm_span_layer::fields::CONTRACT;
    let readme = readme();
    let span_rows = contract_rows(&readme, "| field | aliases");
    let span_fields: Vec<_> = CONTRACT.iter().filter(|def| def.on_span).collect();
    assert_eq!(span_rows.len(), span_fields.len(), "one row per span field");
    for def in span_fields {
        let (_, aliases) = span_rows
            .iter()
            .find(|(names, _)| names.first().map(String::as_str) == Some(def.name))
            .unwrap_or_else(|| panic!("span field {} has no row", def.name));
        let expected: Vec<String> = def.aliases.iter().map(|a| (*a).to_owned()).collect();
        assert_eq!(aliases, &expected, "aliases of {}", def.name);
    }
    // The span-scoped aliases' table: span, framework field, contract field, per row.
    let start = readme
        .find("| span | field | stands for |")
        .expect("scoped table");
    let listed: Vec<Vec<String>> = readme[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.split('|')
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .filter_map(|cell| cell.split('`').nth(1).map(str::to_owned))
                .collect()
        })
        .collect();
    let scoped: Vec<Vec<String>> = llm_span_layer::fields::SPAN_ALIASES
        .iter()
        .map(|a| vec![a.span.to_owned(), a.alias.to_owned(), a.field.to_owned()])
        .collect();
    assert_eq!(listed, scoped, "the span-scoped aliases");
    let event_rows = contract_rows(&readme, "| event field |");
    for def in CONTRACT.iter().filter(|def| def.on_event) {
        assert!(
            event_rows
                .iter()
                .any(|(names, _)| names.iter().any(|n| n == def.name)),
            "event field {} is not in the events table",
            def.name
        );
    }
}

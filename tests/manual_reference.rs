//! The layer's manual (its rustdoc chapters `llm_span_layer::manual::*`, written in
//! `crates/llm-span-layer/docs/*.md`) matches the code: the metrics reference lists exactly
//! what the layer emits and every anomaly reason, the span contract every field and alias.

use llm_span_layer::catalog::{MetricDef, METRICS, OPERATION_METRICS};
use llm_span_testkit::shipped;

/// A chapter of the manual, as `include_str!` puts it into the rendered docs.
fn chapter(name: &str) -> String {
    shipped::read(&format!("crates/llm-span-layer/docs/{name}.md"))
}

/// Rows of the reference table: (name, type, labels).
fn rows(reference: &str) -> Vec<(String, String, Vec<String>)> {
    reference
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
    let reference = chapter("metrics_reference");
    let (families, operations) = reference
        .split_once("# Operation families")
        .expect("the chapter has a section on the operation families");
    check_rows(&rows(families), METRICS);
    check_rows(&rows(operations), OPERATION_METRICS);
}

fn check_rows(rows: &[(String, String, Vec<String>)], defs: &[MetricDef]) {
    assert_eq!(rows.len(), defs.len(), "one row per metric family");
    for def in defs {
        let (_, kind, labels) = rows
            .iter()
            .find(|(name, ..)| name == def.name)
            .unwrap_or_else(|| panic!("{} has no row in the metrics reference", def.name));
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
    let reference = chapter("metrics_reference");
    for reason in llm_span_layer::catalog::Anomaly::ALL
        .iter()
        .map(|a| a.as_str())
    {
        assert!(
            reference.contains(&format!("`{reason}`")),
            "{reason} is not in the metrics reference"
        );
    }
}

/// The first column (and, for the span table, the aliases column) of the tables in the
/// span contract chapter: (first cell, second cell) per row.
fn contract_rows(contract: &str, header: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let table = &contract[contract.find(header).expect("table header")..];
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
    let contract = chapter("contract");
    let span_rows = contract_rows(&contract, "| field | aliases");
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
    let start = contract
        .find("| span | field | stands for |")
        .expect("scoped table");
    let listed: Vec<Vec<String>> = contract[start..]
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
    let event_rows = contract_rows(&contract, "| event field |");
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

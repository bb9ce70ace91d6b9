//! The test's configs, derived from the shipped files: only addresses, file paths,
//! intervals and one `for:` duration change, each substitution required to match exactly
//! once, so that a change to a shipped file that the tests no longer cover fails here.

use std::net::SocketAddr;

use llm_span_testkit::shipped;

/// `text` with `from` replaced by `to`; `from` must occur exactly once, so that a
/// change to a shipped file that a test no longer covers fails here.
pub(crate) fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} should occur exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The shipped file at `path` with each `(from, to)` of `substitutions` made by
/// [`replace_once`], in order.
pub(crate) fn shipped_with(path: &str, substitutions: &[(&str, &str)]) -> String {
    substitutions
        .iter()
        .fold(shipped::read(path), |text, (from, to)| {
            replace_once(&text, from, to)
        })
}

/// The shipped alert rules with HighTTFT's `for: 2m` shortened to `for_`: the only
/// difference, checked line by line. The other alerts keep their shipped `for:` (two
/// minutes or more, longer than this test), so none of them can fire here.
pub(crate) fn alert_rules_for_test(for_: &str) -> String {
    let rules = shipped::read("deploy/prometheus/rules/llm-alerts.yml");
    let start = rules.find("- alert: HighTTFT").expect("HighTTFT rule");
    let end = rules[start + 1..]
        .find("- alert:")
        .map_or(rules.len(), |i| start + 1 + i);
    let block = replace_once(&rules[start..end], "for: 2m", &format!("for: {for_}"));
    let copy = format!("{}{block}{}", &rules[..start], &rules[end..]);
    let changed: Vec<(&str, &str)> = rules
        .lines()
        .zip(copy.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0].1.trim_start().starts_with("for: "),
        "{changed:?}"
    );
    copy
}

/// The `expr:` of a shipped alert, as written.
pub(crate) fn alert_expr(alert: &str) -> String {
    let rules = shipped::read("deploy/prometheus/rules/llm-alerts.yml");
    let start = rules
        .find(&format!("- alert: {alert}\n"))
        .unwrap_or_else(|| panic!("no alert {alert}"));
    let mut lines = rules[start..]
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("expr:"));
    let first = lines.next().expect("expr:");
    let indent = first.len() - first.trim_start().len();
    let inline = first.trim_start().trim_start_matches("expr:").trim();
    if inline != "|" {
        return inline.to_owned();
    }
    lines
        .take_while(|l| l.len() - l.trim_start().len() > indent)
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shipped Alertmanager config with the test's webhook and short group timers.
pub(crate) fn alertmanager_config_for_test(webhook: SocketAddr) -> String {
    shipped_with(
        "deploy/alertmanager/alertmanager.yml",
        &[
            ("group_wait: 30s", "group_wait: 1s"),
            ("group_interval: 5m", "group_interval: 1s"),
            (
                "http://pager-bridge.internal:9095/alerts",
                &format!("http://{webhook}/pager"),
            ),
            (
                "http://ticket-bridge.internal:9096/alerts",
                &format!("http://{webhook}/tickets"),
            ),
        ],
    )
}

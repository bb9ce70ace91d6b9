//! Checks that need no running server: the scale-out configs pass their checkers, and
//! the Kubernetes `PrometheusRule` is exactly what `scripts/gen-prometheusrule.sh` makes
//! of the rule files.

use std::path::Path;

use llm_span_testkit::process::TempDir;
use llm_span_testkit::prometheus::loopback;
use llm_span_testkit::{promtool, shipped, tools};

use crate::configs::{alert_rules_for_test, alertmanager_config_for_test, replace_once};

/// Runs `tool` with `args` in `dir` and asserts that it exits 0; `None` when the test is
/// to skip (see `tools::run`).
fn run_ok(tool: &str, args: &[&str], dir: &Path) -> Option<String> {
    let outcome = tools::run(tool, Some(dir), args, None)?;
    outcome.assert_success();
    Some(outcome.output())
}

/// The scale-out configs pass their checkers. (`prometheus.yml` and the rule files, with
/// their unit tests, are checked by tests/prometheus_end_to_end.rs.)
#[test]
fn scale_out_configs_pass_their_checkers() {
    if !(tools::require("promtool") && tools::require("amtool") && tools::require("vmalert")) {
        return;
    }
    let deploy = shipped::path("deploy");
    promtool::check_agent_config(&deploy.join("prometheus"), "agent.yml")
        .expect("promtool is installed")
        .assert_success();
    // The same rule files parse as MetricsQL (vmalert exits non-zero if not).
    run_ok(
        "vmalert",
        &[
            "-dryRun",
            "-rule=prometheus/rules/llm-recording.yml",
            "-rule=prometheus/rules/llm-alerts.yml",
        ],
        &deploy,
    );

    let alertmanager_dir = deploy.join("alertmanager");
    run_ok(
        "amtool",
        &["check-config", "alertmanager.yml"],
        &alertmanager_dir,
    );
    // The routing tree: pages to the pager, warnings (and anything unknown) to tickets.
    for (receiver, labels) in [
        (
            "llm-pager",
            &["severity=page", "alertname=HighTTFT", "model=m"][..],
        ),
        (
            "llm-pager",
            &["severity=page", "alertname=LlmMetricsDown", "instance=i"],
        ),
        (
            "llm-tickets",
            &["severity=warning", "alertname=LowCacheHitRate", "model=m"],
        ),
        ("llm-tickets", &["alertname=Unknown"]),
    ] {
        let verify = format!("--verify.receivers={receiver}");
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            &verify,
        ];
        args.extend_from_slice(labels);
        run_ok("amtool", &args, &alertmanager_dir);
    }

    // The test's own copies are still valid configs.
    let dir = TempDir::new("scale-out-checks");
    dir.write(
        "alertmanager.yml",
        &alertmanager_config_for_test(loopback(9)),
    );
    run_ok("amtool", &["check-config", "alertmanager.yml"], dir.path());
    dir.write("llm-alerts.yml", &alert_rules_for_test("5s"));
    promtool::check_rules(dir.path(), &["llm-alerts.yml"])
        .expect("promtool is installed")
        .assert_success();
}

/// The `PrometheusRule` is what the generator makes of the rule files today, and its
/// groups, taken back out, pass the same promtool unit tests as the shipped files.
#[test]
fn prometheus_rule_is_generated_from_the_rule_files() {
    let dir = TempDir::new("prometheusrule");
    let fresh = dir.join("prometheusrule.yaml");
    run_ok(
        "bash",
        &[
            "scripts/gen-prometheusrule.sh",
            fresh.to_str().expect("path"),
        ],
        shipped::root(),
    );
    let committed = shipped::read("deploy/kubernetes/prometheusrule.yaml");
    assert!(
        std::fs::read_to_string(&fresh).expect("generated") == committed,
        "deploy/kubernetes/prometheusrule.yaml is stale: run scripts/gen-prometheusrule.sh"
    );
    for rules in ["llm-recording.yml", "llm-alerts.yml"] {
        let text = shipped::read(&format!("deploy/prometheus/rules/{rules}"));
        for line in text
            .lines()
            .filter(|l| l.contains("- record:") || l.contains("- alert:"))
        {
            assert!(
                committed.contains(&format!("  {line}\n")),
                "{rules}: {line:?} is not in the PrometheusRule"
            );
        }
    }

    // spec.groups, two spaces shallower, is a Prometheus rule file again.
    let spec = committed
        .split_once("\nspec:\n")
        .expect("spec:")
        .1
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let extracted = dir.write("extracted.yml", &spec);
    let tests = shipped::read("deploy/prometheus/tests/llm-alerts.test.yml");
    let tests = replace_once(
        &tests,
        "  - ../rules/llm-recording.yml\n  - ../rules/llm-alerts.yml\n",
        &format!("  - {}\n", extracted.display()),
    );
    dir.write("llm-alerts.test.yml", &tests);
    let Some(outcome) = promtool::test_rules(dir.path(), &["llm-alerts.test.yml"]) else {
        return;
    };
    outcome.assert_success();
    assert!(outcome.output().contains("SUCCESS"), "{}", outcome.output());
}

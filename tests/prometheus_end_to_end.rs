//! The shipped alert rules, recording rules and dashboard, proven with promtool and a
//! real Prometheus server scraping two replicas of the demo server.
//!
//! Needs Debian's `prometheus` package (`prometheus` and `promtool`). Without it the
//! tests say so and pass, unless `LLM_SPAN_REQUIRE_TOOLS=1` is set: then a missing
//! binary is a failure (`llm_span_testkit::tools`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use llm_span_testkit::process::{self, wait_for, DemoServer, Load};
use llm_span_testkit::prometheus::{scrape_config, Prometheus};
use llm_span_testkit::{promtool, shipped, tools};
use serde_json::Value;

#[test]
fn rules_and_config_pass_promtool() {
    if !tools::require("promtool") {
        return;
    }
    let dir = shipped::path("deploy/prometheus");
    let runs = [
        promtool::check_rules(&dir, &["rules/llm-recording.yml", "rules/llm-alerts.yml"]),
        promtool::check_config(&dir, "prometheus.yml"),
        promtool::test_rules(&dir, &["tests/llm-alerts.test.yml"]),
    ];
    for run in runs {
        run.expect("promtool is installed").assert_success();
    }
}

/// Every `<latency quantile> > N` or `< N` in the alerts compares with a bucket boundary
/// of the exporter's preset for that histogram, so the threshold is exact.
#[test]
fn latency_thresholds_sit_on_bucket_boundaries() {
    let alerts = shipped::read("deploy/prometheus/rules/llm-alerts.yml");
    let mut checked = 0;
    for line in alerts.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, window) in words.windows(3).enumerate() {
            let [series, op, number] = window else {
                continue;
            };
            // `> 1.5 * (...)` is a relative threshold, not a latency.
            if !matches!(*op, ">" | "<" | ">=" | "<=") || words.get(i + 3) == Some(&"*") {
                continue;
            }
            let Some(metric) = series
                .strip_prefix("model:")
                .and_then(|s| s.split(':').next())
            else {
                continue;
            };
            let Some(preset) = llm_span_prometheus::buckets::preset(metric) else {
                continue;
            };
            if !metric.ends_with("_seconds") {
                continue;
            }
            let threshold: f64 = number
                .parse()
                .unwrap_or_else(|_| panic!("threshold {number:?} in {line:?}"));
            assert!(
                preset.contains(&threshold),
                "{threshold} is not a bucket boundary of {metric}: {preset:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "found no latency threshold to check");
}

fn dashboard() -> Value {
    let text = shipped::read("deploy/grafana/llm-inference.json");
    serde_json::from_str(&text).expect("dashboard is JSON")
}

fn dashboard_exprs() -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dashboard()["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

#[test]
fn dashboard_queries_aggregate_across_replicas() {
    let dashboard = dashboard();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variables.contains(&"model"), "{variables:?}");
    // The latency panels show exemplars and open their traces.
    assert!(variables.contains(&"trace_url"), "{variables:?}");
    for title in ["Time to first token", "End-to-end latency (ok requests)"] {
        let panel = dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no {title:?} panel"));
        let exemplars = panel["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter(|t| t["exemplar"] == true)
            .count();
        assert_eq!(exemplars, 1, "{title}: one query with exemplars");
        let link = &panel["fieldConfig"]["defaults"]["links"][0]["url"];
        assert_eq!(link, "${trace_url}${__data.fields.trace_id}", "{title}");
    }
    let mut ids: Vec<i64> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| p["id"].as_i64().expect("id"))
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "panel ids are unique");
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 15, "{exprs:?}");
    for expr in &exprs {
        if expr.contains("histogram_quantile") {
            assert!(
                expr.contains("sum by (le, model)"),
                "aggregate buckets before the quantile: {expr}"
            );
        }
        if expr.contains("llm_")
            && !expr.contains("llm_gpu_memory")
            && !expr.contains("llm_layer_anomalies")
        {
            assert!(
                expr.contains("$model"),
                "panel ignores the model variable: {expr}"
            );
        }
    }
    for title in [
        "Time to first token",
        "Cost per hour",
        "Queue depth and wait",
        "GPU memory used",
        "Prefix-cache hit rate",
    ] {
        assert!(
            dashboard["panels"]
                .as_array()
                .expect("panels")
                .iter()
                .any(|p| p["title"] == title),
            "no {title:?} panel"
        );
    }
}

/// A Prometheus scraping `targets` every second with the shipped rules.
fn prometheus(targets: &[SocketAddr]) -> Prometheus {
    let rules = [
        shipped::path("deploy/prometheus/rules/llm-recording.yml"),
        shipped::path("deploy/prometheus/rules/llm-alerts.yml"),
    ];
    Prometheus::start(&scrape_config(targets, &rules), &[])
}

#[test]
fn prometheus_sees_the_load_and_the_slow_model_alerts() {
    if !tools::require("prometheus") {
        return;
    }
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("llm-span-prices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let prices = dir.join("prices.txt");
    // "slow" stays unpriced on purpose: the unpriced-tokens query must have data too.
    std::fs::write(&prices, "fast 0.2 0.1 0.6\n").expect("prices");
    let args = [
        "--model",
        "fast:0.05:1:8",
        "--model",
        "slow:30:5:4",
        "--error-rate",
        "0",
        "--prices",
        prices.to_str().expect("path"),
    ];
    let replicas = [DemoServer::start(&args), DemoServer::start(&args)];
    let prometheus = prometheus(&[replicas[0].metrics, replicas[1].metrics]);
    let up = wait_for(Duration::from_secs(20), || {
        let up = prometheus.by("up", "instance");
        (up.len() == 2 && up.values().all(|v| *v == 1.0)).then_some(())
    });
    assert!(up.is_some(), "both replicas are scraped");

    let load = |server: &DemoServer, seed| {
        let spec = Load {
            requests: 80,
            concurrency: 10,
            seed,
            abort_share: 0.1,
        };
        process::load(server, spec, &[])
    };
    let summaries = std::thread::scope(|s| {
        let a = s.spawn(|| load(&replicas[0], 21));
        let b = s.spawn(|| load(&replicas[1], 22));
        [a.join().expect("load a"), b.join().expect("load b")]
    });
    let client = |model: &str, field: &str| -> f64 {
        summaries
            .iter()
            .map(|s| s["models"][model][field].as_u64().unwrap_or(0) as f64)
            .sum()
    };

    // Aggregated across replicas, the counters equal what the two clients saw.
    let tokens_match = wait_for(Duration::from_secs(15), || {
        let input = prometheus.by(
            r#"sum by (model) (llm_tokens_total{type="input"})"#,
            "model",
        );
        let output = prometheus.by(
            r#"sum by (model) (llm_tokens_total{type="output"})"#,
            "model",
        );
        ["fast", "slow"]
            .iter()
            .all(|m| {
                input.get(*m) == Some(&client(m, "input_tokens"))
                    && output.get(*m) == Some(&client(m, "output_tokens"))
            })
            .then_some(())
    });
    assert!(
        tokens_match.is_some(),
        "token counters {:?} / {:?} vs client {summaries:?}",
        prometheus.by(
            r#"sum by (model) (llm_tokens_total{type="input"})"#,
            "model"
        ),
        prometheus.by(
            r#"sum by (model) (llm_tokens_total{type="output"})"#,
            "model"
        ),
    );
    let rates = prometheus.by("model_type:llm_tokens:rate5m", "model");
    assert!(
        rates.values().all(|r| *r > 0.0) && rates.len() == 2,
        "{rates:?}"
    );
    let requests = prometheus.by("sum by (model) (llm_requests_total)", "model");
    assert_eq!(requests.get("fast"), Some(&client("fast", "requests")));
    assert_eq!(requests.get("slow"), Some(&client("slow", "requests")));

    // The slow model's p99 TTFT is above the 2 s threshold, the fast one's below.
    let p99 = wait_for(Duration::from_secs(10), || {
        let p99 = prometheus.by("model:llm_ttft_seconds:p99_5m", "model");
        (p99.len() == 2).then_some(p99)
    })
    .expect("p99 recording rule");
    assert!(p99["slow"] > 2.0, "slow p99 {}", p99["slow"]);
    assert!(p99["fast"] < 2.0, "fast p99 {}", p99["fast"]);

    // HighTTFT is pending (its `for` is 2 minutes) or firing, for the slow model only.
    let alerts = wait_for(Duration::from_secs(10), || {
        let alerts = prometheus.get("/api/v1/alerts");
        let high: Vec<(String, String)> = alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == "HighTTFT")
            .map(|a| {
                (
                    a["labels"]["model"].as_str().unwrap_or("").to_owned(),
                    a["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        (!high.is_empty()).then_some(high)
    })
    .expect("HighTTFT becomes active");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].0, "slow");
    assert!(
        ["pending", "firing"].contains(&alerts[0].1.as_str()),
        "{alerts:?}"
    );

    // Every dashboard query parses and returns data.
    for expr in dashboard_exprs() {
        let query = expr
            .replace("$__rate_interval", "1m")
            .replace("$model", ".*");
        let result = prometheus.query(&query);
        assert!(!result.is_empty(), "no data for dashboard query {query}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    eprintln!("prometheus end-to-end took {:?}", started.elapsed());
}

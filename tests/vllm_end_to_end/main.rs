//! The `vllm` naming profile with what reads it: a live Prometheus scrapes the demo server
//! (`LLM_METRICS_NAMING=llm,vllm`) under the load generator and runs vLLM's example
//! Grafana dashboard's PromQL (`dashboard_queries.txt`), the production-stack KEDA
//! recipe's query, the inference gateway's gauges, and the queries of the shipped KEDA
//! `ScaledObject` and prometheus-adapter rules (`deploy/kubernetes/autoscaling/`).
//!
//! Needs Debian's `prometheus` package. Without it the test says so and passes, unless
//! `LLM_SPAN_REQUIRE_TOOLS=1` is set: then a missing binary is a failure.

use std::time::Duration;

use llm_span_testkit::process::{self, wait_for, DemoServer, Load};
use llm_span_testkit::prometheus::{scrape_config, Prometheus};
use llm_span_testkit::{promtool, shipped, tools};

/// One model, two slots, slow decoding: twelve clients make a queue.
const MODEL: &str = "m";
const MODEL_SPEC: &str = "m:0.05:15:2";

/// The dashboard's panels whose families the layer derives (docs/naming.md), which must
/// show data; the others must show none (their families are absent, not faked).
const PANELS_WITH_DATA: &[&str] = &[
    "E2E Request Latency",
    "Token Throughput",
    "Scheduler State",
    "Time To First Token Latency",
    "Cache Utilization",
    "Finish Reason",
    "Queue Time",
];

/// `(panel, expr)` of the dashboard, its variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!(
        "{}/tests/vllm_end_to_end/dashboard_queries.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("dashboard queries");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (panel, expr) = line.split_once('\t').expect("panel<TAB>expr");
            let expr = expr
                .replace("$model_name", MODEL)
                .replace("$__rate_interval", "2m");
            (panel.to_owned(), expr)
        })
        .collect()
}

/// The values of `key: ...` lines of a shipped YAML file (single quotes removed).
fn yaml_values(path: &str, key: &str) -> Vec<String> {
    shipped::read(path)
        .lines()
        .filter_map(|line| line.trim().strip_prefix(&format!("{key}: ")))
        .map(|value| value.trim_matches('\'').to_owned())
        .collect()
}

#[test]
fn vllm_s_dashboard_and_autoscalers_read_the_demo() {
    if !tools::require("prometheus") {
        return;
    }
    let server = DemoServer::start_with_env(
        &["--model", MODEL_SPEC, "--error-rate", "0.05"],
        &[("LLM_METRICS_NAMING", "llm,vllm")],
    );
    let prometheus = Prometheus::start(&scrape_config(&[server.metrics], &[]), &[]);
    let up = wait_for(Duration::from_secs(20), || {
        (prometheus.scalar("up") == Some(1.0)).then_some(())
    });
    assert!(up.is_some(), "the demo is scraped");
    let body = llm_span_testkit::http::get(server.metrics, "/metrics").body;
    // promtool's only word on the body: vLLM's colons (as on vLLM's own output).
    if let Some(outcome) = promtool::check_metrics(&body) {
        let output = outcome.output();
        let other: Vec<&str> = output
            .lines()
            .filter(|line| !line.contains("metric names should not contain ':'"))
            .collect();
        assert!(other.is_empty(), "{output}");
    }

    let spec = Load {
        requests: 60,
        concurrency: 12,
        seed: 7,
        abort_share: 0.1,
    };
    // While the load runs: both names show the same queue and the same running requests
    // at every instant (one query, one scrape), and the queue is not empty at times.
    let (summary, queued, compared) = std::thread::scope(|scope| {
        let load = scope.spawn(|| process::load(&server, spec, &[]));
        let mut queued = 0.0_f64;
        let mut compared = 0;
        while !load.is_finished() {
            // Before the first request has its gauges, neither name has a series.
            let same = |a: &str, b: &str| prometheus.scalar(&format!("sum({a}) - sum({b})"));
            let waiting = same("vllm:num_requests_waiting", "llm_queue_depth");
            let running = same(
                "vllm:num_requests_running",
                "llm_active_requests - llm_queue_depth",
            );
            if let (Some(waiting), Some(running)) = (waiting, running) {
                assert_eq!((waiting, running), (0.0, 0.0));
                compared += 1;
            }
            // The production-stack KEDA recipe's query, verbatim.
            let waiting = prometheus.scalar("vllm:num_requests_waiting");
            queued = queued.max(waiting.unwrap_or(0.0));
            std::thread::sleep(Duration::from_millis(300));
        }
        (load.join().expect("load"), queued, compared)
    });
    assert!(compared > 3, "compared {compared} times during the load");
    assert!(queued > 0.0, "the queue never showed");

    // After the load, every counter of vLLM's names equals the layer's, from the same
    // series, once Prometheus has the final scrape.
    let client = |field: &str| summary["models"][MODEL][field].as_u64().unwrap_or(0) as f64;
    let settled = wait_for(Duration::from_secs(15), || {
        let prompt = prometheus.scalar("sum(vllm:prompt_tokens_total)")?;
        (prompt == client("input_tokens")).then_some(prompt)
    });
    assert!(settled.is_some(), "prompt tokens reach the client's total");
    for (vllm, llm) in [
        (
            "vllm:prompt_tokens_total",
            r#"llm_tokens_total{type="input"}"#,
        ),
        (
            "vllm:generation_tokens_total",
            r#"llm_tokens_total{type="output"}"#,
        ),
        (
            "vllm:prefix_cache_hits_total",
            "llm_cached_input_tokens_total",
        ),
        (
            "vllm:time_to_first_token_seconds_count",
            "llm_ttft_seconds_count",
        ),
        (
            "vllm:e2e_request_latency_seconds_count",
            "llm_e2e_latency_seconds_count",
        ),
        (
            "vllm:request_queue_time_seconds_count",
            "llm_queue_wait_seconds_count",
        ),
    ] {
        let (a, b) = (
            prometheus.scalar(&format!("sum({vllm})")),
            prometheus.scalar(&format!("sum({llm})")),
        );
        assert!(a.is_some() && a == b, "{vllm} {a:?} vs {llm} {b:?}");
    }
    assert_eq!(
        prometheus.scalar(r#"sum(vllm:request_success_total{finished_reason="abort"})"#),
        prometheus.scalar(r#"sum(llm_requests_total{status="cancelled"})"#)
    );

    // vLLM's dashboard: data for every panel whose family the layer derives, none for
    // the others.
    let queries = dashboard_queries();
    assert_eq!(queries.len(), 27);
    for (panel, expr) in &queries {
        let result = prometheus.query(expr);
        let with_data = PANELS_WITH_DATA.contains(&panel.as_str());
        assert_eq!(
            !result.is_empty(),
            with_data,
            "panel {panel:?}: {expr} gave {result:?}"
        );
    }
    // The inference gateway's gauges (model server protocol): queued, running, KV cache.
    for gauge in [
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
    ] {
        let values = prometheus.by(gauge, "model_name");
        assert!(values.contains_key(MODEL), "{gauge}: {values:?}");
    }

    // The shipped autoscaling: the KEDA ScaledObject's queries and the prometheus-adapter
    // rules' metricsQuery, filled in as the adapter would for one model.
    let keda = yaml_values(
        "deploy/kubernetes/autoscaling/keda-scaledobject.yaml",
        "query",
    );
    assert_eq!(keda.len(), 2, "{keda:?}");
    // The same queue under both names: equal peaks over the load, above 0.
    let peaks: Vec<Option<f64>> = keda
        .iter()
        .map(|query| {
            let query = query.replace("MODEL", MODEL);
            assert!(prometheus.scalar(&query).is_some(), "{query}");
            prometheus.scalar(&format!("max_over_time(({query})[10m:1s])"))
        })
        .collect();
    assert!(peaks[0].is_some_and(|peak| peak > 0.0), "{peaks:?}");
    assert_eq!(peaks[0], peaks[1]);
    let adapter = yaml_values(
        "deploy/kubernetes/autoscaling/prometheus-adapter-rules.yaml",
        "metricsQuery",
    );
    assert_eq!(adapter.len(), 2, "{adapter:?}");
    for (template, series) in adapter
        .iter()
        .zip(["llm_queue_depth", "vllm:num_requests_waiting"])
    {
        let label = if series.starts_with("vllm:") {
            "model_name"
        } else {
            "model"
        };
        let query = template
            .replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", &format!("{label}=\"{MODEL}\""))
            .replace("<<.GroupBy>>", label);
        let values = prometheus.by(&query, label);
        assert!(values.contains_key(MODEL), "{query}: {values:?}");
    }
}

/// An unknown profile in `LLM_METRICS_NAMING` stops the demo at start, with the error
/// that names the profiles; nothing is served under a default.
#[test]
fn the_demo_exits_on_an_unknown_naming_profile() {
    let output = std::process::Command::new(process::example("inference_server"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env("LLM_METRICS_NAMING", "llm,vlm")
        .output()
        .expect("run inference_server");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            r#"invalid environment variable LLM_METRICS_NAMING: "llm,vlm" is not a comma-separated list of naming profiles (llm, vllm, otel)"#
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "it served nothing: {output:?}");
}

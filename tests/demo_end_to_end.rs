//! The demo server under seeded load: /metrics agrees exactly with what the client saw.

use std::process::Command;

use llm_span_testkit::http;
use llm_span_testkit::process::{binary, load_generator, DemoServer};
use llm_span_testkit::prom::scrape;
use serde_json::Value;

const MODELS: [&str; 2] = ["fast", "slow"];

/// The demo's prices, USD per million tokens (cached input at the input price), and the
/// same in picodollars per token: (model, input, output).
const PRICE_FILE: &str = "fast 0.5 - 1.5\nslow 2.25 - 7.125\n";
const PICO_PER_TOKEN: [(&str, u128, u128); 2] =
    [("fast", 500_000, 1_500_000), ("slow", 2_250_000, 7_125_000)];

fn prices() -> String {
    let path = std::env::temp_dir().join(format!("llm-demo-prices-{}.txt", std::process::id()));
    std::fs::write(&path, PRICE_FILE).expect("write the price file");
    path.display().to_string()
}

fn start() -> DemoServer {
    let prices = prices();
    DemoServer::start(&[
        "--prices",
        &prices,
        "--model",
        "fast:0.05:2:8",
        "--model",
        "slow:3:6:2",
        "--error-rate",
        "0.05",
        "--seed",
        "3",
    ])
}

fn load(server: &DemoServer, requests: u64) -> Value {
    let requests = requests.to_string();
    let args = [
        "--requests",
        &requests,
        "--concurrency",
        "8",
        "--seed",
        "11",
        "--abort-share",
        "0.3",
    ];
    serde_json::from_str(&load_generator(server, &args)).expect("summary JSON")
}

#[test]
fn metrics_match_the_client_side_totals() {
    let server = start();
    let summary = load(&server, 80);
    let m = scrape(server.metrics);
    let mut requests = 0.0;
    for model in MODELS {
        let s = &summary["models"][model];
        let n = |field: &str| {
            s[field]
                .as_u64()
                .unwrap_or_else(|| panic!("{model}.{field} in {s}")) as f64
        };
        let counter = |name: &str, labels: &[(&str, &str)]| {
            let mut all = vec![("model", model)];
            all.extend_from_slice(labels);
            m.value(name, &all)
                .unwrap_or_else(|| panic!("no {name}{all:?}"))
        };
        assert_eq!(n("failed"), 0.0, "{s}");
        assert_eq!(n("rejected"), 0.0, "{s}");
        assert_eq!(
            counter("llm_tokens_total", &[("type", "input")]),
            n("input_tokens"),
            "{model} input"
        );
        assert_eq!(
            counter("llm_tokens_total", &[("type", "output")]),
            n("output_tokens"),
            "{model} output"
        );
        assert_eq!(
            counter("llm_requests_total", &[("status", "ok")]),
            n("ok"),
            "{model} ok"
        );
        assert_eq!(
            counter("llm_requests_total", &[("status", "error")]),
            n("error"),
            "{model} error"
        );
        assert_eq!(
            counter("llm_requests_total", &[("status", "cancelled")]),
            n("aborted"),
            "{model} cancelled"
        );
        // Latency describes successful requests; TTFT every request that produced a token
        // (failures happen in prefill, aborts come after at least one token).
        assert_eq!(
            counter("llm_e2e_latency_seconds_count", &[]),
            n("ok"),
            "{model} e2e count"
        );
        assert_eq!(
            counter("llm_ttft_seconds_count", &[]),
            n("ok") + n("aborted"),
            "{model} ttft count"
        );
        assert_eq!(counter("llm_active_requests", &[]), 0.0, "{model} active");
        assert_eq!(counter("llm_queue_depth", &[]), 0.0, "{model} queue depth");
        assert_eq!(
            counter("llm_queue_wait_seconds_count", &[]),
            n("requests"),
            "{model} queue waits"
        );
        requests += n("requests");
    }
    assert_eq!(requests, 80.0);
    // Cost in dollars, exact: the price table times the tokens the client saw.
    let body = http::get(server.metrics, "/metrics").body;
    for (model, input_price, output_price) in PICO_PER_TOKEN {
        let s = &summary["models"][model];
        let tokens = |field: &str| u128::from(s[field].as_u64().expect("tokens"));
        let pico = tokens("input_tokens") * input_price + tokens("output_tokens") * output_price;
        let (whole, fraction) = (pico / 1_000_000_000_000, pico % 1_000_000_000_000);
        let usd = format!("{whole}.{fraction:012}");
        let usd = usd.trim_end_matches('0').trim_end_matches('.');
        let line = format!("llm_cost_usd_total{{model=\"{model}\"}} {usd}\n");
        assert!(body.contains(&line), "{line:?} not in\n{body}");
    }
    assert!(
        summary["models"]["fast"]["aborted"].as_u64() > Some(0),
        "the load aborts some streams"
    );
    let mean_ttft = |model| {
        m.value("llm_ttft_seconds_sum", &[("model", model)])
            .expect("sum")
            / m.value("llm_ttft_seconds_count", &[("model", model)])
                .expect("count")
    };
    assert!(
        mean_ttft("slow") > mean_ttft("fast"),
        "slow {} vs fast {}",
        mean_ttft("slow"),
        mean_ttft("fast")
    );
    assert_eq!(m.sum("llm_layer_anomalies_total", &[]), 0.0);
}

#[test]
fn a_fixed_seed_reproduces_the_token_totals() {
    let first = load(&start(), 30);
    let second = load(&start(), 30);
    for model in MODELS {
        for field in ["input_tokens", "output_tokens", "ok", "error", "aborted"] {
            assert_eq!(
                first["models"][model][field], second["models"][model][field],
                "{model}.{field}"
            );
        }
    }
}

/// Progress lines on stderr only when asked for (stderr is a pipe here, not a terminal),
/// never with `--quiet`; the summary on stdout comes either way.
#[test]
fn the_load_generator_reports_progress_only_when_asked() {
    let server = start();
    let target = format!("http://{}", server.api);
    let run = |extra: &[&str]| {
        let output = Command::new(binary("llm-span-testkit", "load-generator"))
            .args(["--target", &target, "--requests", "20", "--json"])
            .args(extra)
            .output()
            .expect("run load-generator");
        assert!(output.status.success(), "{output:?}");
        let summary: Value = serde_json::from_slice(&output.stdout).expect("summary JSON");
        let total = |field: &str| -> u64 {
            MODELS
                .iter()
                .map(|m| summary["models"][m][field].as_u64().unwrap_or(0))
                .sum()
        };
        assert_eq!(total("requests"), 20, "{summary}");
        let errors = total("error") + total("rejected") + total("failed");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8");
        (stderr, errors, total("aborted"))
    };
    assert_eq!(
        run(&[]).0,
        "",
        "nothing extra when stderr is not a terminal"
    );
    assert_eq!(run(&["--progress", "--quiet"]).0, "", "--quiet wins");
    let (progress, errors, aborted) = run(&["--progress"]);
    let last = progress.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("load-generator: 20 requests done, ")
            && last.contains(" req/s, ")
            && last.ends_with(&format!(" {errors} errors, {aborted} aborted")),
        "{progress}"
    );
}

#[test]
fn bad_requests_get_clear_errors_and_are_counted() {
    let server = start();
    let post = |body: &str| {
        let response = http::request(
            server.api,
            "POST",
            "/v1/completions",
            &[("Content-Type", "application/json")],
            Some(body),
        );
        (response.status, response.body)
    };
    let cases = [
        ("{not json", 400, "invalid_request"),
        (r#"{"prompt":"hi"}"#, 400, "missing field \\\"model\\\""),
        (r#"{"model":"fast","prompt":7}"#, 400, "must be a string"),
        (
            r#"{"model":"fast","prompt":"hi","max_tokens":0}"#,
            400,
            "max_tokens",
        ),
        (
            r#"{"model":"gpt-unknown","prompt":"hi"}"#,
            404,
            "model_not_found",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, text) = post(body);
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
        let _: Value = serde_json::from_str(&text).expect("errors are JSON");
    }
    let long_prompt = "word ".repeat(5000);
    let (got, text) = post(&format!(r#"{{"model":"fast","prompt":"{long_prompt}"}}"#));
    assert_eq!(got, 413, "{text}");
    assert!(text.contains("prompt_too_long"));
    assert_eq!(http::get(server.api, "/v1/completions").status, 405);
    assert_eq!(http::get(server.api, "/nowhere").status, 404);

    // Still serving.
    let (got, text) = post(r#"{"model":"fast","prompt":"hello there","max_tokens":4}"#);
    assert_eq!(got, 200, "{text}");
    let http::Response {
        status: got,
        body: text,
        ..
    } = http::get(server.api, "/v1/models");
    assert_eq!(got, 200);
    assert!(
        text.contains("\"fast\"") && text.contains("\"slow\""),
        "{text}"
    );

    let m = scrape(server.metrics);
    // Unusable model names never become labels: they count under "unknown".
    assert_eq!(
        m.value(
            "llm_requests_total",
            &[("model", "unknown"), ("status", "error")]
        ),
        Some(5.0)
    );
    assert_eq!(
        m.value(
            "llm_requests_total",
            &[("model", "fast"), ("status", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("llm_requests_total", &[("model", "fast"), ("status", "ok")]),
        Some(1.0)
    );
    assert!(m
        .label_values("llm_requests_total", "model")
        .iter()
        .all(|v| v != "gpt-unknown"));
    // Rejected prompts were never processed: their tokens do not count.
    assert_eq!(
        m.value("llm_tokens_total", &[("model", "fast"), ("type", "input")]),
        Some(2.0)
    );
}

//! From a slow time-to-first-token bucket to the request's trace, live: Prometheus 2.42
//! with exemplar storage scrapes the demo, a client sends requests in traces of its own
//! (`traceparent`), and the exemplars Prometheus stores name exactly those traces, the
//! slow model's above 2 s.
//!
//! Needs Debian's `prometheus` package (see `llm_span_testkit::tools`).

use std::collections::HashSet;
use std::time::Duration;

use llm_span_testkit::http;
use llm_span_testkit::process::{unix_time, wait_for, DemoServer};
use llm_span_testkit::prometheus::{encode, scrape_config, Prometheus};
use llm_span_testkit::tools;
use serde_json::Value;

fn now() -> f64 {
    unix_time().as_secs_f64()
}

/// A trace id of the client's own, distinct per request.
fn trace_id(i: usize) -> String {
    format!(
        "{:016x}{:016x}",
        0x5eed_0000_0000_0000_u64 + i as u64,
        now().to_bits()
    )
}

/// A prompt the prefix cache has never seen: every request pays its whole prefill.
fn prompt(i: usize, words: usize) -> String {
    (0..words)
        .map(|w| format!("w{i}x{w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn exemplars_lead_from_slow_buckets_to_the_clients_traces() {
    if !tools::require("prometheus") {
        return;
    }
    let started = now();
    // 100-word prompts: about 3 s of prefill on "slow", well under 10 ms on "fast".
    let server = DemoServer::start(&[
        "--model",
        "fast:0.05:1:8",
        "--model",
        "slow:30:1:8",
        "--error-rate",
        "0",
    ]);
    let config = scrape_config(&[server.metrics], &[]);
    let prometheus = Prometheus::start(&config, &["--enable-feature=exemplar-storage"]);

    let requests: Vec<(String, &str)> = (0..12)
        .map(|i| (trace_id(i), if i % 3 == 0 { "slow" } else { "fast" }))
        .collect();
    let api = server.api;
    let answered: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(i, (trace, model))| {
                scope.spawn(move || {
                    let body = serde_json::json!({
                        "model": model,
                        "prompt": prompt(i, 100),
                        "max_tokens": 3,
                    })
                    .to_string();
                    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
                    let response = http::request(
                        api,
                        "POST",
                        "/v1/completions",
                        &[
                            ("traceparent", &traceparent),
                            ("Content-Type", "application/json"),
                        ],
                        Some(&body),
                    );
                    assert_eq!(response.status, 200, "{}", response.body);
                    response.header("traceparent").unwrap_or("").to_owned()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    // The server runs each request in the client's trace, with a span of its own.
    for ((trace, _), traceparent) in requests.iter().zip(&answered) {
        assert!(
            traceparent.starts_with(&format!("00-{trace}-")),
            "{traceparent}"
        );
        assert!(
            !traceparent.contains("00f067aa0ba902b7"),
            "a span of the server's own"
        );
    }
    let sent: HashSet<&str> = requests.iter().map(|(trace, _)| trace.as_str()).collect();

    // Exemplars of both models, once a scrape after the last request is stored.
    let query = |metric: &str| -> Vec<Value> {
        let path = format!(
            "/api/v1/query_exemplars?query={}&start={started}&end={}",
            encode(metric),
            now() + 1.0
        );
        let response = prometheus.get(&path);
        assert_eq!(response["status"], "success", "{response}");
        response["data"].as_array().cloned().unwrap_or_default()
    };
    let by_model = |series: &[Value], model: &str| -> Vec<(String, f64)> {
        series
            .iter()
            .filter(|s| s["seriesLabels"]["model"] == model)
            .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                let trace = e["labels"]["trace_id"].as_str().unwrap_or("").to_owned();
                let value = e["value"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (trace, value)
            })
            .collect()
    };
    let ttft = wait_for(Duration::from_secs(30), || {
        let series = query("llm_ttft_seconds_bucket");
        let complete =
            !by_model(&series, "slow").is_empty() && !by_model(&series, "fast").is_empty();
        complete.then_some(series)
    })
    .expect("Prometheus stored exemplars of both models");
    let slow = by_model(&ttft, "slow");
    let fast = by_model(&ttft, "fast");
    for (trace, value) in slow.iter().chain(&fast) {
        assert!(
            sent.contains(trace.as_str()),
            "exemplar of a trace nobody sent: {trace}"
        );
        assert!(value.is_finite(), "{value}");
    }
    for (trace, value) in &slow {
        assert!(*value > 2.0, "slow model's exemplar {trace} at {value} s");
    }
    for (_, value) in &fast {
        assert!(*value < 2.0, "{value}");
    }
    // Latency exemplars too: the path from an end-to-end latency panel.
    let e2e = query("llm_e2e_latency_seconds_bucket");
    assert!(by_model(&e2e, "slow")
        .iter()
        .all(|(t, v)| sent.contains(t.as_str()) && *v > 2.0));
    assert!(!by_model(&e2e, "fast").is_empty());
}

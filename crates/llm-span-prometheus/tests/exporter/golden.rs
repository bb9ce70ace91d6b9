//! A full body of a fixed scenario, pinned in both formats (`tests/golden/`): the layer's
//! families with and without series, the cost in dollars, request gauges of pending
//! label sets, exemplars, the application's counters, gauges and histograms, escaped
//! labels and HELP text. The independent parsers check the same bodies.

use llm_span_layer::catalog;
use llm_span_layer::exemplar::{with_trace, TraceContext};
use llm_span_prometheus::{ExporterBuilder, MetricsHandle};
use metrics::{Key, Label, Level, Metadata, Recorder};

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
    Key::from_parts(name, labels)
}

fn scenario() -> MetricsHandle {
    let (recorder, handle) = ExporterBuilder::new()
        .with_global_label("service", "chat")
        .with_buckets("app_job_seconds", &[0.5, 1.0, 2.5])
        .build()
        .expect("recorder");
    let meta = Metadata::new("golden", Level::INFO, None);
    let pending = Metadata::new(catalog::PENDING_GAUGE_TARGET, Level::INFO, None);
    for (model, status, n) in [("m-b", "ok", 5), ("m-a", "ok", 3), ("m-a", "error", 1)] {
        let labels = [("model", model), ("status", status)];
        recorder
            .register_counter(&key(catalog::REQUESTS_TOTAL, &labels), &meta)
            .increment(n);
    }
    let trace =
        TraceContext::from_hex("4bf92f3577b34da6a3ce929d0e0e4736", Some("00f067aa0ba902b7"));
    let ttft = recorder.register_histogram(&key(catalog::TTFT_SECONDS, &[("model", "m-a")]), &meta);
    with_trace(trace, || ttft.record(0.3));
    ttft.record(1.5);
    recorder
        .register_histogram(&key(catalog::TTFT_SECONDS, &[("model", "m-b")]), &meta)
        .record(0.05);
    recorder
        .register_counter(
            &key(catalog::COST_PICO_USD_TOTAL, &[("model", "m-a")]),
            &meta,
        )
        .increment(2_500_000_000_000);
    let gauge = |name, model, meta: &Metadata<'_>, value| {
        recorder
            .register_gauge(&key(name, &[("model", model)]), meta)
            .set(value);
    };
    gauge(catalog::ACTIVE_REQUESTS, "m-a", &meta, 2.0);
    gauge(catalog::ACTIVE_REQUESTS, "m-b", &meta, 0.0);
    // Pending label sets: shown while not 0 only.
    gauge(catalog::QUEUE_DEPTH, "m-p", &pending, 0.0);
    gauge(catalog::QUEUE_DEPTH, "m-q", &pending, 1.0);
    recorder.describe_counter(
        "app_jobs_total".into(),
        None,
        "Jobs \"run\" \\ here.\nSecond line.".into(),
    );
    recorder
        .register_counter(&key("app_jobs_total", &[("queue", "b")]), &meta)
        .increment(7);
    recorder
        .register_counter(&key("app_jobs_total", &[("queue", "a\"x\\y\nz")]), &meta)
        .absolute(9);
    recorder
        .register_gauge(&key("app_temperature", &[]), &meta)
        .set(21.5);
    recorder
        .register_gauge(&key("app_ratio", &[("k", "v")]), &meta)
        .set(1.0 / 3.0);
    let job = recorder.register_histogram(&key("app_job_seconds", &[("queue", "a")]), &meta);
    job.record(0.2);
    job.record(3.0);
    recorder
        .register_histogram(&key("app_other_seconds", &[]), &meta)
        .record(0.01);
    recorder
        .register_counter(&key("app_no_suffix", &[]), &meta)
        .increment(1);
    handle
}

/// The body without what moves by itself: process metrics (feature `process`), the
/// filter gauge (the process-wide level, which other tests move) and exemplar times.
fn fixed(body: &str) -> String {
    let mut out = String::new();
    let mut moving = false;
    for line in body.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            let name = rest.split(' ').next().unwrap_or("");
            moving = name.starts_with("process_") || name == catalog::REQUEST_SPANS_ENABLED;
        }
        if moving && line != "# EOF" {
            continue;
        }
        match line.split_once(" # {") {
            Some((sample, exemplar)) => {
                let (exemplar, time) = exemplar.rsplit_once(' ').expect("exemplar time");
                let time: f64 = time.parse().expect("exemplar time");
                assert!(time > 1.7e9, "{line}");
                out.push_str(&format!("{sample} # {{{exemplar} TIME\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The pinned body `name`; with `LLM_SPAN_BLESS=1`, `body` is written there first (after
/// an intended change of the output, to review in the diff).
fn golden(name: &str, body: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("LLM_SPAN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_fixed_scenario_renders_the_pinned_bodies() {
    let handle = scenario();
    let text = handle.render();
    let (content_type, openmetrics) = handle.render_negotiated(Some(OPENMETRICS));
    assert_eq!(content_type, llm_span_prometheus::OPENMETRICS_CONTENT_TYPE);
    let (text_fixed, openmetrics_fixed) = (fixed(&text), fixed(&openmetrics));
    assert!(
        text_fixed == golden("text.txt", &text_fixed),
        "the text body changed:\n{text_fixed}"
    );
    assert!(
        openmetrics_fixed == golden("openmetrics.txt", &openmetrics_fixed),
        "the OpenMetrics body changed:\n{openmetrics_fixed}"
    );
    // The whole bodies, moving parts included, pass the independent parsers; promtool's
    // only words are its lints of the application's own choices.
    if let Some(outcome) = llm_span_testkit::promtool::check_metrics(&text) {
        let output = outcome.output();
        let mut lints: Vec<&str> = output.lines().map(str::trim).collect();
        lints.sort_unstable();
        assert_eq!(
            (outcome.code, lints),
            (
                3,
                vec![
                    "app_job_seconds no help text",
                    "app_no_suffix counter metrics should have \"_total\" suffix",
                    "app_no_suffix no help text",
                    "app_other_seconds no help text",
                    "app_ratio no help text",
                    "app_temperature no help text",
                ]
            ),
            "{output}"
        );
    }
    if let Some(parsed) = llm_span_testkit::openmetrics::parse(&openmetrics) {
        assert_eq!(parsed["types"]["app_jobs"], "counter");
        assert_eq!(parsed["types"]["llm_ttft_seconds"], "histogram");
        assert_eq!(parsed["types"]["app_no_suffix"], "unknown");
    }
}

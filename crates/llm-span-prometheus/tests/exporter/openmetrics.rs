//! OpenMetrics 1.0 over real HTTP when the scraper asks for it, checked by an
//! independent parser (the Python `prometheus-client` package); exemplars on the
//! buckets of the latency histograms; the text format 0.0.4 unchanged otherwise.

use llm_span_layer::{catalog, LlmSpanLayer};
use llm_span_prometheus::{buckets, ExporterBuilder, CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE};
use llm_span_testkit::http::get_with;
use llm_span_testkit::{openmetrics, prom, promtool};
use metrics::{Key, Label, Recorder};
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

use crate::support::{hold_max_level, loopback, own_process_metrics, META};

/// What Prometheus 2.42 sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const TRACES: [&str; 3] = [
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "0af7651916cd43dd8448eb211c80319c",
    "b7ad6b7169203331b7ad6b7169203331",
];

#[test]
fn prometheus_gets_openmetrics_with_exemplars_and_curl_the_text_format() {
    // Two scrapes, compared sample for sample below.
    let _level = hold_max_level();
    let (recorder, server) = loopback()
        .with_global_label("service", "chat")
        .spawn()
        .expect("exporter");
    // A user's own counter without `_total`: OpenMetrics can only call it `unknown`.
    let events = metrics::Recorder::register_counter(
        &recorder,
        &metrics::Key::from_name("my_events"),
        &META,
    );
    events.increment(3);
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .build()
        .expect("layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for (i, trace) in TRACES.iter().enumerate() {
            let request = tracing::info_span!(
                "generate",
                model = "m",
                tokens_in = 10u64,
                tokens_out = Empty,
                trace_id = *trace
            );
            drop(tracing::info_span!(parent: &request, "queue"));
            request.in_scope(|| tracing::info!(first_token = true));
            request.record("tokens_out", 2 + i as u64);
        }
        // An untraced request.
        drop(tracing::info_span!(
            "generate",
            model = "other",
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
    });
    let addr = server.local_addr();

    let response = get_with(addr, "/metrics", &[("Accept", PROMETHEUS_ACCEPT)]);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some(OPENMETRICS_CONTENT_TYPE)
    );
    let body = &response.body;
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE llm_requests counter\n"), "{body}");
    let Some(parsed) = openmetrics::parse(body) else {
        return;
    };
    assert_eq!(parsed["types"]["llm_requests"], "counter");
    assert_eq!(parsed["types"]["llm_ttft_seconds"], "histogram");
    assert_eq!(parsed["types"]["llm_active_requests"], "gauge");
    assert_eq!(parsed["types"]["llm_cost_usd"], "counter");
    assert_eq!(parsed["types"]["my_events"], "unknown");
    let exemplars = parsed["exemplars"].as_array().expect("exemplars");
    let traced_in = |histogram: &str| -> Vec<String> {
        exemplars
            .iter()
            .filter(|e| e["sample"] == format!("{histogram}_bucket"))
            .map(|e| {
                e["exemplar"]["trace_id"]
                    .as_str()
                    .expect("trace_id")
                    .to_owned()
            })
            .collect()
    };
    for histogram in [
        "llm_ttft_seconds",
        "llm_e2e_latency_seconds",
        "llm_queue_wait_seconds",
    ] {
        let traced = traced_in(histogram);
        assert!(!traced.is_empty(), "{histogram} has exemplars: {body}");
        assert!(
            traced.iter().all(|t| TRACES.contains(&t.as_str())),
            "{traced:?}"
        );
    }
    assert!(traced_in("llm_tokens_per_second").is_empty());
    for exemplar in exemplars {
        // On a series with the global label, in a bucket that holds its value.
        assert_eq!(exemplar["labels"]["service"], "chat");
        assert_eq!(exemplar["labels"]["model"], "m");
        let le = exemplar["labels"]["le"].as_str().expect("le");
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().expect("le")
        };
        assert!(
            exemplar["value"].as_f64().expect("value") <= bound,
            "{exemplar}"
        );
        assert!(exemplar["timestamp"].as_f64().expect("timestamp") > 1.7e9);
    }

    // curl and text-format scrapers: 0.0.4, no exemplars, promtool-clean, same samples.
    let text = get_with(addr, "/metrics", &[("Accept", "*/*")]);
    assert_eq!(text.header("content-type"), Some(CONTENT_TYPE));
    assert!(!text.body.contains(" # {"), "no exemplars in 0.0.4");
    assert!(!text.body.contains("# EOF"));
    // promtool lints the user's counter (no `_total`, no help): check the rest.
    let ours: String = text
        .body
        .lines()
        .filter(|l| !l.contains("my_events"))
        .map(|l| format!("{l}\n"))
        .collect();
    promtool::assert_clean(&ours);
    // Sample lines (exemplars cut off), the process metrics aside, which move.
    let samples = |body: &str| -> Vec<String> {
        let mut lines: Vec<String> = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
            .map(|l| l.split(" # ").next().unwrap_or(l).to_owned())
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        samples(&text.body),
        samples(body),
        "the same samples either way"
    );
    server.shutdown();
}

/// The families a render left out because their names clash, as it counts them.
fn clashes(text: &str) -> Option<f64> {
    prom::series(text).get("llm_exporter_name_clashes").copied()
}

#[test]
fn an_application_s_own_process_metrics_are_rendered_once_and_win() {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    // What the metrics-process crate registers through `metrics`.
    recorder.describe_counter(
        "process_cpu_seconds_total".into(),
        None,
        "The application's CPU time.".into(),
    );
    recorder
        .register_counter(&Key::from_name("process_cpu_seconds_total"), &META)
        .absolute(7);
    for (name, value) in [
        ("process_start_time_seconds", 1.5),
        ("process_resident_memory_bytes", 2.5),
        ("process_open_fds", 3.5),
    ] {
        recorder.describe_gauge(name.into(), None, "The application's.".into());
        recorder
            .register_gauge(&Key::from_name(name), &META)
            .set(value);
    }
    let text = handle.render();
    let series = prom::series(&text);
    for (name, value) in [
        ("process_cpu_seconds_total", 7.0),
        ("process_start_time_seconds", 1.5),
        ("process_resident_memory_bytes", 2.5),
        ("process_open_fds", 3.5),
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{text}"
        );
        assert_eq!(series.get(name), Some(&value), "{name}");
    }
    // The exporter's own four readings are what was left out.
    let left_out = if cfg!(feature = "process") { 4.0 } else { 0.0 };
    assert_eq!(clashes(&text), Some(left_out));
    promtool::assert_clean(&text);
    let (_, body) = handle.render_negotiated(Some(PROMETHEUS_ACCEPT));
    if let Some(parsed) = openmetrics::parse(&body) {
        assert_eq!(parsed["types"]["process_cpu_seconds"], "counter");
        assert_eq!(parsed["types"]["process_open_fds"], "gauge");
    }
}

#[test]
fn application_names_that_clash_are_left_out_by_rule_and_counted() {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let counter = |name: &'static str, value: u64| {
        recorder.describe_counter(name.into(), None, "Application.".into());
        recorder
            .register_counter(&Key::from_name(name), &META)
            .absolute(value);
    };
    let gauge = |name: &'static str, value: f64| {
        recorder.describe_gauge(name.into(), None, "Application.".into());
        recorder
            .register_gauge(&Key::from_name(name), &META)
            .set(value);
    };
    // OpenMetrics names the counter's family `app_jobs`, like the gauge: the gauge,
    // first in name order, stays.
    counter("app_jobs_total", 1);
    gauge("app_jobs", 2.0);
    // A histogram's sample names are taken too.
    recorder.describe_histogram("app_wait_seconds".into(), None, "Application.".into());
    recorder
        .register_histogram(&Key::from_name("app_wait_seconds"), &META)
        .record(0.5);
    gauge("app_wait_seconds_count", 3.0);
    gauge("app_wait_seconds_bucket", 3.0);
    // So is a counter's `_created`: the gauge comes first in name order.
    counter("app_done_total", 4);
    gauge("app_done_created", 5.0);
    // The layer's families come first, whatever their names' order.
    gauge("llm_requests", 6.0);
    // And the exporter's count of clashes is its own.
    gauge("llm_exporter_name_clashes", 7.0);
    for (format, accept) in [("text", "*/*"), ("OpenMetrics", PROMETHEUS_ACCEPT)] {
        let (_, body) = handle.render_negotiated(Some(accept));
        for kept in [
            "# TYPE app_jobs gauge\n",
            "# TYPE app_wait_seconds histogram\n",
            "app_wait_seconds_count 1\n",
            "app_done_created 5\n",
            "# TYPE llm_exporter_name_clashes gauge\nllm_exporter_name_clashes 6\n",
        ] {
            assert_eq!(body.matches(kept).count(), 1, "{format}: {kept} in {body}");
        }
        for left_out in [
            "app_jobs_total 1",
            "app_wait_seconds_count 3",
            "app_wait_seconds_bucket 3",
            "app_done_total",
            "llm_requests 6",
            "llm_exporter_name_clashes 7",
        ] {
            assert!(!body.contains(left_out), "{format}: {left_out} in {body}");
        }
    }
    let text = handle.render();
    promtool::assert_clean(&text);
    assert_eq!(clashes(&text), Some(6.0));
    let (_, body) = handle.render_negotiated(Some(PROMETHEUS_ACCEPT));
    if let Some(parsed) = openmetrics::parse(&body) {
        assert_eq!(parsed["types"]["app_jobs"], "gauge");
        assert_eq!(parsed["types"]["app_done_created"], "gauge");
        assert_eq!(parsed["types"]["llm_requests"], "counter");
    }
}

#[test]
fn consecutive_renders_of_unchanged_metrics_are_byte_identical() {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    // The application's own process metrics, which stay put (the exporter's move).
    own_process_metrics(&recorder);
    let labelled = |name: &str, value: &str| {
        Key::from_parts(name.to_owned(), vec![Label::new("k", value.to_owned())])
    };
    for i in (0..40).rev() {
        let value = format!("{i:02}");
        recorder
            .register_counter(&labelled("app_events_total", &value), &META)
            .increment(1);
        recorder
            .register_gauge(&labelled("app_level", &value), &META)
            .set(1.0);
        recorder
            .register_histogram(&labelled("app_seconds", &value), &META)
            .record(0.5);
        recorder
            .register_histogram(&labelled(catalog::TTFT_SECONDS, &value), &META)
            .record(0.5);
    }
    for accept in ["*/*", PROMETHEUS_ACCEPT] {
        // `llm_layer_request_spans_enabled` reads the process-wide maximum level, which the
        // other tests of this binary move while they run: it is no unchanged metric here.
        let render = || {
            let (_, body) = handle.render_negotiated(Some(accept));
            body.lines()
                .filter(|line| !line.starts_with("llm_layer_request_spans_enabled "))
                .fold(String::new(), |body, line| body + line + "\n")
        };
        let (first, second) = (render(), render());
        assert!(
            first == second,
            "two renders differ:\n{first}\n----\n{second}"
        );
        // Series in label order; a histogram's lines together, buckets in `le` order.
        let gauges: Vec<&str> = first
            .lines()
            .filter(|l| l.starts_with("app_level{"))
            .collect();
        let expected: Vec<String> = (0..40)
            .map(|i| format!("app_level{{k=\"{i:02}\"}} 1"))
            .collect();
        assert_eq!(gauges, expected);
        for (histogram, bounds) in [
            ("app_seconds", buckets::DEFAULT),
            (catalog::TTFT_SECONDS, buckets::TTFT_SECONDS),
        ] {
            let lines: Vec<&str> = first
                .lines()
                .filter(|l| l.starts_with(histogram))
                .map(|l| l.split(" # ").next().unwrap_or(l))
                .collect();
            let mut expected = Vec::new();
            for i in 0..40 {
                for bound in bounds {
                    let count = u8::from(*bound >= 0.5);
                    expected.push(format!(
                        "{histogram}_bucket{{k=\"{i:02}\",le=\"{bound}\"}} {count}"
                    ));
                }
                expected.push(format!("{histogram}_bucket{{k=\"{i:02}\",le=\"+Inf\"}} 1"));
                expected.push(format!("{histogram}_sum{{k=\"{i:02}\"}} 0.5"));
                expected.push(format!("{histogram}_count{{k=\"{i:02}\"}} 1"));
            }
            assert_eq!(lines, expected, "{histogram}");
        }
    }
}

//! OpenMetrics 1.0 over real HTTP when the scraper asks for it, checked by an
//! independent parser (the Python `prometheus-client` package); exemplars on the
//! buckets of the latency histograms; the text format 0.0.4 unchanged otherwise.

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::{ExporterBuilder, CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE};
use llm_span_testkit::http::get_with;
use llm_span_testkit::{openmetrics, promtool};
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

/// What Prometheus 2.42 sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const TRACES: [&str; 3] = [
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "0af7651916cd43dd8448eb211c80319c",
    "b7ad6b7169203331b7ad6b7169203331",
];

#[test]
fn prometheus_gets_openmetrics_with_exemplars_and_curl_the_text_format() {
    let (recorder, server) = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .with_global_label("service", "chat")
        .spawn()
        .expect("exporter");
    // A user's own counter without `_total`: OpenMetrics can only call it `unknown`.
    let events = metrics::Recorder::register_counter(
        &recorder,
        &metrics::Key::from_name("my_events"),
        &metrics::Metadata::new("test", metrics::Level::INFO, None),
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

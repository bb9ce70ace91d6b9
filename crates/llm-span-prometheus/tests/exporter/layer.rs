//! The layer driving the recorder, scraped over HTTP: exact values, histogram shape,
//! promtool, and counters under concurrent scrapes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use llm_span_layer::catalog;
use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::{buckets, ExporterBuilder, ExporterHandle, MetricsRecorder};
use llm_span_testkit::http::get;
use llm_span_testkit::prom::{self, Scrape};
use llm_span_testkit::promtool;
use tracing::field::Empty;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

use crate::support::loopback;

fn dispatch(recorder: MetricsRecorder) -> Dispatch {
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .build()
        .expect("layer");
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

fn start() -> (Dispatch, ExporterHandle) {
    let (recorder, server) = loopback()
        .with_global_label("service", "chat")
        .spawn()
        .expect("exporter starts");
    (dispatch(recorder), server)
}

/// A successful request: queue, first token, 5 output tokens, finish reason.
fn ok_request(model: &str) {
    let span = tracing::info_span!(
        "generate",
        model = model,
        tokens_in = 10_u64,
        tokens_out = Empty
    );
    let _enter = span.enter();
    {
        let queue = tracing::info_span!("queue");
        let _queued = queue.enter();
    }
    tracing::info!(first_token = true);
    span.record("tokens_out", 5_u64);
    tracing::info!(finish_reason = "stop");
}

fn failed_request(model: &str) {
    let span = tracing::info_span!(
        "generate",
        model = model,
        tokens_in = 10_u64,
        tokens_out = Empty
    );
    let _enter = span.enter();
    tracing::error!(error = "engine crashed");
}

fn cancelled_request(model: &str) {
    let span = tracing::info_span!(
        "generate",
        model = model,
        tokens_in = 10_u64,
        tokens_out = Empty
    );
    let _enter = span.enter();
}

/// Checks every histogram family: buckets exactly the preset plus `+Inf`, cumulative,
/// `+Inf` equal to `_count`; and that no family is a summary.
fn assert_histograms_well_formed(text: &str) {
    let families = Scrape::parse_or_panic(text).types;
    assert!(
        !families.values().any(|kind| kind == "summary"),
        "a family rendered as summary: {families:?}"
    );
    let samples = prom::series(text);
    for (family, kind) in &families {
        if kind != "histogram" {
            continue;
        }
        let preset = buckets::preset(family).unwrap_or(buckets::DEFAULT);
        // Group bucket lines by their labels without `le`.
        let mut by_series: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        for (series, value) in &samples {
            let Some(rest) = series.strip_prefix(&format!("{family}_bucket{{")) else {
                continue;
            };
            let labels: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            let le = labels
                .iter()
                .find_map(|l| l.strip_prefix("le=\""))
                .map(|v| v.trim_end_matches('"'))
                .expect("le label");
            let others: Vec<&str> = labels
                .iter()
                .copied()
                .filter(|l| !l.starts_with("le="))
                .collect();
            by_series
                .entry(others.join(","))
                .or_default()
                .push((le.parse().expect("le is a number"), *value));
        }
        for (labels, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (last_le, inf) = *buckets.last().expect("buckets");
            assert!(
                last_le.is_infinite(),
                "{family}{{{labels}}} lacks le=\"+Inf\""
            );
            let bounds: Vec<f64> = buckets[..buckets.len() - 1].iter().map(|b| b.0).collect();
            assert_eq!(bounds, preset, "{family} buckets");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}} buckets are not cumulative"
            );
            let count_key = if labels.is_empty() {
                format!("{family}_count")
            } else {
                format!("{family}_count{{{labels}}}")
            };
            assert_eq!(
                samples.get(&count_key),
                Some(&inf),
                "{family}{{{labels}}} +Inf != _count"
            );
        }
    }
}

/// Every catalog family has HELP (the catalog's text) and the right TYPE; the cost in
/// picodollars is served in dollars, under its own name and help.
fn assert_catalog_complete(text: &str) {
    let families = Scrape::parse_or_panic(text).types;
    for def in catalog::METRICS {
        let kind = def.kind.as_str();
        if def.name == catalog::COST_PICO_USD_TOTAL {
            assert!(!text.contains(def.name), "no picodollar series");
            assert_eq!(
                families.get("llm_cost_usd_total").map(String::as_str),
                Some(kind)
            );
            assert_eq!(
                text.matches(
                    "# HELP llm_cost_usd_total Cost of the tokens of priced models, in US dollars"
                )
                .count(),
                1
            );
            continue;
        }
        assert_eq!(
            families.get(def.name).map(String::as_str),
            Some(kind),
            "{}",
            def.name
        );
        let help = format!("# HELP {} {}\n", def.name, def.help);
        assert_eq!(text.matches(&help).count(), 1, "HELP of {}", def.name);
    }
}

#[test]
fn fresh_recorder_passes_promtool_and_describes_every_family() {
    let (_recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let text = handle.render();
    assert_catalog_complete(&text);
    // No request series before the first request: only the process, the check that
    // request spans can reach the layer, and no family left out for a name clash.
    let series = prom::series(&text);
    assert!(
        series.keys().all(|k| k.starts_with("process_")
            || k == "llm_layer_request_spans_enabled"
            || k == "llm_exporter_name_clashes"),
        "{text}"
    );
    assert_eq!(series.get("llm_exporter_name_clashes"), Some(&0.0));
    promtool::assert_clean(&text);
}

#[test]
fn workload_scrape_is_exact_and_passes_promtool() {
    let (dispatch, server) = start();
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..3 {
            ok_request("m1");
        }
        failed_request("m1");
        cancelled_request("m1");
        ok_request("m2");
    });
    let response = get(server.local_addr(), "/metrics");
    assert_eq!(response.status, 200);
    let text = response.body;
    let s = prom::series(&text);
    let value = |series: &str| {
        *s.get(&prom::series_key(series))
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    };

    assert_eq!(
        value(r#"llm_requests_total{service="chat",model="m1",status="ok"}"#),
        3.0
    );
    assert_eq!(
        value(r#"llm_requests_total{service="chat",model="m1",status="error"}"#),
        1.0
    );
    assert_eq!(
        value(r#"llm_requests_total{service="chat",model="m1",status="cancelled"}"#),
        1.0
    );
    assert_eq!(
        value(r#"llm_requests_total{service="chat",model="m2",status="ok"}"#),
        1.0
    );
    assert_eq!(
        value(r#"llm_tokens_total{service="chat",model="m1",type="input"}"#),
        50.0
    );
    assert_eq!(
        value(r#"llm_tokens_total{service="chat",model="m1",type="output"}"#),
        15.0
    );
    assert_eq!(
        value(r#"llm_finish_reasons_total{service="chat",model="m1",reason="stop"}"#),
        3.0
    );
    assert_eq!(
        value(r#"llm_ttft_seconds_count{service="chat",model="m1"}"#),
        3.0
    );
    assert_eq!(
        value(r#"llm_e2e_latency_seconds_count{service="chat",model="m1"}"#),
        3.0
    );
    assert_eq!(
        value(r#"llm_time_per_output_token_seconds_count{service="chat",model="m1"}"#),
        3.0
    );
    assert_eq!(
        value(r#"llm_tokens_per_second_count{service="chat",model="m1"}"#),
        3.0
    );
    assert_eq!(
        value(r#"llm_queue_wait_seconds_count{service="chat",model="m1"}"#),
        3.0
    );
    assert_eq!(
        value(r#"llm_active_requests{service="chat",model="m1"}"#),
        0.0
    );
    assert_eq!(value(r#"llm_queue_depth{service="chat",model="m1"}"#), 0.0);
    // In-process requests take far less than a second.
    assert_eq!(
        value(r#"llm_ttft_seconds_bucket{service="chat",model="m1",le="1"}"#),
        3.0
    );
    assert_eq!(
        value(r#"llm_e2e_latency_seconds_bucket{service="chat",model="m1",le="1"}"#),
        3.0
    );

    // Every series carries the global label.
    assert!(s.keys().all(|k| k.contains("service=\"chat\"")), "{text}");
    assert_histograms_well_formed(&text);
    assert_catalog_complete(&text);
    promtool::assert_clean(&text);
}

#[test]
fn histograms_count_every_sample_with_no_upkeep() {
    // Histograms are fixed buckets that need no upkeep (there is none): a render after
    // requests spread over time counts every sample.
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let dispatch = dispatch(recorder);
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..40 {
            ok_request("m");
            thread::sleep(std::time::Duration::from_millis(2));
        }
    });
    thread::sleep(std::time::Duration::from_millis(50));
    let text = handle.render();
    let s = prom::series(&text);
    assert_eq!(
        s.get(r#"llm_ttft_seconds_count{model="m"}"#),
        Some(&40.0),
        "{text}"
    );
    assert_eq!(
        s.get(r#"llm_e2e_latency_seconds_count{model="m"}"#),
        Some(&40.0)
    );
    assert_histograms_well_formed(&text);
}

#[test]
fn counters_never_go_backwards_under_concurrent_scrapes() {
    const EMITTERS: usize = 3;
    const REQUESTS: usize = 200;
    let (dispatch, server) = start();
    let addr = server.local_addr();
    let running = Arc::new(AtomicBool::new(true));

    let scrapers: Vec<_> = (0..3)
        .map(|_| {
            let running = Arc::clone(&running);
            thread::spawn(move || {
                let mut last: HashMap<String, f64> = HashMap::new();
                let mut scrapes = 0;
                while running.load(Ordering::Relaxed) || scrapes < 2 {
                    let response = get(addr, "/metrics");
                    assert_eq!(response.status, 200);
                    for (series, value) in prom::series(&response.body) {
                        let monotonic = series.starts_with("llm_requests_total")
                            || series.starts_with("llm_tokens_total")
                            || series.contains("_count")
                            || series.contains("_bucket");
                        if !monotonic {
                            continue;
                        }
                        if let Some(previous) = last.get(&series) {
                            assert!(
                                value >= *previous,
                                "{series} went from {previous} to {value}"
                            );
                        }
                        last.insert(series, value);
                    }
                    scrapes += 1;
                }
                scrapes
            })
        })
        .collect();

    let emitters: Vec<_> = (0..EMITTERS)
        .map(|_| {
            let dispatch = dispatch.clone();
            thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for _ in 0..REQUESTS {
                        ok_request("concurrent");
                    }
                });
            })
        })
        .collect();
    for emitter in emitters {
        emitter.join().expect("emitter");
    }
    running.store(false, Ordering::Relaxed);
    for scraper in scrapers {
        assert!(scraper.join().expect("scraper") >= 2);
    }

    let s = prom::series(&get(addr, "/metrics").body);
    let total = (EMITTERS * REQUESTS) as f64;
    let value = |series: &str| s.get(&prom::series_key(series)).copied();
    assert_eq!(
        value(r#"llm_requests_total{service="chat",model="concurrent",status="ok"}"#),
        Some(total)
    );
    assert_eq!(
        value(r#"llm_tokens_total{service="chat",model="concurrent",type="output"}"#),
        Some(total * 5.0)
    );
    // Histograms are exact under concurrent scrapes too (fixed buckets: a scrape only
    // reads them).
    assert_eq!(
        value(r#"llm_ttft_seconds_bucket{service="chat",model="concurrent",le="+Inf"}"#),
        Some(total)
    );
    assert_eq!(
        value(r#"llm_ttft_seconds_count{service="chat",model="concurrent"}"#),
        Some(total)
    );
}

#[test]
fn label_sets_only_pending_requests_passed_through_leave_no_series_behind() {
    // The tenant is recorded after the model (known after authentication): the request
    // shows under tenant="unknown" while it waits for it, and that series goes when it
    // is back at 0. Label sets requests bound to stay, at 0 too.
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let layer = LlmSpanLayer::builder()
        .with_label("tenant")
        .with_recorder(recorder)
        .build()
        .expect("layer");
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let scrape = || Scrape::parse_or_panic(&handle.render());
    let active = |scrape: &Scrape, tenant| {
        scrape.value(
            catalog::ACTIVE_REQUESTS,
            &[("model", "m"), ("tenant", tenant)],
        )
    };
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tenant = Empty,
            tokens_in = 1_u64,
            tokens_out = Empty
        );
        let pending = scrape();
        assert_eq!(active(&pending, "unknown"), Some(1.0));
        span.record("tenant", "a");
        span.in_scope(|| tracing::info!(first_token = true));
        let bound = scrape();
        assert_eq!(
            (active(&bound, "unknown"), active(&bound, "a")),
            (None, Some(1.0))
        );
        span.record("tokens_out", 1_u64);
        drop(span);
    });
    let done = scrape();
    assert_eq!(
        (active(&done, "unknown"), active(&done, "a")),
        (None, Some(0.0))
    );
    let depth = done.value(catalog::QUEUE_DEPTH, &[("model", "m"), ("tenant", "a")]);
    assert_eq!(depth, Some(0.0));
    assert_eq!(
        done.value(
            catalog::QUEUE_DEPTH,
            &[("model", "m"), ("tenant", "unknown")]
        ),
        None
    );
    // The families keep their HELP and TYPE whatever they show.
    let text = handle.render();
    assert!(
        text.contains("# TYPE llm_active_requests gauge\n"),
        "{text}"
    );
}

#[test]
fn request_gauges_the_application_sets_itself_show_at_zero() {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    metrics::with_local_recorder(&recorder, || {
        metrics::gauge!("llm_queue_depth", "model" => "x").set(0.0);
        metrics::gauge!("llm_active_requests", "model" => "x").set(3.0);
        metrics::gauge!("app_gauge").set(0.0);
    });
    let scrape = Scrape::parse_or_panic(&handle.render());
    assert_eq!(
        scrape.value(catalog::QUEUE_DEPTH, &[("model", "x")]),
        Some(0.0)
    );
    let active = scrape.value(catalog::ACTIVE_REQUESTS, &[("model", "x")]);
    assert_eq!(active, Some(3.0));
    assert_eq!(scrape.value("app_gauge", &[]), Some(0.0));
}

//! Histograms are exact while they are scraped: threads record requests through the
//! layer while another thread renders flat out; every render has monotone cumulative
//! buckets whose `+Inf` equals `_count`, and at the end every histogram's `_count`
//! equals the request counter.
//!
//! (With metrics-util's sample buffers, which the first release used, a few samples in
//! 100,000 were lost when a render drained a buffer at the moment a writer pushed.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::prom::Scrape;
use tracing_subscriber::prelude::*;

const THREADS: u64 = 4;
const REQUESTS: u64 = 50_000;
const HISTOGRAMS: [&str; 5] = [
    "llm_ttft_seconds",
    "llm_queue_wait_seconds",
    "llm_e2e_latency_seconds",
    "llm_time_per_output_token_seconds",
    "llm_tokens_per_second",
];

/// Checks one render: for each histogram series, buckets ascend by `le`, never
/// decrease, and `+Inf` equals `_count`. Returns the `_count` of each histogram.
fn check(text: &str) -> BTreeMap<String, f64> {
    let scrape = Scrape::parse_or_panic(text);
    let mut counts = BTreeMap::new();
    for histogram in HISTOGRAMS {
        let bucket = format!("{histogram}_bucket");
        let mut buckets: Vec<(f64, f64)> = scrape
            .samples
            .iter()
            .filter(|s| s.name == bucket)
            .map(|s| {
                let le = &s.labels["le"];
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le")
                };
                (bound, s.value)
            })
            .collect();
        if buckets.is_empty() {
            continue;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{histogram} buckets not monotone: {buckets:?}"
        );
        let count = scrape
            .value(&format!("{histogram}_count"), &[("model", "m")])
            .expect("_count");
        let infinity = buckets.last().map(|b| b.1);
        assert_eq!(infinity, Some(count), "{histogram}: +Inf is not _count");
        counts.insert(histogram.to_owned(), count);
    }
    counts
}

#[test]
fn histograms_stay_exact_while_rendered_flat_out() {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .build()
        .expect("layer");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let done = Arc::new(AtomicBool::new(false));
    let renderer = {
        let (handle, done) = (handle.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut renders = 0u64;
            let mut last: BTreeMap<String, f64> = BTreeMap::new();
            while !done.load(Ordering::Acquire) {
                let counts = check(&handle.render());
                for (name, count) in &counts {
                    assert!(
                        last.get(name).is_none_or(|before| before <= count),
                        "{name} went back"
                    );
                }
                last = counts;
                renders += 1;
            }
            renders
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|_| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..REQUESTS {
                        let span = tracing::info_span!(
                            "generate",
                            model = "m",
                            tokens_in = 3u64,
                            tokens_out = 2 + i % 5
                        );
                        drop(tracing::info_span!(parent: &span, "queue"));
                        let _enter = span.enter();
                        tracing::info!(first_token = true);
                    }
                });
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    done.store(true, Ordering::Release);
    let renders = renderer.join().expect("renderer");
    eprintln!(
        "{} requests on {THREADS} threads, {renders} renders checked",
        THREADS * REQUESTS
    );
    assert!(
        renders > 10,
        "the renderer ran alongside ({renders} renders)"
    );

    let text = handle.render();
    let counts = check(&text);
    let requests = Scrape::parse_or_panic(&text)
        .value("llm_requests_total", &[("model", "m"), ("status", "ok")])
        .expect("requests");
    assert_eq!(requests, (THREADS * REQUESTS) as f64);
    assert_eq!(counts.len(), HISTOGRAMS.len());
    for (histogram, count) in counts {
        assert_eq!(count, requests, "{histogram}_count");
    }
}

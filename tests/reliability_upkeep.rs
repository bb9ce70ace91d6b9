//! Nobody scrapes: the layer's histograms are fixed buckets of atomic counters that need
//! no upkeep, so memory stays flat however long the server runs, and every sample is
//! counted. (Its own binary: RSS is per process.)

use std::time::Instant;

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::process::rss_bytes;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

const REQUESTS: u64 = 3_000_000;
const CHUNK: u64 = 100_000;

#[test]
fn memory_stays_bounded_without_scrapes() {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .build()
        .expect("layer");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let run = |from: u64, to: u64| {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in from..to {
                let span = tracing::info_span!(
                    "generate",
                    model = "m",
                    tokens_in = 10u64,
                    tokens_out = Empty
                );
                span.in_scope(|| tracing::info!(first_token = true));
                span.record("tokens_out", 2 + i % 5);
            }
        })
    };
    // Warm up: registrations, allocator pools.
    run(0, CHUNK);
    let before = rss_bytes();
    let started = Instant::now();
    let mut peak = before;
    for chunk in 1..REQUESTS / CHUNK {
        run(chunk * CHUNK, (chunk + 1) * CHUNK);
        peak = peak.max(rss_bytes());
    }
    let elapsed = started.elapsed();
    // 2.9 million requests record 11.6 million histogram samples: kept, they would take
    // at least 88 MiB (8 bytes each). Memory must not grow by a fraction of it.
    let growth = peak.saturating_sub(before);
    eprintln!(
        "{} requests in {elapsed:?} without a scrape: RSS +{} KiB",
        REQUESTS - CHUNK,
        growth >> 10
    );
    assert!(
        growth < 8 << 20,
        "resident memory grew by {growth} bytes without scrapes"
    );
    // Every sample is in the buckets.
    let scrape = llm_span_testkit::prom::Scrape::parse_or_panic(&handle.render());
    for histogram in ["llm_ttft_seconds", "llm_e2e_latency_seconds"] {
        let count = scrape
            .value(&format!("{histogram}_count"), &[("model", "m")])
            .expect("rendered");
        assert_eq!(count, REQUESTS as f64, "{histogram}");
    }
}

//! Exactness under concurrency: threads and a multi-thread runtime run hundreds of
//! thousands of requests (spans created on one thread, recorded and closed on others,
//! futures dropped mid-stream) while another thread scrapes /metrics in a loop.
//!
//! Every scrape parses; no counter goes backwards between scrapes; active requests and
//! queue depth are never negative; afterwards the token and request counters equal
//! what was sent and both gauges are 0.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::prom::scrape;
use tracing::field::Empty;
use tracing::instrument::WithSubscriber;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const MODELS: [&str; 3] = ["alpha", "beta", "gamma"];
/// Requests per thread-driven worker.
const THREAD_REQUESTS: u64 = 60_000;
const THREADS: u64 = 3;
/// Async requests, a third of which are dropped mid-stream.
const TASKS: u64 = 30_000;

#[derive(Default)]
struct Sent {
    input: [AtomicU64; 3],
    output: [AtomicU64; 3],
    ok: [AtomicU64; 3],
    cancelled: [AtomicU64; 3],
}

fn counter_series(scrape: &llm_span_testkit::prom::Scrape) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    for sample in &scrape.samples {
        let family = sample
            .name
            .trim_end_matches("_bucket")
            .trim_end_matches("_count");
        let is_counter = sample.name.ends_with("_total")
            || sample.name.ends_with("_bucket")
            || sample.name.ends_with("_count");
        if is_counter && scrape.types.get(family).is_none_or(|t| t != "gauge") {
            series.insert(format!("{}{:?}", sample.name, sample.labels), sample.value);
        }
    }
    series
}

#[test]
fn counters_stay_exact_and_monotonic_while_scraped() {
    let (recorder, server) = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .spawn()
        .expect("exporter");
    let addr = server.local_addr();
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .build()
        .expect("layer");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let sent = Arc::new(Sent::default());
    let done = Arc::new(AtomicBool::new(false));

    // The scraper: checks every scrape while the load runs.
    let scraper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut last: HashMap<String, f64> = HashMap::new();
            let mut scrapes = 0u64;
            while !done.load(Ordering::Acquire) || scrapes == 0 {
                let scrape = scrape(addr);
                for (series, value) in counter_series(&scrape) {
                    if let Some(previous) = last.get(&series) {
                        assert!(
                            value >= *previous,
                            "{series} went back from {previous} to {value}"
                        );
                    }
                    last.insert(series, value);
                }
                for gauge in ["llm_active_requests", "llm_queue_depth"] {
                    for sample in scrape.matching(gauge, &[]) {
                        assert!(
                            sample.value >= 0.0,
                            "{gauge}{:?} = {}",
                            sample.labels,
                            sample.value
                        );
                    }
                }
                scrapes += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            scrapes
        })
    };

    let started = Instant::now();
    // Threads: each request's span is created here, recorded and closed on a helper thread.
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (dispatch, sent) = (dispatch.clone(), sent.clone());
            s.spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut handoff = Vec::with_capacity(64);
                    for i in 0..THREAD_REQUESTS {
                        let m = ((i + t) % 3) as usize;
                        let input = 1 + i % 17;
                        let span = tracing::info_span!(
                            "generate",
                            model = MODELS[m],
                            tokens_in = input,
                            tokens_out = Empty
                        );
                        sent.input[m].fetch_add(input, Ordering::Relaxed);
                        handoff.push((span, m, i));
                        if handoff.len() == 64 {
                            let batch = std::mem::take(&mut handoff);
                            let sent = sent.clone();
                            std::thread::spawn(move || {
                                for (span, m, i) in batch {
                                    let output = 1 + i % 5;
                                    tracing::info!(parent: &span, first_token = true);
                                    let queue = tracing::info_span!(parent: &span, "queue");
                                    drop(queue);
                                    span.record("tokens_out", output);
                                    sent.output[m].fetch_add(output, Ordering::Relaxed);
                                    sent.ok[m].fetch_add(1, Ordering::Relaxed);
                                }
                            })
                            .join()
                            .expect("closer thread");
                        }
                    }
                    for (span, m, i) in handoff {
                        let output = 1 + i % 5;
                        span.record("tokens_out", output);
                        sent.output[m].fetch_add(output, Ordering::Relaxed);
                        sent.ok[m].fetch_add(1, Ordering::Relaxed);
                    }
                });
            });
        }
        // A multi-thread runtime at the same time: streams, a third dropped mid-stream.
        let (dispatch, sent) = (dispatch.clone(), sent.clone());
        s.spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..TASKS {
                    let (sent, sent_stream) = (sent.clone(), sent.clone());
                    let m = (i % 3) as usize;
                    let cancel = i % 3 == 0;
                    let stream = async move {
                        let sent = sent_stream;
                        let span = tracing::info_span!("generate", model = MODELS[m], tokens_in = 4u64, tokens_out = Empty);
                        sent.input[m].fetch_add(4, Ordering::Relaxed);
                        async {
                            for _ in 0..3 {
                                tracing::info!(tokens_out_delta = 1u64);
                                sent.output[m].fetch_add(1, Ordering::Relaxed);
                                tokio::task::yield_now().await;
                            }
                            if cancel {
                                // Dropped here by the select below, mid-stream.
                                std::future::pending::<()>().await;
                            }
                            tracing::Span::current().record("tokens_out", 3u64);
                        }
                        .instrument(span)
                        .await;
                    };
                    tasks.spawn(async move {
                        tokio::select! {
                            _ = stream => sent.ok[m].fetch_add(1, Ordering::Relaxed),
                            _ = tokio::time::sleep(Duration::from_millis(20)) => sent.cancelled[m].fetch_add(1, Ordering::Relaxed),
                        };
                    }.with_subscriber(dispatch.clone()));
                    if tasks.len() > 500 {
                        tasks.join_next().await;
                    }
                }
                while tasks.join_next().await.is_some() {}
            });
        });
    });
    let elapsed = started.elapsed();
    done.store(true, Ordering::Release);
    let scrapes = scraper.join().expect("scraper found no violation");

    let m = scrape(addr);
    for (index, model) in MODELS.iter().enumerate() {
        let value = |name: &str, labels: &[(&str, &str)]| {
            let mut all = vec![("model", *model)];
            all.extend_from_slice(labels);
            m.value(name, &all)
                .unwrap_or_else(|| panic!("{name}{all:?}"))
        };
        let expect = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
        assert_eq!(
            value("llm_tokens_total", &[("type", "input")]),
            expect(&sent.input[index]),
            "{model} input"
        );
        assert_eq!(
            value("llm_tokens_total", &[("type", "output")]),
            expect(&sent.output[index]),
            "{model} output"
        );
        assert_eq!(
            value("llm_requests_total", &[("status", "ok")]),
            expect(&sent.ok[index]),
            "{model} ok"
        );
        assert_eq!(
            value("llm_requests_total", &[("status", "cancelled")]),
            expect(&sent.cancelled[index]),
            "{model} cancelled"
        );
        assert_eq!(value("llm_active_requests", &[]), 0.0, "{model} active");
        assert_eq!(value("llm_queue_depth", &[]), 0.0, "{model} queue depth");
    }
    let total: f64 = m.sum("llm_requests_total", &[]);
    assert_eq!(total, (THREADS * THREAD_REQUESTS + TASKS) as f64);
    assert_eq!(m.sum("llm_layer_anomalies_total", &[]), 0.0);
    assert!(scrapes >= 5, "only {scrapes} scrapes ran during the load");
    eprintln!(
        "{} requests on {} threads + a 2-worker runtime in {elapsed:?}, {scrapes} scrapes checked",
        THREADS * THREAD_REQUESTS + TASKS,
        THREADS * 2
    );
    server.shutdown();
}

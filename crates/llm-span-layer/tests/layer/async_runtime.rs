//! `#[instrument]` on async fns, polled many times on a multi-thread runtime,
//! with spans closed on other threads and futures dropped mid-stream.

use std::sync::Arc;
use std::time::Duration;

use crate::support::Expect::{Counter, Gauge};
use crate::support::{assert_all_close, Harness};
use tracing::field::Empty;
use tracing::instrument::WithSubscriber;
use tracing::Instrument;

#[tracing::instrument(skip_all, fields(model = %model, tokens_in = prompt_tokens, tokens_out = Empty))]
async fn generate(
    model: String,
    prompt_tokens: u64,
    output_tokens: u64,
    clock: Arc<quanta::Mock>,
) -> u64 {
    // Every yield is an exit and a re-enter of the span: busy time, not request time.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    clock.increment(Duration::from_millis(100));
    tracing::info!(first_token = true);
    for _ in 1..output_tokens {
        tokio::task::yield_now().await;
        tracing::info!(tokens_out_delta = 1u64);
    }
    tracing::Span::current().record("tokens_out", output_tokens);
    output_tokens
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn async_requests_on_many_threads_are_counted_exactly() {
    let h = Harness::new();
    let rt = runtime();
    let total: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let model = if i % 2 == 0 { "even" } else { "odd" }.to_owned();
                let fut = generate(model, 10 + i, 1 + i % 7, h.clock.clone());
                tokio::spawn(fut.with_subscriber(h.dispatch.clone()))
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("task");
        }
        total
    });
    let m = h.snapshot();
    let expected_output: u64 = (0..200u64).map(|i| 1 + i % 7).sum();
    assert_eq!(total, expected_output);
    let input = |model| m.counter("llm_tokens_total", &[("model", model), ("type", "input")]);
    let output = |model| m.counter("llm_tokens_total", &[("model", model), ("type", "output")]);
    let even_input: u64 = (0..200u64).filter(|i| i % 2 == 0).map(|i| 10 + i).sum();
    let odd_input: u64 = (0..200u64).filter(|i| i % 2 == 1).map(|i| 10 + i).sum();
    assert_eq!((input("even"), input("odd")), (even_input, odd_input));
    assert_eq!(output("even") + output("odd"), expected_output);
    m.assert_series(&[
        Counter("llm_requests_total{model=even,status=ok}", 100),
        Counter("llm_requests_total{model=odd,status=ok}", 100),
        Gauge("llm_active_requests{model=even}", 0.0),
        Gauge("llm_active_requests{model=odd}", 0.0),
    ]);
    assert_eq!(
        m.histogram("llm_ttft_seconds", &[("model", "even")]).len(),
        100
    );
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn ttft_is_wall_time_not_busy_time() {
    let h = Harness::new();
    let rt = runtime();
    let clock = h.clock.clone();
    rt.block_on(
        async move {
            let span = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
            async {
                // Time passes while the future is parked, outside any poll of the span.
                let parked = tokio::spawn(async move { clock.increment(Duration::from_secs(2)) });
                parked.await.expect("task");
                tracing::info!(first_token = true);
                tracing::info!(finish_reason = "stop");
            }
            .instrument(span)
            .await;
        }
        .with_subscriber(h.dispatch.clone()),
    );
    let m = h.snapshot();
    assert_all_close(&m.histogram("llm_ttft_seconds", &[("model", "m")]), &[2.0]);
}

#[test]
fn a_span_closed_on_another_thread_is_finished_there() {
    let h = Harness::new();
    let span = h.run(|| {
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 4u64,
            tokens_out = Empty
        );
        span.in_scope(|| tracing::info!(first_token = true));
        span
    });
    let during = h.snapshot();
    assert_eq!(during.gauge("llm_active_requests", &[("model", "m")]), 1.0);
    std::thread::spawn(move || {
        span.record("tokens_out", 2u64);
        drop(span);
    })
    .join()
    .expect("thread");
    let m = h.snapshot();
    m.assert_series(&[
        // A gauge's change since the last snapshot.
        Gauge("llm_active_requests{model=m}", -1.0),
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Counter("llm_tokens_total{model=m,type=output}", 2),
    ]);
}

#[tracing::instrument(skip_all, fields(model = "m", tokens_in = 5u64, tokens_out = Empty))]
async fn stream_forever(started: tokio::sync::mpsc::Sender<()>) {
    let queue = tracing::info_span!("queue");
    async { tokio::task::yield_now().await }
        .instrument(queue)
        .await;
    tracing::info!(first_token = true);
    let mut sent = false;
    loop {
        tracing::info!(tokens_out_delta = 1u64);
        if !sent {
            sent = true;
            let _ = started.send(()).await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn dropping_a_future_mid_stream_cancels_the_request_and_resets_gauges() {
    let h = Harness::new();
    let rt = runtime();
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..50 {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1);
            let task = tokio::spawn(stream_forever(tx).with_subscriber(h.dispatch.clone()));
            rx.recv().await.expect("stream started");
            handles.push(task);
        }
        for task in &handles {
            task.abort();
        }
        for task in handles {
            assert!(task.await.expect_err("aborted").is_cancelled());
        }
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=cancelled}", 50),
        Counter("llm_requests_total{model=m,status=ok}", 0),
        Gauge("llm_active_requests{model=m}", 0.0),
        Gauge("llm_queue_depth{model=m}", 0.0),
        Counter("llm_tokens_total{model=m,type=input}", 250),
    ]);
    assert_eq!(
        m.histogram("llm_queue_wait_seconds", &[("model", "m")])
            .len(),
        50
    );
    assert!(m.counter("llm_tokens_total", &[("model", "m"), ("type", "output")]) >= 50);
}

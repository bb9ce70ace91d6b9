//! Which recorder the layer writes to, and a recorder that calls back into `tracing`: a
//! layer without a recorder of its own uses `metrics::with_local_recorder`; a recorder
//! that itself logs through `tracing` while the layer calls it must not hang the
//! application (events it emits from inside the layer are ignored).

use std::sync::mpsc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::debugging::DebuggingRecorder;
use tracing::field::Empty;

use crate::support::{dispatch, Metrics};

#[test]
fn local_recorders_receive_the_metrics() {
    let dispatch = dispatch(llm_span_layer::LlmSpanLayer::new());
    let first = DebuggingRecorder::new();
    let second = DebuggingRecorder::new();
    let run = |n: usize| {
        tracing::dispatcher::with_default(&dispatch, || {
            for _ in 0..n {
                drop(tracing::info_span!(
                    "generate",
                    model = "m",
                    tokens_in = 1u64,
                    tokens_out = 1u64
                ));
            }
        })
    };
    metrics::with_local_recorder(&first, || run(2));
    metrics::with_local_recorder(&second, || run(3));
    let requests = |recorder: &DebuggingRecorder| {
        Metrics::of(&recorder.snapshotter()).sum("llm_requests_total")
    };
    assert_eq!(requests(&first), 2);
    assert_eq!(requests(&second), 3);
}

/// Logs a contract event and an error on every registration, then delegates.
struct ChattyRecorder(DebuggingRecorder);

impl Recorder for ChattyRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        tracing::error!("describing a counter");
        self.0.describe_counter(key, unit, description)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description)
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description)
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        tracing::info!(first_token = true, tokens_out_delta = 1u64);
        tracing::error!(metric = key.name(), "registering");
        self.0.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let span = tracing::info_span!("generate", model = "inner", tokens_in = 1u64);
        drop(span);
        self.0.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, metadata)
    }
}

#[test]
fn a_recorder_that_logs_does_not_deadlock_the_layer() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let layer = llm_span_layer::LlmSpanLayer::builder()
            .with_recorder(ChattyRecorder(recorder))
            .build()
            .expect("layer");
        tracing::dispatcher::with_default(&dispatch(layer), || {
            // The series is bound (and the recorder called) while this span is entered
            // and its state locked.
            let span = tracing::info_span!(
                "generate",
                model = Empty,
                tokens_in = 3u64,
                tokens_out = Empty
            );
            let _entered = span.enter();
            span.record("model", "m");
            tracing::info!(first_token = true);
            span.record("tokens_out", 2u64);
        });
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the instrumented code finished instead of hanging");
    let requests = Metrics::of(&snapshotter).sum_of("llm_requests_total", &[("model", "m")]);
    assert_eq!(
        requests, 1,
        "the user's request is counted; the recorder's own events are not"
    );
}

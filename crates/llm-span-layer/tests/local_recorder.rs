//! A layer without a recorder of its own uses `metrics::with_local_recorder`.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tracing_subscriber::prelude::*;

#[test]
fn local_recorders_receive_the_metrics() {
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(llm_span_layer::LlmSpanLayer::new()),
    );
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
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == "llm_requests_total")
            .map(|(.., value)| match value {
                DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum::<u64>()
    };
    assert_eq!(requests(&first), 2);
    assert_eq!(requests(&second), 3);
}

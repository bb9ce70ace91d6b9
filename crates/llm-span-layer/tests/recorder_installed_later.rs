//! The global recorder may be installed after the layer and after the first spans.
//! (Its own test binary: a process has one global recorder.)

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tracing_subscriber::prelude::*;

fn request() {
    drop(tracing::info_span!(
        "generate",
        model = "m",
        tokens_in = 3u64,
        tokens_out = 2u64
    ));
}

#[test]
fn handles_follow_the_recorder_installed_later() {
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(llm_span_layer::LlmSpanLayer::new()),
    );
    // Before any recorder: metrics go to the no-op recorder, nothing breaks.
    tracing::dispatcher::with_default(&dispatch, request);

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("first global recorder");
    tracing::dispatcher::with_default(&dispatch, || {
        request();
        request();
    });

    let ok = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| {
            key.key().name() == "llm_requests_total"
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "status" && l.value() == "ok")
        })
        .map(|(.., value)| value);
    assert_eq!(ok, Some(DebugValue::Counter(2)));
}

//! The global recorder may be installed after the layer and after the first spans.
//! (In the process binary, last: a process has one global recorder, installed once.)

use std::collections::HashMap;

use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use tracing_subscriber::prelude::*;

fn request() {
    drop(tracing::info_span!(
        "generate",
        model = "m",
        tokens_in = 3u64,
        tokens_out = 2u64
    ));
}

pub(crate) fn handles_follow_the_recorder_installed_later() {
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(llm_span_layer::LlmSpanLayer::new()),
    );
    // Before any recorder: metrics go to the no-op recorder, nothing breaks.
    tracing::dispatcher::with_default(&dispatch, request);
    // A request open while the recorder is installed moves to it at its first token.
    let open = tracing::dispatcher::with_default(&dispatch, || {
        tracing::info_span!("generate", model = "m", tokens_in = 3u64, tokens_out = 2u64)
    });

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("first global recorder");
    tracing::dispatcher::with_default(&dispatch, || {
        request();
        request();
        open.in_scope(|| tracing::info!(first_token = true));
    });
    let values = snapshot(&snapshotter);
    assert_eq!(values["llm_requests_total"], "Counter(2)");
    assert_eq!(
        values["llm_active_requests"], "Gauge(1.0)",
        "the open request"
    );

    tracing::dispatcher::with_default(&dispatch, || drop(open));
    let values = snapshot(&snapshotter);
    assert_eq!(
        values["llm_requests_total"], "Counter(1)",
        "the one open at install"
    );
    assert_eq!(values["llm_active_requests"], "Gauge(-1.0)");
}

/// What changed since the last snapshot, by name, of model `m`'s series (`ok` requests).
fn snapshot(snapshotter: &Snapshotter) -> HashMap<String, String> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            key.key().labels().all(|l| {
                (l.key(), l.value()) == ("model", "m") || (l.key(), l.value()) == ("status", "ok")
            })
        })
        .map(|(key, _, _, value)| (key.key().name().to_owned(), format!("{value:?}")))
        .collect()
}

//! The global recorder may be installed after the layer and after the first spans.
//! (In the process binary, last: a process has one global recorder, installed once.)

use metrics_util::debugging::DebuggingRecorder;

use crate::support::Expect::{Counter, Gauge};
use crate::support::{dispatch, Metrics};

fn request() {
    drop(tracing::info_span!(
        "generate",
        model = "m",
        tokens_in = 3u64,
        tokens_out = 2u64
    ));
}

pub(crate) fn handles_follow_the_recorder_installed_later() {
    let dispatch = dispatch(llm_span_layer::LlmSpanLayer::new());
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
    let m = Metrics::of(&snapshotter);
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", 2),
        // The request still open.
        Gauge("llm_active_requests{model=m}", 1.0),
    ]);

    tracing::dispatcher::with_default(&dispatch, || drop(open));
    let m = Metrics::of(&snapshotter);
    m.assert_series(&[
        // The one that was open at install, now finished.
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Gauge("llm_active_requests{model=m}", -1.0),
    ]);
}

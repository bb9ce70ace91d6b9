//! Applications that quiet their logs: a per-layer filter keeps every request counted,
//! a global one hides request spans from every layer, and `request_spans_enabled` says so.
//!
//! In the process binary: the maximum level that `request_spans_enabled` reads is
//! process-wide, the highest of every live subscriber's.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

use crate::support::Expect::Counter;
use crate::support::{recording_layer, Metrics};

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("logs").clone()).expect("utf-8 logs")
    }
}

fn serve_requests() {
    for i in 0..3u64 {
        let span = tracing::info_span!("generate", model = "m", tokens_in = 10 + i, tokens_out = 4);
        let _enter = span.enter();
        tracing::info!(first_token = true, "first token");
        tracing::info!("an info log line");
    }
    tracing::warn!("the only line the logs keep");
}

pub(crate) fn per_layer_filters_keep_requests_and_global_ones_hide_them() {
    // The per-layer form: logs at warn, every request counted.
    let (metrics_layer, metrics) = recording_layer();
    let logs = Logs::default();
    let writer = logs.clone();
    let layered = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_filter(EnvFilter::new("warn")),
        )
        .with(metrics_layer);
    tracing::subscriber::with_default(layered, || {
        assert!(llm_span_layer::request_spans_enabled());
        serve_requests();
    });
    let m = Metrics::of(&metrics);
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", 3),
        Counter("llm_tokens_total{model=m,type=input}", 33),
        Counter("llm_tokens_total{model=m,type=output}", 12),
    ]);
    assert_eq!(m.histogram("llm_ttft_seconds", &[("model", "m")]).len(), 3);
    let text = logs.text();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("the only line the logs keep"), "{text}");

    // The same filter given globally: the logs are the same, the metrics are gone, and
    // the check says why.
    let (metrics_layer, metrics) = recording_layer();
    let logs = Logs::default();
    let writer = logs.clone();
    let global = tracing_subscriber::registry()
        .with(EnvFilter::new("warn"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false),
        )
        .with(metrics_layer);
    tracing::subscriber::with_default(global, || {
        assert!(!llm_span_layer::request_spans_enabled());
        serve_requests();
    });
    let m = Metrics::of(&metrics);
    assert_eq!(m.sum("llm_requests_total"), 0);
    assert_eq!(m.sum("llm_tokens_total"), 0);
    assert_eq!(m.series("llm_ttft_seconds"), Vec::new());
    assert_eq!(logs.text().lines().count(), 1);
}

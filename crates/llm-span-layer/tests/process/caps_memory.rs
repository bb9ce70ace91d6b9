//! Caps at their maxima cost what the layer holds, not what it could hold. (It reads
//! this process's peak resident memory: the first step of the process binary, before any
//! other test of it has allocated.)
//!
//! The first release allocated its tables for the whole cap up front: 1.69 GB of
//! resident memory for these 40 requests.

use llm_span_layer::{LlmSpanLayer, LlmSpanLayerBuilder};
use metrics_util::debugging::DebuggingRecorder;

use crate::support::{dispatch, requests_across_models_and_tenants};

/// A field of `/proc/self/status` in bytes (Linux); 0 elsewhere.
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix(field))?;
            line.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

pub(crate) fn memory_follows_the_values_seen_not_the_caps() {
    let before = status_bytes("VmHWM:");
    let layer = LlmSpanLayer::builder()
        .with_recorder(DebuggingRecorder::new())
        .with_label("tenant")
        .with_max_models(LlmSpanLayerBuilder::MAX_MODELS)
        .with_max_label_values(LlmSpanLayerBuilder::MAX_LABEL_VALUES)
        .with_max_series(LlmSpanLayerBuilder::MAX_SERIES)
        .build()
        .expect("caps at their maxima are valid");
    tracing::dispatcher::with_default(&dispatch(layer), requests_across_models_and_tenants);
    let peak = status_bytes("VmHWM:").saturating_sub(before);
    eprintln!("peak resident memory grew by {} KiB", peak >> 10);
    assert!(
        peak < 16 << 20,
        "the layer took {peak} bytes for 40 requests"
    );
}

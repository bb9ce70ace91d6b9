//! Cardinality attack: a million distinct model names and random tenant values.
//! The series stay at the caps plus one overflow series, every overflowed label is
//! counted, and resident memory stays bounded. (Its own binary: RSS is per process.)

use std::collections::HashSet;
use std::time::Instant;

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::demo::Rng;
use llm_span_testkit::process::rss_bytes;
use llm_span_testkit::prom::Scrape;
use tracing_subscriber::prelude::*;

const REQUESTS: u64 = 1_000_000;
const MAX_MODELS: usize = 100;
const MAX_TENANTS: usize = 100;
/// Below models x tenants, so the series cap is reached too.
const MAX_SERIES: usize = 150;
/// Resident memory the attack may add (measured: about 4 MiB).
const RSS_BOUND_BYTES: u64 = 16 << 20;

#[test]
fn a_million_model_names_cannot_explode_the_series() {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .with_label("tenant")
        .with_max_models(MAX_MODELS)
        .with_max_label_values(MAX_TENANTS)
        .with_max_series(MAX_SERIES)
        .build()
        .expect("layer");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));

    // The same caps, applied in the same order, tell how many labels must overflow.
    let (mut models, mut tenants, mut series) = (HashSet::new(), HashSet::new(), HashSet::new());
    let (mut label_overflows, mut series_overflows) = (0u64, 0u64);
    let mut rng = Rng::new(99);
    let before = rss_bytes();
    let mut peak = before;
    let started = Instant::now();
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..REQUESTS {
            let model = format!("attacker-model-{i}");
            let tenant = format!("t{}", rng.below(5_000));
            let model_key = if models.len() < MAX_MODELS || models.contains(&model) {
                models.insert(model.clone());
                Some(model.clone())
            } else {
                label_overflows += 1;
                None
            };
            let tenant_key = if tenants.len() < MAX_TENANTS || tenants.contains(&tenant) {
                tenants.insert(tenant.clone());
                Some(tenant.clone())
            } else {
                label_overflows += 1;
                None
            };
            let key = (model_key, tenant_key);
            if series.len() < MAX_SERIES || series.contains(&key) {
                series.insert(key);
            } else {
                series_overflows += 1;
            }
            let span = tracing::info_span!(
                "generate",
                model = model.as_str(),
                tenant = tenant.as_str(),
                tokens_in = 1u64,
                tokens_out = 1u64
            );
            drop(span);
            if i % 100_000 == 0 {
                peak = peak.max(rss_bytes());
            }
        }
    });
    let elapsed = started.elapsed();
    peak = peak.max(rss_bytes());
    let m = Scrape::parse_or_panic(&handle.render());
    let request_series = m.matching("llm_e2e_latency_seconds_count", &[]).count();
    // Past the series cap, requests go to the all-overflow series, which the label
    // caps may already have created.
    let overflow_is_new = series_overflows > 0 && !series.contains(&(None, None));
    assert_eq!(request_series, series.len() + usize::from(overflow_is_new));
    assert!(
        request_series <= MAX_SERIES + 1,
        "at most the cap plus the overflow series"
    );
    assert_eq!(m.sum("llm_requests_total", &[]), REQUESTS as f64);
    assert_eq!(
        m.value("llm_layer_anomalies_total", &[("reason", "label_overflow")]),
        Some(label_overflows as f64)
    );
    assert_eq!(
        m.value(
            "llm_layer_anomalies_total",
            &[("reason", "series_overflow")]
        ),
        Some(series_overflows as f64)
    );
    assert!(m.label_values("llm_requests_total", "model").len() <= MAX_MODELS + 1);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "{REQUESTS} requests in {elapsed:?}: {request_series} series, {label_overflows} label and {series_overflows} series overflows, RSS +{} MiB (bound {} MiB)",
        growth >> 20,
        RSS_BOUND_BYTES >> 20
    );
    assert!(
        growth < RSS_BOUND_BYTES,
        "resident memory grew by {growth} bytes"
    );
}

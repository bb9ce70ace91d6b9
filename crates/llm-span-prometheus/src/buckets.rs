//! Histogram bucket presets for every histogram of [`llm_span_layer::catalog`].
//!
//! Each preset is a list of upper bounds (`le`), strictly increasing; Prometheus adds
//! `+Inf` itself. A threshold used in an alert or SLO should be a boundary, so that
//! "share of requests under X" is exact rather than interpolated by
//! `histogram_quantile`. Override a preset with
//! [`ExporterBuilder::with_buckets`](crate::ExporterBuilder::with_buckets).

use llm_span_layer::catalog;

use crate::error::ExporterError;

/// `llm_ttft_seconds`: the OpenTelemetry GenAI time-to-first-token boundaries with
/// vLLM's long tail, plus `2.0`, the threshold of the shipped p99 TTFT alert.
pub const TTFT_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0,
];

/// `llm_e2e_latency_seconds`: 0.01 s doubling to 2621.44 s (the OpenTelemetry request
/// duration boundaries extended to long generations), plus the round numbers 1, 2, 5,
/// 10, 30 and 60 s so that latency alerts and SLOs can use them as exact thresholds.
pub const E2E_LATENCY_SECONDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.28, 2.0, 2.56, 5.0, 5.12, 10.0, 10.24, 20.48,
    30.0, 40.96, 60.0, 81.92, 163.84, 327.68, 655.36, 1310.72, 2621.44,
];

/// `llm_time_per_output_token_seconds`: the OpenTelemetry GenAI boundaries, with 1 ms
/// and 2.5 ms and 5 ms below them for fast decoders.
pub const TIME_PER_OUTPUT_TOKEN_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// `llm_tokens_per_second`: decode throughput per request, 1 to 5000 tokens/s.
pub const TOKENS_PER_SECOND: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0,
    5000.0,
];

/// `llm_queue_wait_seconds`: 1 ms to 10 min.
pub const QUEUE_WAIT_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0,
];

/// Buckets for histograms that are not in the catalog (your own `metrics::histogram!`
/// calls): the Prometheus client libraries' defaults, so that no histogram renders as
/// a summary. Override with
/// [`ExporterBuilder::with_default_buckets`](crate::ExporterBuilder::with_default_buckets).
pub const DEFAULT: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every preset, by metric name.
pub const PRESETS: &[(&str, &[f64])] = &[
    (catalog::TTFT_SECONDS, TTFT_SECONDS),
    (catalog::E2E_LATENCY_SECONDS, E2E_LATENCY_SECONDS),
    (
        catalog::TIME_PER_OUTPUT_TOKEN_SECONDS,
        TIME_PER_OUTPUT_TOKEN_SECONDS,
    ),
    (catalog::TOKENS_PER_SECOND, TOKENS_PER_SECOND),
    (catalog::QUEUE_WAIT_SECONDS, QUEUE_WAIT_SECONDS),
];

/// The preset for `metric`, if it has one.
pub fn preset(metric: &str) -> Option<&'static [f64]> {
    PRESETS
        .iter()
        .find(|(name, _)| *name == metric)
        .map(|(_, buckets)| *buckets)
}

/// Checks that `buckets` can serve as histogram boundaries for `metric`: some, finite,
/// strictly increasing and not negative (every histogram here has a `_sum`, which
/// OpenMetrics forbids next to negative buckets).
pub(crate) fn validate(metric: &str, buckets: &[f64]) -> Result<(), ExporterError> {
    let fail = |reason| {
        Err(ExporterError::InvalidBuckets {
            metric: metric.to_owned(),
            reason,
        })
    };
    if buckets.is_empty() {
        return fail("no boundaries given");
    }
    if buckets.iter().any(|b| !b.is_finite()) {
        return fail("boundaries must be finite (+Inf is added automatically)");
    }
    if buckets.windows(2).any(|w| w[0] >= w[1]) {
        return fail("boundaries must be strictly increasing");
    }
    if buckets.iter().any(|b| *b < 0.0) {
        return fail(
            "boundaries must not be negative: OpenMetrics allows no _sum with negative buckets",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_span_layer::catalog::{MetricKind, METRICS};

    #[test]
    fn every_catalog_histogram_has_a_preset() {
        for def in METRICS.iter().filter(|d| d.kind == MetricKind::Histogram) {
            assert!(
                preset(def.name).is_some(),
                "histogram {} has no bucket preset: it would render as a summary",
                def.name
            );
        }
    }

    #[test]
    fn presets_name_catalog_histograms_only() {
        for (name, _) in PRESETS {
            let def = catalog::metric(name).expect("preset for a metric outside the catalog");
            assert_eq!(def.kind, MetricKind::Histogram, "{name}");
        }
    }

    #[test]
    fn presets_are_valid() {
        for (name, buckets) in PRESETS.iter().chain([&("default", DEFAULT)]) {
            validate(name, buckets).expect("preset is valid");
        }
    }

    #[test]
    fn alert_thresholds_are_boundaries() {
        assert!(TTFT_SECONDS.contains(&2.0));
        for round in [1.0, 2.0, 5.0, 10.0, 30.0, 60.0] {
            assert!(E2E_LATENCY_SECONDS.contains(&round), "{round}");
        }
        assert_eq!(E2E_LATENCY_SECONDS.first(), Some(&0.01));
        assert_eq!(E2E_LATENCY_SECONDS.last(), Some(&2621.44));
    }

    #[test]
    fn e2e_contains_the_doubling_series() {
        let mut bound = 0.01_f64;
        for _ in 0..19 {
            assert!(
                E2E_LATENCY_SECONDS
                    .iter()
                    .any(|b| (b - bound).abs() < 1e-9 * bound),
                "{bound}"
            );
            bound *= 2.0;
        }
    }

    #[test]
    fn validate_rejects_bad_buckets() {
        let reason = |b: &[f64]| match validate("m", b) {
            Err(ExporterError::InvalidBuckets { metric, reason }) => {
                assert_eq!(metric, "m");
                reason
            }
            other => panic!("{other:?}"),
        };
        assert!(reason(&[]).contains("no boundaries"));
        assert!(reason(&[1.0, f64::INFINITY]).contains("finite"));
        assert!(reason(&[f64::NAN]).contains("finite"));
        assert!(reason(&[1.0, 1.0]).contains("increasing"));
        assert!(reason(&[2.0, 1.0]).contains("increasing"));
        let negative =
            "boundaries must not be negative: OpenMetrics allows no _sum with negative buckets";
        assert_eq!(reason(&[-1.0, 0.0, 1.0]), negative);
        assert_eq!(reason(&[-0.001]), negative);
        assert!(validate("m", &[0.0, 1.0]).is_ok());
    }
}

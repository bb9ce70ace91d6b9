//! Every malformed value is dropped and counted by reason; nothing panics.

use crate::support::Expect::Counter;
use crate::support::Harness;
use tracing::field::Empty;

/// Records `value` as `tokens_in` of a fresh request and returns the anomaly count.
fn tokens_in_anomalies(record: impl FnOnce(&tracing::Span)) -> (u64, u64) {
    let h = Harness::new();
    h.run(|| {
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = Empty,
            tokens_out = 1u64
        );
        record(&span);
    });
    let m = h.snapshot();
    (
        m.anomalies("malformed_value"),
        m.counter("llm_tokens_total", &[("model", "m"), ("type", "input")]),
    )
}

#[test]
fn negative_token_counts() {
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", -5i64);
        }),
        (1, 0)
    );
}

#[test]
fn non_numeric_strings() {
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", "many");
        }),
        (1, 0)
    );
}

#[test]
fn fractional_floats_nan_and_infinity() {
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", 2.5f64);
        }),
        (1, 0)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", f64::NAN);
        }),
        (1, 0)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", f64::INFINITY);
        }),
        (1, 0)
    );
}

#[test]
fn absurdly_large_counts() {
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", u64::MAX);
        }),
        (1, 0)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", u128::MAX);
        }),
        (1, 0)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", 1u64 << 32);
        }),
        (1, 0)
    );
}

#[test]
fn booleans_are_not_counts() {
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", true);
        }),
        (1, 0)
    );
}

#[test]
fn natural_forms_are_accepted() {
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", 7i64);
        }),
        (0, 7)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", 7.0f64);
        }),
        (0, 7)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", "7");
        }),
        (0, 7)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", tracing::field::display(7));
        }),
        (0, 7)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", tracing::field::debug("7"));
        }),
        (0, 7)
    );
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", u64::from(u32::MAX));
        }),
        (0, u64::from(u32::MAX))
    );
}

#[test]
fn a_bad_value_does_not_erase_a_good_one() {
    assert_eq!(
        tokens_in_anomalies(|s| {
            s.record("tokens_in", 9u64);
            s.record("tokens_in", -1i64);
        }),
        (1, 9)
    );
}

#[test]
fn a_missing_model_is_counted_under_unknown() {
    let h = Harness::new();
    h.run(|| {
        drop(tracing::info_span!(
            "generate",
            model = Empty,
            tokens_in = 3u64,
            tokens_out = 2u64
        ));
        drop(tracing::info_span!(
            "generate",
            model = "",
            tokens_in = 3u64,
            tokens_out = 2u64
        ));
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("missing_model"), 2);
    m.assert_series(&[
        Counter("llm_requests_total{model=unknown,status=ok}", 2),
        Counter("llm_tokens_total{model=unknown,type=input}", 6),
    ]);
}

#[test]
fn invalid_label_values_are_overflowed() {
    let h = Harness::new();
    let long = "x".repeat(300);
    h.run(|| {
        drop(tracing::info_span!(
            "generate",
            model = "bad\nname",
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
        drop(tracing::info_span!(
            "generate",
            model = long.as_str(),
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
        drop(tracing::info_span!("generate", model = %long, tokens_in = 1u64, tokens_out = 1u64));
        drop(tracing::info_span!(
            "generate",
            model = 2.5f64,
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("invalid_label"), 4);
    assert_eq!(
        m.counter(
            "llm_requests_total",
            &[("model", "__overflow__"), ("status", "ok")]
        ),
        4
    );
    assert_eq!(
        m.label_values("llm_requests_total", "model"),
        ["__overflow__"]
    );
}

#[test]
fn label_values_with_quotes_are_kept_and_backslashes_refused() {
    let h = Harness::new();
    h.run(|| {
        drop(tracing::info_span!(
            "generate",
            model = "a\"b\\c",
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
        drop(
            tracing::info_span!("generate", model = ?"quoted", tokens_in = 1u64, tokens_out = 1u64),
        );
        drop(tracing::info_span!(
            "generate",
            model = 42u64,
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
    });
    let m = h.snapshot();
    // A backslash renders ambiguously in the text format (`q"x` and `q\"x` alike).
    assert_eq!(
        m.label_values("llm_requests_total", "model"),
        ["42", "__overflow__", "quoted"]
    );
    assert_eq!(m.anomalies("invalid_label"), 1);
    assert_eq!(m.all_anomalies(), 1);
}

#[test]
fn malformed_status_finish_reason_and_gauges() {
    let h = Harness::new();
    h.run(|| {
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 1u64,
            status = Empty,
            finish_reason = Empty
        );
        span.record("status", "sort-of");
        span.record("status", 200u64);
        span.record("finish_reason", 3u64);
        drop(span);
        tracing::info!(gpu_memory_used_bytes = -1i64);
        tracing::info!(gpu_memory_used_bytes = f64::NAN);
        tracing::info!(kv_cache_usage_ratio = 1.5);
        tracing::info!(kv_cache_usage_ratio = "half");
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("malformed_value"), 7);
    assert!(m.series("llm_gpu_memory_used_bytes").is_empty());
    assert!(m.series("llm_kv_cache_usage_ratio").is_empty());
    // The request itself is still counted, as cancelled: it never signalled completion.
    assert_eq!(
        m.counter(
            "llm_requests_total",
            &[("model", "m"), ("status", "cancelled")]
        ),
        1
    );
}

#[test]
fn more_cached_than_input_tokens_is_flagged() {
    let h = Harness::new();
    h.run(|| {
        drop(tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 5u64,
            tokens_cached = 9u64,
            tokens_out = 1u64
        ));
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("token_count_mismatch"), 1);
    // The ratio cannot pass 1.
    assert_eq!(m.gauge("llm_kv_cache_hit_rate", &[("model", "m")]), 1.0);
}

#[test]
fn debug_values_that_fail_to_format_do_not_panic() {
    struct Broken;
    impl std::fmt::Debug for Broken {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            Err(std::fmt::Error)
        }
    }
    let h = Harness::new();
    h.run(|| {
        drop(tracing::info_span!("generate", model = ?Broken, tokens_in = ?Broken, tokens_out = 1u64));
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("malformed_value"), 1);
    assert_eq!(m.anomalies("invalid_label"), 1);
}

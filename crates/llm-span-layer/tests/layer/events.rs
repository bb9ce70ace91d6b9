//! Where events may come from and what repeated or missing events mean.

use crate::support::Expect::{Counter, Gauge, Samples};
use crate::support::Harness;
use tracing::field::Empty;

#[test]
fn first_token_in_a_nested_child_span_reaches_the_request() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 2u64,
            tokens_out = Empty
        );
        let _r = request.enter();
        let decode = tracing::info_span!("decode");
        let _d = decode.enter();
        let step = tracing::info_span!("step", n = 0u64);
        let _s = step.enter();
        h.advance(0.3);
        tracing::info!(first_token = true);
        request.record("tokens_out", 3u64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_ttft_seconds{model=m}", &[0.3]),
        Counter("llm_requests_total{model=m,status=ok}", 1),
    ]);
}

#[test]
fn an_event_with_an_explicit_parent_reaches_that_request() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!("generate", model = "m", tokens_in = 2u64);
        // Not entered: the event names its parent, as code on another task would.
        h.advance(0.2);
        tracing::info!(parent: &request, first_token = true);
        tracing::info!(parent: &request, finish_reason = "stop");
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_ttft_seconds{model=m}", &[0.2]),
        Counter("llm_requests_total{model=m,status=ok}", 1),
    ]);
}

#[test]
fn only_the_first_first_token_event_counts() {
    let h = Harness::new();
    h.run(|| {
        let request =
            tracing::info_span!("generate", model = "m", tokens_in = 2u64, tokens_out = 5u64);
        let _r = request.enter();
        h.advance(0.1);
        tracing::info!(first_token = true);
        h.advance(0.4);
        tracing::info!(first_token = true);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_ttft_seconds{model=m}", &[0.1]),
        // Decode speed runs from the first first token.
        Samples("llm_time_per_output_token_seconds{model=m}", &[0.1]),
    ]);
    assert_eq!(m.anomalies("duplicate_first_token"), 1);
}

#[test]
fn first_token_false_is_not_a_first_token() {
    let h = Harness::new();
    h.run(|| {
        let request =
            tracing::info_span!("generate", model = "m", tokens_in = 2u64, tokens_out = 5u64);
        let _r = request.enter();
        tracing::info!(first_token = false);
    });
    let m = h.snapshot();
    assert!(m
        .histogram("llm_ttft_seconds", &[("model", "m")])
        .is_empty());
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn a_request_without_a_first_token_has_no_ttft() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 2u64,
            tokens_out = Empty
        );
        h.advance(2.0);
        request.record("tokens_out", 8u64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_ttft_seconds{model=m}", &[]),
        Samples("llm_tokens_per_second{model=m}", &[]),
        Samples("llm_e2e_latency_seconds{model=m}", &[2.0]),
        Counter("llm_tokens_total{model=m,type=output}", 8),
    ]);
}

#[test]
fn fields_recorded_after_creation_are_used() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!(
            "generate",
            model = Empty,
            tokens_in = Empty,
            tokens_cached = Empty,
            tokens_out = Empty
        );
        let during = h.snapshot();
        assert_eq!(
            during.gauge("llm_active_requests", &[("model", "unknown")]),
            1.0,
            "active under the labels known so far"
        );
        assert!(
            during.series("llm_requests_total").is_empty(),
            "nothing counted before the labels are bound"
        );
        request.record("model", "late");
        request.record("tokens_in", 7u64);
        request.record("tokens_cached", 2u64);
        request.record("tokens_out", 3u64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_tokens_total{model=late,type=input}", 7),
        Counter("llm_tokens_total{model=late,type=output}", 3),
        Counter("llm_cached_input_tokens_total{model=late}", 2),
        Counter("llm_requests_total{model=late,status=ok}", 1),
        Gauge("llm_active_requests{model=late}", 0.0),
    ]);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn the_model_may_change_until_the_first_token_and_not_after() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!(
            "generate",
            model = "first",
            tokens_in = 1u64,
            tokens_out = 1u64
        );
        request.record("model", "second");
        request.in_scope(|| tracing::info!(first_token = true));
        request.record("model", "third");
        // The same value again is no change.
        request.record("model", "second");
    });
    let m = h.snapshot();
    assert_eq!(m.label_values("llm_requests_total", "model"), ["second"]);
    assert_eq!(m.anomalies("late_label"), 1);
    assert_eq!(m.all_anomalies(), 1);
}

#[test]
fn token_fields_on_events_apply_to_the_request() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!("generate", model = "m", tokens_in = Empty);
        let _r = request.enter();
        tracing::info!(tokens_in = 12u64, tokens_cached = 4u64, "prompt tokenized");
        tracing::info!(tokens_out = 6u64, finish_reason = "stop");
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_tokens_total{model=m,type=input}", 12),
        Counter("llm_tokens_total{model=m,type=output}", 6),
        Counter("llm_cached_input_tokens_total{model=m}", 4),
    ]);
}

#[test]
fn contract_events_outside_any_request_are_counted() {
    let h = Harness::new();
    h.run(|| {
        tracing::info!(first_token = true);
        let unrelated = tracing::info_span!("http", path = "/");
        unrelated.in_scope(|| tracing::info!(tokens_out_delta = 3u64));
        // Ordinary events, errors included, are not the layer's business outside requests.
        tracing::info!(user = "x", "hello");
        tracing::error!("disk full");
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("event_outside_request"), 2);
    assert_eq!(m.all_anomalies(), 2);
    assert!(m.series("llm_requests_total").is_empty());
}

#[test]
fn a_second_completion_event_is_counted_and_ignored() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
        let _r = request.enter();
        h.advance(1.0);
        tracing::info!(finish_reason = "stop");
        h.advance(1.0);
        tracing::info!(finish_reason = "stop");
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_e2e_latency_seconds{model=m}", &[1.0]),
        Counter("llm_finish_reasons_total{model=m,reason=stop}", 1),
    ]);
    assert_eq!(m.anomalies("duplicate_completion"), 1);
}

#[test]
fn spans_named_by_configuration_are_requests_without_the_fields() {
    let h = Harness::with(|b| b.with_request_span_name("chat"));
    h.run(|| {
        let request = tracing::info_span!("chat", model = "m");
        request.in_scope(|| tracing::info!(tokens_out = 2u64));
    });
    let m = h.snapshot();
    assert_eq!(
        m.counter("llm_requests_total", &[("model", "m"), ("status", "ok")]),
        1
    );
}

#[test]
fn target_prefixes_restrict_which_spans_are_requests() {
    let h = Harness::with(|b| b.with_target_prefix("inference"));
    h.run(|| {
        drop(tracing::info_span!(target: "other", "generate", model = "a", tokens_in = 1u64, tokens_out = 1u64));
        drop(tracing::info_span!(target: "inference::engine", "generate", model = "b", tokens_in = 1u64, tokens_out = 1u64));
    });
    let m = h.snapshot();
    assert_eq!(m.label_values("llm_requests_total", "model"), ["b"]);
}

#[test]
fn after_the_first_token_only_a_different_label_is_late() {
    let h = Harness::new();
    h.run(|| {
        let request =
            tracing::info_span!("generate", model = "m", tokens_in = 1u64, tokens_out = 1u64);
        request.in_scope(|| tracing::info!(first_token = true));
        // Two changes and one repeat of the bound model: two late labels.
        request.record("model", "other");
        request.record("model", "m");
        request.record("model", "another");
        // An event may name a model but not change it: never late, whatever it names.
        request.in_scope(|| {
            tracing::info!(model = "m", tokens_out = 1u64);
            tracing::info!(model = "elsewhere", tokens_out = 1u64);
        });
    });
    let m = h.snapshot();
    assert_eq!(m.label_values("llm_requests_total", "model"), ["m"]);
    assert_eq!(m.anomalies("late_label"), 2);
}

#[test]
fn a_response_model_that_changes_after_the_first_token_is_late() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!(
            "generate",
            model = Empty,
            gen_ai.response.model = "served",
            tokens_in = 1u64,
            tokens_out = 1u64
        );
        request.in_scope(|| tracing::info!(first_token = true));
        // The request is bound to the response model: repeating it is no change.
        request.record("gen_ai.response.model", "served");
        request.record("gen_ai.response.model", "swapped");
        request.record("gen_ai.response.model", "swapped-again");
    });
    let m = h.snapshot();
    assert_eq!(m.label_values("llm_requests_total", "model"), ["served"]);
    assert_eq!(m.anomalies("late_label"), 2);
}

#[test]
fn a_finish_reason_recorded_on_the_span_completes_the_request() {
    let h = Harness::new();
    h.run(|| {
        // No output-token total and no completion event: the finish reason alone says
        // the request ended normally, so it is not counted as cancelled.
        let request = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 1u64,
            finish_reason = Empty
        );
        request.in_scope(|| tracing::info!(first_token = true));
        request.record("finish_reason", "stop");
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Counter("llm_requests_total{model=m,status=cancelled}", 0),
    ]);
}

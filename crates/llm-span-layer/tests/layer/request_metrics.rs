//! Each metric's exact value for requests driven through the span contract.

use crate::support::Expect::{Absent, Counter, Gauge, GaugeClose, Samples};
use crate::support::{assert_close, dispatch, recording_layer, Harness, Metrics};
use llm_span_layer::{ModelPrice, PriceTable};
use tracing::field::Empty;

fn priced() -> Harness {
    let prices = PriceTable::new().with_model(
        "llama",
        ModelPrice::usd_per_million_tokens(1.0, 2.0)
            .and_then(|p| p.with_cached_input(0.5))
            .expect("valid price"),
    );
    Harness::with(|b| b.with_prices(prices))
}

#[test]
fn a_complete_request_yields_every_request_metric() {
    let h = priced();
    h.run(|| {
        let span = tracing::info_span!(
            "generate",
            model = "llama",
            tokens_in = 100u64,
            tokens_cached = 40u64,
            tokens_out = Empty
        );
        let _guard = span.enter();
        let during = h.snapshot();
        assert_eq!(
            during.gauge("llm_active_requests", &[("model", "llama")]),
            1.0
        );
        // Nothing labelled is counted before the first token binds the labels...
        assert!(during.series("llm_tokens_total").is_empty());
        h.advance(0.25);
        tracing::info!(first_token = true);
        // ...then input tokens count at once, with their cost.
        let bound = h.snapshot();
        bound.assert_series(&[
            Counter("llm_tokens_total{model=llama,type=input}", 100),
            Counter("llm_cached_input_tokens_total{model=llama}", 40),
            // 60 uncached * 1 + 40 cached * 0.5 micro-dollars.
            Counter("llm_cost_pico_usd_total{model=llama}", 80_000_000),
            Samples("llm_ttft_seconds{model=llama}", &[0.25]),
        ]);
        h.advance(1.0);
        span.record("tokens_out", 11u64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=llama,status=ok}", 1),
        Counter("llm_requests_total{model=llama,status=error}", 0),
        Counter("llm_requests_total{model=llama,status=cancelled}", 0),
        Counter("llm_tokens_total{model=llama,type=input}", 0),
        Counter("llm_tokens_total{model=llama,type=output}", 11),
        Counter("llm_cached_input_tokens_total{model=llama}", 0),
        // TTFT was recorded once, before this snapshot.
        Samples("llm_ttft_seconds{model=llama}", &[]),
        Samples("llm_e2e_latency_seconds{model=llama}", &[1.25]),
        // Decode: 10 tokens after the first, in 1 s.
        Samples("llm_time_per_output_token_seconds{model=llama}", &[0.1]),
        Samples("llm_tokens_per_second{model=llama}", &[10.0]),
        // A gauge's change since the last snapshot.
        Gauge("llm_active_requests{model=llama}", -1.0),
        GaugeClose("llm_kv_cache_hit_rate{model=llama}", 0.4),
        // Then 11 out * 2 micro-dollars, when the output tokens count.
        Counter("llm_cost_pico_usd_total{model=llama}", 22_000_000),
        Absent("llm_unpriced_tokens_total{model=llama,type=input}"),
    ]);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn completion_event_sets_the_end_and_finish_reason() {
    let h = Harness::new();
    h.run(|| {
        let span = tracing::info_span!("generate", model = "m", tokens_in = 5u64);
        let _guard = span.enter();
        h.advance(0.5);
        tracing::info!(tokens_out_delta = 1u64);
        h.advance(0.5);
        tracing::info!(tokens_out_delta = 4u64);
        h.advance(1.0);
        tracing::info!(finish_reason = "length");
        // Work after completion (logging, cleanup) does not stretch the latency.
        h.advance(7.0);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Counter("llm_tokens_total{model=m,type=output}", 5),
        Counter("llm_finish_reasons_total{model=m,reason=length}", 1),
        Counter("llm_finish_reasons_total{model=m,reason=stop}", 0),
        // The first streamed token is the first token.
        Samples("llm_ttft_seconds{model=m}", &[0.5]),
        Samples("llm_e2e_latency_seconds{model=m}", &[2.0]),
        Samples("llm_time_per_output_token_seconds{model=m}", &[1.5 / 4.0]),
        Samples("llm_tokens_per_second{model=m}", &[4.0 / 1.5]),
        // No price table: every token is unpriced.
        Counter("llm_unpriced_tokens_total{model=m,type=input}", 5),
        Counter("llm_unpriced_tokens_total{model=m,type=output}", 5),
        Absent("llm_cost_pico_usd_total{model=m}"),
    ]);
}

#[test]
fn streamed_tokens_count_before_the_request_ends() {
    let h = Harness::new();
    h.run(|| {
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 3u64,
            tokens_out = Empty
        );
        let _guard = span.enter();
        tracing::info!(tokens_out_delta = 2u64);
        tracing::info!(tokens_out_delta = 3u64);
        let during = h.snapshot();
        assert_eq!(
            during.counter("llm_tokens_total", &[("model", "m"), ("type", "output")]),
            5
        );
        // The final total agrees with what was streamed: nothing is added twice.
        span.record("tokens_out", 5u64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_tokens_total{model=m,type=output}", 0),
        Counter("llm_requests_total{model=m,status=ok}", 1),
    ]);
    assert_eq!(m.all_anomalies(), 0);
}

/// What a request of model `m` leaves when it streams one delta of `streamed` output
/// tokens and then records a final `tokens_out` of `total`.
fn streamed_then_final_total(streamed: u64, total: u64) -> Metrics {
    let h = Harness::new();
    h.run(|| {
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 3u64,
            tokens_out = Empty
        );
        let _guard = span.enter();
        tracing::info!(tokens_out_delta = streamed);
        span.record("tokens_out", total);
    });
    h.snapshot()
}

#[test]
fn a_final_total_above_the_streamed_tokens_adds_the_difference() {
    let m = streamed_then_final_total(2, 9);
    assert_eq!(
        m.counter("llm_tokens_total", &[("model", "m"), ("type", "output")]),
        9
    );
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn a_final_total_below_the_streamed_tokens_is_an_anomaly() {
    let m = streamed_then_final_total(6, 4);
    assert_eq!(
        m.counter("llm_tokens_total", &[("model", "m"), ("type", "output")]),
        6
    );
    assert_eq!(m.anomalies("token_count_mismatch"), 1);
}

#[test]
fn single_token_requests_have_no_decode_rates() {
    let h = Harness::new();
    h.run(|| {
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 3u64,
            tokens_out = Empty
        );
        let _guard = span.enter();
        h.advance(0.1);
        tracing::info!(first_token = true);
        h.advance(0.1);
        span.record("tokens_out", 1u64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_ttft_seconds{model=m}", &[0.1]),
        Samples("llm_e2e_latency_seconds{model=m}", &[0.2]),
        Samples("llm_time_per_output_token_seconds{model=m}", &[]),
        Samples("llm_tokens_per_second{model=m}", &[]),
    ]);
}

#[test]
fn queue_span_drives_queue_depth_and_wait() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!("generate", model = "m", tokens_in = 3u64);
        let _guard = request.enter();
        let queue = tracing::info_span!("queue");
        let during = h.snapshot();
        assert_eq!(during.gauge("llm_queue_depth", &[("model", "m")]), 1.0);
        h.advance(0.75);
        drop(queue);
        tracing::info!(finish_reason = "stop");
    });
    let m = h.snapshot();
    m.assert_series(&[
        // A gauge's change since the last snapshot.
        Gauge("llm_queue_depth{model=m}", -1.0),
        Samples("llm_queue_wait_seconds{model=m}", &[0.75]),
        // TTFT and latency include the time spent queued.
        Samples("llm_e2e_latency_seconds{model=m}", &[0.75]),
    ]);
}

#[test]
fn a_queue_span_outside_any_request_is_ignored() {
    let h = Harness::new();
    h.run(|| {
        let queue = tracing::info_span!("queue");
        drop(queue);
    });
    let m = h.snapshot();
    assert!(m.series("llm_queue_depth").is_empty());
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn model_revision_feeds_the_info_gauge() {
    let h = Harness::new();
    h.run(|| {
        for revision in ["r1", "r1", "r2"] {
            let span = tracing::info_span!(
                "generate",
                model = "m",
                model_revision = revision,
                tokens_in = 1u64,
                tokens_out = 1u64
            );
            drop(span);
        }
    });
    let m = h.snapshot();
    m.assert_series(&[
        Gauge("llm_model_info{model=m,revision=r2}", 1.0),
        Gauge("llm_model_info{model=m,revision=r1}", 0.0),
        Counter("llm_requests_total{model=m,status=ok}", 3),
    ]);
}

#[test]
fn engine_gauge_events_set_gpu_and_kv_cache_gauges() {
    let h = Harness::new();
    h.run(|| {
        tracing::info!(gpu = 0u64, gpu_memory_used_bytes = 1_000u64);
        tracing::info!(gpu = 1u64, gpu_memory_used_bytes = 2_000u64);
        tracing::info!(gpu = 0u64, gpu_memory_used_bytes = 1_500u64);
        tracing::info!(model = "m", kv_cache_usage_ratio = 0.5);
        // Without a model field, the enclosing request's model is used.
        let span = tracing::info_span!("generate", model = "n", tokens_in = 1u64);
        span.in_scope(|| tracing::info!(kv_cache_usage_ratio = 0.25));
    });
    let m = h.snapshot();
    m.assert_series(&[
        Gauge("llm_gpu_memory_used_bytes{gpu=0}", 1_500.0),
        Gauge("llm_gpu_memory_used_bytes{gpu=1}", 2_000.0),
        Gauge("llm_kv_cache_usage_ratio{model=m}", 0.5),
        Gauge("llm_kv_cache_usage_ratio{model=n}", 0.25),
    ]);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn hit_rate_gauge_is_the_ratio_of_the_counters() {
    let h = Harness::new();
    h.run(|| {
        for (input, cached) in [(100u64, 0u64), (100, 100), (200, 50)] {
            let span = tracing::info_span!(
                "generate",
                model = "m",
                tokens_in = input,
                tokens_cached = cached,
                tokens_out = 1u64
            );
            drop(span);
        }
    });
    let m = h.snapshot();
    let cached = m.counter("llm_cached_input_tokens_total", &[("model", "m")]);
    let input = m.counter("llm_tokens_total", &[("model", "m"), ("type", "input")]);
    assert_eq!((cached, input), (150, 400));
    assert_close(
        m.gauge("llm_kv_cache_hit_rate", &[("model", "m")]),
        150.0 / 400.0,
    );
}

#[test]
fn help_text_is_registered_for_every_family() {
    let (layer, snapshotter) = recording_layer();
    tracing::dispatcher::with_default(&dispatch(layer), || {
        drop(tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 1u64,
            tokens_out = 2u64
        ));
    });
    let described: std::collections::HashMap<String, Option<String>> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, help, _)| (key.key().name().to_owned(), help.map(|h| h.to_string())))
        .collect();
    for (name, help) in &described {
        let def =
            llm_span_layer::catalog::metric(name).expect("every emitted family is in the catalog");
        assert_eq!(help.as_deref(), Some(def.help), "{name}");
    }
    assert!(described.contains_key("llm_requests_total"));
}

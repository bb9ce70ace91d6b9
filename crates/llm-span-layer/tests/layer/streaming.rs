//! Streamed tokens count exactly however their delta events arrive: through a bound
//! request's stream lane (no lock), through the full path, or both at once from
//! several threads; the request's own totals (its time per output token, its final
//! `tokens_out`, its cost) see every one of them.

use crate::support::Expect::Counter;
use crate::support::Harness;
use llm_span_layer::{ModelPrice, PriceTable};
use tracing::field::Empty;

const MODEL: &[(&str, &str)] = &[("model", "m")];
const OUTPUT: &[(&str, &str)] = &[("model", "m"), ("type", "output")];

/// A request span streaming its output.
fn generate(model: &str, tokens_in: u64) -> tracing::Span {
    tracing::info_span!("generate", model, tokens_in, tokens_out = Empty)
}

fn priced() -> Harness {
    let prices = PriceTable::new().with_model(
        "m",
        ModelPrice::usd_per_million_tokens(1.0, 3.0).expect("valid"),
    );
    Harness::with(|b| b.with_prices(prices))
}

#[test]
fn a_stream_counts_every_delta_and_its_cost_as_it_goes() {
    let h = priced();
    let span = h.run(|| {
        let span = generate("m", 10);
        span.in_scope(|| {
            for _ in 0..50 {
                tracing::info!(tokens_out_delta = 2u64);
            }
        });
        span
    });
    let during = h.snapshot();
    during.assert_series(&[
        Counter("llm_tokens_total{model=m,type=output}", 100),
        // 10 input at 1 µ$ and 100 output at 3 µ$, in picodollars.
        Counter(
            "llm_cost_pico_usd_total{model=m}",
            10_000_000 + 100 * 3_000_000,
        ),
    ]);
    h.advance(1.0);
    h.run(|| {
        // The total the request reports agrees with what streamed: nothing more.
        span.record("tokens_out", 100u64);
        drop(span);
    });
    let after = h.snapshot();
    after.assert_series(&[
        // No second count.
        Counter("llm_tokens_total{model=m,type=output}", 0),
        Counter("llm_cost_pico_usd_total{model=m}", 0),
    ]);
    assert_eq!(after.all_anomalies(), 0);
    // 99 tokens after the first in one second: the request saw all 100.
    assert_eq!(after.histogram("llm_tokens_per_second", MODEL), vec![99.0]);
}

#[test]
fn a_total_past_the_stream_counts_only_the_difference_and_deltas_after_it_count_too() {
    let h = priced();
    h.run(|| {
        let span = generate("m", 1);
        let _entered = span.enter();
        for _ in 0..10 {
            tracing::info!(tokens_out_delta = 1u64);
        }
        span.record("tokens_out", 25u64);
        for _ in 0..5 {
            tracing::info!(tokens_out_delta = 1u64);
        }
        // As text: the full decoding path, between lane deltas.
        tracing::info!(tokens_out_delta = "3");
        tracing::info!(tokens_out_delta = 1u64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_tokens_total{model=m,type=output}", 25 + 5 + 3 + 1),
        Counter(
            "llm_cost_pico_usd_total{model=m}",
            1_000_000 + 34 * 3_000_000,
        ),
        Counter("llm_requests_total{model=m,status=ok}", 1),
    ]);
}

#[test]
fn deltas_from_many_threads_into_one_request_count_exactly() {
    let h = priced();
    let span = h.run(|| {
        let span = generate("m", 7);
        span.in_scope(|| tracing::info!(first_token = true));
        span
    });
    const PER_THREAD: u64 = 20_000;
    std::thread::scope(|scope| {
        for thread in 0..3 {
            let span = span.clone();
            let h = &h;
            scope.spawn(move || {
                h.run(|| {
                    let _entered = span.enter();
                    for i in 0..PER_THREAD {
                        // One thread in three takes the full path (text), racing the lanes.
                        if thread == 2 && i % 2 == 0 {
                            tracing::info!(tokens_out_delta = "1");
                        } else {
                            tracing::info!(tokens_out_delta = 1u64);
                        }
                    }
                })
            });
        }
    });
    h.run(|| {
        span.record("tokens_out", 3 * PER_THREAD);
        drop(span);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_tokens_total{model=m,type=output}", 3 * PER_THREAD),
        Counter(
            "llm_cost_pico_usd_total{model=m}",
            7_000_000 + 3 * PER_THREAD * 3_000_000,
        ),
    ]);
    assert_eq!(
        m.all_anomalies(),
        0,
        "the reported total matches the stream"
    );
}

#[test]
fn unpriced_streams_count_their_tokens_as_unpriced() {
    let h = Harness::new();
    h.run(|| {
        let span = generate("free", 2);
        span.in_scope(|| {
            for _ in 0..30 {
                tracing::info!(tokens_out_delta = 1u64);
            }
        });
        h.advance(2.0);
        // Completion without a reported total: the request's count is its stream.
        span.in_scope(|| tracing::info!(finish_reason = "stop"));
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_tokens_total{model=free,type=output}", 30),
        Counter("llm_unpriced_tokens_total{model=free,type=output}", 30),
    ]);
    assert_eq!(
        m.histogram("llm_tokens_per_second", &[("model", "free")]),
        vec![14.5]
    );
}

#[test]
fn deltas_under_a_child_span_or_with_an_explicit_parent_count_the_same() {
    let h = priced();
    h.run(|| {
        let span = generate("m", 1);
        span.in_scope(|| tracing::info!(tokens_out_delta = 1u64));
        span.in_scope(|| {
            let step = tracing::info_span!("decode_step");
            step.in_scope(|| tracing::info!(tokens_out_delta = 2u64));
        });
        tracing::info!(parent: &span, tokens_out_delta = 4u64);
        span.in_scope(|| tracing::info!(tokens_out_delta = 8u64));
        // Malformed deltas are flagged, never counted.
        span.in_scope(|| {
            tracing::info!(tokens_out_delta = -1i64);
            tracing::info!(tokens_out_delta = 0.5f64);
        });
    });
    let m = h.snapshot();
    assert_eq!(m.counter("llm_tokens_total", OUTPUT), 15);
    assert_eq!(m.anomalies("malformed_value"), 2);
}

#[test]
fn an_error_level_delta_still_fails_its_request() {
    let h = priced();
    h.run(|| {
        let span = generate("m", 1);
        span.in_scope(|| {
            tracing::info!(tokens_out_delta = 1u64);
            tracing::info!(tokens_out_delta = 1u64);
            tracing::error!(tokens_out_delta = 1u64);
        });
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_tokens_total{model=m,type=output}", 3),
        Counter("llm_requests_total{model=m,status=error}", 1),
    ]);
}

#[test]
fn a_stream_declared_with_tokens_out_zero_and_dropped_is_cancelled() {
    // `tokens_out = 0` at creation is a placeholder, not a completion: the stream dropped
    // after 3 deltas is cancelled, with no end-to-end sample, as with `tokens_out = Empty`.
    for declared in [Some(0u64), None] {
        let h = Harness::new();
        h.run(|| {
            let span = match declared {
                Some(zero) => tracing::info_span!(
                    "generate",
                    model = "m",
                    tokens_in = 4u64,
                    tokens_out = zero
                ),
                None => generate("m", 4),
            };
            span.in_scope(|| {
                for _ in 0..3 {
                    tracing::info!(tokens_out_delta = 1u64);
                }
            });
        });
        let m = h.snapshot();
        let status =
            |status| m.counter("llm_requests_total", &[("model", "m"), ("status", status)]);
        assert_eq!(
            (status("ok"), status("cancelled")),
            (0, 1),
            "declared {declared:?}"
        );
        assert_eq!(m.counter("llm_tokens_total", OUTPUT), 3);
        assert_eq!(
            m.histogram("llm_e2e_latency_seconds", MODEL),
            Vec::<f64>::new()
        );
    }
}

#[test]
fn a_tokens_out_recorded_after_creation_still_completes_the_request() {
    let h = Harness::new();
    h.run(|| {
        let span =
            tracing::info_span!("generate", model = "m", tokens_in = 4u64, tokens_out = 0u64);
        span.in_scope(|| tracing::info!(tokens_out_delta = 2u64));
        span.record("tokens_out", 2u64);
    });
    let m = h.snapshot();
    let status = |status| m.counter("llm_requests_total", &[("model", "m"), ("status", status)]);
    assert_eq!((status("ok"), status("cancelled")), (1, 0));
    assert_eq!(m.histogram("llm_e2e_latency_seconds", MODEL).len(), 1);
}

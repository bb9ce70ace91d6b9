//! Cost is an integer counter of picodollars: exact for any number of tokens.

use crate::support::Expect::{Absent, Counter};
use crate::support::Harness;
use llm_span_layer::{ModelPrice, PriceTable};

#[test]
fn a_billion_tokens_cost_exactly() {
    // 0.15 USD per million input tokens: 0.15 micro-dollars per token, a fraction
    // of a micro-dollar per request, which the picodollar counter keeps exactly.
    let prices = PriceTable::new().with_model(
        "m",
        ModelPrice::usd_per_million_tokens(0.15, 0.6).expect("valid"),
    );
    let h = Harness::with(|b| b.with_prices(prices));
    let requests = 100_000u64;
    let per_request = 10_007u64; // input tokens
    h.run(|| {
        for _ in 0..requests {
            drop(tracing::info_span!(
                "generate",
                model = "m",
                tokens_in = per_request,
                tokens_out = 3u64
            ));
        }
    });
    let m = h.snapshot();
    let input = requests * per_request;
    assert!(input > 1_000_000_000);
    // Exact: input * 150_000 + output * 600_000 picodollars.
    let pico = u128::from(input) * 150_000 + u128::from(requests * 3) * 600_000;
    let expected = u64::try_from(pico).expect("fits");
    assert_eq!(
        m.counter("llm_cost_pico_usd_total", &[("model", "m")]),
        expected
    );
    assert_eq!(expected, 150_285_000_000_000);
}

#[test]
fn a_single_huge_request_costs_exactly() {
    let prices = PriceTable::parse("m 2.5 1.25 10\n").expect("valid");
    let h = Harness::with(|b| b.with_prices(prices));
    h.run(|| {
        drop(tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 4_000_000_000u64,
            tokens_cached = 1_000_000_000u64,
            tokens_out = 1_000_000_000u64
        ));
    });
    let m = h.snapshot();
    // 3e9 * 2.5 + 1e9 * 1.25 + 1e9 * 10 micro-dollars.
    assert_eq!(
        m.counter("llm_cost_pico_usd_total", &[("model", "m")]),
        18_750_000_000_000_000
    );
}

#[test]
fn unpriced_models_count_their_tokens_separately() {
    let prices = PriceTable::parse("priced 1 - 1\n").expect("valid");
    let h = Harness::with(|b| b.with_prices(prices));
    h.run(|| {
        drop(tracing::info_span!(
            "generate",
            model = "priced",
            tokens_in = 5u64,
            tokens_out = 5u64
        ));
        drop(tracing::info_span!(
            "generate",
            model = "free",
            tokens_in = 7u64,
            tokens_out = 2u64
        ));
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_cost_pico_usd_total{model=priced}", 10_000_000),
        Absent("llm_cost_pico_usd_total{model=free}"),
        Counter("llm_unpriced_tokens_total{model=free,type=input}", 7),
        Counter("llm_unpriced_tokens_total{model=free,type=output}", 2),
        Absent("llm_unpriced_tokens_total{model=priced,type=input}"),
    ]);
}

#[test]
fn cancelled_and_failed_requests_still_cost() {
    let prices = PriceTable::parse("m 1 - 1\n").expect("valid");
    let h = Harness::with(|b| b.with_prices(prices));
    h.run(|| {
        let span = tracing::info_span!("generate", model = "m", tokens_in = 100u64);
        span.in_scope(|| tracing::info!(tokens_out_delta = 20u64));
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=cancelled}", 1),
        Counter("llm_cost_pico_usd_total{model=m}", 120_000_000),
    ]);
}

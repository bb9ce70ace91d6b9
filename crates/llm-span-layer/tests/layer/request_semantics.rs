//! Realistic ways of instrumenting a server that lost or mislabelled metrics in the
//! first release: one test per finding.

use std::time::Duration;

use crate::support::Expect::{Absent, Counter, Gauge, Samples};
use crate::support::{recording_layer, Harness, Metrics};
use llm_span_layer::{ConfigError, LlmSpanLayer, LlmSpanLayerBuilder, ModelPrice, PriceTable};
use tracing::field::Empty;
use tracing::Instrument;

/// Runs `f` on another thread and fails if it takes longer than `limit` (a hang).
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(f()));
    result
        .recv_timeout(limit)
        .expect("finished in time, without hanging")
}

#[test]
fn caps_are_checked_against_their_maximum_and_cost_what_they_hold() {
    for (builder, setting, max) in [
        (
            LlmSpanLayer::builder().with_max_models(usize::MAX),
            "max_models",
            LlmSpanLayerBuilder::MAX_MODELS,
        ),
        (
            LlmSpanLayer::builder().with_max_series(usize::MAX),
            "max_series",
            LlmSpanLayerBuilder::MAX_SERIES,
        ),
        (
            LlmSpanLayer::builder().with_max_label_values(1 << 62),
            "max_label_values",
            LlmSpanLayerBuilder::MAX_LABEL_VALUES,
        ),
    ] {
        let err = builder.build().expect_err("a cap past its maximum");
        assert!(
            matches!(err, ConfigError::LimitTooLarge { setting: s, max: m, .. } if s == setting && m == max),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("{setting} must be at most {max}")),
            "{err}"
        );
    }
    // At the maxima, values past the eighth (where the old table size overflowed and
    // spun forever) are interned at once.
    let counted = within(Duration::from_secs(30), || {
        let h = Harness::with(|b| {
            b.with_label("tenant")
                .with_max_models(LlmSpanLayerBuilder::MAX_MODELS)
                .with_max_label_values(LlmSpanLayerBuilder::MAX_LABEL_VALUES)
                .with_max_series(LlmSpanLayerBuilder::MAX_SERIES)
        });
        h.run(crate::support::requests_across_models_and_tenants);
        h.snapshot().sum("llm_requests_total")
    });
    assert_eq!(counted, 40);
}

#[test]
fn extra_labels_recorded_after_the_model_label_the_whole_request() {
    let h = Harness::with(|b| b.with_label("tenant"));
    h.run(|| {
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tenant = Empty,
            tokens_in = 9u64,
            tokens_out = Empty
        );
        // Known only after authentication, inside the handler.
        span.record("tenant", "acme");
        span.in_scope(|| tracing::info!(first_token = true));
        span.record("tokens_out", 4u64);
        // Too late: the labels were bound at the first token.
        span.record("tenant", "other");
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,tenant=acme,status=ok}", 1),
        Counter("llm_tokens_total{model=m,tenant=acme,type=input}", 9),
    ]);
    let acme = [("model", "m"), ("tenant", "acme")];
    assert_eq!(m.histogram("llm_ttft_seconds", &acme).len(), 1);
    assert_eq!(m.label_values("llm_requests_total", "tenant"), ["acme"]);
    assert_eq!(m.anomalies("late_label"), 1);
    assert_eq!(m.all_anomalies(), 1);
}

#[test]
fn a_queue_wait_before_the_model_is_known_waits_for_it_even_where_unknown_counts() {
    let h = Harness::new();
    h.run(|| {
        // A request that never learns its model: `unknown` has its histograms from then on.
        drop(tracing::info_span!(
            "generate",
            model = Empty,
            tokens_in = 1u64
        ));
        let request = tracing::info_span!("generate", model = Empty, tokens_in = 1u64);
        let queue = tracing::info_span!(parent: &request, "queue");
        h.advance(0.75);
        drop(queue);
        request.record("model", "m");
        request.in_scope(|| tracing::info!(first_token = true));
        drop(request);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_queue_wait_seconds{model=m}", &[0.75]),
        Samples("llm_queue_wait_seconds{model=unknown}", &[]),
    ]);
}

#[test]
fn a_model_learned_late_labels_the_whole_request() {
    let h = Harness::new();
    h.run(|| {
        // (a) recorded after the first token;
        let a = tracing::info_span!(
            "generate",
            model = Empty,
            tokens_in = 3u64,
            tokens_out = Empty
        );
        h.advance(0.5);
        a.in_scope(|| tracing::info!(tokens_out_delta = 2u64));
        a.record("model", "late-a");
        a.record("tokens_out", 2u64);
        drop(a);
        // (b) a queue span opened before the model is recorded;
        let b = tracing::info_span!(
            "generate",
            model = Empty,
            tokens_in = 3u64,
            tokens_out = Empty
        );
        let queue = tracing::info_span!(parent: &b, "queue");
        h.advance(0.25);
        drop(queue);
        b.record("model", "late-b");
        b.in_scope(|| tracing::info!(first_token = true));
        b.record("tokens_out", 1u64);
        drop(b);
        // (c) only the response's model, at the end of a stream (a router).
        let c = tracing::info_span!(
            "chat",
            gen_ai.request.model = Empty,
            gen_ai.response.model = Empty,
            gen_ai.usage.input_tokens = 5u64
        );
        c.in_scope(|| {
            tracing::info!(tokens_out_delta = 1u64);
            tracing::info!(tokens_out_delta = 1u64);
        });
        c.record("gen_ai.response.model", "late-c");
        drop(c);
    });
    let m = h.snapshot();
    assert_eq!(
        m.label_values("llm_requests_total", "model"),
        ["late-a", "late-b", "late-c"]
    );
    m.assert_series(&[
        Samples("llm_ttft_seconds{model=late-a}", &[0.5]),
        Counter("llm_tokens_total{model=late-a,type=output}", 2),
        Samples("llm_queue_wait_seconds{model=late-b}", &[0.25]),
        Gauge("llm_queue_depth{model=late-b}", 0.0),
        Counter("llm_tokens_total{model=late-c,type=input}", 5),
        Counter("llm_tokens_total{model=late-c,type=output}", 2),
        // Nothing was ever counted under `unknown`: its gauge moved and came back.
        Absent("llm_requests_total{model=unknown,status=ok}"),
        Gauge("llm_active_requests{model=unknown}", 0.0),
    ]);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn label_values_that_render_alike_are_refused_and_counted() {
    let h = Harness::new();
    let names = [
        "q\"x",           // kept: quotes escape unambiguously
        "q\\\"x",         // renders like the one above in metrics-exporter-prometheus
        "\\",             // renders like "\\\\"
        "llama\u{200D}3", // looks like "llama3"
        "\u{FEFF}llama3", // byte-order mark
        "llama3\u{202E}", // right-to-left override
        "llama3",
    ];
    h.run(|| {
        for name in names {
            drop(tracing::info_span!(
                "generate",
                model = name,
                tokens_in = 1u64,
                tokens_out = 1u64
            ));
        }
    });
    let m = h.snapshot();
    assert_eq!(
        m.label_values("llm_requests_total", "model"),
        ["__overflow__", "llama3", "q\"x"]
    );
    assert_eq!(
        m.counter(
            "llm_requests_total",
            &[("model", "__overflow__"), ("status", "ok")]
        ),
        5
    );
    assert_eq!(m.anomalies("invalid_label"), 5);
}

#[test]
fn cost_is_counted_with_its_tokens_exactly_across_series_and_past_the_cap() {
    // 0.8 micro-dollars a request: 800_000 picodollars.
    let prices = PriceTable::new()
        .with_model(
            "m",
            ModelPrice::usd_per_million_tokens(0.8, 0.0).expect("valid"),
        )
        .with_model(
            "late-priced",
            ModelPrice::usd_per_million_tokens(2.0, 3.0).expect("valid"),
        );
    let h = Harness::with(|b| {
        b.with_label("tenant")
            .with_prices(prices)
            .with_max_models(1)
    });
    h.run(|| {
        for tenant in 0..90 {
            let tenant = format!("t{tenant}");
            drop(tracing::info_span!(
                "generate",
                model = "m",
                tenant = tenant.as_str(),
                tokens_in = 1u64,
                tokens_out = 0u64
            ));
        }
        let tenants = h.snapshot();
        let total: u64 = (0..90)
            .map(|t| {
                let tenant = format!("t{t}");
                tenants.counter(
                    "llm_cost_pico_usd_total",
                    &[("model", "m"), ("tenant", tenant.as_str())],
                )
            })
            .sum();
        assert_eq!(total, 90 * 800_000, "72 micro-dollars, not 0");
        // A long stream shows its cost as its tokens count, before it ends.
        let stream = tracing::info_span!("generate", model = "m", tenant = "s", tokens_in = 10u64);
        stream.in_scope(|| tracing::info!(tokens_out_delta = 1u64));
        let during = h.snapshot();
        assert_eq!(
            during.counter(
                "llm_cost_pico_usd_total",
                &[("model", "m"), ("tenant", "s")]
            ),
            8_000_000
        );
        drop(stream);
        // Past the model cap (1): counted under __overflow__, still priced.
        drop(tracing::info_span!(
            "generate",
            model = "late-priced",
            tenant = "t0",
            tokens_in = 1000u64,
            tokens_out = 100u64
        ));
    });
    let m = h.snapshot();
    m.assert_series(&[
        // 1000 input * 2 + 100 output * 3 micro-dollars.
        Counter(
            "llm_cost_pico_usd_total{model=__overflow__,tenant=t0}",
            2_300_000_000,
        ),
        Counter(
            "llm_unpriced_tokens_total{model=__overflow__,tenant=t0,type=input}",
            0,
        ),
    ]);
}

#[test]
fn replacing_the_layer_finishes_its_open_requests_once() {
    use tracing_subscriber::prelude::*;
    let h = Harness::new();
    let (old, snapshotter) = recording_layer();
    let (reloadable, handle) = tracing_subscriber::reload::Layer::new(old);
    let subscriber = tracing_subscriber::registry().with(reloadable);
    tracing::subscriber::with_default(subscriber, || {
        let open = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 4u64,
            tokens_out = Empty
        );
        open.in_scope(|| tracing::info!(tokens_out_delta = 3u64));
        // A new price table, say: the old layer goes, the request is still open.
        handle.reload(h_layer(&h)).expect("reload");
        open.in_scope(|| tracing::info!(tokens_out_delta = 1u64));
        open.record("tokens_out", 4u64);
        drop(open);
        let after =
            tracing::info_span!("generate", model = "m", tokens_in = 1u64, tokens_out = 1u64);
        drop(after);
    });
    let old = Metrics::of(&snapshotter);
    old.assert_series(&[
        Gauge("llm_active_requests{model=m}", 0.0),
        Counter("llm_requests_total{model=m,status=cancelled}", 1),
        Counter("llm_requests_total{model=m,status=ok}", 0),
        Counter("llm_tokens_total{model=m,type=output}", 3),
    ]);
    // The new layer counts only what started after it: the old span is not its own.
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Gauge("llm_active_requests{model=m}", 0.0),
    ]);
    assert_eq!(m.sum("llm_requests_total"), 1);
}

/// A layer writing to the harness's recorder, for a reload.
fn h_layer(h: &Harness) -> LlmSpanLayer {
    h.layer_builder().build().expect("valid")
}

#[test]
fn queue_depth_counts_requests_and_cached_tokens_never_exceed_input() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 5u64,
            tokens_cached = 9u64,
            tokens_out = 1u64
        );
        let outer = tracing::info_span!(parent: &request, "queue");
        let inner = tracing::info_span!(parent: &outer, "queue");
        let during = h.snapshot();
        assert_eq!(during.gauge("llm_queue_depth", &[("model", "m")]), 1.0);
        h.advance(1.0);
        drop(inner);
        h.advance(1.0);
        drop(outer);
        request.in_scope(|| tracing::info!(first_token = true));
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_queue_wait_seconds{model=m}", &[2.0]),
        // A gauge's change since the last snapshot.
        Gauge("llm_queue_depth{model=m}", -1.0),
        Counter("llm_cached_input_tokens_total{model=m}", 5),
        Counter("llm_tokens_total{model=m,type=input}", 5),
    ]);
    assert_eq!(m.anomalies("token_count_mismatch"), 1);
}

/// Not a finding: nested requests were already counted apart; this keeps it so now that
/// requests hold their metrics until their first token.
#[test]
fn a_child_span_with_a_model_and_input_tokens_is_a_request_of_its_own() {
    let h = Harness::new();
    h.run(|| {
        // An agent's request calls a model twice: three requests.
        let agent = tracing::info_span!(
            "agent",
            model = "planner",
            tokens_in = 100u64,
            tokens_out = Empty
        );
        let _agent = agent.enter();
        for _ in 0..2 {
            let call = tracing::info_span!(
                "tool_call",
                model = "coder",
                tokens_in = 10u64,
                tokens_out = 5u64
            );
            call.in_scope(|| tracing::info!(first_token = true));
        }
        tracing::info!(first_token = true);
        agent.record("tokens_out", 7u64);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=coder,status=ok}", 2),
        Counter("llm_requests_total{model=planner,status=ok}", 1),
        Counter("llm_tokens_total{model=coder,type=input}", 20),
        Counter("llm_tokens_total{model=planner,type=input}", 100),
    ]);
    assert_eq!(
        m.histogram("llm_ttft_seconds", &[("model", "coder")]).len(),
        2
    );
    assert_eq!(
        m.histogram("llm_ttft_seconds", &[("model", "planner")])
            .len(),
        1
    );
}

/// Not a finding: the common async shape, pinned end to end now that queue waits and
/// input tokens are held until the first token.
#[test]
fn an_async_request_with_a_queue_phase_is_counted_once() {
    // The queue span inside an instrumented future, as servers write it.
    let h = Harness::new();
    h.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(
            async {
                async {}.instrument(tracing::info_span!("queue")).await;
                tracing::info!(first_token = true);
                tracing::Span::current().record("tokens_out", 2u64);
            }
            .instrument(tracing::info_span!(
                "generate",
                model = "m",
                tokens_in = 1u64,
                tokens_out = Empty
            )),
        );
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Counter("llm_tokens_total{model=m,type=input}", 1),
        Counter("llm_tokens_total{model=m,type=output}", 2),
        Gauge("llm_queue_depth{model=m}", 0.0),
        Gauge("llm_active_requests{model=m}", 0.0),
    ]);
    let of = [("model", "m")];
    assert_eq!(m.histogram("llm_queue_wait_seconds", &of).len(), 1);
    assert_eq!(m.histogram("llm_ttft_seconds", &of).len(), 1);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn a_queued_request_that_learns_its_model_moves_its_queue_depth_with_it() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!("generate", model = Empty, tokens_in = 1u64);
        let queue = tracing::info_span!(parent: &request, "queue");
        let waiting = h.snapshot();
        assert_eq!(
            waiting.gauge("llm_queue_depth", &[("model", "unknown")]),
            1.0
        );
        // Still queued: the request, and its place in the queue, move to `m`.
        request.record("model", "m");
        let moved = h.snapshot();
        // The gauges' changes since the last snapshot.
        moved.assert_series(&[
            Gauge("llm_queue_depth{model=unknown}", -1.0),
            Gauge("llm_queue_depth{model=m}", 1.0),
            Gauge("llm_active_requests{model=unknown}", -1.0),
            Gauge("llm_active_requests{model=m}", 1.0),
        ]);
        drop(queue);
        let dequeued = h.snapshot();
        assert_eq!(dequeued.gauge("llm_queue_depth", &[("model", "m")]), -1.0);
        drop(request);
    });
}

#[test]
fn a_revision_past_the_cap_leaves_the_model_info_as_it_was() {
    // Revisions share the model cap: with one model, one revision.
    let h = Harness::with(|b| b.with_max_models(1));
    h.run(|| {
        for revision in ["r1", "r2"] {
            drop(tracing::info_span!(
                "generate",
                model = "m",
                model_revision = revision,
                tokens_in = 1u64,
                tokens_out = 1u64
            ));
        }
    });
    let m = h.snapshot();
    assert_eq!(
        m.label_values("llm_model_info", "revision"),
        vec!["r1".to_owned()],
        "no info series for the overflowed revision"
    );
    assert_eq!(
        m.gauge("llm_model_info", &[("model", "m"), ("revision", "r1")]),
        1.0
    );
}

#[test]
fn replacing_the_layer_during_a_queue_phase_counts_the_wait_so_far() {
    use tracing_subscriber::prelude::*;
    let h = Harness::new();
    let (reloadable, handle) = tracing_subscriber::reload::Layer::new(h_layer(&h));
    let subscriber = tracing_subscriber::registry().with(reloadable);
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!("generate", model = "m", tokens_in = 2u64);
        let queue = tracing::info_span!(parent: &request, "queue");
        h.advance(1.5);
        // The old layer goes while the request waits in the queue: it ends the phase.
        let other = metrics_util::debugging::DebuggingRecorder::new();
        let replacement = LlmSpanLayer::builder()
            .with_recorder(other)
            .build()
            .expect("valid");
        handle.reload(replacement).expect("reload");
        h.advance(10.0);
        drop(queue);
        drop(request);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Samples("llm_queue_wait_seconds{model=m}", &[1.5]),
        Gauge("llm_queue_depth{model=m}", 0.0),
        Gauge("llm_active_requests{model=m}", 0.0),
        Counter("llm_requests_total{model=m,status=cancelled}", 1),
    ]);
}

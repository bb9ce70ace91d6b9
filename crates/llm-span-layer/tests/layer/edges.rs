//! Exact values at the edges: limits accepted at their maximum, tables that must find
//! an entry again rather than add it twice, gauges after sequences that take each branch,
//! the builder's and the layer's `Debug` output, and what `catalog::describe` registers.

use std::sync::Mutex;

use crate::support::Expect;
use crate::support::Harness;
use llm_span_layer::catalog::{self, MetricKind};
use llm_span_layer::{ConfigError, LlmSpanLayer, LlmSpanLayerBuilder, ModelPrice, PriceTable};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

#[test]
fn every_limit_is_accepted_at_its_maximum_and_refused_above() {
    type Set = fn(LlmSpanLayerBuilder, usize) -> LlmSpanLayerBuilder;
    let limits: [(&str, usize, Set); 3] = [
        ("max_models", LlmSpanLayerBuilder::MAX_MODELS, |b, n| {
            b.with_max_models(n)
        }),
        (
            "max_label_values",
            LlmSpanLayerBuilder::MAX_LABEL_VALUES,
            |b, n| b.with_max_label_values(n),
        ),
        ("max_series", LlmSpanLayerBuilder::MAX_SERIES, |b, n| {
            b.with_max_series(n)
        }),
    ];
    for (setting, max, set) in limits {
        assert!(
            set(LlmSpanLayer::builder(), max).build().is_ok(),
            "{setting}"
        );
        let err = set(LlmSpanLayer::builder(), max + 1)
            .build()
            .expect_err(setting);
        assert_eq!(
            err,
            ConfigError::LimitTooLarge {
                setting,
                max,
                given: max + 1
            }
        );
        assert_eq!(
            err.to_string(),
            format!("{setting} must be at most {max}, {} was given", max + 1)
        );
    }
}

#[test]
fn the_builder_and_the_layer_show_their_settings() {
    let price = ModelPrice::usd_per_million_tokens(1.0, 2.0).expect("valid");
    let builder = LlmSpanLayer::builder()
        .with_label_as("tenant_id", "tenant")
        .with_request_span_name("chat")
        .with_target_prefix("server")
        .with_queue_span_name("wait")
        .with_prices(
            PriceTable::new()
                .with_model("a", price)
                .with_model("b", price),
        )
        .with_max_models(7)
        .with_max_label_values(8)
        .with_max_series(9);
    assert_eq!(
        format!("{builder:?}"),
        "LlmSpanLayerBuilder { extra_labels: [(\"tenant_id\", \"tenant\")], \
         request_span_names: [\"chat\"], target_prefixes: [\"server\"], \
         queue_span_name: \"wait\", priced_models: 2, max_models: 7, max_label_values: 8, \
         max_series: 9, recorder: None, .. }"
    );
    let layer = builder.build().expect("valid");
    let debug = format!("{layer:?}");
    for part in [
        "queue_span_name: \"wait\"",
        "callsites: CallsiteMap { len: 0 }",
        "models: 0",
        "max_series: 9",
        "priced_models: 2",
        "recorder: \"current\"",
    ] {
        assert!(debug.contains(part), "{part} in {debug}");
    }
    let fixed = LlmSpanLayer::builder()
        .with_recorder(metrics::NoopRecorder)
        .build()
        .expect("valid");
    let debug = format!("{fixed:?}");
    assert!(debug.contains("priced_models: 0"), "{debug}");
    assert!(debug.contains("recorder: \"fixed\""), "{debug}");
}

#[test]
fn a_renamed_queue_span_is_the_queue_phase_and_the_default_name_is_not() {
    let h = Harness::with(|b| b.with_queue_span_name("wait"));
    h.run(|| {
        let request = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
        let queue = tracing::info_span!(parent: &request, "queue");
        h.advance(1.0);
        drop(queue);
        let wait = tracing::info_span!(parent: &request, "wait");
        h.advance(0.5);
        drop(wait);
        request.in_scope(|| tracing::info!(first_token = true));
    });
    let m = h.snapshot();
    assert_eq!(
        m.histogram("llm_queue_wait_seconds", &[("model", "m")]),
        [0.5]
    );
}

#[test]
fn the_hit_rate_follows_every_request_also_those_without_cached_tokens() {
    let h = Harness::new();
    let request = |input: u64, cached: u64| {
        drop(tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = input,
            tokens_cached = cached,
            tokens_out = 1u64
        ))
    };
    h.run(|| {
        request(100, 50);
        request(100, 0);
    });
    let m = h.snapshot();
    assert_eq!(m.gauge("llm_kv_cache_hit_rate", &[("model", "m")]), 0.25);
    h.run(|| request(200, 0));
    let m = h.snapshot();
    assert_eq!(m.gauge("llm_kv_cache_hit_rate", &[("model", "m")]), 0.125);
}

#[test]
fn cached_tokens_without_input_tokens_leave_the_hit_rate_at_zero() {
    let h = Harness::new();
    h.run(|| {
        drop(tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 0u64,
            tokens_cached = 5u64,
            tokens_out = 1u64
        ))
    });
    let m = h.snapshot();
    assert_eq!(m.gauge("llm_kv_cache_hit_rate", &[("model", "m")]), 0.0);
    assert_eq!(m.anomalies("token_count_mismatch"), 1);
}

#[test]
fn a_series_is_found_again_not_added_again() {
    // One series allowed: every later request with the same labels must find it.
    let h = Harness::with(|b| b.with_label("tenant").with_max_series(1));
    h.run(|| {
        for _ in 0..3 {
            drop(tracing::info_span!(
                "generate",
                model = "m",
                tenant = "t",
                tokens_in = 1u64,
                tokens_out = 1u64
            ));
        }
    });
    let m = h.snapshot();
    assert_eq!(
        m.counter(
            "llm_requests_total",
            &[("model", "m"), ("tenant", "t"), ("status", "ok")]
        ),
        3
    );
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn a_gpu_gauge_is_found_again_not_added_again() {
    // The GPU table holds 66 entries: far fewer than the updates of one GPU.
    let h = Harness::new();
    h.run(|| {
        for bytes in 1..=200u64 {
            tracing::info!(gpu = 0u64, gpu_memory_used_bytes = bytes);
        }
    });
    let m = h.snapshot();
    assert_eq!(m.gauge("llm_gpu_memory_used_bytes", &[("gpu", "0")]), 200.0);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn revisions_that_alternate_are_found_again_not_added_again() {
    // The revision table holds max_revisions + max_models + 2 entries, 6 here (revisions
    // share the model cap): far fewer than the changes of revision.
    let h = Harness::with(|b| b.with_max_models(2));
    h.run(|| {
        // Ending on a change of revision, which needs its entry found again.
        for round in 0..21 {
            let revision = if round % 2 == 0 { "r1" } else { "r2" };
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
    let info = |revision| m.gauge("llm_model_info", &[("model", "m"), ("revision", revision)]);
    assert_eq!((info("r1"), info("r2")), (1.0, 0.0));
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn an_event_that_updates_its_request_also_sets_engine_gauges() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
        request.in_scope(|| {
            tracing::info!(first_token = true, kv_cache_usage_ratio = 0.75);
            tracing::info!(
                tokens_out = 3u64,
                gpu = 2u64,
                gpu_memory_used_bytes = 4096u64
            );
        });
    });
    let m = h.snapshot();
    m.assert_series(&[
        Expect::Gauge("llm_kv_cache_usage_ratio{model=m}", 0.75),
        Expect::Gauge("llm_gpu_memory_used_bytes{gpu=2}", 4096.0),
        Expect::Counter("llm_tokens_total{model=m,type=output}", 3),
    ]);
}

#[test]
fn metric_kinds_are_prometheus_type_names() {
    assert_eq!(MetricKind::Counter.as_str(), "counter");
    assert_eq!(MetricKind::Gauge.as_str(), "gauge");
    assert_eq!(MetricKind::Histogram.as_str(), "histogram");
}

/// A `describe_*` call: the kind it describes, the name, the unit and the help text.
type Description = (&'static str, String, Option<Unit>, String);

/// Records what `describe_*` is called with.
#[derive(Default)]
struct Descriptions(Mutex<Vec<Description>>);

impl Descriptions {
    fn push(&self, kind: &'static str, key: KeyName, unit: Option<Unit>, help: SharedString) {
        let mut all = self.0.lock().expect("lock");
        all.push((kind, key.as_str().to_owned(), unit, help.to_string()));
    }
}

impl metrics::Recorder for Descriptions {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push("counter", key, unit, help);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push("gauge", key, unit, help);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push("histogram", key, unit, help);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn describe_registers_each_family_with_its_type_unit_and_help() {
    let recorder = Descriptions::default();
    catalog::describe(&recorder);
    let described = recorder.0.into_inner().expect("lock");
    assert_eq!(described.len(), catalog::METRICS.len());
    for ((kind, name, unit, help), def) in described.iter().zip(catalog::METRICS) {
        assert_eq!(*name, def.name);
        assert_eq!(*kind, def.kind.as_str(), "{name}");
        assert_eq!(*help, def.help, "{name}");
        let expected = match def.unit {
            "seconds" => Some(Unit::Seconds),
            "bytes" => Some(Unit::Bytes),
            _ => None,
        };
        assert_eq!(*unit, expected, "{name}");
    }
    let unit_of = |name: &str| {
        described
            .iter()
            .find(|(_, n, _, _)| n == name)
            .map(|(_, _, unit, _)| *unit)
    };
    assert_eq!(unit_of("llm_ttft_seconds"), Some(Some(Unit::Seconds)));
    assert_eq!(
        unit_of("llm_gpu_memory_used_bytes"),
        Some(Some(Unit::Bytes))
    );
    assert_eq!(unit_of("llm_requests_total"), Some(None));
}

#[test]
fn a_span_needs_both_a_model_and_input_tokens_to_be_a_request() {
    let h = Harness::new();
    h.run(|| {
        drop(tracing::info_span!("route", model = "m", tokens_out = 1u64));
        drop(tracing::info_span!(
            "tokenize",
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
        drop(tracing::info_span!(
            "generate",
            gen_ai.response.model = "m",
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
    });
    let m = h.snapshot();
    assert_eq!(m.sum("llm_requests_total"), 1);
    assert_eq!(
        m.counter("llm_requests_total", &[("model", "m"), ("status", "ok")]),
        1
    );
}

#[test]
fn four_extra_labels_are_accepted_and_a_fifth_is_refused() {
    let labels = |n: usize| {
        ["a", "b", "c", "d", "e"][..n]
            .iter()
            .fold(LlmSpanLayer::builder(), |b, label| b.with_label(label))
    };
    assert!(labels(4).build().is_ok());
    let err = labels(5).build().expect_err("five labels");
    assert_eq!(err, ConfigError::TooManyLabels { max: 4, given: 5 });
}

#[test]
fn a_delta_event_at_error_level_still_fails_its_request() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
        let entered = request.enter();
        tracing::info!(tokens_out_delta = 1u64);
        tracing::info!(tokens_out_delta = 1u64);
        tracing::error!(tokens_out_delta = 2u64);
        drop(entered);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Expect::Counter("llm_requests_total{model=m,status=error}", 1),
        Expect::Counter("llm_tokens_total{model=m,type=output}", 4),
    ]);
}

#[test]
fn wide_integer_token_counts_and_an_error_recorded_as_an_error_value() {
    let h = Harness::new();
    let failure = std::io::Error::other("backend gone");
    h.run(|| {
        drop(tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 5i128,
            tokens_out = 7u128
        ));
        let failed = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 1u64,
            tokens_out = 1u64,
            error = tracing::field::Empty
        );
        failed.record("error", &failure as &(dyn std::error::Error + 'static));
        drop(failed);
    });
    let m = h.snapshot();
    let tokens = |kind| m.counter("llm_tokens_total", &[("model", "m"), ("type", kind)]);
    assert_eq!((tokens("input"), tokens("output")), (6, 8));
    let requests = |status| m.counter("llm_requests_total", &[("model", "m"), ("status", status)]);
    assert_eq!((requests("ok"), requests("error")), (1, 1));
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn an_error_field_of_text_fails_the_request_unless_it_says_false() {
    let h = Harness::new();
    h.run(|| {
        for error in ["FALSE", "false", "timeout", "true"] {
            drop(tracing::info_span!(
                "generate",
                model = "m",
                tokens_in = 1u64,
                tokens_out = 1u64,
                error
            ));
        }
    });
    let m = h.snapshot();
    let requests = |status| m.counter("llm_requests_total", &[("model", "m"), ("status", status)]);
    assert_eq!((requests("ok"), requests("error")), (2, 2));
}

#[test]
fn every_model_shows_its_newest_revision_after_many_rollouts() {
    // 100 models rolled through v1, v2, v3: 300 (model, revision) pairs, more than the
    // models and revisions together. Each model shows v3 as 1 and its older ones as 0.
    let h = Harness::new();
    h.run(|| {
        for revision in ["v1", "v2", "v3"] {
            for model in 0..100 {
                let model = format!("model-{model}");
                drop(tracing::info_span!(
                    "generate",
                    model = model.as_str(),
                    model_revision = revision,
                    tokens_in = 1u64,
                    tokens_out = 1u64
                ));
            }
        }
    });
    let m = h.snapshot();
    assert_eq!(m.series("llm_model_info").len(), 300);
    for model in 0..100 {
        let model = format!("model-{model}");
        let info = |revision| {
            m.gauge(
                "llm_model_info",
                &[("model", &model), ("revision", revision)],
            )
        };
        assert_eq!(
            (info("v1"), info("v2"), info("v3")),
            (0.0, 0.0, 1.0),
            "{model}"
        );
    }
    assert_eq!(m.all_anomalies(), 0);
}

//! Label caps: a flood of distinct values cannot create unbounded series.

use crate::support::Expect::Counter;
use crate::support::{dispatch, Harness};

fn request(model: &str, tenant: &str) {
    drop(tracing::info_span!(
        "generate",
        model,
        tenant,
        tokens_in = 1u64,
        tokens_out = 1u64
    ));
}

#[test]
fn models_past_the_cap_share_the_overflow_series() {
    let h = Harness::with(|b| b.with_max_models(3));
    h.run(|| {
        for i in 0..1000 {
            request(&format!("model-{}", i % 10), "t");
        }
    });
    let m = h.snapshot();
    let models = m.label_values("llm_requests_total", "model");
    assert_eq!(models, ["__overflow__", "model-0", "model-1", "model-2"]);
    m.assert_series(&[
        Counter("llm_requests_total{model=model-0,status=ok}", 100),
        Counter("llm_requests_total{model=__overflow__,status=ok}", 700),
    ]);
    assert_eq!(m.anomalies("label_overflow"), 700);
    assert_eq!(m.sum("llm_requests_total"), 1000);
}

#[test]
fn extra_labels_are_allowlisted_and_capped() {
    let h = Harness::with(|b| b.with_label("tenant").with_max_label_values(2));
    h.run(|| {
        for tenant in ["a", "b", "c", "a"] {
            request("m", tenant);
        }
        // Fields that are not allowlisted never become labels.
        drop(tracing::info_span!(
            "generate",
            model = "m",
            user = "u",
            tokens_in = 1u64,
            tokens_out = 1u64
        ));
    });
    let m = h.snapshot();
    let ok = |tenant| {
        m.counter(
            "llm_requests_total",
            &[("model", "m"), ("tenant", tenant), ("status", "ok")],
        )
    };
    assert_eq!(
        (ok("a"), ok("b"), ok("__overflow__"), ok("unknown")),
        (2, 1, 1, 1)
    );
    assert_eq!(m.anomalies("label_overflow"), 1);
    for series in m.series("llm_requests_total") {
        assert!(!series.contains_key("user"));
    }
}

#[test]
fn extra_labels_can_be_renamed() {
    let h = Harness::with(|b| b.with_label_as("tenant", "customer"));
    h.run(|| request("m", "acme"));
    let m = h.snapshot();
    assert_eq!(m.label_values("llm_requests_total", "customer"), ["acme"]);
}

#[test]
fn the_series_cap_bounds_label_combinations() {
    let h = Harness::with(|b| b.with_label("tenant").with_max_series(4));
    h.run(|| {
        for model in ["m1", "m2", "m3"] {
            for tenant in ["a", "b", "c"] {
                request(model, tenant);
            }
        }
    });
    let m = h.snapshot();
    let series = m.series("llm_e2e_latency_seconds");
    assert_eq!(
        series.len(),
        5,
        "4 series plus the overflow series: {series:?}"
    );
    assert_eq!(m.anomalies("series_overflow"), 5);
    let overflow = m.counter(
        "llm_requests_total",
        &[
            ("model", "__overflow__"),
            ("tenant", "__overflow__"),
            ("status", "ok"),
        ],
    );
    assert_eq!(overflow, 5);
    assert_eq!(m.sum("llm_requests_total"), 9);
}

#[test]
fn a_million_model_names_make_a_bounded_number_of_series() {
    // Ten thousand under mutation testing: past the cap all the same, a hundredth of the time.
    let names = crate::support::loop_size(1_000_000, 10_000);
    let h = Harness::with(|b| b.with_max_models(100));
    h.run(|| {
        for i in 0..names {
            drop(tracing::info_span!(
                "generate",
                model = i,
                tokens_in = 1u64,
                tokens_out = 1u64
            ));
        }
    });
    let m = h.snapshot();
    assert_eq!(m.series("llm_e2e_latency_seconds").len(), 101);
    assert_eq!(m.anomalies("label_overflow"), u64::from(names) - 100);
    assert_eq!(m.sum("llm_requests_total"), u64::from(names));
}

/// A request whose tenant is recorded after its model, as when it is known only after
/// authentication: its gauges pass through `tenant="unknown"` before it binds.
fn late_tenant_request(model: &str, tenant: &str) {
    let span = tracing::info_span!(
        "generate",
        model,
        tenant = tracing::field::Empty,
        tokens_in = 1u64,
        tokens_out = tracing::field::Empty
    );
    span.record("tenant", tenant);
    span.in_scope(|| tracing::info!(first_token = true));
    span.record("tokens_out", 1u64);
}

#[test]
fn the_late_tenant_pattern_admits_as_many_combinations_as_the_cap() {
    // 4 real combinations under a cap of 4: none overflows, though each request first
    // shows its gauges under tenant="unknown".
    let h = Harness::with(|b| b.with_label("tenant").with_max_series(4));
    h.run(|| {
        for model in ["m1", "m2"] {
            for tenant in ["a", "b"] {
                late_tenant_request(model, tenant);
            }
        }
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("series_overflow"), 0);
    assert_eq!(
        m.series("llm_e2e_latency_seconds").len(),
        4,
        "{:?}",
        m.series("llm_e2e_latency_seconds")
    );
    for model in ["m1", "m2"] {
        for tenant in ["a", "b"] {
            let labels = [("model", model), ("tenant", tenant), ("status", "ok")];
            assert_eq!(
                m.counter("llm_requests_total", &labels),
                1,
                "{model} {tenant}"
            );
        }
    }
}

#[test]
fn a_hundred_models_and_ten_late_tenants_fit_the_default_cap() {
    let h = Harness::with(|b| b.with_label("tenant"));
    h.run(|| {
        for model in 0..100 {
            for tenant in 0..10 {
                late_tenant_request(&format!("model-{model}"), &format!("tenant-{tenant}"));
            }
        }
    });
    let m = h.snapshot();
    assert_eq!(m.anomalies("series_overflow"), 0);
    assert_eq!(m.sum("llm_requests_total"), 1000);
    assert_eq!(m.label_values("llm_requests_total", "model").len(), 100);
    assert!(!m
        .label_values("llm_requests_total", "model")
        .contains(&"__overflow__".to_owned()));
}

#[test]
fn label_sets_only_pending_requests_passed_through_have_their_own_cap() {
    // The pending table holds max_series label sets too: past it, a pending request's
    // gauges show under the overflow series until it binds, and binding still finds room.
    let h = Harness::with(|b| b.with_label("tenant").with_max_series(2));
    h.run(|| {
        let spans: Vec<_> = ["m1", "m2", "m3"]
            .into_iter()
            .map(|model| {
                tracing::info_span!(
                    "generate",
                    model,
                    tenant = tracing::field::Empty,
                    tokens_in = 1u64,
                    tokens_out = tracing::field::Empty
                )
            })
            .collect();
        let overflow = [("model", "__overflow__"), ("tenant", "__overflow__")];
        let m = h.snapshot();
        let active = |model, tenant| {
            m.gauge(
                "llm_active_requests",
                &[("model", model), ("tenant", tenant)],
            )
        };
        assert_eq!(
            (active("m1", "unknown"), active("m2", "unknown")),
            (1.0, 1.0)
        );
        let in_overflow = m.gauge("llm_active_requests", &overflow);
        assert_eq!(in_overflow, 1.0, "m3: the pending table is full");
        // Bound in the order m3, m1, m2: m3 and m1 take the two real combinations.
        for (index, tenant) in [(2, "c"), (0, "a"), (1, "b")] {
            let span = &spans[index];
            span.record("tenant", tenant);
            span.in_scope(|| tracing::info!(first_token = true));
            span.record("tokens_out", 1u64);
        }
        let m = h.snapshot();
        let active = |model, tenant| {
            m.gauge(
                "llm_active_requests",
                &[("model", model), ("tenant", tenant)],
            )
        };
        assert_eq!((active("m3", "c"), active("m1", "a")), (1.0, 1.0));
        assert_eq!(
            (active("m1", "unknown"), active("m2", "unknown")),
            (-1.0, -1.0)
        );
        // m3 left the overflow series, m2 came in: no change there.
        assert_eq!(m.gauge("llm_active_requests", &overflow), 0.0);
        assert_eq!(m.anomalies("series_overflow"), 1, "m2 b binds past the cap");
        drop(spans);
        let m = h.snapshot();
        let ok = |model, tenant| {
            m.counter(
                "llm_requests_total",
                &[("model", model), ("tenant", tenant), ("status", "ok")],
            )
        };
        assert_eq!((ok("m3", "c"), ok("m1", "a")), (1, 1));
        assert_eq!(ok("__overflow__", "__overflow__"), 1, "m2 b");
    });
}

/// Every gauge registration's name, labels and metadata target, in order.
#[derive(Clone, Default)]
struct GaugeRegistrations(std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl metrics::Recorder for GaugeRegistrations {
    crate::support::no_descriptions!();
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(
        &self,
        key: &metrics::Key,
        metadata: &metrics::Metadata<'_>,
    ) -> metrics::Gauge {
        if key.name() == "llm_active_requests" {
            let labels: Vec<_> = key.labels().map(|l| l.value().to_owned()).collect();
            let entry = (labels.join(","), metadata.target().to_owned());
            self.0.lock().expect("registrations").push(entry);
        }
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn gauges_of_label_sets_only_pending_requests_passed_through_carry_the_pending_target() {
    let registrations = GaugeRegistrations::default();
    let layer = llm_span_layer::LlmSpanLayer::builder()
        .with_label("tenant")
        .with_recorder(registrations.clone())
        .build()
        .expect("valid layer");
    tracing::dispatcher::with_default(&dispatch(layer), || {
        late_tenant_request("m", "a");
        late_tenant_request("m", "a");
    });
    let seen = registrations.0.lock().expect("registrations").clone();
    let pending = llm_span_layer::catalog::PENDING_GAUGE_TARGET;
    assert_eq!(pending, "llm_span_layer::pending");
    assert_eq!(
        seen,
        [
            ("m,unknown".to_owned(), pending.to_owned()),
            ("m,a".to_owned(), pending.to_owned()),
            ("m,a".to_owned(), "llm_span_layer".to_owned())
        ],
        "the first request passes through two pending label sets and binds to the second; \
         the next finds it bound"
    );
}

#[test]
fn a_pending_request_shows_under_its_own_label_set_beside_bound_ones() {
    let h = Harness::with(|b| b.with_label("tenant"));
    h.run(|| {
        late_tenant_request("m1", "a");
        drop(h.snapshot());
        let pending = tracing::info_span!(
            "generate",
            model = "m2",
            tenant = tracing::field::Empty,
            tokens_in = 1u64
        );
        // Its label set is bound already: it shows there.
        let known = tracing::info_span!("generate", model = "m1", tenant = "a", tokens_in = 1u64);
        let m = h.snapshot();
        let active = |model, tenant| {
            m.gauge(
                "llm_active_requests",
                &[("model", model), ("tenant", tenant)],
            )
        };
        assert_eq!((active("m2", "unknown"), active("m1", "a")), (1.0, 1.0));
        drop((pending, known));
    });
}

//! [`MetricStore`]: every series the exporter serves, in one `metrics-util` registry of
//! typed series ([`crate::series`]), with the HELP text of each family; and the typed
//! families a render writes.
//!
//! Looking up a registered key takes a shard's read lock (what every `counter!` call
//! does); creating a series, the write lock, once. A render copies the handles under the
//! read locks, then reads each series with atomic loads.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use llm_span_layer::catalog;
use metrics::{Key, Metadata};
use metrics_util::registry::Registry;

use crate::exposition::{metric_name, CounterValue, Family, Samples};
use crate::histogram::HistogramSnapshot;
use crate::naming::{Naming, Namings};
use crate::series::{self, CounterSeries, GaugeSeries, HistogramSeries, SeriesMaker};
use crate::{otel, vllm};

/// Every series, and the HELP text of each family by the name it is served under.
#[derive(Debug)]
pub(crate) struct MetricStore {
    registry: Registry<Key, SeriesMaker>,
    /// The first description of a name wins; the catalog's come first.
    help: RwLock<HashMap<String, Arc<str>>>,
}

impl MetricStore {
    pub(crate) fn new(maker: SeriesMaker) -> Self {
        let help = catalog::METRICS
            .iter()
            .map(|def| {
                let (name, help) = series::served_as(def);
                (name.to_owned(), help.into())
            })
            .collect();
        Self {
            registry: Registry::new(maker),
            help: RwLock::new(help),
        }
    }

    /// Keeps `help` for the family `name`, unless it has one.
    pub(crate) fn describe(&self, name: &str, help: &str) {
        let name = metric_name(name);
        let mut all = self.help.write().unwrap_or_else(PoisonError::into_inner);
        all.entry(name).or_insert_with(|| help.into());
    }

    pub(crate) fn counter(&self, key: &Key) -> metrics::Counter {
        self.registry
            .get_or_create_counter(key, |series| metrics::Counter::from_arc(Arc::clone(series)))
    }

    /// A gauge; a request gauge shows at 0 from the first registration that is not a
    /// pending label set's (its metadata target, [`catalog::PENDING_GAUGE_TARGET`]).
    pub(crate) fn gauge(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Gauge {
        self.registry.get_or_create_gauge(key, |series| {
            if metadata.target() != catalog::PENDING_GAUGE_TARGET {
                series.show_at_zero();
            }
            metrics::Gauge::from_arc(Arc::clone(series))
        })
    }

    pub(crate) fn histogram(&self, key: &Key) -> metrics::Histogram {
        self.registry.get_or_create_histogram(key, |series| {
            metrics::Histogram::from_arc(Arc::clone(series))
        })
    }

    /// The families as they are now, under the names of every profile served: one per
    /// name and type, with HELP where known. Each profile's families are all there, with no
    /// series if none was registered yet (so that dashboards and `absent()` alerts see them
    /// from the first scrape). The application's own families keep their names.
    pub(crate) fn families(&self) -> Vec<Family> {
        let mut counters: Vec<Arc<CounterSeries>> = Vec::new();
        self.registry
            .visit_counters(|_, series| counters.push(Arc::clone(series)));
        let mut gauges: Vec<Arc<GaugeSeries>> = Vec::new();
        self.registry
            .visit_gauges(|_, series| gauges.push(Arc::clone(series)));
        let mut histograms: Vec<Arc<HistogramSeries>> = Vec::new();
        self.registry
            .visit_histograms(|_, series| histograms.push(Arc::clone(series)));
        // Each series is read once, and every profile writes that reading: a series served
        // under two names (`llm_queue_depth`, `vllm:num_requests_waiting`) never shows two
        // values in one scrape, however fast it moves.
        let counters: Vec<(Arc<CounterSeries>, CounterValue)> = counters
            .into_iter()
            .map(|series| {
                let value = series.value();
                (series, value)
            })
            .collect();
        let gauges: Vec<(Arc<GaugeSeries>, f64)> = gauges
            .into_iter()
            .filter_map(|series| {
                let value = series.shown_value()?;
                Some((series, value))
            })
            .collect();
        let histograms: Vec<(Arc<HistogramSeries>, HistogramSnapshot)> = histograms
            .into_iter()
            .map(|series| {
                let snapshot = series.histogram.snapshot();
                (series, snapshot)
            })
            .collect();
        let namings = self.registry.storage().namings();
        let mut families = Vec::new();
        if namings.serves(Naming::Vllm) {
            families.extend(vllm_families(&counters, &gauges, &histograms));
        }
        if namings.serves(Naming::Otel) {
            families.extend(otel_families(&histograms, namings));
        }

        // Under their own names: the application's families always, the layer's with `llm`,
        // its operation families never (they only feed the `otel` profile's).
        let llm = namings.serves(Naming::Llm);
        let own = |name: &str| !series::is_operation(name) && (llm || !series::in_catalog(name));
        let mut named = Vec::new();
        let counters = by_family(counters, |(s, _)| &s.name.family);
        named.extend(
            counters
                .into_iter()
                .filter(|(name, _)| own(name))
                .map(|(name, series)| {
                    let samples = series
                        .into_iter()
                        .map(|(s, value)| (Arc::clone(&s.name.labels), value))
                        .collect::<Vec<(Arc<str>, CounterValue)>>();
                    (name, Samples::Counter(samples))
                }),
        );
        // Hidden gauges were left out when read: a family whose every series is hidden is
        // left to the catalog's completion.
        let gauges = by_family(gauges, |(s, _)| &s.name.family);
        named.extend(
            gauges
                .into_iter()
                .filter(|(name, _)| own(name))
                .map(|(name, series)| {
                    let samples: Vec<(Arc<str>, f64)> = series
                        .into_iter()
                        .map(|(s, value)| (Arc::clone(&s.name.labels), value))
                        .collect();
                    (name, Samples::Gauge(samples))
                }),
        );
        let histograms = by_family(histograms, |(s, _)| &s.name.family);
        named.extend(
            histograms
                .into_iter()
                .filter(|(name, _)| own(name))
                .map(|(name, series)| {
                    // The other profiles only borrowed the readings: this one takes them.
                    let first = Arc::clone(&series[0].0);
                    let view = &first.layout.llm;
                    let le = Arc::clone(&view.le);
                    let series = series
                        .into_iter()
                        .map(|(s, snapshot)| (Arc::clone(&s.name.labels), view.project(snapshot)))
                        .collect();
                    (name, Samples::Histogram { le, series })
                }),
        );

        let help = self.help.read().unwrap_or_else(PoisonError::into_inner);
        families.extend(named.into_iter().map(|(name, samples)| Family {
            help: help.get(&*name).cloned(),
            name,
            samples,
        }));
        if llm {
            for def in catalog::METRICS {
                let (name, _) = series::served_as(def);
                if !families.iter().any(|family| &*family.name == name) {
                    families.push(Family {
                        help: help.get(name).cloned(),
                        name: name.into(),
                        samples: empty(def.kind),
                    });
                }
            }
        }
        families
    }
}

const RUNNING: &str = "vllm:num_requests_running";
const WAITING: &str = "vllm:num_requests_waiting";

/// The families of the `vllm` profile, every one of them, from the series that appear in
/// them.
fn vllm_families(
    counters: &[(Arc<CounterSeries>, CounterValue)],
    gauges: &[(Arc<GaugeSeries>, f64)],
    histograms: &[(Arc<HistogramSeries>, HistogramSnapshot)],
) -> Vec<Family> {
    let mut samples: Vec<Samples> = vllm::FAMILIES.iter().map(|f| empty(f.kind)).collect();
    let index = |name: &str| vllm::FAMILIES.iter().position(|f| f.name == name);
    // A series in two families (input tokens are also prefix-cache queries) shows the
    // same reading in both.
    for (series, value) in counters {
        for (family, labels) in &*series.name.vllm {
            if let Some(Samples::Counter(list)) = index(family).map(|i| &mut samples[i]) {
                list.push((Arc::clone(labels), *value));
            }
        }
    }
    for (series, value) in gauges {
        let value = *value;
        for (family, labels) in &*series.name.vllm {
            if let Some(Samples::Gauge(list)) = index(family).map(|i| &mut samples[i]) {
                list.push((Arc::clone(labels), value));
            }
        }
    }
    // Running is open minus waiting, series by series (the same labels in both).
    let running = index(RUNNING).map(|i| (i, index(WAITING)));
    if let Some((running, Some(waiting))) = running {
        let waiting: HashMap<Arc<str>, f64> = match &samples[waiting] {
            Samples::Gauge(list) => list.iter().cloned().collect(),
            _ => HashMap::new(),
        };
        if let Samples::Gauge(list) = &mut samples[running] {
            for (labels, value) in list.iter_mut() {
                *value -= waiting.get(labels).copied().unwrap_or(0.0);
            }
        }
    }
    for (series, snapshot) in histograms {
        let Some(view) = &series.layout.vllm else {
            continue;
        };
        for (family, labels) in &*series.name.vllm {
            if let Some(Samples::Histogram { le, series: list }) =
                index(family).map(|i| &mut samples[i])
            {
                *le = Arc::clone(&view.le);
                list.push((Arc::clone(labels), view.project(snapshot.clone())));
            }
        }
    }
    vllm::FAMILIES
        .iter()
        .zip(samples)
        .map(|(family, samples)| Family {
            name: family.name.into(),
            help: Some(family.help.into()),
            samples,
        })
        .collect()
}

/// The families of the `otel` profile, every one of its roles served, from the operation
/// histograms that appear in them.
fn otel_families(
    histograms: &[(Arc<HistogramSeries>, HistogramSnapshot)],
    namings: Namings,
) -> Vec<Family> {
    let served: Vec<&otel::OtelFamily> = otel::FAMILIES
        .iter()
        .filter(|family| namings.serves_otel(family.role))
        .collect();
    let mut samples: Vec<Samples> = served
        .iter()
        .map(|_| empty(catalog::MetricKind::Histogram))
        .collect();
    for (series, snapshot) in histograms.iter().filter(|(s, _)| !s.name.otel.is_empty()) {
        let Some(view) = &series.layout.otel else {
            continue;
        };
        // A duration in two families (client and server) shows the same buckets in both.
        let snapshot = view.project(snapshot.clone());
        for (family, labels) in &*series.name.otel {
            let index = served.iter().position(|f| f.name == *family);
            if let Some(Samples::Histogram { le, series: list }) = index.map(|i| &mut samples[i]) {
                *le = Arc::clone(&view.le);
                list.push((Arc::clone(labels), snapshot.clone()));
            }
        }
    }
    served
        .iter()
        .zip(samples)
        .map(|(family, samples)| Family {
            name: family.name.into(),
            help: Some(family.help.into()),
            samples,
        })
        .collect()
}

/// No series of a catalog family's type.
fn empty(kind: catalog::MetricKind) -> Samples {
    match kind {
        catalog::MetricKind::Counter => Samples::Counter(Vec::new()),
        catalog::MetricKind::Gauge => Samples::Gauge(Vec::new()),
        // Histogram (`MetricKind` is `non_exhaustive`; the catalog has no other kind).
        _ => Samples::Histogram {
            le: Arc::new([]),
            series: Vec::new(),
        },
    }
}

/// Series grouped by family, families in name order. The series of one family share
/// one allocation of its name, so most comparisons are a pointer comparison.
fn by_family<T>(mut series: Vec<T>, family: impl Fn(&T) -> &Arc<str>) -> Vec<(Arc<str>, Vec<T>)> {
    series.sort_by(|a, b| {
        let (a, b) = (family(a), family(b));
        if Arc::ptr_eq(a, b) {
            std::cmp::Ordering::Equal
        } else {
            a.cmp(b)
        }
    });
    let mut groups: Vec<(Arc<str>, Vec<T>)> = Vec::new();
    for one in series {
        match groups.last_mut() {
            Some((name, members)) if **name == **family(&one) => members.push(one),
            _ => groups.push((Arc::clone(family(&one)), vec![one])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::OtelRole;
    use crate::series::{BucketLayout, Buckets};
    use metrics::Label;

    fn store() -> MetricStore {
        let by_name = HashMap::from([(
            catalog::TTFT_SECONDS.to_owned(),
            BucketLayout::new(&[0.5, 1.0], None, None),
        )]);
        MetricStore::new(SeriesMaker::new(
            vec![("service".into(), "chat".into())],
            Namings::default(),
            Buckets::new(by_name, &[1.0]),
        ))
    }

    fn meta(target: &'static str) -> Metadata<'static> {
        Metadata::new(target, metrics::Level::INFO, None)
    }

    fn summary(families: &[Family]) -> Vec<String> {
        let mut lines: Vec<String> = families
            .iter()
            .map(|family| {
                // The writer puts the series in order; the store does not.
                let mut series: Vec<String> = match &family.samples {
                    Samples::Counter(s) => s.iter().map(|(l, v)| format!("{l}={v:?}")).collect(),
                    Samples::Gauge(s) => s.iter().map(|(l, v)| format!("{l}={v}")).collect(),
                    Samples::Histogram { le, series } => series
                        .iter()
                        .map(|(l, h)| format!("{l}={:?}/{}/{le:?}", h.cumulative, h.sum))
                        .collect(),
                };
                series.sort();
                format!(
                    "{} help={} [{}]",
                    family.name,
                    family.help.is_some(),
                    series.join(" ")
                )
            })
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn one_family_per_name_and_type_with_every_catalog_family() {
        let store = store();
        let key = |name: &'static str, value: &'static str| {
            Key::from_parts(name, vec![Label::new("model", value)])
        };
        store
            .counter(&key(catalog::REQUESTS_TOTAL, "b"))
            .increment(2);
        store
            .counter(&key(catalog::REQUESTS_TOTAL, "a"))
            .increment(1);
        store
            .counter(&key(catalog::REQUESTS_TOTAL, "b"))
            .increment(3);
        store
            .counter(&key(catalog::COST_PICO_USD_TOTAL, "a"))
            .increment(7);
        store
            .histogram(&key(catalog::TTFT_SECONDS, "a"))
            .record(0.7);
        store.gauge(&key("app", "x"), &meta("app")).set(4.0);
        store.counter(&key("app", "x")).increment(1);
        store.describe("app", "first");
        store.describe("app", "second");
        store.describe(catalog::REQUESTS_TOTAL, "not the catalog's");
        let families = store.families();
        let lines = summary(&families);
        let of = |name: &str| -> Vec<&String> {
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("{name} ")))
                .collect()
        };
        assert_eq!(
            of(catalog::REQUESTS_TOTAL),
            [&"llm_requests_total help=true [service=\"chat\",model=\"a\"=Count(1) service=\"chat\",model=\"b\"=Count(5)]".to_owned()]
        );
        assert_eq!(
            of(series::COST_USD_TOTAL),
            [
                &"llm_cost_usd_total help=true [service=\"chat\",model=\"a\"=Picodollars(7)]"
                    .to_owned()
            ]
        );
        assert_eq!(
            of(catalog::TTFT_SECONDS),
            [&"llm_ttft_seconds help=true [service=\"chat\",model=\"a\"=[0, 1, 1]/0.7/[\"0.5\", \"1\", \"+Inf\"]]".to_owned()]
        );
        assert_eq!(
            of("app"),
            [
                &"app help=true [service=\"chat\",model=\"x\"=4]".to_owned(),
                &"app help=true [service=\"chat\",model=\"x\"=Count(1)]".to_owned()
            ]
        );
        let help = |name: &str| {
            families
                .iter()
                .find(|f| &*f.name == name)
                .and_then(|f| f.help.as_deref().map(str::to_owned))
        };
        assert_eq!(help("app").as_deref(), Some("first"));
        assert_eq!(
            help(catalog::REQUESTS_TOTAL).as_deref(),
            catalog::metric(catalog::REQUESTS_TOTAL).map(|d| d.help)
        );
        for def in catalog::METRICS {
            let (name, _) = series::served_as(def);
            assert_eq!(
                families.iter().filter(|f| &*f.name == name).count(),
                1,
                "{name}"
            );
        }
        // A catalog family with no series has the catalog's type.
        let fresh = self::store().families();
        for def in catalog::METRICS {
            let (name, _) = series::served_as(def);
            let family = fresh
                .iter()
                .find(|f| &*f.name == name)
                .expect("catalog family");
            assert_eq!(family.samples.kind(), def.kind.as_str(), "{name}");
        }
        assert_eq!(
            of(catalog::E2E_LATENCY_SECONDS),
            [&"llm_e2e_latency_seconds help=true []".to_owned()]
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with(catalog::COST_PICO_USD_TOTAL)),
            "served in dollars"
        );
    }

    #[test]
    fn request_gauges_of_pending_label_sets_are_left_out_at_zero() {
        let store = store();
        let key = |value: &'static str| {
            Key::from_parts(catalog::QUEUE_DEPTH, vec![Label::new("model", value)])
        };
        let pending = meta(catalog::PENDING_GAUGE_TARGET);
        store.gauge(&key("p"), &pending).set(0.0);
        store.gauge(&key("q"), &pending).set(2.0);
        store.gauge(&key("bound"), &meta("llm_span_layer")).set(0.0);
        // A later registration that is not a pending one shows it from then on.
        store.gauge(&key("later"), &pending).set(0.0);
        let lines = summary(&store.families());
        let queue: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(catalog::QUEUE_DEPTH))
            .collect();
        assert_eq!(
            queue,
            [&"llm_queue_depth help=true [service=\"chat\",model=\"bound\"=0 service=\"chat\",model=\"q\"=2]".to_owned()]
        );
        drop(store.gauge(&key("later"), &meta("llm_span_layer")));
        store.gauge(&key("q"), &pending).set(0.0);
        let lines = summary(&store.families());
        assert!(
            lines.contains(&"llm_queue_depth help=true [service=\"chat\",model=\"bound\"=0 service=\"chat\",model=\"later\"=0]".to_owned()),
            "{lines:?}"
        );
        // Every series hidden: the family is still there, with no series.
        let store = self::store();
        store.gauge(&key("p"), &pending).set(0.0);
        let lines = summary(&store.families());
        assert!(lines.contains(&"llm_queue_depth help=true []".to_owned()));
    }

    #[test]
    fn the_vllm_profile_serves_vllm_s_families_from_the_same_series() {
        let both = Namings::new(&[Naming::Llm, Naming::Vllm]).expect("profiles");
        let layout = |name: &str, bounds: &[f64]| {
            (
                name.to_owned(),
                BucketLayout::new(bounds, vllm::buckets(name), None),
            )
        };
        let by_name = HashMap::from([
            layout(catalog::TTFT_SECONDS, &[0.5, 1.0]),
            layout(catalog::TOKENS_PER_SECOND, &[10.0]),
        ]);
        let store = MetricStore::new(SeriesMaker::new(
            Vec::new(),
            both,
            Buckets::new(by_name, &[1.0]),
        ));
        let meta = meta("llm_span_layer");
        store
            .counter(&model_key(catalog::TOKENS_TOTAL, &[("type", "input")]))
            .increment(5);
        store
            .counter(&model_key(catalog::TOKENS_TOTAL, &[("type", "output")]))
            .increment(7);
        store
            .counter(&model_key(catalog::CACHED_INPUT_TOKENS_TOTAL, &[]))
            .increment(2);
        store
            .counter(&model_key(
                catalog::FINISH_REASONS_TOTAL,
                &[("reason", "stop")],
            ))
            .increment(3);
        for (status, n) in [("ok", 3), ("cancelled", 1), ("error", 1)] {
            store
                .counter(&model_key(catalog::REQUESTS_TOTAL, &[("status", status)]))
                .increment(n);
        }
        store
            .gauge(&model_key(catalog::QUEUE_DEPTH, &[]), &meta)
            .set(2.0);
        // Three open, two of them waiting: one running.
        store
            .gauge(&model_key(catalog::ACTIVE_REQUESTS, &[]), &meta)
            .set(3.0);
        let pending = self::meta(catalog::PENDING_GAUGE_TARGET);
        // A pending label set at 0: left out under both names.
        drop(store.gauge(
            &Key::from_parts(catalog::QUEUE_DEPTH, vec![Label::new("model", "p")]),
            &pending,
        ));
        let ttft = store.histogram(&model_key(catalog::TTFT_SECONDS, &[]));
        ttft.record(0.3);
        ttft.record(3.0);
        store
            .histogram(&model_key(catalog::TOKENS_PER_SECOND, &[]))
            .record(4.0);
        let body = crate::exposition::write(store.families(), crate::exposition::Format::Text);
        let vllm: Vec<&str> = body.lines().filter(|l| l.starts_with("vllm:")).collect();
        let ttft_buckets = [
            (0.001, 0),
            (0.005, 0),
            (0.01, 0),
            (0.02, 0),
            (0.04, 0),
            (0.06, 0),
            (0.08, 0),
            (0.1, 0),
            (0.25, 0),
            (0.5, 1),
            (0.75, 1),
            (1.0, 1),
            (2.5, 1),
            (5.0, 2),
            (7.5, 2),
            (10.0, 2),
            (20.0, 2),
            (40.0, 2),
            (80.0, 2),
            (160.0, 2),
            (640.0, 2),
            (2560.0, 2),
        ];
        let mut expected = vec![
            "vllm:generation_tokens_total{model_name=\"m\"} 7".to_owned(),
            "vllm:num_requests_running{model_name=\"m\"} 1".to_owned(),
            "vllm:num_requests_waiting{model_name=\"m\"} 2".to_owned(),
            "vllm:prefix_cache_hits_total{model_name=\"m\"} 2".to_owned(),
            "vllm:prefix_cache_queries_total{model_name=\"m\"} 5".to_owned(),
            "vllm:prompt_tokens_total{model_name=\"m\"} 5".to_owned(),
            "vllm:request_success_total{model_name=\"m\",finished_reason=\"abort\"} 1".to_owned(),
            "vllm:request_success_total{model_name=\"m\",finished_reason=\"error\"} 1".to_owned(),
            "vllm:request_success_total{model_name=\"m\",finished_reason=\"stop\"} 3".to_owned(),
        ];
        for (bound, count) in ttft_buckets {
            expected.push(format!(
                "vllm:time_to_first_token_seconds_bucket{{model_name=\"m\",le=\"{}\"}} {count}",
                vllm::le(bound)
            ));
        }
        expected.extend([
            "vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 2".to_owned(),
            "vllm:time_to_first_token_seconds_sum{model_name=\"m\"} 3.3".to_owned(),
            "vllm:time_to_first_token_seconds_count{model_name=\"m\"} 2".to_owned(),
        ]);
        assert_eq!(vllm, expected, "{body}");
        // Every family of the profile is there, those without series too, with vLLM's HELP.
        for family in vllm::FAMILIES {
            assert!(
                body.contains(&format!(
                    "# HELP {} {}\n# TYPE {} {}\n",
                    family.name,
                    family.help,
                    family.name,
                    family.kind.as_str()
                )),
                "{}",
                family.name
            );
        }
        // The llm profile is what it is alone: its own buckets, from the merged ones.
        assert!(body.contains("llm_ttft_seconds_bucket{model=\"m\",le=\"0.5\"} 1\nllm_ttft_seconds_bucket{model=\"m\",le=\"1\"} 1\nllm_ttft_seconds_bucket{model=\"m\",le=\"+Inf\"} 2\n"), "{body}");
        assert!(body.contains("llm_tokens_per_second_bucket{model=\"m\",le=\"10\"} 1\n"));

        // vLLM's names alone: the layer's families are gone, the application's stay.
        let vllm_only = MetricStore::new(SeriesMaker::new(
            Vec::new(),
            Namings::new(&[Naming::Vllm]).expect("vllm"),
            Buckets::new(HashMap::new(), &[1.0]),
        ));
        vllm_only
            .counter(&model_key(catalog::TOKENS_TOTAL, &[("type", "input")]))
            .increment(5);
        vllm_only
            .counter(&Key::from_name("app_jobs_total"))
            .increment(1);
        let body = crate::exposition::write(vllm_only.families(), crate::exposition::Format::Text);
        assert!(body.contains("vllm:prompt_tokens_total{model_name=\"m\"} 5\n"));
        assert!(body.contains("app_jobs_total 1\n"));
        assert!(!body.contains("llm_"), "{body}");
    }

    /// A store serving `list` (the `otel` profile with `roles`), with the builder's
    /// layouts: the presets, and the conventions' boundaries for the operation families.
    fn store_serving(list: &[Naming], roles: &[OtelRole]) -> MetricStore {
        let namings = Namings::new(list)
            .and_then(|n| n.with_otel_roles(roles))
            .expect("profiles");
        let layout = |name: &str, bounds: &[f64]| {
            let vllm = namings.serves(Naming::Vllm).then(|| vllm::buckets(name));
            let otel = namings.serves(Naming::Otel).then(|| otel::buckets(name));
            BucketLayout::new(bounds, vllm.flatten(), otel.flatten())
        };
        let mut by_name: HashMap<String, Arc<series::BucketLayout>> = crate::buckets::PRESETS
            .iter()
            .map(|(name, bounds)| ((*name).to_owned(), layout(name, bounds)))
            .collect();
        for def in catalog::OPERATION_METRICS {
            let bounds = otel::buckets(def.name).expect("boundaries");
            by_name.insert(def.name.to_owned(), layout(def.name, bounds));
        }
        MetricStore::new(SeriesMaker::new(
            Vec::new(),
            namings,
            Buckets::new(by_name, &[1.0]),
        ))
    }

    /// A series of model `m` with these further labels.
    fn model_key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let mut all = vec![Label::new("model", "m")];
        all.extend(labels.iter().map(|(k, v)| Label::new(*k, *v)));
        Key::from_parts(name, all)
    }

    fn operation_key(name: &'static str, last: Option<(&'static str, &'static str)>) -> Key {
        let mut labels = vec![
            Label::new("model", "m"),
            Label::new(catalog::OPERATION_LABEL, "chat"),
            Label::new(catalog::PROVIDER_LABEL, "openai"),
        ];
        labels.extend(last.map(|(k, v)| Label::new(k, v)));
        Key::from_parts(name, labels)
    }

    /// The lines of a histogram series: a bucket per bound (cumulative), `+Inf`, `_sum`,
    /// `_count`.
    fn histogram_lines(family: &str, labels: &str, bounds: &[f64], values: &[f64]) -> Vec<String> {
        let mut lines: Vec<String> = bounds
            .iter()
            .map(|b| crate::exposition::Float(*b).to_string())
            .chain(["+Inf".to_owned()])
            .zip(bounds.iter().copied().chain([f64::INFINITY]))
            .map(|(le, bound)| {
                let count = values.iter().filter(|v| **v <= bound).count();
                format!("{family}_bucket{{{labels},le=\"{le}\"}} {count}")
            })
            .collect();
        let sum: f64 = values.iter().sum();
        lines.push(format!(
            "{family}_sum{{{labels}}} {}",
            crate::exposition::Float(sum)
        ));
        lines.push(format!("{family}_count{{{labels}}} {}", values.len()));
        lines
    }

    /// Records the same requests in `store`: durations of every status, a first token, a
    /// decode time, tokens of both types; and the layer's own TTFT.
    fn record_operations(store: &MetricStore) {
        let duration = |status| {
            store.histogram(&operation_key(
                catalog::OPERATION_DURATION_SECONDS,
                Some(("status", status)),
            ))
        };
        duration("ok").record(0.05);
        duration("ok").record(3.0);
        duration("error").record(0.5);
        duration("cancelled").record(100.0);
        store
            .histogram(&operation_key(catalog::OPERATION_TTFT_SECONDS, None))
            .record(0.3);
        store
            .histogram(&operation_key(
                catalog::OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS,
                None,
            ))
            .record(0.02);
        let tokens = |kind| {
            store.histogram(&operation_key(
                catalog::OPERATION_TOKENS,
                Some(("type", kind)),
            ))
        };
        tokens("input").record(10.0);
        tokens("input").record(300.0);
        tokens("output").record(50.0);
        store
            .histogram(&Key::from_parts(
                catalog::TTFT_SECONDS,
                vec![Label::new("model", "m")],
            ))
            .record(0.3);
    }

    #[test]
    fn the_otel_profile_serves_the_conventions_families_from_the_same_series() {
        let store = store_serving(&[Naming::Llm, Naming::Vllm, Naming::Otel], OtelRole::ALL);
        record_operations(&store);
        let body = crate::exposition::write(store.families(), crate::exposition::Format::Text);
        let otel: Vec<&str> = body.lines().filter(|l| l.starts_with("gen_ai_")).collect();

        let base = "gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\"";
        let mut expected = Vec::new();
        for family in [
            "gen_ai_client_operation_duration_seconds",
            "gen_ai_client_token_usage",
            "gen_ai_server_request_duration_seconds",
            "gen_ai_server_time_per_output_token_seconds",
            "gen_ai_server_time_to_first_token_seconds",
        ] {
            let series: Vec<(String, &[f64], Vec<f64>)> = match family {
                "gen_ai_client_token_usage" => vec![
                    (
                        format!("{base},gen_ai_token_type=\"input\""),
                        otel::TOKEN_USAGE_BUCKETS,
                        vec![10.0, 300.0],
                    ),
                    (
                        format!("{base},gen_ai_token_type=\"output\""),
                        otel::TOKEN_USAGE_BUCKETS,
                        vec![50.0],
                    ),
                ],
                "gen_ai_server_time_to_first_token_seconds" => {
                    vec![(base.to_owned(), otel::TTFT_BUCKETS, vec![0.3])]
                }
                "gen_ai_server_time_per_output_token_seconds" => vec![(
                    base.to_owned(),
                    otel::TIME_PER_OUTPUT_TOKEN_BUCKETS,
                    vec![0.02],
                )],
                // The durations, in label order: ok (no error_type) first.
                _ => vec![
                    (base.to_owned(), otel::DURATION_BUCKETS, vec![0.05, 3.0]),
                    (
                        format!("{base},error_type=\"_OTHER\""),
                        otel::DURATION_BUCKETS,
                        vec![0.5],
                    ),
                    (
                        format!("{base},error_type=\"cancelled\""),
                        otel::DURATION_BUCKETS,
                        vec![100.0],
                    ),
                ],
            };
            for (labels, bounds, values) in series {
                expected.extend(histogram_lines(family, &labels, bounds, &values));
            }
        }
        assert_eq!(otel, expected, "{body}");
        // A few lines by hand.
        for line in [
            "gen_ai_server_request_duration_seconds_bucket{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",le=\"0.04\"} 0\n",
            "gen_ai_server_request_duration_seconds_bucket{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",le=\"0.08\"} 1\n",
            "gen_ai_server_request_duration_seconds_count{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\"} 2\n",
            "gen_ai_server_request_duration_seconds_sum{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\"} 3.05\n",
            "gen_ai_client_operation_duration_seconds_bucket{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",error_type=\"cancelled\",le=\"81.92\"} 0\n",
            "gen_ai_client_operation_duration_seconds_bucket{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",error_type=\"cancelled\",le=\"+Inf\"} 1\n",
            "gen_ai_client_token_usage_bucket{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_token_type=\"input\",le=\"16\"} 1\n",
            "gen_ai_client_token_usage_bucket{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_token_type=\"input\",le=\"67108864\"} 2\n",
            "gen_ai_client_token_usage_sum{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_token_type=\"input\"} 310\n",
            "gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",le=\"0.25\"} 0\n",
            "gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",le=\"0.5\"} 1\n",
        ] {
            assert!(body.contains(line), "{line} in {body}");
        }
        // Every family of the profile, with the conventions' HELP.
        for family in otel::FAMILIES {
            assert!(
                body.contains(&format!(
                    "# HELP {} {}\n# TYPE {} histogram\n",
                    family.name, family.help, family.name
                )),
                "{}",
                family.name
            );
        }
        // The llm and vllm profiles are what they are without otel.
        let without = store_serving(&[Naming::Llm, Naming::Vllm], OtelRole::ALL);
        record_operations(&without);
        let without = crate::exposition::write(without.families(), crate::exposition::Format::Text);
        let others = |body: &str| -> String {
            let mut kept = String::new();
            let mut otel = false;
            for line in body.lines() {
                if let Some(rest) = line.strip_prefix("# HELP ") {
                    otel = rest.starts_with("gen_ai_");
                }
                if !otel {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            kept
        };
        assert_eq!(others(&body), without);
        assert!(!body.contains("llm_operation"), "{body}");
        assert!(body.contains("vllm:time_to_first_token_seconds_count{model_name=\"m\"} 1\n"));
    }

    #[test]
    fn the_otel_profile_serves_the_families_of_its_roles_from_the_first_scrape() {
        let names = |roles: &[OtelRole]| -> Vec<String> {
            let store = store_serving(&[Naming::Otel], roles);
            store
                .families()
                .iter()
                .map(|f| format!("{} {} {}", f.name, f.samples.kind(), f.help.is_some()))
                .collect()
        };
        let client = [
            "gen_ai_client_token_usage histogram true",
            "gen_ai_client_operation_duration_seconds histogram true",
        ];
        let server = [
            "gen_ai_server_request_duration_seconds histogram true",
            "gen_ai_server_time_to_first_token_seconds histogram true",
            "gen_ai_server_time_per_output_token_seconds histogram true",
        ];
        assert_eq!(names(&[OtelRole::Client]), client);
        assert_eq!(names(&[OtelRole::Server]), server);
        assert_eq!(names(OtelRole::ALL), [&client[..], &server[..]].concat());
        // One role: the other's families get no series either.
        let store = store_serving(&[Naming::Otel], &[OtelRole::Server]);
        record_operations(&store);
        let body = crate::exposition::write(store.families(), crate::exposition::Format::Text);
        assert!(!body.contains("gen_ai_client"), "{body}");
        assert!(!body.contains("llm_"), "{body}");
        assert!(body.contains("gen_ai_server_request_duration_seconds_count{gen_ai_request_model=\"m\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\"} 2\n"), "{body}");
    }

    #[test]
    fn operation_families_are_never_served_under_their_own_names() {
        for list in [
            &[Naming::Llm][..],
            &[Naming::Vllm],
            &[Naming::Llm, Naming::Vllm],
        ] {
            let make = || {
                MetricStore::new(SeriesMaker::new(
                    vec![("service".into(), "chat".into())],
                    Namings::new(list).expect("profiles"),
                    Buckets::new(HashMap::new(), &[1.0]),
                ))
            };
            let (with, without) = (make(), make());
            for store in [&with, &without] {
                store
                    .counter(&Key::from_parts(
                        catalog::REQUESTS_TOTAL,
                        vec![Label::new("model", "m"), Label::new("status", "ok")],
                    ))
                    .increment(1);
            }
            for def in catalog::OPERATION_METRICS {
                let key = Key::from_parts(
                    def.name,
                    vec![
                        Label::new("model", "m"),
                        Label::new(catalog::OPERATION_LABEL, "chat"),
                        Label::new(catalog::PROVIDER_LABEL, "openai"),
                    ],
                );
                with.histogram(&key).record(2.0);
            }
            let body = |store: &MetricStore| {
                crate::exposition::write(store.families(), crate::exposition::Format::Text)
            };
            let (with, without) = (body(&with), body(&without));
            assert!(!with.contains("llm_operation"), "{list:?}: {with}");
            assert_eq!(with, without, "{list:?}");
        }
    }

    #[test]
    fn one_key_is_one_series() {
        let store = store();
        let key = Key::from_parts(catalog::TTFT_SECONDS, vec![Label::new("model", "m")]);
        store.histogram(&key).record(0.7);
        store.histogram(&key).record(0.2);
        let lines = summary(&store.families());
        assert!(lines.contains(&"llm_ttft_seconds help=true [service=\"chat\",model=\"m\"=[1, 2, 2]/0.8999999999999999/[\"0.5\", \"1\", \"+Inf\"]]".to_owned()), "{lines:?}");
    }

    #[test]
    fn every_profile_shows_one_reading_of_each_series_per_render() {
        let all = Namings::new(&[Naming::Llm, Naming::Vllm]).expect("profiles");
        let by_name = HashMap::from([(
            catalog::TTFT_SECONDS.to_owned(),
            BucketLayout::new(&[0.5, 1.0], vllm::buckets(catalog::TTFT_SECONDS), None),
        )]);
        let store = MetricStore::new(SeriesMaker::new(
            Vec::new(),
            all,
            Buckets::new(by_name, &[1.0]),
        ));
        let queue = store.gauge(
            &model_key(catalog::QUEUE_DEPTH, &[]),
            &meta("llm_span_layer"),
        );
        let tokens = store.counter(&model_key(catalog::TOKENS_TOTAL, &[("type", "input")]));
        let ttft = store.histogram(&model_key(catalog::TTFT_SECONDS, &[]));
        // One value per family name, whatever its type: a gauge's value, a counter's count,
        // a histogram's count.
        let value = |families: &[Family], name: &str| -> f64 {
            let family = families.iter().find(|f| &*f.name == name).expect(name);
            match &family.samples {
                Samples::Gauge(s) => s[0].1,
                Samples::Counter(s) => match s[0].1 {
                    CounterValue::Count(n) => n as f64,
                    other => panic!("{other:?}"),
                },
                Samples::Histogram { series, .. } => {
                    *series[0].1.cumulative.last().expect("+Inf") as f64
                }
            }
        };
        let pairs = [
            (catalog::QUEUE_DEPTH, "vllm:num_requests_waiting"),
            (catalog::TOKENS_TOTAL, "vllm:prompt_tokens_total"),
            (catalog::TOKENS_TOTAL, "vllm:prefix_cache_queries_total"),
            (catalog::TTFT_SECONDS, "vllm:time_to_first_token_seconds"),
        ];
        // A writer keeps every series moving while renders run; the renders stop it (also
        // when one of them panics, so that a failure ends the test).
        let stop = std::sync::atomic::AtomicBool::new(false);
        let differences = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    queue.increment(1.0);
                    tokens.increment(1);
                    ttft.record(0.3);
                    queue.decrement(1.0);
                }
            });
            let renders = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (0..2_000)
                    .flat_map(|_| {
                        let families = store.families();
                        pairs.map(|(llm, vllm)| {
                            (llm, vllm, value(&families, llm), value(&families, vllm))
                        })
                    })
                    .filter(|(_, _, llm, vllm)| llm != vllm)
                    .collect::<Vec<_>>()
            }));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            renders.expect("renders")
        });
        let count = differences.len();
        assert_eq!(
            count,
            0,
            "{count} differences, the first {:?}",
            &differences[..count.min(3)]
        );
    }
}

//! Metric handles, registered once per series and per recorder, then reused.
//!
//! A `counter!` with a dynamic label builds and hashes a key on every call; a cached
//! handle is one atomic add. Handles belong to the recorder they were registered
//! with, so [`RecorderHandles`] holds every handle registered with one recorder:
//! installing the recorder after the layer, or using a local recorder in tests, gets
//! fresh handles.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};

use crate::catalog::{self, Anomaly, FinishReason, Status, TokenType};
use crate::containers::labels::{LabelId, LabelSets};
use crate::containers::segments::Segments;
use crate::containers::table::{BoundedTable, BuildMixHasher};
use crate::decode::MAX_EXTRA_LABELS;

static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new("llm_span_layer", metrics::Level::INFO, Some(module_path!()));
/// The gauges of a label set in the pending table (see [`catalog::PENDING_GAUGE_TARGET`]).
static PENDING_METADATA: metrics::Metadata<'static> = metrics::Metadata::new(
    catalog::PENDING_GAUGE_TARGET,
    metrics::Level::INFO,
    Some(module_path!()),
);

/// Label values of one series: the model, then each allowlisted extra label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey(pub(crate) [LabelId; 1 + MAX_EXTRA_LABELS]);

/// Where a request's handles live: which recorder's handles, which series slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeriesRef {
    pub(crate) recorder: u8,
    pub(crate) slot: u32,
}

impl SeriesRef {
    const OVERFLOW_SLOT: u32 = u32::MAX;
    /// Where the slots of the pending table (label sets no request bound to yet) start;
    /// each table holds fewer entries than this.
    const PENDING_BASE: u32 = 1 << 31;

    /// The reference in one word, as a stream lane keeps it.
    #[inline]
    pub(crate) fn to_bits(self) -> u64 {
        u64::from(self.recorder) << 32 | u64::from(self.slot)
    }

    /// The reference [`to_bits`](Self::to_bits) gave.
    #[inline]
    pub(crate) fn from_bits(bits: u64) -> Self {
        Self {
            recorder: (bits >> 32) as u8,
            slot: bits as u32,
        }
    }
}

/// One label set: its gauges, shown from a request's start under the labels known so
/// far, and the rest of its handles, registered when a request first binds to it (so
/// that labels a request only passes through, such as `model="unknown"` before the
/// model is known, show up in the gauges alone).
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) active: Gauge,
    pub(crate) queue_depth: Gauge,
    labels: Vec<Label>,
    pricing: SeriesPricing,
    counted: OnceLock<Box<LabelSetHandles>>,
}

impl Series {
    fn register(
        recorder: &dyn Recorder,
        labels: Vec<Label>,
        pricing: SeriesPricing,
        metadata: &Metadata<'_>,
    ) -> Self {
        let gauge =
            |name| recorder.register_gauge(&Key::from_parts(name, labels.clone()), metadata);
        Self {
            active: gauge(catalog::ACTIVE_REQUESTS),
            queue_depth: gauge(catalog::QUEUE_DEPTH),
            pricing,
            counted: OnceLock::new(),
            labels,
        }
    }

    /// The counters and histograms, once a request bound to this label set.
    #[inline]
    pub(crate) fn counted(&self) -> Option<&LabelSetHandles> {
        self.counted.get().map(|c| &**c)
    }

    /// Registers the counters and histograms, once.
    pub(crate) fn register_counted(&self, recorder: &dyn Recorder) -> &LabelSetHandles {
        self.counted.get_or_init(|| {
            Box::new(LabelSetHandles::register(
                recorder,
                &self.labels,
                self.pricing,
            ))
        })
    }
}

/// The counters and histograms of one label set.
#[derive(Debug)]
pub(crate) struct LabelSetHandles {
    requests: [Counter; Status::COUNT],
    tokens: [Counter; TokenType::COUNT],
    pub(crate) cached_input: Counter,
    finish_reasons: [Counter; FinishReason::COUNT],
    /// Picodollars of priced requests; registered where priced requests can land.
    cost: Option<Counter>,
    /// Tokens of unpriced requests, by [`TokenType`]; where unpriced ones can land.
    unpriced: Option<[Counter; TokenType::COUNT]>,
    pub(crate) ttft: Histogram,
    pub(crate) e2e: Histogram,
    pub(crate) time_per_output_token: Histogram,
    pub(crate) tokens_per_second: Histogram,
    pub(crate) queue_wait: Histogram,
    pub(crate) kv_cache_hit_rate: Gauge,
    input_total: AtomicU64,
    cached_total: AtomicU64,
}

impl LabelSetHandles {
    fn register(recorder: &dyn Recorder, labels: &[Label], pricing: SeriesPricing) -> Self {
        let key = |name: &'static str, extra: Option<(&'static str, &'static str)>| {
            let mut all = labels.to_vec();
            if let Some((k, v)) = extra {
                all.push(Label::from_static_parts(k, v));
            }
            Key::from_parts(name, all)
        };
        let counter = |name, extra| recorder.register_counter(&key(name, extra), &METADATA);
        let histogram = |name| recorder.register_histogram(&key(name, None), &METADATA);
        let by_type = |name| {
            std::array::from_fn(|i| counter(name, Some(("type", TokenType::ALL[i].as_str()))))
        };
        let priced = matches!(pricing, SeriesPricing::Priced | SeriesPricing::Mixed);
        let unpriced = matches!(pricing, SeriesPricing::Unpriced | SeriesPricing::Mixed);
        Self {
            requests: std::array::from_fn(|i| {
                counter(
                    catalog::REQUESTS_TOTAL,
                    Some(("status", Status::ALL[i].as_str())),
                )
            }),
            tokens: by_type(catalog::TOKENS_TOTAL),
            cached_input: counter(catalog::CACHED_INPUT_TOKENS_TOTAL, None),
            finish_reasons: std::array::from_fn(|i| {
                counter(
                    catalog::FINISH_REASONS_TOTAL,
                    Some(("reason", FinishReason::ALL[i].as_str())),
                )
            }),
            cost: priced.then(|| counter(catalog::COST_PICO_USD_TOTAL, None)),
            unpriced: unpriced.then(|| by_type(catalog::UNPRICED_TOKENS_TOTAL)),
            ttft: histogram(catalog::TTFT_SECONDS),
            e2e: histogram(catalog::E2E_LATENCY_SECONDS),
            time_per_output_token: histogram(catalog::TIME_PER_OUTPUT_TOKEN_SECONDS),
            tokens_per_second: histogram(catalog::TOKENS_PER_SECOND),
            queue_wait: histogram(catalog::QUEUE_WAIT_SECONDS),
            kv_cache_hit_rate: recorder
                .register_gauge(&key(catalog::KV_CACHE_HIT_RATE, None), &METADATA),
            input_total: AtomicU64::new(0),
            cached_total: AtomicU64::new(0),
        }
    }

    /// Counts a finished request.
    pub(crate) fn count_request(&self, status: Status) {
        self.requests[status.index()].increment(1);
    }

    /// Counts a reported finish reason.
    pub(crate) fn count_finish_reason(&self, reason: FinishReason) {
        self.finish_reasons[reason.index()].increment(1);
    }

    /// Adds tokens of one type; those of an unpriced request to the unpriced counter too.
    pub(crate) fn add_tokens(&self, token_type: TokenType, count: u64, priced: bool) {
        if count == 0 {
            return;
        }
        self.tokens[token_type.index()].increment(count);
        if !priced {
            if let Some(unpriced) = &self.unpriced {
                unpriced[token_type.index()].increment(count);
            }
        }
    }

    /// Adds picodollars to the cost counter, in `u64` steps.
    pub(crate) fn add_cost(&self, mut pico: u128) {
        let Some(cost) = &self.cost else {
            return;
        };
        while pico > 0 {
            let step = u64::try_from(pico).unwrap_or(u64::MAX);
            cost.increment(step);
            pico -= u128::from(step);
        }
    }

    /// Adds a finished request's prompt tokens and refreshes the hit-rate gauge.
    pub(crate) fn add_cache_totals(&self, input: u64, cached: u64) {
        if input == 0 && cached == 0 {
            return;
        }
        if cached == 0 && self.cached_total.load(Ordering::Acquire) == 0 {
            // No cached token yet: the ratio is 0, which the gauge already shows.
            self.input_total.fetch_add(input, Ordering::Relaxed);
            return;
        }
        self.input_total.fetch_add(input, Ordering::Relaxed);
        self.cached_total
            .fetch_add(cached.min(input), Ordering::Relaxed);
        // Concurrent closes may set the gauge out of order; whoever sees the totals move
        // under it sets it again, so once traffic stops it holds the exact ratio.
        loop {
            let input_total = self.input_total.load(Ordering::Acquire);
            let cached_total = self.cached_total.load(Ordering::Acquire);
            if input_total > 0 {
                self.kv_cache_hit_rate
                    .set(cached_total as f64 / input_total as f64);
            }
            if self.input_total.load(Ordering::Acquire) == input_total
                && self.cached_total.load(Ordering::Acquire) == cached_total
            {
                break;
            }
        }
    }
}

/// Which operation series a request lands in: its label set's slot, its GenAI operation
/// and its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct OperationKey {
    pub(crate) slot: u32,
    pub(crate) operation: LabelId,
    pub(crate) provider: LabelId,
}

/// The [operation families](catalog::OPERATION_METRICS) of one label set, operation and
/// provider.
#[derive(Debug)]
pub(crate) struct OperationHandles {
    duration: [Histogram; Status::COUNT],
    pub(crate) ttft: Histogram,
    pub(crate) time_per_output_token: Histogram,
    tokens: [Histogram; TokenType::COUNT],
}

impl OperationHandles {
    fn register(
        recorder: &dyn Recorder,
        labels: &[Label],
        operation: &str,
        provider: &str,
    ) -> Self {
        let mut base = labels.to_vec();
        base.push(Label::new(catalog::OPERATION_LABEL, operation.to_owned()));
        base.push(Label::new(catalog::PROVIDER_LABEL, provider.to_owned()));
        let histogram = |name: &'static str, extra: Option<(&'static str, &'static str)>| {
            let mut all = base.clone();
            if let Some((k, v)) = extra {
                all.push(Label::from_static_parts(k, v));
            }
            recorder.register_histogram(&Key::from_parts(name, all), &METADATA)
        };
        Self {
            duration: std::array::from_fn(|i| {
                histogram(
                    catalog::OPERATION_DURATION_SECONDS,
                    Some(("status", Status::ALL[i].as_str())),
                )
            }),
            ttft: histogram(catalog::OPERATION_TTFT_SECONDS, None),
            time_per_output_token: histogram(
                catalog::OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS,
                None,
            ),
            tokens: std::array::from_fn(|i| {
                histogram(
                    catalog::OPERATION_TOKENS,
                    Some(("type", TokenType::ALL[i].as_str())),
                )
            }),
        }
    }

    /// The duration of a request that finished with `status`.
    pub(crate) fn duration(&self, status: Status) -> &Histogram {
        &self.duration[status.index()]
    }

    /// The tokens of one type of a request.
    pub(crate) fn record_tokens(&self, token_type: TokenType, count: u64) {
        self.tokens[token_type.index()].record(count as f64);
    }
}

/// Which of the cost and unpriced-token counters a series needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeriesPricing {
    /// Only priced requests land here (the model has a price).
    Priced,
    /// Only unpriced ones.
    Unpriced,
    /// Both: the overflow model, which any model may land in.
    Mixed,
}

/// Per-model state of engine gauges and model revisions.
#[derive(Debug)]
struct ModelGauges {
    kv_cache_usage: Gauge,
    /// The revision `llm_model_info` shows as 1, and its series, to set to 0 when the
    /// next one replaces it. Only the current one is kept: the layer's memory follows the
    /// models, not their rollouts (each (model, revision) pair stays a series in the
    /// recorder). Locked once per request that names a revision.
    shown: Mutex<Option<(LabelId, Gauge)>>,
}

/// What the layer needs to build series: label names, label texts and prices.
#[derive(Debug)]
pub(crate) struct SeriesConfig {
    pub(crate) extra_label_names: Vec<&'static str>,
    pub(crate) max_series: usize,
    pub(crate) max_models: usize,
    pub(crate) max_gpus: usize,
    /// The extra label that holds the GenAI provider, if one does.
    pub(crate) provider_label: Option<usize>,
}

/// Every handle registered with one recorder.
#[derive(Debug)]
pub(crate) struct RecorderHandles {
    recorder_key: usize,
    /// Label sets that requests bound to: the ones `max_series` caps.
    series: BoundedTable<SeriesKey, Box<Series>>,
    /// Gauges of label sets that requests not bound yet pass through (`tenant="unknown"`
    /// before authentication, say), kept apart so that they never take the place of a
    /// real combination. Capped at `max_series` as well.
    pending: BoundedTable<SeriesKey, Box<Series>>,
    /// Series slot by model id, when the model is the only label: skips hashing.
    by_model: Option<Segments<OnceLock<u32>>>,
    overflow: OnceLock<Box<Series>>,
    anomalies: [Counter; Anomaly::COUNT],
    models: BoundedTable<LabelId, ModelGauges>,
    gpus: BoundedTable<LabelId, Gauge>,
    /// The operation families by label set, operation and provider, registered as the
    /// first request of each finishes; capped at `max_series`.
    operations: BoundedTable<OperationKey, Box<OperationHandles>>,
    /// Where requests go once `operations` is full: every label `__overflow__`.
    operations_overflow: OnceLock<Box<OperationHandles>>,
}

fn mix_hash(value: impl Hash) -> u64 {
    BuildMixHasher.hash_one(value)
}

impl RecorderHandles {
    pub(crate) fn new(recorder_key: usize, recorder: &dyn Recorder, config: &SeriesConfig) -> Self {
        catalog::describe(recorder);
        let anomalies = std::array::from_fn(|i| {
            let key = Key::from_parts(
                catalog::LAYER_ANOMALIES_TOTAL,
                vec![Label::from_static_parts("reason", Anomaly::ALL[i].as_str())],
            );
            recorder.register_counter(&key, &METADATA)
        });
        Self {
            recorder_key,
            series: BoundedTable::with_max_len(config.max_series),
            pending: BoundedTable::with_max_len(config.max_series),
            by_model: config.extra_label_names.is_empty().then(Segments::new),
            overflow: OnceLock::new(),
            anomalies,
            models: BoundedTable::with_max_len(config.max_models + 2),
            gpus: BoundedTable::with_max_len(config.max_gpus + 2),
            operations: BoundedTable::with_max_len(config.max_series),
            operations_overflow: OnceLock::new(),
        }
    }

    pub(crate) fn recorder_key(&self) -> usize {
        self.recorder_key
    }

    pub(crate) fn count_anomaly(&self, anomaly: Anomaly, count: u32) {
        self.anomalies[anomaly.index()].increment(u64::from(count));
    }

    /// The series for `key`, registering it on first use, with its counters and
    /// histograms too when a request `binds` to it. A request not bound yet gets the
    /// gauges of a label set no request bound to from the pending table. `Err` carries
    /// the overflow series when the series cap is reached.
    pub(crate) fn series_for(
        &self,
        recorder_index: u8,
        key: SeriesKey,
        recorder: &dyn Recorder,
        labels: &LabelSets,
        config: &SeriesConfig,
        binds: bool,
    ) -> Result<SeriesRef, SeriesRef> {
        let found = self.find_series(recorder_index, key, recorder, labels, config, binds);
        if binds {
            let (Ok(series) | Err(series)) = found;
            if let Some(series) = self.series(series.slot) {
                series.register_counted(recorder);
            }
        }
        found
    }

    fn find_series(
        &self,
        recorder_index: u8,
        key: SeriesKey,
        recorder: &dyn Recorder,
        labels: &LabelSets,
        config: &SeriesConfig,
        binds: bool,
    ) -> Result<SeriesRef, SeriesRef> {
        let model = key.0[0];
        let cached = match &self.by_model {
            Some(by_model) if model.is_interned() => {
                by_model.get_or_alloc(model.raw() as usize, OnceLock::new)
            }
            _ => None,
        };
        if let Some(slot) = cached.and_then(OnceLock::get) {
            return Ok(SeriesRef {
                recorder: recorder_index,
                slot: *slot,
            });
        }
        let make = |metadata| {
            let pricing = match model {
                LabelId::OVERFLOW => SeriesPricing::Mixed,
                LabelId::UNKNOWN => SeriesPricing::Unpriced,
                id if labels.model.price(id).is_some() => SeriesPricing::Priced,
                _ => SeriesPricing::Unpriced,
            };
            let pairs = label_pairs(&key, labels, config);
            let series = Series::register(recorder, pairs, pricing, metadata);
            (key, Box::new(series))
        };
        let hash = mix_hash(key);
        let found = if binds {
            self.series
                .find_or_insert(hash, |k| *k == key, || make(&METADATA))
        } else if let Some(found) = self.series.find(hash, |k| *k == key) {
            Ok(found)
        } else {
            let pending =
                (self.pending).find_or_insert(hash, |k| *k == key, || make(&PENDING_METADATA));
            pending.map(|(slot, series)| (SeriesRef::PENDING_BASE + slot, series))
        };
        match found.map(|(slot, _)| slot) {
            Ok(slot) => {
                if let Some(cache) = cached.filter(|_| binds) {
                    let _ = cache.set(slot);
                }
                Ok(SeriesRef {
                    recorder: recorder_index,
                    slot,
                })
            }
            Err(_) => {
                self.overflow.get_or_init(|| {
                    let key = SeriesKey([LabelId::OVERFLOW; 1 + MAX_EXTRA_LABELS]);
                    Box::new(Series::register(
                        recorder,
                        label_pairs(&key, labels, config),
                        SeriesPricing::Mixed,
                        &METADATA,
                    ))
                });
                Err(SeriesRef {
                    recorder: recorder_index,
                    slot: SeriesRef::OVERFLOW_SLOT,
                })
            }
        }
    }

    pub(crate) fn series(&self, slot: u32) -> Option<&Series> {
        if slot == SeriesRef::OVERFLOW_SLOT {
            return self.overflow.get().map(|s| &**s);
        }
        if slot >= SeriesRef::PENDING_BASE {
            let pending = self.pending.get(slot - SeriesRef::PENDING_BASE);
            return pending.map(|(_, series)| &**series);
        }
        self.series.get(slot).map(|(_, series)| &**series)
    }

    /// The operation families of a bound label set (`key.slot`), an operation and a
    /// provider, registered on first use. `Err` carries the overflow ones when the
    /// operation series are at the series cap; `None` when the slot holds no series.
    pub(crate) fn operation(
        &self,
        mut key: OperationKey,
        recorder: &dyn Recorder,
        labels: &LabelSets,
        config: &SeriesConfig,
    ) -> Option<Result<&OperationHandles, &OperationHandles>> {
        let series = self.series(key.slot)?;
        if key.slot == SeriesRef::OVERFLOW_SLOT {
            // Past the series cap, everything about the request is overflow.
            key.operation = LabelId::OVERFLOW;
            key.provider = LabelId::OVERFLOW;
        }
        let make = || {
            let provider = match config.provider_label {
                // The label set already shows it: the same text, capped the same way.
                Some(index) => series
                    .labels
                    .get(index + 1)
                    .map_or(catalog::UNKNOWN_LABEL_VALUE, |label| label.value()),
                None => labels.provider.text(key.provider),
            };
            let operation = labels.operation.text(key.operation);
            let handles = OperationHandles::register(recorder, &series.labels, operation, provider);
            (key, Box::new(handles))
        };
        let found = self
            .operations
            .find_or_insert(mix_hash(key), |k| *k == key, make);
        Some(match found {
            Ok((_, handles)) => Ok(&**handles),
            Err(_) => Err(&**self.operations_overflow.get_or_init(|| {
                let key = SeriesKey([LabelId::OVERFLOW; 1 + MAX_EXTRA_LABELS]);
                Box::new(OperationHandles::register(
                    recorder,
                    &label_pairs(&key, labels, config),
                    catalog::OVERFLOW_LABEL_VALUE,
                    catalog::OVERFLOW_LABEL_VALUE,
                ))
            })),
        })
    }

    fn model_gauges(
        &self,
        model: LabelId,
        recorder: &dyn Recorder,
        labels: &LabelSets,
    ) -> Option<&ModelGauges> {
        let make = || {
            let key = Key::from_parts(
                catalog::KV_CACHE_USAGE_RATIO,
                vec![Label::new("model", labels.model.text(model).to_owned())],
            );
            let gauges = ModelGauges {
                kv_cache_usage: recorder.register_gauge(&key, &METADATA),
                shown: Mutex::new(None),
            };
            (model, gauges)
        };
        self.models
            .find_or_insert(mix_hash(model), |m| *m == model, make)
            .ok()
            .map(|(_, gauges)| gauges)
    }

    pub(crate) fn set_kv_cache_usage(
        &self,
        model: LabelId,
        ratio: f64,
        recorder: &dyn Recorder,
        labels: &LabelSets,
    ) {
        if let Some(gauges) = self.model_gauges(model, recorder, labels) {
            gauges.kv_cache_usage.set(ratio);
        }
    }

    pub(crate) fn set_gpu_memory(
        &self,
        gpu: LabelId,
        bytes: f64,
        recorder: &dyn Recorder,
        labels: &LabelSets,
    ) {
        let make = || {
            let key = Key::from_parts(
                catalog::GPU_MEMORY_USED_BYTES,
                vec![Label::new("gpu", labels.gpu.text(gpu).to_owned())],
            );
            (gpu, recorder.register_gauge(&key, &METADATA))
        };
        if let Ok((_, gauge)) = self.gpus.find_or_insert(mix_hash(gpu), |g| *g == gpu, make) {
            gauge.set(bytes);
        }
    }

    /// Marks `revision` as the current one of `model` in `llm_model_info`.
    pub(crate) fn publish_revision(
        &self,
        model: LabelId,
        revision: LabelId,
        recorder: &dyn Recorder,
        labels: &LabelSets,
    ) {
        let Some(gauges) = self.model_gauges(model, recorder, labels) else {
            return;
        };
        // The lock keeps two changes from both showing 1.
        let mut shown = gauges
            .shown
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if shown.as_ref().is_some_and(|(id, _)| *id == revision) {
            return;
        }
        let key = Key::from_parts(
            catalog::MODEL_INFO,
            vec![
                Label::new("model", labels.model.text(model).to_owned()),
                Label::new("revision", labels.revision.text(revision).to_owned()),
            ],
        );
        // A pair seen before gets its series back from the recorder (same key).
        let current = recorder.register_gauge(&key, &METADATA);
        current.set(1.0);
        if let Some((_, previous)) = shown.replace((revision, current)) {
            previous.set(0.0);
        }
    }
}

fn label_pairs(key: &SeriesKey, labels: &LabelSets, config: &SeriesConfig) -> Vec<Label> {
    let mut pairs = Vec::with_capacity(1 + config.extra_label_names.len());
    pairs.push(Label::new("model", labels.model.text(key.0[0]).to_owned()));
    for (index, name) in config.extra_label_names.iter().enumerate() {
        let text = labels
            .extra
            .get(index)
            .map_or(catalog::UNKNOWN_LABEL_VALUE, |set| {
                set.text(key.0[index + 1])
            });
        pairs.push(Label::new(*name, text.to_owned()));
    }
    pairs
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;

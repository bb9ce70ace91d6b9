//! The `tracing_subscriber::Layer` and its builder.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::Recorder;
use quanta::{Clock, Instant};
use tracing_core::callsite::Identifier;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Interest, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::callsites::CallsiteMap;
use crate::contract::{is_error_level, CallsiteSpec, Contract, Kind};
use crate::inflight::InFlight;
use crate::labels::{LabelId, LabelValues};
use crate::pricing::PriceTable;
use crate::series::{Binding, Pricing, Series, SeriesConfig, SeriesKey, SeriesRef};
use crate::state::{decode_rates, QueueState, RequestState, Tracked};
use crate::update::{
    Anomalies, Anomaly, FieldVisitor, LabelSets, Status, Update, MAX_EXTRA_LABELS,
};

/// How many distinct recorders one layer keeps handles for over its life.
const MAX_BINDINGS: usize = 8;
/// Slots of the cache of uninteresting callsites.
const UNINTERESTING_SLOTS: usize = 1024;
/// Spans in flight the table holds before state spills to span extensions.
const IN_FLIGHT: usize = 2048;
/// Distinct `gpu` label values.
const MAX_GPUS: usize = 64;
/// Label names the layer uses itself, which extra labels may not take.
const RESERVED_LABELS: [&str; 9] = [
    "model", "status", "type", "reason", "revision", "gpu", "le", "quantile", "job",
];

const DEFAULT_MAX_MODELS: usize = 100;
const DEFAULT_MAX_LABEL_VALUES: usize = 100;
const DEFAULT_MAX_SERIES: usize = 1000;

thread_local! {
    /// Whether this thread is inside one of the layer's callbacks.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside the layer until dropped. `None` when it already is:
/// a recorder that emits tracing events while the layer calls it would otherwise
/// re-enter the layer while it holds a lock, and the application would hang.
struct Reentry;

impl Reentry {
    fn enter() -> Option<Reentry> {
        // Lazily: a `Reentry` built and dropped here would clear the flag.
        IN_CALLBACK.with(|inside| (!inside.replace(true)).then(|| Reentry))
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        IN_CALLBACK.with(|inside| inside.set(false));
    }
}

enum RecorderSource {
    /// Whatever `metrics::with_recorder` gives at the time: local, then global, then no-op.
    Current,
    /// A recorder handed to the layer.
    Fixed(Arc<dyn Recorder + Send + Sync>),
}

/// A [`Layer`](tracing_subscriber::Layer) that turns spans of LLM inference into metrics.
///
/// Add it to the subscriber you already have; see the [crate documentation](crate) for
/// the span contract and the metrics it emits.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// use llm_span_layer::LlmSpanLayer;
///
/// let subscriber = tracing_subscriber::registry().with(LlmSpanLayer::new());
/// # drop(subscriber);
/// ```
pub struct LlmSpanLayer {
    contract: Contract,
    callsites: CallsiteMap,
    /// Addresses of callsites known not to matter, direct-mapped: the common case of
    /// an ordinary span or event costs one load.
    uninteresting: Box<[AtomicUsize]>,
    inflight: InFlight,
    labels: LabelSets,
    series_config: SeriesConfig,
    bindings: [OnceLock<Binding>; MAX_BINDINGS],
    binding_lock: Mutex<()>,
    source: RecorderSource,
    clock: Clock,
}

impl LlmSpanLayer {
    /// A layer with the default contract and limits, emitting to the current recorder.
    pub fn new() -> Self {
        Self::from_builder(LlmSpanLayerBuilder::default())
    }

    /// A builder for a layer with other limits, labels, prices, recorder or clock.
    pub fn builder() -> LlmSpanLayerBuilder {
        LlmSpanLayerBuilder::default()
    }

    fn from_builder(builder: LlmSpanLayerBuilder) -> Self {
        let extra = builder
            .extra_labels
            .iter()
            .map(|_| LabelValues::with_cap(builder.max_label_values))
            .collect();
        let series_config = SeriesConfig {
            extra_label_names: builder
                .extra_labels
                .iter()
                .map(|(_, label)| *label)
                .collect(),
            prices: builder.prices,
            max_series: builder.max_series,
            max_models: builder.max_models,
            max_revisions: builder.max_models,
            max_gpus: MAX_GPUS,
        };
        Self {
            contract: Contract {
                extra_labels: builder.extra_labels,
                request_span_names: builder.request_span_names,
                target_prefixes: builder.target_prefixes,
                queue_span_name: builder.queue_span_name,
            },
            callsites: CallsiteMap::new(),
            uninteresting: (0..UNINTERESTING_SLOTS)
                .map(|_| AtomicUsize::new(0))
                .collect(),
            inflight: InFlight::with_capacity(IN_FLIGHT),
            labels: LabelSets {
                model: LabelValues::with_cap(builder.max_models),
                revision: LabelValues::with_cap(builder.max_models),
                gpu: LabelValues::with_cap(MAX_GPUS),
                extra,
            },
            series_config,
            bindings: std::array::from_fn(|_| OnceLock::new()),
            binding_lock: Mutex::new(()),
            source: builder
                .recorder
                .map_or(RecorderSource::Current, RecorderSource::Fixed),
            clock: builder.clock.unwrap_or_default(),
        }
    }

    /// The class of a callsite; classifies it now if its registration is still under
    /// way on another thread.
    #[inline]
    fn callsite(&self, metadata: &'static Metadata<'static>) -> Option<&CallsiteSpec> {
        let address = metadata as *const Metadata<'static> as usize;
        let hint = &self.uninteresting[(address >> 4) & (UNINTERESTING_SLOTS - 1)];
        if hint.load(Ordering::Relaxed) == address {
            return None;
        }
        let id = metadata.callsite();
        let spec = match self.callsites.get(&id) {
            Some(spec) => spec,
            None => self
                .callsites
                .insert(&id, || self.contract.classify(metadata)),
        };
        if spec.is_none() {
            hint.store(address, Ordering::Relaxed);
        }
        spec
    }

    /// Runs `f` with the handles registered for the recorder in effect, creating them
    /// on first use. `None` only when more than [`MAX_BINDINGS`] recorders were seen.
    fn with_binding<R>(&self, f: impl FnOnce(u8, &Binding, &dyn Recorder) -> R) -> Option<R> {
        match &self.source {
            RecorderSource::Fixed(recorder) => {
                let recorder: &dyn Recorder = &**recorder;
                let binding = self.bindings[0]
                    .get_or_init(|| Binding::new(0, recorder, &self.series_config, &self.labels));
                Some(f(0, binding, recorder))
            }
            RecorderSource::Current => metrics::with_recorder(|recorder| {
                let key = recorder as *const dyn Recorder as *const () as usize;
                let index = self.binding_index(key, recorder)?;
                let binding = self.bindings[index].get()?;
                Some(f(index as u8, binding, recorder))
            }),
        }
    }

    fn binding_index(&self, key: usize, recorder: &dyn Recorder) -> Option<usize> {
        for (index, slot) in self.bindings.iter().enumerate() {
            match slot.get() {
                Some(binding) if binding.recorder_key() == key => return Some(index),
                Some(_) => continue,
                None => {
                    let _guard = self.binding_lock.lock().unwrap_or_else(|p| p.into_inner());
                    let binding = slot.get_or_init(|| {
                        Binding::new(key, recorder, &self.series_config, &self.labels)
                    });
                    if binding.recorder_key() == key {
                        return Some(index);
                    }
                }
            }
        }
        None
    }

    fn series(&self, series: SeriesRef) -> Option<&Series> {
        self.bindings
            .get(usize::from(series.binding))?
            .get()?
            .series(series.slot)
    }

    fn count(&self, anomalies: &Anomalies) {
        if anomalies.is_empty() {
            return;
        }
        self.with_binding(|_, binding, _| {
            for (reason, count) in anomalies.counts() {
                binding.count_anomaly(reason, count);
            }
        });
    }

    /// Binds the request to its series (labels fixed from now on) and counts it active.
    fn bind(&self, state: &mut RequestState, anomalies: &mut Anomalies) -> Option<SeriesRef> {
        if let Some(series) = state.series {
            return Some(series);
        }
        let model = state.model.or(state.response_model).unwrap_or_else(|| {
            anomalies.add(Anomaly::MissingModel);
            LabelId::UNKNOWN
        });
        let mut key = [LabelId::UNKNOWN; 1 + MAX_EXTRA_LABELS];
        key[0] = model;
        for (slot, label) in key[1..].iter_mut().zip(state.labels) {
            *slot = label.unwrap_or(LabelId::UNKNOWN);
        }
        let found = self.with_binding(|index, binding, recorder| {
            binding.series_for(
                index,
                SeriesKey(key),
                recorder,
                &self.labels,
                &self.series_config,
            )
        })?;
        let series_ref = found.unwrap_or_else(|overflow| {
            anomalies.add(Anomaly::SeriesOverflow);
            overflow
        });
        state.series = Some(series_ref);
        if let Some(series) = self.series(series_ref) {
            series.active.increment(1.0);
            state.active = true;
        }
        self.flush(state, anomalies);
        Some(series_ref)
    }

    /// Adds the request's newly reported token counts to the counters.
    fn flush(&self, state: &mut RequestState, anomalies: &mut Anomalies) {
        let Some(series) = state.series.and_then(|s| self.series(s)) else {
            return;
        };
        add_tokens(series, 0, state.input.take_increment(anomalies));
        add_tokens(series, 1, state.output.take_increment(anomalies));
        let cached = state.cached.take_increment(anomalies);
        if cached > 0 {
            series.cached_input.increment(cached);
        }
        if state.revision.is_some() && state.revision != state.published_revision {
            self.publish_revision(state);
        }
    }

    fn publish_revision(&self, state: &mut RequestState) {
        let (Some(model), Some(revision)) = (state.model.or(state.response_model), state.revision)
        else {
            return;
        };
        if model == LabelId::OVERFLOW || revision == LabelId::OVERFLOW {
            state.published_revision = state.revision;
            return;
        }
        let published = self.with_binding(|_, binding, recorder| {
            binding.publish_revision(model, revision, recorder, &self.labels)
        });
        if published.unwrap_or(false) {
            state.published_revision = state.revision;
        }
    }

    fn new_request(
        &self,
        attrs: &Attributes<'_>,
        spec: &CallsiteSpec,
    ) -> (RequestState, Anomalies) {
        let mut visitor = FieldVisitor::new(spec, &self.labels);
        attrs.record(&mut visitor);
        let update = visitor.update;
        let mut anomalies = update.anomalies;
        let mut state = RequestState::new(self.clock.now());
        state.apply_fields(&update);
        if state.model.is_some() || state.response_model.is_some() {
            self.bind(&mut state, &mut anomalies);
        }
        (state, anomalies)
    }

    fn finish_request(&self, state: &mut RequestState) {
        let mut anomalies = Anomalies::default();
        let end = state.completed.unwrap_or_else(|| self.clock.now());
        let series = self.bind(state, &mut anomalies);
        self.flush(state, &mut anomalies);
        if let Some(series) = series.and_then(|s| self.series(s)) {
            self.emit_final(series, state, end, &mut anomalies);
        }
        self.count(&anomalies);
    }

    fn emit_final(
        &self,
        series: &Series,
        state: &RequestState,
        end: Instant,
        anomalies: &mut Anomalies,
    ) {
        let (input, cached, output) = (
            state.input.counted,
            state.cached.counted,
            state.output.counted,
        );
        if cached > input {
            anomalies.add(Anomaly::TokenCountMismatch);
        }
        let status = state.final_status();
        series.requests[status as usize].increment(1);
        if let Some(reason) = state.finish_reason {
            series.finish_reasons[reason as usize].increment(1);
        }
        if status == Status::Ok {
            series.e2e.record(seconds(end, state.start));
            if let Some(first) = state.first_token {
                if let Some((per_token, per_second)) = decode_rates(seconds(end, first), output) {
                    series.time_per_output_token.record(per_token);
                    series.tokens_per_second.record(per_second);
                }
            }
        }
        if let Pricing::Priced { price, cost, carry } = &series.pricing {
            let micros = carry.add(price.cost_pico(input, cached, output));
            if micros > 0 {
                cost.increment(micros);
            }
        }
        series.add_cache_totals(input, cached);
        if state.active {
            series.active.decrement(1.0);
        }
    }

    /// Runs `f` on the tracked state of span `id`, wherever it lives.
    fn with_tracked<S, R>(
        &self,
        id: &Id,
        ctx: &Context<'_, S>,
        f: impl FnOnce(&mut Tracked) -> R,
    ) -> Option<R>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(mut entry) = self.inflight.get(id) {
            return entry.get().map(f);
        }
        if self.inflight.has_spilled() && self.inflight.may_contain(id) {
            let span = ctx.span(id)?;
            let mut extensions = span.extensions_mut();
            return extensions.get_mut::<Tracked>().map(f);
        }
        None
    }

    /// Keeps the state of a new span until it closes.
    fn track<S>(&self, id: &Id, tracked: Tracked, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Err(mut tracked) = self.inflight.insert(id, tracked) else {
            return;
        };
        match ctx.span(id) {
            Some(span) => {
                span.extensions_mut().insert(tracked);
                self.inflight.note_spilled(id);
            }
            // The span is gone already: finish it now so the gauges stay right.
            None => self.finish(&mut tracked),
        }
    }

    fn finish(&self, tracked: &mut Tracked) {
        match tracked {
            Tracked::Request(state) => self.finish_request(state),
            Tracked::Queue(queue) => self.finish_queue(queue),
        }
    }

    fn new_queue<S>(&self, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let start = self.clock.now();
        let mut anomalies = Anomalies::default();
        let mut series = None;
        for ancestor in span.scope().skip(1) {
            let found = self.with_tracked(&ancestor.id(), ctx, |tracked| match tracked {
                Tracked::Request(request) => Some(self.bind(request, &mut anomalies)),
                Tracked::Queue(_) => None,
            });
            if let Some(Some(bound)) = found {
                series = bound;
                break;
            }
        }
        self.count(&anomalies);
        // A queue span outside any request has no model to count it under.
        let Some(series_ref) = series else {
            return;
        };
        if let Some(series) = self.series(series_ref) {
            series.queue_depth.increment(1.0);
            let queue = Tracked::Queue(QueueState {
                start,
                series: series_ref,
            });
            self.track(id, queue, ctx);
        }
    }

    fn finish_queue(&self, queue: &QueueState) {
        if let Some(series) = self.series(queue.series) {
            series
                .queue_wait
                .record(seconds(self.clock.now(), queue.start));
            series.queue_depth.decrement(1.0);
        }
    }

    /// Applies an event to the nearest request span in its scope. Returns the
    /// request's model, or `None` when the event is outside any request.
    fn apply_event<S>(
        &self,
        event: &Event<'_>,
        update: &Update,
        ctx: &Context<'_, S>,
        anomalies: &mut Anomalies,
    ) -> Option<LabelId>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        for span in ctx.event_scope(event)? {
            let found = self.with_tracked(&span.id(), ctx, |tracked| {
                let Tracked::Request(state) = tracked else {
                    return None;
                };
                Some(self.apply_to_request(state, update, anomalies))
            });
            if let Some(Some(model)) = found {
                return Some(model);
            }
        }
        None
    }

    fn apply_to_request(
        &self,
        state: &mut RequestState,
        update: &Update,
        anomalies: &mut Anomalies,
    ) -> LabelId {
        let effects = state.apply_event(update, || self.clock.now(), anomalies);
        if effects.first_token || effects.streamed > 0 || state.series.is_some() {
            self.bind(state, anomalies);
        }
        if let Some(series) = state.series.and_then(|s| self.series(s)) {
            if effects.first_token {
                if let Some(first) = state.first_token {
                    series.ttft.record(seconds(first, state.start));
                }
            }
            add_tokens(series, 1, effects.streamed);
        }
        self.flush(state, anomalies);
        state
            .model
            .or(state.response_model)
            .unwrap_or(LabelId::UNKNOWN)
    }

    fn set_engine_gauges(&self, update: &Update, request_model: Option<LabelId>) {
        self.with_binding(|_, binding, recorder| {
            if let Some(bytes) = update.gpu_memory_used {
                let gpu = update.gpu.unwrap_or(LabelId::UNKNOWN);
                binding.set_gpu_memory(gpu, bytes, recorder, &self.labels);
            }
            if let Some(ratio) = update.kv_cache_usage {
                let model = update.model.or(request_model).unwrap_or(LabelId::UNKNOWN);
                binding.set_kv_cache_usage(model, ratio, recorder, &self.labels);
            }
        });
    }
}

/// Adds tokens of one type (0 input, 1 output) to a series and to its unpriced counter.
fn add_tokens(series: &Series, kind: usize, count: u64) {
    if count == 0 {
        return;
    }
    series.tokens[kind].increment(count);
    if let Pricing::Unpriced { tokens } = &series.pricing {
        tokens[kind].increment(count);
    }
}

fn seconds(end: Instant, start: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64()
}

impl Default for LlmSpanLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LlmSpanLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmSpanLayer")
            .field("contract", &self.contract)
            .field("callsites", &self.callsites)
            .field("models", &self.labels.model.len())
            .field("max_series", &self.series_config.max_series)
            .field("priced_models", &self.series_config.prices.len())
            .field(
                "recorder",
                &match self.source {
                    RecorderSource::Current => "current",
                    RecorderSource::Fixed(_) => "fixed",
                },
            )
            .finish_non_exhaustive()
    }
}

/// Finds the callsite of a `Record` from its first field.
struct FirstField(Option<Identifier>);

impl Visit for FirstField {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        if self.0.is_none() {
            self.0 = Some(field.callsite());
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for LlmSpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        let Some(_reentry) = Reentry::enter() else {
            return Interest::always();
        };
        self.callsites
            .insert(&metadata.callsite(), || self.contract.classify(metadata));
        // Never `never`: other layers must keep seeing everything they saw before.
        Interest::always()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(spec) = self.callsite(attrs.metadata()) else {
            return;
        };
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        match spec.kind {
            Kind::Request => {
                let (state, anomalies) = self.new_request(attrs, spec);
                self.track(id, Tracked::Request(state), &ctx);
                self.count(&anomalies);
            }
            Kind::Queue => self.new_queue(id, &ctx),
            Kind::RequestEvent | Kind::GaugeEvent => {}
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // Every request span is tracked from its creation: others end here.
        if !self.inflight.may_contain(id) {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        let mut first = FirstField(None);
        values.record(&mut first);
        let Some(callsite) = first.0 else {
            return;
        };
        let spec = match self.callsites.get(&callsite) {
            Some(spec) => spec,
            // Not seen yet: only possible while its registration races this record.
            None => ctx
                .metadata(id)
                .and_then(|metadata| self.callsite(metadata)),
        };
        let Some(spec) = spec else {
            return;
        };
        if spec.kind != Kind::Request {
            return;
        }
        let mut visitor = FieldVisitor::new(spec, &self.labels);
        values.record(&mut visitor);
        let update = visitor.update;
        let mut anomalies = update.anomalies;
        if update.touches_request() {
            self.with_tracked(id, &ctx, |tracked| {
                if let Tracked::Request(state) = tracked {
                    state.apply_fields(&update);
                    if state.model.is_some()
                        || state.response_model.is_some()
                        || state.series.is_some()
                    {
                        self.bind(state, &mut anomalies);
                    }
                    self.flush(state, &mut anomalies);
                }
            });
        }
        self.count(&anomalies);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let spec = self.callsite(metadata);
        let error = is_error_level(metadata);
        if spec.is_none() && !error {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        let mut update = match spec {
            Some(spec) => {
                let mut visitor = FieldVisitor::new(spec, &self.labels);
                event.record(&mut visitor);
                visitor.update
            }
            None => Update::default(),
        };
        update.error = error;
        let mut anomalies = update.anomalies;
        let updates_request = error || spec.is_some_and(|s| s.kind == Kind::RequestEvent);
        let needs_request_model = update.kv_cache_usage.is_some() && update.model.is_none();
        let mut request_model = None;
        if updates_request || needs_request_model {
            let request_update = if updates_request {
                update
            } else {
                Update::default()
            };
            request_model = self.apply_event(event, &request_update, &ctx, &mut anomalies);
            if request_model.is_none() && spec.is_some_and(|s| s.kind == Kind::RequestEvent) {
                anomalies.add(Anomaly::EventOutsideRequest);
            }
        }
        if spec.is_some_and(|s| s.sets_gauges) {
            self.set_engine_gauges(&update, request_model);
        }
        self.count(&anomalies);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        // One load answers for every span the layer does not track.
        if !self.inflight.may_contain(&id) {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        if self
            .inflight
            .remove_with(&id, |tracked| self.finish(tracked))
            .is_some()
        {
            return;
        }
        if self.inflight.has_spilled() {
            let removed = ctx
                .span(&id)
                .and_then(|span| span.extensions_mut().remove::<Tracked>());
            if let Some(mut tracked) = removed {
                self.inflight.note_unspilled(&id);
                self.finish(&mut tracked);
            }
        }
    }
}

/// Builds an [`LlmSpanLayer`] with other limits, labels, prices, recorder or clock.
///
/// ```
/// use llm_span_layer::{LlmSpanLayer, ModelPrice, PriceTable};
///
/// let prices = PriceTable::new()
///     .with_model("llama-3.1-8b", ModelPrice::usd_per_million_tokens(0.20, 0.60)?);
/// let layer = LlmSpanLayer::builder()
///     .with_prices(prices)
///     .with_label("tenant")
///     .with_max_models(20)
///     .build()?;
/// # drop(layer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LlmSpanLayerBuilder {
    extra_labels: Vec<(&'static str, &'static str)>,
    request_span_names: Vec<&'static str>,
    target_prefixes: Vec<&'static str>,
    queue_span_name: &'static str,
    prices: PriceTable,
    max_models: usize,
    max_label_values: usize,
    max_series: usize,
    recorder: Option<Arc<dyn Recorder + Send + Sync>>,
    clock: Option<Clock>,
}

impl Default for LlmSpanLayerBuilder {
    fn default() -> Self {
        Self {
            extra_labels: Vec::new(),
            request_span_names: Vec::new(),
            target_prefixes: Vec::new(),
            queue_span_name: Contract::default().queue_span_name,
            prices: PriceTable::new(),
            max_models: DEFAULT_MAX_MODELS,
            max_label_values: DEFAULT_MAX_LABEL_VALUES,
            max_series: DEFAULT_MAX_SERIES,
            recorder: None,
            clock: None,
        }
    }
}

impl fmt::Debug for LlmSpanLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmSpanLayerBuilder")
            .field("extra_labels", &self.extra_labels)
            .field("request_span_names", &self.request_span_names)
            .field("target_prefixes", &self.target_prefixes)
            .field("queue_span_name", &self.queue_span_name)
            .field("priced_models", &self.prices.len())
            .field("max_models", &self.max_models)
            .field("max_label_values", &self.max_label_values)
            .field("max_series", &self.max_series)
            .field("recorder", &self.recorder.as_ref().map(|_| "fixed"))
            .finish_non_exhaustive()
    }
}

impl LlmSpanLayerBuilder {
    /// Promotes the request-span field `field` to a label of the same name on every
    /// request metric. At most four extra labels; each takes at most
    /// [`with_max_label_values`](Self::with_max_label_values) values.
    pub fn with_label(self, field: &'static str) -> Self {
        self.with_label_as(field, field)
    }

    /// Promotes the request-span field `field` to the label `label`.
    pub fn with_label_as(mut self, field: &'static str, label: &'static str) -> Self {
        self.extra_labels.push((field, label));
        self
    }

    /// Also treats spans with this name as request spans, whatever fields they declare.
    pub fn with_request_span_name(mut self, name: &'static str) -> Self {
        self.request_span_names.push(name);
        self
    }

    /// Only spans whose target starts with one of these prefixes are request spans.
    pub fn with_target_prefix(mut self, prefix: &'static str) -> Self {
        self.target_prefixes.push(prefix);
        self
    }

    /// The name of queue-phase spans (default `queue`), children of a request span
    /// whose lifetime is the time the request waited for a slot.
    pub fn with_queue_span_name(mut self, name: &'static str) -> Self {
        self.queue_span_name = name;
        self
    }

    /// Prices per model, for `llm_cost_micro_usd_total`.
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Most distinct `model` values (default 100); further models are counted under
    /// `__overflow__`. Also caps distinct `revision` values.
    pub fn with_max_models(mut self, max: usize) -> Self {
        self.max_models = max;
        self
    }

    /// Most distinct values of each extra label (default 100).
    pub fn with_max_label_values(mut self, max: usize) -> Self {
        self.max_label_values = max;
        self
    }

    /// Most label combinations per recorder (default 1000); requests past it are
    /// counted in one series whose labels are all `__overflow__`.
    pub fn with_max_series(mut self, max: usize) -> Self {
        self.max_series = max;
        self
    }

    /// Emits to this recorder instead of the one current at each registration.
    ///
    /// Use it in tests: they create and drop recorders (the default cache knows a
    /// recorder by its address), and on a multi-thread runtime a local recorder (which
    /// is thread-local) cannot reach every thread.
    pub fn with_recorder(mut self, recorder: impl Recorder + Send + Sync + 'static) -> Self {
        self.recorder = Some(Arc::new(recorder));
        self
    }

    /// Reads time from this clock (tests use `quanta::Clock::mock()`).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<LlmSpanLayer, ConfigError> {
        for (setting, value) in [
            ("max_models", self.max_models),
            ("max_label_values", self.max_label_values),
            ("max_series", self.max_series),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { setting });
            }
        }
        if self.extra_labels.len() > MAX_EXTRA_LABELS {
            return Err(ConfigError::TooManyLabels {
                max: MAX_EXTRA_LABELS,
                given: self.extra_labels.len(),
            });
        }
        let contract = Contract::default();
        for (index, (field, label)) in self.extra_labels.iter().enumerate() {
            if !is_label_name(label) {
                return Err(ConfigError::InvalidLabelName { label });
            }
            if RESERVED_LABELS.contains(label) {
                return Err(ConfigError::ReservedLabelName { label });
            }
            if contract.is_contract_field(field) {
                return Err(ConfigError::ContractField { field });
            }
            if self.extra_labels[..index]
                .iter()
                .any(|(f, l)| f == field || l == label)
            {
                return Err(ConfigError::DuplicateLabel { label });
            }
        }
        Ok(LlmSpanLayer::from_builder(self))
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A layer configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit was set to zero.
    ZeroLimit {
        /// The builder setting.
        setting: &'static str,
    },
    /// More extra labels than the layer supports.
    TooManyLabels {
        /// The most allowed.
        max: usize,
        /// How many were given.
        given: usize,
    },
    /// Not a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, no leading `__`).
    InvalidLabelName {
        /// The label name.
        label: &'static str,
    },
    /// A label name the layer uses itself.
    ReservedLabelName {
        /// The label name.
        label: &'static str,
    },
    /// A field that already has a meaning in the span contract.
    ContractField {
        /// The field name.
        field: &'static str,
    },
    /// The same field or label name twice.
    DuplicateLabel {
        /// The label name.
        label: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroLimit { setting } => write!(f, "{setting} must be at least 1"),
            ConfigError::TooManyLabels { max, given } => {
                write!(f, "at most {max} extra labels are supported, {given} were given")
            }
            ConfigError::InvalidLabelName { label } => write!(
                f,
                "{label:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)"
            ),
            ConfigError::ReservedLabelName { label } => {
                write!(f, "label name {label:?} is used by the layer itself")
            }
            ConfigError::ContractField { field } => {
                write!(f, "field {field:?} already has a meaning in the span contract")
            }
            ConfigError::DuplicateLabel { label } => write!(f, "label {label:?} is given twice"),
        }
    }
}

impl std::error::Error for ConfigError {}

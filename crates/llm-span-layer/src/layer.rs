//! [`LlmSpanLayer`] and its `tracing_subscriber::Layer` callbacks: each decides in a few
//! loads whether a span or event matters, decodes its fields, finds the request it
//! belongs to (in the in-flight table, by span id or through the span's scope) and calls
//! the one method of the request lifecycle (`request/`) that says what happened, with
//! the layer's [`Sinks`] to emit through.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use metrics::Recorder;
use quanta::Clock;
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Interest, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::catalog::Anomaly;
use crate::containers::callsites::CallsiteMap;
use crate::containers::inflight::InFlight;
use crate::containers::labels::{LabelId, LabelSets, LabelValues};
use crate::contract::{is_error_level, CallsiteClass, Contract};
use crate::decode::{self, Anomalies, FieldVisitor, Update};
use crate::entered;
use crate::pricing::{PriceIndex, PriceTable};
use crate::recorders::{RecorderSource, Recorders};
use crate::reentry::Reentry;
use crate::request::{QueueState, Request, Tracked};
use crate::series::SeriesConfig;
use crate::sinks::Sinks;

/// Slots of the direct-mapped cache of callsites.
const HINT_SLOTS: usize = 1024;
/// Bits of a hint that hold the callsite's entry id (plus one); the rest hold a tag of
/// its address.
const HINT_ID_BITS: u32 = 24;

#[cfg(test)]
thread_local! {
    /// Callsites this thread found from their hint: the tests see the shortcut taken.
    pub(crate) static CALLSITE_HINT_HITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}
/// Spans in flight the in-flight table's first level holds; it grows past them.
const IN_FLIGHT_CAPACITY: usize = 2048;
/// Distinct `gpu` label values.
const MAX_GPUS: usize = 64;

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
    callsites: CallsiteMap<CallsiteClass>,
    /// Addresses of callsites known not to matter, direct-mapped: the common case of
    /// an ordinary span or event costs one load.
    uninteresting: Box<[AtomicUsize]>,
    /// Callsites that matter, direct-mapped by address: a tag of the address and the
    /// entry id in the callsite map, so that a request's callbacks skip the hash lookup
    /// (the entry's callsite is compared, so a stale hint is only a miss).
    hints: Box<[AtomicU64]>,
    /// The state of every open request and queue span.
    inflight: InFlight<Tracked>,
    /// What requests emit through: clock, labels, series, recorders.
    sinks: Sinks,
}

/// What a layer is made of: the builder's settings, checked (`LlmSpanLayerBuilder::build`).
pub(crate) struct LayerConfig {
    pub(crate) contract: Contract,
    pub(crate) prices: PriceTable,
    pub(crate) max_models: usize,
    pub(crate) max_label_values: usize,
    pub(crate) max_series: usize,
    /// `None`: the recorder current at each registration.
    pub(crate) recorder: Option<Arc<dyn Recorder + Send + Sync>>,
    pub(crate) clock: Option<Clock>,
}

impl LlmSpanLayer {
    /// A layer made of `config`.
    pub(crate) fn new_with(config: LayerConfig) -> Self {
        let LayerConfig {
            contract,
            prices,
            max_models,
            max_label_values,
            max_series,
            recorder,
            clock,
        } = config;
        let clock = clock.unwrap_or_default();
        let extra = contract
            .extra_labels
            .iter()
            .map(|_| LabelValues::with_cap(max_label_values))
            .collect();
        let series_config = SeriesConfig {
            extra_label_names: contract
                .extra_labels
                .iter()
                .map(|(_, label)| *label)
                .collect(),
            max_series,
            max_models,
            max_gpus: MAX_GPUS,
            provider_label: contract.provider_label(),
        };
        Self {
            contract,
            callsites: CallsiteMap::new(),
            uninteresting: (0..HINT_SLOTS).map(|_| AtomicUsize::new(0)).collect(),
            hints: (0..HINT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            inflight: InFlight::with_capacity(IN_FLIGHT_CAPACITY),
            sinks: Sinks::new(
                LabelSets {
                    model: LabelValues::with_cap(max_models),
                    prices: PriceIndex::new(&prices),
                    revision: LabelValues::with_cap(max_models),
                    gpu: LabelValues::with_cap(MAX_GPUS),
                    operation: LabelValues::with_cap(max_label_values),
                    provider: LabelValues::with_cap(max_label_values),
                    extra,
                },
                series_config,
                Recorders::new(recorder.map_or(RecorderSource::Current, RecorderSource::Fixed)),
                clock,
            ),
        }
    }

    /// The entry id and class of a callsite; classifies it now if its registration is
    /// still under way on another thread. `None`: not interesting.
    #[inline]
    pub(crate) fn callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> Option<(u32, &CallsiteClass)> {
        let address = metadata as *const Metadata<'static> as usize;
        let slot = (address >> 4) & (HINT_SLOTS - 1);
        if self.uninteresting[slot].load(Ordering::Relaxed) == address {
            return None;
        }
        let address = address as u64;
        let hint = &self.hints[slot];
        let tag = address >> 4 << HINT_ID_BITS;
        let seen = hint.load(Ordering::Relaxed);
        if seen != 0 && seen >> HINT_ID_BITS == tag >> HINT_ID_BITS {
            let entry = (seen & ((1 << HINT_ID_BITS) - 1)) as u32 - 1;
            if let Some((known, class)) = self.callsites.at(entry) {
                if *known == metadata.callsite() {
                    #[cfg(test)]
                    CALLSITE_HINT_HITS.with(|hits| hits.set(hits.get() + 1));
                    return class.map(|class| (entry, class));
                }
            }
        }
        let id = metadata.callsite();
        let (entry, class) = match self.callsites.get(&id) {
            Some(found) => found,
            None => self
                .callsites
                .insert(&id, || self.contract.classify(metadata))?,
        };
        match class {
            None => self.uninteresting[slot].store(address as usize, Ordering::Relaxed),
            Some(_) if entry + 1 < 1 << HINT_ID_BITS => {
                hint.store(tag | u64::from(entry + 1), Ordering::Relaxed)
            }
            Some(_) => {}
        }
        class.map(|class| (entry, class))
    }

    /// This layer's identity, for per-thread hints that must not cross layers.
    #[inline]
    fn key(&self) -> usize {
        self as *const LlmSpanLayer as usize
    }

    /// The class of a callsite entry id kept by a request.
    #[inline]
    fn class_at(&self, entry: u32) -> Option<&CallsiteClass> {
        self.callsites.at(entry).and_then(|(_, class)| class)
    }

    /// The tokens a tracked span's open stream lane holds, not folded yet.
    #[cfg(test)]
    pub(crate) fn lane_pending(&self, id: &Id) -> Option<u64> {
        self.inflight.lane_pending(id)
    }

    /// Whether the layer holds a state for span `id`.
    #[cfg(test)]
    pub(crate) fn tracks(&self, id: &Id) -> bool {
        self.inflight
            .get(id)
            .is_some_and(|mut entry| entry.get().is_some())
    }

    /// Runs `f` on the tracked state of span `id`.
    fn with_tracked<R>(&self, id: &Id, f: impl FnOnce(&mut Tracked) -> R) -> Option<R> {
        let mut entry = self.inflight.get(id)?;
        entry.get().map(f)
    }

    /// Starts tracking a new request span, with the fields it was created with.
    fn new_request(&self, id: &Id, attrs: &Attributes<'_>, callsite: u32, class: &CallsiteClass) {
        let sinks = &self.sinks;
        let start = sinks.now();
        let fill = |tracked: &mut Tracked| {
            let Tracked::Request(request) = tracked else {
                return Anomalies::default();
            };
            let mut update = Update::default();
            attrs.record(&mut FieldVisitor::new(class, sinks.labels(), &mut update));
            request.open(&update, sinks)
        };
        let init = || Tracked::Request(Request::new(start, callsite, id));
        let anomalies = self.inflight.insert(id, init, fill).unwrap_or_else(|| {
            // Every level full (billions of spans in flight): count it now rather
            // than leave a gauge up forever.
            let mut tracked = init();
            let anomalies = fill(&mut tracked);
            self.finish(&mut tracked);
            anomalies
        });
        sinks.count(&anomalies);
    }

    /// Starts a queue phase of the nearest enclosing request.
    fn new_queue<S>(&self, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let now = self.sinks.now();
        for ancestor in span.scope().skip(1) {
            let request = ancestor.id();
            let entered = self.with_tracked(&request, |tracked| match tracked {
                Tracked::Request(state) => {
                    state.enter_queue(now, &self.sinks);
                    true
                }
                Tracked::Queue(_) => false,
            });
            if entered == Some(true) {
                let queue = || Tracked::Queue(QueueState::new(request.clone()));
                if self.inflight.insert(id, queue, |_| ()).is_none() {
                    self.finish(&mut queue());
                }
                return;
            }
        }
        // A queue span outside any request has no request to count.
    }

    /// Finishes a span's state when it closes.
    fn finish(&self, tracked: &mut Tracked) {
        match tracked {
            Tracked::Request(request) => request.finish(&self.sinks),
            Tracked::Queue(queue) => self.finish_queue(queue),
        }
    }

    /// Ends a queue phase of its request.
    fn finish_queue(&self, queue: &QueueState) {
        let now = self.sinks.now();
        self.with_tracked(queue.request(), |tracked| {
            if let Tracked::Request(request) = tracked {
                request.exit_queue(now, &self.sinks);
            }
        });
    }

    /// Applies an event to the nearest request span in its scope. Returns the
    /// request's model, or `None` when the event is outside any request.
    fn apply_event<S>(
        &self,
        event: &Event<'_>,
        update: &Update,
        delta_event: bool,
        ctx: &Context<'_, S>,
        anomalies: &mut Anomalies,
    ) -> Option<LabelId>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        // The common case first: the event's own span (its parent, or the current span)
        // is the request. The current span comes from this thread's enter hint when it
        // holds (no registry lookup), else from the registry (one lookup where the scope
        // walk costs two).
        let own = if event.is_contextual() {
            entered::current(self.key()).or_else(|| ctx.current_span().id().cloned())
        } else {
            event.parent().cloned()
        };
        if let Some(Some(model)) =
            own.and_then(|id| self.apply_to_request(&id, update, delta_event, anomalies))
        {
            return Some(model);
        }
        for span in ctx.event_scope(event)? {
            if let Some(Some(model)) =
                self.apply_to_request(&span.id(), update, delta_event, anomalies)
            {
                return Some(model);
            }
        }
        None
    }

    /// Applies an event to span `id` if it is a tracked request: `Some(Some(model))`.
    /// A delta event (`delta_event`) opens the request's stream lane once it can.
    fn apply_to_request(
        &self,
        id: &Id,
        update: &Update,
        delta_event: bool,
        anomalies: &mut Anomalies,
    ) -> Option<Option<LabelId>> {
        let mut entry = self.inflight.get(id)?;
        let (Tracked::Request(request), lane) = entry.get_with_lane()? else {
            return Some(None);
        };
        let delta_lane = delta_event.then_some(lane);
        Some(Some(request.event(
            update,
            delta_lane,
            &self.sinks,
            anomalies,
        )))
    }

    /// A delta event of a request whose stream lane is open: its tokens and their cost
    /// counted without the request's lock. `false`: take the slow path.
    #[inline]
    fn stream_delta(&self, id: &Id, tokens: u64) -> bool {
        let Some(target) = self.inflight.stream(id, tokens) else {
            return false;
        };
        self.sinks.count_streamed(target, tokens);
        true
    }
}

impl fmt::Debug for LlmSpanLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmSpanLayer")
            .field("contract", &self.contract)
            .field("callsites", &self.callsites)
            .field("models", &self.sinks.labels().model.len())
            .field("max_series", &self.sinks.series_config().max_series)
            .field("priced_models", &self.sinks.labels().prices.len())
            .field(
                "recorder",
                &if self.sinks.recorder_is_fixed() {
                    "fixed"
                } else {
                    "current"
                },
            )
            .finish_non_exhaustive()
    }
}

impl<S> tracing_subscriber::Layer<S> for LlmSpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    #[cfg(feature = "opentelemetry")]
    fn on_register_dispatch(&self, dispatch: &tracing_core::Dispatch) {
        self.sinks.register_dispatch(dispatch);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        let Some(_reentry) = Reentry::enter() else {
            return Interest::always();
        };
        self.callsite(metadata);
        // Never `never`: other layers must keep seeing everything they saw before.
        Interest::always()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some((entry, class)) = self.callsite(attrs.metadata()) else {
            return;
        };
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        match class {
            CallsiteClass::Request { .. } => self.new_request(id, attrs, entry, class),
            CallsiteClass::Queue => self.new_queue(id, &ctx),
            CallsiteClass::RequestEvent { .. } | CallsiteClass::GaugeEvent { .. } => {}
        }
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        entered::enter(self.key(), id, self.inflight.may_contain(id));
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        entered::exit(id);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        // Every request span is tracked from its creation: others end here.
        if !self.inflight.may_contain(id) {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        // The request knows its callsite: one lock, one visit.
        let anomalies = self.with_tracked(id, |tracked| {
            let Tracked::Request(request) = tracked else {
                return Anomalies::default();
            };
            let Some(class) = self.class_at(request.callsite()) else {
                return Anomalies::default();
            };
            let mut update = Update::default();
            values.record(&mut FieldVisitor::new(
                class,
                self.sinks.labels(),
                &mut update,
            ));
            request.record(&update, &self.sinks)
        });
        if let Some(anomalies) = anomalies {
            self.sinks.count(&anomalies);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let class = self.callsite(metadata).map(|(_, class)| class);
        let error = is_error_level(metadata);
        if class.is_none() && !error {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        // A delta event inside its open request: the stream lane, no lock.
        let token_delta = class.and_then(CallsiteClass::token_delta);
        if let Some(index) = token_delta {
            if event.is_contextual() {
                if let Some(id) = entered::current(self.key()) {
                    if decode::plain_delta(event, index).is_some_and(|n| self.stream_delta(&id, n))
                    {
                        return;
                    }
                }
            }
        }
        let mut update = Update::default();
        if let Some(class) = class {
            event.record(&mut FieldVisitor::new(
                class,
                self.sinks.labels(),
                &mut update,
            ));
        }
        update.error = error;
        let mut anomalies = update.anomalies;
        let is_request_event = class.is_some_and(CallsiteClass::is_request_event);
        let updates_request = error || is_request_event;
        let needs_request_model = update.kv_cache_usage.is_some() && update.model.is_none();
        let mut request_model = None;
        if updates_request || needs_request_model {
            // A gauge-only event only looks for its request's model.
            let nothing;
            let request_update = if updates_request {
                &update
            } else {
                nothing = Update::default();
                &nothing
            };
            request_model = self.apply_event(
                event,
                request_update,
                token_delta.is_some(),
                &ctx,
                &mut anomalies,
            );
            if request_model.is_none() && is_request_event {
                anomalies.add(Anomaly::EventOutsideRequest);
            }
        }
        if class.is_some_and(CallsiteClass::sets_gauges) {
            self.sinks.set_engine_gauges(&update, request_model);
        }
        self.sinks.count(&anomalies);
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        // One load answers for every span the layer does not track.
        if !self.inflight.may_contain(&id) {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        // A request finishes where its state lies; a queue phase updates its request,
        // another slot, after this one is freed.
        let queue = self.inflight.remove_with(&id, |tracked| match tracked {
            Tracked::Request(request) => {
                request.finish(&self.sinks);
                None
            }
            Tracked::Queue(queue) => Some(queue.clone()),
        });
        if let Some(Some(queue)) = queue {
            self.finish_queue(&queue);
        }
    }
}

impl Drop for LlmSpanLayer {
    /// Finishes every request still open, as if its span closed now: a layer replaced
    /// at run time (`tracing_subscriber::reload`) leaves no gauge up and no request
    /// uncounted, and the spans' later callbacks go to a layer that ignores them.
    fn drop(&mut self) {
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        let mut open: Vec<Tracked> = self.inflight.drain().collect();
        // Requests end their own queue phases.
        for tracked in &mut open {
            if let Tracked::Request(request) = tracked {
                request.finish(&self.sinks);
            }
        }
    }
}

//! [`LlmSpanLayer`] and its `tracing_subscriber::Layer` callbacks: each decides in a few
//! loads whether a span or event matters, then hands it to the request lifecycle
//! (`request.rs`).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Recorder;
use quanta::Clock;
use tracing_core::callsite::Identifier;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Interest, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::builder::LlmSpanLayerBuilder;
use crate::catalog::Anomaly;
use crate::containers::callsites::CallsiteMap;
use crate::containers::inflight::InFlight;
use crate::containers::labels::{LabelSets, LabelValues};
use crate::contract::{is_error_level, CallsiteClass, Contract};
use crate::decode::{FieldVisitor, Update};
use crate::pricing::PriceIndex;
use crate::recorders::{RecorderSource, Recorders};
use crate::reentry::Reentry;
use crate::series::{RecorderHandles, Series, SeriesConfig, SeriesRef};
use crate::state::Tracked;

/// Slots of the cache of uninteresting callsites.
const UNINTERESTING_SLOTS: usize = 1024;
/// Spans in flight the table holds before state spills to span extensions.
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
    pub(crate) contract: Contract,
    callsites: CallsiteMap,
    /// Addresses of callsites known not to matter, direct-mapped: the common case of
    /// an ordinary span or event costs one load.
    uninteresting: Box<[AtomicUsize]>,
    pub(crate) inflight: InFlight,
    pub(crate) labels: LabelSets,
    pub(crate) series_config: SeriesConfig,
    recorders: Recorders,
    pub(crate) clock: Clock,
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

    pub(crate) fn from_builder(builder: LlmSpanLayerBuilder) -> Self {
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
            inflight: InFlight::with_capacity(IN_FLIGHT_CAPACITY),
            labels: LabelSets {
                model: LabelValues::with_cap(builder.max_models),
                prices: PriceIndex::new(&builder.prices),
                revision: LabelValues::with_cap(builder.max_models),
                gpu: LabelValues::with_cap(MAX_GPUS),
                extra,
            },
            series_config,
            recorders: Recorders::new(
                builder
                    .recorder
                    .map_or(RecorderSource::Current, RecorderSource::Fixed),
            ),
            clock: builder.clock.unwrap_or_default(),
        }
    }

    /// The class of a callsite; classifies it now if its registration is still under
    /// way on another thread.
    #[inline]
    fn callsite(&self, metadata: &'static Metadata<'static>) -> Option<&CallsiteClass> {
        let address = metadata as *const Metadata<'static> as usize;
        let hint = &self.uninteresting[(address >> 4) & (UNINTERESTING_SLOTS - 1)];
        if hint.load(Ordering::Relaxed) == address {
            return None;
        }
        let id = metadata.callsite();
        let class = match self.callsites.get(&id) {
            Some(class) => class,
            None => self
                .callsites
                .insert(&id, || self.contract.classify(metadata)),
        };
        if class.is_none() {
            hint.store(address, Ordering::Relaxed);
        }
        class
    }

    /// Runs `f` with the handles registered for the recorder in effect.
    pub(crate) fn with_handles<R>(
        &self,
        f: impl FnOnce(u8, &RecorderHandles, &dyn Recorder) -> R,
    ) -> Option<R> {
        self.recorders.with_handles(&self.series_config, f)
    }

    /// The handles of a series bound earlier.
    pub(crate) fn series(&self, series: SeriesRef) -> Option<&Series> {
        self.recorders.series(series)
    }
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
            .field("priced_models", &self.labels.prices.len())
            .field(
                "recorder",
                &if self.recorders.is_fixed() {
                    "fixed"
                } else {
                    "current"
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
        let Some(class) = self.callsite(attrs.metadata()) else {
            return;
        };
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        match class {
            CallsiteClass::Request { .. } => {
                let (state, anomalies) = self.new_request(attrs, class);
                self.track(id, Tracked::Request(state));
                self.count(&anomalies);
            }
            CallsiteClass::Queue => self.new_queue(id, &ctx),
            CallsiteClass::RequestEvent { .. } | CallsiteClass::GaugeEvent { .. } => {}
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
        let class = match self.callsites.get(&callsite) {
            Some(class) => class,
            // Not seen yet: only possible while its registration races this record.
            None => ctx
                .metadata(id)
                .and_then(|metadata| self.callsite(metadata)),
        };
        let Some(class) = class.filter(|class| class.is_request()) else {
            return;
        };
        let mut visitor = FieldVisitor::new(class, &self.labels);
        values.record(&mut visitor);
        let update = visitor.update;
        let mut anomalies = update.anomalies;
        if update.touches_request() {
            self.with_tracked(id, |tracked| {
                if let Tracked::Request(state) = tracked {
                    state.apply_fields(&update, &mut anomalies);
                    self.settle(state, &mut anomalies);
                }
            });
        }
        self.count(&anomalies);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let class = self.callsite(metadata);
        let error = is_error_level(metadata);
        if class.is_none() && !error {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        let mut update = match class {
            Some(class) => {
                let mut visitor = FieldVisitor::new(class, &self.labels);
                event.record(&mut visitor);
                visitor.update
            }
            None => Update::default(),
        };
        update.error = error;
        let mut anomalies = update.anomalies;
        let is_request_event = class.is_some_and(CallsiteClass::is_request_event);
        let updates_request = error || is_request_event;
        let needs_request_model = update.kv_cache_usage.is_some() && update.model.is_none();
        let mut request_model = None;
        if updates_request || needs_request_model {
            let request_update = if updates_request {
                update
            } else {
                Update::default()
            };
            request_model = self.apply_event(event, &request_update, &ctx, &mut anomalies);
            if request_model.is_none() && is_request_event {
                anomalies.add(Anomaly::EventOutsideRequest);
            }
        }
        if class.is_some_and(CallsiteClass::sets_gauges) {
            self.set_engine_gauges(&update, request_model);
        }
        self.count(&anomalies);
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        // One load answers for every span the layer does not track.
        if !self.inflight.may_contain(&id) {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        if let Some(mut tracked) = self.inflight.remove(&id) {
            self.finish(&mut tracked);
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
            if let Tracked::Request(state) = tracked {
                self.finish_request(state);
            }
        }
    }
}

//! The life of a request span, from creation to close: one [`Request`] per open request
//! span, whose fields only this module reads and writes.
//!
//! A request is [`Pending`] until it is *bound* (at its first token when its model is
//! known by then, else when the model becomes known, at the latest at close): its labels
//! may still change, only its gauges are shown, under the labels known so far, and move
//! when the labels do; the time to first token, input tokens and queue waits are held.
//! Binding makes it [`Bound`]: the labels are fixed, what was held is emitted, and from
//! then on tokens and cost are counted as they are reported; a label that changes is an
//! anomaly. [`Request::finish`] ends it when its span closes (or its layer goes away),
//! and the layer then drops it.
//!
//! The layer's callbacks decode a span's fields into an [`Update`] and call one method
//! named for what happened ([`Request::open`], [`Request::record`], [`Request::event`],
//! [`Request::enter_queue`], [`Request::exit_queue`], [`Request::finish`]); the request
//! writes its metrics through the layer's [`Sinks`]. What the request reported, and how
//! a report changes it, is in `report.rs`.

mod report;

use quanta::Instant;
use tracing_core::span::Id;

use crate::catalog::{self, Anomaly, FinishReason, Status, TokenType};
use crate::containers::inflight::FoldStreamed;
use crate::containers::labels::LabelId;
use crate::containers::lane::{LaneTarget, StreamLane, Streamed};
use crate::decode::{Anomalies, ModelRef, Operation, Update, MAX_EXTRA_LABELS};
use crate::exemplar::with_trace_at as recording;
use crate::exemplar::TraceContext;
use crate::pricing::ModelPrice;
use crate::series::{LabelSetHandles, OperationKey, SeriesKey, SeriesRef};
use crate::sinks::Sinks;

use report::{decode_rates, seconds, QueuePhases, TokenCount};

/// One open request span.
#[derive(Debug)]
pub(crate) struct Request {
    /// The span's callsite, by its entry id in the layer's callsite map.
    callsite: u32,
    start: Instant,
    /// What the request does: only a generation has a first token.
    operation: Operation,
    /// The operation's name and the provider, for the operation families.
    operation_name: Option<LabelId>,
    provider: Option<LabelId>,
    first_token: Option<Instant>,
    completed: Option<Instant>,
    model: Option<ModelRef>,
    response_model: Option<ModelRef>,
    labels: [Option<LabelId>; MAX_EXTRA_LABELS],
    revision: Option<LabelId>,
    input: TokenCount,
    output: TokenCount,
    cached: TokenCount,
    /// An output-token total was given at creation and no delta streamed since (see
    /// `apply_creation_fields`): that completes the request.
    output_declared: bool,
    /// Picodollars added to the cost counter for this request.
    cost_emitted: u128,
    queue: QueuePhases,
    finish_reason: Option<FinishReason>,
    status: Option<Status>,
    error: bool,
    /// For exemplars: the trace id and span id as the span's fields gave them.
    trace_id: Option<TraceContext>,
    span_id: Option<[u8; 8]>,
    phase: Phase,
}

/// Where a request is in its life.
#[derive(Debug)]
enum Phase {
    Pending(Pending),
    Bound(Bound),
}

/// A request whose labels are still open: only its gauges are shown.
#[derive(Debug)]
struct Pending {
    /// The series the request's gauges are shown under now.
    gauges_at: Option<SeriesRef>,
    /// The labels changed since `gauges_at` was chosen.
    labels_changed: bool,
    /// `gauges_at` is the overflow series: the labels are past the series cap.
    in_overflow: bool,
    /// Seconds of finished queue phases, held until the request binds.
    queue_wait: Option<f64>,
    /// The request's own span, to find its OpenTelemetry span when it binds.
    #[cfg(feature = "opentelemetry")]
    otel_span: Id,
}

/// A request whose labels are fixed: counters and histograms flow to its series.
#[derive(Debug)]
struct Bound {
    /// The label set's own series, where the gauges are shown and everything is counted
    /// (`None`: no recorder had room for it).
    series: Option<SeriesRef>,
    /// The revision published for the request's model (the stream lane waits for it).
    published_revision: Option<LabelId>,
}

impl Request {
    /// A request span created at `start`; `Request::open` gives it its fields.
    pub(crate) fn new(start: Instant, callsite: u32, _span: &Id) -> Self {
        Self {
            callsite,
            start,
            operation: Operation::Generation,
            operation_name: None,
            provider: None,
            first_token: None,
            completed: None,
            model: None,
            response_model: None,
            labels: [None; MAX_EXTRA_LABELS],
            revision: None,
            input: TokenCount::default(),
            output: TokenCount::default(),
            cached: TokenCount::default(),
            output_declared: false,
            cost_emitted: 0,
            queue: QueuePhases::default(),
            finish_reason: None,
            status: None,
            error: false,
            trace_id: None,
            span_id: None,
            phase: Phase::Pending(Pending {
                gauges_at: None,
                labels_changed: true,
                in_overflow: false,
                queue_wait: None,
                #[cfg(feature = "opentelemetry")]
                otel_span: _span.clone(),
            }),
        }
    }

    /// The span's callsite entry id, whose class decodes its later fields.
    #[inline]
    pub(crate) fn callsite(&self) -> u32 {
        self.callsite
    }

    /// The span was created with these fields: the request's gauges go up under the
    /// labels it names. Returns the anomalies seen.
    pub(crate) fn open(&mut self, update: &Update, sinks: &Sinks) -> Anomalies {
        let mut anomalies = update.anomalies;
        self.apply_creation_fields(update, &mut anomalies);
        self.place_gauges(sinks, false);
        anomalies
    }

    /// The span recorded these fields (`Span::record`). Returns the anomalies seen.
    pub(crate) fn record(&mut self, update: &Update, sinks: &Sinks) -> Anomalies {
        let mut anomalies = update.anomalies;
        self.apply_fields(update, || sinks.now(), &mut anomalies);
        self.settle(sinks, &mut anomalies);
        anomalies
    }

    /// An event in the request's scope. A delta event hands in the request's stream
    /// lane (`delta_lane`), which opens once the request can count deltas without its
    /// lock. Returns the label of the model the request counts under.
    pub(crate) fn event(
        &mut self,
        update: &Update,
        delta_lane: Option<&StreamLane>,
        sinks: &Sinks,
        anomalies: &mut Anomalies,
    ) -> LabelId {
        self.apply_event(update, || sinks.now(), anomalies);
        self.settle(sinks, anomalies);
        if let Some(lane) = delta_lane.filter(|lane| !lane.is_open()) {
            if let Some(target) = self.lane_target(sinks) {
                lane.open(target);
            }
        }
        self.effective_model().map_or(LabelId::UNKNOWN, |m| m.label)
    }

    /// A queue span of the request opened at `now`: the request counts in the queue
    /// depth while its outermost queue span is open.
    pub(crate) fn enter_queue(&mut self, now: Instant, sinks: &Sinks) {
        if self.queue.enter(now) {
            if let Some(series) = self.gauges_at().and_then(|s| sinks.series(s)) {
                series.queue_depth.increment(1.0);
            }
        }
    }

    /// A queue span of the request closed at `now`: when it was the outermost, the
    /// wait is observed, or held until the request binds.
    pub(crate) fn exit_queue(&mut self, now: Instant, sinks: &Sinks) {
        let Some(wait) = self.queue.exit(now) else {
            return;
        };
        if let Some(series) = self.gauges_at().and_then(|s| sinks.series(s)) {
            series.queue_depth.decrement(1.0);
        }
        match &mut self.phase {
            Phase::Pending(pending) => pending.hold_queue_wait(wait),
            Phase::Bound(_) => {
                if let Some(series) = self.counted(sinks) {
                    let trace = self.trace();
                    let at = trace.map(|_| sinks.unix_seconds(now));
                    recording(trace, at, || series.queue_wait.record(wait))
                }
            }
        }
    }

    /// The request's span closed (or its layer is going away): it binds if it had not,
    /// and is counted, with its status, finish reason, end-to-end latency and decode
    /// speed; its gauges go down.
    pub(crate) fn finish(&mut self, sinks: &Sinks) {
        let mut anomalies = Anomalies::default();
        let now = sinks.now();
        let end = self.completed.unwrap_or(now);
        // A queue phase still open ends with the request.
        if let Some(wait) = self.queue.end(now) {
            if let Phase::Pending(pending) = &mut self.phase {
                pending.hold_queue_wait(wait);
            }
            if let Some(series) = self.gauges_at().and_then(|s| sinks.series(s)) {
                series.queue_depth.decrement(1.0);
            }
        }
        self.bind(sinks, &mut anomalies);
        if let Some(series) = self.counted(sinks) {
            self.emit_final(series, end, sinks, &mut anomalies);
        }
        if let Some(series) = self.gauges_at().and_then(|s| sinks.series(s)) {
            series.active.decrement(1.0);
        }
        sinks.count(&anomalies);
    }

    /// Folds in tokens the request's stream lane counted: they are in the counters (and
    /// their cost too) already.
    fn absorb_streamed(&mut self, streamed: Streamed) {
        self.output.absorb(streamed.tokens);
        if let Some(price) = streamed.output_price {
            self.cost_emitted += u128::from(streamed.tokens) * u128::from(price);
        }
    }

    /// The series the request's gauges are shown under.
    #[inline]
    fn gauges_at(&self) -> Option<SeriesRef> {
        match &self.phase {
            Phase::Pending(pending) => pending.gauges_at,
            Phase::Bound(bound) => bound.series,
        }
    }

    /// The counters and histograms of a bound request.
    #[inline]
    fn counted<'s>(&self, sinks: &'s Sinks) -> Option<&'s LabelSetHandles> {
        let Phase::Bound(bound) = &self.phase else {
            return None;
        };
        sinks.counted_at(bound.series?)
    }

    /// After fields or an event changed the request: moves its gauges to new labels,
    /// binds it when it is ready, and counts what a bound request newly reported.
    fn settle(&mut self, sinks: &Sinks, anomalies: &mut Anomalies) {
        match self.phase {
            Phase::Bound(_) => self.count_new_tokens(sinks),
            Phase::Pending(_) if self.ready_to_bind() => self.bind(sinks, anomalies),
            Phase::Pending(_) => self.place_gauges(sinks, false),
        }
    }

    /// The series of the request's current labels (`unknown` for those not known yet),
    /// with its counters registered when the request `binds` to it.
    fn current_series(&self, sinks: &Sinks, binds: bool) -> Option<Result<SeriesRef, SeriesRef>> {
        let mut key = [LabelId::UNKNOWN; 1 + MAX_EXTRA_LABELS];
        key[0] = self.effective_model().map_or(LabelId::UNKNOWN, |m| m.label);
        for (slot, label) in key[1..].iter_mut().zip(self.labels) {
            *slot = label.unwrap_or(LabelId::UNKNOWN);
        }
        sinks.with_handles(|index, handles, recorder| {
            handles.series_for(
                index,
                SeriesKey(key),
                recorder,
                sinks.labels(),
                sinks.series_config(),
                binds,
            )
        })
    }

    /// Shows a pending request's gauges under its current labels, moving them if the
    /// labels changed; notes whether they are past the series cap (in the overflow
    /// series).
    fn place_gauges(&mut self, sinks: &Sinks, binds: bool) {
        let Phase::Pending(pending) = &self.phase else {
            return;
        };
        if !pending.labels_changed {
            return;
        }
        let Some(found) = self.current_series(sinks, binds) else {
            return;
        };
        let Phase::Pending(pending) = &mut self.phase else {
            return;
        };
        pending.labels_changed = false;
        pending.in_overflow = found.is_err();
        let (Ok(target) | Err(target)) = found;
        if pending.gauges_at != Some(target) {
            let queued = self.queue.is_open();
            if let Some(old) = pending.gauges_at.and_then(|s| sinks.series(s)) {
                old.active.decrement(1.0);
                if queued {
                    old.queue_depth.decrement(1.0);
                }
            }
            if let Some(new) = sinks.series(target) {
                new.active.increment(1.0);
                if queued {
                    new.queue_depth.increment(1.0);
                }
            }
            pending.gauges_at = Some(target);
        }
    }

    /// Fixes a pending request's labels and emits what was held for them.
    fn bind(&mut self, sinks: &Sinks, anomalies: &mut Anomalies) {
        let Phase::Pending(pending) = &mut self.phase else {
            return;
        };
        // The gauges move to the label set's own series, which gets its counters: they
        // may be in the pending table, in the overflow series (the pending table was
        // full) or with another recorder (the request opened before it was installed).
        pending.labels_changed = true;
        if self.effective_model().is_none() {
            anomalies.add(Anomaly::MissingModel);
        }
        self.place_gauges(sinks, true);
        let Phase::Pending(pending) = &mut self.phase else {
            return;
        };
        if pending.in_overflow {
            anomalies.add(Anomaly::SeriesOverflow);
        }
        let held_wait = pending.queue_wait.take();
        #[cfg(feature = "opentelemetry")]
        let otel_span = pending.otel_span.clone();
        self.phase = Phase::Bound(Bound {
            series: pending.gauges_at,
            published_revision: None,
        });
        let Some(series) = self.counted(sinks) else {
            return;
        };
        // Once, when the first sample is due: by then the OpenTelemetry span exists.
        #[cfg(feature = "opentelemetry")]
        if self.trace_id.is_none() {
            self.trace_id = sinks.trace_of(&otel_span);
        }
        let trace = self.trace();
        if let Some(first) = self.first_token {
            let at = trace.map(|_| sinks.unix_seconds(first));
            recording(trace, at, || series.ttft.record(seconds(first, self.start)));
        }
        if let Some(wait) = held_wait {
            let at = trace.map(|_| sinks.unix_seconds(sinks.now()));
            recording(trace, at, || series.queue_wait.record(wait));
        }
        self.count_new_tokens(sinks);
    }

    /// Adds what a bound request reported since the last call to the token and cost
    /// counters (no I/O: the recorder's handles are atomics).
    fn count_new_tokens(&mut self, sinks: &Sinks) {
        let Phase::Bound(bound) = &self.phase else {
            return;
        };
        let published_revision = bound.published_revision;
        let Some(series) = self.counted(sinks) else {
            return;
        };
        let price = sinks.price_of(self.effective_model());
        let input = self.input.take();
        // Cached tokens are a subset of input tokens: never more in the counters.
        let cached = self.cached.take_up_to(self.input.emitted());
        let output = self.output.take();
        series.add_tokens(TokenType::Input, input, price.is_some());
        series.add_tokens(TokenType::Output, output, price.is_some());
        if cached > 0 {
            series.cached_input.increment(cached);
        }
        if let Some(price) = price {
            let cost = price.cost_pico(
                self.input.emitted(),
                self.cached.emitted(),
                self.output.emitted(),
            );
            if cost > self.cost_emitted {
                series.add_cost(cost - self.cost_emitted);
                self.cost_emitted = cost;
            }
        }
        if self.revision.is_some() && self.revision != published_revision {
            self.publish_revision(sinks);
        }
    }

    fn publish_revision(&mut self, sinks: &Sinks) {
        let (Some(model), Some(revision)) = (self.effective_model(), self.revision) else {
            return;
        };
        let Phase::Bound(bound) = &mut self.phase else {
            return;
        };
        // Once per request, shown or not (a revision past the cap was counted as
        // `label_overflow` when interned): the stream lane waits for it.
        bound.published_revision = self.revision;
        if model.label == LabelId::OVERFLOW || revision == LabelId::OVERFLOW {
            return;
        }
        sinks.with_handles(|_, handles, recorder| {
            handles.publish_revision(model.label, revision, recorder, sinks.labels())
        });
    }

    fn emit_final(
        &self,
        series: &LabelSetHandles,
        end: Instant,
        sinks: &Sinks,
        anomalies: &mut Anomalies,
    ) {
        if self.cached.known() > self.input.known() {
            anomalies.add(Anomaly::TokenCountMismatch);
        }
        let status = self.final_status();
        series.count_request(status);
        if let Some(reason) = self.finish_reason {
            series.count_finish_reason(reason);
        }
        let ok = status == Status::Ok;
        let decode = self
            .first_token
            .filter(|_| ok)
            .and_then(|first| decode_rates(seconds(end, first), self.output.emitted()));
        let trace = self.trace();
        let at = trace.map(|_| sinks.unix_seconds(end));
        if ok {
            recording(trace, at, || series.e2e.record(seconds(end, self.start)));
            if let Some((per_token, per_second)) = decode {
                series.time_per_output_token.record(per_token);
                series.tokens_per_second.record(per_second);
            }
        }
        series.add_cache_totals(self.input.emitted(), self.cached.emitted());
        if catalog::operation_metrics_enabled() {
            let per_token = decode.map(|(per_token, _)| per_token);
            self.emit_operation(status, end, per_token, sinks, anomalies);
        }
    }

    /// The request in the operation families: its duration whatever its status, its time
    /// to first token and decode time when it succeeded, and the tokens it reported.
    fn emit_operation(
        &self,
        status: Status,
        end: Instant,
        per_token: Option<f64>,
        sinks: &Sinks,
        anomalies: &mut Anomalies,
    ) {
        let Some(bound) = self.gauges_at() else {
            return;
        };
        let key = OperationKey {
            slot: bound.slot,
            operation: self.operation_name.unwrap_or(LabelId::UNKNOWN),
            // An allowlisted provider is in the label set already.
            provider: match sinks.series_config().provider_label {
                Some(_) => LabelId::UNKNOWN,
                None => self.provider.unwrap_or(LabelId::UNKNOWN),
            },
        };
        let trace = self.trace();
        let at = trace.map(|_| sinks.unix_seconds(end));
        let overflowed = sinks.with_handles(|index, handles, recorder| {
            // The request's series belong to the recorder it bound with.
            if index != bound.recorder {
                return false;
            }
            let found = handles.operation(key, recorder, sinks.labels(), sinks.series_config());
            let Some(Ok(operation) | Err(operation)) = found else {
                return false;
            };
            recording(trace, at, || {
                operation.duration(status).record(seconds(end, self.start))
            });
            if status == Status::Ok {
                if let Some(first) = self.first_token {
                    let at = trace.map(|_| sinks.unix_seconds(first));
                    recording(trace, at, || {
                        operation.ttft.record(seconds(first, self.start))
                    });
                }
                if let Some(per_token) = per_token {
                    operation.time_per_output_token.record(per_token);
                }
            }
            if self.input.reported() {
                operation.record_tokens(TokenType::Input, self.input.emitted());
            }
            if self.output.reported() || self.output_declared || self.output.known() > 0 {
                operation.record_tokens(TokenType::Output, self.output.emitted());
            }
            matches!(found, Some(Err(_)))
        });
        if overflowed == Some(true) {
            anomalies.add(Anomaly::SeriesOverflow);
        }
    }

    /// Where the request's delta events can count without its lock, once nothing about
    /// them depends on its state: bound (so past its first token, while it is open) and
    /// its revision published.
    fn lane_target(&self, sinks: &Sinks) -> Option<LaneTarget> {
        let Phase::Bound(bound) = &self.phase else {
            return None;
        };
        if self.revision != bound.published_revision {
            return None;
        }
        let series = bound.series?;
        sinks.counted_at(series)?;
        let output_price = sinks
            .price_of(self.effective_model())
            .map(ModelPrice::output_pico);
        Some(LaneTarget {
            series: series.to_bits(),
            output_price,
        })
    }
}

impl Pending {
    /// A finished queue phase's wait, held until the request binds.
    fn hold_queue_wait(&mut self, wait: f64) {
        self.queue_wait = Some(self.queue_wait.unwrap_or(0.0) + wait);
    }
}

/// One open queue-phase span: the request span it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct QueueState {
    request: Id,
}

impl QueueState {
    pub(crate) fn new(request: Id) -> Self {
        Self { request }
    }

    /// The request span the queue phase belongs to.
    pub(crate) fn request(&self) -> &Id {
        &self.request
    }
}

/// What the layer keeps per tracked span.
#[derive(Debug)]
// Boxing the request state would allocate on every request; queue states are rare.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Tracked {
    Request(Request),
    Queue(QueueState),
}

impl FoldStreamed for Tracked {
    #[inline]
    fn fold_streamed(&mut self, streamed: Streamed) {
        if let Tracked::Request(request) = self {
            request.absorb_streamed(streamed);
        }
    }
}

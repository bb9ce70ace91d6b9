//! The life of a request span, from creation to close.
//!
//! Until a request is *bound* (at its first token when its model is known by then,
//! else when the model becomes known, at the latest at close), its labels may still
//! change: only its gauges are shown, under the labels known so far, and move when the
//! labels do. Binding fixes the labels and emits what was held (input tokens, the time
//! to first token, queue waits); from then on tokens and cost are counted as they are
//! reported, and a label that changes is an anomaly.

use quanta::Instant;
use tracing_core::span::{Attributes, Id};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::catalog::{self, Anomaly, Status, TokenType};
use crate::containers::labels::LabelId;
use crate::containers::lane::LaneTarget;
use crate::contract::CallsiteClass;
use crate::decode::{Anomalies, FieldVisitor, Update, MAX_EXTRA_LABELS};
use crate::exemplar::with_trace_at as recording;
use crate::layer::LlmSpanLayer;
use crate::pricing::ModelPrice;
use crate::series::{LabelSetHandles, OperationKey, SeriesKey, SeriesRef};
use crate::state::{decode_rates, seconds, QueueState, RequestState, Tracked};

impl LlmSpanLayer {
    /// Counts the anomalies one callback saw.
    pub(crate) fn count(&self, anomalies: &Anomalies) {
        if anomalies.is_empty() {
            return;
        }
        self.with_handles(|_, handles, _| {
            for (anomaly, count) in anomalies.counts() {
                handles.count_anomaly(anomaly, count);
            }
        });
    }

    /// Starts tracking a new request span; its gauges go up under the labels it names.
    pub(crate) fn new_request(
        &self,
        id: &Id,
        attrs: &Attributes<'_>,
        callsite: u32,
        class: &CallsiteClass,
    ) {
        let start = self.clock.now();
        let fill = |tracked: &mut Tracked| {
            let Tracked::Request(state) = tracked else {
                return Anomalies::default();
            };
            let mut update = Update::default();
            attrs.record(&mut FieldVisitor::new(class, &self.labels, &mut update));
            let mut anomalies = update.anomalies;
            state.apply_creation_fields(&update, &mut anomalies);
            self.place_gauges(state, false);
            anomalies
        };
        let init = || Tracked::Request(RequestState::new(start, callsite, id));
        let anomalies = self.inflight.insert(id, init, fill).unwrap_or_else(|| {
            // Every level full (billions of spans in flight): count it now rather
            // than leave a gauge up forever.
            let mut tracked = init();
            let anomalies = fill(&mut tracked);
            self.finish(&mut tracked);
            anomalies
        });
        self.count(&anomalies);
    }

    /// After fields or an event changed a request: moves its gauges to new labels,
    /// binds it when it is ready, and counts what a bound request newly reported.
    pub(crate) fn settle(&self, state: &mut RequestState, anomalies: &mut Anomalies) {
        if state.bound {
            self.count_new_tokens(state);
            return;
        }
        if state.ready_to_bind() {
            self.bind(state, anomalies);
        } else {
            self.place_gauges(state, false);
        }
    }

    /// The series of the request's current labels (`unknown` for those not known yet),
    /// with its counters registered when the request `binds` to it.
    fn current_series(
        &self,
        state: &RequestState,
        binds: bool,
    ) -> Option<Result<SeriesRef, SeriesRef>> {
        let mut key = [LabelId::UNKNOWN; 1 + MAX_EXTRA_LABELS];
        key[0] = state
            .effective_model()
            .map_or(LabelId::UNKNOWN, |m| m.label);
        for (slot, label) in key[1..].iter_mut().zip(state.labels) {
            *slot = label.unwrap_or(LabelId::UNKNOWN);
        }
        self.with_handles(|index, handles, recorder| {
            handles.series_for(
                index,
                SeriesKey(key),
                recorder,
                &self.labels,
                &self.series_config,
                binds,
            )
        })
    }

    /// Shows the request's gauges under its current labels, moving them if the labels
    /// changed; notes whether they are past the series cap (in the overflow series).
    fn place_gauges(&self, state: &mut RequestState, binds: bool) {
        if !state.labels_changed {
            return;
        }
        let Some(found) = self.current_series(state, binds) else {
            return;
        };
        state.labels_changed = false;
        state.in_overflow = found.is_err();
        let (Ok(target) | Err(target)) = found;
        if state.gauges_at != Some(target) {
            let queued = state.queue.open > 0;
            if let Some(old) = state.gauges_at.and_then(|s| self.series(s)) {
                old.active.decrement(1.0);
                if queued {
                    old.queue_depth.decrement(1.0);
                }
            }
            if let Some(new) = self.series(target) {
                new.active.increment(1.0);
                if queued {
                    new.queue_depth.increment(1.0);
                }
            }
            state.gauges_at = Some(target);
        }
    }

    /// Fixes the request's labels and emits what was held for them.
    fn bind(&self, state: &mut RequestState, anomalies: &mut Anomalies) {
        if state.bound {
            return;
        }
        if state.effective_model().is_none() {
            anomalies.add(Anomaly::MissingModel);
        }
        // The gauges move to the label set's own series, which gets its counters: they
        // may be in the pending table, in the overflow series (the pending table was
        // full) or with another recorder (the request opened before it was installed).
        state.labels_changed = true;
        self.place_gauges(state, true);
        if state.in_overflow {
            anomalies.add(Anomaly::SeriesOverflow);
        }
        state.bound = true;
        let Some(series) = self.counted(state) else {
            return;
        };
        #[cfg(feature = "opentelemetry")]
        if let Some(span) = state.otel_lookup.take() {
            // Once, when the first sample is due: by then the OpenTelemetry span exists.
            if state.trace_id.is_none() {
                state.trace_id = self.otel.trace_of(&span);
            }
        }
        let trace = state.trace();
        if let Some(first) = state.first_token {
            if !std::mem::replace(&mut state.ttft_recorded, true) {
                let at = trace.map(|_| self.wall_clock.unix_seconds(first));
                recording(trace, at, || {
                    series.ttft.record(seconds(first, state.start))
                });
            }
        }
        if std::mem::take(&mut state.queue.held) {
            let wait = std::mem::take(&mut state.queue.held_seconds);
            let at = trace.map(|_| self.wall_clock.unix_seconds(self.clock.now()));
            recording(trace, at, || series.queue_wait.record(wait));
        }
        self.count_new_tokens(state);
    }

    /// Adds what a bound request reported since the last call to the token and cost
    /// counters (no I/O: the recorder's handles are atomics).
    fn count_new_tokens(&self, state: &mut RequestState) {
        let Some(series) = self.counted(state) else {
            return;
        };
        let price = state
            .effective_model()
            .and_then(|m| m.price)
            .and_then(|id| self.labels.prices.get(id));
        let input = state.input.take();
        // Cached tokens are a subset of input tokens: never more in the counters.
        let cached = state.cached.take_up_to(state.input.emitted);
        let output = state.output.take();
        series.add_tokens(TokenType::Input, input, price.is_some());
        series.add_tokens(TokenType::Output, output, price.is_some());
        if cached > 0 {
            series.cached_input.increment(cached);
        }
        if let Some(price) = price {
            let cost = price.cost_pico(
                state.input.emitted,
                state.cached.emitted,
                state.output.emitted,
            );
            if cost > state.cost_emitted {
                series.add_cost(cost - state.cost_emitted);
                state.cost_emitted = cost;
            }
        }
        if state.revision.is_some() && state.revision != state.published_revision {
            self.publish_revision(state);
        }
    }

    fn publish_revision(&self, state: &mut RequestState) {
        let (Some(model), Some(revision)) = (state.effective_model(), state.revision) else {
            return;
        };
        // Once per request, shown or not (a revision past the cap was counted as
        // `label_overflow` when interned): the stream lane waits for it.
        state.published_revision = state.revision;
        if model.label == LabelId::OVERFLOW || revision == LabelId::OVERFLOW {
            return;
        }
        self.with_handles(|_, handles, recorder| {
            handles.publish_revision(model.label, revision, recorder, &self.labels)
        });
    }

    /// Counts a request whose span closed (or whose layer is going away).
    pub(crate) fn finish_request(&self, state: &mut RequestState) {
        let mut anomalies = Anomalies::default();
        let now = self.clock.now();
        let end = state.completed.unwrap_or(now);
        // A queue phase still open ends with the request.
        if let Some(wait) = state.end_queue(now) {
            state.queue.held = true;
            state.queue.held_seconds += wait;
            if let Some(series) = state.gauges_at.and_then(|s| self.series(s)) {
                series.queue_depth.decrement(1.0);
            }
        }
        self.bind(state, &mut anomalies);
        if let Some(series) = self.counted(state) {
            self.emit_final(series, state, end, &mut anomalies);
        }
        if let Some(series) = state.gauges_at.and_then(|s| self.series(s)) {
            series.active.decrement(1.0);
        }
        self.count(&anomalies);
    }

    /// The counters and histograms of a bound request.
    fn counted(&self, state: &RequestState) -> Option<&LabelSetHandles> {
        self.counted_at(state.gauges_at?)
    }

    fn counted_at(&self, series: SeriesRef) -> Option<&LabelSetHandles> {
        self.series(series)?.counted()
    }

    fn emit_final(
        &self,
        series: &LabelSetHandles,
        state: &RequestState,
        end: Instant,
        anomalies: &mut Anomalies,
    ) {
        if state.cached.known > state.input.known {
            anomalies.add(Anomaly::TokenCountMismatch);
        }
        let status = state.final_status();
        series.count_request(status);
        if let Some(reason) = state.finish_reason {
            series.count_finish_reason(reason);
        }
        let ok = status == Status::Ok;
        let decode = state
            .first_token
            .filter(|_| ok)
            .and_then(|first| decode_rates(seconds(end, first), state.output.emitted));
        let trace = state.trace();
        let at = trace.map(|_| self.wall_clock.unix_seconds(end));
        if ok {
            recording(trace, at, || series.e2e.record(seconds(end, state.start)));
            if let Some((per_token, per_second)) = decode {
                series.time_per_output_token.record(per_token);
                series.tokens_per_second.record(per_second);
            }
        }
        series.add_cache_totals(state.input.emitted, state.cached.emitted);
        if catalog::operation_metrics_enabled() {
            let per_token = decode.map(|(per_token, _)| per_token);
            self.emit_operation(state, status, end, per_token, anomalies);
        }
    }

    /// The request in the operation families: its duration whatever its status, its time
    /// to first token and decode time when it succeeded, and the tokens it reported.
    fn emit_operation(
        &self,
        state: &RequestState,
        status: Status,
        end: Instant,
        per_token: Option<f64>,
        anomalies: &mut Anomalies,
    ) {
        let Some(bound) = state.gauges_at else {
            return;
        };
        let key = OperationKey {
            slot: bound.slot,
            operation: state.operation_name.unwrap_or(LabelId::UNKNOWN),
            // An allowlisted provider is in the label set already.
            provider: match self.series_config.provider_label {
                Some(_) => LabelId::UNKNOWN,
                None => state.provider.unwrap_or(LabelId::UNKNOWN),
            },
        };
        let trace = state.trace();
        let at = trace.map(|_| self.wall_clock.unix_seconds(end));
        let overflowed = self.with_handles(|index, handles, recorder| {
            // The request's series belong to the recorder it bound with.
            if index != bound.recorder {
                return false;
            }
            let found = handles.operation(key, recorder, &self.labels, &self.series_config);
            let Some(Ok(operation) | Err(operation)) = found else {
                return false;
            };
            recording(trace, at, || {
                operation.duration(status).record(seconds(end, state.start))
            });
            if status == Status::Ok {
                if let Some(first) = state.first_token {
                    let at = trace.map(|_| self.wall_clock.unix_seconds(first));
                    recording(trace, at, || {
                        operation.ttft.record(seconds(first, state.start))
                    });
                }
                if let Some(per_token) = per_token {
                    operation.time_per_output_token.record(per_token);
                }
            }
            if state.input.reported {
                operation.record_tokens(TokenType::Input, state.input.emitted);
            }
            if state.output.reported || state.output_declared || state.output.known > 0 {
                operation.record_tokens(TokenType::Output, state.output.emitted);
            }
            matches!(found, Some(Err(_)))
        });
        if overflowed == Some(true) {
            anomalies.add(Anomaly::SeriesOverflow);
        }
    }

    /// Runs `f` on the tracked state of span `id`.
    pub(crate) fn with_tracked<R>(&self, id: &Id, f: impl FnOnce(&mut Tracked) -> R) -> Option<R> {
        let mut entry = self.inflight.get(id)?;
        entry.get().map(f)
    }

    /// Finishes a span's state when it closes.
    pub(crate) fn finish(&self, tracked: &mut Tracked) {
        match tracked {
            Tracked::Request(state) => self.finish_request(state),
            Tracked::Queue(queue) => self.finish_queue(queue),
        }
    }

    /// Starts a queue phase of the nearest enclosing request: the request counts in
    /// the queue depth while its outermost queue span is open.
    pub(crate) fn new_queue<S>(&self, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let now = self.clock.now();
        for ancestor in span.scope().skip(1) {
            let request = ancestor.id();
            let entered = self.with_tracked(&request, |tracked| match tracked {
                Tracked::Request(state) => {
                    if state.enter_queue(now) {
                        if let Some(series) = state.gauges_at.and_then(|s| self.series(s)) {
                            series.queue_depth.increment(1.0);
                        }
                    }
                    true
                }
                Tracked::Queue(_) => false,
            });
            if entered == Some(true) {
                let queue = || {
                    Tracked::Queue(QueueState {
                        request: request.clone(),
                    })
                };
                if self.inflight.insert(id, queue, |_| ()).is_none() {
                    self.finish(&mut queue());
                }
                return;
            }
        }
        // A queue span outside any request has no request to count.
    }

    pub(crate) fn finish_queue(&self, queue: &QueueState) {
        let now = self.clock.now();
        self.with_tracked(&queue.request, |tracked| {
            let Tracked::Request(state) = tracked else {
                return;
            };
            let Some(wait) = state.exit_queue(now) else {
                return;
            };
            if let Some(series) = state.gauges_at.and_then(|s| self.series(s)) {
                series.queue_depth.decrement(1.0);
            }
            match self.counted(state) {
                Some(series) if state.bound => {
                    let trace = state.trace();
                    let at = trace.map(|_| self.wall_clock.unix_seconds(now));
                    recording(trace, at, || series.queue_wait.record(wait))
                }
                _ => {
                    state.queue.held = true;
                    state.queue.held_seconds += wait;
                }
            }
        });
    }

    /// Applies an event to the nearest request span in its scope. Returns the
    /// request's model, or `None` when the event is outside any request.
    pub(crate) fn apply_event<S>(
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
            crate::entered::current(self.key()).or_else(|| ctx.current_span().id().cloned())
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
        let (Tracked::Request(state), lane) = entry.get_with_lane()? else {
            return Some(None);
        };
        state.apply_event(update, || self.clock.now(), anomalies);
        self.settle(state, anomalies);
        if delta_event && !lane.is_open() {
            if let Some(target) = self.lane_target(state) {
                lane.open(target);
            }
        }
        Some(Some(
            state
                .effective_model()
                .map_or(LabelId::UNKNOWN, |m| m.label),
        ))
    }

    /// Where a request's delta events can count without its lock, once nothing about
    /// them depends on its state: bound (so past its first token, while it is open) and
    /// its revision published.
    fn lane_target(&self, state: &RequestState) -> Option<LaneTarget> {
        if !state.bound || state.revision != state.published_revision {
            return None;
        }
        let series = state.gauges_at?;
        self.series(series)?.counted()?;
        let output_price = state
            .effective_model()
            .and_then(|m| m.price)
            .and_then(|id| self.labels.prices.get(id))
            .map(ModelPrice::output_pico);
        Some(LaneTarget {
            series,
            output_price,
        })
    }

    /// A delta event of a request whose stream lane is open: its tokens and their cost
    /// counted without the request's lock. `false`: take the slow path.
    #[inline]
    pub(crate) fn stream_delta(&self, id: &Id, tokens: u64) -> bool {
        let Some(target) = self.inflight.stream(id, tokens) else {
            return false;
        };
        if let Some(counted) = self.counted_at(target.series) {
            counted.add_tokens(TokenType::Output, tokens, target.output_price.is_some());
            if let Some(price) = target.output_price {
                counted.add_cost(u128::from(tokens) * u128::from(price));
            }
        }
        true
    }

    /// Sets the engine gauges an event reports.
    pub(crate) fn set_engine_gauges(&self, update: &Update, request_model: Option<LabelId>) {
        self.with_handles(|_, handles, recorder| {
            if let Some(bytes) = update.gpu_memory_used {
                let gpu = update.gpu.unwrap_or(LabelId::UNKNOWN);
                handles.set_gpu_memory(gpu, bytes, recorder, &self.labels);
            }
            if let Some(ratio) = update.kv_cache_usage {
                let model = update
                    .model
                    .map(|m| m.label)
                    .or(request_model)
                    .unwrap_or(LabelId::UNKNOWN);
                handles.set_kv_cache_usage(model, ratio, recorder, &self.labels);
            }
        });
    }
}

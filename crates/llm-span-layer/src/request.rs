//! The life of a request span, from creation to close: binding its labels to a
//! series, counting its tokens as they are reported, its events, its queue phases, and
//! the final request count and latencies.

use quanta::Instant;
use tracing_core::span::{Attributes, Id};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::catalog::{Anomaly, Status, TokenType};
use crate::containers::labels::LabelId;
use crate::contract::CallsiteClass;
use crate::decode::{Anomalies, FieldVisitor, Update, MAX_EXTRA_LABELS};
use crate::layer::LlmSpanLayer;
use crate::series::{Pricing, Series, SeriesKey, SeriesRef};
use crate::state::{decode_rates, QueueState, RequestState, Tracked};

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

    /// Binds the request to its series (labels fixed from now on) and counts it active.
    pub(crate) fn bind_series(
        &self,
        state: &mut RequestState,
        anomalies: &mut Anomalies,
    ) -> Option<SeriesRef> {
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
        let found = self.with_handles(|index, handles, recorder| {
            handles.series_for(
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
        self.count_new_tokens(state, anomalies);
        Some(series_ref)
    }

    /// Adds the request's newly reported token counts to the counters (no I/O: the
    /// recorder's handles are atomics).
    pub(crate) fn count_new_tokens(&self, state: &mut RequestState, anomalies: &mut Anomalies) {
        let Some(series) = state.series.and_then(|s| self.series(s)) else {
            return;
        };
        series.add_tokens(TokenType::Input, state.input.take_increment(anomalies));
        series.add_tokens(TokenType::Output, state.output.take_increment(anomalies));
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
        let published = self.with_handles(|_, handles, recorder| {
            handles.publish_revision(model, revision, recorder, &self.labels)
        });
        if published.unwrap_or(false) {
            state.published_revision = state.revision;
        }
    }

    /// The state of a new request span, bound at once when its model is known.
    pub(crate) fn new_request(
        &self,
        attrs: &Attributes<'_>,
        class: &CallsiteClass,
    ) -> (RequestState, Anomalies) {
        let mut visitor = FieldVisitor::new(class, &self.labels);
        attrs.record(&mut visitor);
        let update = visitor.update;
        let mut anomalies = update.anomalies;
        let mut state = RequestState::new(self.clock.now());
        state.apply_fields(&update);
        if state.model.is_some() || state.response_model.is_some() {
            self.bind_series(&mut state, &mut anomalies);
        }
        (state, anomalies)
    }

    fn finish_request(&self, state: &mut RequestState) {
        let mut anomalies = Anomalies::default();
        let end = state.completed.unwrap_or_else(|| self.clock.now());
        let series = self.bind_series(state, &mut anomalies);
        self.count_new_tokens(state, &mut anomalies);
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
        series.count_request(status);
        if let Some(reason) = state.finish_reason {
            series.count_finish_reason(reason);
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
    pub(crate) fn with_tracked<S, R>(
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
    pub(crate) fn track<S>(&self, id: &Id, tracked: Tracked, ctx: &Context<'_, S>)
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

    /// Finishes a span's state when it closes.
    pub(crate) fn finish(&self, tracked: &mut Tracked) {
        match tracked {
            Tracked::Request(state) => self.finish_request(state),
            Tracked::Queue(queue) => self.finish_queue(queue),
        }
    }

    /// Starts a queue phase: the enclosing request counts in the queue depth.
    pub(crate) fn new_queue<S>(&self, id: &Id, ctx: &Context<'_, S>)
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
                Tracked::Request(request) => Some(self.bind_series(request, &mut anomalies)),
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
    pub(crate) fn apply_event<S>(
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
            self.bind_series(state, anomalies);
        }
        if let Some(series) = state.series.and_then(|s| self.series(s)) {
            if effects.first_token {
                if let Some(first) = state.first_token {
                    series.ttft.record(seconds(first, state.start));
                }
            }
            series.add_tokens(TokenType::Output, effects.streamed);
        }
        self.count_new_tokens(state, anomalies);
        state
            .model
            .or(state.response_model)
            .unwrap_or(LabelId::UNKNOWN)
    }

    /// Sets the engine gauges an event reports.
    pub(crate) fn set_engine_gauges(&self, update: &Update, request_model: Option<LabelId>) {
        self.with_handles(|_, handles, recorder| {
            if let Some(bytes) = update.gpu_memory_used {
                let gpu = update.gpu.unwrap_or(LabelId::UNKNOWN);
                handles.set_gpu_memory(gpu, bytes, recorder, &self.labels);
            }
            if let Some(ratio) = update.kv_cache_usage {
                let model = update.model.or(request_model).unwrap_or(LabelId::UNKNOWN);
                handles.set_kv_cache_usage(model, ratio, recorder, &self.labels);
            }
        });
    }
}

fn seconds(end: Instant, start: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64()
}

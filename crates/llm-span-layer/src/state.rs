//! What the layer remembers about one open request or queue span.
//!
//! A request's labels stay open until it is *bound*: at its first token if its model is
//! known by then, else as soon as the model is known, at the latest when its span
//! closes. Until then nothing labelled is emitted: token counts, the time to first
//! token and queue waits are held here, and only the gauges (active requests, queue
//! depth) are shown, under the labels known so far.

use quanta::Instant;
use tracing_core::span::Id;

use crate::catalog::{Anomaly, FinishReason, Status};
use crate::containers::labels::LabelId;
use crate::containers::lane::Streamed;
use crate::decode::{Anomalies, ModelRef, Operation, Update, MAX_EXTRA_LABELS};
use crate::exemplar::TraceContext;
use crate::series::SeriesRef;

/// A token count: what the request reported, and how much of it the counters have.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenCount {
    /// The request's tokens as far as known: the highest total reported, or more if
    /// streamed deltas went past it.
    pub(crate) known: u64,
    /// What has been added to the counters for this request.
    pub(crate) emitted: u64,
    /// Whether a total was ever reported (a recorded `tokens_out` marks completion).
    pub(crate) reported: bool,
}

impl TokenCount {
    /// A total as the user reported it. One below what is already known (streamed
    /// tokens included) cannot be taken back: it is flagged and the count stands.
    pub(crate) fn report(&mut self, total: Option<u64>, anomalies: &mut Anomalies) {
        let Some(total) = total else {
            return;
        };
        self.reported = true;
        if total < self.known {
            anomalies.add(Anomaly::TokenCountMismatch);
        }
        self.known = self.known.max(total);
    }

    /// `n` more tokens streamed.
    pub(crate) fn stream(&mut self, n: u64) {
        self.known = self.known.saturating_add(n);
    }

    /// How much to add to the counter to bring it to `target` (at most what is known).
    pub(crate) fn take_up_to(&mut self, target: u64) -> u64 {
        let increment = target.min(self.known).saturating_sub(self.emitted);
        self.emitted += increment;
        increment
    }

    /// How much to add to the counter now.
    pub(crate) fn take(&mut self) -> u64 {
        self.take_up_to(u64::MAX)
    }
}

/// The queue phases of a request: nested queue spans count once.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct QueuePhases {
    /// Queue spans of the request open now.
    pub(crate) open: u32,
    /// When the outermost open one started.
    pub(crate) since: Option<Instant>,
    /// Seconds of finished phases not yet observed (the request was not bound).
    pub(crate) held_seconds: f64,
    /// Whether any finished phase is held.
    pub(crate) held: bool,
}

/// One open request span.
#[derive(Debug)]
pub(crate) struct RequestState {
    /// The span's callsite, by its entry id in the layer's callsite map.
    pub(crate) callsite: u32,
    pub(crate) start: Instant,
    /// What the request does: only a generation has a first token.
    pub(crate) operation: Operation,
    /// The operation's name and the provider, for the operation families.
    pub(crate) operation_name: Option<LabelId>,
    pub(crate) provider: Option<LabelId>,
    pub(crate) first_token: Option<Instant>,
    pub(crate) completed: Option<Instant>,
    pub(crate) model: Option<ModelRef>,
    pub(crate) response_model: Option<ModelRef>,
    pub(crate) labels: [Option<LabelId>; MAX_EXTRA_LABELS],
    pub(crate) revision: Option<LabelId>,
    pub(crate) published_revision: Option<LabelId>,
    /// The series the gauges of the request are shown under now.
    pub(crate) gauges_at: Option<SeriesRef>,
    /// The labels changed since `gauges_at` was chosen.
    pub(crate) labels_changed: bool,
    /// `gauges_at` is the overflow series: the labels are past the series cap.
    pub(crate) in_overflow: bool,
    /// Labels fixed: counters and histograms flow to `gauges_at`.
    pub(crate) bound: bool,
    pub(crate) ttft_recorded: bool,
    pub(crate) input: TokenCount,
    pub(crate) output: TokenCount,
    pub(crate) cached: TokenCount,
    /// An output-token total was given at creation and no delta streamed since (see
    /// `apply_creation_fields`): that completes the request.
    pub(crate) output_declared: bool,
    /// Picodollars added to the cost counter for this request.
    pub(crate) cost_emitted: u128,
    pub(crate) queue: QueuePhases,
    pub(crate) finish_reason: Option<FinishReason>,
    pub(crate) status: Option<Status>,
    pub(crate) error: bool,
    /// For exemplars: the trace id and span id as the span's fields gave them.
    pub(crate) trace_id: Option<TraceContext>,
    pub(crate) span_id: Option<[u8; 8]>,
    /// The request's own span id, to find its OpenTelemetry span; `None` once looked up.
    #[cfg(feature = "opentelemetry")]
    pub(crate) otel_lookup: Option<tracing_core::span::Id>,
}

/// What an event asked of its request that needs the clock or the series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventEffects {
    /// The first token just arrived.
    pub(crate) first_token: bool,
}

impl RequestState {
    pub(crate) fn new(start: Instant, callsite: u32, _span: &tracing_core::span::Id) -> Self {
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
            published_revision: None,
            gauges_at: None,
            labels_changed: true,
            in_overflow: false,
            bound: false,
            ttft_recorded: false,
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
            #[cfg(feature = "opentelemetry")]
            otel_lookup: Some(_span.clone()),
        }
    }

    /// The trace to attach to the request's samples, if it has one.
    #[inline]
    pub(crate) fn trace(&self) -> Option<TraceContext> {
        let trace = self.trace_id?;
        Some(self.span_id.map_or(trace, |span| trace.with_span_id(span)))
    }

    /// The model the request is counted under: its own, else the response's.
    pub(crate) fn effective_model(&self) -> Option<ModelRef> {
        self.model.or(self.response_model)
    }

    /// Whether the request is ready to bind: it has a model and a first token.
    pub(crate) fn ready_to_bind(&self) -> bool {
        !self.bound && self.first_token.is_some() && self.effective_model().is_some()
    }

    /// Applies new label values: open until bound, after that a change is an anomaly.
    /// `model_only_if_none` is set for events, which may name a model but not change it.
    fn apply_labels(
        &mut self,
        update: &Update,
        model_only_if_none: bool,
        anomalies: &mut Anomalies,
    ) {
        if self.bound {
            let effective = self.effective_model().map(|m| m.label);
            let changed_model = update
                .model
                .is_some_and(|m| Some(m.label) != effective && !model_only_if_none)
                || (self.model.is_none()
                    && update
                        .response_model
                        .is_some_and(|m| Some(m.label) != effective));
            let changed_label = self
                .labels
                .iter()
                .zip(update.labels)
                .any(|(mine, theirs)| theirs.is_some() && theirs != *mine);
            if changed_model || changed_label {
                anomalies.add(Anomaly::LateLabel);
            }
            return;
        }
        let before = (self.effective_model().map(|m| m.label), self.labels);
        if let Some(model) = update.model {
            if !model_only_if_none || self.model.is_none() {
                self.model = Some(model);
            }
        }
        if update.response_model.is_some() {
            self.response_model = update.response_model;
        }
        for (mine, theirs) in self.labels.iter_mut().zip(update.labels) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        if before != (self.effective_model().map(|m| m.label), self.labels) {
            self.labels_changed = true;
        }
    }

    /// Applies the fields a span was created with. An output-token total declared at
    /// creation completes the request unless it streams `tokens_out_delta`s: for a
    /// stream it is a placeholder (`tokens_out = 0`), so a stream dropped after it is
    /// still `cancelled`.
    pub(crate) fn apply_creation_fields(&mut self, update: &Update, anomalies: &mut Anomalies) {
        let start = self.start;
        self.apply_fields(update, || start, anomalies);
        self.output_declared = std::mem::take(&mut self.output.reported);
    }

    /// Applies fields of the span itself (creation or `Span::record`); `now` is read
    /// only when a field marks the first token.
    pub(crate) fn apply_fields(
        &mut self,
        update: &Update,
        now: impl FnOnce() -> Instant,
        anomalies: &mut Anomalies,
    ) {
        self.apply_labels(update, false, anomalies);
        if let Some(operation) = update.operation {
            self.operation = operation;
        }
        if update.operation_name.is_some() {
            self.operation_name = update.operation_name;
        }
        if update.provider.is_some() {
            self.provider = update.provider;
        }
        if update.first_token {
            self.mark_first_token(now, anomalies);
        }
        if update.revision.is_some() {
            self.revision = update.revision;
        }
        self.input.report(update.input_tokens, anomalies);
        self.output.report(update.output_tokens, anomalies);
        self.cached.report(update.cached_tokens, anomalies);
        if update.finish_reason.is_some() {
            self.finish_reason = update.finish_reason;
        }
        if let Some(status) = update.status {
            self.status = status;
        }
        self.error |= update.error;
        if update.trace_id.is_some() {
            self.trace_id = update.trace_id;
        }
        if update.span_id.is_some() {
            self.span_id = update.span_id;
        }
    }

    /// Applies an event in the request's scope; `now` is read only when needed.
    pub(crate) fn apply_event(
        &mut self,
        update: &Update,
        now: impl FnOnce() -> Instant,
        anomalies: &mut Anomalies,
    ) -> EventEffects {
        self.apply_labels(update, true, anomalies);
        let mut effects = EventEffects::default();
        let streamed = update.output_delta.unwrap_or(0);
        let marks_first = update.first_token || streamed > 0;
        let marks_completion = update.finish_reason.is_some();
        let now = if (marks_first && self.first_token.is_none()) || marks_completion {
            Some(now())
        } else {
            None
        };
        if marks_first && self.operation == Operation::Generation {
            match (self.first_token, now) {
                (None, Some(now)) => {
                    self.first_token = Some(now);
                    effects.first_token = true;
                }
                // A token-count event after the first token is just more tokens.
                _ if update.first_token => anomalies.add(Anomaly::DuplicateFirstToken),
                _ => {}
            }
        }
        if marks_completion {
            if self.completed.is_some() {
                anomalies.add(Anomaly::DuplicateCompletion);
            } else {
                self.completed = now;
            }
            self.finish_reason = update.finish_reason;
        }
        if streamed > 0 {
            // A stream: what its span declared at creation was a placeholder.
            self.output_declared = false;
            self.output.stream(streamed);
        }
        self.input.report(update.input_tokens, anomalies);
        self.output.report(update.output_tokens, anomalies);
        self.cached.report(update.cached_tokens, anomalies);
        self.error |= update.error;
        effects
    }

    /// A field marked the first token (a recorded time to first chunk): now, unless it
    /// came already (an anomaly) or the request answers once.
    fn mark_first_token(&mut self, now: impl FnOnce() -> Instant, anomalies: &mut Anomalies) {
        if self.operation != Operation::Generation {
            return;
        }
        if self.first_token.is_some() {
            anomalies.add(Anomaly::DuplicateFirstToken);
        } else {
            self.first_token = Some(now());
        }
    }

    /// A queue span of this request opened; `true` when it is the outermost.
    pub(crate) fn enter_queue(&mut self, now: Instant) -> bool {
        self.queue.open += 1;
        if self.queue.open == 1 {
            self.queue.since = Some(now);
            return true;
        }
        false
    }

    /// A queue span of this request closed. Returns the seconds the request waited
    /// when the outermost one closed.
    pub(crate) fn exit_queue(&mut self, now: Instant) -> Option<f64> {
        self.queue.open = self.queue.open.checked_sub(1)?;
        if self.queue.open > 0 {
            return None;
        }
        let since = self.queue.since.take()?;
        Some(seconds(now, since))
    }

    /// Ends the open queue phase however many queue spans are still open, as when the
    /// request closes first. Returns the seconds waited.
    pub(crate) fn end_queue(&mut self, now: Instant) -> Option<f64> {
        if std::mem::take(&mut self.queue.open) == 0 {
            return None;
        }
        Some(seconds(now, self.queue.since.take()?))
    }

    /// The status a request closes with.
    ///
    /// An explicit `status` wins; otherwise an error seen in scope makes it `error`;
    /// otherwise it is `ok` if it signalled completion (a finish reason, a completion
    /// event, an output-token total recorded after creation, or one given at creation
    /// by a request that streamed no delta; for a request that answers once, also its
    /// input tokens or response model) and `cancelled` if it did not: its span closed
    /// early, as when a future is dropped mid-stream.
    pub(crate) fn final_status(&self) -> Status {
        if let Some(status) = self.status {
            return status;
        }
        if self.error {
            return Status::Error;
        }
        // One that answers once completes with its answer: usage or a response model.
        let answered = self.operation == Operation::SingleAnswer
            && (self.input.reported || self.response_model.is_some());
        if self.completed.is_some()
            || self.finish_reason.is_some()
            || self.output.reported
            || self.output_declared
            || answered
        {
            Status::Ok
        } else {
            Status::Cancelled
        }
    }
}

/// The wall-clock time of the clock's instants, from one reading of both at the start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    /// Seconds since the Unix epoch at `instant`.
    unix_seconds: f64,
    instant: Instant,
}

impl WallClock {
    pub(crate) fn new(clock: &quanta::Clock) -> Self {
        let unix_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            unix_seconds,
            instant: clock.now(),
        }
    }

    /// Seconds since the Unix epoch at `instant`.
    pub(crate) fn unix_seconds(&self, instant: Instant) -> f64 {
        let since = instant
            .saturating_duration_since(self.instant)
            .as_secs_f64();
        let before = self
            .instant
            .saturating_duration_since(instant)
            .as_secs_f64();
        self.unix_seconds + since - before
    }
}

/// Seconds from `start` to `end`, never negative.
pub(crate) fn seconds(end: Instant, start: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64()
}

/// Decode-phase rates: `(seconds per output token, output tokens per second)`.
///
/// The decode phase runs from the first token to the end and produces the remaining
/// `output - 1` tokens. With fewer than two output tokens, or no time between first
/// token and end, there is no decode phase to measure.
pub(crate) fn decode_rates(decode_seconds: f64, output_tokens: u64) -> Option<(f64, f64)> {
    if output_tokens < 2 || decode_seconds <= 0.0 || !decode_seconds.is_finite() {
        return None;
    }
    let decoded = (output_tokens - 1) as f64;
    Some((decode_seconds / decoded, decoded / decode_seconds))
}

/// One open queue-phase span: the request span it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct QueueState {
    pub(crate) request: Id,
}

/// What the layer keeps per tracked span.
#[derive(Debug)]
// Boxing the request state would allocate on every request; queue states are rare.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Tracked {
    Request(RequestState),
    Queue(QueueState),
}

impl Tracked {
    /// Folds in tokens a request's stream lane counted: they are in the counters (and
    /// their cost too) already.
    pub(crate) fn absorb_streamed(&mut self, streamed: Streamed) {
        let Tracked::Request(state) = self else {
            return;
        };
        state.output.known = state.output.known.saturating_add(streamed.tokens);
        state.output.emitted = state.output.emitted.saturating_add(streamed.tokens);
        if let Some(price) = streamed.output_price {
            state.cost_emitted += u128::from(streamed.tokens) * u128::from(price);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_totals_and_streamed_tokens_are_counted_once() {
        let mut anomalies = Anomalies::default();
        let mut count = TokenCount::default();
        assert_eq!(count.take(), 0);
        count.report(Some(10), &mut anomalies);
        assert_eq!(count.take(), 10);
        assert_eq!(count.take(), 0);
        count.report(Some(15), &mut anomalies);
        assert_eq!(count.take(), 5);
        // Streamed tokens past the last report are no mismatch...
        count.stream(3);
        assert_eq!(count.take(), 3);
        assert!(anomalies.is_empty());
        // ...but a new report below what is known is.
        count.report(Some(12), &mut anomalies);
        assert_eq!(count.take(), 0);
        assert_eq!(count.emitted, 18);
        assert_eq!(anomalies.count(Anomaly::TokenCountMismatch), 1);
        // Held until taken, and never past what is known.
        count.stream(7);
        assert_eq!(count.take_up_to(20), 2);
        assert_eq!(count.take_up_to(100), 5);
    }

    #[test]
    fn decode_rates_need_two_tokens_and_time() {
        assert_eq!(decode_rates(1.0, 0), None);
        assert_eq!(decode_rates(1.0, 1), None);
        assert_eq!(decode_rates(0.0, 10), None);
        assert_eq!(decode_rates(2.0, 11), Some((0.2, 5.0)));
    }

    #[test]
    fn status_precedence() {
        let (clock, _mock) = quanta::Clock::mock();
        let mut anomalies = Anomalies::default();
        let mut state = RequestState::new(clock.now(), 0, &tracing_core::span::Id::from_u64(1));
        assert_eq!(state.final_status(), Status::Cancelled);
        state.output.report(Some(3), &mut anomalies);
        assert_eq!(state.final_status(), Status::Ok);
        state.error = true;
        assert_eq!(state.final_status(), Status::Error);
        state.status = Some(Status::Ok);
        assert_eq!(state.final_status(), Status::Ok);
    }

    #[test]
    fn wall_clock_time_of_instants_before_and_after_its_reading() {
        let (clock, mock) = quanta::Clock::mock();
        let earlier = clock.now();
        mock.increment(std::time::Duration::from_secs(2));
        let wall = WallClock::new(&clock);
        mock.increment(std::time::Duration::from_secs(3));
        assert_eq!(wall.unix_seconds(clock.now()), wall.unix_seconds + 3.0);
        assert_eq!(wall.unix_seconds(earlier), wall.unix_seconds - 2.0);
    }

    #[test]
    fn nested_queue_spans_are_one_phase() {
        let (clock, mock) = quanta::Clock::mock();
        let mut state = RequestState::new(clock.now(), 0, &tracing_core::span::Id::from_u64(1));
        assert!(state.enter_queue(clock.now()));
        mock.increment(std::time::Duration::from_millis(500));
        assert!(!state.enter_queue(clock.now()));
        mock.increment(std::time::Duration::from_millis(250));
        assert_eq!(state.exit_queue(clock.now()), None);
        assert_eq!(state.exit_queue(clock.now()), Some(0.75));
        assert_eq!(state.exit_queue(clock.now()), None, "no phase open");
    }
}

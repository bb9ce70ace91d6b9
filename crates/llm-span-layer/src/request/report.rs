//! What a request reported, and how a report changes it: the fields of its span
//! (creation and `Span::record`) and the events in its scope, applied to its labels,
//! token counts, first token, completion and status; its queue phases; the status it
//! closes with. Nothing here emits: `mod.rs` does, through the layer's sinks.

use quanta::Instant;

use super::{Phase, Request};
use crate::catalog::{Anomaly, Status};
use crate::decode::{Anomalies, ModelRef, Operation, Update};
use crate::exemplar::TraceContext;

/// A token count: what the request reported, and how much of it the counters have.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct TokenCount {
    /// The request's tokens as far as known: the highest total reported, or more if
    /// streamed deltas went past it.
    known: u64,
    /// What has been added to the counters for this request.
    emitted: u64,
    /// Whether a total was ever reported (a recorded `tokens_out` marks completion).
    reported: bool,
}

impl TokenCount {
    /// A total as the user reported it. One below what is already known (streamed
    /// tokens included) cannot be taken back: it is flagged and the count stands.
    pub(super) fn report(&mut self, total: Option<u64>, anomalies: &mut Anomalies) {
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
    pub(super) fn stream(&mut self, n: u64) {
        self.known = self.known.saturating_add(n);
    }

    /// How much to add to the counter to bring it to `target` (at most what is known).
    pub(super) fn take_up_to(&mut self, target: u64) -> u64 {
        let increment = target.min(self.known).saturating_sub(self.emitted);
        self.emitted += increment;
        increment
    }

    /// How much to add to the counter now.
    pub(super) fn take(&mut self) -> u64 {
        self.take_up_to(u64::MAX)
    }

    /// `n` tokens counted already (by the stream lane): known, and in the counter.
    pub(super) fn absorb(&mut self, n: u64) {
        self.known = self.known.saturating_add(n);
        self.emitted = self.emitted.saturating_add(n);
    }

    /// The request's tokens as far as known.
    pub(super) fn known(&self) -> u64 {
        self.known
    }

    /// What the counters have of them.
    pub(super) fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Whether a total was ever reported.
    pub(super) fn reported(&self) -> bool {
        self.reported
    }
}

/// The queue phases of a request: nested queue spans count once.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct QueuePhases {
    /// Queue spans of the request open now.
    open: u32,
    /// When the outermost open one started.
    since: Option<Instant>,
}

impl QueuePhases {
    /// Whether a queue span of the request is open.
    pub(super) fn is_open(&self) -> bool {
        self.open > 0
    }

    /// A queue span of this request opened; `true` when it is the outermost.
    pub(super) fn enter(&mut self, now: Instant) -> bool {
        self.open += 1;
        if self.open == 1 {
            self.since = Some(now);
            return true;
        }
        false
    }

    /// A queue span of this request closed. Returns the seconds the request waited
    /// when the outermost one closed.
    pub(super) fn exit(&mut self, now: Instant) -> Option<f64> {
        self.open = self.open.checked_sub(1)?;
        if self.open > 0 {
            return None;
        }
        let since = self.since.take()?;
        Some(seconds(now, since))
    }

    /// Ends the open queue phase however many queue spans are still open, as when the
    /// request closes first. Returns the seconds waited.
    pub(super) fn end(&mut self, now: Instant) -> Option<f64> {
        if std::mem::take(&mut self.open) == 0 {
            return None;
        }
        Some(seconds(now, self.since.take()?))
    }
}

impl Request {
    /// The trace to attach to the request's samples, if it has one.
    #[inline]
    pub(super) fn trace(&self) -> Option<TraceContext> {
        let trace = self.trace_id?;
        Some(self.span_id.map_or(trace, |span| trace.with_span_id(span)))
    }

    /// The model the request is counted under: its own, else the response's.
    pub(super) fn effective_model(&self) -> Option<ModelRef> {
        self.model.or(self.response_model)
    }

    /// Whether a pending request is ready to bind: it has a model and a first token.
    pub(super) fn ready_to_bind(&self) -> bool {
        self.first_token.is_some() && self.effective_model().is_some()
    }

    /// Applies new label values: open until bound, after that a change is an anomaly.
    /// `model_only_if_none` is set for events, which may name a model but not change it.
    fn apply_labels(
        &mut self,
        update: &Update,
        model_only_if_none: bool,
        anomalies: &mut Anomalies,
    ) {
        if let Phase::Bound(_) = self.phase {
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
            if let Phase::Pending(pending) = &mut self.phase {
                pending.labels_changed = true;
            }
        }
    }

    /// Applies the fields a span was created with. An output-token total declared at
    /// creation completes the request unless it streams `tokens_out_delta`s: for a
    /// stream it is a placeholder (`tokens_out = 0`), so a stream dropped after it is
    /// still `cancelled`.
    pub(super) fn apply_creation_fields(&mut self, update: &Update, anomalies: &mut Anomalies) {
        let start = self.start;
        self.apply_fields(update, || start, anomalies);
        self.output_declared = std::mem::take(&mut self.output.reported);
    }

    /// Applies fields of the span itself (creation or `Span::record`); `now` is read
    /// only when a field marks the first token.
    pub(super) fn apply_fields(
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
    pub(super) fn apply_event(
        &mut self,
        update: &Update,
        now: impl FnOnce() -> Instant,
        anomalies: &mut Anomalies,
    ) {
        self.apply_labels(update, true, anomalies);
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
                (None, Some(now)) => self.first_token = Some(now),
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

    /// The status a request closes with.
    ///
    /// An explicit `status` wins; otherwise an error seen in scope makes it `error`;
    /// otherwise it is `ok` if it signalled completion (a finish reason, a completion
    /// event, an output-token total recorded after creation, or one given at creation
    /// by a request that streamed no delta; for a request that answers once, also its
    /// input tokens or response model) and `cancelled` if it did not: its span closed
    /// early, as when a future is dropped mid-stream.
    pub(super) fn final_status(&self) -> Status {
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

/// Seconds from `start` to `end`, never negative.
pub(super) fn seconds(end: Instant, start: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64()
}

/// Decode-phase rates: `(seconds per output token, output tokens per second)`.
///
/// The decode phase runs from the first token to the end and produces the remaining
/// `output - 1` tokens. With fewer than two output tokens, or no time between first
/// token and end, there is no decode phase to measure.
pub(super) fn decode_rates(decode_seconds: f64, output_tokens: u64) -> Option<(f64, f64)> {
    if output_tokens < 2 || decode_seconds <= 0.0 || !decode_seconds.is_finite() {
        return None;
    }
    let decoded = (output_tokens - 1) as f64;
    Some((decode_seconds / decoded, decoded / decode_seconds))
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
        let mut state = Request::new(clock.now(), 0, &tracing_core::span::Id::from_u64(1));
        assert_eq!(state.final_status(), Status::Cancelled);
        state.output.report(Some(3), &mut anomalies);
        assert_eq!(state.final_status(), Status::Ok);
        state.error = true;
        assert_eq!(state.final_status(), Status::Error);
        state.status = Some(Status::Ok);
        assert_eq!(state.final_status(), Status::Ok);
    }

    #[test]
    fn nested_queue_spans_are_one_phase() {
        let (clock, mock) = quanta::Clock::mock();
        let mut state = Request::new(clock.now(), 0, &tracing_core::span::Id::from_u64(1));
        assert!(state.queue.enter(clock.now()));
        mock.increment(std::time::Duration::from_millis(500));
        assert!(!state.queue.enter(clock.now()));
        mock.increment(std::time::Duration::from_millis(250));
        assert_eq!(state.queue.exit(clock.now()), None);
        assert_eq!(state.queue.exit(clock.now()), Some(0.75));
        assert_eq!(state.queue.exit(clock.now()), None, "no phase open");
    }
}

//! What the layer remembers about one open request or queue span.

use quanta::Instant;

use crate::catalog::{Anomaly, FinishReason, Status};
use crate::containers::labels::LabelId;
use crate::decode::{Anomalies, Update, MAX_EXTRA_LABELS};
use crate::series::SeriesRef;

/// A token count as reported by the user, and how much of it the counters already have.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenCount {
    /// The latest total the user recorded.
    pub(crate) reported: Option<u64>,
    /// What has been added to the counter for this request.
    pub(crate) counted: u64,
    /// Whether `reported` changed since the last increment was taken.
    fresh: bool,
}

impl TokenCount {
    pub(crate) fn report(&mut self, total: Option<u64>) {
        if total.is_some() {
            self.reported = total;
            self.fresh = true;
        }
    }

    /// How much to add to the counter now. A newly reported total below what was
    /// already counted (streamed tokens included) cannot be taken back: it is flagged
    /// and the count stands.
    pub(crate) fn take_increment(&mut self, anomalies: &mut Anomalies) -> u64 {
        if !std::mem::take(&mut self.fresh) {
            return 0;
        }
        match self.reported {
            Some(reported) if reported > self.counted => {
                let increment = reported - self.counted;
                self.counted = reported;
                increment
            }
            Some(reported) if reported < self.counted => {
                anomalies.add(Anomaly::TokenCountMismatch);
                0
            }
            _ => 0,
        }
    }
}

/// One open request span.
#[derive(Debug)]
pub(crate) struct RequestState {
    pub(crate) start: Instant,
    pub(crate) first_token: Option<Instant>,
    pub(crate) completed: Option<Instant>,
    pub(crate) model: Option<LabelId>,
    pub(crate) response_model: Option<LabelId>,
    pub(crate) revision: Option<LabelId>,
    pub(crate) published_revision: Option<LabelId>,
    pub(crate) labels: [Option<LabelId>; MAX_EXTRA_LABELS],
    /// Bound on first use; from then on the request's labels no longer change.
    pub(crate) series: Option<SeriesRef>,
    pub(crate) input: TokenCount,
    pub(crate) output: TokenCount,
    pub(crate) cached: TokenCount,
    pub(crate) finish_reason: Option<FinishReason>,
    pub(crate) status: Option<Status>,
    pub(crate) error: bool,
    /// Whether `llm_active_requests` was incremented for this request.
    pub(crate) active: bool,
}

/// What an event asked of its request that needs the clock or the series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventEffects {
    /// The first token just arrived: record TTFT.
    pub(crate) first_token: bool,
    /// Streamed output tokens to add to the counter now.
    pub(crate) streamed: u64,
}

impl RequestState {
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            start,
            first_token: None,
            completed: None,
            model: None,
            response_model: None,
            revision: None,
            published_revision: None,
            labels: [None; MAX_EXTRA_LABELS],
            series: None,
            input: TokenCount::default(),
            output: TokenCount::default(),
            cached: TokenCount::default(),
            finish_reason: None,
            status: None,
            error: false,
            active: false,
        }
    }

    /// Applies fields of the span itself (creation or `Span::record`).
    pub(crate) fn apply_fields(&mut self, update: &Update) {
        if self.series.is_none() {
            // Labels may still change until the series is bound.
            if update.model.is_some() {
                self.model = update.model;
            }
            if update.response_model.is_some() {
                self.response_model = update.response_model;
            }
            for (mine, theirs) in self.labels.iter_mut().zip(update.labels) {
                if theirs.is_some() {
                    *mine = theirs;
                }
            }
        }
        if update.revision.is_some() {
            self.revision = update.revision;
        }
        self.input.report(update.input_tokens);
        self.output.report(update.output_tokens);
        self.cached.report(update.cached_tokens);
        if update.finish_reason.is_some() {
            self.finish_reason = update.finish_reason;
        }
        if let Some(status) = update.status {
            self.status = status;
        }
        self.error |= update.error;
    }

    /// Applies an event in the request's scope; `now` is read only when needed.
    pub(crate) fn apply_event(
        &mut self,
        update: &Update,
        now: impl FnOnce() -> Instant,
        anomalies: &mut Anomalies,
    ) -> EventEffects {
        if self.series.is_none() && self.model.is_none() && update.model.is_some() {
            self.model = update.model;
        }
        let mut effects = EventEffects::default();
        let streamed = update.output_delta.unwrap_or(0);
        let marks_first = update.first_token || streamed > 0;
        let marks_completion = update.finish_reason.is_some();
        let now = if (marks_first && self.first_token.is_none()) || marks_completion {
            Some(now())
        } else {
            None
        };
        if marks_first {
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
            self.output.counted = self.output.counted.saturating_add(streamed);
            effects.streamed = streamed;
        }
        self.input.report(update.input_tokens);
        self.output.report(update.output_tokens);
        self.cached.report(update.cached_tokens);
        self.error |= update.error;
        effects
    }

    /// The status a request closes with.
    ///
    /// An explicit `status` wins; otherwise an error seen in scope makes it `error`;
    /// otherwise it is `ok` if it signalled completion (a finish reason, a completion
    /// event or a recorded output-token total) and `cancelled` if it did not: its span
    /// closed early, as when a future is dropped mid-stream.
    pub(crate) fn final_status(&self) -> Status {
        if let Some(status) = self.status {
            return status;
        }
        if self.error {
            return Status::Error;
        }
        if self.completed.is_some()
            || self.finish_reason.is_some()
            || self.output.reported.is_some()
        {
            Status::Ok
        } else {
            Status::Cancelled
        }
    }
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

/// One open queue-phase span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueState {
    pub(crate) start: Instant,
    pub(crate) series: SeriesRef,
}

/// What the layer keeps in a span's extensions.
#[derive(Debug)]
pub(crate) enum Tracked {
    Request(RequestState),
    Queue(QueueState),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_totals_are_counted_once() {
        let mut anomalies = Anomalies::default();
        let mut count = TokenCount::default();
        assert_eq!(count.take_increment(&mut anomalies), 0);
        count.report(Some(10));
        assert_eq!(count.take_increment(&mut anomalies), 10);
        assert_eq!(count.take_increment(&mut anomalies), 0);
        count.report(Some(15));
        assert_eq!(count.take_increment(&mut anomalies), 5);
        // Streamed tokens past the last report are no mismatch...
        count.counted += 3;
        assert_eq!(count.take_increment(&mut anomalies), 0);
        assert!(anomalies.is_empty());
        // ...but a new report below the count is.
        count.report(Some(12));
        assert_eq!(count.take_increment(&mut anomalies), 0);
        assert_eq!(count.counted, 18);
        assert!(!anomalies.is_empty());
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
        let mut state = RequestState::new(clock.now());
        assert_eq!(state.final_status(), Status::Cancelled);
        state.output.report(Some(3));
        assert_eq!(state.final_status(), Status::Ok);
        state.error = true;
        assert_eq!(state.final_status(), Status::Error);
        state.status = Some(Status::Ok);
        assert_eq!(state.final_status(), Status::Ok);
    }
}

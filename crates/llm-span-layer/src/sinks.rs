//! [`Sinks`]: the services a request emits through, which the layer owns and lends to
//! the request lifecycle (`request/`): the clock and the wall clock of its instants, the
//! interned label values and their prices, the series configuration, the handles of each
//! recorder, and (feature `opentelemetry`) where a request's OpenTelemetry trace is read.
//!
//! It knows nothing of requests or of the layer: it turns label ids, series references
//! and decoded updates into metric writes.

use metrics::Recorder;
use quanta::{Clock, Instant};

use crate::catalog::TokenType;
use crate::containers::labels::{LabelId, LabelSets};
use crate::containers::lane::LaneTarget;
use crate::decode::{Anomalies, ModelRef, Update};
use crate::pricing::ModelPrice;
use crate::recorders::Recorders;
use crate::series::{LabelSetHandles, RecorderHandles, Series, SeriesConfig, SeriesRef};

/// The layer's shared services, below the request lifecycle.
pub(crate) struct Sinks {
    labels: LabelSets,
    series_config: SeriesConfig,
    recorders: Recorders,
    clock: Clock,
    /// Turns the clock's instants into wall-clock time, for exemplars.
    wall_clock: WallClock,
    /// Where request spans' OpenTelemetry traces are read, for exemplars.
    #[cfg(feature = "opentelemetry")]
    otel: crate::otel::OtelDispatch,
}

impl Sinks {
    pub(crate) fn new(
        labels: LabelSets,
        series_config: SeriesConfig,
        recorders: Recorders,
        clock: Clock,
    ) -> Self {
        Self {
            labels,
            series_config,
            recorders,
            wall_clock: WallClock::new(&clock),
            clock,
            #[cfg(feature = "opentelemetry")]
            otel: crate::otel::OtelDispatch::default(),
        }
    }

    /// The clock's time now.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Seconds since the Unix epoch at `instant`, for an exemplar's timestamp.
    pub(crate) fn unix_seconds(&self, instant: Instant) -> f64 {
        self.wall_clock.unix_seconds(instant)
    }

    /// The interned label values, which decoding interns into.
    #[inline]
    pub(crate) fn labels(&self) -> &LabelSets {
        &self.labels
    }

    pub(crate) fn series_config(&self) -> &SeriesConfig {
        &self.series_config
    }

    /// Whether the layer writes to one recorder handed to it.
    pub(crate) fn recorder_is_fixed(&self) -> bool {
        self.recorders.is_fixed()
    }

    /// The price of a model, if it has one.
    #[inline]
    pub(crate) fn price_of(&self, model: Option<ModelRef>) -> Option<&ModelPrice> {
        model
            .and_then(|m| m.price)
            .and_then(|id| self.labels.prices.get(id))
    }

    /// Runs `f` with the handles registered for the recorder in effect.
    pub(crate) fn with_handles<R>(
        &self,
        f: impl FnOnce(u8, &RecorderHandles, &dyn Recorder) -> R,
    ) -> Option<R> {
        self.recorders.with_handles(&self.series_config, f)
    }

    /// The handles of a series bound earlier.
    #[inline]
    pub(crate) fn series(&self, series: SeriesRef) -> Option<&Series> {
        self.recorders.series(series)
    }

    /// The counters and histograms of a series a request bound to.
    #[inline]
    pub(crate) fn counted_at(&self, series: SeriesRef) -> Option<&LabelSetHandles> {
        self.series(series)?.counted()
    }

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

    /// Counts the tokens of a delta event that took its request's stream lane, and
    /// their cost.
    #[inline]
    pub(crate) fn count_streamed(&self, target: LaneTarget, tokens: u64) {
        if let Some(counted) = self.counted_at(SeriesRef::from_bits(target.series)) {
            counted.add_tokens(TokenType::Output, tokens, target.output_price.is_some());
            if let Some(price) = target.output_price {
                counted.add_cost(u128::from(tokens) * u128::from(price));
            }
        }
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

    /// Remembers the dispatcher the layer is part of, to read OpenTelemetry traces.
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn register_dispatch(&self, dispatch: &tracing_core::Dispatch) {
        self.otel.register(dispatch);
    }

    /// The trace of span `id`'s OpenTelemetry span, if it has a valid one.
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn trace_of(
        &self,
        id: &tracing_core::span::Id,
    ) -> Option<crate::exemplar::TraceContext> {
        self.otel.trace_of(id)
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
    pub(crate) fn new(clock: &Clock) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

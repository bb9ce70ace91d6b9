//! Fixed-bucket histograms of atomic counters, for every histogram of the catalog.
//!
//! A sample finds its bucket by binary search and costs two atomic additions (the
//! bucket and the sum): no allocation, no lock, no epoch, no upkeep. The memory of a
//! series is fixed, whatever the traffic and however rarely it is scraped.
//!
//! # Consistency
//!
//! A scrape reads each bucket counter once and derives the cumulative buckets and
//! `_count` from those same reads, so within one scrape the buckets are monotone and the
//! `+Inf` bucket equals `_count`, always; counters never go back between scrapes.
//! `_sum` is read after the buckets. A writer adds to the sum before its bucket (release
//! order), so `_sum` includes every sample counted in `_count`; it may also include
//! samples being recorded at that instant whose bucket was not read yet, at most one per
//! recording thread. Once recording pauses, `_sum` is the exact floating-point sum. (The
//! Prometheus Go client keeps `_sum` and `_count` in step with a hot/cold pair of
//! counts and a reader that waits for in-flight writers; that costs every sample two
//! more atomic operations, for a precision no rate over a scrape interval can see.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use llm_span_layer::exemplar::{self, TraceContext};

/// One histogram series.
#[derive(Debug)]
pub(crate) struct FixedHistogram {
    /// Upper bounds, strictly increasing and finite; `+Inf` is implied.
    bounds: Arc<[f64]>,
    /// Per bucket, not cumulative; the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// `f64` bits.
    sum: AtomicU64,
    /// Per bucket, the latest sample that had a trace (for histograms with exemplars).
    exemplars: Option<Box<[Mutex<Option<Exemplar>>]>>,
}

/// A sample with the trace that produced it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    pub(crate) trace: TraceContext,
    pub(crate) value: f64,
    /// Seconds since the Unix epoch.
    pub(crate) timestamp: f64,
}

/// What a scrape reads of a series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// Cumulative counts, one per bound and a last one for `+Inf` (the total).
    pub(crate) cumulative: Vec<u64>,
    pub(crate) sum: f64,
    /// Per bucket, its latest exemplar (empty for histograms without exemplars).
    pub(crate) exemplars: Vec<Option<Exemplar>>,
}

impl HistogramSnapshot {
    /// The number of samples: the `+Inf` bucket.
    pub(crate) fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

impl FixedHistogram {
    /// A series with buckets at `bounds`, keeping exemplars if `with_exemplars`.
    pub(crate) fn new(bounds: Arc<[f64]>, with_exemplars: bool) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        let exemplars =
            with_exemplars.then(|| (0..=bounds.len()).map(|_| Mutex::new(None)).collect());
        Self {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
            exemplars,
        }
    }

    /// Records one sample.
    #[inline]
    pub(crate) fn record(&self, value: f64) {
        // The first bucket whose bound is at least the value (`le` is inclusive); NaN
        // compares with nothing and lands in `+Inf`, as in the Prometheus clients.
        let bucket = if value.is_nan() {
            self.bounds.len()
        } else {
            self.bounds.partition_point(|bound| *bound < value)
        };
        self.add_to_sum(value);
        // Release: a scrape that sees this count sees the sum above.
        self.counts[bucket].fetch_add(1, Ordering::Release);
        if let Some(exemplars) = &self.exemplars {
            if let Some((trace, at)) = exemplar::current_with_time() {
                keep_exemplar(&exemplars[bucket], trace, value, at);
            }
        }
    }

    #[inline]
    fn add_to_sum(&self, value: f64) {
        let mut current = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match self.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Reads every bucket once, then the sum.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0u64;
        let cumulative = self
            .counts
            .iter()
            .map(|count| {
                total = total.wrapping_add(count.load(Ordering::Acquire));
                total
            })
            .collect();
        let sum = f64::from_bits(self.sum.load(Ordering::Acquire));
        let exemplars = self.exemplars.as_deref().map_or_else(Vec::new, |slots| {
            slots
                .iter()
                .map(|slot| *slot.lock().unwrap_or_else(PoisonError::into_inner))
                .collect()
        });
        HistogramSnapshot {
            cumulative,
            sum,
            exemplars,
        }
    }
}

/// The latest sample wins; a writer that finds the slot busy (another writer, or a
/// scrape reading it) leaves it: the other one is as recent, and nobody waits.
#[cold]
fn keep_exemplar(slot: &Mutex<Option<Exemplar>>, trace: TraceContext, value: f64, at: Option<f64>) {
    if let Ok(mut slot) = slot.try_lock() {
        let timestamp = at.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        });
        *slot = Some(Exemplar {
            trace,
            value,
            timestamp,
        });
    }
}

impl metrics::HistogramFn for FixedHistogram {
    fn record(&self, value: f64) {
        FixedHistogram::record(self, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(bounds: &[f64]) -> FixedHistogram {
        FixedHistogram::new(bounds.into(), false)
    }

    #[test]
    fn samples_land_in_the_first_bucket_at_or_above_them() {
        let h = histogram(&[0.1, 1.0, 10.0]);
        for value in [0.0, 0.1, 0.10001, 1.0, 5.0, 10.0, 10.5, f64::INFINITY, -3.0] {
            h.record(value);
        }
        let snapshot = h.snapshot();
        // le=0.1: 0, 0.1, -3; le=1: + 0.10001, 1; le=10: + 5, 10; +Inf: + 10.5, inf.
        assert_eq!(snapshot.cumulative, [3, 5, 7, 9]);
        assert_eq!(snapshot.count(), 9);
        assert_eq!(snapshot.sum, f64::INFINITY);
        h.record(f64::NAN);
        let snapshot = h.snapshot();
        assert_eq!(snapshot.cumulative, [3, 5, 7, 10], "NaN goes to +Inf");
        assert!(snapshot.sum.is_nan());
    }

    #[test]
    fn sums_are_exact_for_exact_values() {
        let h = histogram(&[1.0]);
        for _ in 0..1000 {
            h.record(0.25);
        }
        assert_eq!(h.snapshot().sum, 250.0);
        assert_eq!(h.snapshot().count(), 1000);
    }

    #[test]
    fn concurrent_writers_and_readers_see_consistent_snapshots() {
        let h = Arc::new(histogram(&[1.0, 2.0, 4.0]));
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    for i in 0..100_000u64 {
                        h.record(((i + t) % 6) as f64);
                    }
                })
            })
            .collect();
        let mut previous = vec![0; 4];
        while writers.iter().any(|w| !w.is_finished()) {
            let snapshot = h.snapshot();
            assert!(snapshot.cumulative.windows(2).all(|w| w[0] <= w[1]));
            for (now, before) in snapshot.cumulative.iter().zip(&previous) {
                assert!(now >= before, "a bucket went back");
            }
            // Every counted sample is in the sum (values are at least 0, and 0 adds 0).
            previous = snapshot.cumulative;
        }
        for writer in writers {
            writer.join().expect("writer");
        }
        let snapshot = h.snapshot();
        assert_eq!(snapshot.count(), 300_000);
        // Each thread records 0..=5 in turn: 100_000 / 6 full rounds plus a rest.
        let expected: f64 = (0..3u64)
            .map(|t| (0..100_000u64).map(|i| ((i + t) % 6) as f64).sum::<f64>())
            .sum();
        assert_eq!(snapshot.sum, expected);
    }

    #[test]
    fn as_a_metrics_histogram_it_records_the_same() {
        let h = histogram(&[1.0]);
        metrics::HistogramFn::record(&h, 0.5);
        metrics::HistogramFn::record(&h, 2.0);
        let snapshot = h.snapshot();
        assert_eq!((snapshot.cumulative, snapshot.sum), (vec![1, 2], 2.5));
    }
}

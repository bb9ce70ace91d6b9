//! A request's stream lane: the `tokens_out_delta` events of a bound request add their
//! tokens here with one compare-and-swap instead of taking the request's lock, and
//! whoever takes the lock next folds them into the request's state.
//!
//! A lane opens (under the request's lock) only once nothing about a delta event
//! depends on the state: the request is bound, past its first token, and its series
//! and price are fixed; the lane holds those two. One word holds the open bit, a
//! generation and the tokens not folded yet. A delta event reads the word, then the
//! series and price, then checks its span still owns the slot, and adds with a CAS on
//! the word it read: a close (or a close and a reopen for another span) in between
//! fails the CAS, so the series and price it read are the ones its tokens belong to.

// In tests under `--cfg llm_span_loom` (the model-checked tests of the in-flight table, which
// drive this lane through it and which .ci/run runs), the atomics are loom's, whose every
// operation is a point where loom's scheduler switches threads: every hand-off between a delta
// event and the request's lock holder goes through the word, the series or the price.
#[cfg(all(test, llm_span_loom))]
use ::loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(all(test, llm_span_loom)))]
use std::sync::atomic::{AtomicU64, Ordering};

const OPEN: u64 = 1 << 63;
const GENERATION_SHIFT: u32 = 47;
const GENERATION: u64 = 0xFFFF << GENERATION_SHIFT;
/// Tokens not folded yet; an add that would pass this takes the slow path.
const PENDING: u64 = (1 << GENERATION_SHIFT) - 1;
const UNPRICED: u64 = u64::MAX;

/// Where a lane's tokens count: the request's series and its output price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneTarget {
    /// The request's series, in the one word its owner packs it into (the lane only
    /// keeps it).
    pub(crate) series: u64,
    /// Picodollars per output token; `None`: the request is not priced.
    pub(crate) output_price: Option<u64>,
}

/// Tokens added through a lane, to fold into the request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streamed {
    pub(crate) tokens: u64,
    pub(crate) output_price: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct StreamLane {
    word: AtomicU64,
    series: AtomicU64,
    output_price: AtomicU64,
}

impl StreamLane {
    /// Opens a closed lane. Call with the request's lock held.
    pub(crate) fn open(&self, target: LaneTarget) {
        let word = self.word.load(Ordering::Relaxed);
        debug_assert_eq!(word & (OPEN | PENDING), 0, "opened twice");
        self.series.store(target.series, Ordering::Relaxed);
        self.output_price
            .store(target.output_price.unwrap_or(UNPRICED), Ordering::Relaxed);
        let generation = (word & GENERATION).wrapping_add(1 << GENERATION_SHIFT) & GENERATION;
        // Release: a delta event that sees the lane open sees its target.
        self.word.store(OPEN | generation, Ordering::Release);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.word.load(Ordering::Relaxed) & OPEN != 0
    }

    /// The tokens added and not folded yet; `None`: the lane is closed.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> Option<u64> {
        let word = self.word.load(Ordering::Relaxed);
        (word & OPEN != 0).then_some(word & PENDING)
    }

    /// Adds `tokens` if the lane is open and `still_owned` (the span still holds the
    /// slot); returns where they count. `None`: take the slow path.
    #[inline]
    pub(crate) fn add(
        &self,
        tokens: u64,
        still_owned: impl FnOnce() -> bool,
    ) -> Option<LaneTarget> {
        let word = self.word.load(Ordering::Acquire);
        if word & OPEN == 0 || tokens > PENDING - (word & PENDING) {
            return None;
        }
        let series = self.series.load(Ordering::Relaxed);
        let price = self.output_price.load(Ordering::Relaxed);
        if !still_owned() {
            return None;
        }
        // One attempt: a concurrent add or fold sends this one down the slow path.
        self.word
            .compare_exchange(word, word + tokens, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(LaneTarget {
            series,
            output_price: (price != UNPRICED).then_some(price),
        })
    }

    /// Takes the tokens added since the last fold. Call with the request's lock held.
    #[inline]
    pub(crate) fn take(&self) -> Option<Streamed> {
        if self.word.load(Ordering::Acquire) & PENDING == 0 {
            return None;
        }
        let word = self.word.fetch_and(!PENDING, Ordering::AcqRel);
        self.streamed(word)
    }

    /// Closes the lane and takes what it still holds. Call with the request's lock held.
    #[inline]
    pub(crate) fn close(&self) -> Option<Streamed> {
        if !self.is_open() {
            return None;
        }
        let word = self.word.fetch_and(GENERATION, Ordering::AcqRel);
        self.streamed(word)
    }

    /// [`close`](Self::close) for a lane no one else can reach.
    pub(crate) fn close_mut(&mut self) -> Option<Streamed> {
        // `&mut`: no other thread reaches the word, so a relaxed read-modify-write does what
        // `get_mut` would (loom's atomics, under `--cfg llm_span_loom`, have no `get_mut`).
        let taken = self.word.fetch_and(GENERATION, Ordering::Relaxed);
        self.streamed(taken)
    }

    fn streamed(&self, word: u64) -> Option<Streamed> {
        let tokens = word & PENDING;
        if tokens == 0 {
            return None;
        }
        let price = self.output_price.load(Ordering::Relaxed);
        Some(Streamed {
            tokens,
            output_price: (price != UNPRICED).then_some(price),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: LaneTarget = LaneTarget {
        series: 3 << 32 | 70_000,
        output_price: Some(600_000),
    };

    #[test]
    fn a_closed_lane_takes_nothing_and_an_open_one_keeps_its_target() {
        let lane = StreamLane::default();
        assert_eq!(lane.add(5, || true), None);
        lane.open(TARGET);
        assert_eq!(lane.add(5, || true), Some(TARGET));
        assert_eq!(
            lane.add(2, || false),
            None,
            "the span no longer owns the slot"
        );
        assert_eq!(
            lane.take(),
            Some(Streamed {
                tokens: 5,
                output_price: Some(600_000)
            })
        );
        assert_eq!(lane.take(), None, "taken once");
        assert_eq!(
            lane.add(1, || true),
            Some(TARGET),
            "still open after a fold"
        );
        assert_eq!(lane.close().map(|s| s.tokens), Some(1));
        assert_eq!(lane.add(1, || true), None);
        assert_eq!(lane.close(), None);
    }

    #[test]
    fn each_opening_is_the_next_generation() {
        let lane = StreamLane::default();
        for generation in 1..=3 {
            lane.open(TARGET);
            let word = lane.word.load(Ordering::Relaxed);
            assert_eq!(word, OPEN | generation << GENERATION_SHIFT);
            lane.close();
        }
    }

    #[test]
    fn a_reopened_lane_is_a_new_generation_and_an_unpriced_target_stays_unpriced() {
        let lane = StreamLane::default();
        lane.open(TARGET);
        let first = lane.word.load(Ordering::Relaxed);
        lane.close();
        let unpriced = LaneTarget {
            output_price: None,
            ..TARGET
        };
        lane.open(unpriced);
        assert_ne!(lane.word.load(Ordering::Relaxed), first);
        assert_eq!(lane.add(PENDING, || true), Some(unpriced));
        assert_eq!(lane.add(1, || true), None, "full: the slow path folds it");
        let mut lane = lane;
        assert_eq!(
            lane.close_mut(),
            Some(Streamed {
                tokens: PENDING,
                output_price: None
            })
        );
        assert!(!lane.is_open());
    }
}

//! Per-span state of open requests and queue phases, keyed by span id.
//!
//! Span extensions would box every value (one allocation per request) and take the
//! span's extension lock and a type-keyed hash map on every callback. This table is
//! allocated up front: open-addressing arrays whose slot ids are claimed with a CAS and
//! whose state sits behind a per-slot mutex that only that span's callbacks take.
//!
//! A counting filter over span ids answers "is this span tracked?" with one load, so
//! closing a span that is not an LLM request costs next to nothing. Removed slots
//! become tombstones (never empty again), which keeps every probe chain intact for
//! concurrent readers; inserts reuse tombstones. A key lives within a few slots of its
//! home; when none is free there, it goes to the next level, twice as large and
//! allocated the first time it is needed, so the table holds any number of spans in
//! flight and its memory follows the peak.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tracing_core::span::Id;

use super::lane::{LaneTarget, StreamLane, Streamed};

/// What a slot holds: it folds in the tokens its stream lane took.
pub(crate) trait FoldStreamed {
    fn fold_streamed(&mut self, streamed: Streamed);
}

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;
/// Counters of the filter; false positives only cost a probe.
const FILTER_SLOTS: usize = 4096;
/// Slots a key may sit from its home slot. Bounds every probe, including lookups of
/// absent keys after a filter false positive, however many tombstones accumulate.
const MAX_PROBE: usize = 32;
/// Levels: the last holds `first << 23` slots.
const LEVELS: usize = 24;

struct Slot<T> {
    id: AtomicU64,
    state: Mutex<Option<T>>,
    lane: StreamLane,
}

pub(crate) struct InFlight<T> {
    /// Slots of level 0; level `k` has `first << k`.
    first: usize,
    levels: [OnceLock<Box<[Slot<T>]>>; LEVELS],
    /// Levels that may hold a key: lookups stop there.
    levels_used: AtomicUsize,
    filter: Box<[AtomicU32]>,
}

/// A locked slot holding a tracked span's state.
pub(crate) struct Entry<'a, T> {
    guard: MutexGuard<'a, Option<T>>,
    lane: &'a StreamLane,
}

impl<T: FoldStreamed> Entry<'_, T> {
    /// The state, with the tokens its stream lane took folded in.
    pub(crate) fn get(&mut self) -> Option<&mut T> {
        self.get_with_lane().map(|(tracked, _)| tracked)
    }

    /// The state and its stream lane.
    pub(crate) fn get_with_lane(&mut self) -> Option<(&mut T, &StreamLane)> {
        let tracked = self.guard.as_mut()?;
        if let Some(streamed) = self.lane.take() {
            tracked.fold_streamed(streamed);
        }
        Some((tracked, self.lane))
    }
}

#[inline]
fn spread(id: u64) -> u64 {
    (id ^ (id >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl<T: FoldStreamed> InFlight<T> {
    /// A table whose first level holds about `capacity` spans in flight.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            first: (capacity.max(4) * 2).next_power_of_two(),
            levels: std::array::from_fn(|_| OnceLock::new()),
            levels_used: AtomicUsize::new(0),
            filter: (0..FILTER_SLOTS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn level(&self, level: usize) -> Option<&[Slot<T>]> {
        let slots = self.levels.get(level)?.get_or_init(|| {
            (0..self.first << level)
                .map(|_| Slot {
                    id: AtomicU64::new(EMPTY),
                    state: Mutex::new(None),
                    lane: StreamLane::default(),
                })
                .collect()
        });
        Some(slots)
    }

    #[inline]
    fn filter_slot(&self, id: u64) -> &AtomicU32 {
        &self.filter[(spread(id) >> 52) as usize & (FILTER_SLOTS - 1)]
    }

    /// `false` means certainly not tracked.
    #[inline]
    pub(crate) fn may_contain(&self, id: &Id) -> bool {
        self.filter_slot(id.into_u64()).load(Ordering::Acquire) != 0
    }

    /// Stores the state of a new span: `init` makes it in its slot, then `fill` completes
    /// it there (no copy of a large state). `None` only if every level is full; the
    /// caller then has nowhere to keep the state.
    pub(crate) fn insert<R>(
        &self,
        id: &Id,
        init: impl FnOnce() -> T,
        fill: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let key = id.into_u64();
        for level in 0..LEVELS {
            let slots = self.level(level)?;
            let mask = slots.len() - 1;
            let mut index = spread(key) as usize & mask;
            for _ in 0..MAX_PROBE {
                let slot = &slots[index];
                let current = slot.id.load(Ordering::Acquire);
                if (current == EMPTY || current == TOMBSTONE)
                    && slot
                        .id
                        .compare_exchange(current, key, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
                    let result = fill(state.insert(init()));
                    drop(state);
                    // Almost always level 0: a load spares the read-modify-write.
                    if self.levels_used.load(Ordering::Acquire) <= level {
                        self.levels_used.fetch_max(level + 1, Ordering::AcqRel);
                    }
                    self.filter_slot(key).fetch_add(1, Ordering::AcqRel);
                    return Some(result);
                }
                index = (index + 1) & mask;
            }
        }
        None
    }

    fn find(&self, key: u64) -> Option<&Slot<T>> {
        let used = self.levels_used.load(Ordering::Acquire);
        for level in self.levels.iter().take(used) {
            let Some(slots) = level.get() else {
                continue;
            };
            let mask = slots.len() - 1;
            let mut index = spread(key) as usize & mask;
            for _ in 0..MAX_PROBE {
                let slot = &slots[index];
                match slot.id.load(Ordering::Acquire) {
                    current if current == key => return Some(slot),
                    EMPTY => break,
                    _ => index = (index + 1) & mask,
                }
            }
        }
        None
    }

    /// The locked state of a tracked span.
    pub(crate) fn get(&self, id: &Id) -> Option<Entry<'_, T>> {
        if !self.may_contain(id) {
            return None;
        }
        let key = id.into_u64();
        let slot = self.find(key)?;
        let guard = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        // The slot cannot change hands while its span is open, but make sure.
        (slot.id.load(Ordering::Acquire) == key).then_some(Entry {
            guard,
            lane: &slot.lane,
        })
    }

    /// Adds a delta event's tokens through the span's open stream lane, without its
    /// lock; `None`: no open lane, take the slow path.
    #[inline]
    pub(crate) fn stream(&self, id: &Id, tokens: u64) -> Option<LaneTarget> {
        if !self.may_contain(id) {
            return None;
        }
        let key = id.into_u64();
        let slot = self.find(key)?;
        slot.lane
            .add(tokens, || slot.id.load(Ordering::Acquire) == key)
    }

    /// The tokens a tracked span's open stream lane holds, not folded yet; `None`: the
    /// span is not tracked or its lane is closed.
    #[cfg(test)]
    pub(crate) fn lane_pending(&self, id: &Id) -> Option<u64> {
        self.find(id.into_u64())?.lane.pending()
    }

    /// Runs `finish` on a closing span's state where it lies, then frees its slot.
    pub(crate) fn remove_with<R>(&self, id: &Id, finish: impl FnOnce(&mut T) -> R) -> Option<R> {
        if !self.may_contain(id) {
            return None;
        }
        let key = id.into_u64();
        let slot = self.find(key)?;
        let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        let streamed = slot.lane.close();
        let result = state.as_mut().map(|tracked| {
            if let Some(streamed) = streamed {
                tracked.fold_streamed(streamed);
            }
            finish(tracked)
        });
        *state = None;
        drop(state);
        if slot
            .id
            .compare_exchange(key, TOMBSTONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.filter_slot(key).fetch_sub(1, Ordering::AcqRel);
        }
        result
    }

    /// Takes every state still held, for a layer that is going away.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.levels
            .iter_mut()
            .filter_map(OnceLock::get_mut)
            .flat_map(|slots| slots.iter_mut())
            .filter_map(|slot| {
                *slot.id.get_mut() = TOMBSTONE;
                let streamed = slot.lane.close_mut();
                let mut tracked = slot
                    .state
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()?;
                if let Some(streamed) = streamed {
                    tracked.fold_streamed(streamed);
                }
                Some(tracked)
            })
    }
}

impl<T> std::fmt::Debug for InFlight<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("first", &self.first)
            .field("levels_used", &self.levels_used.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state that remembers the tokens folded into it.
    #[derive(Debug, Default)]
    struct Held(u64);

    impl FoldStreamed for Held {
        fn fold_streamed(&mut self, streamed: Streamed) {
            self.0 += streamed.tokens;
        }
    }

    #[test]
    fn the_first_level_holds_twice_the_capacity_and_debug_says_so() {
        let table = InFlight::with_capacity(100);
        assert_eq!(
            format!("{table:?}"),
            "InFlight { first: 256, levels_used: 0, .. }"
        );
        assert!(table.insert(&Id::from_u64(5), queue, |_| ()).is_some());
        assert_eq!(
            format!("{table:?}"),
            "InFlight { first: 256, levels_used: 1, .. }"
        );
    }

    fn queue() -> Held {
        Held::default()
    }

    #[test]
    fn full_levels_overflow_to_the_next_and_freed_slots_are_reused() {
        let table = InFlight::with_capacity(4); // 8 slots in level 0
        let ids: Vec<Id> = (1..=100).map(Id::from_u64).collect();
        for id in &ids {
            assert!(table.insert(id, queue, |_| ()).is_some());
        }
        assert!(table.levels_used.load(Ordering::Relaxed) > 1, "grew");
        for id in &ids {
            assert!(
                table.get(id).is_some_and(|mut e| e.get().is_some()),
                "{id:?}"
            );
        }
        assert_eq!(table.remove_with(&ids[3], |_| 7), Some(7));
        assert!(table.get(&ids[3]).is_none());
        assert_eq!(table.remove_with(&ids[3], |_| 7), None, "removed once");
        assert!(table.insert(&Id::from_u64(999), queue, |_| ()).is_some());
        assert!(table.get(&Id::from_u64(999)).is_some());
        for id in &ids {
            if id != &ids[3] {
                assert!(
                    table.get(id).is_some(),
                    "{id:?} still reachable past the tombstone"
                );
            }
        }
    }

    #[test]
    fn the_filter_knows_untracked_ids() {
        let table = InFlight::with_capacity(64);
        let id = Id::from_u64(42);
        assert!(!table.may_contain(&id));
        table.insert(&id, queue, |_| ());
        assert!(table.may_contain(&id));
        table.remove_with(&id, |_| ());
        assert!(!table.may_contain(&id));
    }

    #[test]
    fn drain_takes_every_state_once() {
        let mut table = InFlight::with_capacity(4);
        for id in 1..=50 {
            table.insert(&Id::from_u64(id), queue, |_| ());
        }
        table.remove_with(&Id::from_u64(7), |_| ());
        assert_eq!(table.drain().count(), 49);
        assert_eq!(table.drain().count(), 0);
    }
}

//! Per-span state of open requests and queue phases, keyed by span id.
//!
//! Span extensions would box every value (one allocation per request) and take the
//! span's extension lock and a type-keyed hash map on every callback. This table is
//! allocated once: an open-addressing array whose slot ids are claimed with a CAS and
//! whose state sits behind a per-slot mutex that only that span's callbacks take.
//!
//! A counting filter over span ids answers "is this span tracked?" with one load, so
//! closing a span that is not an LLM request costs next to nothing. Removed slots
//! become tombstones (never empty again), which keeps every probe chain intact for
//! concurrent readers; inserts reuse tombstones. A key lives within a few slots of its
//! home; when none is free there, its state spills into the span's extensions
//! instead, and nothing is lost.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tracing_core::span::Id;

use crate::state::Tracked;

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;
/// Counters of the filter; false positives only cost a probe.
const FILTER_SLOTS: usize = 4096;
/// Slots a key may sit from its home slot. Bounds every probe, including lookups of
/// absent keys after a filter false positive, however many tombstones accumulate.
const MAX_PROBE: usize = 32;

struct Slot {
    id: AtomicU64,
    state: Mutex<Option<Tracked>>,
}

pub(crate) struct InFlight {
    capacity: usize,
    slots: OnceLock<Box<[Slot]>>,
    filter: Box<[AtomicU32]>,
    /// States living in span extensions because the table was full.
    spilled: AtomicU64,
}

/// A locked slot holding a tracked span's state.
pub(crate) struct Entry<'a> {
    guard: MutexGuard<'a, Option<Tracked>>,
}

impl Entry<'_> {
    pub(crate) fn get(&mut self) -> Option<&mut Tracked> {
        self.guard.as_mut()
    }
}

#[inline]
fn spread(id: u64) -> u64 {
    (id ^ (id >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl InFlight {
    /// A table sized for about `capacity` spans in flight.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: (capacity.max(4) * 2).next_power_of_two(),
            slots: OnceLock::new(),
            filter: (0..FILTER_SLOTS).map(|_| AtomicU32::new(0)).collect(),
            spilled: AtomicU64::new(0),
        }
    }

    fn slots(&self) -> &[Slot] {
        self.slots.get_or_init(|| {
            (0..self.capacity)
                .map(|_| Slot {
                    id: AtomicU64::new(EMPTY),
                    state: Mutex::new(None),
                })
                .collect()
        })
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

    /// Whether some state lives in span extensions.
    #[inline]
    pub(crate) fn has_spilled(&self) -> bool {
        self.spilled.load(Ordering::Acquire) != 0
    }

    /// Stores the state of a new span; `Err` gives it back when the table is full.
    // Boxing the state to shrink the error would allocate on every spill for nothing.
    #[allow(clippy::result_large_err)]
    pub(crate) fn insert(&self, id: &Id, tracked: Tracked) -> Result<(), Tracked> {
        let key = id.into_u64();
        let slots = self.slots();
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
                *slot.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(tracked);
                self.filter_slot(key).fetch_add(1, Ordering::AcqRel);
                return Ok(());
            }
            index = (index + 1) & mask;
        }
        Err(tracked)
    }

    /// Notes that a span's state went to its extensions instead.
    pub(crate) fn note_spilled(&self, id: &Id) {
        self.spilled.fetch_add(1, Ordering::AcqRel);
        self.filter_slot(id.into_u64())
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Notes that a spilled span's state was removed from its extensions.
    pub(crate) fn note_unspilled(&self, id: &Id) {
        self.spilled.fetch_sub(1, Ordering::AcqRel);
        self.filter_slot(id.into_u64())
            .fetch_sub(1, Ordering::AcqRel);
    }

    fn find(&self, key: u64) -> Option<&Slot> {
        let slots = self.slots.get()?;
        let mask = slots.len() - 1;
        let mut index = spread(key) as usize & mask;
        for _ in 0..MAX_PROBE {
            let slot = &slots[index];
            match slot.id.load(Ordering::Acquire) {
                current if current == key => return Some(slot),
                EMPTY => return None,
                _ => index = (index + 1) & mask,
            }
        }
        None
    }

    /// The locked state of a tracked span held in the table.
    pub(crate) fn get(&self, id: &Id) -> Option<Entry<'_>> {
        if !self.may_contain(id) {
            return None;
        }
        let key = id.into_u64();
        let slot = self.find(key)?;
        let guard = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        // The slot cannot change hands while its span is open, but make sure.
        (slot.id.load(Ordering::Acquire) == key).then_some(Entry { guard })
    }

    /// Runs `finish` on a closing span's state, then frees its slot.
    pub(crate) fn remove_with<R>(
        &self,
        id: &Id,
        finish: impl FnOnce(&mut Tracked) -> R,
    ) -> Option<R> {
        if !self.may_contain(id) {
            return None;
        }
        let key = id.into_u64();
        let slot = self.find(key)?;
        let mut guard = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        let result = guard.as_mut().map(finish);
        *guard = None;
        drop(guard);
        slot.id.store(TOMBSTONE, Ordering::Release);
        self.filter_slot(key).fetch_sub(1, Ordering::AcqRel);
        result
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("capacity", &self.capacity)
            .field("spilled", &self.spilled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::SeriesRef;
    use crate::state::QueueState;

    fn queue() -> Tracked {
        let (clock, _) = quanta::Clock::mock();
        Tracked::Queue(QueueState {
            start: clock.now(),
            series: SeriesRef {
                recorder: 0,
                slot: 0,
            },
        })
    }

    #[test]
    fn full_windows_refuse_and_freed_slots_are_reused() {
        let table = InFlight::with_capacity(4); // 8 slots
        let ids: Vec<Id> = (1..=8).map(Id::from_u64).collect();
        for id in &ids {
            assert!(table.insert(id, queue()).is_ok());
        }
        assert!(
            table.insert(&Id::from_u64(99), queue()).is_err(),
            "no free slot"
        );
        for id in &ids {
            assert!(table.get(id).is_some_and(|mut e| e.get().is_some()));
        }
        assert_eq!(table.remove_with(&ids[3], |_| 7), Some(7));
        assert!(table.get(&ids[3]).is_none());
        assert_eq!(table.remove_with(&ids[3], |_| 7), None, "removed once");
        assert!(
            table.insert(&Id::from_u64(99), queue()).is_ok(),
            "tombstone reused"
        );
        assert!(table.get(&Id::from_u64(99)).is_some());
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
        table.insert(&id, queue()).ok();
        assert!(table.may_contain(&id));
        table.remove_with(&id, |_| ());
        assert!(!table.may_contain(&id));
        assert!(!table.has_spilled());
    }
}

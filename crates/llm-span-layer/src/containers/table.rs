//! An insert-only hash table whose reads take no lock and whose memory grows with the
//! entries it holds, up to a cap.
//!
//! Everything the layer looks up on the hot path here (callsite classes, metric handles
//! per series) is bounded by configuration and never removed while
//! the layer lives. Entries are appended to a [`Segments`] array (so an entry's id, its
//! position, never changes) and found through an open-addressing index of ids that is
//! rebuilt twice as large when it is half full; readers load the current index and
//! probe it with atomic loads. Writers take a mutex.

use std::hash::{BuildHasher, Hasher};
// In tests under `--cfg llm_span_loom` (the model-checked test below, which .ci/run runs), the atomics
// and the writers' lock are loom's, whose every operation is a point where loom's scheduler
// switches threads. `OnceLock` stays std's: loom has none. Each entry's cell is set before its
// id is stored in an index slot, and the bigger index is filled before `current` names it, so
// every hand-off between threads goes through a modelled atomic or the modelled lock.
#[cfg(all(test, llm_span_loom))]
use ::loom::sync::{
    atomic::{AtomicU32, AtomicUsize, Ordering},
    Mutex,
};
use std::sync::OnceLock;
#[cfg(not(all(test, llm_span_loom)))]
use std::sync::{
    atomic::{AtomicU32, AtomicUsize, Ordering},
    Mutex,
};

use super::segments::Segments;

/// Slots of the first index level.
const FIRST_INDEX: usize = 16;
/// Index levels: the last has `FIRST_INDEX << (LEVELS - 1)` slots, room for 2^31 entries.
const LEVELS: usize = 29;

/// The most entries any table takes (ids are `u32`, and two values are reserved).
pub(crate) const MAX_ENTRIES: usize = 1 << 30;

/// Why an insert did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

struct Entry<K, V> {
    hash: u64,
    key: K,
    value: V,
}

pub(crate) struct BoundedTable<K, V> {
    entries: Segments<OnceLock<Entry<K, V>>>,
    /// Index levels; slot values are entry id + 1, 0 for empty.
    index: [OnceLock<Box<[AtomicU32]>>; LEVELS],
    /// The level readers use.
    current: AtomicUsize,
    max_len: usize,
    /// Entry count, only written under the lock.
    len: Mutex<usize>,
}

impl<K, V> BoundedTable<K, V> {
    /// A table that takes at most `max_len` entries (at most [`MAX_ENTRIES`]).
    pub(crate) fn with_max_len(max_len: usize) -> Self {
        let table = Self {
            entries: Segments::new(),
            index: std::array::from_fn(|_| OnceLock::new()),
            current: AtomicUsize::new(0),
            max_len: max_len.min(MAX_ENTRIES),
            len: Mutex::new(0),
        };
        let _ = table.index[0].set(empty_index(FIRST_INDEX));
        table
    }

    #[inline]
    fn entry(&self, id: u32) -> Option<&Entry<K, V>> {
        self.entries.get(id as usize)?.get()
    }

    /// Finds the entry whose key satisfies `eq`, probing from `hash`.
    #[inline]
    pub(crate) fn find(&self, hash: u64, eq: impl Fn(&K) -> bool) -> Option<(u32, &V)> {
        let index = self.index[self.current.load(Ordering::Acquire)].get()?;
        self.probe(index, hash, &eq).ok()
    }

    /// The entry found from `hash`, or the free slot where it would go.
    #[inline]
    fn probe<'a>(
        &'a self,
        index: &'a [AtomicU32],
        hash: u64,
        eq: &impl Fn(&K) -> bool,
    ) -> Result<(u32, &'a V), &'a AtomicU32> {
        let mask = index.len() - 1;
        let mut at = hash as usize & mask;
        // Never more than half full, so an empty slot ends every probe before it has been
        // round the index: checked in debug builds, where a wrong mask would loop forever.
        let mut probed = 0usize..;
        loop {
            debug_assert!(
                probed.next() < Some(index.len()),
                "a probe went round the whole index"
            );
            let slot = &index[at];
            let Some(id) = slot.load(Ordering::Acquire).checked_sub(1) else {
                return Err(slot);
            };
            if let Some(entry) = self.entry(id) {
                if entry.hash == hash && eq(&entry.key) {
                    return Ok((id, &entry.value));
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// The entry with id `id`, as returned by `find` or `find_or_insert`.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<(&K, &V)> {
        self.entry(id).map(|entry| (&entry.key, &entry.value))
    }

    /// Returns the existing entry for the key or inserts `make()`.
    ///
    /// `make` runs under the writers' lock, at most once, and only when the key is new.
    pub(crate) fn find_or_insert(
        &self,
        hash: u64,
        eq: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, V),
    ) -> Result<(u32, &V), Full> {
        if let Some(found) = self.find(hash, &eq) {
            return Ok(found);
        }
        let mut len = self.len.lock().unwrap_or_else(|p| p.into_inner());
        // Another writer may have inserted the key, or grown the index, meanwhile.
        let mut level = self.current.load(Ordering::Acquire);
        let mut index = self.index[level].get().ok_or(Full)?;
        if let Ok(found) = self.probe(index, hash, &eq) {
            return Ok(found);
        }
        if *len >= self.max_len {
            return Err(Full);
        }
        if (*len + 1) * 2 > index.len() {
            let bigger = self.index.get(level + 1).ok_or(Full)?;
            let bigger = bigger.get_or_init(|| empty_index(index.len() * 2));
            for id in 0..*len as u32 {
                if let Some(entry) = self.entry(id) {
                    if let Err(free) = self.probe(bigger, entry.hash, &|_| false) {
                        free.store(id + 1, Ordering::Release);
                    }
                }
            }
            level += 1;
            self.current.store(level, Ordering::Release);
            index = bigger;
        }
        let id = *len as u32;
        let (key, value) = make();
        let cell = self
            .entries
            .get_or_alloc(id as usize, OnceLock::new)
            .ok_or(Full)?;
        if cell.set(Entry { hash, key, value }).is_err() {
            return Err(Full);
        }
        // Published after the entry is in place: a reader that sees the id sees it.
        match self.probe(index, hash, &|_| false) {
            Err(free) => free.store(id + 1, Ordering::Release),
            Ok(_) => return Err(Full),
        }
        *len += 1;
        let entry = self.entry(id).ok_or(Full)?;
        Ok((id, &entry.value))
    }

    /// Every entry, in insertion order.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        let len = self.len();
        (0..len as u32).filter_map(|id| self.get(id))
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        *self.len.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn empty_index(slots: usize) -> Box<[AtomicU32]> {
    (0..slots).map(|_| AtomicU32::new(0)).collect()
}

impl<K, V> std::fmt::Debug for BoundedTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedTable")
            .field("len", &self.len())
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// Hashes pointer-sized keys (callsite identities, packed label ids) with one multiply.
#[derive(Default, Clone, Copy)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(26) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The high bits of a multiply are the well-mixed ones; the table masks the low bits.
        self.0 ^ (self.0 >> 29)
    }
}

#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct BuildMixHasher;

impl BuildHasher for BuildMixHasher {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn inserts_until_full_then_refuses() {
        let table: BoundedTable<u64, u64> = BoundedTable::with_max_len(3);
        let hash = |k: u64| BuildMixHasher.hash_one(k);
        for k in 0..3u64 {
            let (_, v) = table
                .find_or_insert(hash(k), |x| *x == k, || (k, k * 10))
                .expect("room");
            assert_eq!(*v, k * 10);
        }
        assert_eq!(
            table.find_or_insert(hash(9), |x| *x == 9, || (9, 90)),
            Err(Full)
        );
        // Existing keys are still found when full.
        assert_eq!(table.find(hash(2), |x| *x == 2).map(|(_, v)| *v), Some(20));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn colliding_hashes_probe_to_the_right_entry() {
        let table: BoundedTable<u64, &str> = BoundedTable::with_max_len(4);
        for (k, v) in [(1u64, "a"), (2, "b"), (3, "c")] {
            table
                .find_or_insert(7, |x| *x == k, || (k, v))
                .expect("room");
        }
        assert_eq!(table.find(7, |x| *x == 3).map(|(_, v)| *v), Some("c"));
        assert_eq!(table.find(7, |x| *x == 4), None);
        let (id, _) = table.find(7, |x| *x == 2).expect("present");
        assert_eq!(table.get(id).map(|(k, _)| *k), Some(2));
    }

    #[test]
    fn make_runs_once_per_key() {
        let table: BoundedTable<u64, u64> = BoundedTable::with_max_len(4);
        let mut calls = 0;
        for _ in 0..3 {
            table
                .find_or_insert(
                    5,
                    |x| *x == 5,
                    || {
                        calls += 1;
                        (5, 1)
                    },
                )
                .expect("room");
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn memory_grows_with_entries_not_with_the_cap() {
        let table: BoundedTable<u64, u64> = BoundedTable::with_max_len(MAX_ENTRIES);
        let hash = |k: u64| BuildMixHasher.hash_one(k);
        for k in 0..1000u64 {
            table
                .find_or_insert(hash(k), |x| *x == k, || (k, k + 1))
                .expect("room");
        }
        for k in 0..1000u64 {
            assert_eq!(
                table.find(hash(k), |x| *x == k).map(|(_, v)| *v),
                Some(k + 1)
            );
        }
        assert_eq!(table.find(hash(5000), |x| *x == 5000), None);
        assert!(
            table.entries.allocated() < 2048,
            "{}",
            table.entries.allocated()
        );
        let levels = table.index.iter().filter(|l| l.get().is_some()).count();
        assert!(levels <= 8, "{levels} index levels for 1000 entries");
        assert_eq!(
            table.entries().map(|(k, _)| *k).collect::<Vec<_>>(),
            (0..1000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn concurrent_inserts_agree_on_one_slot_per_key() {
        let table: BoundedTable<u64, u64> = BoundedTable::with_max_len(64);
        let slots: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..64u64)
                            .map(|k| {
                                let h = BuildMixHasher.hash_one(k);
                                table
                                    .find_or_insert(h, |x| *x == k, || (k, k))
                                    .expect("room")
                                    .0
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(slots.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(table.len(), 64);
    }

    #[test]
    fn every_probe_ends() {
        // A probe that never ends would hang this test binary until cargo-mutants' timeout
        // (or CI's): a watchdog ends the binary instead, as a failure.
        let (done, finished) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // A test that failed drops the sender: only a timeout means a hang.
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                finished.recv_timeout(std::time::Duration::from_secs(10))
            {
                eprintln!("BoundedTable operations did not end within 10 s");
                std::process::exit(101);
            }
        });
        let table: BoundedTable<u64, u64> = BoundedTable::with_max_len(100);
        let hash = |k: u64| BuildMixHasher.hash_one(k);
        for k in 0..150u64 {
            let inserted = table.find_or_insert(hash(k), |x| *x == k, || (k, k * 2));
            assert_eq!(
                inserted.map(|(id, v)| (id, *v)),
                if k < 100 {
                    Ok((k as u32, k * 2))
                } else {
                    Err(Full)
                }
            );
        }
        for k in 0..150u64 {
            let found = table.find(hash(k), |x| *x == k).map(|(id, v)| (id, *v));
            assert_eq!(found, (k < 100).then_some((k as u32, k * 2)), "{k}");
        }
        assert_eq!(table.len(), 100);
        done.send(()).expect("watchdog");
    }

    #[test]
    fn the_index_doubles_when_an_insert_would_make_it_more_than_half_full() {
        let table: BoundedTable<u64, u64> = BoundedTable::with_max_len(1000);
        let hash = |k: u64| BuildMixHasher.hash_one(k);
        for n in 1..=300u64 {
            table
                .find_or_insert(hash(n), |x| *x == n, || (n, n))
                .expect("room");
            let level = table.current.load(Ordering::Acquire);
            let slots = table.index[level].get().map_or(0, |index| index.len());
            let expected = (2 * n as usize).next_power_of_two().max(FIRST_INDEX);
            assert_eq!(slots, expected, "{n} entries");
            assert_eq!(slots, FIRST_INDEX << level, "{n} entries");
        }
        assert_eq!(
            format!("{table:?}"),
            "BoundedTable { len: 300, max_len: 1000 }"
        );
    }
}

/// Model-checked with loom: `RUSTFLAGS="--cfg llm_span_loom" cargo test -p llm-span-layer
/// --release --lib containers::table::loom` (.ci/run). Every interleaving of the threads'
/// atomic operations and lock acquisitions, up to a bound on preemptions, is run.
#[cfg(all(test, llm_span_loom))]
mod loom {
    use super::*;
    use crate::containers::loom_model as model;
    use ::loom::sync::Arc;
    use ::loom::thread;

    fn hash(key: u64) -> u64 {
        BuildMixHasher.hash_one(key)
    }

    fn insert(table: &BoundedTable<u64, u64>, key: u64) -> Option<u32> {
        table
            .find_or_insert(hash(key), |k| *k == key, || (key, key * 10))
            .ok()
            .map(|(id, value)| {
                assert_eq!(*value, key * 10);
                id
            })
    }

    /// A reader either misses `key` or sees its whole entry.
    fn check_read(table: &BoundedTable<u64, u64>, key: u64) -> bool {
        match table.find(hash(key), |k| *k == key) {
            Some((id, value)) => {
                assert_eq!(*value, key * 10);
                assert_eq!(table.get(id), Some((&key, &(key * 10))));
                true
            }
            None => false,
        }
    }

    #[test]
    fn same_and_different_keys_get_unique_ids_within_the_cap() {
        model(|| {
            let table = Arc::new(BoundedTable::<u64, u64>::with_max_len(2));
            let writers: Vec<_> = [[1, 2], [1, 3]]
                .into_iter()
                .map(|keys| {
                    let table = Arc::clone(&table);
                    thread::spawn(move || keys.map(|key| insert(&table, key)))
                })
                .collect();
            // A reader of its own: loom switches between spawned threads, not to them from
            // the model's main thread before it blocks.
            let reader = {
                let table = Arc::clone(&table);
                thread::spawn(move || [1, 2, 3].map(|key| check_read(&table, key)))
            };
            reader.join().expect("reader");
            let results: Vec<[Option<u32>; 2]> = writers
                .into_iter()
                .map(|writer| writer.join().expect("writer"))
                .collect();
            // Key 1, interned by both, has one id; the cap of 2 leaves room for one of 2 and 3.
            assert!(results[0][0].is_some());
            assert_eq!(results[0][0], results[1][0]);
            assert_eq!(table.len(), 2);
            let ids: Vec<u32> = results.iter().flatten().flatten().copied().collect();
            assert_eq!(ids.len(), 3, "{results:?}");
            assert!(ids.iter().all(|id| *id < 2), "{ids:?}");
            assert_ne!(results[0][1], results[1][1]);
            for key in [1, 2, 3] {
                let found = check_read(&table, key);
                let inserted = results.iter().flatten().any(|id| match id {
                    Some(id) => table.get(*id).map(|(k, _)| *k) == Some(key),
                    None => false,
                });
                assert_eq!(found, inserted, "{key}");
            }
        });
    }

    #[test]
    fn a_reader_finds_every_entry_while_the_index_grows() {
        model(|| {
            // Eight entries fill the first index (16 slots) to half; the ninth makes the
            // writer build the next index and switch readers to it.
            let table = Arc::new(BoundedTable::<u64, u64>::with_max_len(100));
            for key in 0..8 {
                insert(&table, key).expect("room");
            }
            let writer = {
                let table = Arc::clone(&table);
                thread::spawn(move || insert(&table, 8))
            };
            let reader = {
                let table = Arc::clone(&table);
                thread::spawn(move || {
                    for key in [0, 7] {
                        assert!(check_read(&table, key), "{key}");
                    }
                    check_read(&table, 8)
                })
            };
            reader.join().expect("reader");
            assert_eq!(writer.join().expect("writer"), Some(8));
            for key in 0..9 {
                assert!(check_read(&table, key), "{key}");
            }
            assert_eq!(table.len(), 9);
        });
    }
}

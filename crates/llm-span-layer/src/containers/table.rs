//! A fixed-capacity, insert-only hash table whose reads take no lock.
//!
//! Everything the layer looks up on the hot path (callsite classes, label values,
//! metric handles per series) is bounded by configuration and never removed while
//! the layer lives. That lets reads be a hash plus a few atomic loads: slots are
//! `OnceLock`s that are written once, under a mutex that only writers take.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, OnceLock};

/// Why an insert did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct BoundedTable<K, V> {
    slots: Box<[OnceLock<(K, V)>]>,
    mask: usize,
    max_len: usize,
    /// Entry count, only read and written under the lock.
    len: Mutex<usize>,
}

impl<K, V> BoundedTable<K, V> {
    /// A table that holds at most `max_len` entries (kept at or below half full).
    pub(crate) fn with_max_len(max_len: usize) -> Self {
        let capacity = (max_len.max(1) * 2).next_power_of_two().max(8);
        let slots = (0..capacity).map(|_| OnceLock::new()).collect();
        Self {
            slots,
            mask: capacity - 1,
            max_len,
            len: Mutex::new(0),
        }
    }

    /// Finds the entry whose key satisfies `eq`, probing from `hash`.
    #[inline]
    pub(crate) fn find(&self, hash: u64, eq: impl Fn(&K) -> bool) -> Option<(u32, &V)> {
        let mut index = hash as usize & self.mask;
        // The table is never more than half full, so an empty slot ends every probe.
        for _ in 0..self.slots.len() {
            match self.slots[index].get() {
                None => return None,
                Some((key, value)) if eq(key) => return Some((index as u32, value)),
                Some(_) => index = (index + 1) & self.mask,
            }
        }
        None
    }

    /// The entry at a slot index returned earlier by `find` or `insert`.
    #[inline]
    pub(crate) fn get(&self, slot: u32) -> Option<&(K, V)> {
        self.slots.get(slot as usize)?.get()
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
        let mut len = self
            .len
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another writer may have inserted the key while we waited for the lock.
        let mut index = hash as usize & self.mask;
        loop {
            match self.slots[index].get() {
                Some((key, value)) if eq(key) => return Ok((index as u32, value)),
                Some(_) => index = (index + 1) & self.mask,
                None => break,
            }
        }
        if *len >= self.max_len {
            return Err(Full);
        }
        let slot = &self.slots[index];
        let _ = slot.set(make());
        *len += 1;
        let (_, value) = slot.get().ok_or(Full)?;
        Ok((index as u32, value))
    }

    /// Number of slots: every slot index returned is below it.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Most entries the table takes.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Every entry, in slot order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &(K, V)> {
        self.slots.iter().filter_map(OnceLock::get)
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        *self
            .len
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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

/// [`MixHasher`] started from a random seed, for keys a client chooses (label values):
/// collisions cannot be planned offline, and a table's cap bounds any probe anyway.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeededMixHasher(u64);

impl SeededMixHasher {
    pub(crate) fn random() -> Self {
        Self(std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64) | 1)
    }
}

impl BuildHasher for SeededMixHasher {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher(self.0)
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
        let (slot, _) = table.find(7, |x| *x == 2).expect("present");
        assert_eq!(table.get(slot).map(|(k, _)| *k), Some(2));
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
}

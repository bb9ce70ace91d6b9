//! An array indexed by `u32` ids whose memory grows with the highest id used.
//!
//! Segment `k` holds `FIRST << k` elements and is allocated the first time an index in
//! it is asked for; segments never move, so a reference into one stays valid for as
//! long as the array lives, and reads are two loads.

use std::sync::OnceLock;

/// Elements of the first segment.
const FIRST: usize = 16;
/// Segment count: together they hold `FIRST * (2^SEGMENTS - 1)` elements, past `u32::MAX`.
const SEGMENTS: usize = 29;

pub(crate) struct Segments<T> {
    segments: [OnceLock<Box<[T]>>; SEGMENTS],
}

/// The segment holding `index`, and the offset in it.
#[inline]
fn locate(index: usize) -> (usize, usize) {
    // Segment k starts at FIRST * (2^k - 1).
    let block = index / FIRST + 1;
    let segment = (usize::BITS - 1 - block.leading_zeros()) as usize;
    (segment, index - FIRST * ((1 << segment) - 1))
}

impl<T> Segments<T> {
    pub(crate) fn new() -> Self {
        Self {
            segments: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The element at `index`, if its segment was allocated.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        let (segment, offset) = locate(index);
        self.segments.get(segment)?.get()?.get(offset)
    }

    /// The element at `index`, allocating its segment with `fill` if needed. `None`
    /// only for an index past every segment.
    pub(crate) fn get_or_alloc(&self, index: usize, fill: impl Fn() -> T) -> Option<&T> {
        let (segment, offset) = locate(index);
        self.segments
            .get(segment)?
            .get_or_init(|| (0..FIRST << segment).map(|_| fill()).collect())
            .get(offset)
    }

    /// Elements allocated so far.
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.segments
            .iter()
            .filter_map(OnceLock::get)
            .map(|s| s.len())
            .sum()
    }
}

impl<T> std::fmt::Debug for Segments<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let allocated = self.segments.iter().filter(|s| s.get().is_some()).count();
        f.debug_struct("Segments")
            .field("allocated_segments", &allocated)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_map_to_segments_without_gaps() {
        let mut expected = (0, 0);
        for index in 0..10_000 {
            assert_eq!(locate(index), expected, "{index}");
            expected.1 += 1;
            if expected.1 == FIRST << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
        let (last, _) = locate(u32::MAX as usize);
        assert!(last < SEGMENTS);
    }

    #[test]
    fn memory_follows_the_highest_index() {
        let array: Segments<OnceLock<u32>> = Segments::new();
        assert!(array.get(3).is_none());
        array.get_or_alloc(3, OnceLock::new).expect("room");
        assert_eq!(array.allocated(), FIRST);
        array
            .get_or_alloc(1000, OnceLock::new)
            .expect("room")
            .set(7)
            .expect("empty");
        assert_eq!(array.get(1000).and_then(OnceLock::get), Some(&7));
        // Index 1000 is in the 512-element segment; the ones between stay unallocated.
        assert_eq!(array.allocated(), FIRST + 512);
        assert!(array.get(100).is_none());
    }

    #[test]
    fn debug_counts_the_allocated_segments() {
        let array: Segments<OnceLock<u32>> = Segments::new();
        assert_eq!(format!("{array:?}"), "Segments { allocated_segments: 0 }");
        array.get_or_alloc(3, OnceLock::new).expect("room");
        array.get_or_alloc(1000, OnceLock::new).expect("room");
        assert_eq!(format!("{array:?}"), "Segments { allocated_segments: 2 }");
    }
}

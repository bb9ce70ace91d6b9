//! Label values with a cap on how many distinct values each label may take.
//!
//! A client that sends a million model names must not create a million series: each
//! label interns at most `cap` values, and anything past the cap (or not a sensible
//! label value) maps to one overflow value that the caller counts as an anomaly.

use std::hash::BuildHasher;

use crate::catalog::{OVERFLOW_LABEL_VALUE, UNKNOWN_LABEL_VALUE};
use crate::containers::table::{BoundedTable, SeededMixHasher};

/// Longest label value accepted, in bytes. Longer values map to the overflow value.
pub(crate) const MAX_LABEL_VALUE_LEN: usize = 128;

/// An interned label value, or one of the two reserved values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct LabelId(u32);

impl LabelId {
    pub(crate) const UNKNOWN: LabelId = LabelId(u32::MAX - 1);
    pub(crate) const OVERFLOW: LabelId = LabelId(u32::MAX);

    pub(crate) fn raw(self) -> u32 {
        self.0
    }

    pub(crate) fn from_raw(raw: u32) -> LabelId {
        LabelId(raw)
    }
}

/// What interning a value gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interned {
    /// A value within the cap.
    Value(LabelId),
    /// Empty: treated as absent.
    Empty,
    /// Too long or containing control characters: mapped to the overflow value.
    Invalid,
    /// A new value past the cap: mapped to the overflow value.
    Overflow,
}

/// The label value sets the layer interns into: one per label.
#[derive(Debug)]
pub(crate) struct LabelSets {
    pub(crate) model: LabelValues,
    pub(crate) revision: LabelValues,
    pub(crate) gpu: LabelValues,
    /// One per allowlisted extra label, in configuration order.
    pub(crate) extra: Vec<LabelValues>,
}

pub(crate) struct LabelValues {
    values: BoundedTable<Box<str>, ()>,
    hasher: SeededMixHasher,
}

impl LabelValues {
    pub(crate) fn with_cap(cap: usize) -> Self {
        Self {
            values: BoundedTable::with_max_len(cap),
            // Keyed randomly: label values come from clients and must not choose collisions.
            hasher: SeededMixHasher::random(),
        }
    }

    pub(crate) fn intern(&self, value: &str) -> Interned {
        if value.is_empty() {
            return Interned::Empty;
        }
        if value.len() > MAX_LABEL_VALUE_LEN || value.chars().any(char::is_control) {
            return Interned::Invalid;
        }
        let hash = self.hasher.hash_one(value);
        match self
            .values
            .find_or_insert(hash, |known| **known == *value, || (value.into(), ()))
        {
            Ok((slot, ())) => Interned::Value(LabelId(slot)),
            Err(_) => Interned::Overflow,
        }
    }

    /// The text of an id returned by [`LabelValues::intern`].
    pub(crate) fn text(&self, id: LabelId) -> &str {
        match id {
            LabelId::UNKNOWN => UNKNOWN_LABEL_VALUE,
            LabelId::OVERFLOW => OVERFLOW_LABEL_VALUE,
            LabelId(slot) => self
                .values
                .get(slot)
                .map_or(OVERFLOW_LABEL_VALUE, |(text, ())| text),
        }
    }

    /// Every id of an interned value is below this.
    pub(crate) fn id_bound(&self) -> usize {
        self.values.slot_count()
    }

    /// Distinct values interned so far.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}

impl std::fmt::Debug for LabelValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelValues")
            .field("values", &self.values)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_distinct_values_and_keeps_known_ones() {
        let labels = LabelValues::with_cap(2);
        let a = labels.intern("a");
        let b = labels.intern("b");
        assert!(matches!(a, Interned::Value(_)));
        assert!(matches!(b, Interned::Value(_)));
        assert_ne!(a, b);
        assert_eq!(labels.intern("c"), Interned::Overflow);
        assert_eq!(labels.intern("a"), a);
        let Interned::Value(a_id) = a else {
            unreachable!()
        };
        assert_eq!(labels.text(a_id), "a");
        assert_eq!(labels.text(LabelId::OVERFLOW), OVERFLOW_LABEL_VALUE);
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn rejects_values_that_make_bad_labels() {
        let labels = LabelValues::with_cap(10);
        assert_eq!(labels.intern(""), Interned::Empty);
        assert_eq!(labels.intern("line\nbreak"), Interned::Invalid);
        assert_eq!(
            labels.intern(&"x".repeat(MAX_LABEL_VALUE_LEN + 1)),
            Interned::Invalid
        );
        assert!(matches!(
            labels.intern(&"x".repeat(MAX_LABEL_VALUE_LEN)),
            Interned::Value(_)
        ));
        assert!(matches!(
            labels.intern("quote\"and\\backslash"),
            Interned::Value(_)
        ));
        assert_eq!(labels.len(), 2);
    }
}

//! Label values with a cap on how many distinct values each label may take.
//!
//! A client that sends a million model names must not create a million series: each
//! label interns at most `cap` values, and anything past the cap (or not a sensible
//! label value) maps to one overflow value that the caller counts as an anomaly.
//!
//! A sensible value is one every exporter renders faithfully and that no other value
//! renders like: at most 128 bytes, no control or format characters (Unicode
//! categories Cc and Cf: line breaks, zero-width joiners, byte-order marks,
//! bidirectional overrides), no backslash (metrics-exporter-prometheus escapes `\"` and
//! `"` alike), and neither of the reserved values `unknown` and `__overflow__`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::catalog::{OVERFLOW_LABEL_VALUE, UNKNOWN_LABEL_VALUE};
use crate::containers::segments::Segments;
use crate::pricing::{PriceId, PriceIndex};

/// Longest label value accepted, in bytes. Longer values map to the overflow value.
pub(crate) const MAX_LABEL_VALUE_LEN: usize = 128;

/// The most values any set takes (ids are `u32`, and two values are reserved).
const MAX_VALUES: usize = 1 << 30;

/// An interned label value, or one of the two reserved values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct LabelId(u32);

impl LabelId {
    pub(crate) const UNKNOWN: LabelId = LabelId(u32::MAX - 1);
    pub(crate) const OVERFLOW: LabelId = LabelId(u32::MAX);

    pub(crate) fn raw(self) -> u32 {
        self.0
    }

    /// Whether this is an interned value rather than one of the reserved ones.
    pub(crate) fn is_interned(self) -> bool {
        self.0 < LabelId::UNKNOWN.0
    }
}

/// What interning a value gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interned {
    /// A value within the cap.
    Value(LabelId),
    /// Empty: treated as absent.
    Empty,
    /// Not a sensible label value (see the module docs): mapped to the overflow value.
    Invalid,
    /// A new value past the cap: mapped to the overflow value.
    Overflow,
}

/// The label value sets the layer interns into: one per label, and the prices that
/// model values carry.
#[derive(Debug)]
pub(crate) struct LabelSets {
    pub(crate) model: LabelValues,
    pub(crate) prices: PriceIndex,
    pub(crate) revision: LabelValues,
    pub(crate) gpu: LabelValues,
    /// GenAI operation names and providers, for the operation families.
    pub(crate) operation: LabelValues,
    pub(crate) provider: LabelValues,
    /// One per allowlisted extra label, in configuration order.
    pub(crate) extra: Vec<LabelValues>,
}

/// The values of one label, at most `cap` of them.
///
/// A [`DashMap`] from value to id finds a known value by `&str`, without allocating; a new
/// value takes the next id under the lock of the map shard it goes to, so two threads that
/// intern the same new value get one id, and the id counter (an atomic that never passes
/// `cap`) bounds the set across shards. Reverse lookups (id to text, and price) go through a
/// [`Segments`] array, written once per id before the id is published in the map: its reads
/// take no lock and return references that live as long as the set, which `text` needs
/// (series registration borrows the text) and `price` wants (decoding reads it per request).
pub(crate) struct LabelValues {
    /// Each value's id. Keyed by a randomly seeded hasher: values come from clients, who
    /// must not be able to choose collisions.
    ids: DashMap<Box<str>, LabelId, foldhash::fast::RandomState>,
    /// By id, the value's text and the price of the model it names, if the set has prices.
    entries: Segments<OnceLock<(Box<str>, Option<PriceId>)>>,
    /// Ids handed out so far; never more than `cap`.
    len: AtomicUsize,
    cap: usize,
}

impl LabelValues {
    /// A set of at most `cap` values (at most 2^30), each allocated as it is first seen.
    pub(crate) fn with_cap(cap: usize) -> Self {
        Self {
            ids: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            entries: Segments::new(),
            len: AtomicUsize::new(0),
            cap: cap.min(MAX_VALUES),
        }
    }

    /// Interns `value`; a new value carries `price(value)`.
    pub(crate) fn intern_priced(
        &self,
        value: &str,
        price: impl FnOnce(&str) -> Option<PriceId>,
    ) -> Interned {
        if value.is_empty() {
            return Interned::Empty;
        }
        // Only sensible values are ever inserted: a value found needs no more checks.
        if let Some(id) = self.ids.get(value) {
            return Interned::Value(*id);
        }
        if !is_sensible(value) {
            return Interned::Invalid;
        }
        // A full set stays full: a new value past the cap costs no allocation.
        if self.len() >= self.cap {
            return Interned::Overflow;
        }
        // Under the shard's write lock: another thread may have added the value meanwhile.
        match self.ids.entry(value.into()) {
            Entry::Occupied(known) => Interned::Value(*known.get()),
            Entry::Vacant(new) => {
                let Some(raw) = self.take_id() else {
                    return Interned::Overflow;
                };
                let id = LabelId(raw);
                // The entry is complete before its id is in the map, where readers find it.
                let slot = self
                    .entries
                    .get_or_alloc(raw as usize, OnceLock::new)
                    .expect("ids stay below MAX_VALUES, within the segments");
                let _ = slot.set((new.key().clone(), price(value)));
                new.insert(id);
                Interned::Value(id)
            }
        }
    }

    /// The next id, unless the set holds `cap` values.
    fn take_id(&self) -> Option<u32> {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |len| {
                (len < self.cap).then_some(len + 1)
            })
            .ok()
            .map(|id| id as u32)
    }

    pub(crate) fn intern(&self, value: &str) -> Interned {
        self.intern_priced(value, |_| None)
    }

    fn entry(&self, id: LabelId) -> Option<&(Box<str>, Option<PriceId>)> {
        self.entries.get(id.0 as usize)?.get()
    }

    /// The text of an id returned by [`LabelValues::intern`].
    pub(crate) fn text(&self, id: LabelId) -> &str {
        match id {
            LabelId::UNKNOWN => UNKNOWN_LABEL_VALUE,
            LabelId::OVERFLOW => OVERFLOW_LABEL_VALUE,
            id => self
                .entry(id)
                .map_or(OVERFLOW_LABEL_VALUE, |(text, _)| text),
        }
    }

    /// The price an interned value carries.
    pub(crate) fn price(&self, id: LabelId) -> Option<PriceId> {
        self.entry(id).and_then(|(_, price)| *price)
    }

    /// Distinct values interned so far.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

/// Whether every exporter renders `value` faithfully and unlike any other value.
fn is_sensible(value: &str) -> bool {
    value.len() <= MAX_LABEL_VALUE_LEN
        && value != UNKNOWN_LABEL_VALUE
        && value != OVERFLOW_LABEL_VALUE
        && !value
            .chars()
            .any(|c| c == '\\' || c.is_control() || is_format_char(c))
}

/// Unicode general category Cf (format characters), Unicode 15.1: invisible characters
/// that make two names look alike.
fn is_format_char(c: char) -> bool {
    const RANGES: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let c = u32::from(c);
    // Every format character is at or above U+00AD: plain ASCII skips the table.
    c >= 0xAD && RANGES.iter().any(|(low, high)| (*low..=*high).contains(&c))
}

impl std::fmt::Debug for LabelValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelValues")
            .field("len", &self.len())
            .field("cap", &self.cap)
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
        assert!(matches!(labels.intern("quote\"d"), Interned::Value(_)));
        assert_eq!(labels.len(), 2);
        // Values an exporter cannot tell apart from others.
        for bad in [
            "back\\slash",
            "q\\\"x",
            "unknown",
            "__overflow__",
            "zero\u{200D}width",
            "\u{FEFF}bom",
            "rtl\u{202E}override",
            "soft\u{AD}hyphen",
            "tag\u{E0041}",
            "nul\0",
            "del\u{7F}",
            "c1\u{85}",
        ] {
            assert_eq!(labels.intern(bad), Interned::Invalid, "{bad:?}");
        }
        // Visible non-ASCII is fine.
        for good in ["модель", "模型-7b", "café", "emoji-🦀", "a b", "Unknown"] {
            assert!(
                matches!(labels.intern(good), Interned::Value(_)),
                "{good:?}"
            );
        }
    }

    #[test]
    fn debug_shows_the_count_and_the_cap() {
        let labels = LabelValues::with_cap(2);
        labels.intern("a");
        labels.intern("a");
        assert_eq!(format!("{labels:?}"), "LabelValues { len: 1, cap: 2 }");
    }

    #[test]
    fn a_value_interned_meanwhile_by_another_thread_is_found_under_the_lock() {
        // Thread A interns "v" and, while it holds the lock of the map shard "v" goes to (the
        // price is looked up under it, before the value is published), thread B looks "v" up
        // and waits for that lock: B must then find A's entry, not add "v" a second time.
        // (In the other order, B inserts and A must find B's entry under the lock.)
        let labels = &LabelValues::with_cap(10);
        let (b_started, b_is_starting) = std::sync::mpsc::channel::<()>();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(move || {
                labels.intern_priced("v", |_| {
                    b_is_starting.recv().expect("thread B");
                    // Time for B to miss and block on the lock; if B is slower, it finds
                    // the value without the lock instead, and the test still holds.
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    None
                })
            });
            let b = s.spawn(move || {
                b_started.send(()).expect("thread A");
                labels.intern("v")
            });
            (a.join().expect("A"), b.join().expect("B"))
        });
        assert!(matches!(a, Interned::Value(_)), "{a:?}");
        assert_eq!(a, b);
        assert_eq!(labels.len(), 1);
    }

    #[test]
    fn ids_stop_at_the_cap() {
        let labels = LabelValues::with_cap(2);
        assert_eq!(labels.take_id(), Some(0));
        assert_eq!(labels.take_id(), Some(1));
        assert_eq!(labels.take_id(), None);
        assert_eq!(labels.len(), 2);
        assert_eq!(LabelValues::with_cap(usize::MAX).cap, MAX_VALUES);
    }

    #[test]
    fn threads_interning_the_same_values_get_one_id_each_and_never_pass_the_cap() {
        const THREADS: usize = 8;
        const CAP: usize = 20;
        let labels = &LabelValues::with_cap(CAP);
        let start = &std::sync::Barrier::new(THREADS);
        // Every thread interns the same 50 values, from a different starting point, so that
        // threads race for the same new values and for the last ids.
        let seen: Vec<Vec<(String, Interned)>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|thread| {
                    s.spawn(move || {
                        start.wait();
                        (0..50)
                            .map(|i| {
                                let value = format!("v{}", (i + thread * 7) % 50);
                                let interned = labels.intern_priced(&value, |_| None::<PriceId>);
                                (value, interned)
                            })
                            .collect()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("thread"))
                .collect()
        });
        assert_eq!(labels.len(), CAP);
        let mut ids = std::collections::HashMap::new();
        for (value, interned) in seen.into_iter().flatten() {
            match interned {
                Interned::Value(id) => {
                    assert_eq!(*ids.entry(value.clone()).or_insert(id), id, "{value}");
                    assert_eq!(labels.text(id), value);
                }
                Interned::Overflow => {}
                other => panic!("{value}: {other:?}"),
            }
        }
        // Exactly `CAP` values got ids, each its own.
        assert_eq!(ids.len(), CAP);
        let distinct: std::collections::HashSet<_> = ids.values().collect();
        assert_eq!(distinct.len(), CAP);
    }

    #[test]
    fn prices_and_texts_follow_their_ids() {
        let labels = LabelValues::with_cap(4);
        let Interned::Value(a) = labels.intern("a") else {
            unreachable!()
        };
        assert_eq!(labels.price(a), None);
        assert_eq!(labels.text(LabelId::UNKNOWN), UNKNOWN_LABEL_VALUE);
        assert_eq!(labels.price(LabelId::UNKNOWN), None);
        assert_eq!(labels.price(LabelId::OVERFLOW), None);
        // An id this set never gave renders as the overflow value.
        assert_eq!(labels.text(LabelId(3)), OVERFLOW_LABEL_VALUE);
    }
}

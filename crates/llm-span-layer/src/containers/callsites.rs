//! Every callsite the layer has seen, with its class, readable without a lock.
//!
//! Classification normally happens in `register_callsite`. But while one thread is
//! still registering a new callsite, tracing-core lets other threads use it already,
//! so the hot path must tell "not interesting" from "not yet seen": the map records
//! every callsite, interesting or not, and a miss classifies on the spot.

use std::hash::BuildHasher;

use tracing_core::callsite::Identifier;

use super::table::{BoundedTable, BuildMixHasher};

/// Callsites a program can have: far more than any has.
const MAX_CALLSITES: usize = 1 << 23;

/// Every callsite seen, with its class `C` (`None`: not interesting).
pub(crate) struct CallsiteMap<C> {
    classes: BoundedTable<Identifier, Option<C>>,
}

impl<C> CallsiteMap<C> {
    pub(crate) fn new() -> Self {
        Self {
            classes: BoundedTable::with_max_len(MAX_CALLSITES),
        }
    }

    /// `Some((entry id, class))` for a callsite seen before (a `None` class: not
    /// interesting).
    #[inline]
    pub(crate) fn get(&self, id: &Identifier) -> Option<(u32, Option<&C>)> {
        self.classes
            .find(BuildMixHasher.hash_one(id), |known| known == id)
            .map(|(entry, class)| (entry, class.as_ref()))
    }

    /// Records a callsite's class; returns its entry id and the class now stored (the
    /// first one wins). `None` only when the map is full.
    pub(crate) fn insert(
        &self,
        id: &Identifier,
        classify: impl FnOnce() -> Option<C>,
    ) -> Option<(u32, Option<&C>)> {
        self.classes
            .find_or_insert(
                BuildMixHasher.hash_one(id),
                |known| known == id,
                || (id.clone(), classify()),
            )
            .ok()
            .map(|(entry, class)| (entry, class.as_ref()))
    }

    /// The callsite and class of an entry id returned earlier.
    #[inline]
    pub(crate) fn at(&self, entry: u32) -> Option<(&Identifier, Option<&C>)> {
        self.classes
            .get(entry)
            .map(|(id, class)| (id, class.as_ref()))
    }

    /// Callsites recorded.
    pub(crate) fn len(&self) -> usize {
        self.classes.len()
    }
}

impl<C> std::fmt::Debug for CallsiteMap<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallsiteMap")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::CallsiteClass;
    use std::sync::OnceLock;
    use tracing_core::callsite::Callsite;
    use tracing_core::{Interest, Metadata};

    struct Site(OnceLock<&'static Metadata<'static>>);

    impl Callsite for Site {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            self.0.get().copied().expect("set")
        }
    }

    #[test]
    fn grows_past_the_first_level_and_keeps_every_class() {
        let queue = || CallsiteClass::Queue;
        let map = CallsiteMap::new();
        let sites: Vec<&'static Site> = (0..1000)
            .map(|_| &*Box::leak(Box::new(Site(OnceLock::new()))))
            .collect();
        let interesting = |i: usize| i.is_multiple_of(10);
        for (i, site) in sites.iter().enumerate() {
            let id = Identifier(*site);
            assert!(map.get(&id).is_none());
            let (entry, _) = map
                .insert(&id, || interesting(i).then(queue))
                .expect("room");
            assert_eq!(map.at(entry).map(|(known, _)| known == &id), Some(true));
        }
        assert_eq!(map.len(), 1000);
        for (i, site) in sites.iter().enumerate() {
            match map.get(&Identifier(*site)).map(|(_, class)| class) {
                Some(Some(spec)) => {
                    assert!(
                        interesting(i) && *spec == CallsiteClass::Queue,
                        "callsite {i}"
                    )
                }
                Some(None) => assert!(!interesting(i), "callsite {i}"),
                None => panic!("callsite {i} was lost when the map grew"),
            }
        }
    }

    #[test]
    fn a_callsite_inserted_twice_keeps_its_first_entry_and_class() {
        let site: &'static Site = Box::leak(Box::new(Site(OnceLock::new())));
        let id = Identifier(site);
        let map = CallsiteMap::new();
        assert_eq!(format!("{map:?}"), "CallsiteMap { len: 0 }");
        let (first, class) = map
            .insert(&id, || Some(CallsiteClass::Queue))
            .expect("room");
        assert_eq!(class, Some(&CallsiteClass::Queue));
        let (again, class) = map
            .insert(&id, || panic!("classified twice"))
            .expect("room");
        assert_eq!((again, class), (first, Some(&CallsiteClass::Queue)));
        assert_eq!(map.len(), 1);
        assert_eq!(format!("{map:?}"), "CallsiteMap { len: 1 }");
    }
}

/// Model-checked with loom: `RUSTFLAGS="--cfg llm_span_loom" cargo test -p llm-span-layer
/// --release --lib ::loom::` (.ci/run). The map has no atomics or lock of its own: under that cfg
/// its table's are loom's (table.rs), so these models run every interleaving, up to a bound
/// on preemptions, of registrations and lookups of real callsite identifiers, through the
/// map's own API.
#[cfg(all(test, llm_span_loom))]
mod loom {
    use super::*;
    use crate::containers::loom_model as model;
    use ::loom::sync::Arc;
    use ::loom::thread;
    use tracing_core::callsite::Callsite;
    use tracing_core::{Interest, Metadata};

    /// A callsite whose identity is its address (one byte, so that each has its own:
    /// zero-sized statics may share one).
    struct Site {
        _byte: u8,
    }

    impl Callsite for Site {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("the map only compares and hashes identities")
        }
    }

    static SITES: [Site; 9] = [const { Site { _byte: 0 } }; 9];

    fn site(n: usize) -> Identifier {
        Identifier(&SITES[n])
    }

    /// A class with more than one word: `[callsite, the thread that classified it]`.
    type Class = Box<[u64]>;

    fn class(n: usize, thread: u64) -> Option<Class> {
        Some(Box::new([n as u64, thread]))
    }

    /// Registers callsite `n` as classified `proposed`: its entry id, the class stored, and
    /// whether `classify` ran.
    fn register(
        map: &CallsiteMap<Class>,
        n: usize,
        proposed: Option<Class>,
    ) -> (u32, Option<Class>, bool) {
        let mut ran = false;
        let (entry, stored) = map
            .insert(&site(n), || {
                ran = true;
                proposed
            })
            .expect("room");
        assert_eq!(map.at(entry).map(|(id, _)| id == &site(n)), Some(true));
        (entry, stored.cloned(), ran)
    }

    /// What a lookup of callsite `n` sees: nothing, or its entry and whole class.
    fn look_up(map: &CallsiteMap<Class>, n: usize) -> Option<(u32, Option<Class>)> {
        let (entry, class) = map.get(&site(n))?;
        assert_eq!(map.at(entry).map(|(id, _)| id == &site(n)), Some(true));
        Some((entry, class.cloned()))
    }

    #[test]
    fn registrations_of_the_same_and_different_callsites_agree_on_one_entry_and_class() {
        model(|| {
            let map = Arc::new(CallsiteMap::new());
            // Both threads register callsite 0, each with a class of its own (only one may
            // be classified and stored), and one more callsite each: 1 not interesting, 2
            // interesting.
            let first = {
                let map = Arc::clone(&map);
                thread::spawn(move || [register(&map, 0, class(0, 1)), register(&map, 1, None)])
            };
            let second = {
                let map = Arc::clone(&map);
                thread::spawn(move || {
                    [
                        register(&map, 0, class(0, 2)),
                        register(&map, 2, class(2, 2)),
                    ]
                })
            };
            // A lookup sees nothing yet, or a callsite's entry with its whole class.
            let reader = {
                let map = Arc::clone(&map);
                thread::spawn(move || [0, 1, 2].map(|n| look_up(&map, n)))
            };
            let seen = reader.join().expect("reader");
            let [zero_first, one] = first.join().expect("first");
            let [zero_second, two] = second.join().expect("second");
            // Callsite 0: one entry, classified once, by the thread whose class is stored.
            assert_eq!(zero_first.0, zero_second.0);
            assert_eq!(zero_first.1, zero_second.1);
            assert!(zero_first.2 != zero_second.2, "classified once");
            let classifier = if zero_first.2 { 1 } else { 2 };
            assert_eq!(zero_first.1, class(0, classifier));
            assert_eq!((one.1, one.2), (None, true));
            assert_eq!((two.1, two.2), (class(2, 2), true));
            let mut entries = [zero_first.0, one.0, two.0];
            entries.sort_unstable();
            assert_eq!(entries, [0, 1, 2]);
            assert_eq!(map.len(), 3);
            for (n, seen) in seen.into_iter().enumerate() {
                let now = look_up(&map, n).expect("registered");
                assert!(
                    seen.is_none() || seen == Some(now.clone()),
                    "{n}: {seen:?} {now:?}"
                );
            }
            assert_eq!(look_up(&map, 0), Some((zero_first.0, class(0, classifier))));
            assert_eq!(look_up(&map, 1), Some((one.0, None)));
            assert_eq!(look_up(&map, 2), Some((two.0, class(2, 2))));
            assert_eq!(look_up(&map, 3), None);
        });
    }

    #[test]
    fn a_reader_finds_every_callsite_while_the_map_grows() {
        model(|| {
            // Eight callsites fill the table's first index (16 slots) to half; the ninth
            // makes the registering thread build the next index and switch readers to it.
            let map = Arc::new(CallsiteMap::new());
            for n in 0..8 {
                register(&map, n, class(n, 0));
            }
            let writer = {
                let map = Arc::clone(&map);
                thread::spawn(move || register(&map, 8, class(8, 1)))
            };
            let reader = {
                let map = Arc::clone(&map);
                thread::spawn(move || {
                    for n in [0, 7] {
                        assert_eq!(look_up(&map, n), Some((n as u32, class(n, 0))), "{n}");
                    }
                    look_up(&map, 8)
                })
            };
            let seen = reader.join().expect("reader");
            assert_eq!(writer.join().expect("writer"), (8, class(8, 1), true));
            assert!(seen.is_none() || seen == Some((8, class(8, 1))), "{seen:?}");
            for n in 0..9 {
                let expected = class(n, u64::from(n == 8));
                assert_eq!(look_up(&map, n), Some((n as u32, expected)), "{n}");
            }
            assert_eq!(map.len(), 9);
        });
    }
}

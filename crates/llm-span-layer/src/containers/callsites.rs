//! Every callsite the layer has seen, with its class, readable without a lock.
//!
//! Classification normally happens in `register_callsite`. But while one thread is
//! still registering a new callsite, tracing-core lets other threads use it already,
//! so the hot path must tell "not interesting" from "not yet seen": the map records
//! every callsite, interesting or not, and a miss classifies on the spot. It grows by
//! levels of doubling size; older levels stay alive (readers may still hold them)
//! until the layer drops.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing_core::callsite::Identifier;

use super::table::{BoundedTable, BuildMixHasher};
use crate::contract::CallsiteClass;

/// First level's capacity; level `n` holds `FIRST << n` callsites.
const FIRST: usize = 256;
/// Level count: the last holds 256 << 15 = 8 million callsites.
const LEVELS: usize = 16;

type Level = BoundedTable<Identifier, Option<CallsiteClass>>;

pub(crate) struct CallsiteMap {
    levels: [OnceLock<Level>; LEVELS],
    current: AtomicUsize,
    grow: Mutex<()>,
}

impl CallsiteMap {
    pub(crate) fn new() -> Self {
        let map = Self {
            levels: std::array::from_fn(|_| OnceLock::new()),
            current: AtomicUsize::new(0),
            grow: Mutex::new(()),
        };
        let _ = map.levels[0].set(BoundedTable::with_max_len(FIRST));
        map
    }

    /// `Some(class)` for a callsite seen before (`None` inside: not interesting).
    #[inline]
    pub(crate) fn get(&self, id: &Identifier) -> Option<Option<&CallsiteClass>> {
        let level = self.levels[self.current.load(Ordering::Acquire)].get()?;
        let hash = BuildMixHasher.hash_one(id);
        level
            .find(hash, |known| known == id)
            .map(|(_, spec)| spec.as_ref())
    }

    /// Records a callsite's class; returns the class now stored (the first one wins).
    pub(crate) fn insert(
        &self,
        id: &Identifier,
        classify: impl FnOnce() -> Option<CallsiteClass>,
    ) -> Option<&CallsiteClass> {
        let _guard = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let hash = BuildMixHasher.hash_one(id);
        let mut index = self.current.load(Ordering::Acquire);
        let mut level = self.levels[index].get()?;
        if let Some((_, spec)) = level.find(hash, |known| known == id) {
            return spec.as_ref();
        }
        if level.len() >= level.max_len() {
            let next = self.levels.get(index + 1)?;
            let bigger = next.get_or_init(|| BoundedTable::with_max_len(FIRST << (index + 1)));
            for (known, spec) in level.entries() {
                let known_hash = BuildMixHasher.hash_one(known);
                let _ = bigger.find_or_insert(
                    known_hash,
                    |k| k == known,
                    || (known.clone(), spec.clone()),
                );
            }
            index += 1;
            self.current.store(index, Ordering::Release);
            level = bigger;
        }
        level
            .find_or_insert(hash, |known| known == id, || (id.clone(), classify()))
            .ok()
            .and_then(|(_, spec)| spec.as_ref())
    }

    /// Callsites recorded.
    pub(crate) fn len(&self) -> usize {
        self.levels[self.current.load(Ordering::Acquire)]
            .get()
            .map_or(0, BoundedTable::len)
    }
}

impl std::fmt::Debug for CallsiteMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallsiteMap")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let interesting = |i: usize| i % 10 == 0;
        for (i, site) in sites.iter().enumerate() {
            let id = Identifier(*site);
            assert!(map.get(&id).is_none());
            map.insert(&id, || interesting(i).then(queue));
        }
        assert_eq!(map.len(), 1000);
        for (i, site) in sites.iter().enumerate() {
            match map.get(&Identifier(*site)) {
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
}

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

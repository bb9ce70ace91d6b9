//! The container rungs (feature `bench-peers`): per simulated request, the operations the
//! layer performs on one of its containers for one request of P (or of P_stream), once on
//! the layer's own container and once on a `dashmap` or `std` replacement, so that the
//! ladder prices each home-made container against what it replaces in the same run.
//!
//! The operations per request, counted from the layer's code (`layer.rs`, `request/`,
//! `sinks.rs`, `series.rs`, `decode.rs`) for the ladder's request (`llm_request`: span
//! created with `model` and `tokens_in`, entered, a first-token event, `tokens_out`
//! recorded, exited, closed) and its streaming one (`streamed_request`: 100 delta events
//! instead of the first-token event):
//!
//! - in-flight table, P: insert (`on_new_span`), filter (`on_enter`), get (`on_event`),
//!   filter + get (`on_record`), filter + remove (`on_close`). P_stream: insert, filter,
//!   one lane add that misses (the lane is closed) then a get that opens the lane (first
//!   delta), 99 lane adds, filter + get (`on_record`), filter + remove.
//!   Replacement: `DashMap<u64, SpanState>` (span id to the layer's request state inline,
//!   with the stream lane's atomics in the same value): insert, `contains_key` (what
//!   `on_enter` asks), `get_mut` for an event or a record (the shard's write lock instead
//!   of the slot's mutex), a delta through `get` (shared lock) and the lane's CAS, `remove`.
//! - series, P: two lookups by label set (`current_series` at creation, and at binding
//!   with the counters registered; the by-model shortcut answers both) and seven reaches
//!   of the series by slot (`Sinks::series`/`counted_at`: place the gauges; binding's
//!   `register_counted`, `counted` and `count_new_tokens`; `on_record`'s
//!   `count_new_tokens`; `finish`'s `counted` and gauges). P_stream: the two lookups and
//!   107 reaches (three more at the first delta, `lane_target`'s among them, and one per
//!   lane delta, `count_streamed`). Replacement: `DashMap<key, Arc<Series>>` or
//!   `RwLock<HashMap<key, Arc<Series>>>` (foldhash): the same two lookups, the request
//!   holding the `Arc` from the first (a clone, dropped at the close), every reach a
//!   dereference of it (a delta finds it in the in-flight value with its lane, which a
//!   `DashMap` in-flight table allows). Next to the home-made in-flight table, whose lane
//!   is lock-free atomics and can hold no `Arc`, a delta would look its series up by key:
//!   the "lookup per lane delta" rungs.
//! - label interning: one model name per request in both (`intern_model`: the map's
//!   `get`, then the price of the id found). The layer's `LabelValues` is no longer
//!   home-made (issue 22: it saved nothing): it is a capped `DashMap` with foldhash, so
//!   this rung measures it against a bare `DashMap<Box<str>, (id, price)>` `get`, with
//!   foldhash or with std's SipHash (label values come from clients): what the cap, the
//!   checks and the price lookup by id add.
//! - callsites: P: three (`callsite()` in `on_new_span` and `on_event`, `class_at` in
//!   `on_record`); P_stream: 102 (one per delta event). Home-made after a hint hit (the
//!   layer's steady state): the hinted entry by id, checked. After a hint miss: the hash
//!   lookup (`class_at` keeps using the entry id the request holds). Replacement:
//!   `DashMap<Identifier, class>::get` for each, as no entry id can stand for a dashmap
//!   entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use dashmap::DashMap;
use foldhash::fast::RandomState as Fold;
use llm_span_layer::bench_internals as internals;
use tracing::callsite::Identifier;
use tracing::span::Id;
use tracing::{Dispatch, Metadata};
use tracing_subscriber::prelude::*;

use super::MODELS;

/// Lane deltas of a streaming request (the first delta opens the lane).
const STREAMED: u64 = super::STREAMED;

/// One container rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    InFlightHome,
    InFlightDash,
    InFlightStreamHome,
    InFlightStreamDash,
    SeriesHome,
    SeriesDash,
    SeriesRwLock,
    SeriesStreamHome,
    SeriesStreamDash,
    SeriesStreamRwLock,
    SeriesStreamDashLookup,
    SeriesStreamRwLockLookup,
    LabelsLayer,
    LabelsDash,
    LabelsDashSip,
    CallsitesHint,
    CallsitesMiss,
    CallsitesDash,
    CallsitesStreamHint,
    CallsitesStreamMiss,
    CallsitesStreamDash,
}

impl Work {
    pub const ALL: [Work; 21] = [
        Work::InFlightHome,
        Work::InFlightDash,
        Work::InFlightStreamHome,
        Work::InFlightStreamDash,
        Work::SeriesHome,
        Work::SeriesDash,
        Work::SeriesRwLock,
        Work::SeriesStreamHome,
        Work::SeriesStreamDash,
        Work::SeriesStreamRwLock,
        Work::SeriesStreamDashLookup,
        Work::SeriesStreamRwLockLookup,
        Work::LabelsLayer,
        Work::LabelsDash,
        Work::LabelsDashSip,
        Work::CallsitesHint,
        Work::CallsitesMiss,
        Work::CallsitesDash,
        Work::CallsitesStreamHint,
        Work::CallsitesStreamMiss,
        Work::CallsitesStreamDash,
    ];

    /// Whether a request of this rung is a streaming one (P_stream's operations).
    pub fn streams(self) -> bool {
        matches!(
            self,
            Work::InFlightStreamHome
                | Work::InFlightStreamDash
                | Work::SeriesStreamHome
                | Work::SeriesStreamDash
                | Work::SeriesStreamRwLock
                | Work::SeriesStreamDashLookup
                | Work::SeriesStreamRwLockLookup
                | Work::CallsitesStreamHint
                | Work::CallsitesStreamMiss
                | Work::CallsitesStreamDash
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Work::InFlightHome => "in-flight, P ops: InFlight (home-made)",
            Work::InFlightDash => "in-flight, P ops: DashMap<u64, state>",
            Work::InFlightStreamHome => "in-flight, P_stream ops: InFlight (home-made)",
            Work::InFlightStreamDash => "in-flight, P_stream ops: DashMap<u64, state>",
            Work::SeriesHome => "series, P ops: BoundedTable + by-model (home-made)",
            Work::SeriesDash => "series, P ops: DashMap<key, Arc<Series>>",
            Work::SeriesRwLock => "series, P ops: RwLock<HashMap<key, Arc<Series>>>",
            Work::SeriesStreamHome => "series, P_stream ops: BoundedTable + by-model (home-made)",
            Work::SeriesStreamDash => "series, P_stream ops: DashMap<key, Arc<Series>>",
            Work::SeriesStreamRwLock => "series, P_stream ops: RwLock<HashMap<key, Arc<Series>>>",
            Work::SeriesStreamDashLookup => {
                "series, P_stream ops: DashMap<key, Arc<Series>>, a lookup per lane delta"
            }
            Work::SeriesStreamRwLockLookup => {
                "series, P_stream ops: RwLock<HashMap<key, Arc<Series>>>, a lookup per lane delta"
            }
            Work::LabelsLayer => "labels: LabelValues (the layer's capped DashMap, foldhash)",
            Work::LabelsDash => "labels: DashMap<Box<str>, id> (foldhash)",
            Work::LabelsDashSip => "labels: DashMap<Box<str>, id> (SipHash)",
            Work::CallsitesHint => "callsites, P ops: CallsiteMap after a hint hit",
            Work::CallsitesMiss => "callsites, P ops: CallsiteMap after a hint miss",
            Work::CallsitesDash => "callsites, P ops: DashMap<Identifier, class>",
            Work::CallsitesStreamHint => "callsites, P_stream ops: CallsiteMap after a hint hit",
            Work::CallsitesStreamMiss => "callsites, P_stream ops: CallsiteMap after a hint miss",
            Work::CallsitesStreamDash => "callsites, P_stream ops: DashMap<Identifier, class>",
        }
    }
}

/// A stand-in for the layer's `Series` (its size), behind the replacements' `Arc`s: a
/// reach of the series reads its first word, as `counted()` reads a `OnceLock`.
struct SeriesStandIn {
    counted: AtomicU64,
    _rest: [u64; (internals::SERIES_BYTES / 8).saturating_sub(1)],
}

impl SeriesStandIn {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            counted: AtomicU64::new(1),
            _rest: [0; (internals::SERIES_BYTES / 8).saturating_sub(1)],
        })
    }

    #[inline]
    fn counted(&self) -> bool {
        self.counted.load(Ordering::Acquire) != 0
    }
}

type SeriesKey = [u32; internals::SERIES_KEY_LABELS];

/// The callsites of the ladder's requests, and every callsite the process registered.
struct Sites {
    span: Identifier,
    span_entry: u32,
    event: Identifier,
    event_entry: u32,
    delta: Identifier,
    delta_entry: u32,
}

// One per rung, made once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum State {
    InFlightHome(internals::InFlightTable, Vec<u64>),
    InFlightDash(DashMap<u64, internals::SpanState, Fold>, Vec<u64>),
    SeriesHome(internals::SeriesTables, Vec<internals::ModelId>),
    SeriesDash(DashMap<SeriesKey, Arc<SeriesStandIn>, Fold>, Vec<SeriesKey>),
    SeriesRwLock(
        RwLock<HashMap<SeriesKey, Arc<SeriesStandIn>, Fold>>,
        Vec<SeriesKey>,
    ),
    LabelsLayer(internals::ModelLabels),
    LabelsDash(DashMap<Box<str>, (u32, bool), Fold>),
    LabelsDashSip(DashMap<Box<str>, (u32, bool)>),
    CallsitesHome(internals::Callsites, Sites),
    CallsitesDash(
        DashMap<Identifier, internals::CallsiteClassValue, Fold>,
        Sites,
    ),
}

/// A container rung, ready to serve simulated requests.
pub struct Bench {
    work: Work,
    state: State,
    start: quanta::Instant,
}

impl Bench {
    pub fn new(work: Work) -> Bench {
        let state = match work {
            Work::InFlightHome | Work::InFlightStreamHome => {
                State::InFlightHome(internals::InFlightTable::default(), span_ids())
            }
            Work::InFlightDash | Work::InFlightStreamDash => State::InFlightDash(
                DashMap::with_capacity_and_hasher(2048, Fold::default()),
                span_ids(),
            ),
            Work::SeriesHome | Work::SeriesStreamHome => {
                let (recorder, _handle) = super::recorder();
                let tables = internals::SeriesTables::new(Arc::new(recorder), &MODELS);
                let ids = MODELS
                    .iter()
                    .map(|m| tables.model_id(m).expect("model"))
                    .collect();
                State::SeriesHome(tables, ids)
            }
            Work::SeriesDash | Work::SeriesStreamDash | Work::SeriesStreamDashLookup => {
                let map = DashMap::with_hasher(Fold::default());
                let keys = series_keys();
                for key in &keys {
                    map.insert(*key, SeriesStandIn::new());
                }
                State::SeriesDash(map, keys)
            }
            Work::SeriesRwLock | Work::SeriesStreamRwLock | Work::SeriesStreamRwLockLookup => {
                let mut map = HashMap::with_hasher(Fold::default());
                let keys = series_keys();
                for key in &keys {
                    map.insert(*key, SeriesStandIn::new());
                }
                State::SeriesRwLock(RwLock::new(map), keys)
            }
            Work::LabelsLayer => {
                let labels = internals::ModelLabels::new(100, &super::prices());
                for model in MODELS {
                    labels.intern_model(model).expect("room");
                }
                State::LabelsLayer(labels)
            }
            Work::LabelsDash => {
                let map = DashMap::with_hasher(Fold::default());
                fill_labels(|name, value| {
                    map.insert(name, value);
                });
                State::LabelsDash(map)
            }
            Work::LabelsDashSip => {
                let map = DashMap::new();
                fill_labels(|name, value| {
                    map.insert(name, value);
                });
                State::LabelsDashSip(map)
            }
            Work::CallsitesHint
            | Work::CallsitesMiss
            | Work::CallsitesStreamHint
            | Work::CallsitesStreamMiss => {
                let map = internals::Callsites::default();
                let all = callsites();
                for metadata in &all {
                    map.insert(metadata);
                }
                let sites = sites(&all, |m| map.insert(m).expect("entry"));
                State::CallsitesHome(map, sites)
            }
            Work::CallsitesDash | Work::CallsitesStreamDash => {
                let map = DashMap::with_hasher(Fold::default());
                let all = callsites();
                for metadata in &all {
                    map.insert(
                        metadata.callsite(),
                        internals::CallsiteClassValue::classify(metadata),
                    );
                }
                let sites = sites(&all, |_| 0);
                State::CallsitesDash(map, sites)
            }
        };
        Bench {
            work,
            state,
            start: quanta::Clock::new().now(),
        }
    }

    /// Serves simulated requests `first..first + count`.
    pub fn run(&self, first: u64, count: u64) {
        let stream = self.work.streams();
        let miss = matches!(self.work, Work::CallsitesMiss | Work::CallsitesStreamMiss);
        let per_delta = matches!(
            self.work,
            Work::SeriesStreamDashLookup | Work::SeriesStreamRwLockLookup
        );
        for i in first..first + count {
            let done = match &self.state {
                State::InFlightHome(table, ids) => {
                    let id = Id::from_u64(ids[(i % ids.len() as u64) as usize]);
                    inflight_home(table, id, self.start, stream)
                }
                State::InFlightDash(map, ids) => {
                    let id = Id::from_u64(ids[(i % ids.len() as u64) as usize]);
                    inflight_dash(map, id, self.start, stream)
                }
                State::SeriesHome(tables, ids) => series_home(tables, ids, i, stream),
                State::SeriesDash(map, keys) => {
                    let key = &keys[(i % keys.len() as u64) as usize];
                    let lookup = || map.get(key).map(|found| Arc::clone(found.value()));
                    let peek = || map.get(key).is_some_and(|found| found.counted());
                    series_replacement(lookup, peek, stream, per_delta)
                }
                State::SeriesRwLock(map, keys) => {
                    let key = &keys[(i % keys.len() as u64) as usize];
                    let lookup = || {
                        let map = map.read().unwrap_or_else(|p| p.into_inner());
                        map.get(key).cloned()
                    };
                    let peek = || {
                        let map = map.read().unwrap_or_else(|p| p.into_inner());
                        map.get(key).is_some_and(|found| found.counted())
                    };
                    series_replacement(lookup, peek, stream, per_delta)
                }
                State::LabelsLayer(labels) => labels.intern_model(model(i)).map_or(0, |(id, _)| id),
                State::LabelsDash(map) => map.get(model(i)).map_or(0, |found| found.value().0),
                State::LabelsDashSip(map) => map.get(model(i)).map_or(0, |found| found.value().0),
                State::CallsitesHome(map, sites) => callsites_home(map, sites, stream, miss),
                State::CallsitesDash(map, sites) => callsites_dash(map, sites, stream),
            };
            std::hint::black_box(done);
        }
    }
}

/// The span ids a registry gives one thread that opens and closes one request span at a
/// time, as in P and P_stream (a slab slot reused, its generation moving on).
fn span_ids() -> Vec<u64> {
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(super::Identity));
    tracing::dispatcher::with_default(&dispatch, || {
        (0..1u64 << 16)
            .map(|_| {
                let span = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
                span.id().map_or(1, |id| id.into_u64())
            })
            .collect()
    })
}

/// Bytes of the state a span-id map holds per span.
pub fn span_state_bytes() -> usize {
    std::mem::size_of::<internals::SpanState>()
}

fn model(i: u64) -> &'static str {
    MODELS[(i % MODELS.len() as u64) as usize]
}

fn series_keys() -> Vec<SeriesKey> {
    (0..MODELS.len() as u32)
        .map(|id| {
            let mut key = [internals::unknown_label(); internals::SERIES_KEY_LABELS];
            key[0] = id;
            key
        })
        .collect()
}

fn fill_labels(mut insert: impl FnMut(Box<str>, (u32, bool))) {
    let prices = internals::ModelLabels::new(100, &super::prices());
    for (id, model) in MODELS.iter().enumerate() {
        insert((*model).into(), (id as u32, prices.is_priced(model)));
    }
}

/// The in-flight table's operations for one request, on the layer's `InFlight`.
#[inline(never)]
fn inflight_home(
    table: &internals::InFlightTable,
    id: Id,
    start: quanta::Instant,
    stream: bool,
) -> u32 {
    let mut seen = 0;
    table.insert_request(&id, start, 1);
    seen += u32::from(table.may_contain(&id));
    if stream {
        // The first delta finds the lane closed, takes the lock and opens it.
        seen += u32::from(table.stream(&id, 1).is_some());
        seen += table.get(&id, Some(7)).unwrap_or(0);
        for _ in 1..STREAMED {
            seen += table.stream(&id, 1).map_or(0, |series| series as u32);
        }
    } else {
        seen += table.get(&id, None).unwrap_or(0);
    }
    if table.may_contain(&id) {
        seen += table.get(&id, None).unwrap_or(0);
    }
    if table.may_contain(&id) {
        seen += table.remove(&id).unwrap_or(0);
    }
    seen
}

/// The same operations on a `DashMap` holding the state inline.
#[inline(never)]
fn inflight_dash(
    map: &DashMap<u64, internals::SpanState, Fold>,
    id: Id,
    start: quanta::Instant,
    stream: bool,
) -> u32 {
    let key = id.into_u64();
    let mut seen = 0;
    map.insert(key, internals::SpanState::request(&id, start, 1));
    seen += u32::from(map.contains_key(&key));
    if stream {
        let added = map.get(&key).and_then(|state| state.stream(1));
        seen += u32::from(added.is_some());
        seen += map
            .get_mut(&key)
            .and_then(|mut state| state.fold(Some(7)))
            .unwrap_or(0);
        for _ in 1..STREAMED {
            seen += map
                .get(&key)
                .and_then(|state| state.stream(1))
                .map_or(0, |series| series as u32);
        }
    } else {
        seen += map
            .get_mut(&key)
            .and_then(|mut state| state.fold(None))
            .unwrap_or(0);
    }
    seen += map
        .get_mut(&key)
        .and_then(|mut state| state.fold(None))
        .unwrap_or(0);
    seen += map
        .remove(&key)
        .and_then(|(_, mut state)| state.close())
        .unwrap_or(0);
    seen
}

/// The series operations for one request, on the layer's tables.
#[inline(never)]
fn series_home(
    tables: &internals::SeriesTables,
    ids: &[internals::ModelId],
    i: u64,
    stream: bool,
) -> u32 {
    let model = ids[(i % ids.len() as u64) as usize];
    let mut seen = 0;
    // Creation: the gauges' series (binds = false), then placing them there.
    let Some(slot) = tables.lookup(model, false) else {
        return 0;
    };
    seen += u32::from(tables.counted(slot));
    // Binding (first token, or first delta): the series again, counters registered
    // (one more reach inside), then `counted` in `bind` and in `count_new_tokens`.
    let slot = tables.lookup(model, true).unwrap_or(slot);
    seen += u32::from(tables.counted(slot));
    seen += u32::from(tables.counted(slot));
    if stream {
        // `lane_target`, then one reach per lane delta (`count_streamed`).
        seen += u32::from(tables.counted(slot));
        for _ in 1..STREAMED {
            seen += u32::from(tables.counted(slot));
        }
    }
    // `on_record`'s `count_new_tokens`; `finish`: `counted`, then the gauges.
    seen += u32::from(tables.counted(slot));
    seen += u32::from(tables.counted(slot));
    seen += u32::from(tables.counted(slot));
    seen
}

/// The same, with the request holding the `Arc` its first lookup gave; with `per_delta`,
/// a lane delta (which holds only integers, next to the home-made in-flight table) looks
/// its series up by key (`peek`) instead.
#[inline(always)]
fn series_replacement(
    lookup: impl Fn() -> Option<Arc<SeriesStandIn>>,
    peek: impl Fn() -> bool,
    stream: bool,
    per_delta: bool,
) -> u32 {
    let Some(held) = lookup() else {
        return 0;
    };
    let mut seen = u32::from(held.counted());
    // Binding looks the label set up again: the same series, nothing to move.
    if let Some(again) = lookup() {
        seen += u32::from(Arc::ptr_eq(&again, &held));
    }
    // `register_counted`, `counted` in `bind` and in `count_new_tokens`.
    seen += u32::from(held.counted());
    seen += u32::from(held.counted());
    seen += u32::from(held.counted());
    if stream {
        seen += u32::from(held.counted());
        for _ in 1..STREAMED {
            seen += u32::from(if per_delta {
                peek()
            } else {
                std::hint::black_box(&held).counted()
            });
        }
    }
    seen += u32::from(held.counted());
    seen += u32::from(held.counted());
    seen += u32::from(held.counted());
    seen
}

/// The callsite lookups of one request, on the layer's map.
#[inline(never)]
fn callsites_home(map: &internals::Callsites, sites: &Sites, stream: bool, miss: bool) -> u32 {
    let find = |id: &Identifier, entry: u32| {
        if miss {
            map.get(std::hint::black_box(id)).is_some()
        } else {
            map.at(std::hint::black_box(entry), id)
        }
    };
    let mut seen = u32::from(find(&sites.span, sites.span_entry));
    if stream {
        for _ in 0..STREAMED {
            seen += u32::from(find(&sites.delta, sites.delta_entry));
        }
    } else {
        seen += u32::from(find(&sites.event, sites.event_entry));
    }
    // `class_at`: the entry id the request keeps.
    seen += u32::from(map.at(std::hint::black_box(sites.span_entry), &sites.span));
    seen
}

/// The same on a `DashMap` by callsite identity.
#[inline(never)]
fn callsites_dash(
    map: &DashMap<Identifier, internals::CallsiteClassValue, Fold>,
    sites: &Sites,
    stream: bool,
) -> u32 {
    let find = |id: &Identifier| {
        map.get(std::hint::black_box(id))
            .is_some_and(|class| class.is_interesting())
    };
    let mut seen = u32::from(find(&sites.span));
    if stream {
        for _ in 0..STREAMED {
            seen += u32::from(find(&sites.delta));
        }
    } else {
        seen += u32::from(find(&sites.event));
    }
    seen += u32::from(find(&sites.span));
    seen
}

/// Registers callsites as a subscriber sees them.
struct Capture(Arc<Mutex<Vec<&'static Metadata<'static>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(metadata);
        tracing::subscriber::Interest::always()
    }
}

/// Every callsite registered so far, with the ladder's request and streaming request
/// among them (run once under a capturing subscriber).
fn callsites() -> Vec<&'static Metadata<'static>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(Capture(Arc::clone(&seen))));
    tracing::dispatcher::with_default(&dispatch, || {
        super::llm_request(0);
        super::streamed_request(0);
    });
    let mut all = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    all.sort_by_key(|m| *m as *const Metadata<'static> as usize);
    all.dedup_by_key(|m| *m as *const Metadata<'static> as usize);
    all
}

fn sites(
    all: &[&'static Metadata<'static>],
    entry: impl Fn(&'static Metadata<'static>) -> u32,
) -> Sites {
    let find = |wanted: &dyn Fn(&Metadata<'static>) -> bool| {
        *all.iter()
            .find(|m| wanted(m))
            .expect("the ladder's callsite")
    };
    let has = |m: &Metadata<'static>, field: &str| m.fields().field(field).is_some();
    let span = find(&|m| m.is_span() && m.name() == "generate" && has(m, "tokens_out"));
    let event = find(&|m| m.is_event() && has(m, "first_token"));
    let delta = find(&|m| m.is_event() && has(m, "tokens_out_delta"));
    Sites {
        span: span.callsite(),
        span_entry: entry(span),
        event: event.callsite(),
        event_entry: entry(event),
        delta: delta.callsite(),
        delta_entry: entry(delta),
    }
}

/// Callsites in the rungs' maps.
pub fn callsite_count() -> usize {
    callsites().len()
}

//! Unstable, not part of the API: the layer's own containers, reachable by this
//! workspace's benchmark ladder (`benches/ladder.rs`, feature `bench-peers` of the root
//! package), which measures each against a `dashmap`/`std` replacement doing the same work.
//!
//! Compiled only with the feature `bench-internals`, off by default. Nothing here follows
//! semver: it may change or go away in any release.
//!
//! Each wrapper performs one container operation the way the layer performs it, on the
//! layer's real value types (the request state, callsite classes, series handles, label
//! values with their prices); values the ladder's replacements hold are the same types,
//! behind opaque wrappers.

use std::sync::Arc;

use metrics::Recorder;
use quanta::Instant;
use tracing_core::callsite::Identifier;
use tracing_core::span::Id;
use tracing_core::Metadata;

use crate::containers::callsites::CallsiteMap;
use crate::containers::inflight::{FoldStreamed, InFlight};
use crate::containers::labels::{Interned, LabelId, LabelSets, LabelValues};
use crate::containers::lane::{LaneTarget, StreamLane};
use crate::contract::{CallsiteClass, Contract, DEFAULT_QUEUE_SPAN_NAME};
use crate::pricing::{PriceIndex, PriceTable};
use crate::recorders::{RecorderSource, Recorders};
use crate::request::{Request, Tracked};
use crate::series::{SeriesConfig, SeriesKey, SeriesRef};

/// Spans in flight the layer's in-flight table is made for (its `IN_FLIGHT_CAPACITY`).
const IN_FLIGHT_CAPACITY: usize = 2048;

/// Labels in a series key: the model, then every possible extra label.
pub const SERIES_KEY_LABELS: usize = std::mem::size_of::<SeriesKey>() / 4;

/// The label id of a label not known yet (`unknown`), as a series key holds it.
pub fn unknown_label() -> u32 {
    LabelId::UNKNOWN.raw()
}

/// Bytes of the layer's per-series handles (`Series`), for a stand-in of the same size.
pub const SERIES_BYTES: usize = std::mem::size_of::<crate::series::Series>();

/// The layer's in-flight table (`InFlight<Tracked>`), holding real request states.
pub struct InFlightTable(InFlight<Tracked>);

impl Default for InFlightTable {
    fn default() -> Self {
        Self(InFlight::with_capacity(IN_FLIGHT_CAPACITY))
    }
}

impl std::fmt::Debug for InFlightTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl InFlightTable {
    /// `on_new_span` of a request: a new request state in its slot. `false`: no room.
    #[inline]
    pub fn insert_request(&self, id: &Id, start: Instant, callsite: u32) -> bool {
        let init = || Tracked::Request(Request::new(start, callsite, id));
        self.0.insert(id, init, |_| ()).is_some()
    }

    /// The counting filter's answer (`on_enter`, and `on_record`/`on_close` first).
    #[inline]
    pub fn may_contain(&self, id: &Id) -> bool {
        self.0.may_contain(id)
    }

    /// `on_event`/`on_record`: the span's locked state, its lane folded in; with
    /// `open_lane`, opens the stream lane towards that series as a delta event does once
    /// its request is bound. Returns the request's callsite entry.
    #[inline]
    pub fn get(&self, id: &Id, open_lane: Option<u64>) -> Option<u32> {
        let mut entry = self.0.get(id)?;
        let (tracked, lane) = entry.get_with_lane()?;
        if let Some(series) = open_lane.filter(|_| !lane.is_open()) {
            lane.open(target(series));
        }
        match tracked {
            Tracked::Request(request) => Some(request.callsite()),
            Tracked::Queue(_) => None,
        }
    }

    /// A delta event on the stream lane: its tokens added without the lock. Returns the
    /// lane's series; `None`: take the slow path.
    #[inline]
    pub fn stream(&self, id: &Id, tokens: u64) -> Option<u64> {
        self.0.stream(id, tokens).map(|target| target.series)
    }

    /// `on_close`: the state finished where it lies (its lane closed and folded), its
    /// slot freed. Returns the request's callsite entry.
    #[inline]
    pub fn remove(&self, id: &Id) -> Option<u32> {
        self.0
            .remove_with(id, |tracked| match tracked {
                Tracked::Request(request) => Some(request.callsite()),
                Tracked::Queue(_) => None,
            })
            .flatten()
    }
}

fn target(series: u64) -> LaneTarget {
    LaneTarget {
        series,
        output_price: Some(600_000),
    }
}

/// One span's state as a map keyed by span id would hold it inline: the layer's request
/// state and the atomics of its stream lane.
pub struct SpanState {
    tracked: Tracked,
    lane: StreamLane,
}

impl std::fmt::Debug for SpanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanState").finish_non_exhaustive()
    }
}

impl SpanState {
    /// A new request's state, as `on_new_span` makes it.
    #[inline]
    pub fn request(id: &Id, start: Instant, callsite: u32) -> Self {
        Self {
            tracked: Tracked::Request(Request::new(start, callsite, id)),
            lane: StreamLane::default(),
        }
    }

    /// What `on_event`/`on_record` do under the state's (exclusive) lock: fold the lane
    /// in; with `open_lane`, open it towards that series. Returns the callsite entry.
    #[inline]
    pub fn fold(&mut self, open_lane: Option<u64>) -> Option<u32> {
        if let Some(streamed) = self.lane.take() {
            self.tracked.fold_streamed(streamed);
        }
        if let Some(series) = open_lane.filter(|_| !self.lane.is_open()) {
            self.lane.open(target(series));
        }
        self.callsite()
    }

    /// A delta event under a shared lock: adds to an open lane. `None`: slow path.
    #[inline]
    pub fn stream(&self, tokens: u64) -> Option<u64> {
        self.lane.add(tokens, || true).map(|target| target.series)
    }

    /// `on_close`: the lane closed and folded in. Returns the callsite entry.
    #[inline]
    pub fn close(&mut self) -> Option<u32> {
        if let Some(streamed) = self.lane.close() {
            self.tracked.fold_streamed(streamed);
        }
        self.callsite()
    }

    fn callsite(&self) -> Option<u32> {
        match &self.tracked {
            Tracked::Request(request) => Some(request.callsite()),
            Tracked::Queue(_) => None,
        }
    }
}

fn default_contract() -> Contract {
    Contract {
        extra_labels: Vec::new(),
        request_span_names: Vec::new(),
        target_prefixes: Vec::new(),
        queue_span_name: DEFAULT_QUEUE_SPAN_NAME,
    }
}

/// The layer's callsite map (`CallsiteMap<CallsiteClass>`), classifying with the default
/// span contract.
pub struct Callsites {
    map: CallsiteMap<CallsiteClass>,
    contract: Contract,
}

impl Default for Callsites {
    fn default() -> Self {
        Self {
            map: CallsiteMap::new(),
            contract: default_contract(),
        }
    }
}

impl std::fmt::Debug for Callsites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map.fmt(f)
    }
}

impl Callsites {
    /// Records a callsite (as `register_callsite` does); returns its entry id.
    pub fn insert(&self, metadata: &'static Metadata<'static>) -> Option<u32> {
        self.map
            .insert(&metadata.callsite(), || self.contract.classify(metadata))
            .map(|(entry, _)| entry)
    }

    /// The path after a hint hit: the hinted entry, checked against the callsite.
    /// `true`: the callsite is interesting.
    #[inline]
    pub fn at(&self, entry: u32, id: &Identifier) -> bool {
        self.map
            .at(entry)
            .is_some_and(|(known, class)| known == id && class.is_some())
    }

    /// The path after a hint miss: the hash lookup. `Some(entry)` when interesting.
    #[inline]
    pub fn get(&self, id: &Identifier) -> Option<u32> {
        match self.map.get(id) {
            Some((entry, Some(_))) => Some(entry),
            _ => None,
        }
    }
}

/// A callsite's class as the layer decides it (`None` inside: not interesting), for a
/// map of the ladder's to hold.
pub struct CallsiteClassValue(Option<CallsiteClass>);

impl std::fmt::Debug for CallsiteClassValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl CallsiteClassValue {
    /// The class the default span contract gives `metadata`.
    pub fn classify(metadata: &Metadata<'_>) -> Self {
        Self(default_contract().classify(metadata))
    }

    /// Whether the callsite matters to the layer.
    #[inline]
    pub fn is_interesting(&self) -> bool {
        self.0.is_some()
    }
}

/// The layer's model label values (`LabelValues`) with their prices, as decoding
/// interns a model name once per request.
pub struct ModelLabels {
    values: LabelValues,
    prices: PriceIndex,
}

impl std::fmt::Debug for ModelLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.values.fmt(f)
    }
}

impl ModelLabels {
    /// At most `cap` models, priced from `prices`.
    pub fn new(cap: usize, prices: &PriceTable) -> Self {
        Self {
            values: LabelValues::with_cap(cap),
            prices: PriceIndex::new(prices),
        }
    }

    /// What decoding's `intern_model` does with a model name: the label id and whether
    /// the model has a price (the price's id comes with the value).
    #[inline]
    pub fn intern_model(&self, name: &str) -> Option<(u32, bool)> {
        let interned = self
            .values
            .intern_priced(name, |name| self.prices.id_of(name));
        let Interned::Value(id) = interned else {
            return None;
        };
        Some((id.raw(), self.values.price(id).is_some()))
    }

    /// Whether a model name has a price (a hash-map lookup, not for the hot path).
    pub fn is_priced(&self, name: &str) -> bool {
        self.prices.id_of(name).is_some()
    }
}

/// An interned model name of [`SeriesTables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelId(LabelId);

impl ModelId {
    /// The label id, as a series key holds it.
    pub fn raw(self) -> u32 {
        self.0.raw()
    }
}

/// The layer's series handles of one fixed recorder (`Recorders` and its
/// `RecorderHandles`: the `series` and `pending` tables and the by-model shortcut).
pub struct SeriesTables {
    recorders: Recorders,
    labels: LabelSets,
    config: SeriesConfig,
}

impl std::fmt::Debug for SeriesTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesTables").finish_non_exhaustive()
    }
}

impl SeriesTables {
    /// The layer's default caps, one recorder, every model of `models` interned and
    /// bound once (the steady state).
    pub fn new(recorder: Arc<dyn Recorder + Send + Sync>, models: &[&str]) -> Self {
        let tables = Self {
            recorders: Recorders::new(RecorderSource::Fixed(recorder)),
            labels: LabelSets {
                model: LabelValues::with_cap(100),
                prices: PriceIndex::new(&PriceTable::new()),
                revision: LabelValues::with_cap(100),
                gpu: LabelValues::with_cap(64),
                operation: LabelValues::with_cap(100),
                provider: LabelValues::with_cap(100),
                extra: Vec::new(),
            },
            config: SeriesConfig {
                extra_label_names: Vec::new(),
                max_series: 1000,
                max_models: 100,
                max_gpus: 64,
                provider_label: None,
            },
        };
        for model in models {
            if let Some(id) = tables.model_id(model) {
                tables.lookup(id, false);
                tables.lookup(id, true);
            }
        }
        tables
    }

    /// The label id of a model name.
    pub fn model_id(&self, model: &str) -> Option<ModelId> {
        match self.labels.model.intern(model) {
            Interned::Value(id) => Some(ModelId(id)),
            _ => None,
        }
    }

    /// What a request does to find its series (`current_series`): the series of the
    /// label set with this model and every other label unknown, with its counters
    /// registered when the request `binds`. Returns the series slot.
    #[inline]
    pub fn lookup(&self, model: ModelId, binds: bool) -> Option<u32> {
        let mut key = [LabelId::UNKNOWN; SERIES_KEY_LABELS];
        key[0] = model.0;
        let found = self
            .recorders
            .with_handles(&self.config, |index, handles, recorder| {
                handles.series_for(
                    index,
                    SeriesKey(key),
                    recorder,
                    &self.labels,
                    &self.config,
                    binds,
                )
            })?;
        let (Ok(series) | Err(series)) = found;
        Some(series.slot)
    }

    /// What a request does each time it reaches its series by slot (`Sinks::series`,
    /// `counted_at`): `true` when its counters are registered.
    #[inline]
    pub fn counted(&self, slot: u32) -> bool {
        self.recorders
            .series(SeriesRef { recorder: 0, slot })
            .is_some_and(|series| series.counted().is_some())
    }
}

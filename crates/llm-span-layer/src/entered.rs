//! The tracked span this thread entered last, kept from the layer's enter and exit
//! callbacks: an event inside a request span then finds its request without asking
//! the registry for the current span (a span lookup with two atomic updates).
//!
//! Every enter, of any span, moves an epoch on; the hint holds only while no span was
//! entered after the tracked one and the tracked one was not exited. Anything else falls
//! back to the registry. The hint names the layer that set it, since span ids belong to
//! a subscriber and a thread may switch subscribers.

use std::cell::Cell;

use tracing_core::span::Id;

/// One thread-local, so that an enter or exit costs one lookup of it.
struct Hint {
    epoch: Cell<u64>,
    /// The last tracked span entered (0: none), its layer and the epoch of its enter.
    span: Cell<u64>,
    layer: Cell<usize>,
    entered_at: Cell<u64>,
}

thread_local! {
    static HINT: Hint = const {
        Hint {
            epoch: Cell::new(0),
            span: Cell::new(0),
            layer: Cell::new(0),
            entered_at: Cell::new(0),
        }
    };
}

/// A span was entered; `tracked` when the layer may hold its state.
#[inline]
pub(crate) fn enter(layer: usize, id: &Id, tracked: bool) {
    HINT.with(|hint| {
        let epoch = hint.epoch.get().wrapping_add(1);
        hint.epoch.set(epoch);
        if tracked {
            hint.span.set(id.into_u64());
            hint.layer.set(layer);
            hint.entered_at.set(epoch);
        }
    });
}

/// A span was exited.
#[inline]
pub(crate) fn exit(id: &Id) {
    HINT.with(|hint| {
        if hint.span.get() == id.into_u64() {
            hint.span.set(0);
        }
    });
}

/// The current span of this thread, if it is the tracked span `layer` saw entered last.
#[inline]
pub(crate) fn current(layer: usize) -> Option<Id> {
    HINT.with(|hint| {
        let span = hint.span.get();
        (span != 0 && hint.layer.get() == layer && hint.entered_at.get() == hint.epoch.get())
            .then(|| Id::from_u64(span))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_holds_until_another_span_is_entered_or_it_is_exited() {
        let (request, child) = (Id::from_u64(7), Id::from_u64(9));
        enter(1, &request, true);
        assert_eq!(current(1), Some(request.clone()));
        assert_eq!(current(2), None, "another layer's span ids are not ours");
        enter(1, &child, false);
        assert_eq!(current(1), None, "the child is the current span now");
        exit(&child);
        assert_eq!(current(1), None, "and the registry knows better after it");
        enter(1, &request, true);
        exit(&request);
        assert_eq!(current(1), None);
    }
}

//! A per-thread guard against the layer re-entering itself.
//!
//! A recorder that emits tracing events while the layer calls it would re-enter the
//! layer while it holds a lock, and the application would hang. Callbacks run under
//! a [`Reentry`] guard and ignore whatever arrives while one is held on the thread.

use std::cell::Cell;

thread_local! {
    /// Whether this thread is inside one of the layer's callbacks.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside the layer until dropped.
pub(crate) struct Reentry;

impl Reentry {
    /// `None` when this thread is inside the layer already.
    pub(crate) fn enter() -> Option<Reentry> {
        // Lazily: a `Reentry` built and dropped here would clear the flag.
        IN_CALLBACK.with(|inside| (!inside.replace(true)).then(|| Reentry))
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        IN_CALLBACK.with(|inside| inside.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_entry_is_refused_until_the_outer_guard_drops() {
        let outer = Reentry::enter();
        assert!(outer.is_some());
        assert!(Reentry::enter().is_none());
        drop(outer);
        assert!(Reentry::enter().is_some());
    }
}

//! A dropped `Secret` overwrites its bytes before the allocator gets them back.
//!
//! Freed memory cannot be read afterwards, so this test binary has an allocator of its
//! own that looks at every block handed back while the test watches: the credential's
//! text must never be in one.
// The allocator is a thin wrapper of `System`; its only other work is reading a block
// that is still allocated.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use llm_span_prometheus::Secret;

/// A credential no other allocation of this binary holds.
const CREDENTIAL: &[u8] = b"zeroed-on-drop-4f1c9a7e-credential";

static WATCHING: AtomicBool = AtomicBool::new(false);
/// Blocks of the credential's length handed back while watching: all zero, or not.
static FREED_ZEROED: AtomicUsize = AtomicUsize::new(0);
static FREED_WITH_CREDENTIAL: AtomicUsize = AtomicUsize::new(0);

struct Watching;

unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCHING.load(Ordering::SeqCst) && layout.size() >= CREDENTIAL.len() {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until the call below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block
                .windows(CREDENTIAL.len())
                .any(|window| window == CREDENTIAL)
            {
                FREED_WITH_CREDENTIAL.fetch_add(1, Ordering::SeqCst);
            } else if block.len() == CREDENTIAL.len() && block.iter().all(|b| *b == 0) {
                FREED_ZEROED.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

#[test]
fn a_dropped_secret_leaves_zeros_behind() {
    let text = String::from_utf8(CREDENTIAL.to_vec()).expect("ascii");
    assert_eq!(text.capacity(), CREDENTIAL.len());
    let secret = Secret::new(text);
    let copy = secret.clone();

    WATCHING.store(true, Ordering::SeqCst);
    drop(secret);
    drop(copy);
    WATCHING.store(false, Ordering::SeqCst);

    assert_eq!(FREED_WITH_CREDENTIAL.load(Ordering::SeqCst), 0);
    assert_eq!(FREED_ZEROED.load(Ordering::SeqCst), 2);
}

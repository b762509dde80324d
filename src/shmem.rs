//! Shared memory exists only when `shared_preload_libraries` loads the library: the progress
//! slots (`progress`) and the worker's board (`worker::board`) are asked for then.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set in the postmaster as it preloads the library; every child inherits it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Asks for every piece of shared memory; only while `shared_preload_libraries` is processed.
pub fn init() {
    crate::progress::init();
    crate::worker::board::init();
    PRELOADED.store(true, Ordering::Relaxed);
}

/// Whether this process has the shared memory (the library was preloaded).
pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

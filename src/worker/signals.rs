//! The worker's SIGTERM (a server shutdown, or `pg_terminate_backend`): a request to stop. The
//! loop sees it between steps and skips its sleep; a run in progress also has its current
//! statement cancelled, so that a long batch (a slow trigger, a wait on a row lock) ends at
//! once, and the run records where it stopped before the worker exits. A cancel is used, not
//! Postgres' own `die`, because `die` ends the process from inside the statement, before the
//! run can record anything.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;

/// Whether a policy run is in progress, so that a SIGTERM cancels its statement.
static IN_RUN: AtomicBool = AtomicBool::new(false);

/// Installs the SIGTERM handler, and pgrx's SIGHUP flag, then unblocks signals.
pub fn install() {
    // SAFETY: sets this process's SIGTERM handler before signals are unblocked (by
    // attach_signal_handlers); `on_sigterm` is async-signal-safe.
    #[cfg(not(feature = "pg18"))]
    unsafe { pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(on_sigterm)) };
    // 18 names the backend's pqsignal pqsignal_be (its header maps one to the other).
    // SAFETY: as above.
    #[cfg(feature = "pg18")]
    unsafe { pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(on_sigterm)) };
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
}

/// # Safety
/// A signal handler: it only sets flags and the process latch, as Postgres' own handlers do,
/// and leaves errno as it found it.
unsafe extern "C-unwind" fn on_sigterm(_signal: std::ffi::c_int) {
    // SAFETY: errno is this thread's; the flags are sig_atomic_t, made to be set here; SetLatch
    // is safe in a signal handler.
    unsafe {
        let saved_errno = *libc::__errno_location();
        pg_sys::ShutdownRequestPending = 1;
        if IN_RUN.load(Ordering::SeqCst) {
            pg_sys::QueryCancelPending = 1;
            pg_sys::InterruptPending = 1;
        }
        pg_sys::SetLatch(pg_sys::MyLatch);
        *libc::__errno_location() = saved_errno;
    }
}

/// Runs a policy run, during which a SIGTERM also cancels the statement under way.
pub fn during_run<R>(work: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_RUN.store(false, Ordering::SeqCst);
            // A cancel (ours on SIGTERM, or pg_cancel_backend) is meant for the run's statement;
            // one still pending once the run is over must not cancel the worker's own
            // bookkeeping after it.
            // SAFETY: clearing a flag of this process, which only signal handlers set.
            unsafe { pg_sys::QueryCancelPending = 0 };
        }
    }
    IN_RUN.store(true, Ordering::SeqCst);
    let _leave = Leave;
    work()
}

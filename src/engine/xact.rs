//! Transaction mechanics of a run: snapshots between the commits of a batched run, and
//! subtransactions that let a run record its own failure before the error goes on.

use std::ffi::CStr;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// Runs `work` with an active snapshot, taking a fresh one only if none is active: between
/// the commits of a batched run (a procedure or the worker) none is, and none is held while
/// Twilio calls are in flight.
pub fn with_snapshot<R>(work: impl FnOnce() -> R) -> R {
    // SAFETY: reads and sets this backend's active snapshot; a pushed snapshot is popped below,
    // or by transaction abort if `work` raises an error.
    let pushed = unsafe {
        if pg_sys::ActiveSnapshotSet() {
            false
        } else {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            true
        }
    };
    let result = work();
    if pushed {
        // SAFETY: pops the snapshot pushed above, still the active one.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    result
}

/// Runs `work` in a subtransaction (with a snapshot), so that on error its changes are rolled
/// back and the session is clean enough to record the failure before the error goes on.
pub fn in_subtransaction<R>(work: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, Box<CaughtError>> {
    // SAFETY: the pattern of PL/pgSQL's exception blocks: begin a subtransaction, then on
    // either path release or roll it back, restoring the caller's memory context and resource
    // owner, which the subtransaction replaced.
    let (context, owner) = unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        (context, owner)
    };
    // SAFETY: `context` and `owner` are the caller's, alive for as long as its transaction.
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    PgTryBuilder::new(move || {
        let result = with_snapshot(work);
        // SAFETY: ends the subtransaction begun above, which `work` completed.
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        Ok(result)
    })
    .catch_others(move |error| {
        // SAFETY: rolls back the subtransaction begun above, after its error was caught.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        Err(Box::new(error))
    })
    .execute()
}

/// A background worker's transactions around a batched run: `work` gets a commit that ends
/// the current transaction and starts the next; the last one is committed when `work`
/// returns Ok, aborted when it raises. Returns what `work` returned, or the error it raised.
pub fn in_worker_transactions<R>(work: impl FnOnce(&dyn Fn()) -> R) -> Result<R, Box<CaughtError>> {
    // SAFETY: a background worker's transaction handling, as postgres' own workers do it:
    // start a transaction; commit pops any snapshot left active and starts the next.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
    }
    let commit = || {
        // SAFETY: called between statements of a transaction this function started.
        unsafe {
            while pg_sys::ActiveSnapshotSet() {
                pg_sys::PopActiveSnapshot();
            }
            pg_sys::CommitTransactionCommand();
            report_stats();
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
        }
    };
    let result = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(work(&commit)))).catch_others(|error| Err(Box::new(error))).execute();
    // SAFETY: ends the transaction that is open now: committed after success, aborted after an error.
    unsafe {
        if result.is_ok() {
            pg_sys::CommitTransactionCommand();
        } else {
            pg_sys::AbortCurrentTransaction();
        }
    }
    report_stats();
    result
}

/// A client backend reports its table statistics when it goes idle; a worker that lives on
/// must do it itself after each batch, or autovacuum never hears of its dead rows.
fn report_stats() {
    // SAFETY: called between transactions, as pgstat_report_stat requires.
    unsafe { pg_sys::pgstat_report_stat(true) };
}

/// Runs `work` with settings changed for its duration, as a function's `SET` clause does: on
/// return, or by the (sub)transaction abort after an error, they are back to what they were.
pub fn with_settings<R>(settings: &[(&CStr, &CStr)], work: impl FnOnce() -> R) -> R {
    // SAFETY: opens a GUC nest level, closed below or by the abort of the enclosing transaction.
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        // Saved at the nest level above, as `SET LOCAL` does.
        set_setting(name, value, pg_sys::GucAction::GUC_ACTION_SAVE);
    }
    let result = work();
    // SAFETY: closes the nest level opened above, undoing its settings.
    unsafe { pg_sys::AtEOXact_GUC(false, nest_level) };
    result
}

/// Sets one of our settings as `SET` (`GUC_ACTION_SET`) or a function's `SET` clause
/// (`GUC_ACTION_SAVE`) would; a value the setting's own hook refuses raises its error.
pub fn set_setting(name: &CStr, value: &CStr, action: pg_sys::GucAction::Type) {
    // SAFETY: both strings are NUL-terminated and outlive the call, which copies them; the names
    // and values are the extension's own, never a user's text.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
}

/// Runs `work` with interrupts held off: a pending cancel or terminate waits until it returns
/// (or raises). A run stopped by a cancel records its end this way before the cancel's error
/// goes up; otherwise the first statement that records it would raise the cancel instead.
pub fn with_interrupts_held<R>(work: impl FnOnce() -> R) -> R {
    struct Held;
    impl Drop for Held {
        fn drop(&mut self) {
            // SAFETY: undoes the increment below, on return or on unwind, on the same thread.
            unsafe { pg_sys::InterruptHoldoffCount -= 1 };
        }
    }
    // SAFETY: HOLD_INTERRUPTS(): a counter of this backend's, read by CHECK_FOR_INTERRUPTS.
    unsafe { pg_sys::InterruptHoldoffCount += 1 };
    let _held = Held;
    work()
}

/// Whether this process was asked to shut down: only the worker's SIGTERM sets this flag in
/// a process that runs policies (see `worker/signals.rs`).
pub fn shutdown_requested() -> bool {
    // SAFETY: a flag set by a signal handler and nothing clears.
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

/// Waits `duration` with nothing held, waking for a cancel, a terminate or the worker's
/// shutdown: never sleeps through a signal.
pub fn pause(duration: std::time::Duration) {
    let deadline = std::time::Instant::now() + duration;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || shutdown_requested() {
            return;
        }
        if !crate::wait_events::sleep(crate::wait_events::WaitEvent::Pace, left) {
            // SAFETY: what pg_sleep()'s WL_EXIT_ON_PM_DEATH does: with the postmaster gone
            // there is no one left to serve.
            unsafe { pg_sys::proc_exit(1) };
        }
    }
}

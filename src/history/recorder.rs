//! Recording a failed run that ran in the caller's transaction.
//!
//! That transaction rolls back with the error, and a history row written in it would vanish
//! too. So the row is written by a short-lived background worker, in a transaction of its own:
//! the run's facts go to it through a dynamic shared memory segment, and the failing backend
//! waits for it to finish before re-raising the error.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use super::payload::{self, HEADER};
use super::{store, Origin, RunRecord};
use crate::error::say;

/// Inserts a failed run's history row from a background worker; warns when it cannot.
/// Call it outside any failed subtransaction (the caller has rolled its work back).
pub fn record(run: &RunRecord) {
    let payload = payload::encode(run, &store::this_backend());
    // SAFETY: called on the backend's main thread, in a transaction, as dsm_create requires.
    if let Err(problem) = unsafe { record_through_worker(&payload) } {
        crate::error::report(
            PgLogLevel::WARNING,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            format!("pg_retention: the failed run of policy \"{}\" is not in retention.runs: {problem}", run.policy),
            Some("The server log has its line; max_worker_processes may be too low.".into()),
        );
    }
}

/// # Safety
/// Must be called on the backend's main thread inside a transaction: the segment is released
/// with it, and the wait for the worker handles this backend's interrupts.
unsafe fn record_through_worker(payload: &[u8]) -> Result<(), String> {
    // SAFETY: a segment of the payload's size, written in full before its handle is shared.
    let (segment, handle) = unsafe {
        let segment = pg_sys::dsm_create(payload.len(), 0);
        let address = pg_sys::dsm_segment_address(segment) as *mut u8;
        std::ptr::copy_nonoverlapping(payload.as_ptr(), address, payload.len());
        (segment, pg_sys::dsm_segment_handle(segment))
    };
    // The recorder connects as the extension's owner: it writes the extension's own table, and
    // the failing session's role may not be able to log in.
    let user = u32::from(crate::rights::extension_owner());
    // SAFETY: plain reads of this backend's ids.
    let (database, pid) = unsafe { (u32::from(pg_sys::MyDatabaseId), pg_sys::MyProcPid) };
    let worker = BackgroundWorkerBuilder::new("pg_retention failed-run recorder")
        .set_type("pg_retention recorder")
        .set_library("pg_retention")
        .set_function("pg_retention_record_failed_run")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_extra(&format!("{database} {user} {handle}"))
        .set_notify_pid(pid)
        .load_dynamic()
        .map_err(|_| "no background worker slot was free".to_string())?;
    worker.wait_for_shutdown().map_err(|status| format!("the recorder ended with {status:?}"))?;
    // SAFETY: the segment created above; the worker has detached from it.
    unsafe { pg_sys::dsm_detach(segment) };
    Ok(())
}

/// The recorder worker's entry point.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_retention_record_failed_run(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let fields: Vec<u32> = BackgroundWorker::get_extra().split(' ').filter_map(|f| f.parse().ok()).collect();
    let [database, user, handle] = fields[..] else {
        say!(LOG, "pg_retention recorder: malformed arguments");
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database.into()), Some(user.into()));
    BackgroundWorker::transaction(|| {
        // SAFETY: the handle comes from the backend that waits for this worker, segment alive.
        match unsafe { read_payload(handle) } {
            Ok((mut run, origin)) => store::History::open().insert(&mut run, &origin),
            Err(problem) => say!(LOG, "pg_retention recorder: the failed run was not recorded: {problem}"),
        }
    });
}

/// # Safety
/// `handle` must name a segment made by `record_through_worker`, whose creator is still alive.
unsafe fn read_payload(handle: u32) -> Result<(RunRecord, Origin), String> {
    // SAFETY: attach returns NULL for a segment that is gone; the header is checked before the
    // body is read, and the body is read only within the segment's mapped size.
    unsafe {
        let segment = pg_sys::dsm_attach(handle);
        if segment.is_null() {
            return Err("the segment was gone before it could be read".into());
        }
        let size = pg_sys::dsm_segment_map_length(segment);
        let address = pg_sys::dsm_segment_address(segment) as *const u8;
        let result = if size < HEADER {
            Err("the segment is too small".into())
        } else {
            let mut header = [0u8; HEADER];
            std::ptr::copy_nonoverlapping(address, header.as_mut_ptr(), HEADER);
            payload::decode(header, |length| std::slice::from_raw_parts(address.add(HEADER), length.min(size - HEADER)).to_vec())
        };
        pg_sys::dsm_detach(segment);
        result
    }
}

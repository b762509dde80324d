//! Recording a failed run that ran in the caller's transaction.
//!
//! That transaction rolls back with the error, and a history row written in it would vanish
//! too. So the row is written by a short-lived background worker, in a transaction of its own:
//! the run's facts go to it through a dynamic shared memory segment, and the failing backend
//! waits for it to finish before re-raising the error.

use std::time::{SystemTime, UNIX_EPOCH};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use serde_json::{json, Value};

/// The facts of a failed run, as the worker inserts them.
pub struct FailedRun<'a> {
    pub policy: &'a str,
    pub trigger: &'a str,
    pub started: SystemTime,
    pub error: &'a str,
}

/// Inserts the failed run's history row from a background worker; warns when it cannot.
/// Call it outside any failed subtransaction (the caller has rolled its work back).
pub fn record(run: &FailedRun) {
    let started = run.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    let application_name = Spi::get_one::<String>("SELECT pg_catalog.current_setting('application_name')")
        .ok()
        .flatten()
        .unwrap_or_default();
    let payload = json!({
        "policy": run.policy,
        "trigger": run.trigger,
        "started_epoch": started,
        "error": run.error,
        "pid": unsafe { pg_sys::MyProcPid },
        "application_name": application_name,
    })
    .to_string();
    if let Err(problem) = unsafe { record_through_worker(payload.as_bytes()) } {
        ereport!(
            WARNING,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            format!("pg_retention: the failed run of policy \"{}\" is not in retention.runs: {problem}", run.policy),
            "The server log has its line; max_worker_processes may be too low."
        );
    }
}

unsafe fn record_through_worker(payload: &[u8]) -> Result<(), String> {
    // Length-prefixed bytes; the segment is released with the caller's transaction.
    let segment = pg_sys::dsm_create(payload.len() + 8, 0);
    let address = pg_sys::dsm_segment_address(segment) as *mut u8;
    std::ptr::copy_nonoverlapping((payload.len() as u64).to_le_bytes().as_ptr(), address, 8);
    std::ptr::copy_nonoverlapping(payload.as_ptr(), address.add(8), payload.len());
    let handle = pg_sys::dsm_segment_handle(segment);

    let extra = format!("{} {} {}", u32::from(pg_sys::MyDatabaseId), u32::from(pg_sys::GetUserId()), handle);
    let worker = BackgroundWorkerBuilder::new("pg_retention failed-run recorder")
        .set_type("pg_retention recorder")
        .set_library("pg_retention")
        .set_function("pg_retention_record_failed_run")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_extra(&extra)
        .set_notify_pid(pg_sys::MyProcPid)
        .load_dynamic()
        .map_err(|_| "no background worker slot was free".to_string())?;
    worker.wait_for_shutdown().map_err(|status| format!("the recorder ended with {status:?}"))?;
    pg_sys::dsm_detach(segment);
    Ok(())
}

/// The recorder worker's entry point.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_retention_record_failed_run(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let fields: Vec<u32> = BackgroundWorker::get_extra().split(' ').filter_map(|f| f.parse().ok()).collect();
    let [database, user, handle] = fields[..] else {
        log!("pg_retention recorder: malformed arguments");
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database.into()), Some(user.into()));
    BackgroundWorker::transaction(|| {
        let Some(run) = (unsafe { read_payload(handle) }) else {
            log!("pg_retention recorder: the failed run's facts were gone before they could be read");
            return;
        };
        let text = |key: &str| run[key].as_str().map(str::to_string);
        let inserted = Spi::run_with_args(
            "INSERT INTO retention.runs (policy, trigger, mode, status, started_at, finished_at, error, pid, application_name)
             VALUES ($1, $2, 'transaction', 'failed', pg_catalog.to_timestamp($3), pg_catalog.clock_timestamp(), $4, $5, $6)",
            &[
                text("policy").into(),
                text("trigger").into(),
                run["started_epoch"].as_f64().into(),
                text("error").into(),
                run["pid"].as_i64().map(|p| p as i32).into(),
                text("application_name").into(),
            ],
        );
        if let Err(e) = inserted {
            log!("pg_retention recorder: could not insert the failed run: {e}");
        }
    });
}

unsafe fn read_payload(handle: u32) -> Option<Value> {
    let segment = pg_sys::dsm_attach(handle);
    if segment.is_null() {
        return None;
    }
    let address = pg_sys::dsm_segment_address(segment) as *const u8;
    let mut length = [0u8; 8];
    std::ptr::copy_nonoverlapping(address, length.as_mut_ptr(), 8);
    let bytes = std::slice::from_raw_parts(address.add(8), u64::from_le_bytes(length) as usize);
    let value = serde_json::from_slice(bytes).ok();
    pg_sys::dsm_detach(segment);
    value
}

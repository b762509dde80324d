//! The launcher: a background worker bound to no database. It starts the worker of
//! `pg_retention.database` only while `pg_retention.worker_enabled` is on and that database
//! exists, and starts it again when it exits. So a disabled worker never connects, and a
//! missing database (dropped, or a typo) is said once in the log, not in a FATAL every few
//! seconds.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;

use super::{signals, WORKER_TYPE};
use crate::engine::xact::shutdown_requested;
use crate::error::say;
use crate::settings;

pub const LAUNCHER_TYPE: &str = "pg_retention launcher";

/// The shortest time between two starts of the worker: a worker that keeps failing at start
/// is not restarted in a tight loop.
const RESTART_DELAY: Duration = Duration::from_secs(5);

/// How often a missing database is looked for again (and at every reload).
const MISSING_DATABASE_WAIT: Duration = Duration::from_secs(60);

/// Registers the launcher; only while `shared_preload_libraries` is being processed.
pub fn register() {
    BackgroundWorkerBuilder::new(LAUNCHER_TYPE)
        .set_type(LAUNCHER_TYPE)
        .set_library("pg_retention")
        .set_function("pg_retention_launcher_main")
        .enable_spi_access()
        .set_start_time(pgrx::bgworkers::BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_retention_launcher_main(_arg: pg_sys::Datum) {
    signals::install();
    // No database: the shared catalogs only, enough to look up pg_database.
    BackgroundWorker::connect_worker_to_spi(None, None);
    let mut worker: Option<DynamicBackgroundWorker> = None;
    let mut last_start: Option<Instant> = None;
    let mut said_missing: Option<String> = None;
    while !shutdown_requested() {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what the postmaster's children do on SIGHUP, on the main thread.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let running = worker.as_ref().is_some_and(|w| !matches!(w.pid(), Err(BackgroundWorkerStatus::Stopped)));
        let mut wait = MISSING_DATABASE_WAIT;
        if !running && settings::WORKER_ENABLED.get() {
            let database = settings::database();
            match database_oid(&database) {
                None => {
                    if said_missing.as_deref() != Some(database.as_str()) {
                        say!(LOG, "pg_retention launcher: database \"{database}\" does not exist; the worker starts when it does (or set pg_retention.database)");
                        said_missing = Some(database);
                    }
                }
                Some(oid) => {
                    said_missing = None;
                    let since = last_start.map_or(RESTART_DELAY, |t| t.elapsed());
                    if since < RESTART_DELAY {
                        wait = RESTART_DELAY - since;
                    } else {
                        worker = start_worker(oid, &database);
                        last_start = Some(Instant::now());
                        wait = RESTART_DELAY;
                    }
                }
            }
        }
        if shutdown_requested() || !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
    }
    // The worker goes with its launcher, or a restarted launcher would start a second one.
    if let Some(worker) = worker {
        let _ = worker.terminate().wait_for_shutdown();
    }
    // SAFETY: ends this background worker; non-zero so that the postmaster starts it again
    // after pg_terminate_backend (it does not during its own shutdown).
    unsafe { pg_sys::proc_exit(1) };
}

/// The database's oid, if it exists. A heap scan of pg_database, as the autovacuum launcher
/// does it: with no database selected, an index scan could need pg_class to build its index.
fn database_oid(name: &str) -> Option<pg_sys::Oid> {
    BackgroundWorker::transaction(|| {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        // SAFETY: a catalog heap scan inside a transaction, begun, read and ended here; each
        // tuple heap_getnext returns is a pg_database row, valid until the next call.
        unsafe {
            let relation = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
            let scan = pg_sys::table_beginscan_catalog(relation, 0, std::ptr::null_mut());
            let mut found = None;
            loop {
                let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tuple.is_null() {
                    break;
                }
                let row = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
                if std::ffi::CStr::from_ptr((*row).datname.data.as_ptr()).to_bytes() == name.as_bytes() {
                    found = Some((*row).oid);
                    break;
                }
            }
            pg_sys::table_endscan(scan);
            pg_sys::table_close(relation, lock);
            found
        }
    })
}

fn start_worker(database: pg_sys::Oid, name: &str) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new(WORKER_TYPE)
        .set_type(WORKER_TYPE)
        .set_library("pg_retention")
        .set_function("pg_retention_worker_main")
        .enable_spi_access()
        .set_argument(Some(pg_sys::Datum::from(database)))
        .set_restart_time(None)
        // SAFETY: MyProcPid is set at process start.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .map_err(|_| say!(WARNING, "pg_retention launcher: could not start the worker for database \"{name}\" (max_worker_processes reached?)"))
        .ok()
}

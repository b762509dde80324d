//! The launcher: a background worker bound to no database. It starts one worker for each
//! database of `pg_retention.database` only while `pg_retention.worker_enabled` is on and that
//! database exists, and starts it again when it exits. So a disabled worker never connects, and
//! a missing database (dropped, or a typo) is said once in the log, not in a FATAL every few
//! seconds. A worker whose database leaves the list (or that is disabled) stops itself at the
//! reload, after the policy run it is in; until it has, no second worker starts for it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;

use super::{signals, WORKER_TYPE};
use crate::engine::xact::shutdown_requested;
use crate::error::say;
use crate::settings;
use crate::wait_events::{self, WaitEvent};

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
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    while !shutdown_requested() {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what the postmaster's children do on SIGHUP, on the main thread.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let wanted = if settings::WORKER_ENABLED.get() { settings::databases() } else { Vec::new() };
        let mut wait = MISSING_DATABASE_WAIT;
        for database in &wanted {
            wait = wait.min(workers.entry(database.clone()).or_default().look_after(database));
        }
        workers.retain(|database, worker| wanted.contains(database) || worker.running());
        if shutdown_requested() || !wait_events::sleep(WaitEvent::LauncherMain, wait) {
            break;
        }
    }
    // The workers go with their launcher, or a restarted launcher would start second ones.
    for worker in workers.into_values().filter_map(|w| w.handle) {
        let _ = worker.terminate().wait_for_shutdown();
    }
    // SAFETY: ends this background worker; non-zero so that the postmaster starts it again
    // after pg_terminate_backend (it does not during its own shutdown).
    unsafe { pg_sys::proc_exit(1) };
}

/// The launcher's view of one database's worker.
#[derive(Default)]
struct Worker {
    handle: Option<DynamicBackgroundWorker>,
    last_start: Option<Instant>,
    said_missing: bool,
    /// Its start failed for want of a slot, and that was said: said once, not at every try.
    said_no_slot: bool,
}

impl Worker {
    fn running(&self) -> bool {
        self.handle.as_ref().is_some_and(|w| !matches!(w.pid(), Err(BackgroundWorkerStatus::Stopped)))
    }

    /// Starts the worker of listed `database` if it is not running and may start; returns how
    /// long until it should be looked at again.
    fn look_after(&mut self, database: &str) -> Duration {
        if self.running() {
            return MISSING_DATABASE_WAIT;
        }
        let Some(oid) = database_oid(database) else {
            if !self.said_missing {
                say!(LOG, "pg_retention launcher: database \"{database}\" does not exist; its worker starts when it does (or set pg_retention.database)");
                self.said_missing = true;
            }
            return MISSING_DATABASE_WAIT;
        };
        self.said_missing = false;
        let since = self.last_start.map_or(RESTART_DELAY, |t| t.elapsed());
        if since < RESTART_DELAY {
            return RESTART_DELAY - since;
        }
        self.handle = start_worker(oid);
        self.last_start = Some(Instant::now());
        match (&self.handle, self.said_no_slot) {
            (None, false) => {
                say!(
                    WARNING,
                    "pg_retention launcher: no background worker slot is free for the worker of database \"{database}\"; it starts when one is (raise max_worker_processes, a restart, or list fewer databases in pg_retention.database)"
                );
                self.said_no_slot = true;
            }
            (Some(_), true) => {
                say!(LOG, "pg_retention launcher: the worker of database \"{database}\" has started");
                self.said_no_slot = false;
            }
            _ => {}
        }
        RESTART_DELAY
    }
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

fn start_worker(database: pg_sys::Oid) -> Option<DynamicBackgroundWorker> {
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
        .ok()
}

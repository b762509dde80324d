//! The launcher: a background worker bound to no database, the only one pg_retention keeps
//! between runs. It starts a database's worker (a dynamic background worker that makes one
//! pass: runs its policies if due, then says when the next pass is due and exits) at that
//! time, when `run_worker_now()` asks, and once at its own start and after a change of the
//! schedule's settings. Only while `pg_retention.worker_enabled` is on and for databases of
//! `pg_retention.database` that exist (a missing one is said once). With more databases due
//! than free background-worker slots they wait their turn, first due first started, said in
//! one LOG line. A pass that ends without saying (terminated, crashed) is started again after
//! `RESTART_DELAY`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;

use super::board::{self, Answer};
use super::{signals, WORKER_TYPE};
use crate::engine::xact::shutdown_requested;
use crate::error::say;
use crate::settings;
use crate::wait_events::{self, WaitEvent};

pub const LAUNCHER_TYPE: &str = "pg_retention launcher";

/// After a pass that ended without saying when the next is due, the wait before another: a
/// worker that keeps failing at start is not restarted in a tight loop.
const RESTART_DELAY: Duration = Duration::from_secs(5);

/// How often a missing database is looked for again (and at every reload).
const MISSING_DATABASE_WAIT: Duration = Duration::from_secs(60);

/// The longest the launcher sleeps: clocks can jump; waking costs no slot.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

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

fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn later(by: Duration) -> pg_sys::TimestampTz {
    now().saturating_add(by.as_micros() as i64)
}

/// What decides when passes are due: a change of either starts a pass in every database.
fn schedule_settings() -> (Option<String>, String) {
    (settings::run_at().map(|t| t.to_string()), settings::timezone())
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_retention_launcher_main(_arg: pg_sys::Datum) {
    signals::install();
    // No database: the shared catalogs only, enough to look up pg_database.
    BackgroundWorker::connect_worker_to_spi(None, None);
    // SAFETY: MyProcPid is set at process start.
    board::launcher_started(unsafe { pg_sys::MyProcPid });
    let mut launcher = Launcher::default();
    let mut schedule = schedule_settings();
    while !shutdown_requested() {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what the postmaster's children do on SIGHUP, on the main thread.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            if schedule_settings() != schedule {
                schedule = schedule_settings();
                launcher.databases.values_mut().for_each(|d| d.next_start = 0);
            }
        }
        let wanted = if settings::WORKER_ENABLED.get() { settings::databases() } else { Vec::new() };
        let wait = launcher.round(&wanted);
        if shutdown_requested() || !wait_events::sleep(WaitEvent::LauncherMain, wait) {
            break;
        }
    }
    // The workers go with their launcher, or a restarted launcher would start second ones.
    for worker in launcher.databases.into_values().filter_map(|d| d.handle) {
        let _ = worker.terminate().wait_for_shutdown();
    }
    // SAFETY: ends this background worker; non-zero so that the postmaster starts it again
    // after pg_terminate_backend (it does not during its own shutdown).
    unsafe { pg_sys::proc_exit(1) };
}

/// The launcher's view of one listed database.
#[derive(Default)]
struct Database {
    oid: Option<pg_sys::Oid>,
    handle: Option<DynamicBackgroundWorker>,
    /// When its next pass is due (0: now).
    next_start: pg_sys::TimestampTz,
    /// Not before this, whatever asks (after a pass that ended without saying).
    not_before: pg_sys::TimestampTz,
    said_missing: bool,
}

impl Database {
    fn running_pid(&self) -> Option<i32> {
        self.handle.as_ref().and_then(|w| w.pid().ok()).map(|pid| pid as i32)
    }
}

#[derive(Default)]
struct Launcher {
    databases: BTreeMap<String, Database>,
    /// Due and waiting for a slot, first due first.
    queue: VecDeque<String>,
    said_queued: bool,
}

impl Launcher {
    /// One look at every listed database: ends, starts, answers. Returns how long to sleep.
    fn round(&mut self, wanted: &[String]) -> Duration {
        let mut wait = MAX_SLEEP;
        for name in wanted {
            let database = self.databases.entry(name.clone()).or_default();
            if database.oid.is_none() {
                database.oid = database_oid(name);
                if database.oid.is_none() {
                    if !database.said_missing {
                        say!(LOG, "pg_retention launcher: database \"{name}\" does not exist; its worker starts when it does (or set pg_retention.database)");
                        database.said_missing = true;
                    }
                    wait = wait.min(MISSING_DATABASE_WAIT);
                    continue;
                }
                database.said_missing = false;
            }
            let oid = database.oid.unwrap_or(pg_sys::InvalidOid);
            let ended = database.handle.as_ref().is_some_and(|w| matches!(w.pid(), Err(BackgroundWorkerStatus::Stopped)));
            if ended {
                database.handle = None;
                match board::take_report(oid) {
                    Some(due) => database.next_start = due,
                    None => {
                        database.not_before = later(RESTART_DELAY);
                        database.next_start = database.not_before;
                    }
                }
            }
            if let Some(pid) = database.running_pid() {
                if board::requested(oid) {
                    board::reply(oid, Answer::Started(pid));
                }
                continue;
            }
            let now = now();
            let due = (database.next_start <= now || board::requested(oid)) && database.not_before <= now;
            if due && !self.queue.contains(name) {
                self.queue.push_back(name.clone());
            } else if !due {
                let until = database.next_start.max(database.not_before).saturating_sub(now).max(0);
                wait = wait.min(Duration::from_micros(until as u64));
            }
        }
        self.databases.retain(|name, d| wanted.contains(name) || d.handle.is_some());
        self.queue.retain(|name| wanted.contains(name));
        self.start_queued();
        if !self.queue.is_empty() {
            // Slots free without a word to us (parallel queries, other extensions' workers).
            wait = wait.min(RESTART_DELAY);
        }
        wait.max(Duration::from_millis(100))
    }

    /// Starts the databases waiting, in turn, while slots are free; answers the others.
    fn start_queued(&mut self) {
        while let Some(name) = self.queue.front().cloned() {
            let Some(database) = self.databases.get_mut(&name) else {
                self.queue.pop_front();
                continue;
            };
            let oid = database.oid.unwrap_or(pg_sys::InvalidOid);
            let Some(handle) = start_worker(oid) else { break };
            let pid = handle.wait_for_startup().map(|pid| pid as i32).unwrap_or(0);
            database.handle = Some(handle);
            board::reply(oid, Answer::Started(pid));
            self.queue.pop_front();
        }
        if self.queue.is_empty() {
            if self.said_queued {
                say!(LOG, "pg_retention launcher: every database waiting for a background worker slot has started");
                self.said_queued = false;
            }
            return;
        }
        if !self.said_queued {
            say!(
                LOG,
                "pg_retention launcher: no background worker slot is free; {} database(s) wait their turn ({}); raise max_worker_processes (a restart) if this lasts",
                self.queue.len(),
                self.queue.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            self.said_queued = true;
        }
        let ours_running = self.databases.values().any(|d| d.running_pid().is_some());
        for (ahead, name) in self.queue.iter().enumerate() {
            if let Some(oid) = self.databases.get(name).and_then(|d| d.oid) {
                if board::requested(oid) {
                    board::reply(oid, if ours_running { Answer::Queued(ahead as i32) } else { Answer::NoSlot });
                }
            }
        }
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

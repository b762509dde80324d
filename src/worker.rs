//! The background worker: once a day at `pg_retention.run_at` (in `pg_retention.timezone`) it
//! runs every enabled policy of `pg_retention.database`, each as `run_batched` does, committing
//! per batch. Never during recovery. The slot it last ran is kept in `retention.worker_state`,
//! so a restart neither skips a night nor runs one twice.

use std::time::Duration;

use chrono::NaiveDateTime;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use crate::policy::raise;
use crate::run_log::WORKER_TYPE;
use crate::schedule::{self, Due};
use crate::{engine, settings};

/// The longest the worker sleeps before looking again: settings and clocks change.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Registers the worker; only while `shared_preload_libraries` is being processed.
pub fn register() {
    BackgroundWorkerBuilder::new("pg_retention worker")
        .set_type(WORKER_TYPE)
        .set_library("pg_retention")
        .set_function("pg_retention_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

fn shutting_down() -> bool {
    // SAFETY: a flag the SIGTERM handler sets and nothing clears.
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_retention_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = settings::text(&settings::DATABASE).unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("pg_retention worker: started for database \"{database}\"");
    let mut warned = false;
    while !shutting_down() {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what the postmaster's children do on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            if settings::text(&settings::DATABASE).as_deref() != Some(database.as_str()) {
                log!("pg_retention worker: pg_retention.database changed; restarting to connect to it");
                // SAFETY: a non-zero exit makes the postmaster start the worker again.
                unsafe { pg_sys::proc_exit(1) };
            }
        }
        let wait = tick(&database, &mut warned);
        if !BackgroundWorker::wait_latch(Some(wait.clamp(Duration::from_millis(100), MAX_WAIT))) {
            break;
        }
    }
    // A non-zero exit: the postmaster starts the worker again after bgw_restart_time, unless it
    // is shutting down itself. So a DBA's pg_terminate_backend() stops a run, not the schedule.
    log!("pg_retention worker: stopped");
    // SAFETY: ends this background worker process.
    unsafe { pg_sys::proc_exit(1) };
}

/// The worker's row of `retention.worker_state`.
struct State {
    last_slot: Option<NaiveDateTime>,
    run_requested: bool,
}

/// One look at the clock; runs the policies when due. Returns how long to sleep.
fn tick(database: &str, warned: &mut bool) -> Duration {
    // SAFETY: a plain read of shared state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return MAX_WAIT;
    }
    let installed = BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_retention')")
            .ok()
            .flatten()
            .unwrap_or(false)
    });
    if !installed {
        if !*warned {
            warning!("pg_retention worker: the extension is not installed in database \"{database}\"; run CREATE EXTENSION pg_retention there, or set pg_retention.database");
            *warned = true;
        }
        return MAX_WAIT;
    }
    if !settings::WORKER_ENABLED.get() {
        return MAX_WAIT;
    }
    let run_at = settings::text(&settings::RUN_AT).and_then(|t| schedule::parse_run_at(&t).ok()).unwrap_or_default();
    let timezone = settings::text(&settings::TIMEZONE).unwrap_or_else(|| "UTC".into());
    let (now, state) = BackgroundWorker::transaction(|| (local_now(&timezone), read_state()));
    match (schedule::due(now, run_at, state.last_slot), state.run_requested) {
        (Due::Baseline(slot), false) => BackgroundWorker::transaction(|| write_slot(slot)),
        (Due::Wait, false) => {}
        (due, _) => {
            BackgroundWorker::transaction(|| {
                Spi::run("UPDATE retention.worker_state SET run_requested_at = NULL, last_started_at = pg_catalog.now(), pid = pg_catalog.pg_backend_pid()")
                    .unwrap_or_else(|e| warning!("pg_retention worker: {e}"));
            });
            run_all();
            BackgroundWorker::transaction(|| {
                if let Due::Run(slot) | Due::Baseline(slot) = due {
                    write_slot(slot);
                }
                Spi::run("UPDATE retention.worker_state SET last_finished_at = pg_catalog.now()")
                    .unwrap_or_else(|e| warning!("pg_retention worker: {e}"));
            });
        }
    }
    let next = schedule::next_slot(now, run_at);
    BackgroundWorker::transaction(|| seconds_until(next, &timezone))
}

/// Runs every enabled policy, in name order. One failing policy is recorded (by the run
/// itself) and logged; the others still run.
fn run_all() {
    let names: Vec<String> = BackgroundWorker::transaction(|| {
        Spi::connect(|client| {
            client
                .select("SELECT name FROM retention.policies WHERE enabled ORDER BY name", None, &[])
                .map(|rows| rows.filter_map(|r| r.get::<String>(1).ok().flatten()).collect())
                .unwrap_or_default()
        })
    });
    for name in names {
        if shutting_down() {
            return;
        }
        // SAFETY: the transaction handling of a background worker: start, then commit or abort.
        unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
        }
        let commit = || unsafe {
            while pg_sys::ActiveSnapshotSet() {
                pg_sys::PopActiveSnapshot();
            }
            pg_sys::CommitTransactionCommand();
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
        };
        let ran = PgTryBuilder::new(|| {
            engine::run_batched(&name, None, &commit);
            true
        })
        .catch_others(|error| {
            let message = engine::error_message(&error);
            warning!("pg_retention worker: policy \"{name}\" failed: {message}");
            false
        })
        .execute();
        unsafe {
            if ran {
                pg_sys::CommitTransactionCommand();
            } else {
                pg_sys::AbortCurrentTransaction();
            }
        }
    }
}

fn local_now(timezone: &str) -> NaiveDateTime {
    let text = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.to_char(pg_catalog.timezone($1, pg_catalog.now()), 'YYYY-MM-DD HH24:MI:SS')",
        &[timezone.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S").unwrap_or_default()
}

fn seconds_until(local: NaiveDateTime, timezone: &str) -> Duration {
    let seconds = Spi::get_one_with_args::<f64>(
        "SELECT extract(epoch FROM pg_catalog.timezone($2, $1::pg_catalog.timestamp) - pg_catalog.now())::float8",
        &[local.format("%Y-%m-%d %H:%M:%S").to_string().into(), timezone.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(60.0);
    Duration::from_secs_f64(seconds.max(0.0))
}

fn read_state() -> State {
    Spi::run("INSERT INTO retention.worker_state DEFAULT VALUES ON CONFLICT DO NOTHING").unwrap_or_else(|e| warning!("pg_retention worker: {e}"));
    let (slot, requested) = Spi::get_two::<String, bool>(
        "SELECT pg_catalog.to_char(last_slot, 'YYYY-MM-DD HH24:MI:SS'), run_requested_at IS NOT NULL FROM retention.worker_state",
    )
    .unwrap_or((None, None));
    State {
        last_slot: slot.and_then(|s| NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S").ok()),
        run_requested: requested.unwrap_or(false),
    }
}

fn write_slot(slot: NaiveDateTime) {
    Spi::run_with_args(
        "UPDATE retention.worker_state SET last_slot = $1::pg_catalog.timestamp",
        &[slot.format("%Y-%m-%d %H:%M:%S").to_string().into()],
    )
    .unwrap_or_else(|e| warning!("pg_retention worker: {e}"));
}

/// The worker's next scheduled run, or None when it is off.
pub fn next_run() -> Option<pgrx::datum::TimestampWithTimeZone> {
    if !settings::WORKER_ENABLED.get() {
        return None;
    }
    let run_at = settings::text(&settings::RUN_AT).and_then(|t| schedule::parse_run_at(&t).ok())?;
    let timezone = settings::text(&settings::TIMEZONE).unwrap_or_else(|| "UTC".into());
    let next = schedule::next_slot(local_now(&timezone), run_at);
    Spi::get_one_with_args::<pgrx::datum::TimestampWithTimeZone>(
        "SELECT pg_catalog.timezone($2, $1::pg_catalog.timestamp)",
        &[next.format("%Y-%m-%d %H:%M:%S").to_string().into(), timezone.into()],
    )
    .ok()
    .flatten()
}

/// `retention.run_worker_now()`: asks the worker to run every enabled policy now.
pub fn request_run_now() -> i32 {
    // SAFETY: a plain read of shared state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "this server is a standby: the pg_retention worker runs only on the primary".into(),
            None,
        )
    }
    if !settings::WORKER_ENABLED.get() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_retention.worker_enabled is off".into(),
            Some("ALTER SYSTEM SET pg_retention.worker_enabled = on; SELECT pg_reload_conf();".into()),
        )
    }
    let database = settings::text(&settings::DATABASE).unwrap_or_default();
    let here = Spi::get_one::<String>("SELECT pg_catalog.current_database()::text").ok().flatten().unwrap_or_default();
    if here != database {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the pg_retention worker runs the policies of database \"{database}\", not \"{here}\""),
            Some("Call it there, or set pg_retention.database.".into()),
        )
    }
    let pid = Spi::get_one_with_args::<i32>(
        "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = $1 LIMIT 1",
        &[WORKER_TYPE.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the pg_retention worker is not running".into(),
            Some("It needs pg_retention in shared_preload_libraries (a restart), and a primary server.".into()),
        )
    });
    Spi::run(
        "INSERT INTO retention.worker_state DEFAULT VALUES ON CONFLICT DO NOTHING;
         UPDATE retention.worker_state SET run_requested_at = pg_catalog.now();",
    )
    .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string(), None));
    // The worker reads the request after this transaction commits; wake it when it does.
    // SAFETY: BackendPidGetProc returns the live PGPROC of that pid, or NULL.
    unsafe {
        pg_sys::RegisterXactCallback(Some(wake_worker_at_commit), pid as usize as *mut std::ffi::c_void);
    }
    pid
}

#[pg_guard]
unsafe extern "C-unwind" fn wake_worker_at_commit(event: pg_sys::XactEvent::Type, arg: *mut std::ffi::c_void) {
    if event == pg_sys::XactEvent::XACT_EVENT_COMMIT || event == pg_sys::XactEvent::XACT_EVENT_ABORT {
        pg_sys::UnregisterXactCallback(Some(wake_worker_at_commit), arg);
    }
    if event == pg_sys::XactEvent::XACT_EVENT_COMMIT {
        let proc = pg_sys::BackendPidGetProc(arg as usize as i32);
        if !proc.is_null() {
            pg_sys::SetLatch(&mut (*proc).procLatch);
        }
    }
}

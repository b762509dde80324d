//! The background worker: once a day at `pg_retention.run_at` (in `pg_retention.timezone`) it
//! runs every enabled policy of `pg_retention.database`, each as `run_batched` does, committing
//! per batch. Never during recovery. The slot it last ran is kept in `retention.worker_state`,
//! so a restart neither skips a night nor runs one twice.

use std::time::Duration;

use chrono::NaiveDateTime;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use crate::engine::{self, xact, Committer};
use crate::error::{self, raise, spi};
use crate::history::WORKER_TYPE;
use crate::schedule::{self, Due};
use crate::settings;

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
    let database = settings::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // Nothing a user can create in a schema is found by the worker's statements.
    BackgroundWorker::transaction(crate::rights::pin_session_search_path);
    log!("pg_retention worker: started for database \"{database}\"");
    let (mut warned, mut orphans_marked) = (false, false);
    while !shutting_down() {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what the postmaster's children do on SIGHUP, on the worker's main thread.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            if settings::database() != database {
                log!("pg_retention worker: pg_retention.database changed; restarting to connect to it");
                // SAFETY: a non-zero exit makes the postmaster start the worker again.
                unsafe { pg_sys::proc_exit(1) };
            }
        }
        let wait = tick(&database, &mut warned, &mut orphans_marked);
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

/// Runs one step of the worker in a transaction of its own. A step that fails is logged as
/// one WARNING naming it, and gives None: the worker then waits and looks again.
fn step<T>(what: &str, work: impl FnOnce() -> Result<T, String> + std::panic::UnwindSafe + std::panic::RefUnwindSafe) -> Option<T> {
    BackgroundWorker::transaction(work).map_err(|problem| warning!("pg_retention worker: {what}: {problem}")).ok()
}

/// The worker's row of `retention.worker_state`.
struct State {
    last_slot: Option<NaiveDateTime>,
    run_requested: bool,
}

/// One look at the clock; runs the policies when due. Returns how long to sleep.
fn tick(database: &str, warned: &mut bool, orphans_marked: &mut bool) -> Duration {
    // SAFETY: a plain read of shared state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return MAX_WAIT;
    }
    let Some(installed) = step("checking that the extension is installed", || {
        Spi::get_one::<bool>("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_retention')")
            .map(|installed| installed == Some(true))
            .map_err(|e| e.to_string())
    }) else {
        return MAX_WAIT;
    };
    if installed && !*orphans_marked {
        step("marking runs whose session is gone", || {
            crate::history::store::History::open().mark_orphans_interrupted();
            Ok(())
        });
        *orphans_marked = true;
    }
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
    let Some(run_at) = settings::run_at() else {
        warning!("pg_retention worker: pg_retention.run_at is not set; nothing is scheduled");
        return MAX_WAIT;
    };
    let timezone = settings::timezone();
    let Some((now, state)) = step("reading the schedule", || Ok((local_now(&timezone)?, read_state()?))) else {
        return MAX_WAIT;
    };
    match (schedule::due(now, run_at, state.last_slot), state.run_requested) {
        (Due::Baseline(slot), false) => {
            step("recording the first slot", || write_slot(slot));
        }
        (Due::Wait, false) => {}
        (due, _) => {
            let started = step("recording the start of a run", || {
                sql_step("UPDATE retention.worker_state SET run_requested_at = NULL, last_started_at = pg_catalog.now(), pid = pg_catalog.pg_backend_pid()")
            });
            if started.is_none() {
                return MAX_WAIT;
            }
            run_all();
            step("recording the end of a run", || {
                if let Due::Run(slot) | Due::Baseline(slot) = due {
                    write_slot(slot)?;
                }
                sql_step("UPDATE retention.worker_state SET last_finished_at = pg_catalog.now()")
            });
        }
    }
    let next = schedule::next_slot(now, run_at);
    step("computing the next run", || seconds_until(next, &timezone)).unwrap_or(MAX_WAIT)
}

fn sql_step(sql: &str) -> Result<(), String> {
    Spi::run(sql).map_err(|e| e.to_string())
}

/// Runs every enabled policy, in name order. One failing policy is recorded (by the run
/// itself) and logged; the others still run.
fn run_all() {
    let Some(names) = step("listing the enabled policies", || {
        Spi::connect(|client| {
            let rows = client.select("SELECT name FROM retention.policies WHERE enabled ORDER BY name", None, &[])?;
            rows.map(|row| row.get::<String>(1).map(Option::unwrap_or_default)).collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e: pgrx::spi::Error| e.to_string())
    }) else {
        return;
    };
    for name in names {
        if shutting_down() {
            return;
        }
        let ran = xact::in_worker_transactions(|commit| engine::run(&name, None, &Committer::per_batch(commit)));
        if let Err(error) = ran {
            warning!("pg_retention worker: policy \"{name}\" failed: {}", error::message(&error));
        }
    }
}

fn local_now(timezone: &str) -> Result<NaiveDateTime, String> {
    let text = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.to_char(pg_catalog.timezone($1, pg_catalog.now()), 'YYYY-MM-DD HH24:MI:SS')",
        &[timezone.into()],
    )
    .map_err(|e| e.to_string())?
    .ok_or("no local time")?;
    NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S").map_err(|e| format!("reading the local time {text:?}: {e}"))
}

fn seconds_until(local: NaiveDateTime, timezone: &str) -> Result<Duration, String> {
    let seconds = Spi::get_one_with_args::<f64>(
        "SELECT extract(epoch FROM pg_catalog.timezone($2, $1::pg_catalog.timestamp) OPERATOR(pg_catalog.-) pg_catalog.now())::pg_catalog.float8",
        &[local.format("%Y-%m-%d %H:%M:%S").to_string().into(), timezone.into()],
    )
    .map_err(|e| e.to_string())?
    .ok_or("no time until the next run")?;
    Ok(Duration::from_secs_f64(seconds.clamp(0.0, MAX_WAIT.as_secs_f64())))
}

fn read_state() -> Result<State, String> {
    sql_step("INSERT INTO retention.worker_state DEFAULT VALUES ON CONFLICT DO NOTHING")?;
    let (slot, requested) = Spi::get_two::<String, bool>(
        "SELECT pg_catalog.to_char(last_slot, 'YYYY-MM-DD HH24:MI:SS'), run_requested_at IS NOT NULL FROM retention.worker_state",
    )
    .map_err(|e| e.to_string())?;
    let last_slot = match slot {
        Some(text) => Some(NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S").map_err(|e| format!("reading last_slot {text:?}: {e}"))?),
        None => None,
    };
    Ok(State { last_slot, run_requested: requested == Some(true) })
}

fn write_slot(slot: NaiveDateTime) -> Result<(), String> {
    Spi::run_with_args(
        "UPDATE retention.worker_state SET last_slot = $1::pg_catalog.timestamp",
        &[slot.format("%Y-%m-%d %H:%M:%S").to_string().into()],
    )
    .map_err(|e| e.to_string())
}

/// The worker's next scheduled run, or None when it is off.
pub fn next_run() -> Option<pgrx::datum::TimestampWithTimeZone> {
    if !settings::WORKER_ENABLED.get() {
        return None;
    }
    let run_at = settings::run_at()?;
    let timezone = settings::timezone();
    let now = local_now(&timezone).unwrap_or_else(|problem| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, problem, None));
    let next = schedule::next_slot(now, run_at);
    spi(Spi::get_one_with_args::<pgrx::datum::TimestampWithTimeZone>(
        "SELECT pg_catalog.timezone($2, $1::pg_catalog.timestamp)",
        &[next.format("%Y-%m-%d %H:%M:%S").to_string().into(), timezone.into()],
    ))
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
    let database = settings::database();
    let here = spi(Spi::get_one::<String>("SELECT pg_catalog.current_database()::text")).unwrap_or_default();
    if here != database {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the pg_retention worker runs the policies of database \"{database}\", not \"{here}\""),
            Some("Call it there, or set pg_retention.database.".into()),
        )
    }
    // The worker's row and its bookkeeping table are the extension's: looked up and written with
    // its owner's rights, so an operator needs only EXECUTE on this function.
    let pid = crate::rights::as_extension_owner(|| {
        spi(Spi::get_one_with_args::<i32>(
            "SELECT (SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type OPERATOR(pg_catalog.=) $1 LIMIT 1)",
            &[WORKER_TYPE.into()],
        ))
    })
    .unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the pg_retention worker is not running".into(),
            Some("It needs pg_retention in shared_preload_libraries (a restart), and a primary server.".into()),
        )
    });
    crate::rights::as_extension_owner(|| {
        spi(Spi::run(
            "INSERT INTO retention.worker_state DEFAULT VALUES ON CONFLICT DO NOTHING;
             UPDATE retention.worker_state SET run_requested_at = pg_catalog.now();",
        ))
    });
    // The worker reads the request after this transaction commits; wake it when it does.
    // SAFETY: registers a callback that stays valid for the life of the loaded library.
    unsafe {
        pg_sys::RegisterXactCallback(Some(wake_worker_at_commit), pid as usize as *mut std::ffi::c_void);
    }
    pid
}

/// # Safety
/// Called by Postgres at the end of the transaction that registered it; `arg` is the worker's pid.
#[pg_guard]
unsafe extern "C-unwind" fn wake_worker_at_commit(event: pg_sys::XactEvent::Type, arg: *mut std::ffi::c_void) {
    // SAFETY: unregistering the callback being called is allowed; BackendPidGetProc returns the
    // live PGPROC of that pid or NULL, and setting its latch is what latches are for.
    unsafe {
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
}

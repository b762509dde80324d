//! A database's worker: once a day at `pg_retention.run_at` (in `pg_retention.timezone`) it
//! runs every enabled policy of its database (of the `pg_retention.database` list), each as
//! `run_batched` does, committing per batch. Never during recovery. The launcher
//! (`launcher.rs`) starts it only when a pass is due or asked for; it makes one pass, leaves on
//! the board (`board.rs`) when the next is due, and exits: between runs it holds no slot. The
//! slot it last ran is kept in `retention.worker_state`, so a restart neither skips a night nor
//! runs one twice; `signals.rs` makes a SIGTERM stop it promptly.

pub(crate) mod board;
pub(crate) mod database_list;
mod launcher;
mod requests;
mod signals;

use std::time::Duration;

use chrono::NaiveDateTime;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

use crate::engine::xact::{self, shutdown_requested};
use crate::engine::{self, Committer};
use crate::error::{self, say, spi};
pub(crate) use crate::history::WORKER_TYPE;
use crate::schedule::{self, Due};
use crate::settings;
pub use requests::{next_run, request_run_now};
#[cfg(any(test, feature = "pg_test"))]
pub use requests::slot_instant;

/// When a pass could not read the schedule (a failed step): the next one, soon.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// When nothing can be scheduled here (the extension not installed, no `run_at`): the next
/// look, which costs a slot for a moment.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Registers the launcher, which starts the worker; only while `shared_preload_libraries`
/// is being processed.
pub fn register() {
    launcher::register();
}

/// The worker of one database, started by the launcher with that database's oid.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_retention_worker_main(arg: pg_sys::Datum) {
    signals::install();
    let database_oid = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database_oid), None);
    // Nothing a user can create in a schema is found by the worker's statements, and no
    // database setting changes what they mean (see `rights::pin_worker_session`).
    BackgroundWorker::transaction(crate::rights::pin_worker_session);
    let database = BackgroundWorker::transaction(|| spi(Spi::get_one::<String>("SELECT pg_catalog.current_database()::text"))).unwrap_or_default();
    say!(LOG, "pg_retention worker: started for database \"{database}\"");
    let wait = pass(&database, database_oid);
    if !shutdown_requested() {
        // SAFETY: reads the clock.
        let due = unsafe { pg_sys::GetCurrentTimestamp() }.saturating_add(wait.as_micros() as i64);
        board::report(database_oid, due);
    }
    // SAFETY: ends this background worker process; the launcher starts the next pass when due.
    unsafe { pg_sys::proc_exit(0) };
}

/// Whether the worker should stop after the policy it is in: off, or its database unlisted
/// (a reload during its pass).
fn told_to_stop(database: &str) -> bool {
    if BackgroundWorker::sighup_received() {
        // SAFETY: what the postmaster's children do on SIGHUP, on the worker's main thread.
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
    if !settings::WORKER_ENABLED.get() {
        say!(LOG, "pg_retention worker: pg_retention.worker_enabled is off; stopping");
        return true;
    }
    if !settings::databases().contains(&database.to_string()) {
        say!(LOG, "pg_retention worker: database \"{database}\" is no longer in pg_retention.database; stopping");
        return true;
    }
    false
}

/// Runs one step of the worker in a transaction of its own. A step that fails, by returning
/// an error or by raising one (a cancel that came while it ran, say), is logged as one WARNING
/// naming it, and gives None: the worker then waits and looks again, rather than exit.
fn step<T>(what: &str, work: impl FnOnce() -> Result<T, String>) -> Option<T> {
    let outcome = xact::in_worker_transactions(|_| xact::with_snapshot(work)).unwrap_or_else(|error| Err(error::message(&error)));
    outcome.map_err(|problem| say!(WARNING, "pg_retention worker: {what}: {problem}")).ok()
}

/// The worker's row of `retention.worker_state`.
struct State {
    last_slot: Option<NaiveDateTime>,
}

/// One pass: runs the policies when due or asked for. Returns how long until the next pass.
fn pass(database: &str, database_oid: pg_sys::Oid) -> Duration {
    // Taken first: a request this pass cannot serve must not start pass after pass.
    let asked = board::take_request(database_oid);
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
    if !installed {
        say!(WARNING, "pg_retention worker: the extension is not installed in database \"{database}\"; run CREATE EXTENSION pg_retention there, or set pg_retention.database");
        return IDLE_WAIT;
    }
    step("marking runs whose session is gone", || {
        crate::history::store::History::open().mark_orphans_interrupted();
        Ok(())
    });
    if !settings::WORKER_ENABLED.get() {
        return IDLE_WAIT;
    }
    let Some(run_at) = settings::run_at() else {
        say!(WARNING, "pg_retention worker: pg_retention.run_at is not set; nothing is scheduled");
        return IDLE_WAIT;
    };
    let timezone = settings::timezone();
    let Some((now, state)) = step("reading the schedule", || Ok((local_now(&timezone)?, read_state()?))) else {
        return MAX_WAIT;
    };
    match (schedule::due(now, run_at, state.last_slot), asked) {
        (Due::Baseline(slot), false) => {
            step("recording the first slot", || write_slot(slot));
        }
        (Due::Wait, false) => {}
        (due, _) => {
            let started = step("recording the start of a run", || {
                // The requests committed so far are answered by this run (`retention.run_requests`
                // says who asked; the board is what asks).
                sql_step(
                    "DELETE FROM retention.run_requests;
                     UPDATE retention.worker_state SET last_started_at = pg_catalog.now(), pid = pg_catalog.pg_backend_pid()",
                )
            });
            if started.is_none() {
                return MAX_WAIT;
            }
            run_all(database);
            step("recording the end of a run", || {
                if let Due::Run(slot) | Due::Baseline(slot) = due {
                    write_slot(slot)?;
                }
                sql_step("DELETE FROM retention.run_requests; UPDATE retention.worker_state SET last_finished_at = pg_catalog.now()")
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
fn run_all(database: &str) {
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
        if shutdown_requested() || told_to_stop(database) {
            return;
        }
        let ran = signals::during_run(|| {
            xact::in_worker_transactions(|commit| {
                set_lock_timeout();
                engine::run(&name, None, &Committer::per_batch(commit))
            })
        });
        match ran {
            Err(_) if shutdown_requested() => say!(LOG, "pg_retention worker: policy \"{name}\" stopped by a shutdown request"),
            Err(error) => say!(WARNING, "pg_retention worker: policy \"{name}\" failed: {}", error::message(&error)),
            Ok(_) => {}
        }
    }
}

/// The worker's batches wait at most `pg_retention.worker_lock_timeout` for a row an
/// application holds locked, so an idle-in-transaction session cannot stall them forever.
fn set_lock_timeout() {
    xact::with_snapshot(|| {
        spi(Spi::run_with_args(
            "SELECT pg_catalog.set_config('lock_timeout', $1, false)",
            &[format!("{}ms", settings::WORKER_LOCK_TIMEOUT_MS.get()).into()],
        ))
    });
}

pub(crate) fn local_now(timezone: &str) -> Result<NaiveDateTime, String> {
    let text = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.to_char(pg_catalog.timezone($1, pg_catalog.now()), 'YYYY-MM-DD HH24:MI:SS')",
        &[timezone.into()],
    )
    .map_err(|e| e.to_string())?
    .ok_or("no local time")?;
    NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S").map_err(|e| format!("reading the local time {text:?}: {e}"))
}

/// The instant the worker runs a slot: the first at which the wall clock of `timezone` reads
/// the slot or later, as the worker's own check (`schedule::due`) sees it. Not Postgres'
/// reading of a local time: for a time skipped by a daylight-saving change (02:30 on a spring
/// night) that lands 30 or 60 minutes late, and for a time that occurs twice it picks the
/// second. Zones change offset on whole minutes, so a minute's scan around it is exact.
pub(crate) const SLOT_INSTANT: &str = "
    SELECT pg_catalog.min(t) FROM pg_catalog.generate_series(
               pg_catalog.timezone($2, $1::pg_catalog.timestamp) OPERATOR(pg_catalog.-) interval '3 hours',
               pg_catalog.timezone($2, $1::pg_catalog.timestamp) OPERATOR(pg_catalog.+) interval '3 hours',
               interval '1 minute') AS t
     WHERE pg_catalog.timezone($2, t) OPERATOR(pg_catalog.>=) $1::pg_catalog.timestamp";

fn seconds_until(local: NaiveDateTime, timezone: &str) -> Result<Duration, String> {
    let seconds = Spi::get_one_with_args::<f64>(
        &format!("SELECT extract(epoch FROM ({SLOT_INSTANT}) OPERATOR(pg_catalog.-) pg_catalog.now())::pg_catalog.float8"),
        &[local.format("%Y-%m-%d %H:%M:%S").to_string().into(), timezone.into()],
    )
    .map_err(|e| e.to_string())?
    .ok_or("no time until the next run")?;
    // A slot is at most a day and a daylight-saving hour away.
    Ok(Duration::from_secs_f64(seconds.clamp(0.0, 2.0 * 86_400.0)))
}

fn read_state() -> Result<State, String> {
    sql_step("INSERT INTO retention.worker_state DEFAULT VALUES ON CONFLICT DO NOTHING")?;
    let slot = Spi::get_one::<String>("SELECT pg_catalog.to_char(last_slot, 'YYYY-MM-DD HH24:MI:SS') FROM retention.worker_state")
        .map_err(|e| e.to_string())?;
    let last_slot = match slot {
        Some(text) => Some(NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S").map_err(|e| format!("reading last_slot {text:?}: {e}"))?),
        None => None,
    };
    Ok(State { last_slot })
}

fn write_slot(slot: NaiveDateTime) -> Result<(), String> {
    Spi::run_with_args(
        "UPDATE retention.worker_state SET last_slot = $1::pg_catalog.timestamp",
        &[slot.format("%Y-%m-%d %H:%M:%S").to_string().into()],
    )
    .map_err(|e| e.to_string())
}

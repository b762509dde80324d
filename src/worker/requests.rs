//! What a session asks of the worker: when it runs next, and to run now.

use pgrx::prelude::*;

use super::launcher::LAUNCHER_TYPE;
use super::{local_now, SLOT_INSTANT, WORKER_TYPE};
use crate::error::{raise, say, spi};
use crate::schedule;
use crate::settings;

/// This database's name, and whether the worker serves it.
fn this_database() -> (String, bool) {
    let here = spi(Spi::get_one::<String>("SELECT pg_catalog.current_database()::text")).unwrap_or_default();
    let listed = settings::databases().contains(&here);
    (here, listed)
}

/// The worker's next scheduled run in this database, or None when it is off or does not
/// serve this database.
pub fn next_run() -> Option<pgrx::datum::TimestampWithTimeZone> {
    if !settings::WORKER_ENABLED.get() || !this_database().1 {
        return None;
    }
    let run_at = settings::run_at()?;
    let timezone = settings::timezone();
    let now = local_now(&timezone).unwrap_or_else(|problem| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, problem, None));
    slot_instant(schedule::next_slot(now, run_at), &timezone)
}

/// When the worker runs the slot `local` of `timezone` (see `SLOT_INSTANT`).
pub fn slot_instant(local: chrono::NaiveDateTime, timezone: &str) -> Option<pgrx::datum::TimestampWithTimeZone> {
    spi(Spi::get_one_with_args::<pgrx::datum::TimestampWithTimeZone>(
        SLOT_INSTANT,
        &[local.format("%Y-%m-%d %H:%M:%S").to_string().into(), timezone.into()],
    ))
}

/// `retention.run_worker_now()`: asks the worker to run every enabled policy now. Returns its
/// pid, or NULL while the launcher is starting it (it runs them once started).
pub fn request_run_now() -> Option<i32> {
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
    let (here, listed) = this_database();
    if !listed {
        let with_here = format!("{}, {here}", settings::databases().join(", ")).replace('\'', "''");
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("database \"{here}\" is not in pg_retention.database, the databases whose policies the pg_retention worker runs"),
            Some(format!("Add it: ALTER SYSTEM SET pg_retention.database = '{with_here}'; SELECT pg_reload_conf();")),
        )
    }
    // The worker's row and its bookkeeping table are the extension's: looked up and written with
    // its owner's rights, so an operator needs only EXECUTE on this function. This database's
    // worker; the launcher has no database.
    let process = |backend_type: &str, in_this_database: bool| {
        crate::rights::as_extension_owner(|| {
            spi(Spi::get_one_with_args::<i32>(
                "SELECT (SELECT pid FROM pg_catalog.pg_stat_activity
                          WHERE backend_type OPERATOR(pg_catalog.=) $1
                            AND (NOT $2 OR datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) LIMIT 1)",
                &[backend_type.into(), in_this_database.into()],
            ))
        })
    };
    let pid = process(WORKER_TYPE, true);
    if pid.is_none() && process(LAUNCHER_TYPE, false).is_none() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the pg_retention worker is not running".into(),
            Some("It needs pg_retention in shared_preload_libraries (a restart), and a primary server.".into()),
        )
    }
    // An insert, which the worker sees once it commits: left open in a transaction, it locks
    // nothing the worker reads or writes.
    let caller = crate::history::store::this_backend().username;
    crate::rights::as_extension_owner(|| {
        spi(Spi::run_with_args("INSERT INTO retention.run_requests (requested_by) VALUES ($1)", &[caller.as_str().into()]))
    });
    let Some(pid) = pid else {
        let (in_use, max) = background_worker_slots();
        if in_use >= max {
            raise(
                PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                format!(
                    "the pg_retention worker of database \"{here}\" is not running and cannot start: all {max} background worker slots (max_worker_processes) are in use"
                ),
                Some("Raise max_worker_processes (a restart), or list fewer databases in pg_retention.database. Nothing was requested.".into()),
            )
        }
        // The launcher is starting it (just enabled, or restarting): it finds the request.
        say!(NOTICE, "the pg_retention worker is starting; it runs the policies as soon as it has started");
        return None;
    };
    // The worker reads the request after this transaction commits; wake it when it does.
    // SAFETY: registers a callback that stays valid for the life of the loaded library.
    unsafe {
        pg_sys::RegisterXactCallback(Some(wake_worker_at_commit), pid as usize as *mut std::ffi::c_void);
    }
    Some(pid)
}

/// Background worker slots in use (every process in `pg_stat_activity` that is not one of the
/// server's own kinds), and
/// `max_worker_processes`.
fn background_worker_slots() -> (i64, i64) {
    let (in_use, max) = crate::rights::as_extension_owner(|| {
        spi(Spi::get_two_with_args::<i64, i64>(
            "SELECT pg_catalog.count(*) FILTER (WHERE backend_type OPERATOR(pg_catalog.<>) ALL ($1)),
                    pg_catalog.current_setting('max_worker_processes')::pg_catalog.int8
               FROM pg_catalog.pg_stat_activity",
            &[super::server_processes::SERVER_PROCESS_TYPES.to_vec().into()],
        ))
    });
    (in_use.unwrap_or(0), max.unwrap_or(i64::MAX))
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

//! What a session asks of the worker: when it runs next, and to run now.

use pgrx::prelude::*;

use super::board::{self, Answer};
use super::{local_now, SLOT_INSTANT};
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

/// `retention.run_worker_now()`: asks the worker to run every enabled policy now. The launcher
/// starts this database's worker for it and answers within moments: the worker's pid; or NULL
/// with a NOTICE when it waits its turn for a background-worker slot behind other databases,
/// or a WARNING naming the setting to raise when no slot is free at all. Either way the
/// request stands: the worker runs the policies once it starts.
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
    let not_running = || -> ! {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the pg_retention worker is not running".into(),
            Some("It needs pg_retention in shared_preload_libraries (a restart), and a primary server.".into()),
        )
    };
    if !crate::shmem::preloaded() {
        not_running()
    }
    // Who asked, for the record: written with the extension owner's rights, so an operator
    // needs only EXECUTE on this function. An insert, which locks nothing a worker reads.
    let caller = crate::history::store::this_backend().username;
    crate::rights::as_extension_owner(|| {
        spi(Spi::run_with_args("INSERT INTO retention.run_requests (requested_by) VALUES ($1)", &[caller.as_str().into()]))
    });
    // SAFETY: set once the backend has connected to its database.
    let database = unsafe { pg_sys::MyDatabaseId };
    let Some(asked) = board::request(database) else { not_running() };
    let deadline = std::time::Instant::now() + ANSWER_WAIT;
    let answer = loop {
        if let Some(answer) = board::answer(database, asked) {
            break answer;
        }
        if std::time::Instant::now() >= deadline {
            say!(NOTICE, "the pg_retention launcher has not answered yet; the request stands, and the worker runs the policies once it starts");
            return None;
        }
        crate::engine::xact::pause(std::time::Duration::from_millis(20));
    };
    match answer {
        Answer::Started(pid) => Some(pid),
        Answer::Queued(ahead) => {
            say!(
                NOTICE,
                "the pg_retention worker of database \"{here}\" waits for a background worker slot behind {ahead} other database(s); it runs the policies when it starts"
            );
            None
        }
        Answer::NoSlot => {
            let max = spi(Spi::get_one::<String>("SELECT pg_catalog.current_setting('max_worker_processes')")).unwrap_or_default();
            crate::error::report(
                PgLogLevel::WARNING,
                PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                format!("no background worker slot is free for the pg_retention worker of database \"{here}\": all {max} (max_worker_processes) are in use; it runs the policies when one frees"),
                Some("Raise max_worker_processes (a restart), or list fewer databases in pg_retention.database.".into()),
            );
            None
        }
    }
}

/// How long `run_worker_now()` waits for the launcher's answer (it takes milliseconds).
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

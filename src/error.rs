//! How pg_retention reports errors: one ERROR path with an optional hint, and the text of an
//! error caught on its way up (to record it before it goes on).

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

/// Reports an ERROR with an optional hint. Never returns.
pub fn raise(code: PgSqlErrorCode, message: String, hint: Option<String>) -> ! {
    error_report(code, message, hint).report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

fn error_report(code: PgSqlErrorCode, message: String, hint: Option<String>) -> ErrorReport {
    let report = ErrorReport::new(code, message, "pg_retention");
    match hint {
        Some(hint) => report.set_hint(hint),
        None => report,
    }
}

/// Raises `invalid_parameter_value`: the commonest mistake a user can make.
pub fn invalid(message: String, hint: Option<&str>) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, hint.map(str::to_string))
}

/// Unwraps an SPI result; a failure here is a bug of ours, not something a user typed.
pub fn spi<T>(result: SpiResult<T>) -> T {
    result.unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("pg_retention: SPI failed: {e}"), None))
}

/// The primary message of a caught error.
pub fn message(error: &CaughtError) -> String {
    match error {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) | CaughtError::RustPanic { ereport: report, .. } => {
            report.message().to_string()
        }
    }
}

/// The SQLSTATE of a caught error.
pub fn code(error: &CaughtError) -> PgSqlErrorCode {
    match error {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) | CaughtError::RustPanic { ereport: report, .. } => {
            report.sql_error_code()
        }
    }
}

/// Whether an error must end the work it interrupted rather than be worked around: a cancel,
/// a shutdown, the server out of resources (classes 53, 57, 58) or an internal error (XX).
pub fn stops_work(error: &CaughtError) -> bool {
    let code = code(error);
    let class = sqlstate(code);
    matches!(code, PgSqlErrorCode::ERRCODE_QUERY_CANCELED | PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN | PgSqlErrorCode::ERRCODE_CRASH_SHUTDOWN)
        || ["53", "57", "58", "XX"].contains(&&class[..2])
}

/// The five-character SQLSTATE of an error code, e.g. `55P03`.
pub fn sqlstate(code: PgSqlErrorCode) -> String {
    let packed = code as isize;
    (0..5).map(|i| char::from(b'0'.wrapping_add(((packed >> (6 * i)) & 0x3F) as u8))).collect()
}

/// Reports a message below ERROR (LOG, NOTICE, WARNING), with an optional SQLSTATE and hint,
/// with interrupts held. pgrx hands a report to Postgres' `errfinish`, which checks for
/// interrupts outside pgrx's error guard: a cancel pending then would jump straight past the
/// Rust frames (out of a run's error handling, and out of a background worker's catch, which
/// ends the worker). Held, the cancel waits for the next check, which is guarded.
pub fn report(level: PgLogLevel, code: PgSqlErrorCode, message: String, hint: Option<String>) {
    let report = error_report(code, message, hint);
    crate::engine::xact::with_interrupts_held(|| report.report(level));
}

/// `say!(LOG, "...", args)`: `log!`, `notice!` or `warning!` through `report`.
macro_rules! say {
    ($level:ident, $($arg:tt)*) => {
        $crate::error::report(
            pgrx::prelude::PgLogLevel::$level,
            pgrx::prelude::PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!($($arg)*),
            None,
        )
    };
}
pub(crate) use say;

//! The loaded library and the extension's SQL objects in a database must be of one version:
//! after a package upgrade, a database still on an older release's SQL gets one clear error
//! from every entry point, saying what to run, rather than a missing column from deep inside.

use pgrx::prelude::*;

use crate::error::{raise, spi};

/// Raises an error unless this database's pg_retention is at the library's version. Not while
/// `CREATE` or `ALTER EXTENSION` runs a script (its statements reach the trigger mid-upgrade).
pub fn check_installed_sql() {
    // SAFETY: a flag of this backend, set while an extension script runs.
    if unsafe { pg_sys::creating_extension } {
        return;
    }
    let installed = spi(Spi::get_one::<String>(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_retention'",
    ));
    let library = env!("CARGO_PKG_VERSION");
    if let Some(installed) = installed.filter(|v| v != library) {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("pg_retention's SQL objects in this database are at version {installed}, but the loaded library is version {library}"),
            Some("Run ALTER EXTENSION pg_retention UPDATE; in this database (as a superuser).".into()),
        )
    }
}

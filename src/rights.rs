//! Whose rights a statement uses. On a policy's table: the table owner's, as PostgreSQL's own
//! maintenance (VACUUM, ANALYZE, REINDEX) does it, so triggers, row-level security and
//! privileges apply as they would to the owner and no role gains a right through a run. On the
//! extension's own tables (the run history): the extension owner's, so that the caller needs
//! no right to write them. Either way in a security-restricted operation, in the fixed settings
//! below, whatever the session (or `ALTER DATABASE ... SET`) chose.

use std::ffi::CStr;

use pgrx::prelude::*;

/// The search path of every statement on a target table: nothing a user can create is found.
const PINNED_SEARCH_PATH: &CStr = c"pg_catalog, pg_temp";

/// The settings every statement of a run (and a preview, and a hold's parse) is read and run
/// in, so that a session's or a database's settings cannot change what a hold's condition, a
/// literal or a comparison means: how string literals read backslashes, the zone and style of
/// dates and intervals, whether `x = NULL` means `x IS NULL`, how arrays read `NULL`, the
/// text-search configuration of one-argument calls.
pub const FIXED_SETTINGS: [(&CStr, &CStr); 10] = [
    (c"search_path", PINNED_SEARCH_PATH),
    (c"standard_conforming_strings", c"on"),
    (c"TimeZone", c"UTC"),
    (c"DateStyle", c"ISO, YMD"),
    (c"IntervalStyle", c"postgres"),
    (c"transform_null_equals", c"off"),
    (c"array_nulls", c"on"),
    (c"default_text_search_config", c"pg_catalog.simple"),
    // A caller's `row_security = off` would make a run on a hidden table fail, not see more.
    (c"row_security", c"on"),
    // `retention_rls.run_sees_all()` answers false in a parallel worker (the flag is this
    // backend's): a run's scan split across workers would miss the rows hiding keeps from others.
    (c"max_parallel_workers_per_gather", c"0"),
];

/// Runs `work` in `FIXED_SETTINGS`, restored after it (or by the abort of an error).
pub fn in_fixed_settings<R>(work: impl FnOnce() -> R) -> R {
    crate::engine::xact::with_settings(&FIXED_SETTINGS, work)
}

/// Whether pg_retention's own code is acting on a policy's table now: what
/// `retention_rls.run_sees_all()` answers, so that a run (or a preview) sees the rows `hide_expired`
/// hides from everyone else. Only `as_table_owner` sets it; no setting or role can.
static ACTING_ON_TABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn acting_on_table() -> bool {
    ACTING_ON_TABLE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs `work` as `owner` of a policy's table.
pub fn as_table_owner<R>(owner: pg_sys::Oid, work: impl FnOnce() -> R) -> R {
    /// Puts the flag back as it was, on return or on an error's unwinding.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTING_ON_TABLE.store(self.0, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _restore = Restore(ACTING_ON_TABLE.swap(true, std::sync::atomic::Ordering::Relaxed));
    as_role(owner, work)
}

/// Runs `work` as the role that owns the extension: for the extension's own bookkeeping.
pub fn as_extension_owner<R>(work: impl FnOnce() -> R) -> R {
    as_role(extension_owner(), work)
}

/// The role that owns the extension in this database.
pub fn extension_owner() -> pg_sys::Oid {
    let owner = crate::error::spi(Spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_retention'",
    ));
    owner.unwrap_or_else(|| {
        crate::error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_retention is not installed in this database".into(),
            Some("CREATE EXTENSION pg_retention;".into()),
        )
    })
}

/// Runs `work` as `role`. If `work` raises an error, the (sub)transaction abort that follows
/// restores the caller's user, security context and `search_path`, as it does for VACUUM.
pub fn as_role<R>(role: pg_sys::Oid, work: impl FnOnce() -> R) -> R {
    let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads and sets this backend's current user and security context, as vacuum.c
    // does around each relation; undone below, or by abort on error.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(role, saved_context | pg_sys::SECURITY_RESTRICTED_OPERATION as i32);
    }
    // The fixed settings for `work` only, at a GUC nest level of its own.
    let result = in_fixed_settings(work);
    // SAFETY: restores the user and security context read above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    result
}

/// Pins the fixed settings for the rest of a background worker's session, and the two that
/// would stop or change every run a database owner's `ALTER DATABASE ... SET` could otherwise
/// give it: read-only transactions, and an isolation level other than the read committed each
/// batch is written for. (A `CALL` cannot do the same for its caller's session: a value
/// restored in a transaction that then aborts would not stay restored. Its statements qualify
/// every operator instead, and `as_role` fixes the settings around each.)
pub fn pin_worker_session() {
    let session = [(c"default_transaction_read_only", c"off"), (c"default_transaction_isolation", c"read committed")];
    for (name, value) in FIXED_SETTINGS.iter().chain(session.iter()) {
        crate::engine::xact::set_setting(name, value, pg_sys::GucAction::GUC_ACTION_SET);
    }
}

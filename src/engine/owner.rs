//! Whose rights a run uses on its table: the table owner's, as PostgreSQL's own maintenance
//! (VACUUM, ANALYZE, REINDEX) does it. Every statement that reads or changes a target table
//! runs as its owner, in a security-restricted operation, with `search_path` pinned to
//! `pg_catalog, pg_temp`: triggers, row-level security and privileges apply as they would to
//! the owner, and no role gains a right through a run.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;

/// The search path of every statement on a target table: nothing a user can create is found.
const PINNED_SEARCH_PATH: &CStr = c"pg_catalog, pg_temp";

/// Runs `work` as `owner`. If `work` raises an error, the (sub)transaction abort that follows
/// restores the caller's user, security context and `search_path`, as it does for VACUUM.
pub fn as_table_owner<R>(owner: pg_sys::Oid, work: impl FnOnce() -> R) -> R {
    let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads and sets this backend's current user and security context, as vacuum.c
    // does around each relation; restored below, or by transaction abort on error.
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(owner, saved_context | pg_sys::SECURITY_RESTRICTED_OPERATION as i32);
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            PINNED_SEARCH_PATH.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest_level
    };
    let result = work();
    // SAFETY: undoes exactly what was set above, in reverse order.
    unsafe {
        pg_sys::AtEOXact_GUC(false, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
    }
    result
}

/// Runs `work` with `search_path` pinned for the session, across the commits of a batched run
/// (a procedure that commits cannot take a `SET` clause), then restores the caller's value,
/// on error too.
pub fn with_pinned_search_path<R>(work: impl FnOnce() -> R) -> R {
    // SAFETY: GetConfigOption returns the setting's current value, copied before it changes.
    let saved = unsafe { CStr::from_ptr(pg_sys::GetConfigOption(c"search_path".as_ptr(), false, false)).to_owned() };
    set_session_search_path(PINNED_SEARCH_PATH);
    PgTryBuilder::new(std::panic::AssertUnwindSafe(work)).finally(|| set_session_search_path(&saved)).execute()
}

/// Pins `search_path` for the rest of the session: the background worker's.
pub fn pin_session_search_path() {
    set_session_search_path(PINNED_SEARCH_PATH);
}

fn set_session_search_path(value: &CStr) {
    let value: CString = value.to_owned();
    // SAFETY: a session-level SET of search_path, as `SET search_path` does; its check hook
    // only parses the list, so this is safe while an error is on its way up too.
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            0,
            false,
        );
    }
}

//! The per-policy lock that keeps two runs of one policy apart: an advisory lock whose first
//! key is `LOCK_CLASS` and second `hashtext(policy name)`, which needs no catalog lookup to
//! release, even if the policy is dropped mid-run.

use pgrx::prelude::*;

use crate::error::spi;

/// "RETE".
const LOCK_CLASS: i32 = 0x5245_5445;

/// Takes the policy's lock if it is free. `session` keeps it past commit (a batched run).
pub fn try_acquire(policy: &str, session: bool) -> bool {
    let sql = if session {
        "SELECT pg_catalog.pg_try_advisory_lock($1, pg_catalog.hashtext($2))"
    } else {
        "SELECT pg_catalog.pg_try_advisory_xact_lock($1, pg_catalog.hashtext($2))"
    };
    spi(Spi::get_one_with_args::<bool>(sql, &[LOCK_CLASS.into(), policy.into()])).unwrap_or(false)
}

/// The backend that holds the policy's lock, if any.
pub fn holder(policy: &str) -> Option<i32> {
    spi(Spi::get_one_with_args::<i32>(
        "SELECT (SELECT pid FROM pg_catalog.pg_locks
                  WHERE locktype OPERATOR(pg_catalog.=) 'advisory' AND granted AND objsubid OPERATOR(pg_catalog.=) 2
                    AND classid::pg_catalog.int8 OPERATOR(pg_catalog.=) $1
                    AND objid::pg_catalog.int8 OPERATOR(pg_catalog.=) (pg_catalog.hashtext($2)::pg_catalog.int8 OPERATOR(pg_catalog.&) 4294967295)
                  LIMIT 1)",
        &[i64::from(LOCK_CLASS).into(), policy.into()],
    ))
}

/// Releases a session lock taken by `try_acquire(policy, true)`.
pub fn release(policy: &str) {
    spi(Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_advisory_unlock($1, pg_catalog.hashtext($2))",
        &[LOCK_CLASS.into(), policy.into()],
    ));
}

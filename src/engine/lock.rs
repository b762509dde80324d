//! The per-policy lock that keeps two runs of one policy apart.
//!
//! A heavyweight lock on an object tag (database, the oid of `retention.policies`, the policy's
//! id), taken without waiting. No SQL command takes locks on such a tag (object locks are taken
//! by DDL on catalog objects, and `retention.policies` is no catalog), so no ordinary role can
//! hold it to make runs skip, as any role could with an advisory lock. It shows in `pg_locks` as
//! locktype `object` with that classid and objid. A batched run holds it as a session lock
//! across its commits; a top-level abort (an error, a cancel, a terminated worker) releases it,
//! as it releases VACUUM's session locks.

use pgrx::prelude::*;

use crate::error::spi;

/// A policy's lock, held by this backend.
pub struct PolicyLock {
    tag: pg_sys::LOCKTAG,
    session: bool,
}

/// The oid of `retention.policies`, looked up without privilege checks (the caller may have no
/// USAGE on the schema).
fn policies_oid() -> pg_sys::Oid {
    // SAFETY: syscache lookups by name; InvalidOid when missing (missing_ok).
    unsafe { pg_sys::get_relname_relid(c"policies".as_ptr(), pg_sys::get_namespace_oid(c"retention".as_ptr(), true)) }
}

fn tag(policy_id: i32) -> pg_sys::LOCKTAG {
    let catalog = policies_oid();
    pg_sys::LOCKTAG {
        // SAFETY: MyDatabaseId is set once this backend is connected and never changes.
        locktag_field1: u32::from(unsafe { pg_sys::MyDatabaseId }),
        locktag_field2: u32::from(catalog),
        locktag_field3: policy_id as u32,
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

/// Takes the policy's lock if it is free. `session` keeps it past commit (a batched run);
/// otherwise it ends with the transaction.
pub fn try_acquire(policy_id: i32, session: bool) -> Option<PolicyLock> {
    let tag = tag(policy_id);
    // SAFETY: a lock request on a fully built tag, without waiting; released by `release` or
    // by the end of the transaction (or, for a session lock, a top-level abort).
    let result = unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, session, true) };
    (result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL).then_some(PolicyLock { tag, session })
}

impl PolicyLock {
    /// Releases a batched run's session lock; a transaction's lock goes with its transaction.
    /// Checks for no interrupt, so it works while a cancel is pending.
    pub fn release(self) {
        if self.session {
            // SAFETY: releases the lock this value stands for, taken by this backend.
            unsafe { pg_sys::LockRelease(&self.tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, true) };
        }
    }
}

/// The backend that holds the policy's lock, if any.
pub fn holder(policy_id: i32) -> Option<i32> {
    spi(Spi::get_one_with_args::<i32>(
        "SELECT (SELECT pid FROM pg_catalog.pg_locks
                  WHERE locktype OPERATOR(pg_catalog.=) 'object' AND granted
                    AND database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                                          WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                    AND classid OPERATOR(pg_catalog.=) $2
                    AND objid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND objsubid OPERATOR(pg_catalog.=) 0
                  LIMIT 1)",
        &[i64::from(policy_id).into(), policies_oid().into()],
    ))
}

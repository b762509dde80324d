//! Dropping the partitions a batched run detached. The run notes each partition it detaches
//! in `retention.detached_partitions` in the transaction that detaches it (`kept` for
//! `expired_partitions = 'detach'`), and once it has counted the partition's rows marks the
//! note ready (or, for a kept one, forgets it). After the run's last commit it starts a
//! short-lived background worker, the dropper, which drops the ready ones one transaction each,
//! as each table's owner, forgetting each note with its drop. A note outlives a crash: the next
//! run of the same policy (it holds the policy's lock, so no run of it is still counting)
//! first counts what its predecessor detached but never counted, as its own rows, then drops
//! what is left; any run drops ready notes left over. This file owns every statement on that
//! table.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use serde_json::{json, Value};

use crate::engine::xact::{in_subtransaction, with_settings};
use crate::error::{self, say, spi};
use crate::rights::{as_extension_owner, as_table_owner, extension_owner};
use crate::statement::{execute, one};

use super::{lock_timeout, QUALIFIED_NAME};

/// Notes a partition run `run_id` has just detached (to drop, or `kept` as a table of its own
/// under `name`), in the same transaction.
pub fn remember(relid: pg_sys::Oid, name: &str, policy: &str, run_id: Option<i64>, kept: bool) {
    as_extension_owner(|| {
        execute("INSERT INTO retention.detached_partitions (relid, name, policy, run_id, kept) VALUES ($1, $2, $3, $4, $5)", || {
            vec![relid.into(), name.into(), policy.into(), run_id.into(), kept.into()]
        })
    });
}

/// A detached partition's rows are counted: the dropper may drop it, or a kept one is forgotten.
pub fn counted(relid: pg_sys::Oid) {
    as_extension_owner(|| {
        execute(
            "WITH forgotten AS (DELETE FROM retention.detached_partitions WHERE relid OPERATOR(pg_catalog.=) $1 AND kept)
             UPDATE retention.detached_partitions SET ready = true WHERE relid OPERATOR(pg_catalog.=) $1 AND NOT kept",
            || vec![relid.into()],
        )
    });
}

/// At the start of a run of `policy`, with its lock: the partitions an earlier run of it
/// detached but did not live to count (a crash between the detach and the count commits).
/// Counted now, as each table's owner, and returned as this run's partition outcomes: their
/// rows left the table when that run detached them, and no run has counted them.
pub fn count_uncounted(policy: &str) -> Vec<(i64, Value)> {
    let notes = as_extension_owner(|| {
        spi(Spi::connect(|client| -> SpiResult<Vec<(pg_sys::Oid, String, bool, Option<i64>, Option<pg_sys::Oid>)>> {
            client
                .select(
                    &format!(
                        "SELECT d.relid, d.name, d.kept, d.run_id,
                                CASE WHEN NOT c.relispartition AND {QUALIFIED_NAME} OPERATOR(pg_catalog.=) d.name THEN c.relowner END
                           FROM retention.detached_partitions d
                           LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.relid
                           LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                          WHERE d.policy OPERATOR(pg_catalog.=) $1 AND NOT d.ready ORDER BY d.detached_at"
                    ),
                    None,
                    &[policy.into()],
                )?
                .map(|row| Ok((row.get(1)?.unwrap_or(pg_sys::InvalidOid), row.get(2)?.unwrap_or_default(), row.get(3)?.unwrap_or(false), row.get(4)?, row.get(5)?)))
                .collect()
        }))
    });
    notes
        .into_iter()
        .map(|(relid, name, kept, run_id, owner)| {
            let rows = owner.map(|owner| as_table_owner(owner, || one::<i64>(&format!("SELECT pg_catalog.count(*) FROM ONLY {name}"), Vec::new).unwrap_or(0)));
            counted(relid);
            let outcome = json!({
                "partition": name, "action": if kept { "detached" } else { "dropped" }, "rows": rows.unwrap_or(0),
                "counted": if rows.is_some() { "exact" } else { "table gone" }, "detached_by_run": run_id,
            });
            (rows.unwrap_or(0), outcome)
        })
        .collect()
}

/// After the last commit of a run that counted detached partitions: starts the dropper for this
/// database. With no background worker slot free, drops them here, in the transaction that follows.
pub fn start() {
    // SAFETY: a plain read of this backend's database.
    let database = u32::from(unsafe { pg_sys::MyDatabaseId });
    let user = u32::from(extension_owner());
    let started = BackgroundWorkerBuilder::new("pg_retention dropper")
        .set_type("pg_retention dropper")
        .set_library("pg_retention")
        .set_function("pg_retention_drop_detached")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_extra(&format!("{database} {user}"))
        .load_dynamic();
    if started.is_err() {
        say!(LOG, "pg_retention: no background worker slot for the dropper; the run drops its detached partitions itself");
        while drop_one(None) {}
    }
}

/// At the start of a run of `policy`: drops what earlier runs left detached (a crash, or a
/// dropper that could not finish): this policy's notes, and any ready one.
pub fn drop_leftovers(policy: &str) {
    let any = as_extension_owner(|| spi(Spi::get_one::<bool>("SELECT EXISTS (SELECT FROM retention.detached_partitions)")));
    if any == Some(true) {
        while drop_one(Some(policy)) {}
    }
}

/// Drops the oldest ready partition (or one of `policy`'s) no one else is dropping, and
/// forgets its note. A table
/// that is gone, renamed, or a partition again, is not dropped: only its note goes. Returns
/// whether there may be more; false also when a drop failed (logged; the note stays for the
/// next run).
fn drop_one(policy: Option<&str>) -> bool {
    let next = as_extension_owner(|| {
        spi(Spi::connect(|client| -> SpiResult<Option<(pg_sys::Oid, String, Option<pg_sys::Oid>)>> {
            let rows = client.select(
                &format!(
                    "SELECT d.relid, d.name,
                            CASE WHEN NOT c.relispartition AND {QUALIFIED_NAME} OPERATOR(pg_catalog.=) d.name THEN c.relowner END
                       FROM retention.detached_partitions d
                       LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.relid
                       LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                      WHERE NOT d.kept AND (d.ready OR d.policy OPERATOR(pg_catalog.=) $1)
                      ORDER BY d.detached_at LIMIT 1 FOR UPDATE OF d SKIP LOCKED"
                ),
                Some(1),
                &[policy.into()],
            )?;
            match rows.into_iter().next() {
                None => Ok(None),
                Some(row) => Ok(Some((row.get(1)?.unwrap_or(pg_sys::InvalidOid), row.get(2)?.unwrap_or_default(), row.get(3)?))),
            }
        }))
    });
    let Some((relid, name, owner)) = next else { return false };
    if let Some(owner) = owner {
        let timeout = lock_timeout();
        let dropped = in_subtransaction(|| {
            with_settings(&[(c"lock_timeout", timeout.as_c_str())], || as_table_owner(owner, || execute(&format!("DROP TABLE {name}"), Vec::new)))
        });
        if let Err(failure) = dropped {
            say!(LOG, "pg_retention dropper: detached partition {name} was not dropped ({}); the next run tries again", error::message(&failure));
            return false;
        }
    }
    as_extension_owner(|| execute("DELETE FROM retention.detached_partitions WHERE relid OPERATOR(pg_catalog.=) $1", || vec![relid.into()]));
    true
}

/// The dropper's entry point: one transaction per partition, until none is left.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_retention_drop_detached(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let fields: Vec<u32> = BackgroundWorker::get_extra().split(' ').filter_map(|f| f.parse().ok()).collect();
    let [database, user] = fields[..] else {
        say!(LOG, "pg_retention dropper: malformed arguments");
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database.into()), Some(user.into()));
    BackgroundWorker::transaction(crate::rights::pin_worker_session);
    while !BackgroundWorker::sigterm_received() && BackgroundWorker::transaction(|| drop_one(None)) {}
}

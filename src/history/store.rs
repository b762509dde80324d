//! Every statement that reads or writes `retention.runs`. No other file names that table.
//! Each runs with the extension owner's rights: the caller needs none on the table, so a role
//! that may run policies can read the history but neither forge nor erase it. The owner is
//! looked up once, when a run opens its `History`, not at every batch.

use std::time::UNIX_EPOCH;

use pgrx::prelude::*;
use pgrx::JsonB;

use super::outcomes::{self, Outcome};
use super::{ledger, Origin, RunRecord, Status};
use crate::error::spi;
use crate::rights;
use crate::settings;
use crate::statement::{execute, one};

/// This backend, as its history rows name it: the current role, pid and application.
pub fn this_backend() -> Origin {
    // SAFETY: MyProcPid is set once at backend start and never changes.
    let pid = unsafe { pg_sys::MyProcPid };
    let (username, application_name) =
        spi(Spi::get_two::<String, String>("SELECT CURRENT_USER::pg_catalog.text, pg_catalog.current_setting('application_name')"));
    Origin { username: username.unwrap_or_default(), pid, application_name }
}

/// The run history, written with the extension owner's rights.
pub struct History {
    owner: pg_sys::Oid,
}

impl History {
    pub fn open() -> History {
        History { owner: rights::extension_owner() }
    }

    fn write<R>(&self, work: impl FnOnce() -> R) -> R {
        rights::as_role(self.owner, work)
    }

    /// Writes a run's history row and sets its id: a batched run's `running` row at its start,
    /// a finished or skipped run's row, or (from the recorder) a failed run's.
    pub fn insert(&self, record: &mut RunRecord, origin: &Origin) {
        self.write(|| {
            insert_row(record, origin);
            // A failed run recorded out of band is finished; a running or skipped one is not.
            if record.status == Status::Failed && ledger::installed() {
                ledger::append(record.run_id);
            }
        })
    }

    /// Records the progress of a run whose row exists; visible to other sessions once committed.
    pub fn save_progress(&self, record: &RunRecord) {
        self.write(|| save_progress(record))
    }

    /// Ends a run whose row exists: its counts, status, error and finish time, and its ledger
    /// entry, in the same transaction.
    pub fn finish(&self, record: &RunRecord) {
        self.write(|| {
            save_progress(record);
            finish(record);
            ledger::append(record.run_id);
        })
    }

    /// Chains the ledger's committed pending entries (see `ledger`).
    pub fn seal_ledger(&self) {
        self.write(ledger::seal)
    }

    /// `retention.verify_ledger()`: the first entry that does not verify, once sealed.
    pub fn verify_ledger(&self) -> Option<i64> {
        self.write(|| {
            seal_unless_in_transaction_block();
            ledger::verify()
        })
    }

    /// `retention.deletion_certificate(run_id)`, once sealed; None for a run with no entry.
    pub fn deletion_certificate(&self, run_id: i64) -> Option<JsonB> {
        self.write(|| {
            seal_unless_in_transaction_block();
            ledger::certificate(run_id)
        })
    }

    /// Deletes history (runs and recording outcomes) older than `pg_retention.history_retention_days`.
    pub fn prune(&self) {
        self.write(|| {
            prune();
            outcomes::prune();
        })
    }

    /// The count and digest of a run's recording outcomes (see `outcomes::digest`).
    pub fn outcomes_digest(&self, record: &RunRecord) -> Option<(i64, String)> {
        let run_id = record.run_id?;
        self.write(|| outcomes::digest(run_id))
    }

    /// Writes a recording batch's outcomes for this run.
    pub fn record_outcomes(&self, record: &RunRecord, batch: Vec<Outcome>) {
        if let Some(run_id) = record.run_id {
            self.write(|| outcomes::record(run_id, &record.policy, batch))
        }
    }

    /// Called with the policy's lock held: any run of it still `running` has lost its session.
    pub fn mark_interrupted(&self, policy: &str) {
        self.write(|| {
            mark_interrupted(policy);
            ledger::append_interrupted(Some(policy));
        })
    }

    /// Marks every `running` run whose backend does not hold its policy's lock (a server
    /// crash, a session whose transaction ended under it): the worker does it when it starts,
    /// and every run as it begins, so the history does not wait for each policy's next run.
    /// The same test as the status view.
    pub fn mark_orphans_interrupted(&self) {
        self.write(|| {
            execute(
                &format!(
                    "UPDATE retention.runs r SET {INTERRUPTED}
                      WHERE status OPERATOR(pg_catalog.=) $1
                        AND NOT EXISTS (SELECT FROM pg_catalog.pg_locks l JOIN retention.policies p
                                            ON l.objid OPERATOR(pg_catalog.=) p.id::pg_catalog.oid
                                         WHERE p.name OPERATOR(pg_catalog.=) r.policy AND l.pid OPERATOR(pg_catalog.=) r.pid
                                           AND l.locktype OPERATOR(pg_catalog.=) 'object' AND l.granted
                                           AND l.classid OPERATOR(pg_catalog.=) 'retention.policies'::pg_catalog.regclass
                                           AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                                WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()))
                "
                ),
                || vec![Status::Running.as_str().into(), Status::Interrupted.as_str().into()],
            );
            if ledger::installed() {
                ledger::append_interrupted(None);
            }
        })
    }
}

/// Sealing holds the ledger's lock until its transaction ends: a reader's `BEGIN; SELECT
/// retention.verify_ledger();` left open would stop every sealing. In a transaction block the
/// reader checks what is sealed already, and says that it did not seal.
fn seal_unless_in_transaction_block() {
    // SAFETY: a plain read of this backend's transaction state.
    if unsafe { pg_sys::IsTransactionBlock() } {
        if ledger::pending() {
            crate::error::say!(NOTICE, "pg_retention ledger: entries of finished runs are waiting to be sealed; inside a transaction block they are not (that would stop other sessions' sealing until it ends)");
        }
    } else {
        ledger::seal();
    }
}

/// How a run whose session ended is closed; `$2` is the `interrupted` status.
const INTERRUPTED: &str =
    "status = $2, finished_at = pg_catalog.clock_timestamp(), error = 'the session running it ended before the run finished'";

fn insert_row(record: &mut RunRecord, origin: &Origin) {
    let started = record.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    // A run refused before it read its policy (an older release's SQL among them, whose
    // table has no `target`) names no table.
    let (target_column, target_value) = if record.target.is_some() { (", target", ", $14") } else { ("", "") };
    record.run_id = one::<i64>(
        &format!(
            "INSERT INTO retention.runs
                    (policy, trigger, mode, status, started_at, finished_at, cutoff, rows_deleted, batches, error, details,
                     pid, application_name, username{target_column})
             VALUES ($1, $2, $3, $4, pg_catalog.to_timestamp($5), CASE WHEN $4 OPERATOR(pg_catalog.<>) 'running' THEN pg_catalog.clock_timestamp() END,
                     $6::pg_catalog.timestamptz, $7, $8, $9, $10, $11, $12, $13{target_value})
             RETURNING id"
        ),
        || vec![
            record.policy.as_str().into(),
            record.trigger.as_str().into(),
            record.mode.as_str().into(),
            record.status.as_str().into(),
            started.into(),
            record.cutoff.clone().into(),
            record.rows_deleted.into(),
            (record.batches as i32).into(),
            record.error.clone().into(),
            record.details().map(JsonB).into(),
            origin.pid.into(),
            origin.application_name.clone().into(),
            origin.username.as_str().into(),
        ]
        .into_iter()
        .chain(record.target.clone().map(|target| target.into()))
        .collect(),
    );
}

fn save_progress(record: &RunRecord) {
    execute("UPDATE retention.runs SET rows_deleted = $2, batches = $3, details = $4 WHERE id OPERATOR(pg_catalog.=) $1", || {
        vec![record.run_id.into(), record.rows_deleted.into(), (record.batches as i32).into(), record.details().map(JsonB).into()]
    });
}

fn finish(record: &RunRecord) {
    execute(
        "UPDATE retention.runs SET status = $2, error = $3, finished_at = pg_catalog.clock_timestamp() WHERE id OPERATOR(pg_catalog.=) $1",
        || vec![record.run_id.into(), record.status.as_str().into(), record.error.clone().into()],
    );
}

/// Every run prunes, often inside its caller's transaction (`SELECT run_policy(...)` left
/// open): rows another transaction is deleting are skipped, not waited for, so that no open
/// transaction stalls the other policies' runs. What is skipped goes at a later run.
fn prune() {
    execute(
        "DELETE FROM retention.runs
          WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY(
                SELECT id FROM retention.runs
                 WHERE started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))
                   FOR UPDATE SKIP LOCKED))",
        || vec![settings::HISTORY_RETENTION_DAYS.get().into()],
    );
}

fn mark_interrupted(policy: &str) {
    execute(
        &format!("UPDATE retention.runs SET {INTERRUPTED} WHERE status OPERATOR(pg_catalog.=) $1 AND policy OPERATOR(pg_catalog.=) $3"),
        || vec![Status::Running.as_str().into(), Status::Interrupted.as_str().into(), policy.into()],
    );
}

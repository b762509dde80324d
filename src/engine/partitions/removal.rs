//! Removing a partition whole: its locks (waited for up to the timeout, or not at all), its
//! rows counted, then dropped or detached; what happens when that cannot be done.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::json;

use super::{dropper, lock_timeout, Member, Members, Removal, Work, QUALIFIED_NAME};
use crate::engine::xact::{in_subtransaction, shutdown_requested, with_settings};
use crate::engine::sql;
use crate::error::{self, raise, say};
use crate::policy::ExpiredPartitions;
use crate::settings;
use crate::statement::{execute, one};

/// Whether a removal takes its locks (waiting up to the timeout) or holds them already.
#[derive(PartialEq)]
pub(super) enum Wait {
    UpToTimeout,
    Held,
}

impl Members {
    /// A removal after the first of a batch: done if its locks are free now; if not, handed
    /// back (for the next batch, which waits for them) with nothing done.
    pub(super) fn try_remove(&mut self, removal: Removal) -> Result<i64, Removal> {
        match in_subtransaction(AssertUnwindSafe(|| lock(&removal, " NOWAIT"))) {
            Ok(()) => Ok(self.remove(removal, Wait::Held)),
            Err(failure) => {
                // Busy, or any other failure the next batch meets again when it waits for
                // the locks (and reports); one that must stop the run goes on now.
                if error::code(&failure) != PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE {
                    why_not_removed(failure);
                }
                Err(removal)
            }
        }
    }

    /// Removes a partition whole, in a subtransaction whose locks wait at most
    /// `pg_retention.partition_lock_timeout`: ACCESS EXCLUSIVE on its parent (`ONLY`) and on it.
    /// A batched run only detaches it (and, for `drop`, notes it for the dropper) while it
    /// holds the parent's lock; its rows are counted in the next transaction (`count_detached`).
    /// In one transaction its rows are counted, then it is dropped or detached. When that
    /// fails, a partition to drop is purged by rows instead; one to detach stays as it is.
    pub(super) fn remove(&mut self, removal: Removal, wait: Wait) -> i64 {
        let timeout = lock_timeout();
        let (action, batched) = (self.policy.expired_partitions, self.batched);
        let done = in_subtransaction(AssertUnwindSafe(|| {
            with_settings(&[(c"lock_timeout", timeout.as_c_str())], || {
                if wait == Wait::UpToTimeout {
                    lock(&removal, "");
                }
                if let Some(member) = super::tree::changed_since_read(&removal, self.target.owner) {
                    raise(
                        PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
                        format!("{member} gained an ON DELETE trigger, row-level security or another owner while the run waited for its locks"),
                        None,
                    )
                }
                // Under its lock, so no held row can arrive before it goes.
                let held: i64 = removal.leaves.iter().map(|leaf| sql::held(&self.parts, self.cutoff, Some(&leaf.name))).sum();
                if held > 0 {
                    raise(
                        PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
                        format!("it holds {held} rows kept by a legal hold of policy \"{}\"", self.policy.name),
                        None,
                    )
                }
                let counts: Vec<(i64, bool)> = if batched { Vec::new() } else { self.count(&removal) };
                let archived_as = if action == ExpiredPartitions::Drop && !batched {
                    execute(&format!("DROP TABLE {}", removal.name), Vec::new);
                    None
                } else {
                    execute(&format!("ALTER TABLE {} DETACH PARTITION {}", removal.parent, removal.name), Vec::new);
                    let archived_as = self.archive(&removal);
                    if batched {
                        // Counted in the next transaction: a crash before it leaves this note
                        // for the next run to count (see `dropper`).
                        let name = archived_as.as_deref().unwrap_or(&removal.name);
                        dropper::remember(removal.relid, name, &self.policy.name, self.run_id, action != ExpiredPartitions::Drop);
                    }
                    archived_as
                };
                (counts, archived_as)
            })
        }));
        match done {
            Ok((_, archived_as)) if batched => {
                self.uncounted.push((removal, archived_as));
                0
            }
            Ok((counts, archived_as)) => self.removed(&removal, counts, archived_as),
            Err(failure) => {
                let reason = why_not_removed(failure);
                let (verb, consequence) = if action == ExpiredPartitions::Drop {
                    for leaf in removal.leaves.iter().rev() {
                        self.queue.push_front(Work::Purge(leaf.clone()));
                    }
                    ("rows", "its rows are deleted in batches instead")
                } else {
                    ("kept", "it stays attached, rows and all, until a later run")
                };
                say!(LOG, "pg_retention: policy \"{}\": partition {} was not removed ({reason}); {consequence}", self.policy.name, removal.name);
                self.outcomes.push(json!({ "partition": removal.name, "action": verb, "reason": reason }));
                0
            }
        }
    }

    /// `detach` with an archive schema: moves the partition just detached there; its new name.
    fn archive(&self, removal: &Removal) -> Option<String> {
        if self.policy.expired_partitions != ExpiredPartitions::Detach {
            return None;
        }
        let schema = quote_identifier(self.policy.archive_schema.as_deref()?);
        execute(&format!("ALTER TABLE {} SET SCHEMA {schema}", removal.name), Vec::new);
        Some(qualified_name(removal.relid))
    }

    /// Counts the partitions the last batch detached, now that they are tables of their own
    /// (nothing can reach them through the parent), then hands those to drop to the dropper.
    pub(super) fn count_detached(&mut self) -> i64 {
        let mut rows = 0;
        for (removal, archived_as) in std::mem::take(&mut self.uncounted) {
            let counts = self.count(&removal);
            rows += self.removed(&removal, counts, archived_as);
            dropper::counted(removal.relid);
            self.detached |= self.policy.expired_partitions == ExpiredPartitions::Drop;
        }
        rows
    }

    /// The rows of each leaf of a partition to remove. A Citus table's statistics here are its
    /// shell's (no rows): its leaves are always counted.
    fn count(&self, removal: &Removal) -> Vec<(i64, bool)> {
        let statistics = self.target.citus.is_none();
        removal.leaves.iter().map(|leaf| count_rows(leaf, statistics)).collect()
    }

    /// Records a partition removed whole; returns its rows.
    fn removed(&mut self, removal: &Removal, counts: Vec<(i64, bool)>, archived_as: Option<String>) -> i64 {
        let rows = counts.iter().map(|(rows, _)| rows).sum();
        let counted = if counts.iter().all(|(_, exact)| *exact) { "exact" } else { "statistics" };
        let verb = if self.policy.expired_partitions == ExpiredPartitions::Drop { "dropped" } else { "detached" };
        let mut outcome = json!({ "partition": removal.name, "action": verb, "rows": rows, "counted": counted });
        if let Some(name) = archived_as {
            outcome["archived_as"] = json!(name);
        }
        self.outcomes.push(outcome);
        rows
    }
}

/// The locks a removal takes: ACCESS EXCLUSIVE on the parent alone, then on the partition (and
/// what it holds), in the order `DROP TABLE` takes them. `nowait`: "" or " NOWAIT".
fn lock(removal: &Removal, nowait: &str) {
    execute(&format!("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE{nowait}", removal.parent), Vec::new);
    execute(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE{nowait}", removal.name), Vec::new);
}

/// Why a partition could not be removed; an error that must stop the run (a cancel, a
/// shutdown, the server out of resources) goes on instead.
fn why_not_removed(failure: Box<CaughtError>) -> String {
    if error::stops_work(&failure) || shutdown_requested() {
        failure.rethrow()
    }
    let code = error::code(&failure);
    let class = error::sqlstate(code);
    if code == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE {
        format!("its locks were not had within pg_retention.partition_lock_timeout ({} ms)", settings::PARTITION_LOCK_TIMEOUT_MS.get())
    } else {
        format!("{} [{class}]", error::message(&failure))
    }
}

/// A removed leaf's rows, and whether the count is exact. From the statistics when ANALYZE read
/// every page of it and no change to it is recorded since (exact, but for writes of the last
/// second or so not yet in the statistics); counted otherwise, or when `statistics` is false.
fn count_rows(leaf: &Member, statistics: bool) -> (i64, bool) {
    let analyzed = statistics.then(|| one::<i64>(
        "SELECT (SELECT c.reltuples::pg_catalog.int8 FROM pg_catalog.pg_class c
          WHERE c.oid OPERATOR(pg_catalog.=) $1 AND c.reltuples OPERATOR(pg_catalog.>=) 0
            AND pg_catalog.pg_stat_get_mod_since_analyze(c.oid) OPERATOR(pg_catalog.=) 0
            AND COALESCE(pg_catalog.pg_stat_get_last_analyze_time(c.oid), pg_catalog.pg_stat_get_last_autoanalyze_time(c.oid)) IS NOT NULL
            -- ANALYZE samples 300 rows per unit of statistics target, as many pages: all of them here
            AND c.relpages OPERATOR(pg_catalog.<=) (300 OPERATOR(pg_catalog.*) (
                -- the column's own target, else the default (-1 says so before 17, NULL from 17)
                SELECT pg_catalog.max(CASE WHEN a.attstattarget IS NULL OR a.attstattarget OPERATOR(pg_catalog.<) 0
                                           THEN pg_catalog.current_setting('default_statistics_target')::pg_catalog.int4
                                           ELSE a.attstattarget END)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)))",
        || vec![leaf.relid.into()],
    ));
    match analyzed.flatten() {
        Some(rows) => (rows, false),
        None => (one::<i64>(&format!("SELECT pg_catalog.count(*) FROM ONLY {}", qualified_name(leaf.relid)), Vec::new).unwrap_or(0), true),
    }
}

/// A table's schema-qualified name as it is now, quoted by Postgres.
fn qualified_name(relid: pg_sys::Oid) -> String {
    one::<String>(
        &format!(
            "SELECT {QUALIFIED_NAME} FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE c.oid OPERATOR(pg_catalog.=) $1"
        ),
        || vec![relid.into()],
    )
    .unwrap_or_default()
}

//! Partitioned tables and inheritance parents. The tree under a policy's table is read once
//! per run (`tree`): a partition whose bounds prove every row past the cutoff is removed whole
//! (`removal`, all of a run's removals in one short transaction); a partition whose bounds prove
//! none is skipped; every other member is purged on its own, `ONLY` it, with the plan a plain
//! table would get. `dropper` drops, after the run, what a batched run detached.

use std::collections::VecDeque;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use serde_json::{json, Value};

use super::plan::BatchPlan;
use super::sql::{self, Parts};
use crate::policy::{Action, ExpiredPartitions, Policy, Target};
use crate::statement::one;

pub mod dropper;
mod removal;
mod tree;

use removal::Wait;
use tree::{member, read_tree};

/// A table's schema-qualified name, quoted by Postgres, from `pg_class c` joined with
/// `pg_namespace n`. The tree's names and the dropper's check that a table still has its
/// noted name must be this same expression.
const QUALIFIED_NAME: &str =
    "pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)";

/// `lock_timeout` for the statements that take a partition's locks (and the dropper's drop).
fn lock_timeout() -> std::ffi::CString {
    // Digits and "ms": no NUL byte.
    std::ffi::CString::new(format!("{}ms", crate::settings::PARTITION_LOCK_TIMEOUT_MS.get())).unwrap_or_default()
}

/// A table purged on its own.
#[derive(Clone)]
struct Member {
    relid: pg_sys::Oid,
    name: String,
    time_indexed: bool,
}

/// A partition (a leaf, or a partitioned table with all it holds) whose bound proves every row
/// past the cutoff.
struct Removal {
    relid: pg_sys::Oid,
    name: String,
    parent: String,
    /// Its leaves: what is counted before removal, and purged by rows if it cannot be removed.
    leaves: Vec<Member>,
}

enum Work {
    Remove(Removal),
    Purge(Member),
}

/// The plan of a tree: removals first, then the members one at a time.
pub struct Members {
    queue: VecDeque<Work>,
    /// The member being purged, and its plan.
    current: Option<Box<BatchPlan>>,
    policy: Policy,
    target: Target,
    parts: Parts,
    /// What happened to each partition removed (or not) since the run last asked.
    outcomes: Vec<Value>,
    /// A batched run only detaches partitions while it holds their parent's lock; it counts
    /// them in its next transaction and leaves their `DROP` (which frees their files: tens of
    /// milliseconds for a few hundred megabytes) to the dropper, after the run. In one
    /// transaction they are counted and dropped at once.
    batched: bool,
    /// Partitions the last batch detached, not yet counted (and where `detach` archived them).
    uncounted: Vec<(Removal, Option<String>)>,
    /// Partitions to drop were counted: the run starts the dropper after its last commit.
    detached: bool,
    /// The run's history row, named in its notes of detached partitions.
    run_id: Option<i64>,
    /// The run's cutoff: a partition holding rows a legal hold keeps is not removed whole.
    cutoff: TimestampWithTimeZone,
}

impl Members {
    /// The plan for a partitioned table or an inheritance parent, or None when its members
    /// cannot be purged apart from it (see `read_tree`): then the table is purged through the
    /// parent, as a whole.
    pub fn choose(policy: &Policy, target: &Target, parts: &Parts, cutoff: TimestampWithTimeZone) -> Option<Members> {
        let nodes = read_tree(policy, target)?;
        let removable = policy.action == Action::Delete && policy.expired_partitions != ExpiredPartitions::Rows;
        let mut work = Vec::new();
        if nodes[0].partitioned {
            let proofs = tree::prove(&nodes, target, cutoff);
            tree::walk(&nodes, &proofs, 0, removable, &mut work);
        } else {
            // Legacy inheritance: no bounds; the parent and every descendant hold rows of their own.
            let mut seen = std::collections::HashSet::new();
            work.extend(nodes.iter().filter(|n| seen.insert(n.relid)).map(|n| Work::Purge(member(n))));
        }
        work.sort_by_key(|w| matches!(w, Work::Purge(_)));
        Some(Members {
            queue: work.into(),
            current: None,
            policy: policy.clone(),
            target: target.clone(),
            parts: parts.clone(),
            outcomes: Vec::new(),
            batched: false,
            uncounted: Vec::new(),
            detached: false,
            run_id: None,
            cutoff,
        })
    }

    /// One batch: the next removal, or the next batch of the member being purged. Returns the
    /// rows it took and whether work remains.
    pub fn batch(&mut self, cutoff: TimestampWithTimeZone, batch_size: i64, reason: Option<&str>) -> (i64, bool) {
        if !self.uncounted.is_empty() {
            crate::progress::phase(crate::progress::Phase::RemovingPartitions);
            let rows = self.count_detached();
            return (rows, !self.queue.is_empty() || self.current.is_some());
        }
        loop {
            if let Some(plan) = &mut self.current {
                let (rows, more) = plan.row_batch(cutoff, batch_size, reason);
                if !more {
                    self.current = None;
                }
                return (rows, more || !self.queue.is_empty());
            }
            match self.queue.pop_front() {
                None => return (0, false),
                Some(Work::Purge(member)) => self.current = Some(Box::new(self.member_plan(&member, cutoff))),
                Some(Work::Remove(removal)) => {
                    crate::progress::phase(crate::progress::Phase::RemovingPartitions);
                    // Every removal in one transaction: the parents' locks are taken once,
                    // and live traffic waits once, for a few milliseconds. Only the first
                    // waits for its locks; the rest take theirs now or go to the next batch.
                    let mut rows = self.remove(removal, Wait::UpToTimeout);
                    while let Some(Work::Remove(_)) = self.queue.front() {
                        let Some(Work::Remove(next)) = self.queue.pop_front() else { break };
                        match self.try_remove(next) {
                            Ok(removed) => rows += removed,
                            Err(busy) => {
                                self.queue.push_front(Work::Remove(busy));
                                break;
                            }
                        }
                    }
                    return (rows, !self.queue.is_empty() || !self.uncounted.is_empty());
                }
            }
        }
    }

    /// A batched run's plan: partitions are detached, then counted, then dropped after the run.
    pub fn set_batched(&mut self, run_id: Option<i64>) {
        self.batched = true;
        self.run_id = run_id;
    }

    /// Whether the run counted detached partitions for the dropper; asking clears it.
    pub fn take_detached(&mut self) -> bool {
        std::mem::take(&mut self.detached)
    }

    /// What happened to partitions since the last call, for the run's details.
    pub fn take_outcomes(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.outcomes)
    }

    /// The partitions a run would remove, each with its exact row count (for `preview`); not
    /// those holding rows a legal hold keeps, whose rows go by row.
    pub fn removals(&self) -> Vec<(String, i64)> {
        let count = |leaf: &Member| one::<i64>(&format!("SELECT pg_catalog.count(*) FROM ONLY {}", leaf.name), Vec::new).unwrap_or(0);
        let held = |removal: &Removal| removal.leaves.iter().any(|leaf| sql::held(&self.parts, self.cutoff, Some(&leaf.name)) > 0);
        self.queue
            .iter()
            .filter_map(|w| match w {
                Work::Remove(r) if !held(r) => Some((r.name.clone(), r.leaves.iter().map(count).sum())),
                Work::Remove(_) | Work::Purge(_) => None,
            })
            .collect()
    }

    fn member_plan(&self, member: &Member, cutoff: TimestampWithTimeZone) -> BatchPlan {
        let mut target = self.target.clone();
        target.relid = member.relid;
        target.has_children = false; // `ONLY` it: its own blocks hold every row it is asked for
        target.time_indexed = member.time_indexed;
        BatchPlan::choose(&self.policy, &target, &self.parts.for_member(member.name.clone()), cutoff, None)
    }
}

/// Adds to a preview of a partitioned table the partitions a run would remove whole (each with
/// its exact row count) and how many rows it would delete by row.
pub fn preview(policy: &Policy, target: &Target, parts: &Parts, cutoff: TimestampWithTimeZone, result: &mut Value) {
    let Some(members) = Members::choose(policy, target, parts, cutoff) else { return };
    let action = if policy.expired_partitions == ExpiredPartitions::Detach { "detach" } else { "drop" };
    let removals = members.removals();
    let whole: i64 = removals.iter().map(|(_, rows)| rows).sum();
    let rows = result["rows"].as_i64().unwrap_or(0);
    result["partitions"] = removals.into_iter().map(|(name, rows)| json!({ "partition": name, "rows": rows, "action": action })).collect();
    result["rows_by_row"] = json!(rows - whole);
}


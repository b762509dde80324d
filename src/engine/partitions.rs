//! Partitioned tables and inheritance parents. The tree under a policy's table is read once
//! per run: a partition whose bounds prove every row past the cutoff is removed whole (one
//! short transaction each); a partition whose bounds prove none is skipped; every other member
//! is purged on its own, `ONLY` it, with the plan a plain table would get.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiResult};
use serde_json::{json, Value};

use super::plan::BatchPlan;
use super::sql::Parts;
use super::xact::{in_subtransaction, shutdown_requested, with_settings};
use crate::bounds::{self, Bound};
use crate::error::{self, say, spi};
use crate::policy::{Action, ExpiredPartitions, Policy, Target};
use crate::settings;
use crate::statement::{execute, one};

/// A table of the tree under a policy's table.
struct Node {
    relid: pg_sys::Oid,
    /// Schema-qualified, quoted by Postgres.
    name: String,
    parent: pg_sys::Oid,
    partitioned: bool,
    bound: Bound,
    /// Its parent is range-partitioned on the policy's time column alone: its bound is in time.
    keyed_on_time: bool,
    /// An enabled user trigger fires on DELETE: a partition removed whole would skip it.
    delete_trigger: bool,
    time_indexed: bool,
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
            let proofs = prove(&nodes, target, cutoff);
            walk(&nodes, &proofs, 0, removable, &mut work);
        } else {
            // Legacy inheritance: no bounds; the parent and every descendant hold rows of their own.
            let mut seen = std::collections::HashSet::new();
            work.extend(nodes.iter().filter(|n| seen.insert(n.relid)).map(|n| Work::Purge(member(n))));
        }
        work.sort_by_key(|w| matches!(w, Work::Purge(_)));
        Some(Members { queue: work.into(), current: None, policy: policy.clone(), target: target.clone(), parts: parts.clone(), outcomes: Vec::new() })
    }

    /// One batch: the next removal, or the next batch of the member being purged. Returns the
    /// rows it took and whether work remains.
    pub fn batch(&mut self, cutoff: TimestampWithTimeZone, batch_size: i64, reason: Option<&str>) -> (i64, bool) {
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
                    let rows = self.remove(removal);
                    return (rows, !self.queue.is_empty());
                }
            }
        }
    }

    /// What happened to partitions since the last call, for the run's details.
    pub fn take_outcomes(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.outcomes)
    }

    /// The partitions a run would remove, each with its exact row count (for `preview`).
    pub fn removals(&self) -> Vec<(String, i64)> {
        let count = |leaf: &Member| one::<i64>(&format!("SELECT pg_catalog.count(*) FROM ONLY {}", leaf.name), Vec::new).unwrap_or(0);
        self.queue
            .iter()
            .filter_map(|w| match w {
                Work::Remove(r) => Some((r.name.clone(), r.leaves.iter().map(count).sum())),
                Work::Purge(_) => None,
            })
            .collect()
    }

    fn member_plan(&self, member: &Member, cutoff: TimestampWithTimeZone) -> BatchPlan {
        let mut target = self.target.clone();
        target.relid = member.relid;
        target.has_children = false; // `ONLY` it: its own blocks hold every row it is asked for
        target.time_indexed = member.time_indexed;
        BatchPlan::choose(&self.policy, &target, &self.parts.for_member(member.name.clone()), cutoff)
    }

    /// Removes a partition whole, in a subtransaction whose locks wait at most
    /// `pg_retention.partition_lock_timeout`: ACCESS EXCLUSIVE on its parent (`ONLY`) and on it,
    /// its rows counted, then `DROP TABLE` or `DETACH PARTITION` (and `SET SCHEMA`). When that
    /// fails, a partition to drop is purged by rows instead; one to detach stays as it is.
    fn remove(&mut self, removal: Removal) -> i64 {
        let timeout = format!("{}ms", settings::PARTITION_LOCK_TIMEOUT_MS.get());
        let (action, archive) = (self.policy.expired_partitions, self.policy.archive_schema.as_deref().map(quote_identifier));
        let done = in_subtransaction(AssertUnwindSafe(|| {
            with_settings(&[(c"lock_timeout", &timeout)], || {
                execute(&format!("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE", removal.parent), Vec::new);
                execute(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", removal.name), Vec::new);
                let counts: Vec<(i64, bool)> = removal.leaves.iter().map(count_rows).collect();
                let archived_as = if action == ExpiredPartitions::Drop {
                    execute(&format!("DROP TABLE {}", removal.name), Vec::new);
                    None
                } else {
                    execute(&format!("ALTER TABLE {} DETACH PARTITION {}", removal.parent, removal.name), Vec::new);
                    archive.as_ref().map(|schema| {
                        execute(&format!("ALTER TABLE {} SET SCHEMA {schema}", removal.name), Vec::new);
                        format!("{schema}.{}", removal.name.rsplit_once('.').map_or(removal.name.as_str(), |(_, table)| table))
                    })
                };
                (counts, archived_as)
            })
        }));
        match done {
            Ok((counts, archived_as)) => {
                let rows = counts.iter().map(|(rows, _)| rows).sum();
                let counted = if counts.iter().all(|(_, exact)| *exact) { "exact" } else { "statistics" };
                let verb = if action == ExpiredPartitions::Drop { "dropped" } else { "detached" };
                let mut outcome = json!({ "partition": removal.name, "action": verb, "rows": rows, "counted": counted });
                if let Some(name) = archived_as {
                    outcome["archived_as"] = json!(name);
                }
                self.outcomes.push(outcome);
                rows
            }
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

/// Why a partition could not be removed; an error that must stop the run (a cancel, a
/// shutdown, the server out of resources) goes on instead.
fn why_not_removed(failure: Box<CaughtError>) -> String {
    let code = error::code(&failure);
    let class = error::sqlstate(code);
    let fatal = matches!(code, PgSqlErrorCode::ERRCODE_QUERY_CANCELED | PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN | PgSqlErrorCode::ERRCODE_CRASH_SHUTDOWN)
        || ["53", "57", "58", "XX"].contains(&&class[..2])
        || shutdown_requested();
    if fatal {
        failure.rethrow()
    }
    if code == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE {
        format!("its locks were not had within pg_retention.partition_lock_timeout ({} ms)", settings::PARTITION_LOCK_TIMEOUT_MS.get())
    } else {
        format!("{} [{class}]", error::message(&failure))
    }
}

/// A removed leaf's rows, and whether the count is exact. From the statistics when ANALYZE read
/// every page of it and no change to it is recorded since (exact, but for writes of the last
/// second or so not yet in the statistics); counted otherwise.
fn count_rows(leaf: &Member) -> (i64, bool) {
    let analyzed = one::<i64>(
        "SELECT (SELECT c.reltuples::pg_catalog.int8 FROM pg_catalog.pg_class c
          WHERE c.oid OPERATOR(pg_catalog.=) $1 AND c.reltuples OPERATOR(pg_catalog.>=) 0
            AND pg_catalog.pg_stat_get_mod_since_analyze(c.oid) OPERATOR(pg_catalog.=) 0
            AND COALESCE(pg_catalog.pg_stat_get_last_analyze_time(c.oid), pg_catalog.pg_stat_get_last_autoanalyze_time(c.oid)) IS NOT NULL
            -- ANALYZE samples 300 rows per unit of statistics target, as many pages: all of them here
            AND c.relpages OPERATOR(pg_catalog.<=) (300 OPERATOR(pg_catalog.*) (
                SELECT pg_catalog.max(CASE WHEN a.attstattarget OPERATOR(pg_catalog.<) 0
                                           THEN pg_catalog.current_setting('default_statistics_target')::pg_catalog.int4
                                           ELSE a.attstattarget END)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)))",
        || vec![leaf.relid.into()],
    );
    match analyzed {
        Some(rows) => (rows, false),
        None => (one::<i64>(&format!("SELECT pg_catalog.count(*) FROM ONLY {}", leaf.name), Vec::new).unwrap_or(0), true),
    }
}

fn member(node: &Node) -> Member {
    Member { relid: node.relid, name: node.name.clone(), time_indexed: node.time_indexed }
}

/// Adds the work for the children of `nodes[at]`: skipped when their bounds prove no row past
/// the cutoff, removed when they prove every row past it (and removal is allowed), else
/// walked into (a partitioned child) or purged.
fn walk(nodes: &[Node], proofs: &[(bool, bool)], at: usize, removable: bool, work: &mut Vec<Work>) {
    for (i, child) in nodes.iter().enumerate().filter(|(_, n)| n.parent == nodes[at].relid) {
        let (expired, live) = proofs[i];
        if live {
            continue;
        }
        let leaves: Vec<Member> = leaves_under(nodes, i).map(member).collect();
        let triggered = leaves.iter().any(|leaf| nodes.iter().any(|n| n.relid == leaf.relid && n.delete_trigger));
        if expired && removable && !triggered {
            work.push(Work::Remove(Removal { name: child.name.clone(), parent: nodes[at].name.clone(), leaves }));
        } else if child.partitioned {
            walk(nodes, proofs, i, removable, work);
        } else {
            work.push(Work::Purge(member(child)));
        }
    }
}

/// The leaves at or under `nodes[at]`.
fn leaves_under(nodes: &[Node], at: usize) -> Box<dyn Iterator<Item = &Node> + '_> {
    if !nodes[at].partitioned {
        return Box::new(std::iter::once(&nodes[at]));
    }
    let relid = nodes[at].relid;
    Box::new(nodes.iter().enumerate().filter(move |(_, n)| n.parent == relid).flat_map(move |(i, _)| leaves_under(nodes, i)))
}

/// For each node, whether its bound proves every row past the cutoff (upper bound at or before
/// it: rows are below the upper bound) and whether it proves none (lower bound at or after it).
/// Compared by Postgres in the key's type, as the run's predicate compares.
fn prove(nodes: &[Node], target: &Target, cutoff: TimestampWithTimeZone) -> Vec<(bool, bool)> {
    let (mut lowers, mut uppers) = (Vec::new(), Vec::new());
    for node in nodes {
        let (lower, upper) = match (&node.bound, node.keyed_on_time) {
            (Bound::Range { lower, upper }, true) => (lower.clone(), upper.clone()),
            _ => (None, None),
        };
        lowers.push(lower);
        uppers.push(upper);
    }
    let (time_type, cutoff_expr) = (target.time_type.sql_type(), target.time_type.cutoff_expr());
    let sql = format!(
        "SELECT COALESCE(CAST(b.upper AS {time_type}) OPERATOR(pg_catalog.<=) {cutoff_expr}, false),
                COALESCE(CAST(b.lower AS {time_type}) OPERATOR(pg_catalog.>=) {cutoff_expr}, false)
           FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])) WITH ORDINALITY AS b(upper, lower, i)
          ORDER BY b.i"
    );
    spi(Spi::connect(|client| {
        let rows = client.select(&sql, None, &[cutoff.into(), uppers.into(), lowers.into()])?;
        rows.map(|row| Ok((row.get::<bool>(1)?.unwrap_or(false), row.get::<bool>(2)?.unwrap_or(false)))).collect::<SpiResult<Vec<_>>>()
    }))
}

/// The tree under the policy's table, the table first, with bounds printed in ISO style (which
/// `prove` reads back the same whatever the session's DateStyle). None when its members cannot be purged apart from it
/// with the same effect as through it: a member with another owner (whose rights would then
/// apply), row-level security anywhere (policies apply by the table named), a user statement
/// trigger anywhere for the action's event (it fires for the table named only), or a member
/// that is not a plain table (a foreign table).
fn read_tree(policy: &Policy, target: &Target) -> Option<Vec<Node>> {
    // pg_trigger.tgtype bits: ROW 1, DELETE 8, UPDATE 16.
    let event: i16 = if policy.action == Action::Delete { 8 } else { 16 };
    let user_trigger = |condition: &str| {
        format!(
            "EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid OPERATOR(pg_catalog.=) c.oid AND NOT g.tgisinternal
                       AND g.tgenabled OPERATOR(pg_catalog.<>) 'D' AND {condition})"
        )
    };
    let sql = format!(
        "WITH RECURSIVE tree(relid, parent, depth) AS (
             SELECT $1::pg_catalog.oid, 0::pg_catalog.oid, 0
           UNION ALL
             SELECT i.inhrelid, i.inhparent, tree.depth OPERATOR(pg_catalog.+) 1
               FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent OPERATOR(pg_catalog.=) tree.relid)
         SELECT c.oid, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),
                tree.parent, c.relkind::pg_catalog.text,
                c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}') AND c.relowner OPERATOR(pg_catalog.=) $3 AND NOT c.relrowsecurity
                  AND NOT {statement_trigger},
                COALESCE(pg_catalog.pg_get_expr(c.relpartbound, c.oid), ''),
                COALESCE(p.partstrat OPERATOR(pg_catalog.=) 'r' AND p.partnatts OPERATOR(pg_catalog.=) 1
                                    AND p.partattrs[0] OPERATOR(pg_catalog.=) a.attnum, false),
                {delete_trigger},
                EXISTS (SELECT FROM pg_catalog.pg_index x JOIN pg_catalog.pg_attribute xa
                          ON xa.attrelid OPERATOR(pg_catalog.=) x.indrelid AND xa.attnum OPERATOR(pg_catalog.=) x.indkey[0]
                         WHERE x.indrelid OPERATOR(pg_catalog.=) c.oid AND xa.attname OPERATOR(pg_catalog.=) $2 AND x.indisvalid)
           FROM tree
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) tree.relid
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
           LEFT JOIN pg_catalog.pg_partitioned_table p ON p.partrelid OPERATOR(pg_catalog.=) tree.parent
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) tree.parent AND a.attname OPERATOR(pg_catalog.=) $2
          ORDER BY tree.depth, c.relname",
        statement_trigger = user_trigger(&format!(
            "g.tgtype OPERATOR(pg_catalog.&) 1::pg_catalog.int2 OPERATOR(pg_catalog.=) 0 AND g.tgtype OPERATOR(pg_catalog.&) {event}::pg_catalog.int2 OPERATOR(pg_catalog.<>) 0"
        )),
        delete_trigger = user_trigger("g.tgtype OPERATOR(pg_catalog.&) 8::pg_catalog.int2 OPERATOR(pg_catalog.<>) 0"),
    );
    let read = || {
        spi(Spi::connect(|client| {
            let rows = client.select(&sql, None, &[target.relid.into(), policy.time_column.as_str().into(), target.owner.into()])?;
            let mut nodes = Vec::new();
            for row in rows {
                if row.get::<bool>(5)? != Some(true) {
                    return Ok(None);
                }
                nodes.push(Node {
                    relid: row.get(1)?.unwrap_or(pg_sys::InvalidOid),
                    name: row.get(2)?.unwrap_or_default(),
                    parent: row.get(3)?.unwrap_or(pg_sys::InvalidOid),
                    partitioned: row.get::<String>(4)?.as_deref() == Some("p"),
                    bound: bounds::parse(&row.get::<String>(6)?.unwrap_or_default()),
                    keyed_on_time: row.get(7)?.unwrap_or(false),
                    delete_trigger: row.get(8)?.unwrap_or(true),
                    time_indexed: row.get(9)?.unwrap_or(false),
                });
            }
            Ok::<_, pgrx::spi::Error>(Some(nodes))
        }))
    };
    with_settings(&[(c"DateStyle", "ISO, YMD")], read).filter(|nodes| !nodes.is_empty())
}

//! The tree under a policy's table, read from the catalog, and what the partitions' bounds
//! prove about the cutoff.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::{Member, Removal, Work, QUALIFIED_NAME};
use crate::bounds::{self, Bound};
use crate::engine::xact::with_settings;
use crate::error::spi;
use crate::policy::{Action, Policy, Target};

/// A table of the tree under a policy's table.
pub(super) struct Node {
    pub(super) relid: pg_sys::Oid,
    /// Schema-qualified, quoted by Postgres.
    pub(super) name: String,
    pub(super) parent: pg_sys::Oid,
    pub(super) partitioned: bool,
    pub(super) bound: Bound,
    /// Its parent is range-partitioned on the policy's time column alone: its bound is in time.
    pub(super) keyed_on_time: bool,
    /// An enabled user trigger fires on DELETE: a partition removed whole would skip it.
    pub(super) delete_trigger: bool,
    pub(super) time_indexed: bool,
}

pub(super) fn member(node: &Node) -> Member {
    Member { relid: node.relid, name: node.name.clone(), time_indexed: node.time_indexed }
}

/// Adds the work for the children of `nodes[at]`: skipped when their bounds prove no row past
/// the cutoff, removed when they prove every row past it (and removal is allowed), else
/// walked into (a partitioned child) or purged.
pub(super) fn walk(nodes: &[Node], proofs: &[(bool, bool)], at: usize, removable: bool, work: &mut Vec<Work>) {
    for (i, child) in nodes.iter().enumerate().filter(|(_, n)| n.parent == nodes[at].relid) {
        let (expired, live) = proofs[i];
        if live {
            continue;
        }
        let triggered = leaves_under(nodes, i).any(|leaf| leaf.delete_trigger);
        if expired && removable && !triggered {
            let leaves = leaves_under(nodes, i).map(member).collect();
            work.push(Work::Remove(Removal { relid: child.relid, name: child.name.clone(), parent: nodes[at].name.clone(), leaves }));
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
pub(super) fn prove(nodes: &[Node], target: &Target, cutoff: TimestampWithTimeZone) -> Vec<(bool, bool)> {
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

/// The tree under the policy's table, the table first, with bounds printed in ISO style, which
/// `prove` reads back exactly: other styles print a zone abbreviation (IST in Kolkata), which
/// Postgres may read as another zone (Israel's). None when its members cannot be purged apart from it
/// with the same effect as through it: a member with another owner (whose rights would then
/// apply), row-level security anywhere (policies apply by the table named), a user statement
/// trigger anywhere for the action's event (it fires for the table named only), or a member
/// that is not a plain table (a foreign table).
pub(super) fn read_tree(policy: &Policy, target: &Target) -> Option<Vec<Node>> {
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
         SELECT c.oid, {QUALIFIED_NAME},
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
    with_settings(&[(c"DateStyle", c"ISO, YMD")], read).filter(|nodes| !nodes.is_empty())
}

/// Under a removal's locks: a member of it that no longer is as `read_tree` saw it, by name:
/// one that gained an enabled user `ON DELETE` trigger (row or statement), row-level security,
/// or another owner, while the run waited for the locks (a trigger committed meanwhile was not
/// there to see). Its removal would then not have the effect deleting its rows has.
pub(super) fn changed_since_read(removal: &Removal, owner: pg_sys::Oid) -> Option<String> {
    let relids: Vec<pg_sys::Oid> = std::iter::once(removal.relid).chain(removal.leaves.iter().map(|leaf| leaf.relid)).collect();
    crate::statement::one::<String>(
        &format!(
            "SELECT (SELECT {QUALIFIED_NAME} FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                      WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1)
                        AND (c.relowner OPERATOR(pg_catalog.<>) $2 OR c.relrowsecurity
                             OR EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid OPERATOR(pg_catalog.=) c.oid AND NOT g.tgisinternal
                                           AND g.tgenabled OPERATOR(pg_catalog.<>) 'D'
                                           AND g.tgtype OPERATOR(pg_catalog.&) 8::pg_catalog.int2 OPERATOR(pg_catalog.<>) 0))
                      LIMIT 1)"
        ),
        || vec![relids.clone().into(), owner.into()],
    )
}

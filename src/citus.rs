//! Citus: what it makes of a policy's table, and whether this node is its coordinator.
//!
//! A Citus table's relation on the coordinator is a shell: its rows live in shards (on worker
//! nodes, or for a Citus local table in a shard on the coordinator), so no plan may read the
//! shell's own blocks or ctids. Statements on it are planned by Citus and pushed down to every
//! shard. Nothing here is asked of a database without the `citus` extension.

use std::ffi::CStr;

use pgrx::prelude::*;

use crate::engine::xact::with_settings;
use crate::error::spi;

/// How Citus holds a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CitusTable {
    /// Split into `shards` shards by its distribution column (hash, or a single-shard table of
    /// a distributed schema).
    Distributed { shards: i64 },
    /// One shard, a copy of it on every node.
    Reference,
    /// One shard, on the coordinator (`citus_add_local_table_to_metadata`).
    Local,
}

impl CitusTable {
    /// From `pg_dist_partition`: `partmethod` ('h' hash, 'a'/'r' the old append and range,
    /// 'n' none), `repmodel` ('t': replicated to every node) and whether it is co-located.
    pub fn from_metadata(
        partmethod: &str,
        repmodel: &str,
        colocated: bool,
        shards: i64,
    ) -> Result<CitusTable, String> {
        match (partmethod, repmodel) {
            ("h" | "a" | "r", _) => Ok(CitusTable::Distributed { shards }),
            ("n", "t") => Ok(CitusTable::Reference),
            ("n", _) if colocated => Ok(CitusTable::Distributed { shards }),
            ("n", _) => Ok(CitusTable::Local),
            _ => Err(format!("unknown Citus distribution method \"{partmethod}\" (replication model \"{repmodel}\")")),
        }
    }

    /// How many shards one statement on it reaches.
    pub fn shards(self) -> i64 {
        match self {
            CitusTable::Distributed { shards } => shards.max(1),
            CitusTable::Reference | CitusTable::Local => 1,
        }
    }
}

/// Whether the `citus` extension is installed in this database.
fn installed() -> bool {
    spi(Spi::get_one::<bool>("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus')")) == Some(true)
}

/// What Citus makes of a table; None without Citus, or for a table Citus does not know.
pub fn table(relid: pg_sys::Oid) -> Option<CitusTable> {
    if !installed() {
        return None;
    }
    let row = spi(Spi::connect(|client| {
        let rows = client.select(
            "SELECT p.partmethod::pg_catalog.text, p.repmodel::pg_catalog.text, p.colocationid OPERATOR(pg_catalog.<>) 0,
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_shard s
                      WHERE s.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) $1)
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[relid.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = rows.first();
        Ok(Some((
            row.get::<String>(1)?.unwrap_or_default(),
            row.get::<String>(2)?.unwrap_or_default(),
            row.get::<bool>(3)?.unwrap_or(false),
            row.get::<i64>(4)?.unwrap_or(1),
        )))
    }))?;
    let (partmethod, repmodel, colocated, shards) = row;
    Some(
        CitusTable::from_metadata(&partmethod, &repmodel, colocated, shards)
            .unwrap_or_else(|message| error!("pg_retention: {message}")),
    )
}

/// Whether this database is on a Citus worker node (one whose group is not the coordinator's):
/// it sees the coordinator's tables through synced metadata, and a statement on them from here
/// reaches the same shards a run on the coordinator does.
pub fn on_worker_node() -> bool {
    installed()
        && spi(Spi::get_one::<i32>(
            "SELECT groupid FROM pg_catalog.pg_dist_local_group",
        ))
        .is_some_and(|group| group != 0)
}

/// `work` with one connection per worker node for each statement (Citus opens up to
/// `citus.max_adaptive_executor_pool_size`, 16 by default, to run a statement's shard tasks in
/// parallel): a retention run is background work and leaves connection slots and cores to the
/// application. Measured here, a batch also goes faster so (see docs/citus.md).
pub fn with_one_connection_per_node<R>(work: impl FnOnce() -> R) -> R {
    const POOL: &CStr = c"citus.max_adaptive_executor_pool_size";
    with_settings(&[(POOL, c"1")], work)
}

#[cfg(test)]
mod tests {
    use super::CitusTable;

    #[test]
    fn citus_metadata_names_the_table_type() {
        assert_eq!(
            CitusTable::from_metadata("h", "s", true, 32),
            Ok(CitusTable::Distributed { shards: 32 })
        );
        assert_eq!(
            CitusTable::from_metadata("n", "t", true, 1),
            Ok(CitusTable::Reference)
        );
        assert_eq!(
            CitusTable::from_metadata("n", "s", false, 1),
            Ok(CitusTable::Local)
        );
        // A table of a distributed schema: one shard, co-located with its schema's tables.
        assert_eq!(
            CitusTable::from_metadata("n", "s", true, 1),
            Ok(CitusTable::Distributed { shards: 1 })
        );
        assert!(CitusTable::from_metadata("x", "s", true, 1).is_err());
    }

    #[test]
    fn a_statement_reaches_every_shard_of_a_distributed_table_and_one_of_the_others() {
        assert_eq!(CitusTable::Distributed { shards: 32 }.shards(), 32);
        assert_eq!(CitusTable::Distributed { shards: 0 }.shards(), 1);
        assert_eq!(CitusTable::Reference.shards(), 1);
        assert_eq!(CitusTable::Local.shards(), 1);
    }
}

//! How a run splits its work into batches: one plan, chosen once per run, that carries its own
//! statements and its place between batches.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

use super::partitions::Members;
use super::sql::{self, BlockRange, CtidBatch, Parts, RecordingStatements, TimeRanges, TimeSlices};
use super::stride;
use crate::citus::{self, CitusTable};
use crate::error::spi;
use crate::policy::{Action, Policy, Target, TimeType};

/// Above this share of the table past the cutoff, reading it block by block beats the index.
const BLOCK_RANGE_SHARE: f64 = 0.2;

pub enum BatchPlan {
    /// A plain table with a large backlog or no usable index: ranges of blocks, each page read
    /// once, the range growing or shrinking so that a batch holds about `batch_size` rows.
    Blocks { statement: BlockRange, cursor: BlockCursor },
    /// An indexed timestamp column: slices of time of about `batch_size` rows each.
    TimeRanges {
        statements: TimeRanges,
        /// The time the last batch ended at; the next starts after it.
        after: Option<String>,
        /// A time with more rows than a batch, being worked through.
        tie: Option<String>,
    },
    /// A partitioned table or an inheritance parent: wholly expired partitions removed, each
    /// other member purged on its own with one of these plans.
    Members(Box<Members>),
    /// A Citus table: slices of time, each pushed down to every shard (see `TimeSlices`).
    /// None: nothing was past the cutoff when the run began.
    TimeSlices { statements: TimeSlices, cursor: Option<SliceCursor> },
    /// Anything else (a date column without an index; a tree whose members cannot be purged
    /// apart from it): the next rows by ctid.
    Ctid(CtidBatch),
    /// twilio_recording: batches read in key order; `after` is the last key read.
    Recordings { statements: RecordingStatements, after: Option<String> },
}

/// Where the next block range starts, how many blocks it spans, and the table's size in
/// blocks when the run began (later blocks are the next run's). Block numbers mean something
/// only in one file of the table: `file` is the one they count in.
pub struct BlockCursor {
    next: i64,
    step: i64,
    end: i64,
    relid: pg_sys::Oid,
    file: TableFile,
}

/// Where the next slice of time starts, how long it is, and the cutoff, in microseconds since
/// the epoch; the rows a slice should hold.
pub struct SliceCursor {
    /// The lower bound of the next slice: None for the first (no row is older than it).
    lower: Option<i64>,
    /// Where the next slice's length counts from: its lower bound, or the first row after it.
    from: i64,
    step: i64,
    end: i64,
    /// The shortest slice: a day for a date column (shorter ones would hold nothing).
    min_step: i64,
    wanted: i64,
}

/// A table's current file (`relfilenode`; a rewrite such as VACUUM FULL, CLUSTER or ALTER
/// COLUMN TYPE makes a new one) and its size in blocks.
#[derive(PartialEq)]
struct TableFile {
    filenode: Option<pg_sys::Oid>,
    blocks: i64,
}

impl TableFile {
    fn of(relid: pg_sys::Oid) -> TableFile {
        let (filenode, blocks) = spi(Spi::get_two_with_args::<pg_sys::Oid, i64>(
            "SELECT pg_catalog.pg_relation_filenode($1),
                    pg_catalog.pg_relation_size($1) OPERATOR(pg_catalog./) pg_catalog.current_setting('block_size')::pg_catalog.int8",
            &[relid.into()],
        ));
        TableFile { filenode, blocks: blocks.unwrap_or(0) }
    }
}

impl BatchPlan {
    /// `counted`: the rows past the cutoff, when the caller has counted them already (the run
    /// does, for `retention.progress`): not counted again.
    pub fn choose(policy: &Policy, target: &Target, parts: &Parts, cutoff: TimestampWithTimeZone, counted: Option<i64>) -> BatchPlan {
        if policy.action == Action::TwilioRecording {
            return BatchPlan::Recordings { statements: RecordingStatements::new(parts, policy, target), after: None };
        }
        if target.has_children {
            if let Some(members) = Members::choose(policy, target, parts, cutoff) {
                return BatchPlan::Members(Box::new(members));
            }
        }
        if let Some(table) = target.citus {
            return time_slices(policy, target, parts, cutoff, table);
        }
        let ranges = target.time_indexed && target.time_type != TimeType::Date;
        if !target.has_children {
            if let Some(cursor) = block_cursor(policy, target, parts, cutoff, ranges, counted) {
                return BatchPlan::Blocks { statement: BlockRange::new(parts), cursor };
            }
        }
        if ranges {
            return BatchPlan::TimeRanges { statements: TimeRanges::new(parts), after: None, tie: None };
        }
        BatchPlan::Ctid(CtidBatch::new(parts))
    }

    /// delete / soft_delete: one batch. Returns the rows it touched and whether more may remain.
    pub fn row_batch(&mut self, cutoff: TimestampWithTimeZone, batch_size: i64, reason: Option<&str>) -> (i64, bool) {
        match self {
            BatchPlan::Blocks { statement, cursor } => {
                let processed = statement.run(cutoff, cursor.next, cursor.next + cursor.step, reason) as i64;
                cursor.advance(processed, batch_size);
                // Read after the batch's statement, whose lock keeps the file from changing
                // until commit: the file the batch worked in.
                cursor.follow_rewrite();
                if processed == 0 && cursor.next < cursor.end {
                    // Empty blocks (an earlier run's, say): go straight to the next row past the
                    // cutoff rather than widen the range until it holds many batches.
                    cursor.next = statement.seek(cutoff, cursor.next, cursor.end).unwrap_or(cursor.end);
                }
                (processed, cursor.next < cursor.end)
            }
            BatchPlan::TimeRanges { statements, after, tie } => time_range_batch(statements, after, tie, cutoff, batch_size, reason),
            BatchPlan::Members(members) => members.batch(cutoff, batch_size, reason),
            BatchPlan::TimeSlices { statements, cursor } => match cursor {
                Some(cursor) => citus::with_one_connection_per_node(|| cursor.batch(statements, cutoff, reason)),
                None => (0, false),
            },
            BatchPlan::Ctid(statement) => {
                let processed = statement.run(cutoff, batch_size, reason) as i64;
                (processed, processed >= batch_size)
            }
            BatchPlan::Recordings { .. } => unreachable!("recording batches go through engine::recordings"),
        }
    }

    /// A batched run's plan: partitions are detached, counted after, dropped by the dropper.
    pub fn set_batched(&mut self, run_id: Option<i64>) {
        if let BatchPlan::Members(members) = self {
            members.set_batched(run_id);
        }
    }

    /// Whether the run counted detached partitions for the dropper to drop; asking clears it.
    pub fn take_detached(&mut self) -> bool {
        match self {
            BatchPlan::Members(members) => members.take_detached(),
            _ => false,
        }
    }

    /// What happened to partitions since the last call (a partitioned table's plan only).
    pub fn take_partition_outcomes(&mut self) -> Vec<serde_json::Value> {
        match self {
            BatchPlan::Members(members) => members.take_outcomes(),
            _ => Vec::new(),
        }
    }
}

impl SliceCursor {
    /// Acts on the next slice; sizes the one after it from the rows this one held.
    fn batch(&mut self, statements: &TimeSlices, cutoff: TimestampWithTimeZone, reason: Option<&str>) -> (i64, bool) {
        // The last slice reaches the cutoff: rows written meanwhile at its edge go with it.
        let upper = self.from.checked_add(self.step).filter(|upper| *upper < self.end);
        let processed = statements.run(cutoff, self.lower, upper, reason) as i64;
        let Some(upper) = upper else { return (processed, false) };
        self.lower = Some(upper);
        self.from = upper;
        self.step = stride::next(self.step, processed, self.wanted, self.min_step);
        if processed == 0 {
            // An empty stretch of time: the next slice starts at the next row, not a step on.
            match statements.seek(cutoff, upper) {
                Some(next) => self.from = next.max(upper),
                None => return (0, false),
            }
        }
        (processed, true)
    }
}

impl BlockCursor {
    /// A rewrite between two batches moved every row to a new file, packed towards its start:
    /// the block numbers done so far mean nothing there, so the cursor starts over in it.
    fn follow_rewrite(&mut self) {
        let now = TableFile::of(self.relid);
        if now.filenode != self.file.filenode {
            self.next = 0;
            self.end = now.blocks;
            self.step = self.step.clamp(1, self.end.max(1));
            self.file = now;
        }
    }

    /// Moves past the range just done and sizes the next so that it holds about `wanted` rows:
    /// it may grow at most twofold (rows are not spread evenly), and shrinks as far as the last
    /// range says (an empty range keeps the step: the next row is sought instead).
    fn advance(&mut self, processed: i64, wanted: i64) {
        self.next += self.step;
        self.step = stride::next(self.step, processed, wanted, 1).clamp(1, self.end.max(1));
    }
}

/// A Citus table's plan. A batch holds `batch_size` rows on each shard: each shard's share of
/// it is as large as one batch on a single node, and the shards work on theirs side by side.
fn time_slices(policy: &Policy, target: &Target, parts: &Parts, cutoff: TimestampWithTimeZone, table: CitusTable) -> BatchPlan {
    let statements = TimeSlices::new(parts);
    let wanted = i64::from(policy.batch_size).saturating_mul(table.shards());
    let min_step = if target.time_type == TimeType::Date { 86_400_000_000 } else { 1 };
    let cursor = citus::with_one_connection_per_node(|| statements.start(cutoff)).map(|(first, rows, end)| SliceCursor {
        lower: None,
        from: first,
        step: stride::first(end.saturating_sub(first), rows, wanted, min_step),
        end,
        min_step,
        wanted,
    });
    BatchPlan::TimeSlices { statements, cursor }
}

/// Block ranges when the table has no usable index, or when much of it is past the cutoff:
/// then the index would visit the same pages over and over, batch after batch.
fn block_cursor(policy: &Policy, target: &Target, parts: &Parts, cutoff: TimestampWithTimeZone, indexed: bool, counted: Option<i64>) -> Option<BlockCursor> {
    let file = TableFile::of(target.relid);
    let tuples = spi(Spi::get_one_with_args::<f64>(
        "SELECT c.reltuples::pg_catalog.float8 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[target.relid.into()],
    ))
    .unwrap_or(-1.0);
    let blocks = file.blocks;
    let expired = if indexed {
        // An index-only count: cheap next to the purge it decides on.
        counted.unwrap_or_else(|| sql::count(parts, cutoff)) as f64
    } else {
        // No index to count with: assume every row may be past the cutoff (small first
        // steps; they double while batches come out small). Unanalyzed: ~50 rows a block.
        if tuples >= 0.0 { tuples } else { blocks as f64 * 50.0 }
    };
    // A table never analyzed (reltuples -1) keeps to its index: the share is unknown.
    if blocks == 0 || (indexed && (tuples < 0.0 || expired < BLOCK_RANGE_SHARE * tuples.max(1.0))) {
        return None;
    }
    let step = stride::first(blocks, expired as i64, i64::from(policy.batch_size), 1);
    Some(BlockCursor { next: 0, step, end: blocks, relid: target.relid, file })
}

/// The next `batch_size` rows in time order, each read once. Ties of the batch's last time go
/// with it; when they are more than a batch (rows written together with one timestamp), they
/// go `batch_size` at a time.
fn time_range_batch(
    statements: &TimeRanges,
    after: &mut Option<String>,
    tie: &mut Option<String>,
    cutoff: TimestampWithTimeZone,
    batch_size: i64,
    reason: Option<&str>,
) -> (i64, bool) {
    if let Some(tied) = tie.take() {
        let n = statements.act_ties(cutoff, &tied, batch_size, reason) as i64;
        // Done with this time once a batch comes out short: go on after it.
        if n < batch_size {
            *after = Some(tied);
        } else {
            *tie = Some(tied);
        }
        return (n, true);
    }
    let end = statements.end(cutoff, after.as_deref(), batch_size);
    let many_ties = end.as_deref().is_some_and(|end| statements.too_many_ties(cutoff, end, batch_size));
    let n = statements.act(cutoff, after.as_deref(), end.as_deref(), !many_ties, reason) as i64;
    match (end, many_ties) {
        (None, _) => (n, false),
        // Up to the tied time, not including it; its rows go `batch_size` at a time next.
        (Some(end), true) => {
            *tie = Some(end);
            (n, true)
        }
        (Some(end), false) => {
            *after = Some(end);
            (n, true)
        }
    }
}

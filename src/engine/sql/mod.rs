//! The SQL a run executes, built once per run from Postgres-quoted names. Each statement is a
//! type whose `run` takes its parameters by name; the `$n` they bind to are written beside
//! the SQL, in one place. `$1` is always the cutoff (timestamptz); "reason" is
//! `Policy::reason()`, passed always, NULL and unused when the policy has none.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::error::spi;
use crate::statement::{execute, one};
use crate::policy::holds::{self, Hold};
use crate::policy::{Action, Policy, Target, TimeType};

mod counts;
pub use counts::{count, estimate, held, preview, recordings_preview};

/// What every statement of a policy is made of.
#[derive(Clone)]
pub struct Parts {
    table: String,
    /// What statements read and change: the table, or `ONLY` one member of its tree.
    from: String,
    time_column: String,
    marker: Option<String>,
    /// What the marker is set to: now, in the marker column's own type.
    marked_at: &'static str,
    reason: Option<String>,
    /// The rows a run may touch: past the cutoff (`$1`), for marking actions not yet marked, and
    /// kept by no legal hold.
    predicate: String,
    /// The rows past the cutoff (and unmarked) that active holds keep; None without holds.
    held: Option<String>,
    /// The cutoff in the time column's own type.
    cutoff: &'static str,
    time_type: TimeType,
    action: Action,
}

impl Parts {
    pub fn new(policy: &Policy, target: &Target) -> Parts {
        let quote = |name: &Option<String>| name.as_deref().map(quote_identifier);
        let time_column = quote_identifier(&policy.time_column);
        let marker = quote(&policy.soft_delete_column);
        let cutoff = target.time_type.cutoff_expr();
        let predicate = match (&marker, policy.action.marks_rows()) {
            (Some(marker), true) => format!("{time_column} OPERATOR(pg_catalog.<) {cutoff} AND {marker} IS NULL"),
            _ => format!("{time_column} OPERATOR(pg_catalog.<) {cutoff}"),
        };
        let table = policy.qualified_table();
        Parts {
            from: table.clone(),
            table,
            time_column,
            marker,
            // A timestamp without time zone holds UTC, like the time columns: never the
            // session's local time.
            marked_at: match target.marker_type {
                Some(TimeType::Timestamp) => "pg_catalog.timezone('UTC', pg_catalog.now())",
                _ => "pg_catalog.now()",
            },
            reason: quote(&policy.reason_column),
            predicate,
            held: None,
            cutoff,
            time_type: target.time_type,
            action: policy.action,
        }
    }

    /// The same statements, leaving the rows that `holds` keep (see `policy::holds`).
    pub fn with_holds(self, holds: &[Hold]) -> Parts {
        let Some(kept) = holds::held_rows(holds) else { return self };
        Parts { predicate: format!("{} AND NOT {kept}", self.predicate), held: Some(format!("{} AND {kept}", self.predicate)), ..self }
    }

    /// The same statements on one partition or inheritance member alone (`ONLY`: not its
    /// children), whose Postgres-quoted name is `table`.
    pub fn for_member(&self, table: String) -> Parts {
        Parts { from: format!("ONLY {table}"), table, ..self.clone() }
    }

    /// The SET list of a marking statement; `reason_param` is where the reason is bound.
    fn set_marker(&self, reason_param: &str) -> String {
        let marker = self.marker.as_deref().unwrap_or_default();
        match &self.reason {
            Some(reason) => format!("{marker} = {}, {reason} = {reason_param}", self.marked_at),
            None => format!("{marker} = {}", self.marked_at),
        }
    }

    /// `DELETE FROM table WHERE <condition>`, or the marking UPDATE, per the policy's action.
    fn act(&self, condition: &str, reason_param: &str) -> String {
        let table = &self.from;
        match self.action {
            Action::Delete => format!("DELETE FROM {table} WHERE {condition}"),
            _ => format!("UPDATE {table} SET {} WHERE {condition}", self.set_marker(reason_param)),
        }
    }
}

/// One batch of rows picked by ctid: for tables no other plan suits (partitioned, date column).
/// A changed row is re-checked against the whole WHERE clause before it is touched, so a batch
/// never reaches outside the predicate, whichever way it picks its rows.
pub struct CtidBatch(String);

impl CtidBatch {
    pub fn new(parts: &Parts) -> CtidBatch {
        let (table, predicate) = (&parts.from, &parts.predicate);
        // $1 cutoff, $2 batch size, $3 reason.
        CtidBatch(parts.act(&format!("ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM {table} WHERE {predicate} LIMIT $2)) AND {predicate}"), "$3"))
    }

    pub fn run(&self, cutoff: TimestampWithTimeZone, batch_size: i64, reason: Option<&str>) -> usize {
        execute(&self.0, || vec![cutoff.into(), batch_size.into(), reason.into()])
    }
}

/// The rows past the cutoff in a range of blocks of a plain table: each page read once, as a
/// sequential DELETE reads it. For large backlogs, and for tables without an index.
pub struct BlockRange {
    act: String,
    seek: String,
}

impl BlockRange {
    pub fn new(parts: &Parts) -> BlockRange {
        let within = format!(
            "ctid OPERATOR(pg_catalog.>=) $2::pg_catalog.tid AND ctid OPERATOR(pg_catalog.<) $3::pg_catalog.tid AND {}",
            parts.predicate
        );
        BlockRange {
            // $1 cutoff, $2 first tid (inclusive), $3 end tid (exclusive), $4 reason.
            act: parts.act(&within, "$4"),
            // $1 cutoff, $2 first tid, $3 end tid: the block of the first row past the cutoff in
            // the range, in physical order (a TID range scan that stops at it); NULL if none.
            seek: format!(
                "SELECT (SELECT (ctid::pg_catalog.text::pg_catalog.point)[0]::pg_catalog.int8 FROM {} WHERE {within} LIMIT 1)",
                parts.from
            ),
        }
    }

    /// Acts on the rows past `cutoff` in blocks `from_block` up to (not including) `to_block`.
    pub fn run(&self, cutoff: TimestampWithTimeZone, from_block: i64, to_block: i64, reason: Option<&str>) -> usize {
        let (from, to) = (format!("({from_block},0)"), format!("({to_block},0)"));
        execute(&self.act, || vec![cutoff.into(), from.as_str().into(), to.as_str().into(), reason.into()])
    }

    /// The first block from `from_block` up to `to_block` holding a row past `cutoff`.
    pub fn seek(&self, cutoff: TimestampWithTimeZone, from_block: i64, to_block: i64) -> Option<i64> {
        let (from, to) = (format!("({from_block},0)"), format!("({to_block},0)"));
        one::<i64>(&self.seek, || vec![cutoff.into(), from.as_str().into(), to.as_str().into()])
    }
}

/// Batches along the time column's index: each batch the next slice of time holding about
/// a batch of rows, read once. Time values travel as text in the column's own type.
pub struct TimeRanges {
    end: String,
    ties: String,
    act: String,
    act_ties: String,
}

impl TimeRanges {
    /// Only for timestamp and timestamptz columns with an index: dates have too many ties.
    pub fn new(parts: &Parts) -> TimeRanges {
        let (table, from, time_column, predicate) = (&parts.table, &parts.from, &parts.time_column, &parts.predicate);
        let column_type = parts.time_type.sql_type();
        let after = format!("($2::pg_catalog.text IS NULL OR {time_column} OPERATOR(pg_catalog.>) CAST($2 AS {column_type}))");
        let at = format!("{time_column} OPERATOR(pg_catalog.=) CAST($2 AS {column_type})");
        let upto = format!(
            "($3::pg_catalog.text IS NULL OR {time_column} OPERATOR(pg_catalog.<) CAST($3 AS {column_type})
              OR ($5 AND {time_column} OPERATOR(pg_catalog.=) CAST($3 AS {column_type})))"
        );
        TimeRanges {
            // $1 cutoff, $2 after (NULL at first), $3 batch size. ORDER BY names the table's
            // column: a bare name would sort by the text output column.
            // A scalar subquery: one row, NULL when fewer than a batch remain.
            end: format!(
                "SELECT (SELECT {time_column}::pg_catalog.text FROM {from} WHERE {predicate} AND {after}
                          ORDER BY {table}.{time_column} OFFSET $3 OPERATOR(pg_catalog.-) 1 LIMIT 1)"
            ),
            // $1 cutoff, $2 the tied time, $3 batch size.
            ties: format!("SELECT pg_catalog.count(*) FROM (SELECT FROM {from} WHERE {predicate} AND {at} LIMIT $3 OPERATOR(pg_catalog.+) 1) tied"),
            // $1 cutoff, $2 after, $3 end (NULL: up to the cutoff), $4 reason, $5 whether end is included.
            act: parts.act(&format!("{predicate} AND {after} AND {upto}"), "$4"),
            // $1 cutoff, $2 the tied time, $3 batch size, $4 reason.
            act_ties: parts.act(
                &format!("ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM {from} WHERE {predicate} AND {at} LIMIT $3)) AND {predicate} AND {at}"),
                "$4",
            ),
        }
    }

    /// The time at which a batch of `batch_size` rows after `after` ends; None when fewer remain.
    pub fn end(&self, cutoff: TimestampWithTimeZone, after: Option<&str>, batch_size: i64) -> Option<String> {
        one::<String>(&self.end, || vec![cutoff.into(), after.into(), batch_size.into()])
    }

    /// Whether more than `batch_size` rows share exactly the time `at`: ties one batch cannot hold.
    pub fn too_many_ties(&self, cutoff: TimestampWithTimeZone, at: &str, batch_size: i64) -> bool {
        one::<i64>(&self.ties, || vec![cutoff.into(), at.into(), batch_size.into()]).unwrap_or(0) > batch_size
    }

    /// Acts on the rows after `after` up to `end` (None: up to the cutoff), `end` itself included or not.
    pub fn act(&self, cutoff: TimestampWithTimeZone, after: Option<&str>, end: Option<&str>, include_end: bool, reason: Option<&str>) -> usize {
        execute(&self.act, || vec![cutoff.into(), after.into(), end.into(), reason.into(), include_end.into()])
    }

    /// Acts on at most `batch_size` rows with exactly the time `at`.
    pub fn act_ties(&self, cutoff: TimestampWithTimeZone, at: &str, batch_size: i64, reason: Option<&str>) -> usize {
        execute(&self.act_ties, || vec![cutoff.into(), at.into(), batch_size.into(), reason.into()])
    }
}

/// Slices of time, for Citus tables: each batch one statement that Citus pushes down to every
/// shard, the rows past the cutoff in `[lower, upper)`. The slice boundaries are microseconds
/// since the epoch in UTC, converted to the column's type by one expression, so that the upper
/// bound of a slice and the lower bound of the next are the same value and no row falls
/// between them (a NULL bound: unbounded). Only aggregates (`min`, `count`) are asked for
/// besides, which Citus computes on each shard.
pub struct TimeSlices {
    start: String,
    seek: String,
    act: String,
}

impl TimeSlices {
    pub fn new(parts: &Parts) -> TimeSlices {
        let (from, time_column, predicate) = (&parts.from, &parts.time_column, &parts.predicate);
        let micros = |expr: &str| format!("(pg_catalog.extract('epoch', {expr}) OPERATOR(pg_catalog.*) 1000000::pg_catalog.numeric)::pg_catalog.int8");
        let bound = |param: &str| {
            parts.time_type.from_timestamptz(&format!("pg_catalog.to_timestamp({param}::pg_catalog.float8 OPERATOR(pg_catalog./) 1000000::pg_catalog.float8)"))
        };
        let first = micros(&format!("pg_catalog.min({time_column})"));
        let (lower, upper) = (bound("$2"), bound("$3"));
        TimeSlices {
            // $1 cutoff: the first row's time, the rows, the cutoff, in the column's type.
            start: format!("SELECT {first}, pg_catalog.count(*), {} FROM {from} WHERE {predicate}", micros(parts.cutoff)),
            // $1 cutoff, $2 from: the time of the first row at or after it.
            seek: format!("SELECT {first} FROM {from} WHERE {predicate} AND {time_column} OPERATOR(pg_catalog.>=) {lower}"),
            // $1 cutoff, $2 lower bound (inclusive), $3 upper bound (exclusive), $4 reason.
            act: parts.act(
                &format!(
                    "{predicate} AND ($2::pg_catalog.int8 IS NULL OR {time_column} OPERATOR(pg_catalog.>=) {lower})
                                 AND ($3::pg_catalog.int8 IS NULL OR {time_column} OPERATOR(pg_catalog.<) {upper})"
                ),
                "$4",
            ),
        }
    }

    /// The first row's time, how many rows are past the cutoff, and the cutoff; None if none are.
    pub fn start(&self, cutoff: TimestampWithTimeZone) -> Option<(i64, i64, i64)> {
        let (first, rows, end) = spi(Spi::connect(|client| {
            let rows = client.select(&self.start, Some(1), &[cutoff.into()])?;
            let row = rows.first();
            Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?, row.get::<i64>(2)?, row.get::<i64>(3)?))
        }));
        Some((first?, rows.filter(|rows| *rows > 0)?, end?))
    }

    /// The time of the first row past the cutoff at or after `from`.
    pub fn seek(&self, cutoff: TimestampWithTimeZone, from: i64) -> Option<i64> {
        one::<i64>(&self.seek, || vec![cutoff.into(), from.into()])
    }

    /// Acts on the rows past the cutoff from `lower` (inclusive) to `upper` (exclusive).
    pub fn run(&self, cutoff: TimestampWithTimeZone, lower: Option<i64>, upper: Option<i64>, reason: Option<&str>) -> usize {
        execute(&self.act, || vec![cutoff.into(), lower.into(), upper.into(), reason.into()])
    }
}

/// twilio_recording: the next rows to send, and the mark of those Twilio confirmed.
pub struct RecordingStatements {
    fetch: String,
    mark: String,
    mark_missing: String,
}

/// One batch of recordings as read before any Twilio call: keys as text, SIDs and accounts
/// as stored (accounts all NULL without an account column).
pub struct Fetched {
    pub keys: Vec<String>,
    pub sids: Vec<Option<String>>,
    pub accounts: Vec<Option<String>>,
    /// Each row's S3 keys, one per `s3_key_columns` (NULL: no object there).
    pub objects: Vec<Vec<Option<String>>>,
}

/// The rows of a batch whose deletions were all confirmed: to mark while they still name
/// what was deleted.
#[derive(Default)]
pub struct Confirmed {
    pub keys: Vec<String>,
    pub sids: Vec<String>,
    pub accounts: Vec<Option<String>>,
    pub objects: Vec<Vec<Option<String>>>,
}

impl RecordingStatements {
    pub fn new(parts: &Parts, policy: &Policy, target: &Target) -> RecordingStatements {
        let (table, time_column, predicate, cutoff) = (&parts.table, &parts.time_column, &parts.predicate, parts.cutoff);
        let id = quote_identifier(policy.id_column.as_deref().unwrap_or_default());
        let sid = quote_identifier(policy.sid_column.as_deref().unwrap_or_default());
        let id_type = target.id_type.as_deref().unwrap_or("pg_catalog.text");
        let marker = parts.marker.as_deref().unwrap_or_default();
        let account = policy.account_column.as_deref().map(quote_identifier);
        let account_read = account.as_ref().map_or("NULL".to_string(), |a| format!("{a}::pg_catalog.text"));
        // The row is marked only while its account is still the one the DELETE went under.
        let same_account = account.as_ref().map_or(String::new(), |a| format!("AND t.{a}::pg_catalog.text OPERATOR(pg_catalog.=) confirmed.account"));
        // And only while each of its S3 key columns still holds the key deleted: one array
        // parameter per column from $6 (plain text comparisons, which Citus pushes down).
        let key_columns: Vec<String> = policy.s3_key_columns.iter().map(|c| quote_identifier(c)).collect();
        let objects_read = match key_columns.is_empty() {
            true => "NULL::pg_catalog.text[]".to_string(),
            false => format!("ARRAY[{}]::pg_catalog.text[]", key_columns.iter().map(|c| format!("{c}::pg_catalog.text")).collect::<Vec<_>>().join(", ")),
        };
        let objects_unnest: String = (0..key_columns.len()).map(|i| format!(", pg_catalog.unnest(${}::pg_catalog.text[])", 6 + i)).collect();
        let objects_names: String = (0..key_columns.len()).map(|i| format!(", object{i}")).collect();
        let same_objects: String =
            key_columns.iter().enumerate().map(|(i, c)| format!(" AND t.{c}::pg_catalog.text IS NOT DISTINCT FROM confirmed.object{i}")).collect();
        RecordingStatements {
            // $1 cutoff, $2 the last key seen (text, NULL at first), $3 batch size. ORDER BY
            // names the table's column: a bare name would sort by the text output column.
            fetch: format!(
                "SELECT {id}::pg_catalog.text, {sid}::pg_catalog.text, {account_read}, {objects_read} FROM {table}
                  WHERE {predicate} AND ($2::pg_catalog.text IS NULL OR {id} OPERATOR(pg_catalog.>) CAST($2 AS {id_type}))
                  ORDER BY {table}.{id} LIMIT $3"
            ),
            // $1 cutoff, $2 keys (text[]), $3 their SIDs (text[]), $4 reason, $5 their accounts
            // (text[]), from $6 their S3 keys (text[] per key column). Only rows of this batch,
            // and only while their SID is still the one Twilio confirmed.
            mark: format!(
                "UPDATE {table} AS t SET {} FROM ROWS FROM (pg_catalog.unnest(CAST($2 AS {id_type}[])), pg_catalog.unnest($3::pg_catalog.text[]),
                                                        pg_catalog.unnest($5::pg_catalog.text[]){objects_unnest}) AS confirmed(key, sid, account{objects_names})
                  WHERE t.{id} OPERATOR(pg_catalog.=) confirmed.key AND t.{sid}::pg_catalog.text OPERATOR(pg_catalog.=) confirmed.sid {same_account}{same_objects}
                    AND t.{time_column} OPERATOR(pg_catalog.<) {cutoff} AND t.{marker} IS NULL",
                parts.set_marker("$4"),
            ),
            // $1 cutoff, $2 keys (text[]), $3 their SIDs as fetched (text[], NULLs included),
            // $4 reason. Rows with no valid SID (missing_sid => 'mark'), while it is still the one read.
            mark_missing: format!(
                "UPDATE {table} AS t SET {} FROM ROWS FROM (pg_catalog.unnest(CAST($2 AS {id_type}[])), pg_catalog.unnest($3::pg_catalog.text[])) AS fetched(key, sid)
                  WHERE t.{id} OPERATOR(pg_catalog.=) fetched.key AND t.{sid}::pg_catalog.text IS NOT DISTINCT FROM fetched.sid
                    AND t.{time_column} OPERATOR(pg_catalog.<) {cutoff} AND t.{marker} IS NULL",
                parts.set_marker("$4"),
            ),
        }
    }

    /// The next `batch_size` unmarked recordings past the cutoff with a key after `after`.
    pub fn fetch(&self, cutoff: TimestampWithTimeZone, after: Option<&str>, batch_size: i64) -> Fetched {
        spi(Spi::connect(|client| {
            let rows = client.select(&self.fetch, None, &[cutoff.into(), after.into(), batch_size.into()])?;
            let capacity = rows.len();
            let mut fetched = Fetched {
                keys: Vec::with_capacity(capacity),
                sids: Vec::with_capacity(capacity),
                accounts: Vec::with_capacity(capacity),
                objects: Vec::with_capacity(capacity),
            };
            for row in rows {
                fetched.keys.push(row.get::<String>(1)?.unwrap_or_default());
                fetched.sids.push(row.get::<String>(2)?);
                fetched.accounts.push(row.get::<String>(3)?);
                fetched.objects.push(row.get::<Vec<Option<String>>>(4)?.unwrap_or_default());
            }
            Ok::<_, pgrx::spi::Error>(fetched)
        }))
    }

    /// Marks the rows with these keys that have no valid SID (still the SID read), with `reason`.
    pub fn mark_missing(&self, cutoff: TimestampWithTimeZone, keys: Vec<String>, sids: Vec<Option<String>>, reason: Option<&str>) -> usize {
        execute(&self.mark_missing, || vec![cutoff.into(), keys.into(), sids.into(), reason.into()])
    }

    /// Marks the rows with these keys whose SID (and account) is still the one Twilio confirmed.
    pub fn mark(&self, cutoff: TimestampWithTimeZone, confirmed: Confirmed, reason: Option<&str>) -> usize {
        // Each row's keys, one array per key column.
        let columns = confirmed.objects.first().map_or(0, Vec::len);
        let by_column: Vec<Vec<Option<String>>> = (0..columns).map(|c| confirmed.objects.iter().map(|keys| keys.get(c).cloned().flatten()).collect()).collect();
        execute(&self.mark, || {
            let mut args = vec![cutoff.into(), confirmed.keys.into(), confirmed.sids.into(), reason.into(), confirmed.accounts.into()];
            args.extend(by_column.into_iter().map(Into::into));
            args
        })
    }
}

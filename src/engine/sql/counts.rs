//! The counting statements: what a preview shows, what holds keep, and how many rows a run
//! expects (`retention.progress`). Same predicate as the run's own statements.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::spi::quote_identifier;
use pgrx::JsonB;

use super::Parts;
use crate::policy::{Policy, TimeType};
use crate::statement::one;

/// How many rows past the cutoff the holds keep now (0 without holds); in `table`, `ONLY`
/// when it is given (a partition about to be removed).
pub fn held(parts: &Parts, cutoff: TimestampWithTimeZone, table: Option<&str>) -> i64 {
    let Some(held) = &parts.held else { return 0 };
    let from = table.map(|t| format!("ONLY {t}")).unwrap_or_else(|| parts.from.clone());
    one::<i64>(&format!("SELECT pg_catalog.count(*) FROM {from} WHERE {held}"), || vec![cutoff.into()]).unwrap_or(0)
}

/// A recordings policy's dry run: of the rows a run would read now (holds applied), how many
/// would be sent to Twilio and how many skipped, by reason; with an account column, how many
/// valid SIDs have no usable account (NULL or malformed: never sent). The shapes are the
/// client's (`twilio::is_recording_sid`, `is_account_sid`): `RE`/`AC` + 32 hex digits.
pub fn recordings_preview(parts: &Parts, policy: &Policy, sid_column: &str, cutoff: TimestampWithTimeZone) -> Option<JsonB> {
    let account_column = policy.account_column.as_deref();
    let sid = quote_identifier(sid_column);
    let valid = format!("{sid}::pg_catalog.text OPERATOR(pg_catalog.~) '^RE[0-9a-fA-F]{{32}}$'");
    let (sendable, no_account) = match account_column {
        None => ("true".to_string(), String::new()),
        Some(column) => {
            let account = quote_identifier(column);
            let usable = format!("{account}::pg_catalog.text OPERATOR(pg_catalog.~) '^AC[0-9a-fA-F]{{32}}$'");
            (usable.clone(), format!("'no_account', pg_catalog.count(*) FILTER (WHERE {valid} AND ({usable}) IS NOT TRUE),"))
        }
    };
    // With an S3 store: the keys of the rows that would be sent, each deleted from it first.
    let s3_keys = match &policy.s3_store {
        None => String::new(),
        Some(_) => {
            let present: Vec<String> =
                policy.s3_key_columns.iter().map(|c| format!("({} IS NOT NULL)::pg_catalog.int4", quote_identifier(c))).collect();
            format!("'s3_keys', COALESCE(pg_catalog.sum({}) FILTER (WHERE {valid}), 0),", present.join(" OPERATOR(pg_catalog.+) "))
        }
    };
    let sql = format!(
        "SELECT pg_catalog.jsonb_build_object(
                    'would_send', pg_catalog.count(*) FILTER (WHERE {valid} AND ({sendable}) IS TRUE), {no_account} {s3_keys}
                    'would_skip', pg_catalog.jsonb_build_object(
                        'no_sid', pg_catalog.count(*) FILTER (WHERE {sid} IS NULL),
                        'malformed_sid', pg_catalog.count(*) FILTER (WHERE {sid} IS NOT NULL AND NOT ({valid}))))
           FROM {} WHERE {}",
        parts.from, parts.predicate
    );
    one::<JsonB>(&sql, || vec![cutoff.into()])
}

/// How many rows are past the cutoff now.
pub fn count(parts: &Parts, cutoff: TimestampWithTimeZone) -> i64 {
    let sql = format!("SELECT pg_catalog.count(*) FROM {} WHERE {}", parts.from, parts.predicate);
    one::<i64>(&sql, || vec![cutoff.into()]).unwrap_or(0)
}

/// What a run would touch now, with the same predicate: rows, the oldest time, and how far
/// past the cutoff (`$1`) it is (for `expires_at` the cutoff is now: how long ago it expired).
pub fn preview(parts: &Parts, cutoff: TimestampWithTimeZone) -> Option<JsonB> {
    let time_column = &parts.time_column;
    let age = match parts.time_type {
        TimeType::TimestampTz => format!("$1 OPERATOR(pg_catalog.-) pg_catalog.min({time_column})"),
        TimeType::Timestamp => format!("pg_catalog.timezone('UTC', $1) OPERATOR(pg_catalog.-) pg_catalog.min({time_column})"),
        TimeType::Date => format!(
            "pg_catalog.make_interval(days => pg_catalog.timezone('UTC', $1)::pg_catalog.date OPERATOR(pg_catalog.-) pg_catalog.min({time_column}))"
        ),
    };
    let sql = format!(
        "SELECT pg_catalog.jsonb_build_object('rows', pg_catalog.count(*), 'oldest', pg_catalog.min({time_column}), 'oldest_age', {age})
           FROM {} WHERE {}",
        parts.from, parts.predicate
    );
    one::<JsonB>(&sql, || vec![cutoff.into()])
}

/// The rows a run expects to take, for `retention.progress`: the count `preview` makes; on a
/// partition tree the planner's estimate of it, since counting exactly would read whole
/// partitions that the run removes by their bounds without reading a row.
pub fn estimate(parts: &Parts, cutoff: TimestampWithTimeZone, tree: bool) -> i64 {
    if !tree {
        return count(parts, cutoff);
    }
    let sql = format!("EXPLAIN (FORMAT JSON) SELECT FROM {} WHERE {}", parts.from, parts.predicate);
    let plan = one::<pgrx::Json>(&sql, || vec![cutoff.into()]).map(|json| json.0);
    plan.and_then(|plan| plan[0]["Plan"]["Plan Rows"].as_f64()).map_or(-1, |rows| rows as i64)
}

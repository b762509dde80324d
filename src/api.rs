//! The SQL surface. The three cleanup functions of the contract live in the extension's
//! schema (public by default); the general engine lives in schema `retention`.
//! EXECUTE on all of them is revoked from PUBLIC in `sql/finalize.sql`.

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::engine;
use crate::limits;
use crate::policy::{raise, Action, Policy, Rule};

/// The preset policies that `CREATE EXTENSION` adds (see `sql/finalize.sql`).
const TRACES_POLICY: &str = "expired_traces";
const AGENT_USAGE_POLICY: &str = "old_agent_usage";

fn required<T>(value: Option<T>, argument: &str) -> T {
    value.unwrap_or_else(|| {
        raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{argument} must not be NULL"), None)
    })
}

/// Deletes trace rows whose expiry is before now; rows with a NULL expiry stay.
/// Returns the number of rows deleted.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn cleanup_expired_traces() -> i64 {
    engine::run_in_transaction(TRACES_POLICY, None).rows_deleted()
}

/// Deletes agent-usage rows older than `days` days. Returns the number of rows deleted.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn cleanup_old_agent_usage(days: default!(Option<i32>, 90)) -> i64 {
    let days = limits::check_days(days).unwrap_or_else(|message| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message,
            Some("For example SELECT cleanup_old_agent_usage(90); nothing was deleted.".into()),
        )
    });
    engine::run_in_transaction(AGENT_USAGE_POLICY, Some(Interval::from_days(days))).rows_deleted()
}

/// The general engine, in schema `retention`.
#[pg_schema]
pub mod retention {
    use super::*;

    /// Runs a policy in the caller's transaction; `retain` overrides an older_than policy's interval.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn run_policy(policy_name: Option<&str>, retain: default!(Option<Interval>, "NULL")) -> JsonB {
        engine::run_in_transaction(required(policy_name, "policy_name"), retain).to_jsonb()
    }

    /// Dry run: how many rows a run would touch now, and the cutoff. Changes nothing.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn preview(policy_name: Option<&str>, retain: default!(Option<Interval>, "NULL")) -> JsonB {
        engine::preview(required(policy_name, "policy_name"), retain)
    }

    /// First step of `CALL retention.run_batched()`. Not for direct use.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn batched_start(policy_name: Option<&str>, retain: Option<Interval>) -> Option<i64> {
        engine::batched_start(required(policy_name, "policy_name"), retain)
    }

    /// One batch of `CALL retention.run_batched()`; true while rows may remain. Not for direct use.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn batched_step(run_id: i64) -> bool {
        engine::batched_step(run_id)
    }

    /// Last step of `CALL retention.run_batched()`. Not for direct use.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn batched_finish(run_id: i64, error: Option<&str>) -> JsonB {
        engine::batched_finish(run_id, error)
    }

    /// Validates every row written to `retention.policies`, however it is written, and stamps
    /// `updated_at`. The presets are inserted before this trigger exists (their tables may not).
    #[pg_trigger]
    fn policies_validate<'a>(
        trigger: &'a PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, PgHeapTupleError> {
        let Some(new) = trigger.new() else {
            return Ok(None);
        };
        let mut new = new.into_owned();
        let text = |column: &str| -> Option<String> {
            new.get_by_name::<String>(column).unwrap_or_else(|e| {
                raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("pg_retention: reading {column}: {e}"), None)
            })
        };
        let rule = required(text("rule"), "rule");
        let action = required(text("action"), "action");
        let policy = Policy {
            name: required(text("name"), "name"),
            table_schema: required(text("table_schema"), "table_schema"),
            table_name: required(text("table_name"), "table_name"),
            time_column: required(text("time_column"), "time_column"),
            rule: if rule == "older_than" { Rule::OlderThan } else { Rule::ExpiresAt },
            retain: new.get_by_name::<Interval>("retain").ok().flatten(),
            action: if action == "soft_delete" { Action::SoftDelete } else { Action::Delete },
            soft_delete_column: text("soft_delete_column"),
            reason_column: text("reason_column"),
            deletion_reason: String::new(),
            batch_size: required(new.get_by_name::<i32>("batch_size").ok().flatten(), "batch_size"),
            enabled: true,
        };
        policy.check_for_write(&rule, &action);
        let now = Spi::get_one::<pgrx::datum::TimestampWithTimeZone>("SELECT pg_catalog.now()").ok().flatten();
        new.set_by_name("updated_at", now)
            .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("pg_retention: setting updated_at: {e}"), None));
        Ok(Some(new))
    }
}

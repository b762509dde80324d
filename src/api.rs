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

fn required<'a, T>(value: Option<T>, argument: &str) -> T {
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

    /// Validates a policy row; called by the trigger on `retention.policies`.
    #[allow(clippy::too_many_arguments)]
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn check_policy(
        name: Option<&str>,
        table_schema: Option<&str>,
        table_name: Option<&str>,
        time_column: Option<&str>,
        rule: Option<&str>,
        retain: Option<Interval>,
        action: Option<&str>,
        soft_delete_column: Option<&str>,
        reason_column: Option<&str>,
        batch_size: Option<i32>,
    ) -> bool {
        let rule = required(rule, "rule");
        let action = required(action, "action");
        let policy = Policy {
            name: required(name, "name").to_string(),
            table_schema: required(table_schema, "table_schema").to_string(),
            table_name: required(table_name, "table_name").to_string(),
            time_column: required(time_column, "time_column").to_string(),
            rule: if rule == "older_than" { Rule::OlderThan } else { Rule::ExpiresAt },
            retain,
            action: if action == "soft_delete" { Action::SoftDelete } else { Action::Delete },
            soft_delete_column: soft_delete_column.map(str::to_string),
            reason_column: reason_column.map(str::to_string),
            deletion_reason: String::new(),
            batch_size: required(batch_size, "batch_size"),
        };
        policy.check_for_write(rule, action);
        true
    }
}

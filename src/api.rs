//! The SQL surface. The three cleanup functions of the contract live in the extension's
//! schema (public by default); the general engine lives in schema `retention`.
//! EXECUTE on all of them is revoked from PUBLIC in `sql/finalize.sql`.

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::engine::{self, Committer};
use crate::error::raise;
use crate::history::{RunRecord, Status};
use crate::limits;
use crate::policy::Policy;

/// The preset policies that `CREATE EXTENSION` adds (see `sql/finalize.sql`).
const TRACES_POLICY: &str = "expired_traces";
const AGENT_USAGE_POLICY: &str = "old_agent_usage";
const RECORDINGS_POLICY: &str = "old_recordings";

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
    run_in_transaction(TRACES_POLICY, None).rows_deleted
}

/// For recordings older than `days` days and not yet soft-deleted: DELETE at Twilio, then
/// soft-delete the row. Returns the run as jsonb, with `checked = deleted + failed + skipped`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn cleanup_old_recordings(days: default!(Option<i32>, 90)) -> JsonB {
    let days = checked_days(days, "cleanup_old_recordings");
    JsonB(run_in_transaction(RECORDINGS_POLICY, Some(Interval::from_days(days))).to_json())
}

fn run_in_transaction(policy: &str, retain: Option<Interval>) -> RunRecord {
    engine::run(policy, retain, &Committer::callers_transaction())
}

fn checked_days(days: Option<i32>, function: &str) -> i32 {
    limits::check_days(days).unwrap_or_else(|message| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message,
            Some(format!("For example SELECT {function}(90); nothing was deleted.")),
        )
    })
}

/// Deletes agent-usage rows older than `days` days. Returns the number of rows deleted.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn cleanup_old_agent_usage(days: default!(Option<i32>, 90)) -> i64 {
    let days = checked_days(days, "cleanup_old_agent_usage");
    run_in_transaction(AGENT_USAGE_POLICY, Some(Interval::from_days(days))).rows_deleted
}

/// The general engine, in schema `retention`.
#[pg_schema]
pub mod retention {
    use super::*;

    /// Runs a policy in the caller's transaction; `retain` overrides an older_than policy's interval.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn run_policy(policy_name: Option<&str>, retain: default!(Option<Interval>, "NULL")) -> JsonB {
        JsonB(run_in_transaction(required(policy_name, "policy_name"), retain).to_json())
    }

    /// Dry run: how many rows a run would touch now, and the cutoff. Changes nothing.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn preview(policy_name: Option<&str>, retain: default!(Option<Interval>, "NULL")) -> JsonB {
        engine::preview(required(policy_name, "policy_name"), retain)
    }

    /// A policy's backlog now (its preview), or `{"error": ...}`: for the view `retention.status`.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn backlog(policy_name: Option<&str>) -> JsonB {
        engine::backlog(required(policy_name, "policy_name"))
    }

    /// Adds a legal hold: rows of the policy's table matching `condition` (one boolean
    /// expression over its columns) are left alone by every run until it is released.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn add_hold(policy_name: Option<&str>, hold_name: Option<&str>, condition: Option<&str>, reason: Option<&str>) -> JsonB {
        crate::policy::holds::add(
            required(policy_name, "policy_name"),
            required(hold_name, "hold_name"),
            required(condition, "condition"),
            required(reason, "reason"),
        )
    }

    /// Ends an active hold; it stays in `retention.holds`, released.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn release_hold(policy_name: Option<&str>, hold_name: Option<&str>) -> JsonB {
        crate::policy::holds::release(required(policy_name, "policy_name"), required(hold_name, "hold_name"))
    }

    /// The deletion ledger: NULL when every entry verifies (its hash over the previous entry's
    /// hash and its own content, the chain unbroken), or the id of the first that does not.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn verify_ledger() -> Option<i64> {
        crate::version::check_installed_sql();
        crate::history::store::History::open().verify_ledger()
    }

    /// One run's ledger entry, its place in the chain and the chain's head, as a document an
    /// auditor can keep; NULL for a run with no entry (skipped, still running, or pruned).
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn deletion_certificate(run_id: Option<i64>) -> Option<JsonB> {
        crate::version::check_installed_sql();
        crate::history::store::History::open().deletion_certificate(required(run_id, "run_id"))
    }

    /// When the worker runs next; NULL when it is off.
    #[pg_extern(stable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    fn next_worker_run() -> Option<pgrx::datum::TimestampWithTimeZone> {
        crate::worker::next_run()
    }

    /// Asks the background worker to run every enabled policy now; returns its pid (NULL while
    /// it is starting).
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn run_worker_now() -> Option<i32> {
        crate::worker::request_run_now()
    }

    /// Validates every row written to `retention.policies`, however it is written, and stamps
    /// `updated_at` on updates; an update or delete needs the right to change the policy as it
    /// stands (see `Policy::check_may_change`). The presets are inserted before this trigger
    /// exists (their tables may not); an inserted row replaces a pristine preset of its name (a
    /// restore).
    #[pg_trigger]
    fn policies_validate<'a>(
        trigger: &'a PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, PgHeapTupleError> {
        crate::version::check_installed_sql();
        let old_policy = trigger.old().map(|old| Policy::from_row(&old.into_owned()));
        if let Some(old) = &old_policy {
            let verb = if trigger.new().is_some() { "alter" } else { "drop" };
            old.check_may_change(verb);
        }
        let Some(new) = trigger.new() else {
            if let Some(old) = old_policy.as_ref().filter(|old| old.hide_expired) {
                crate::policy::hiding::remove(old);
            }
            // A delete goes on with the row it was given.
            return Ok(trigger.old().map(|old| old.into_owned()));
        };
        let mut new = new.into_owned();
        let policy = Policy::from_row(&new);
        // On update, the table is checked again only if what names it changed.
        let target_columns = [
            "table_schema", "table_name", "time_column", "action", "soft_delete_column", "reason_column", "sid_column", "id_column",
            "account_column",
        ];
        let target_changed = match trigger.old() {
            // A row replacing a pristine preset with the preset's own target (a restore) needs
            // no table yet, as the preset did not.
            None => !crate::policy::replace_pristine_presets(&policy),
            Some(old) => {
                use crate::policy::PolicyRow as _;
                target_columns.iter().any(|c| old.get_by_name::<String>(c).ok().flatten() != new.get_by_name::<String>(c).ok().flatten())
                    || old.into_owned().text_array("s3_key_columns") != new.text_array("s3_key_columns")
            }
        };
        policy.check_for_write(target_changed);
        // hide_expired: the table's row-level security follows the policy as it is now, made
        // again only when what it hides changed (each CREATE POLICY locks the table).
        let hiding_changed = old_policy.as_ref().is_none_or(|old| {
            old.hide_expired != policy.hide_expired || target_changed || old.rule != policy.rule || old.retain != policy.retain
        });
        if hiding_changed {
            if let Some(old) = old_policy.as_ref().filter(|old| old.hide_expired) {
                crate::policy::hiding::remove(old);
            }
            if policy.hide_expired {
                crate::policy::hiding::follow_write(&policy, trigger.old().is_none());
            }
        }
        // An insert keeps the row's own updated_at (its default, or a restored row's value).
        if trigger.old().is_some() {
            let now = Spi::get_one::<pgrx::datum::TimestampWithTimeZone>("SELECT pg_catalog.now()").ok().flatten();
            new.set_by_name("updated_at", now)
                .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("pg_retention: setting updated_at: {e}"), None));
        }
        Ok(Some(new))
    }

    /// Validates every row written to `retention.stores` (see `store::validate`).
    #[pg_trigger]
    fn stores_validate<'a>(
        trigger: &'a PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, PgHeapTupleError> {
        crate::version::check_installed_sql();
        let (old, new) = (trigger.old().map(|t| t.into_owned()), trigger.new().map(|t| t.into_owned()));
        crate::store::validate(old.as_ref(), new.as_ref());
        Ok(new.or(old))
    }
}

/// `CALL retention.run_batched(policy_name text, retain interval DEFAULT NULL)`: a C-language
/// procedure (pgrx makes functions only), so that it can commit between batches and hold no
/// transaction while Twilio calls are in flight. Declared in `sql/finalize.sql`.
#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_pg_retention_run_batched() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// # Safety
/// Called by Postgres' fmgr with a valid `fcinfo` for the procedure declared above.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_retention_run_batched(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fmgr hands a valid fcinfo; its context, when set, is a node whose tag says its type.
    let nonatomic = unsafe {
        let context = (*fcinfo).context;
        !context.is_null() && (*context).type_ == pg_sys::NodeTag::T_CallContext && !(*(context as *mut pg_sys::CallContext)).atomic
    };
    if !nonatomic {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION,
            "retention.run_batched commits after each batch, so it cannot run inside a transaction block or a function".into(),
            Some("Call it on its own: CALL retention.run_batched('policy');".into()),
        )
    }
    // Copied out now: the arguments' memory does not outlive the first commit.
    // SAFETY: the procedure is declared (text, interval), so these are the arguments' types.
    let (policy_name, retain) = unsafe {
        (pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0).map(str::to_string), pgrx::fcinfo::pg_getarg::<Interval>(fcinfo, 1))
    };
    let policy_name = required(policy_name, "policy_name");

    // SAFETY: a nonatomic SPI connection is what lets a CALLed procedure commit; finished below.
    unsafe { pg_sys::SPI_connect_ext(pg_sys::SPI_OPT_NONATOMIC as i32) };
    let commit = || {
        // SAFETY: SPI was connected nonatomic above, in a CALL that allows transaction control.
        unsafe { pg_sys::SPI_commit() }
    };
    let record = engine::run(&policy_name, retain, &Committer::per_batch(&commit));
    // SAFETY: ends the connection opened above.
    unsafe { pg_sys::SPI_finish() };
    if record.status == Status::Skipped {
        return pg_sys::Datum::from(0); // its own notice said why
    }
    crate::error::report(
        PgLogLevel::NOTICE,
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        format!(
            "retention policy \"{}\": run {} {} (rows: {}, batches: {})",
            record.policy,
            record.run_id.map(|id| id.to_string()).unwrap_or_default(),
            record.status.as_str(),
            record.rows_deleted,
            record.batches
        ),
        None,
    );
    pg_sys::Datum::from(0)
}

/// Entry points of 0.1.0 that 0.2.0 replaced. The library keeps their symbols so that a
/// database still on 0.1.0 loads, and `CREATE EXTENSION pg_retention VERSION '0.1.0'` works
/// for the upgrade test; calling one says to update.
mod replaced_in_0_2_0 {
    use pgrx::pg_sys;

    use crate::error::raise;
    use pgrx::prelude::PgSqlErrorCode;

    macro_rules! replaced {
        ($finfo:ident, $symbol:ident) => {
            #[unsafe(no_mangle)]
            pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
                static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }

            #[pgrx::pg_guard]
            #[unsafe(no_mangle)]
            pub extern "C-unwind" fn $symbol(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
                raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "this database has pg_retention 0.1.0's SQL, but the installed library is newer".into(),
                    Some("Run ALTER EXTENSION pg_retention UPDATE;".into()),
                )
            }
        };
    }

    replaced!(pg_finfo_batched_start_wrapper, batched_start_wrapper);
    replaced!(pg_finfo_batched_step_wrapper, batched_step_wrapper);
    replaced!(pg_finfo_batched_finish_wrapper, batched_finish_wrapper);
}

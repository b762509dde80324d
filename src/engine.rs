//! Running a policy: the lock that keeps runs of one policy apart, the cutoff fixed at the
//! start, the batches, and the run-history row and log line every run leaves.

use std::time::{Instant, SystemTime};

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::JsonB;
use serde_json::json;

use crate::policy::{raise, spi, Policy, Rule, Statements};
use crate::run_log::{Mode, RunRecord, Status, Trigger};
use crate::{failed_runs, settings};

/// First key of every pg_retention advisory lock ("RETE"); the second is `hashtext(policy name)`,
/// which needs no catalog lookup to release, even if the policy is dropped mid-run.
const LOCK_CLASS: i32 = 0x5245_5445;

/// What a run did, as its callers report it.
pub struct Outcome {
    pub record: RunRecord,
}

impl Outcome {
    pub fn rows_deleted(&self) -> i64 {
        self.record.rows_deleted
    }

    pub fn to_jsonb(&self) -> JsonB {
        JsonB(self.record.to_json())
    }
}

/// A policy ready to run: checked against the live table, its SQL built, its cutoff rule known.
struct Prepared {
    policy: Policy,
    statements: Statements,
    retain: Option<Interval>,
    trigger: Trigger,
}

impl Prepared {
    /// `retain` overrides the policy's interval (the `days` of the cleanup functions).
    fn new(name: &str, retain: Option<Interval>) -> Prepared {
        let policy = Policy::load(name);
        let retain = match (policy.rule, retain) {
            (Rule::ExpiresAt, Some(_)) => raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("retention policy \"{name}\" uses rule expires_at, which takes no retain interval"),
                Some("Rows go when their time column is before now; call it without an interval.".into()),
            ),
            (Rule::ExpiresAt, None) => None,
            (Rule::OlderThan, given) => Some(crate::policy::check_retain(name, given.or(policy.retain).unwrap_or_else(|| {
                raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("retention policy \"{name}\" has no retain interval"), None)
            }))),
        };
        let time_type = policy.check_target(true);
        let statements = policy.statements(time_type);
        Prepared { policy, statements, retain, trigger: caller_trigger() }
    }

    /// Fixed once per run; every batch compares against this value.
    fn cutoff(&self) -> TimestampWithTimeZone {
        let cutoff = match self.retain {
            None => spi(Spi::get_one::<TimestampWithTimeZone>("SELECT pg_catalog.now()")),
            // Subtract in UTC so that a DST change in the session's TimeZone cannot move the cutoff.
            Some(retain) => spi(Spi::get_one_with_args::<TimestampWithTimeZone>(
                "SELECT pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', pg_catalog.now()) - $1)",
                &[retain.into()],
            )),
        };
        cutoff.unwrap_or_else(|| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "pg_retention: no cutoff".into(), None))
    }

    /// Deletes (or soft-deletes) at most one batch of rows past the cutoff; returns how many.
    fn run_batch(&self, cutoff: TimestampWithTimeZone) -> i64 {
        let reason = self.policy.deletion_reason.as_str();
        let batch_size = i64::from(self.policy.batch_size);
        let processed = Spi::connect_mut(|client| -> SpiResult<usize> {
            let table = if self.policy.reason_column.is_some() {
                client.update(self.statements.batch.as_str(), None, &[cutoff.into(), batch_size.into(), reason.into()])?
            } else {
                client.update(self.statements.batch.as_str(), None, &[cutoff.into(), batch_size.into()])?
            };
            Ok(table.len())
        });
        spi(processed) as i64
    }

    fn try_lock(&self, session: bool) -> bool {
        let sql = if session {
            "SELECT pg_catalog.pg_try_advisory_lock($1, pg_catalog.hashtext($2))"
        } else {
            "SELECT pg_catalog.pg_try_advisory_xact_lock($1, pg_catalog.hashtext($2))"
        };
        spi(Spi::get_one_with_args::<bool>(sql, &[LOCK_CLASS.into(), self.policy.name.as_str().into()])).unwrap_or(false)
    }

    fn lock_holder(&self) -> Option<i32> {
        spi(Spi::get_one_with_args::<i32>(
            "SELECT (SELECT pid FROM pg_catalog.pg_locks
                      WHERE locktype = 'advisory' AND granted AND objsubid = 2
                        AND classid::pg_catalog.int8 = $1
                        AND objid::pg_catalog.int8 = (pg_catalog.hashtext($2)::pg_catalog.int8 & 4294967295)
                      LIMIT 1)",
            &[i64::from(LOCK_CLASS).into(), self.policy.name.as_str().into()],
        ))
    }

    /// Takes the policy's lock, or records and announces why this run is skipped: the policy
    /// is disabled, or another run of it holds the lock. `session` keeps the lock past commit.
    fn lock_or_skip(&self, mode: Mode, session: bool) -> Result<(), Outcome> {
        if !self.policy.enabled {
            return Err(self.skip(mode, format!("retention policy \"{}\" is disabled; this run was skipped", self.policy.name)));
        }
        if self.try_lock(session) {
            return Ok(());
        }
        let holder = self.lock_holder().map(|pid| format!(" by backend pid {pid}")).unwrap_or_default();
        Err(self.skip(mode, format!("retention policy \"{}\" is already running{holder}; this run was skipped", self.policy.name)))
    }

    fn skip(&self, mode: Mode, message: String) -> Outcome {
        ereport!(NOTICE, PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message.clone());
        let outcome = self.insert_run(mode, Status::Skipped, None, 0, 0, Some(&message), None);
        log!("{}", outcome.record.log_line());
        outcome
    }

    /// Writes a history row; returns the record with its id and Postgres-formatted cutoff.
    #[allow(clippy::too_many_arguments)]
    fn insert_run(
        &self,
        mode: Mode,
        status: Status,
        cutoff: Option<TimestampWithTimeZone>,
        rows_deleted: i64,
        batches: i64,
        error: Option<&str>,
        started_at: Option<TimestampWithTimeZone>,
    ) -> Outcome {
        let finished = status != Status::Running;
        let (run_id, cutoff_text, duration_ms) = spi(Spi::connect_mut(|client| -> SpiResult<(Option<i64>, Option<String>, Option<f64>)> {
            let rows = client.update(
                "INSERT INTO retention.runs
                        (policy, trigger, mode, status, started_at, finished_at, cutoff, rows_deleted, batches, error, application_name)
                 VALUES ($1, $2, $3, $4, coalesce($5, pg_catalog.clock_timestamp()),
                         CASE WHEN $6 THEN pg_catalog.clock_timestamp() END, $7, $8, $9, $10,
                         pg_catalog.current_setting('application_name'))
                 RETURNING id, pg_catalog.to_json(cutoff) #>> '{}',
                           (extract(epoch FROM coalesce(finished_at, started_at) - started_at) * 1000)::float8",
                None,
                &[
                    self.policy.name.as_str().into(),
                    self.trigger.as_str().into(),
                    mode.as_str().into(),
                    status.as_str().into(),
                    started_at.into(),
                    finished.into(),
                    cutoff.into(),
                    rows_deleted.into(),
                    (batches as i32).into(),
                    error.into(),
                ],
            )?;
            let row = rows.first();
            Ok((row.get(1)?, row.get(2)?, row.get(3)?))
        }));
        Outcome {
            record: RunRecord {
                run_id,
                policy: self.policy.name.clone(),
                trigger: self.trigger,
                mode,
                status,
                cutoff: cutoff_text,
                rows_deleted,
                batches,
                duration_ms: duration_ms.unwrap_or_default(),
                error: error.map(str::to_string),
            },
        }
    }
}

/// Who started this run. pg_cron's job workers say so in backend_type, its libpq
/// sessions in application_name.
fn caller_trigger() -> Trigger {
    let (backend_type, application_name) = spi(Spi::get_two::<String, String>(
        "SELECT a.backend_type, pg_catalog.current_setting('application_name')
           FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a",
    ));
    Trigger::detect(backend_type.as_deref().unwrap_or(""), application_name.as_deref().unwrap_or(""))
}

/// Deletes history older than `pg_retention.history_retention_days`.
fn prune_history() {
    spi(Spi::run_with_args(
        "DELETE FROM retention.runs WHERE started_at < pg_catalog.now() - pg_catalog.make_interval(days => $1)",
        &[settings::HISTORY_RETENTION_DAYS.get().into()],
    ));
}

/// Called with the policy's lock held: any run of it still marked running has lost its session.
fn mark_interrupted(policy: &str) {
    spi(Spi::run_with_args(
        "UPDATE retention.runs
            SET status = 'interrupted', finished_at = pg_catalog.clock_timestamp(),
                error = 'the session running it ended before the run finished'
          WHERE policy = $1 AND status = 'running'",
        &[policy.into()],
    ));
}

fn clock_timestamp() -> TimestampWithTimeZone {
    spi(Spi::get_one::<TimestampWithTimeZone>("SELECT pg_catalog.clock_timestamp()"))
        .unwrap_or_else(|| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "pg_retention: no clock".into(), None))
}

fn error_message(error: &CaughtError) -> String {
    match error {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) | CaughtError::RustPanic { ereport: report, .. } => {
            report.message().to_string()
        }
    }
}

/// Runs `work` in a subtransaction, so that on error its changes are rolled back and the
/// session is clean enough to record the failure before the error goes on to the caller.
fn in_subtransaction<R>(work: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, Box<CaughtError>> {
    // SAFETY: the pattern of PL/pgSQL's exception blocks: begin, then on either path release or
    // roll back, restoring the caller's memory context and resource owner.
    let (context, owner) = unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        (context, owner)
    };
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    PgTryBuilder::new(move || {
        let result = work();
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        Ok(result)
    })
    .catch_others(move |error| {
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        Err(Box::new(error))
    })
    .execute()
}

/// Runs a policy to completion inside the caller's transaction. A failure is recorded in the
/// history (out of band, see `failed_runs`) and logged, then raised to the caller.
pub fn run_in_transaction(name: &str, retain: Option<Interval>) -> Outcome {
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let result = in_subtransaction(|| {
        let prepared = Prepared::new(name, retain);
        if let Err(skipped) = prepared.lock_or_skip(Mode::Transaction, false) {
            return skipped;
        }
        let started_at = clock_timestamp();
        prune_history();
        mark_interrupted(name);
        let cutoff = prepared.cutoff();
        let (mut rows, mut batches) = (0i64, 0i64);
        loop {
            let n = prepared.run_batch(cutoff);
            rows += n;
            batches += 1;
            if n < i64::from(prepared.policy.batch_size) {
                break;
            }
        }
        let outcome = prepared.insert_run(Mode::Transaction, Status::Succeeded, Some(cutoff), rows, batches, None, Some(started_at));
        log!("{}", outcome.record.log_line());
        outcome
    });
    match result {
        Ok(outcome) => outcome,
        Err(error) => {
            let message = error_message(&error);
            let trigger = caller_trigger();
            let record = RunRecord {
                run_id: None,
                policy: name.to_string(),
                trigger,
                mode: Mode::Transaction,
                status: Status::Failed,
                cutoff: None,
                rows_deleted: 0,
                batches: 0,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                error: Some(message.clone()),
            };
            log!("{}", record.log_line());
            failed_runs::record(&failed_runs::FailedRun { policy: name, trigger: trigger.as_str(), started: started_wall, error: &message });
            error.rethrow()
        }
    }
}

/// Counts what a run would touch now: same predicate and cutoff rule, nothing changed.
pub fn preview(name: &str, retain: Option<Interval>) -> JsonB {
    let prepared = Prepared::new(name, retain);
    let cutoff = prepared.cutoff();
    let counted = spi(Spi::get_one_with_args::<JsonB>(prepared.statements.preview.as_str(), &[cutoff.into()]));
    let mut result = counted.map(|j| j.0).unwrap_or_else(|| json!({}));
    let cutoff_text = spi(Spi::get_one_with_args::<String>("SELECT pg_catalog.to_json($1) #>> '{}'", &[cutoff.into()]));
    result["policy"] = json!(name);
    result["table"] = json!(format!("{}.{}", prepared.policy.table_schema, prepared.policy.table_name));
    result["cutoff"] = json!(cutoff_text);
    result["batch_size"] = json!(prepared.policy.batch_size);
    JsonB(result)
}

// The batched path: `CALL retention.run_batched(...)` calls these, committing between them.
// A session advisory lock spans the whole run; the history row is committed as 'running' first.

/// Starts a batched run: returns its run id, or None when another run of the policy holds the lock.
pub fn batched_start(name: &str, retain: Option<Interval>) -> Option<i64> {
    let prepared = Prepared::new(name, retain);
    prune_history();
    let cutoff = prepared.cutoff();
    if prepared.lock_or_skip(Mode::Batched, true).is_err() {
        return None;
    }
    mark_interrupted(name);
    prepared.insert_run(Mode::Batched, Status::Running, Some(cutoff), 0, 0, None, None).record.run_id
}

/// The state of a batched run, as its history row holds it.
struct BatchedRun {
    policy: String,
    cutoff: TimestampWithTimeZone,
}

fn load_batched_run(run_id: i64) -> BatchedRun {
    let found = spi(Spi::connect(|client| -> SpiResult<Option<(String, Option<TimestampWithTimeZone>)>> {
        let rows = client.select(
            "SELECT policy, cutoff FROM retention.runs
              WHERE id = $1 AND mode = 'batched' AND status = 'running' AND pid = pg_catalog.pg_backend_pid()",
            Some(1),
            &[run_id.into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        Ok(Some((row.get::<String>(1)?.unwrap_or_default(), row.get(2)?)))
    }));
    match found {
        Some((policy, Some(cutoff))) => BatchedRun { policy, cutoff },
        _ => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("run {run_id} is not a batched run in progress in this session"),
            Some("Start a batched run with CALL retention.run_batched('policy').".into()),
        ),
    }
}

/// Runs one batch of a batched run; returns whether more rows may remain.
pub fn batched_step(run_id: i64) -> bool {
    let run = load_batched_run(run_id);
    let prepared = Prepared::new(&run.policy, None);
    let n = prepared.run_batch(run.cutoff);
    spi(Spi::run_with_args(
        "UPDATE retention.runs SET rows_deleted = rows_deleted + $2, batches = batches + 1 WHERE id = $1",
        &[run_id.into(), n.into()],
    ));
    n >= i64::from(prepared.policy.batch_size)
}

/// Ends a batched run: records how it ended, releases the policy lock, logs the line.
pub fn batched_finish(run_id: i64, error: Option<&str>) -> JsonB {
    let status = if error.is_some() { Status::Failed } else { Status::Succeeded };
    let record = spi(Spi::connect_mut(|client| -> SpiResult<Option<RunRecord>> {
        let rows = client.update(
            "UPDATE retention.runs
                SET status = $2, error = $3, finished_at = pg_catalog.clock_timestamp()
              WHERE id = $1 AND status = 'running' AND pid = pg_catalog.pg_backend_pid()
          RETURNING policy, trigger, pg_catalog.to_json(cutoff) #>> '{}', rows_deleted, batches,
                    (extract(epoch FROM finished_at - started_at) * 1000)::float8",
            None,
            &[run_id.into(), status.as_str().into(), error.into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let r = rows.first();
        Ok(Some(RunRecord {
            run_id: Some(run_id),
            policy: r.get(1)?.unwrap_or_default(),
            trigger: if r.get::<String>(2)?.as_deref() == Some("pg_cron") { Trigger::PgCron } else { Trigger::Sql },
            mode: Mode::Batched,
            status,
            cutoff: r.get(3)?,
            rows_deleted: r.get(4)?.unwrap_or_default(),
            batches: i64::from(r.get::<i32>(5)?.unwrap_or_default()),
            duration_ms: r.get(6)?.unwrap_or_default(),
            error: error.map(str::to_string),
        }))
    }))
    .unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("run {run_id} is not a batched run in progress in this session"),
            None,
        )
    });
    spi(Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_advisory_unlock($1, pg_catalog.hashtext($2))",
        &[LOCK_CLASS.into(), record.policy.as_str().into()],
    ));
    log!("{}", record.log_line());
    JsonB(record.to_json())
}

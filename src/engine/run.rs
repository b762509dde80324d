//! The run lifecycle, one loop for every path: begin (the lock first, then the checks, the
//! cutoff and the plan), batches, finish. The `SELECT` path and the batched path (`CALL`, the
//! worker) differ only in their `Committer`: how they commit, and so where a failure is recorded.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use super::committer::Committer;
use super::partitions::dropper;
use super::plan::BatchPlan;
use super::external;
use super::recordings::Halt;
use super::sql::{self, Parts};
use super::xact::{in_subtransaction, pause, shutdown_requested, with_interrupts_held, with_snapshot};
use super::{lock, timestamp_text};
use crate::citus;
use crate::error::{self, say, spi};
use crate::history::store::{self, History};
use crate::history::{recorder, Held, Mode, RunRecord, Status, Tally, Trigger};
use crate::policy::{self, holds, Action, Policy};
use crate::progress::{self, Phase};
use crate::rights::as_table_owner;
use crate::twilio;

/// Why a run stops before its end.
pub(super) enum Stop {
    Error(Box<CaughtError>),
    Halt(Halt),
}

impl Stop {
    fn message(&self) -> String {
        match self {
            Stop::Error(error) => error::message(error),
            Stop::Halt(halt) => halt.message(),
        }
    }

    fn raise(self) -> ! {
        match self {
            Stop::Error(error) => error.rethrow(),
            Stop::Halt(halt) => halt.raise(),
        }
    }
}

/// One run of a policy across its batches.
pub(super) struct Run {
    pub(super) policy: Policy,
    /// The table's owner: every statement on the table runs as this role (see `owner`).
    pub(super) owner: pg_sys::Oid,
    pub(super) plan: BatchPlan,
    pub(super) cutoff: TimestampWithTimeZone,
    pub(super) record: RunRecord,
    pub(super) twilio: Option<Arc<twilio::Client>>,
    /// Recordings policies with an S3 store: its client.
    pub(super) s3: Option<Arc<crate::s3::Client>>,
    lock: lock::PolicyLock,
    pub(super) history: History,
    started: Instant,
    /// A batched run stops between batches once past it (`pg_retention.max_run_duration`).
    deadline: Option<Instant>,
    /// A bound that cut the last recording batch short (see `recordings`).
    pub(super) bound: Option<twilio::BoundReached>,
    /// Its row of `retention.progress`, freed with the run.
    _progress: progress::Tracked,
}

/// What follows a batch.
enum Next {
    Batch,
    Done,
    /// The policy was disabled during the run.
    Disabled,
    /// The worker running it was asked to stop.
    Shutdown,
}

/// How often a batch that timed out on a row lock is tried again, and the pause before each.
const LOCK_RETRIES: u32 = 3;
const LOCK_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What a run stopped by the worker's shutdown says.
fn shutdown_message(rows: i64) -> String {
    format!(
        "the pg_retention worker was asked to stop (server shutdown or pg_terminate_backend) after {rows} rows; the rest is left for the next run"
    )
}

enum Begun {
    Skipped(Box<RunRecord>),
    Started(Box<Run>),
}

/// Runs a policy to its end. `retain` overrides an older_than policy's interval (the `days`
/// of the cleanup functions). A failure is recorded in the history and logged, then raised.
pub fn run(name: &str, retain: Option<Interval>, committer: &Committer) -> RunRecord {
    let (started, started_wall) = (Instant::now(), SystemTime::now());
    let trigger = with_snapshot(super::caller::trigger);
    let failed = |message: String| {
        let mut record = RunRecord::new(name, trigger, committer.mode(), Status::Failed);
        record.error = Some(message);
        record.started = started_wall;
        record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        record
    };
    if committer.mode() == Mode::Batched {
        return drive(name, retain, trigger, committer, &failed);
    }
    // In the caller's transaction the whole run is one subtransaction. A failure rolls back
    // with the caller's transaction, and a history row written in it would vanish too: the
    // recorder writes it out of band.
    in_subtransaction(AssertUnwindSafe(|| drive(name, retain, trigger, committer, &failed))).unwrap_or_else(|error| {
        let record = failed(error::message(&error));
        say!(LOG, "{}", record.log_line());
        recorder::record(&record);
        error.rethrow()
    })
}

/// The one run loop. `failed` makes the record of a run that failed before it began.
fn drive(name: &str, retain: Option<Interval>, trigger: Trigger, committer: &Committer, failed: &dyn Fn(String) -> RunRecord) -> RunRecord {
    let mut run = match committer.step(|| Run::begin(name, retain, trigger, committer.mode())) {
        Ok(Begun::Skipped(record)) => {
            committer.commit();
            return *record;
        }
        Ok(Begun::Started(run)) => *run,
        Err(error) => {
            // Only a batched run gets here: its failure is recorded and committed in band.
            let mut record = failed(error::message(&error));
            with_snapshot(|| History::open().insert(&mut record, &store::this_backend()));
            say!(LOG, "{}", record.log_line());
            committer.commit();
            error.rethrow()
        }
    };
    committer.commit();
    loop {
        let step = match run.plan {
            BatchPlan::Recordings { .. } => run.recording_batch(committer),
            _ => run.row_batch(committer),
        };
        let next = match step {
            Ok(next) => next,
            Err(stop) => run.fail(stop, committer),
        };
        run.record.longest_transaction_ms = committer.longest_ms();
        match next {
            Next::Batch => {}
            Next::Done => break,
            Next::Disabled => return run.stop(committer),
            Next::Shutdown => return run.interrupted(committer),
        }
        run.pace(committer);
        if shutdown_requested() {
            return run.interrupted(committer);
        }
        if run.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            run.fail(Stop::Halt(Halt::Bound(twilio::BoundReached::Deadline)), committer);
        }
    }
    run.end(Status::Succeeded, None, committer)
}

impl Run {
    /// The policy's lock comes before any other work; a disabled or locked policy is skipped.
    fn begin(name: &str, retain: Option<Interval>, trigger: Trigger, mode: Mode) -> Begun {
        let policy = Policy::load(name);
        let _progress = progress::track(policy.id);
        let history = History::open();
        let mut record = RunRecord::new(name, trigger, mode, Status::Running);
        record.tally = (policy.action == Action::TwilioRecording).then(Tally::default);
        if !policy.enabled {
            return Begun::Skipped(Box::new(skip(record, format!("retention policy \"{name}\" is disabled; this run was skipped"), &history)));
        }
        let Some(lock) = lock::try_acquire(policy.id, mode == Mode::Batched) else {
            let holder = lock::holder(policy.id).map(|pid| format!(" by backend pid {pid}")).unwrap_or_default();
            return Begun::Skipped(Box::new(skip(record, format!("retention policy \"{name}\" is already running{holder}; this run was skipped"), &history)));
        };
        if trigger == Trigger::Worker && policy.is_preset_without_its_table() {
            let message = format!(
                "retention policy \"{name}\": table {} does not exist in this database; the worker skips a preset whose table is not here",
                policy.qualified_table()
            );
            return skip_locked(lock, record, message, &history);
        }
        let retain = policy.retain_for_run(retain);
        let max_duration = crate::settings::MAX_RUN_DURATION_S.get();
        let deadline = (mode == Mode::Batched && max_duration > 0).then(|| Instant::now() + Duration::from_secs(max_duration as u64));
        let bounds = twilio::Bounds { max_rate_limited: crate::settings::TWILIO_MAX_RATE_LIMITED.get().max(0) as usize, deadline };
        // Credentials are checked before any row is read.
        let twilio = (policy.action == Action::TwilioRecording).then(|| Arc::new(twilio::Client::new(external::twilio_config(&policy, bounds))));
        let s3 = super::objects::client(&policy);
        let target = policy.check_target(true, true);
        progress::relation(target.relid);
        if policy.hide_expired {
            crate::policy::hiding::ensure(&policy, &target);
        }
        if target.citus.is_some() && citus::on_worker_node() {
            let message = format!(
                "retention policy \"{name}\": {} is a Citus table and this is a Citus worker node; the coordinator runs its policies (a run here would reach the same shards); this run was skipped",
                policy.qualified_table()
            );
            return skip_locked(lock, record, message, &history);
        }
        let holds = holds::active(&policy.name, target.relid);
        let parts = Parts::new(&policy, &target).with_holds(&holds);
        history.prune();
        history.mark_interrupted(name);
        // Any policy's: a run whose backend is gone shows as such from the next run on.
        history.mark_orphans_interrupted();
        if mode == Mode::Batched {
            // Committed right after `begin`: the sealing lock is held for milliseconds.
            history.seal_ledger();
        }
        let cutoff = policy::cutoff(retain);
        record.cutoff = Some(timestamp_text(cutoff));
        for (rows, outcome) in dropper::count_uncounted(name) {
            record.rows_deleted += rows;
            record.partitions.push(outcome);
        }
        dropper::drop_leftovers(name);
        if !holds.is_empty() {
            let rows = as_table_owner(target.owner, || sql::held(&parts, cutoff, None));
            record.holds = Some(Held { names: holds.iter().map(|h| h.name.clone()).collect(), rows });
        }
        progress::phase(Phase::Counting);
        let estimate = as_table_owner(target.owner, || sql::estimate(&parts, cutoff, target.has_children));
        progress::estimated(estimate);
        // On a single table the estimate is the exact count the plan would otherwise make again.
        let counted = (!target.has_children).then_some(estimate);
        let mut plan = as_table_owner(target.owner, || BatchPlan::choose(&policy, &target, &parts, cutoff, counted));
        record.target = Some(policy.qualified_table());
        history.insert(&mut record, &store::this_backend());
        progress::run_id(record.run_id);
        progress::done(record.rows_deleted, 0);
        progress::phase(if policy.action == Action::TwilioRecording { Phase::CallingTwilio } else { Phase::Deleting });
        if mode == Mode::Batched {
            plan.set_batched(record.run_id);
        }
        let started = Instant::now();
        let owner = target.owner;
        Begun::Started(Box::new(Run { policy, owner, plan, cutoff, record, twilio, s3, lock, history, started, deadline, bound: None, _progress }))
    }

    pub(super) fn batch_size(&self) -> i64 {
        i64::from(self.policy.batch_size)
    }

    /// delete / soft_delete: one batch, committed. A batch of a batched run that waited past
    /// `lock_timeout` for a row an application holds is tried again after a pause, with
    /// nothing held; after `LOCK_RETRIES` the run fails and leaves the rest for the next run.
    fn row_batch(&mut self, committer: &Committer) -> Result<Next, Stop> {
        let mut retries = 0;
        let next = loop {
            // A batch that fails after its rows were counted (a cancel or a shutdown during its
            // progress write, say) is rolled back: so are its counts.
            let counted = (self.record.rows_deleted, self.record.batches, self.record.partitions.len());
            progress::phase(Phase::Deleting);
            let batch = committer.step(|| {
                let (cutoff, batch_size, reason) = (self.cutoff, self.batch_size(), self.policy.reason());
                let (processed, more) = as_table_owner(self.owner, || self.plan.row_batch(cutoff, batch_size, reason));
                self.record.partitions.extend(self.plan.take_partition_outcomes());
                self.record.rows_deleted += processed;
                self.record.batches += 1;
                self.history.save_progress(&self.record);
                self.next(more)
            });
            if batch.is_err() {
                (self.record.rows_deleted, self.record.batches) = (counted.0, counted.1);
                self.record.partitions.truncate(counted.2);
            }
            progress::done(self.record.rows_deleted, self.record.batches);
            match batch {
                Ok(next) => break next,
                Err(error)
                    if committer.mode() == Mode::Batched
                        && error::code(&error) == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
                        && retries < LOCK_RETRIES
                        && !shutdown_requested() =>
                {
                    retries += 1;
                    say!(
                        LOG,
                        "pg_retention: policy \"{}\": a batch waited past lock_timeout for a row another session holds; trying again in {} s ({retries} of {LOCK_RETRIES})",
                        self.policy.name,
                        LOCK_RETRY_PAUSE.as_secs()
                    );
                    committer.commit();
                    progress::phase(Phase::Locking);
                    pause(LOCK_RETRY_PAUSE);
                }
                Err(error) => return Err(Stop::Error(error)),
            }
        };
        committer.commit();
        Ok(next)
    }

    /// After a batch: done, or on to the next one unless the worker is shutting down or the
    /// policy was disabled meanwhile (disabling a policy is its kill switch; the first batch
    /// was checked at `begin`).
    fn next(&self, more: bool) -> Next {
        if !more {
            Next::Done
        } else if shutdown_requested() {
            Next::Shutdown
        } else if still_enabled(self.policy.id) {
            Next::Batch
        } else {
            Next::Disabled
        }
    }

    /// twilio_recording: one batch read, committed, sent to Twilio with nothing held, and the
    /// confirmed rows marked and committed.
    fn recording_batch(&mut self, committer: &Committer) -> Result<Next, Stop> {
        progress::phase(Phase::CallingTwilio);
        let fetched = committer.step(|| self.fetch()).map_err(Stop::Error)?;
        committer.commit(); // nothing is held while the calls are in flight
        let answers = self.call(&fetched);
        progress::in_flight(0);
        let answers = answers.map_err(Stop::Halt)?;
        committer.idle_until_now();
        progress::phase(Phase::Marking);
        let next = committer
            .step(|| {
                self.mark(&fetched, &answers);
                self.history.save_progress(&self.record);
                self.next(fetched.keys.len() as i64 >= self.batch_size())
            })
            .map_err(Stop::Error)?;
        committer.commit();
        progress::done(self.record.rows_deleted, self.record.batches);
        // What Twilio confirmed is marked and committed; the rows a bound left unsent wait.
        if let Some(bound) = self.bound.take() {
            return Err(Stop::Halt(Halt::Bound(bound)));
        }
        Ok(next)
    }

    /// A batched run records its failure and releases its lock, commits that, then raises the
    /// error; in the caller's transaction the error goes up to `run`, which records it. A cancel
    /// or timeout that stopped the Twilio calls is still pending: `end` holds it off.
    fn fail(self, stop: Stop, committer: &Committer) -> ! {
        if committer.mode() == Mode::Batched {
            let (status, message) = if shutdown_requested() {
                (Status::Interrupted, format!("{} ({})", shutdown_message(self.record.rows_deleted), stop.message()))
            } else {
                (Status::Failed, stop.message())
            };
            self.end(status, Some(message), committer);
        }
        stop.raise()
    }

    /// Keeps a run to its policy's `max_rows_per_second`: after a batch, waits until the rows so
    /// far would have taken that long at that pace. A batched run waits after its commit, with
    /// nothing held, and the wait is no transaction to count.
    fn pace(&self, committer: &Committer) {
        let Some(rate) = self.policy.max_rows_per_second else { return };
        let due = Duration::from_secs_f64(self.record.rows_deleted as f64 / f64::from(rate.max(1)));
        let elapsed = self.started.elapsed();
        if due > elapsed {
            progress::phase(Phase::Pacing);
            pause(due - elapsed);
            committer.idle_until_now();
        }
    }

    /// Ends a run stopped between batches by the worker's shutdown.
    fn interrupted(self, committer: &Committer) -> RunRecord {
        let message = shutdown_message(self.record.rows_deleted);
        self.end(Status::Interrupted, Some(message), committer)
    }

    /// Ends a run whose policy was disabled meanwhile: `stopped`, with what it did so far.
    fn stop(self, committer: &Committer) -> RunRecord {
        let message = format!(
            "retention policy \"{}\" was disabled during the run; it stopped after {} rows in {} batches",
            self.policy.name, self.record.rows_deleted, self.record.batches
        );
        crate::error::report(PgLogLevel::NOTICE, PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message.clone(), None);
        self.end(Status::Stopped, Some(message), committer)
    }

    /// Ends the run: the history row, committed, then the lock of a batched run (released
    /// after the commit: while the lock is held, a `running` row is a live run), the log line,
    /// then the dropper for what the run detached.
    /// A cancel or shutdown that is pending (it may be what ended the run) waits until the end
    /// is recorded; otherwise the first statement that records it would raise it instead.
    fn end(mut self, status: Status, error: Option<String>, committer: &Committer) -> RunRecord {
        self.record.status = status;
        self.record.error = error;
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let batched = committer.mode() == Mode::Batched;
        progress::phase(Phase::Sealing);
        with_interrupts_held(|| {
            with_snapshot(|| {
                if self.record.tally.is_some() {
                    self.record.outcomes_digest = self.history.outcomes_digest(&self.record);
                }
                self.history.finish(&self.record);
                if batched {
                    // Chained in this last transaction, which commits at once; a `SELECT` run's
                    // entry waits for the next sealing (its caller's transaction may go on).
                    self.history.seal_ledger();
                }
            });
            committer.commit();
        });
        self.lock.release();
        say!(LOG, "{}", self.record.log_line());
        if self.plan.take_detached() {
            // Once the run is over, so that the dropper's file deletions do not compete with the
            // run's own last batches (two busy processes stall live traffic on a small machine).
            // Not with interrupts held: without a worker slot the drops run here, and a lock
            // wait must stay cancellable. Between the worker's commits no snapshot is active;
            // starting it reads.
            with_snapshot(dropper::start);
        }
        self.record
    }
}

/// Records and announces a run that does not happen.
fn skip(mut record: RunRecord, message: String, history: &History) -> RunRecord {
    crate::error::report(PgLogLevel::NOTICE, PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message.clone(), None);
    record.status = Status::Skipped;
    record.error = Some(message);
    history.insert(&mut record, &store::this_backend());
    say!(LOG, "{}", record.log_line());
    record
}

/// Skips a run that already took its policy's lock: the lock goes first.
fn skip_locked(lock: lock::PolicyLock, record: RunRecord, message: String, history: &History) -> Begun {
    lock.release();
    Begun::Skipped(Box::new(skip(record, message, history)))
}

/// Whether the policy is still there and enabled, as committed now.
fn still_enabled(policy_id: i32) -> bool {
    spi(Spi::get_one_with_args::<bool>(
        "SELECT (SELECT enabled FROM retention.policies WHERE id OPERATOR(pg_catalog.=) $1)",
        &[policy_id.into()],
    )) == Some(true)
}

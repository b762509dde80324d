//! Running a policy: the lock that keeps runs of one policy apart, the cutoff fixed at the
//! start, the batches, and the run-history row and log line every run leaves.
//!
//! Two ways to run: in the caller's transaction (`SELECT`), or committing after each batch
//! (`CALL retention.run_batched`), where a recording batch also commits before its Twilio
//! calls, so no transaction, lock or snapshot is held while they are in flight.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::JsonB;
use serde_json::json;

use crate::policy::{raise, spi, Action, Policy, Rule, Statements, Target};
use crate::run_log::{Mode, RunRecord, Status, Tally, Trigger};
use crate::twilio::{self, Answer};
use crate::{failed_runs, settings};

/// First key of every pg_retention advisory lock ("RETE"); the second is `hashtext(policy name)`,
/// which needs no catalog lookup to release, even if the policy is dropped mid-run.
const LOCK_CLASS: i32 = 0x5245_5445;

/// Rows of one run whose skip or failure is logged one by one; the rest only in the counts.
const ROWS_LOGGED_PER_RUN: i64 = 20;

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

/// A policy ready to run: checked against the live table, its SQL built, its cutoff rule known,
/// and for recordings a Twilio client built from the settings.
struct Prepared {
    policy: Policy,
    statements: Statements,
    retain: Option<Interval>,
    trigger: Trigger,
    twilio: Option<Arc<twilio::Client>>,
    target: Target,
}

impl Prepared {
    /// `retain` overrides the policy's interval (the `days` of the cleanup functions).
    /// `for_run` builds the Twilio client too (a preview sends nothing and needs no credentials).
    fn new(name: &str, retain: Option<Interval>, for_run: bool) -> Prepared {
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
        // Credentials are checked before any row is read.
        let twilio = (for_run && policy.action == Action::TwilioRecording).then(|| Arc::new(twilio::Client::new(twilio_config())));
        let target: Target = policy.check_target(true, for_run);
        let statements = policy.statements(&target);
        Prepared { policy, statements, retain, trigger: caller_trigger(), twilio, target }
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
    fn lock_or_skip(&self, mode: Mode, session: bool) -> Result<(), Box<Outcome>> {
        if !self.policy.enabled {
            return Err(Box::new(self.skip(mode, format!("retention policy \"{}\" is disabled; this run was skipped", self.policy.name))));
        }
        if self.try_lock(session) {
            return Ok(());
        }
        let holder = self.lock_holder().map(|pid| format!(" by backend pid {pid}")).unwrap_or_default();
        Err(Box::new(self.skip(mode, format!("retention policy \"{}\" is already running{holder}; this run was skipped", self.policy.name))))
    }

    fn skip(&self, mode: Mode, message: String) -> Outcome {
        ereport!(NOTICE, PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message.clone());
        let mut record = self.record(mode, Status::Skipped);
        record.error = Some(message);
        insert_run(&mut record, None, None);
        log!("{}", record.log_line());
        Outcome { record }
    }

    fn record(&self, mode: Mode, status: Status) -> RunRecord {
        RunRecord {
            run_id: None,
            policy: self.policy.name.clone(),
            trigger: self.trigger,
            mode,
            status,
            cutoff: None,
            rows_deleted: 0,
            batches: 0,
            duration_ms: 0.0,
            error: None,
            tally: (self.policy.action == Action::TwilioRecording).then(Tally::default),
            longest_transaction_ms: None,
        }
    }
}

/// Twilio settings, read on this (the main) thread and handed to the client as plain values.
fn twilio_config() -> twilio::ClientConfig {
    let missing = |setting: &str, what: &str| -> ! {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{setting} is not set: {what}"),
            Some("Set it in postgresql.conf or with ALTER SYSTEM, then SELECT pg_reload_conf(). Nothing was read or sent.".into()),
        )
    };
    let account_sid = settings::text(&settings::TWILIO_ACCOUNT_SID)
        .unwrap_or_else(|| missing("pg_retention.twilio_account_sid", "the Twilio Account SID whose recordings are deleted"));
    if !twilio::is_account_sid(&account_sid) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "pg_retention.twilio_account_sid must be AC followed by 32 hex digits".into(),
            None,
        )
    }
    let (username, password) = match settings::text(&settings::TWILIO_API_KEY_SID) {
        Some(key_sid) => {
            if !twilio::is_api_key_sid(&key_sid) {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "pg_retention.twilio_api_key_sid must be SK followed by 32 hex digits".into(),
                    None,
                )
            }
            let secret = settings::text(&settings::TWILIO_API_KEY_SECRET)
                .unwrap_or_else(|| missing("pg_retention.twilio_api_key_secret", "the secret of pg_retention.twilio_api_key_sid"));
            (key_sid, secret)
        }
        None => {
            let token = settings::text(&settings::TWILIO_AUTH_TOKEN).unwrap_or_else(|| {
                missing(
                    "pg_retention.twilio_auth_token",
                    "the account's auth token (or set pg_retention.twilio_api_key_sid and pg_retention.twilio_api_key_secret)",
                )
            });
            (account_sid.clone(), token)
        }
    };
    let base_url = settings::text(&settings::TWILIO_BASE_URL).unwrap_or_else(|| "https://api.twilio.com".into());
    if let Err(problem) = twilio::check_base_url(&base_url) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("pg_retention.twilio_base_url: {problem}"), None)
    }
    let millis = |setting: &pgrx::GucSetting<i32>| std::time::Duration::from_millis(setting.get().max(0) as u64);
    let max_backoff = millis(&settings::TWILIO_MAX_BACKOFF_MS);
    twilio::ClientConfig {
        base_url,
        credentials: twilio::Credentials { account_sid, username, password },
        connect_timeout: millis(&settings::TWILIO_CONNECT_TIMEOUT_MS),
        timeout: millis(&settings::TWILIO_TIMEOUT_MS),
        concurrency: settings::TWILIO_CONCURRENCY.get().max(1) as usize,
        retry: twilio::RetryPolicy {
            attempts: settings::TWILIO_MAX_ATTEMPTS.get().max(1) as u32,
            default_backoff: max_backoff / 10,
            max_backoff,
        },
    }
}

/// Recordings of one batch, read before any Twilio call.
struct Fetched {
    keys: Vec<String>,
    sids: Vec<Option<String>>,
}

/// One run across its batches.
struct Run {
    prepared: Prepared,
    mode: Mode,
    cutoff: TimestampWithTimeZone,
    record: RunRecord,
    /// Recordings: the key of the last row fetched; ranged batches: the time value the last
    /// batch ended at. The next batch starts after it.
    last_key: Option<String>,
    /// Ranged batches: a time with more rows than a batch, being worked through.
    tie: Option<String>,
    /// Block-range batches: where the next one starts, how many blocks it spans, and the
    /// table's size in blocks when the run began (later blocks are the next run's).
    blocks: Option<BlockCursor>,
    started: Instant,
}

struct BlockCursor {
    next: i64,
    step: i64,
    end: i64,
}

/// Above this share of the table past the cutoff, reading it block by block beats the index.
const BLOCK_RANGE_SHARE: f64 = 0.2;

impl Run {
    fn new(prepared: Prepared, mode: Mode) -> Run {
        let cutoff = prepared.cutoff();
        let mut record = prepared.record(mode, Status::Running);
        record.cutoff = Some(timestamp_text(cutoff));
        let blocks = Self::block_cursor(&prepared, cutoff);
        Run { prepared, mode, cutoff, record, last_key: None, tie: None, blocks, started: Instant::now() }
    }

    /// Block ranges when the table has no usable index, or when much of it is past the cutoff:
    /// then the index would visit the same pages over and over, batch after batch.
    fn block_cursor(prepared: &Prepared, cutoff: TimestampWithTimeZone) -> Option<BlockCursor> {
        prepared.statements.blocks.as_ref()?;
        let relid = prepared.target.relid;
        let (blocks, tuples) = spi(Spi::get_two_with_args::<i64, f64>(
            "SELECT pg_catalog.pg_relation_size($1) / pg_catalog.current_setting('block_size')::pg_catalog.int8,
                    c.reltuples::pg_catalog.float8
               FROM pg_catalog.pg_class c WHERE c.oid = $1",
            &[relid.into()],
        ));
        let (blocks, tuples) = (blocks.unwrap_or(0), tuples.unwrap_or(-1.0));
        let indexed = prepared.statements.ranges.is_some();
        let expired = if indexed {
            // An index-only count: cheap next to the purge it decides on.
            spi(Spi::get_one_with_args::<i64>(prepared.statements.count.as_str(), &[cutoff.into()])).unwrap_or(0) as f64
        } else {
            // No index to count with: assume every row may be past the cutoff (small first
            // steps; they double while batches come out small). Unanalyzed: ~50 rows a block.
            if tuples >= 0.0 { tuples } else { blocks as f64 * 50.0 }
        };
        // A table never analyzed (reltuples -1) keeps to its index: the share is unknown.
        if blocks == 0 || (indexed && (tuples < 0.0 || expired < BLOCK_RANGE_SHARE * tuples.max(1.0))) {
            return None;
        }
        let batch = f64::from(prepared.policy.batch_size);
        let step = ((batch * blocks as f64 / expired.max(1.0)).ceil() as i64).clamp(1, blocks);
        Some(BlockCursor { next: 0, step, end: blocks })
    }

    fn batch_size(&self) -> i64 {
        i64::from(self.prepared.policy.batch_size)
    }

    /// delete / soft_delete: one batch; returns whether rows may remain.
    fn row_batch(&mut self) -> bool {
        if self.blocks.is_some() {
            return self.block_batch();
        }
        if self.prepared.statements.ranges.is_some() {
            return self.range_batch();
        }
        let statements = &self.prepared.statements;
        let reason = self.prepared.policy.reason();
        let (cutoff, batch_size) = (self.cutoff, self.batch_size());
        let processed = spi(Spi::connect_mut(|client| -> SpiResult<usize> {
            Ok(client.update(statements.batch.as_str(), None, &[cutoff.into(), batch_size.into(), reason.into()])?.len())
        })) as i64;
        self.record.rows_deleted += processed;
        self.record.batches += 1;
        processed >= batch_size
    }

    /// delete / soft_delete over the next range of blocks; the range grows or shrinks so that
    /// a batch holds about `batch_size` rows.
    fn block_batch(&mut self) -> bool {
        let (Some(cursor), Some(sql)) = (self.blocks.as_mut(), self.prepared.statements.blocks.as_ref()) else { return false };
        let policy = &self.prepared.policy;
        let from = format!("({},0)", cursor.next);
        let to = format!("({},0)", cursor.next + cursor.step);
        let (cutoff, reason) = (self.cutoff, policy.reason());
        let processed = spi(Spi::connect_mut(|client| -> SpiResult<usize> {
            let args = [cutoff.into(), from.as_str().into(), to.as_str().into(), reason.into()];
            Ok(client.update(sql.as_str(), None, &args)?.len())
        })) as i64;
        self.record.rows_deleted += processed;
        self.record.batches += 1;
        cursor.next += cursor.step;
        let wanted = i64::from(policy.batch_size);
        cursor.step = if processed == 0 {
            cursor.step * 2
        } else {
            ((cursor.step as f64 * wanted as f64 / processed as f64) as i64).clamp(cursor.step / 2, cursor.step * 2)
        }
        .clamp(1, cursor.end.max(1));
        cursor.next < cursor.end
    }

    /// delete / soft_delete along the time column's index: the next `batch_size` rows in time
    /// order, each read once. Ties of the batch's last time go with it; when they are more than
    /// a batch (rows written together with one timestamp), they go `batch_size` at a time.
    fn range_batch(&mut self) -> bool {
        let Some(ranges) = &self.prepared.statements.ranges else { return false };
        let reason = self.prepared.policy.reason();
        let (cutoff, batch_size) = (self.cutoff, self.batch_size());
        let tie = self.tie.clone();
        let after = self.last_key.clone();
        let (processed, next_key, next_tie) = spi(Spi::connect_mut(|client| -> SpiResult<(usize, Option<String>, Option<String>)> {
            if let Some(tie) = tie {
                let args = [cutoff.into(), tie.as_str().into(), batch_size.into(), reason.into()];
                let n = client.update(ranges.act_ties.as_str(), None, &args)?.len();
                // Done with this time once a batch comes out short; go on after it.
                return Ok(if (n as i64) < batch_size { (n, Some(tie), None) } else { (n, after, Some(tie)) });
            }
            let rows = client.select(ranges.end.as_str(), Some(1), &[cutoff.into(), after.clone().into(), batch_size.into()])?;
            let end: Option<String> = if rows.is_empty() { None } else { rows.first().get(1)? };
            let many_ties = match &end {
                Some(end) => {
                    let tied = client.select(ranges.ties.as_str(), Some(1), &[cutoff.into(), end.as_str().into(), batch_size.into()])?;
                    tied.first().get::<i64>(1)?.unwrap_or(0) > batch_size
                }
                None => false,
            };
            let args = [cutoff.into(), after.into(), end.clone().into(), reason.into(), (!many_ties).into()];
            let n = client.update(ranges.act.as_str(), None, &args)?.len();
            Ok(match (end, many_ties) {
                (None, _) => (n, None, None),
                (Some(end), true) => (n, None, Some(end)),
                (Some(end), false) => (n, Some(end), None),
            })
        }));
        self.record.rows_deleted += processed as i64;
        self.record.batches += 1;
        let more = next_key.is_some() || next_tie.is_some();
        // After ties, continue after them: `next_key` is the tied time then.
        self.last_key = next_key.or(if next_tie.is_some() { self.last_key.take() } else { None });
        self.tie = next_tie;
        more
    }

    /// twilio_recording, step 1: the next batch of unmarked recordings past the cutoff.
    fn fetch(&mut self) -> Fetched {
        let (cutoff, batch_size, after) = (self.cutoff, self.batch_size(), self.last_key.clone());
        let fetched = spi(Spi::connect(|client| -> SpiResult<Fetched> {
            let rows = client.select(
                self.prepared.statements.fetch.as_str(),
                None,
                &[cutoff.into(), after.into(), batch_size.into()],
            )?;
            let mut fetched = Fetched { keys: Vec::with_capacity(rows.len()), sids: Vec::with_capacity(rows.len()) };
            for row in rows {
                fetched.keys.push(row.get::<String>(1)?.unwrap_or_default());
                fetched.sids.push(row.get::<String>(2)?);
            }
            Ok(fetched)
        }));
        self.last_key = fetched.keys.last().cloned().or(self.last_key.take());
        fetched
    }

    /// twilio_recording, step 2: the Twilio calls. Touches no Postgres API: the calls run on
    /// helper threads while this thread waits, watching for a cancel or shutdown request.
    /// Rows with no valid SID are never sent.
    fn call(&mut self, fetched: &Fetched) -> Result<Vec<Option<Answer>>, Halt> {
        let policy = &self.prepared.policy.name;
        let tally = self.record.tally.get_or_insert_with(Tally::default);
        let mut to_send = Vec::new();
        for (key, sid) in fetched.keys.iter().zip(&fetched.sids) {
            match sid {
                Some(sid) if twilio::is_recording_sid(sid) => to_send.push(sid.clone()),
                _ => {
                    if tally.skipped < ROWS_LOGGED_PER_RUN {
                        let shown: String = sid.as_deref().unwrap_or("NULL").chars().take(40).collect();
                        log!("pg_retention: policy \"{policy}\": row {key} skipped, its recording SID {shown:?} is not RE + 32 hex digits");
                    }
                    tally.skip();
                }
            }
        }
        let client = self.prepared.twilio.as_ref().expect("a recording run has a Twilio client");
        // A cancel, a terminate, or (in the worker) a shutdown request; not the other interrupts
        // (barriers, catch-up) that Postgres also flags, which need no answer from us here.
        // SAFETY: reading flags that Postgres' signal handlers set.
        let interrupted =
            || unsafe { pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0 || pg_sys::ShutdownRequestPending != 0 };
        let answers = client.delete_all(to_send, &interrupted).map_err(|_| Halt::Stopped)?;
        if let Some(Some(Answer::Refused(status))) = answers.iter().find(|a| matches!(a, Some(Answer::Refused(_)))) {
            return Err(Halt::Refused(*status));
        }
        let mut sent = answers.into_iter();
        let mut per_row = Vec::with_capacity(fetched.keys.len());
        for (key, sid) in fetched.keys.iter().zip(&fetched.sids) {
            if !sid.as_deref().is_some_and(twilio::is_recording_sid) {
                per_row.push(None);
                continue;
            }
            let answer = sent.next().flatten().unwrap_or(Answer::ConnectionError("not sent".into()));
            if let Answer::BadRequest(status, body) = &answer {
                if tally.failures[4] < ROWS_LOGGED_PER_RUN {
                    log!("pg_retention: policy \"{policy}\": row {key}: Twilio answered HTTP {status} to the DELETE: {body}");
                }
            }
            tally.count(&answer);
            per_row.push(Some(answer));
        }
        Ok(per_row)
    }

    /// twilio_recording, step 3: marks the rows whose SID Twilio confirmed (204 or 404).
    fn mark(&mut self, fetched: &Fetched, answers: &[Option<Answer>]) {
        let (keys, sids): (Vec<String>, Vec<String>) = fetched
            .keys
            .iter()
            .zip(&fetched.sids)
            .zip(answers)
            .filter(|(_, answer)| answer.as_ref().is_some_and(Answer::confirms_deletion))
            .map(|((key, sid), _)| (key.clone(), sid.clone().unwrap_or_default()))
            .unzip();
        if !keys.is_empty() {
            let (cutoff, reason) = (self.cutoff, self.prepared.policy.reason());
            let marked = spi(Spi::connect_mut(|client| -> SpiResult<usize> {
                let args = [cutoff.into(), keys.into(), sids.into(), reason.into()];
                Ok(client.update(self.prepared.statements.mark.as_str(), None, &args)?.len())
            }));
            self.record.rows_deleted += marked as i64;
        }
        self.record.batches += 1;
    }


    /// Records progress of a batched run, visible to other sessions once committed.
    fn save_progress(&self) {
        let details = self.record.details().map(JsonB);
        spi(Spi::run_with_args(
            "UPDATE retention.runs SET rows_deleted = $2, batches = $3, details = $4 WHERE id = $1",
            &[self.record.run_id.into(), self.record.rows_deleted.into(), (self.record.batches as i32).into(), details.into()],
        ));
    }

    /// Ends the run: the history row, the lock of a batched run, the log line.
    fn finish(mut self, error: Option<String>) -> Outcome {
        self.record.status = if error.is_some() { Status::Failed } else { Status::Succeeded };
        self.record.error = error;
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match self.record.run_id {
            Some(_) => {
                self.save_progress();
                spi(Spi::run_with_args(
                    "UPDATE retention.runs SET status = $2, error = $3, finished_at = pg_catalog.clock_timestamp() WHERE id = $1",
                    &[self.record.run_id.into(), self.record.status.as_str().into(), self.record.error.clone().into()],
                ));
            }
            None => insert_run(&mut self.record, Some(self.cutoff), Some(self.started)),
        }
        if self.mode == Mode::Batched {
            spi(Spi::get_one_with_args::<bool>(
                "SELECT pg_catalog.pg_advisory_unlock($1, pg_catalog.hashtext($2))",
                &[LOCK_CLASS.into(), self.record.policy.as_str().into()],
            ));
        }
        log!("{}", self.record.log_line());
        Outcome { record: self.record }
    }
}

/// Why a batch's Twilio calls ended early.
enum Halt {
    /// 401/403: the run stops.
    Refused(u16),
    /// A cancel, terminate or shutdown request arrived while calls were in flight.
    Stopped,
}

impl Halt {
    fn message(&self) -> String {
        match self {
            Halt::Refused(status) => refused_text(*status),
            Halt::Stopped => "stopped by a cancel or shutdown request while Twilio calls were in flight; no row of this batch was marked".into(),
        }
    }

    /// Raises the error that ends the run.
    fn raise(self) -> ! {
        match self {
            Halt::Refused(status) => refused_error(status),
            Halt::Stopped => {
                // A cancel or terminate raises its own error here; a worker's shutdown does not.
                pgrx::check_for_interrupts!();
                raise(PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN, Halt::Stopped.message(), None)
            }
        }
    }
}

/// Twilio refused the credentials: the run stops; nothing of the batch is marked.
fn refused_text(status: u16) -> String {
    let account = settings::text(&settings::TWILIO_ACCOUNT_SID).unwrap_or_default();
    format!("Twilio refused the credentials for account {account} (HTTP {status}); the run stopped and no row of this batch was marked")
}

fn refused_error(status: u16) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        refused_text(status),
        Some("Check pg_retention.twilio_account_sid and pg_retention.twilio_auth_token (or the API key settings), and that pg_retention.twilio_base_url is the account's region.".into()),
    )
}

/// Writes a finished (or skipped) run's history row; sets its id.
fn insert_run(record: &mut RunRecord, cutoff: Option<TimestampWithTimeZone>, started: Option<Instant>) {
    let started_ago_ms = started.map(|s| s.elapsed().as_secs_f64() * 1000.0).unwrap_or(0.0);
    let details = record.details().map(JsonB);
    record.run_id = spi(Spi::get_one_with_args::<i64>(
        "INSERT INTO retention.runs
                (policy, trigger, mode, status, started_at, finished_at, cutoff, rows_deleted, batches, error, details, application_name)
         VALUES ($1, $2, $3, $4, pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $5 / 1000.0),
                 CASE WHEN $4 <> 'running' THEN pg_catalog.clock_timestamp() END, $6, $7, $8, $9, $10, pg_catalog.current_setting('application_name'))
         RETURNING id",
        &[
            record.policy.as_str().into(),
            record.trigger.as_str().into(),
            record.mode.as_str().into(),
            record.status.as_str().into(),
            started_ago_ms.into(),
            cutoff.into(),
            record.rows_deleted.into(),
            (record.batches as i32).into(),
            record.error.clone().into(),
            details.into(),
        ],
    ));
}

/// Postgres' ISO 8601 text of a timestamp, whatever the session's DateStyle.
fn timestamp_text(ts: TimestampWithTimeZone) -> String {
    spi(Spi::get_one_with_args::<String>("SELECT pg_catalog.to_json($1) #>> '{}'", &[ts.into()])).unwrap_or_default()
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

pub fn error_message(error: &CaughtError) -> String {
    match error {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) | CaughtError::RustPanic { ereport: report, .. } => {
            report.message().to_string()
        }
    }
}

/// Runs `work` with an active snapshot, taking a fresh one only if none is active: between
/// the commits of a batched run (a procedure or the worker) none is, and none is held while
/// Twilio calls are in flight.
fn with_snapshot<R>(work: impl FnOnce() -> R) -> R {
    // SAFETY: push and pop are paired; on error, transaction abort pops what is left.
    let pushed = unsafe {
        if pg_sys::ActiveSnapshotSet() {
            false
        } else {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            true
        }
    };
    let result = work();
    if pushed {
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    result
}

/// Runs `work` in a subtransaction (with a snapshot), so that on error its changes are rolled
/// back and the session is clean enough to record the failure before the error goes on.
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
        let result = with_snapshot(work);
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

/// The record of a run that failed before it could start (unknown policy, missing table, ...).
fn failed_before_start(name: &str, mode: Mode, started: Instant, message: &str) -> RunRecord {
    RunRecord {
        run_id: None,
        policy: name.to_string(),
        trigger: caller_trigger(),
        mode,
        status: Status::Failed,
        cutoff: None,
        rows_deleted: 0,
        batches: 0,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        error: Some(message.to_string()),
        tally: None,
        longest_transaction_ms: None,
    }
}

/// Runs a policy to completion inside the caller's transaction. A failure is recorded in the
/// history (out of band, see `failed_runs`) and logged, then raised to the caller.
pub fn run_in_transaction(name: &str, retain: Option<Interval>) -> Outcome {
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let result = in_subtransaction(|| {
        let prepared = Prepared::new(name, retain, true);
        if let Err(skipped) = prepared.lock_or_skip(Mode::Transaction, false) {
            return *skipped;
        }
        prune_history();
        mark_interrupted(name);
        let mut run = Run::new(prepared, Mode::Transaction);
        if run.prepared.policy.action == Action::TwilioRecording {
            loop {
                let fetched = run.fetch();
                let answers = match run.call(&fetched) {
                    Ok(answers) => answers,
                    Err(halt) => halt.raise(),
                };
                run.mark(&fetched, &answers);
                if (fetched.keys.len() as i64) < run.batch_size() {
                    break;
                }
            }
        } else {
            while run.row_batch() {}
        }
        run.finish(None)
    });
    result.unwrap_or_else(|error| {
        let message = error_message(&error);
        let record = failed_before_start(name, Mode::Transaction, started, &message);
        log!("{}", record.log_line());
        failed_runs::record(&failed_runs::FailedRun {
            policy: name,
            trigger: record.trigger.as_str(),
            started: started_wall,
            error: &message,
        });
        error.rethrow()
    })
}

/// Runs a policy committing after each batch; `commit` ends the current transaction and
/// starts the next. Must be called where a commit is allowed (the `run_batched` procedure).
pub fn run_batched(name: &str, retain: Option<Interval>, commit: &dyn Fn()) -> Outcome {
    let started = Instant::now();
    let start = in_subtransaction(|| {
        let prepared = Prepared::new(name, retain, true);
        prune_history();
        let mut run = Run::new(prepared, Mode::Batched);
        run.prepared.lock_or_skip(Mode::Batched, true)?;
        mark_interrupted(name);
        let cutoff = run.cutoff;
        insert_run(&mut run.record, Some(cutoff), None);
        Ok::<Run, Box<Outcome>>(run)
    });
    // Every commit ends a transaction: the longest gap between two is the run's longest one.
    let last_commit = std::cell::Cell::new(Instant::now());
    let longest = std::cell::Cell::new(0.0f64);
    let commit = &|| {
        commit();
        longest.set(longest.get().max(last_commit.get().elapsed().as_secs_f64() * 1000.0));
        last_commit.set(Instant::now());
    };
    let mut run = match start {
        Ok(Ok(run)) => run,
        Ok(Err(skipped)) => {
            commit();
            return *skipped;
        }
        Err(error) => {
            let message = error_message(&error);
            with_snapshot(|| {
                let mut record = failed_before_start(name, Mode::Batched, started, &message);
                insert_run(&mut record, None, Some(started));
                log!("{}", record.log_line());
            });
            commit();
            error.rethrow()
        }
    };
    commit();

    // Any error from here on: record it, release the lock, commit that, then raise it.
    fn fail(run: Run, error: Box<CaughtError>, commit: &dyn Fn()) -> ! {
        with_snapshot(|| run.finish(Some(error_message(&error))));
        commit();
        error.rethrow()
    }
    loop {
        let more = if run.prepared.policy.action == Action::TwilioRecording {
            let fetched = match in_subtransaction(std::panic::AssertUnwindSafe(|| run.fetch())) {
                Ok(fetched) => fetched,
                Err(error) => fail(run, error, commit),
            };
            commit(); // nothing is held while the calls are in flight
            let answers = match run.call(&fetched) {
                Ok(answers) => answers,
                Err(halt) => {
                    let message = halt.message();
                    with_snapshot(|| run.finish(Some(message)));
                    commit();
                    halt.raise()
                }
            };
            let marked = in_subtransaction(std::panic::AssertUnwindSafe(|| {
                run.mark(&fetched, &answers);
                run.save_progress();
            }));
            if let Err(error) = marked {
                fail(run, error, commit)
            }
            (fetched.keys.len() as i64) >= run.batch_size()
        } else {
            match in_subtransaction(std::panic::AssertUnwindSafe(|| {
                let more = run.row_batch();
                run.save_progress();
                more
            })) {
                Ok(more) => more,
                Err(error) => fail(run, error, commit),
            }
        };
        commit();
        run.record.longest_transaction_ms = Some(longest.get());
        if !more {
            break;
        }
    }
    let outcome = with_snapshot(|| run.finish(None));
    commit();
    outcome
}

/// A policy's backlog for the status view: its preview, or the error that stops it.
pub fn backlog(name: &str) -> JsonB {
    match in_subtransaction(|| preview(name, None)) {
        Ok(preview) => preview,
        Err(error) => JsonB(json!({ "error": error_message(&error) })),
    }
}

/// Counts what a run would touch now: same predicate and cutoff rule, nothing changed.
pub fn preview(name: &str, retain: Option<Interval>) -> JsonB {
    let prepared = Prepared::new(name, retain, false);
    let cutoff = prepared.cutoff();
    let counted = spi(Spi::get_one_with_args::<JsonB>(prepared.statements.preview.as_str(), &[cutoff.into()]));
    let mut result = counted.map(|j| j.0).unwrap_or_else(|| json!({}));
    result["policy"] = json!(name);
    result["table"] = json!(format!("{}.{}", prepared.policy.table_schema, prepared.policy.table_name));
    result["cutoff"] = json!(timestamp_text(cutoff));
    result["batch_size"] = json!(prepared.policy.batch_size);
    JsonB(result)
}

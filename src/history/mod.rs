//! The run history: the facts of one run, as recorded in `retention.runs` and logged as one
//! JSON line. This module owns that table: `store` holds every statement that reads or writes
//! it, `recorder` the background worker that records a failed in-transaction run. The model
//! here is plain Rust: building the record and its line needs no server.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::twilio::Answer;

mod ledger;
pub mod outcomes;
mod payload;
pub mod recorder;
pub mod store;

/// The session a run belongs to: its history row says which role, backend and application ran it.
#[derive(Debug)]
pub struct Origin {
    pub username: String,
    pub pid: i32,
    pub application_name: Option<String>,
}

/// `to_char` format of a UTC time as the history and the ledger write it: ISO 8601, six
/// fraction digits, `+00:00` (not `Z`, which Python 3.10's `fromisoformat` rejects).
pub const UTC_TEXT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'";

/// The worker's `backend_type` in `pg_stat_activity`.
pub const WORKER_TYPE: &str = "pg_retention worker";

/// Who started a run. Stored in `retention.runs.trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A call from psql or an application.
    Sql,
    /// A pg_cron job.
    PgCron,
    /// pg_retention's own background worker.
    Worker,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Sql, Trigger::PgCron, Trigger::Worker];

    pub fn parse(text: &str) -> Option<Trigger> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// pg_cron runs a job in a background worker of type `pg_cron`
    /// (`cron.use_background_workers = on`), which no client can be, or over libpq, where
    /// `application_name = 'pg_cron'` proves nothing (any client may set it): there it counts
    /// only when pg_cron's own run log names this backend as a job's (`cron_job_here`).
    pub fn detect(backend_type: &str, cron_job_here: bool) -> Self {
        if backend_type == WORKER_TYPE {
            Trigger::Worker
        } else if backend_type == "pg_cron" || cron_job_here {
            Trigger::PgCron
        } else {
            Trigger::Sql
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Sql => "sql",
            Trigger::PgCron => "pg_cron",
            Trigger::Worker => "worker",
        }
    }
}

/// How a run commits: all in the caller's transaction, or once per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Transaction,
    Batched,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        [Mode::Transaction, Mode::Batched].into_iter().find(|m| m.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Transaction => "transaction",
            Mode::Batched => "batched",
        }
    }
}

/// Where a run stands. Stored in `retention.runs.status`, whose CHECK lists exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A batched run between its first and last commit.
    Running,
    Succeeded,
    Failed,
    /// Not run: the policy is disabled, or another run of it held the policy's lock.
    Skipped,
    /// A batched run whose session ended before it finished; set by the next run.
    Interrupted,
    /// The policy was disabled while the run was going: it stopped before its next batch.
    Stopped,
}

impl Status {
    #[cfg(test)]
    pub const ALL: [Status; 6] =
        [Status::Running, Status::Succeeded, Status::Failed, Status::Skipped, Status::Interrupted, Status::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Interrupted => "interrupted",
            Status::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: Option<i64>,
    pub policy: String,
    /// The table the run acted on (schema-qualified, quoted), once its policy was read: what its
    /// ledger entry names, whatever the policy names later.
    pub target: Option<String>,
    pub trigger: Trigger,
    pub mode: Mode,
    pub status: Status,
    /// ISO 8601, as Postgres prints it.
    pub cutoff: Option<String>,
    pub rows_deleted: i64,
    pub batches: i64,
    pub started: SystemTime,
    pub duration_ms: f64,
    pub error: Option<String>,
    /// Recording runs only: what Twilio answered, row by row.
    pub tally: Option<Tally>,
    /// Batched runs: the longest of their transactions, in milliseconds.
    pub longest_transaction_ms: Option<f64>,
    /// Partitioned tables: each partition removed whole, or that could not be and why.
    pub partitions: Vec<Value>,
    /// The legal holds in force, and the rows past the cutoff they kept when the run began.
    pub holds: Option<Held>,
    /// Recording runs, at their end: how many outcomes they wrote, and their digest.
    pub outcomes_digest: Option<(i64, String)>,
}

/// The legal holds a run kept rows for.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub names: Vec<String>,
    pub rows: i64,
}

/// The kinds of failure a recording run counts, each a key of its result.
pub const FAILURE_KINDS: [&str; 8] =
    ["rate_limited", "server_error", "timeout", "connection_error", "bad_request", "account_unverified", "transcriptions_left", "objects_left"];

/// Counts of a recording run. `checked = deleted + failed + skipped`, always.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub checked: i64,
    /// Twilio confirmed the media gone (204, or 404 = already gone).
    pub deleted: i64,
    /// Of `deleted`, those Twilio answered 404 for.
    pub already_gone: i64,
    pub failed: i64,
    /// Never sent: no SID, or not `RE` + 32 hex digits.
    pub skipped: i64,
    /// `failed`, by kind (keys from `FAILURE_KINDS`).
    pub failures: [i64; 8],
    /// The SIDs of the first `FAILED_SIDS_KEPT` failed recordings.
    pub failed_sids: Vec<String>,
    /// Policies that delete transcriptions: what Twilio answered for them.
    pub transcriptions: Option<ObjectTally>,
    /// Policies with an S3 store: what S3 answered for each key.
    pub objects: Option<ObjectTally>,
}

/// A run's deletions of one kind of object (transcriptions, S3 keys): confirmed gone, and not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjectTally {
    pub deleted: i64,
    pub failed: i64,
}

impl ObjectTally {
    pub fn count(&mut self, confirmed: bool) {
        if confirmed {
            self.deleted += 1;
        } else {
            self.failed += 1;
        }
    }
}

/// How many failed SIDs a run's result names.
pub const FAILED_SIDS_KEPT: usize = 100;

impl Tally {
    pub fn count(&mut self, answer: &Answer) {
        self.checked += 1;
        if answer.confirms_deletion() {
            self.deleted += 1;
            if *answer == Answer::AlreadyGone {
                self.already_gone += 1;
            }
        } else {
            self.failed += 1;
            if let Some(i) = answer.failure_kind().and_then(|k| FAILURE_KINDS.iter().position(|f| *f == k)) {
                self.failures[i] += 1;
            }
        }
    }

    /// How many recordings failed as `kind` (one of `FAILURE_KINDS`).
    pub fn failed_as(&self, kind: &str) -> i64 {
        FAILURE_KINDS.iter().position(|k| *k == kind).map_or(0, |i| self.failures[i])
    }

    /// Keeps a failed recording's SID for the run's result, up to `FAILED_SIDS_KEPT`.
    pub fn note_failed_sid(&mut self, sid: &str) {
        if self.failed_sids.len() < FAILED_SIDS_KEPT {
            self.failed_sids.push(sid.to_string());
        }
    }

    pub fn skip(&mut self) {
        self.checked += 1;
        self.skipped += 1;
    }

    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("checked".into(), json!(self.checked));
        map.insert("deleted".into(), json!(self.deleted));
        map.insert("already_gone".into(), json!(self.already_gone));
        map.insert("failed".into(), json!(self.failed));
        map.insert("skipped".into(), json!(self.skipped));
        for (kind, n) in FAILURE_KINDS.iter().zip(self.failures) {
            map.insert((*kind).into(), json!(n));
        }
        map.insert("failed_sids".into(), json!(self.failed_sids));
        if let Some(transcriptions) = &self.transcriptions {
            map.insert("transcriptions_deleted".into(), json!(transcriptions.deleted));
            map.insert("transcriptions_failed".into(), json!(transcriptions.failed));
        }
        if let Some(objects) = &self.objects {
            map.insert("s3_objects_deleted".into(), json!(objects.deleted));
            map.insert("s3_objects_failed".into(), json!(objects.failed));
        }
        Value::Object(map)
    }
}

impl RunRecord {
    /// A run of `policy` starting now, nothing done yet.
    pub fn new(policy: &str, trigger: Trigger, mode: Mode, status: Status) -> RunRecord {
        RunRecord {
            run_id: None,
            policy: policy.to_string(),
            target: None,
            trigger,
            mode,
            status,
            cutoff: None,
            rows_deleted: 0,
            batches: 0,
            started: SystemTime::now(),
            duration_ms: 0.0,
            error: None,
            tally: None,
            longest_transaction_ms: None,
            partitions: Vec::new(),
            holds: None,
            outcomes_digest: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "run_id": self.run_id,
            "policy": self.policy,
            "trigger": self.trigger.as_str(),
            "mode": self.mode.as_str(),
            "status": self.status.as_str(),
            "cutoff": self.cutoff,
            "rows_deleted": self.rows_deleted,
            "batches": self.batches,
            "duration_ms": (self.duration_ms * 1000.0).round() / 1000.0,
            "error": self.error,
        });
        if let (Some(Value::Object(details)), Value::Object(map)) = (self.details(), &mut value) {
            map.extend(details);
        }
        if let (Some(_), Value::Object(map)) = (&self.tally, &mut value) {
            map.insert("cutoff_date".into(), json!(self.cutoff));
        }
        value
    }

    /// What `retention.runs.details` holds: a recording run's counts, a batched run's longest
    /// transaction, the partitions removed.
    pub fn details(&self) -> Option<Value> {
        let mut details = match &self.tally {
            Some(tally) => tally.to_json(),
            None if self.longest_transaction_ms.is_some() || !self.partitions.is_empty() || self.holds.is_some() => Value::Object(Map::new()),
            None => return None,
        };
        if let (Some(ms), Value::Object(map)) = (self.longest_transaction_ms, &mut details) {
            map.insert("longest_transaction_ms".into(), json!((ms * 1000.0).round() / 1000.0));
        }
        if let (false, Value::Object(map)) = (self.partitions.is_empty(), &mut details) {
            map.insert("partitions".into(), Value::Array(self.partitions.clone()));
        }
        if let (Some((count, sha256)), Value::Object(map)) = (&self.outcomes_digest, &mut details) {
            map.insert("recording_outcomes".into(), json!({ "count": count, "sha256": sha256 }));
        }
        if let (Some(held), Value::Object(map)) = (&self.holds, &mut details) {
            map.insert("held".into(), json!(held.rows));
            map.insert("holds".into(), json!(held.names));
        }
        Some(details)
    }

    /// The one server-log line a run writes.
    pub fn log_line(&self) -> String {
        format!("pg_retention run: {}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RunRecord {
        RunRecord {
            run_id: Some(7),
            policy: "expired_traces".into(),
            target: Some("public.\"ConversationTrace\"".into()),
            trigger: Trigger::PgCron,
            mode: Mode::Batched,
            status: Status::Failed,
            cutoff: Some("2026-11-26T03:00:00+00:00".into()),
            rows_deleted: 1200,
            batches: 2,
            started: SystemTime::now(),
            duration_ms: 12.34567,
            error: Some("relation \"x\" \"quoted\" does not exist".into()),
            tally: None,
            longest_transaction_ms: None,
            partitions: Vec::new(),
            holds: None,
            outcomes_digest: None,
        }
    }

    #[test]
    fn tally_adds_up_and_lands_in_the_json() {
        let mut tally = Tally::default();
        for answer in [Answer::Deleted, Answer::AlreadyGone, Answer::Timeout, Answer::RateLimited,
                       Answer::ServerError(503), Answer::BadRequest(400, String::new())] {
            tally.count(&answer);
        }
        tally.skip();
        assert_eq!(tally.checked, tally.deleted + tally.failed + tally.skipped);
        let mut run = record();
        run.tally = Some(tally);
        let json = run.to_json();
        assert_eq!(json["checked"], 7);
        assert_eq!(json["deleted"], 2);
        assert_eq!(json["already_gone"], 1);
        assert_eq!(json["failed"], 4);
        assert_eq!(json["skipped"], 1);
        assert_eq!(json["timeout"], 1);
        assert_eq!(json["rate_limited"], 1);
        assert_eq!(json["server_error"], 1);
        assert_eq!(json["bad_request"], 1);
        assert_eq!(json["connection_error"], 0);
        assert_eq!(json["cutoff_date"], "2026-11-26T03:00:00+00:00");
    }

    #[test]
    fn log_line_is_one_line_of_valid_json() {
        let line = record().log_line();
        assert!(!line.contains('\n'));
        let json: Value = serde_json::from_str(line.strip_prefix("pg_retention run: ").unwrap()).unwrap();
        assert_eq!(json["policy"], "expired_traces");
        assert_eq!(json["trigger"], "pg_cron");
        assert_eq!(json["mode"], "batched");
        assert_eq!(json["status"], "failed");
        assert_eq!(json["rows_deleted"], 1200);
        assert_eq!(json["duration_ms"], 12.346);
        assert_eq!(json["error"], "relation \"x\" \"quoted\" does not exist");
    }

    #[test]
    fn status_enum_matches_the_table_check() {
        let catalog = include_str!("../../sql/catalog.sql");
        let check = catalog.lines().find(|l| l.trim_start().starts_with("status ")).expect("runs.status column");
        let allowed: Vec<&str> = check.split('\'').skip(1).step_by(2).collect();
        let ours: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(allowed, ours);
    }

    #[test]
    fn trigger_detected_from_backend_type_or_application_name() {
        assert_eq!(Trigger::detect("pg_cron", false), Trigger::PgCron);
        assert_eq!(Trigger::detect("client backend", true), Trigger::PgCron);
        assert_eq!(Trigger::detect("client backend", false), Trigger::Sql);
        assert_eq!(Trigger::detect("", false), Trigger::Sql);
        assert_eq!(Trigger::detect(WORKER_TYPE, false), Trigger::Worker);
    }
}

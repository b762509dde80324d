//! twilio_recording batches: read the batch, delete each recording at Twilio with nothing
//! held, then mark the rows whose deletion Twilio confirmed. Also the Twilio settings, read on
//! this (the main) thread and handed to the client as plain values.

use pgrx::prelude::*;

use super::run::Run;
use super::sql::{Confirmed, Fetched};
use super::xact::shutdown_requested;
use crate::error::{raise, say};
use crate::history::Tally;
use crate::rights::as_table_owner;
use crate::settings;
use crate::history::outcomes::Outcome;
use crate::policy::MissingSid;
use crate::twilio::{self, Account, Answer, Reply, Target};

/// Rows of one run whose skip or failure is logged one by one; the rest only in the counts.
const ROWS_LOGGED_PER_RUN: i64 = 20;

impl Run {
    /// Step 1: the next batch of unmarked recordings past the cutoff.
    pub(super) fn fetch(&mut self) -> Fetched {
        let super::plan::BatchPlan::Recordings { statements, after } = &mut self.plan else {
            unreachable!("a recording batch needs the recordings plan")
        };
        let (cutoff, batch_size) = (self.cutoff, i64::from(self.policy.batch_size));
        let fetched = as_table_owner(self.owner, || statements.fetch(cutoff, after.as_deref(), batch_size));
        if let Some(last) = fetched.keys.last() {
            *after = Some(last.clone());
        }
        fetched
    }

    /// Step 2: the Twilio calls. Touches no Postgres API: the calls run on
    /// helper threads while this thread waits, watching for a cancel or shutdown request.
    /// Rows with no valid SID are never sent.
    /// When a bound of the run (`twilio::Bounds`) stopped the calls early, the answers cover
    /// only the rows before the first one not sent: the rest is left for the next run, and
    /// `bound` says why.
    pub(super) fn call(&mut self, fetched: &Fetched) -> Result<Answers, Halt> {
        // A cancel, a terminate, or (in the worker) a shutdown request; not the other interrupts
        // (barriers, catch-up) that Postgres also flags, which need no answer from us here.
        // Asked at least every 20 ms on this thread while the calls run: the moment to show how
        // many are in flight.
        let twilio = self.twilio.clone();
        let interrupted = || {
            crate::progress::in_flight(twilio.as_ref().map_or(0, |client| client.in_flight()));
            // SAFETY: reading flags that Postgres' signal handlers set.
            let asked = unsafe { pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0 };
            asked || shutdown_requested()
        };
        // The S3 copies first: a row whose objects are not all gone keeps its Twilio recording too.
        let objects = self.delete_objects(fetched, &interrupted)?;
        let policy = &self.policy.name;
        let tally = self.record.tally.get_or_insert_with(Tally::default);
        let by_row_account = self.policy.account_column.is_some();
        let sendable = |row: usize| fetched.sids[row].as_deref().is_some_and(twilio::is_recording_sid) && super::objects::gone(&objects[row]);
        let to_send: Vec<Target> = (0..fetched.keys.len())
            .filter(|row| sendable(*row))
            .map(|row| {
                let account = if by_row_account { Account::Row(fetched.accounts[row].clone()) } else { Account::Main };
                Target { sid: fetched.sids[row].clone().unwrap_or_default(), account }
            })
            .collect();
        let Some(client) = self.twilio.as_ref() else {
            raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "pg_retention: a recording run without a Twilio client".into(), None)
        };
        let answers = client.delete_all(to_send, &interrupted).map_err(|_| Halt::Stopped)?;
        if let Some(Some(Reply { answer: Answer::Refused(status), .. })) = answers.iter().find(|a| matches!(a, Some(Reply { answer: Answer::Refused(_), .. }))) {
            return Err(Halt::Refused(*status, client.account_sid().to_string()));
        }
        let unsent = if client.bound_reached().is_some() { answers.iter().rev().take_while(|a| a.is_none()).count() } else { 0 };
        self.bound = client.bound_reached().filter(|_| unsent > 0);
        let mut unsent_left = answers.len() - unsent;
        let mut sent = answers.into_iter();
        let mut per_row = Vec::with_capacity(fetched.keys.len());
        for (row, (key, sid)) in fetched.keys.iter().zip(&fetched.sids).enumerate() {
            if !sid.as_deref().is_some_and(twilio::is_recording_sid) {
                if tally.skipped < ROWS_LOGGED_PER_RUN {
                    let shown: String = sid.as_deref().unwrap_or("NULL").chars().take(40).collect();
                    say!(LOG, "pg_retention: policy \"{policy}\": row {key} skipped, its recording SID {shown:?} is not RE + 32 hex digits");
                }
                tally.skip();
                per_row.push(None);
                continue;
            }
            let reply = if !sendable(row) {
                let left = super::objects::left(&objects[row]);
                if tally.failed_as("objects_left") < ROWS_LOGGED_PER_RUN {
                    say!(LOG, "pg_retention: policy \"{policy}\": row {key} is not marked: {left:?}");
                }
                Reply { answer: left, request_id: None, account: None, transcriptions: Vec::new() }
            } else if unsent_left == 0 {
                break; // a bound stopped the calls: this row and the rest wait for the next run
            } else {
                unsent_left -= 1;
                sent.next().flatten().unwrap_or(Reply { answer: Answer::ConnectionError("not sent".into()), request_id: None, account: None, transcriptions: Vec::new() })
            };
            if let Answer::BadRequest(status, body) = &reply.answer {
                if tally.failed_as("bad_request") < ROWS_LOGGED_PER_RUN {
                    say!(LOG, "pg_retention: policy \"{policy}\": row {key}: Twilio answered HTTP {status} to the DELETE: {body}");
                }
            }
            if let Answer::AccountUnverified(_, why) = &reply.answer {
                if tally.failed_as("account_unverified") < ROWS_LOGGED_PER_RUN {
                    say!(LOG, "pg_retention: policy \"{policy}\": row {key} is not marked: {why}");
                }
            }
            tally.count(&reply.answer);
            if self.policy.transcriptions {
                let counts = tally.transcriptions.get_or_insert_with(Default::default);
                reply.transcriptions.iter().for_each(|deletion| counts.count(deletion.answer.confirms_deletion()));
            }
            if !reply.answer.confirms_deletion() {
                tally.note_failed_sid(sid.as_deref().unwrap_or_default());
            }
            per_row.push(Some(reply));
        }
        Ok(Answers { replies: per_row, objects })
    }

    /// Step 3: marks the rows whose SID Twilio confirmed (204 or 404), and records every row's
    /// outcome, in one transaction.
    pub(super) fn mark(&mut self, fetched: &Fetched, answers: &Answers) {
        let mark_missing = self.policy.missing_sid == MissingSid::Mark;
        let store = self.policy.s3_store.clone().unwrap_or_default();
        let mut confirmed = Confirmed::default();
        let (mut missing_keys, mut missing_sids) = (Vec::new(), Vec::new());
        let mut outcomes = Vec::with_capacity(fetched.keys.len());
        for (row, reply) in answers.replies.iter().enumerate() {
            let (key, sid, objects) = (&fetched.keys[row], &fetched.sids[row], &answers.objects[row]);
            match reply {
                Some(reply) if reply.answer.confirms_deletion() => {
                    confirmed.keys.push(key.clone());
                    confirmed.sids.push(sid.clone().unwrap_or_default());
                    confirmed.accounts.push(fetched.accounts[row].clone());
                    confirmed.objects.push(fetched.objects[row].clone());
                }
                // Never sent: no valid SID; its S3 objects, if any, confirmed gone.
                None if mark_missing && super::objects::gone(objects) => {
                    missing_keys.push(key.clone());
                    missing_sids.push(sid.clone());
                }
                _ => {}
            }
            outcomes.push(row_outcome(key, sid, reply.as_ref(), mark_missing && super::objects::gone(objects)));
            outcomes.extend(reply.iter().flat_map(|reply| transcription_outcomes(key, reply)));
            outcomes.extend(super::objects::outcomes(key, &store, objects));
        }
        self.history.record_outcomes(&self.record, outcomes);
        let super::plan::BatchPlan::Recordings { statements, .. } = &self.plan else {
            unreachable!("a recording batch needs the recordings plan")
        };
        let cutoff = self.cutoff;
        if !missing_keys.is_empty() {
            let reason = self.policy.reason_column.as_ref().map(|_| NO_SID_REASON);
            self.record.rows_deleted += as_table_owner(self.owner, || statements.mark_missing(cutoff, missing_keys, missing_sids, reason)) as i64;
        }
        if !confirmed.keys.is_empty() {
            let reason = self.policy.reason();
            self.record.rows_deleted += as_table_owner(self.owner, || statements.mark(cutoff, confirmed, reason)) as i64;
        }
        self.record.batches += 1;
    }
}

/// What a batch's external calls came to, per fetched row (the rows a bound left unsent have
/// no reply): its Twilio reply (None: never sent, no valid SID), and its S3 objects' answers.
pub(super) struct Answers {
    pub replies: Vec<Option<Reply>>,
    pub objects: Vec<Vec<crate::s3::KeyReply>>,
}

/// The reason written on a row marked without a Twilio call (`missing_sid => 'mark'`).
const NO_SID_REASON: &str = "no_recording_sid";

/// One fetched row's outcome: what Twilio answered for its SID, or why it was not sent.
fn row_outcome(key: &str, sid: &Option<String>, reply: Option<&Reply>, mark_missing: bool) -> Outcome {
    let marked = if mark_missing { "; marked without a Twilio call (missing_sid = mark)" } else { "" };
    let (outcome, http_status, reason, request_id) = match reply {
        Some(reply) => {
            let (outcome, status, reason) = twilio::outcome(&reply.answer);
            (outcome, status.map(i32::from), reason, reply.request_id.clone())
        }
        None if sid.is_none() => ("skipped", None, Some(format!("no recording SID{marked}")), None),
        None => ("skipped", None, Some(format!("the SID is not RE + 32 hex digits{marked}")), None),
    };
    let account = reply.and_then(|reply| reply.account.clone());
    Outcome { key: key.to_string(), object: "recording", sid: sid.clone(), account, store: None, version: None, outcome, http_status, request_id, reason }
}

/// The outcomes of a row's transcriptions, one each, under the account they were listed under.
fn transcription_outcomes<'r>(key: &'r str, reply: &'r Reply) -> impl Iterator<Item = Outcome> + 'r {
    reply.transcriptions.iter().map(move |deletion| {
        let (outcome, status, reason) = twilio::outcome(&deletion.answer);
        Outcome {
            key: key.to_string(),
            object: "transcription",
            sid: Some(deletion.sid.clone()),
            account: reply.account.clone(),
            store: None,
            version: None,
            outcome,
            http_status: status.map(i32::from),
            request_id: deletion.request_id.clone(),
            reason,
        }
    })
}

/// Why a run stops before its work is done, other than an error.
pub(super) enum Halt {
    /// 401/403: the run stops.
    Refused(u16, String),
    /// The S3 store answered 401/403 (a wrong key or secret, no right to delete): the run stops.
    StoreRefused(u16, String),
    /// A cancel, terminate or shutdown request arrived while calls were in flight.
    Stopped,
    /// A bound of the run was reached (`pg_retention.twilio_max_rate_limited`,
    /// `pg_retention.max_run_duration`): what was confirmed is marked, the rest left.
    Bound(twilio::BoundReached),
}

impl Halt {
    pub(super) fn message(&self) -> String {
        match self {
            Halt::Refused(status, account) => refused_text(*status, account),
            Halt::StoreRefused(status, why) => format!("the S3 {why} (HTTP {status}): the run stopped and no row of this batch was marked"),
            Halt::Stopped => "stopped by a cancel or shutdown request while Twilio calls were in flight; no row of this batch was marked".into(),
            Halt::Bound(twilio::BoundReached::RateLimited(n)) => format!(
                "Twilio answered 429 (rate limited) to {n} recordings in a row, each after every attempt allowed; the run stopped at pg_retention.twilio_max_rate_limited and left the rest for the next run"
            ),
            Halt::Bound(twilio::BoundReached::Deadline) => format!(
                "the run reached pg_retention.max_run_duration ({} s); it stopped and left the rest for the next run",
                settings::MAX_RUN_DURATION_S.get()
            ),
        }
    }

    /// Raises the error that ends the run.
    pub(super) fn raise(self) -> ! {
        match self {
            Halt::Refused(status, ref account) => refused_error(status, account),
            Halt::StoreRefused(..) => raise(
                PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                self.message(),
                Some("Check the store's secret_file (aws_access_key_id, aws_secret_access_key, aws_session_token), its region, and that the key may delete in the bucket (s3:DeleteObject, s3:DeleteObjectVersion, s3:ListBucketVersions, s3:GetBucketVersioning).".into()),
            ),
            Halt::Bound(_) => raise(
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                self.message(),
                Some("What Twilio confirmed is marked. Raise the setting, or let the next run go on from here.".into()),
            ),
            Halt::Stopped => {
                // A cancel or terminate raises its own error here; a worker's shutdown does not.
                pgrx::check_for_interrupts!();
                raise(PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN, Halt::Stopped.message(), None)
            }
        }
    }
}

/// Twilio refused the credentials of `account` (the policy's Twilio store's): the run stops;
/// nothing of the batch is marked.
fn refused_text(status: u16, account: &str) -> String {
    format!("Twilio refused the credentials for account {account} (HTTP {status}); the run stopped and no row of this batch was marked")
}

fn refused_error(status: u16, account: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        refused_text(status, account),
        Some("Check pg_retention.twilio_account_sid, the secret in pg_retention.twilio_secret_file (and pg_retention.twilio_api_key_sid if you use an API key), and that pg_retention.twilio_base_url is the account's region; or, for a policy naming another twilio_store, that store's row in retention.stores.".into()),
    )
}

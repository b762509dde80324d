//! The S3 step of a recordings batch: every S3 object a row names (`s3_key_columns`) is
//! deleted from the policy's S3 store before the row's Twilio calls, in DeleteObjects requests
//! of up to 1,000 keys across the batch; a row whose objects are not all confirmed gone is not
//! sent to Twilio, and not marked.

use std::sync::Arc;

use super::recordings::Halt;
use super::run::Run;
use super::sql::Fetched;
use crate::history::outcomes::Outcome;
use crate::s3::{self, KeyAnswer, KeyReply};
use crate::twilio::{self, Answer};

impl Run {
    /// Deletes the objects of the rows to be sent (a valid SID) or marked without a Twilio call
    /// (`missing_sid => 'mark'`); per row, the answer for each of its keys (none for a row
    /// without objects, or without an S3 store).
    pub(super) fn delete_objects(&mut self, fetched: &Fetched, interrupted: &dyn Fn() -> bool) -> Result<Vec<Vec<KeyReply>>, Halt> {
        let mut per_row: Vec<Vec<KeyReply>> = vec![Vec::new(); fetched.keys.len()];
        let Some(client) = self.s3.clone() else { return Ok(per_row) };
        let mut keys = Vec::new();
        let mut owners = Vec::new();
        let mark_missing = self.policy.missing_sid == crate::policy::MissingSid::Mark;
        for (row, (sid, objects)) in fetched.sids.iter().zip(&fetched.objects).enumerate() {
            if !sid.as_deref().is_some_and(twilio::is_recording_sid) && !mark_missing {
                continue;
            }
            for key in objects.iter().flatten() {
                if key.is_empty() {
                    per_row[row].push(KeyReply { key: String::new(), answer: KeyAnswer::Failed(None, "an empty key names no object".into()), status: None, request_id: None });
                } else {
                    keys.push(key.clone());
                    owners.push(row);
                }
            }
        }
        let replies = client.delete_keys(keys, interrupted).map_err(|_| Halt::Stopped)?;
        if let Some(KeyReply { answer: KeyAnswer::Refused(status, why), .. }) = replies.iter().find(|r| matches!(r.answer, KeyAnswer::Refused(..))) {
            let store = self.policy.s3_store.as_deref().unwrap_or_default();
            return Err(Halt::StoreRefused(*status, format!("store \"{store}\" refused the credentials: {why}")));
        }
        let counts = self.record.tally.get_or_insert_with(Default::default).objects.get_or_insert_with(Default::default);
        for (reply, row) in replies.into_iter().zip(owners) {
            counts.count(reply.answer.confirms_deletion());
            per_row[row].push(reply);
        }
        Ok(per_row)
    }
}

/// A run's S3 client, if its policy names an S3 store.
pub(super) fn client(policy: &crate::policy::Policy) -> Option<Arc<s3::Client>> {
    let store = crate::store::Store::load(policy.s3_store.as_deref()?, &policy.name);
    Some(Arc::new(s3::Client::new(store.s3_config(policy.s3_versions))))
}

/// Whether every S3 object of a row is confirmed gone (a row with none: yes).
pub(super) fn gone(replies: &[KeyReply]) -> bool {
    replies.iter().all(|reply| reply.answer.confirms_deletion())
}

/// Why a row was not sent to Twilio: the first of its objects not confirmed gone.
pub(super) fn left(replies: &[KeyReply]) -> Answer {
    let failed: Vec<&KeyReply> = replies.iter().filter(|reply| !reply.answer.confirms_deletion()).collect();
    let first = failed.first().map(|reply| format!("{:?}: {}", reply.key, reason(&reply.answer))).unwrap_or_default();
    Answer::ObjectsLeft(failed.first().and_then(|reply| reply.status), format!("{} of its {} S3 object(s) not confirmed gone ({first}), so Twilio was not called", failed.len(), replies.len()))
}

fn reason(answer: &KeyAnswer) -> String {
    match answer {
        KeyAnswer::Deleted(_) | KeyAnswer::Absent => String::new(),
        KeyAnswer::KeyError { code, message } => format!("{code}: {message}"),
        KeyAnswer::Failed(_, why) | KeyAnswer::Refused(_, why) => why.clone(),
    }
}

/// A row's S3 outcomes: one per version deleted (one per key on a bucket without versions, or
/// for a key that failed or had none), in the store `store`.
pub(super) fn outcomes<'r>(key: &'r str, store: &'r str, replies: &'r [KeyReply]) -> impl Iterator<Item = Outcome> + 'r {
    replies.iter().flat_map(move |reply| {
        let one = |outcome: &'static str, version: Option<String>| Outcome {
            key: key.to_string(),
            object: "s3_object",
            sid: Some(reply.key.clone()),
            account: None,
            store: Some(store.to_string()),
            version,
            outcome,
            http_status: reply.status.map(i32::from),
            request_id: reply.request_id.clone(),
            reason: (!reply.answer.confirms_deletion()).then(|| reason(&reply.answer)),
        };
        match &reply.answer {
            KeyAnswer::Deleted(versions) if !versions.is_empty() => versions.iter().map(|v| one("deleted", Some(v.clone()))).collect::<Vec<_>>(),
            KeyAnswer::Deleted(_) => vec![one("deleted", None)],
            KeyAnswer::Absent => vec![one("already_gone", None)],
            _ => vec![one("failed", None)],
        }
    })
}

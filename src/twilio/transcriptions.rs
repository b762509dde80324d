//! A recording's transcriptions: Twilio keeps them as resources of their own, which outlive a
//! DELETE of the recording. A policy with `transcriptions` lists them under the recording
//! (`GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}/Transcriptions.json`),
//! deletes each (`DELETE /2010-04-01/Accounts/{AccountSid}/Transcriptions/{Sid}.json`), and
//! only then deletes the recording, so that the recording is never gone while its words stay.
//!
//! A 404 to the listing is not a proof of anything about the transcriptions: Twilio keeps a
//! deleted recording's metadata for 40 days, so the listing answers for a recording deleted
//! since (an earlier run that died before marking), and a 404 means the recording has been
//! gone longer, or was never under that account. The row is then left unmarked.

use super::{accounts, Answer, Client, Method, Target};

/// `TR` + 32 hex digits, as in Twilio's OpenAPI spec (`^TR[0-9a-fA-F]{32}$`).
pub fn is_transcription_sid(sid: &str) -> bool {
    super::has_sid_shape(sid, "TR")
}

/// The first page of a recording's transcriptions: Twilio's largest.
pub fn first_page(account_sid: &str, recording_sid: &str) -> String {
    format!("{}?PageSize=1000", listing_path(account_sid, recording_sid))
}

fn listing_path(account_sid: &str, recording_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}/Transcriptions.json")
}

/// The request path for one transcription, as the OpenAPI spec has it.
pub fn transcription_path(account_sid: &str, transcription_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Transcriptions/{transcription_sid}.json")
}

/// One page of a recording's transcriptions: their SIDs and the next page's path, if any.
/// Every entry must be a transcription of this recording; the next page must be a page of
/// the same listing (never another host or resource).
pub fn parse_page(body: &str, account_sid: &str, recording_sid: &str) -> Result<(Vec<String>, Option<String>), String> {
    let page: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("the transcription list is not JSON: {e}"))?;
    let entries = page["transcriptions"].as_array().ok_or("the transcription list has no \"transcriptions\" array")?;
    let mut sids = Vec::with_capacity(entries.len());
    for entry in entries {
        let sid = entry["sid"].as_str().filter(|sid| is_transcription_sid(sid));
        let Some(sid) = sid else { return Err("the transcription list has an entry without a transcription SID".into()) };
        match entry["recording_sid"].as_str() {
            Some(of) if of != recording_sid => return Err(format!("the transcription list of {recording_sid} names {sid}, a transcription of {of}")),
            _ => sids.push(sid.to_string()),
        }
    }
    let next = match page["next_page_uri"].as_str() {
        None => None,
        Some(uri) if uri.strip_prefix(&listing_path(account_sid, recording_sid)).is_some_and(|rest| rest.starts_with('?')) => Some(uri.to_string()),
        Some(_) => return Err("the transcription list's next_page_uri is not a page of the same listing".into()),
    };
    Ok((sids, next))
}

/// Pages followed at most: a recording has a handful of transcriptions, and a server that
/// never ends its list ends here.
pub const MAX_PAGES: usize = 100;

/// What Twilio answered to one transcription's DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub sid: String,
    pub answer: Answer,
    pub request_id: Option<String>,
}

impl Client {
    /// Lists the recording's transcriptions under `account` and deletes each, recording every
    /// answer in `done`. Ok when every one is gone (or there were none); otherwise the answer the
    /// recording gets instead of being sent, with the id of the request that decided it.
    pub(super) fn delete_transcriptions(&self, account: &str, target: &Target, done: &mut Vec<Deletion>) -> Result<(), (Answer, Option<String>)> {
        let sids = self.list_transcriptions(account, target)?;
        let mut left = 0;
        for sid in &sids {
            let (answer, request_id) = match self.exchange(Method::Delete, &transcription_path(account, sid)) {
                Ok(http) => (http.answer, http.request_id),
                Err(failure) => failure,
            };
            done.push(Deletion { sid: sid.clone(), answer: answer.clone(), request_id: request_id.clone() });
            match answer {
                // Both stop the row as they would a recording's DELETE: the run's bounds count them.
                Answer::Refused(_) | Answer::RateLimited => return Err((answer, request_id)),
                // A 404 under the account it was just listed under: deleted in between.
                answer if answer.confirms_deletion() => {}
                _ => left += 1,
            }
        }
        if left > 0 {
            let why = format!("{left} of its {} transcription(s) not confirmed gone, so the recording was not sent", sids.len());
            return Err((Answer::TranscriptionsLeft(None, why), None));
        }
        Ok(())
    }

    fn list_transcriptions(&self, account: &str, target: &Target) -> Result<Vec<String>, (Answer, Option<String>)> {
        let left = |status: Option<u16>, why: String| Answer::TranscriptionsLeft(status, why);
        let mut sids = Vec::new();
        let mut page = Some(first_page(account, &target.sid));
        for _ in 0..MAX_PAGES {
            let Some(path) = page.take() else { return Ok(sids) };
            let http = match self.exchange(Method::Get, &path) {
                Ok(http) => http,
                Err((Answer::RateLimited, request_id)) => return Err((Answer::RateLimited, request_id)),
                Err((answer, request_id)) => return Err((left(None, format!("listing its transcriptions failed: {answer:?}")), request_id)),
            };
            match http.status {
                200 => match parse_page(&http.body, account, &target.sid) {
                    Ok((listed, next)) => {
                        sids.extend(listed);
                        page = next;
                    }
                    Err(why) => return Err((left(Some(200), why), http.request_id)),
                },
                404 => {
                    let reachable = || self.reachable();
                    let answer = match accounts::not_found_is_gone(&self.config.credentials.account_sid, &target.account, &reachable) {
                        Ok(()) => left(Some(404), format!(
                            "Twilio answered 404 to the listing of its transcriptions under account {account}: the recording is unknown there (Twilio keeps a deleted recording's metadata 40 days), so whether transcriptions remain cannot be told"
                        )),
                        Err(why) => Answer::AccountUnverified(Some(404), why),
                    };
                    return Err((answer, http.request_id));
                }
                status => match http.answer {
                    Answer::Refused(_) => return Err((http.answer, http.request_id)),
                    _ => return Err((left(Some(status), format!("listing its transcriptions got HTTP {status}")), http.request_id)),
                },
            }
        }
        Err((left(None, format!("the transcription list did not end within {MAX_PAGES} pages")), None))
    }
}

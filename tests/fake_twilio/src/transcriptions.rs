//! Transcriptions as at Twilio: resources of their own, listed under their recording
//! (`GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}/Transcriptions.json`) and
//! deleted by SID (`DELETE /2010-04-01/Accounts/{AccountSid}/Transcriptions/{Sid}.json`), each
//! under its own account only. Deleting a recording leaves its transcriptions, and its
//! metadata stays listable (Twilio keeps it 40 days) until `forget_deleted` says the 40 days
//! have passed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

/// Every account's transcriptions and the recordings whose metadata Twilio still keeps.
#[derive(Default)]
pub struct Transcriptions {
    /// Transcription SID -> (account, recording SID).
    stored: BTreeMap<String, (String, String)>,
    /// (account, recording SID) of recordings deleted while their metadata is kept.
    deleted_recordings: BTreeSet<(String, String)>,
}

impl Transcriptions {
    pub fn add(&mut self, account: &str, recording: &str, sids: impl IntoIterator<Item = String>) {
        for sid in sids {
            self.stored.insert(sid, (account.to_string(), recording.to_string()));
        }
    }

    pub fn remaining(&self) -> BTreeSet<String> {
        self.stored.keys().cloned().collect()
    }

    pub fn recording_deleted(&mut self, account: &str, recording: &str) {
        self.deleted_recordings.insert((account.to_string(), recording.to_string()));
    }

    /// The 40 days have passed: deleted recordings are unknown from now on.
    pub fn forget_deleted(&mut self) {
        self.deleted_recordings.clear();
    }

    /// `GET .../Recordings/{recording}/Transcriptions.json?PageSize=N&Page=P`, the recording
    /// known under `account` (stored, or deleted and still kept): 200 with one page; None: 404.
    pub fn list(&self, account: &str, recording: &str, stored: bool, query: &str) -> Option<String> {
        if !stored && !self.deleted_recordings.contains(&(account.to_string(), recording.to_string())) {
            return None;
        }
        let param = |name: &str| query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse::<usize>().ok());
        let (size, page) = (param("PageSize").unwrap_or(50).clamp(1, 1000), param("Page").unwrap_or(0));
        let all: Vec<&String> = self.stored.iter().filter(|(_, (a, r))| a == account && r == recording).map(|(sid, _)| sid).collect();
        let entries: Vec<_> = all
            .iter()
            .skip(page * size)
            .take(size)
            .map(|sid| json!({ "sid": sid, "account_sid": account, "recording_sid": recording, "status": "completed", "transcription_text": "THIS IS A TEST" }))
            .collect();
        let base = format!("/2010-04-01/Accounts/{account}/Recordings/{recording}/Transcriptions.json");
        let next = ((page + 1) * size < all.len()).then(|| format!("{base}?PageSize={size}&Page={}&PageToken=PA{}", page + 1, page + 1));
        Some(json!({ "transcriptions": entries, "next_page_uri": next, "page": page, "page_size": size }).to_string())
    }

    /// `DELETE .../Transcriptions/{sid}.json` under `account`: whether it was there.
    pub fn delete(&mut self, account: &str, sid: &str) -> bool {
        match self.stored.get(sid) {
            Some((owner, _)) if owner == account => self.stored.remove(sid).is_some(),
            _ => false,
        }
    }
}

//! What a failing backend hands the recorder: magic, length, then the run's facts as JSON.
//! Plain Rust, so the format is tested without a server.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{Mode, Origin, RunRecord, Status, Trigger};

/// First bytes of every payload ("PGRETREC"): a segment that does not start with them is not ours.
const MAGIC: u64 = 0x5047_5245_5452_4543;
/// Magic, then the length of the JSON that follows.
pub const HEADER: usize = 16;

/// The bytes the recorder reads: magic, length, then the run's facts as JSON.
pub fn encode(run: &RunRecord, origin: &Origin) -> Vec<u8> {
    let started = run.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    let json = json!({
        "policy": run.policy,
        "trigger": run.trigger.as_str(),
        "mode": run.mode.as_str(),
        "started_epoch": started,
        "error": run.error,
        "username": origin.username,
        "pid": origin.pid,
        "application_name": origin.application_name,
    })
    .to_string();
    let mut bytes = Vec::with_capacity(HEADER + json.len());
    bytes.extend_from_slice(&MAGIC.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(json.as_bytes());
    bytes
}

/// The run and its origin back from a payload's header, or why not.
pub fn decode(header: [u8; HEADER], body: impl FnOnce(usize) -> Vec<u8>) -> Result<(RunRecord, Origin), String> {
    let (magic, length) = header.split_at(8);
    if u64::from_le_bytes(magic.try_into().unwrap_or_default()) != MAGIC {
        return Err("the segment is not a pg_retention payload".into());
    }
    let length = u64::from_le_bytes(length.try_into().unwrap_or_default()) as usize;
    let value: Value = serde_json::from_slice(&body(length)).map_err(|e| format!("unreadable payload: {e}"))?;
    let text = |key: &str| value[key].as_str().map(str::to_string);
    let policy = text("policy").ok_or("the payload names no policy")?;
    let trigger = text("trigger").as_deref().and_then(Trigger::parse).ok_or("the payload has no valid trigger")?;
    let mode = text("mode").as_deref().and_then(Mode::parse).ok_or("the payload has no valid mode")?;
    let mut run = RunRecord::new(&policy, trigger, mode, Status::Failed);
    let started = value["started_epoch"].as_f64().filter(|s| s.is_finite() && *s >= 0.0).unwrap_or_default();
    run.started = UNIX_EPOCH + Duration::from_secs_f64(started.min(1e11));
    run.error = text("error");
    let pid = value["pid"].as_i64().and_then(|p| i32::try_from(p).ok()).ok_or("the payload has no pid")?;
    let username = text("username").ok_or("the payload names no role")?;
    Ok((run, Origin { username, pid, application_name: text("application_name") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8]) -> ([u8; HEADER], Vec<u8>) {
        (bytes[..HEADER].try_into().unwrap(), bytes[HEADER..].to_vec())
    }

    #[test]
    fn a_payload_round_trips() {
        let mut run = RunRecord::new("p", Trigger::PgCron, Mode::Transaction, Status::Failed);
        run.error = Some("boom".into());
        run.started = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let origin = Origin { username: "ops".into(), pid: 42, application_name: Some("psql".into()) };
        let (header, body) = split(&encode(&run, &origin));
        let (back, origin) = decode(header, |n| body[..n].to_vec()).unwrap();
        assert_eq!((back.policy.as_str(), back.trigger, back.mode, back.error.as_deref()), ("p", Trigger::PgCron, Mode::Transaction, Some("boom")));
        assert_eq!(back.started, run.started);
        assert_eq!((origin.username.as_str(), origin.pid, origin.application_name.as_deref()), ("ops", 42, Some("psql")));
    }

    #[test]
    fn a_foreign_segment_is_refused() {
        let mut bytes = encode(&RunRecord::new("p", Trigger::Sql, Mode::Batched, Status::Failed), &Origin { username: "ops".into(), pid: 1, application_name: None });
        bytes[0] ^= 1;
        let (header, body) = split(&bytes);
        assert!(decode(header, |n| body[..n].to_vec()).unwrap_err().contains("not a pg_retention payload"));
    }
}

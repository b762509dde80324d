//! Every statement on `retention.recording_outcomes`: one row per Twilio object (a recording,
//! and its transcriptions when the policy deletes them) a run touched,
//! written in the transaction that marks its batch, so that an outcome and its mark are
//! committed together or not at all. Kept as long as the run history. Runs as the extension
//! owner (see `store`).

use pgrx::prelude::*;

use crate::error::spi;
use crate::settings;
use crate::statement::{execute, one};

/// What happened to one Twilio object of a batch's row.
pub struct Outcome {
    pub key: String,
    /// `recording`, `transcription` or `s3_object` (the table's CHECK lists exactly these).
    pub object: &'static str,
    /// An S3 object's store and the version deleted (None: a bucket that keeps none).
    pub store: Option<String>,
    pub version: Option<String>,
    pub sid: Option<String>,
    /// The Twilio account whose path the DELETE took (None: not sent).
    pub account: Option<String>,
    /// `deleted`, `already_gone`, `failed` or `skipped` (the table's CHECK lists exactly these).
    pub outcome: &'static str,
    pub http_status: Option<i32>,
    pub request_id: Option<String>,
    pub reason: Option<String>,
}

/// Writes a batch's outcomes for run `run_id` of `policy`.
pub fn record(run_id: i64, policy: &str, outcomes: Vec<Outcome>) {
    if outcomes.is_empty() {
        return;
    }
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), (Vec::new(), Vec::new()));
    for o in outcomes {
        columns.0.push(o.key);
        columns.1.push(o.sid);
        columns.2.push(o.outcome.to_string());
        columns.3.push(o.http_status);
        columns.4.push(o.request_id);
        columns.5.push(o.reason);
        columns.6.push(o.account);
        columns.7.push(o.object.to_string());
        columns.8 .0.push(o.store);
        columns.8 .1.push(o.version);
    }
    execute(
        "INSERT INTO retention.recording_outcomes (run_id, policy, key, sid, outcome, http_status, request_id, reason, account, object, store, version)
         SELECT $1, $2, o.key, o.sid, o.outcome, o.http_status, o.request_id, o.reason, o.account, o.object, o.store, o.version
           FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[]),
                           pg_catalog.unnest($6::pg_catalog.int4[]), pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]),
                           pg_catalog.unnest($9::pg_catalog.text[]), pg_catalog.unnest($10::pg_catalog.text[]), pg_catalog.unnest($11::pg_catalog.text[]),
                           pg_catalog.unnest($12::pg_catalog.text[]))
                AS o(key, sid, outcome, http_status, request_id, reason, account, object, store, version)",
        || {
            let (keys, sids, outcomes, statuses, request_ids, reasons, accounts, objects, (stores, versions)) = columns;
            vec![
                run_id.into(), policy.into(), keys.into(), sids.into(), outcomes.into(), statuses.into(), request_ids.into(), reasons.into(), accounts.into(),
                objects.into(), stores.into(), versions.into(),
            ]
        },
    );
}

/// Deletes outcomes as old as the history `store::prune` deletes.
/// Rows another transaction is deleting are skipped, not waited for (see `store::prune`).
pub fn prune() {
    execute(
        "DELETE FROM retention.recording_outcomes
          WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
                SELECT ctid FROM retention.recording_outcomes
                 WHERE at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))
                   FOR UPDATE SKIP LOCKED))",
        || vec![settings::HISTORY_RETENTION_DAYS.get().into()],
    );
}

/// What names an outcome's object in its digest line: its SID (a recording's, a
/// transcription's), or for an S3 object `s3 STORE "KEY" VERSION` (the key JSON-quoted, so that
/// no key can look like a line of its own).
const OBJECT_PART: &str = "CASE WHEN o.object OPERATOR(pg_catalog.=) 's3_object'
     THEN 's3 ' OPERATOR(pg_catalog.||) COALESCE(o.store, '') OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) pg_catalog.to_jsonb(o.sid)::pg_catalog.text
          OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) COALESCE(o.version, '')
     ELSE COALESCE(o.sid, '') END";

/// Outcomes per chunk of a run's digest.
const CHUNK: i64 = 1000;

/// A run's outcomes for its record and ledger entry: how many, and their digest, computed a
/// chunk at a time so that memory does not grow with the run. Each outcome is one line
/// `key object outcome http_status` (`object` as `OBJECT_PART` names it: a recording's or
/// transcription's SID); in order of key, then object (collation "C"; a run before 0.9.0 had
/// one line per key, its SID), every 1,000 lines joined by
/// newlines are hashed (SHA-256, hex), and the run's digest is the SHA-256 of those chunk
/// hashes joined by newlines: anyone holding the rows can recompute it. None without outcomes.
pub fn digest(run_id: i64) -> Option<(i64, String)> {
    let mut chunks = Vec::new();
    let (mut total, mut after) = (0, None::<(String, String)>);
    loop {
        let (rows, last, hash) = spi(Spi::connect(|client| {
            let (after_key, after_sid) = after.clone().unzip();
            let rows = client.select(
                &format!(
                    "SELECT pg_catalog.count(*)::pg_catalog.int8,
                        (pg_catalog.array_agg(c.key ORDER BY c.key DESC, c.sid DESC))[1], (pg_catalog.array_agg(c.sid ORDER BY c.key DESC, c.sid DESC))[1],
                        pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.string_agg(c.line, E'\\n' ORDER BY c.key, c.sid), 'UTF8')), 'hex')
                   FROM (SELECT o.key COLLATE \"C\" AS key, ({OBJECT}) COLLATE \"C\" AS sid,
                                o.key OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) ({OBJECT}) OPERATOR(pg_catalog.||) ' '
                                OPERATOR(pg_catalog.||) o.outcome OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) COALESCE(o.http_status::pg_catalog.text, '') AS line
                           FROM retention.recording_outcomes o
                          WHERE o.run_id OPERATOR(pg_catalog.=) $1
                            AND ($2::pg_catalog.text IS NULL OR o.key COLLATE \"C\" OPERATOR(pg_catalog.>) $2::pg_catalog.text
                                 OR (o.key OPERATOR(pg_catalog.=) $2::pg_catalog.text AND ({OBJECT}) COLLATE \"C\" OPERATOR(pg_catalog.>) $3::pg_catalog.text))
                          ORDER BY o.key COLLATE \"C\", ({OBJECT}) COLLATE \"C\" LIMIT $4) c",
                    OBJECT = OBJECT_PART
                ),
                Some(1),
                &[run_id.into(), after_key.into(), after_sid.into(), CHUNK.into()],
            )?;
            let row = rows.first();
            let last = row.get::<String>(2)?.zip(row.get::<String>(3)?);
            Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?.unwrap_or(0), last, row.get::<String>(4)?))
        }));
        if let Some(hash) = hash {
            chunks.push(hash);
        }
        total += rows;
        after = last;
        if rows < CHUNK {
            break;
        }
    }
    if total == 0 {
        return None;
    }
    let joined = chunks.join("\n");
    let digest = one::<String>("SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to($1, 'UTF8')), 'hex')", || vec![joined.as_str().into()]);
    digest.map(|digest| (total, digest))
}

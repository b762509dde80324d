//! Every statement on `retention.recording_outcomes`: one row per recording a run touched,
//! written in the transaction that marks its batch, so that an outcome and its mark are
//! committed together or not at all. Kept as long as the run history. Runs as the extension
//! owner (see `store`).

use crate::settings;
use crate::statement::execute;

/// What happened to one recording of a batch.
pub struct Outcome {
    pub key: String,
    pub sid: Option<String>,
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
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for o in outcomes {
        columns.0.push(o.key);
        columns.1.push(o.sid);
        columns.2.push(o.outcome.to_string());
        columns.3.push(o.http_status);
        columns.4.push(o.request_id);
        columns.5.push(o.reason);
    }
    execute(
        "INSERT INTO retention.recording_outcomes (run_id, policy, key, sid, outcome, http_status, request_id, reason)
         SELECT $1, $2, o.key, o.sid, o.outcome, o.http_status, o.request_id, o.reason
           FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[]),
                           pg_catalog.unnest($6::pg_catalog.int4[]), pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]))
                AS o(key, sid, outcome, http_status, request_id, reason)",
        || vec![run_id.into(), policy.into(), columns.0.into(), columns.1.into(), columns.2.into(), columns.3.into(), columns.4.into(), columns.5.into()],
    );
}

/// Deletes outcomes as old as the history `store::prune` deletes.
pub fn prune() {
    execute(
        "DELETE FROM retention.recording_outcomes
          WHERE at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))",
        || vec![settings::HISTORY_RETENTION_DAYS.get().into()],
    );
}

/// A run's outcomes for its ledger entry: how many, and the SHA-256 of one line per outcome in
/// key order (`key sid outcome http_status`), which anyone holding the rows can recompute.
/// SQL over `runs r`, for `ledger`'s entry.
pub const DIGEST: &str = "(SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 THEN pg_catalog.jsonb_build_object(
                'count', pg_catalog.count(*),
                'sha256', pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.string_agg(
                    o.key OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) COALESCE(o.sid, '') OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) o.outcome
                    OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) COALESCE(o.http_status::pg_catalog.text, ''), E'\\n' ORDER BY o.key), 'UTF8')), 'hex')) END
           FROM retention.recording_outcomes o WHERE o.run_id OPERATOR(pg_catalog.=) r.id)";

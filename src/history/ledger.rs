//! Every statement on the deletion ledger: `retention.ledger_pending` and `retention.ledger`.
//!
//! A finished run's entry is written in the run's own transaction (so it exists exactly when
//! the run's work was committed) into `ledger_pending`, built in SQL from its history row.
//! Sealing moves committed pending entries into `retention.ledger` in one short transaction at
//! a time (the table lock below), each entry stamped with its `sealed_at` (the `at` column, so
//! the time is hashed too) and its `hash` the SHA-256 of the previous entry's hash and this
//! entry's canonical JSON (jsonb's text form: keys sorted, no insignificant space). Pruning
//! old entries appends an entry that says so (`pruned`: through which id, how many, the last
//! removed hash), so that the first entry kept is vouched for by the chain itself:
//! chaining at the run's end would make every run wait for the commit of any `SELECT` run
//! still inside its caller's transaction. Sealing happens in a batched run's last transaction
//! (which commits at once), at the start of every batched run, and in `verify_ledger()` and
//! `deletion_certificate()`. Everything here runs as the extension owner (see `store`).

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::engine::xact::in_subtransaction;
use crate::error::{self, say, spi};
use super::UTC_TEXT;
use crate::settings;
use crate::statement::{execute, one};

/// The hash of an entry (a jsonb expression) after the entry whose hash is `prev` (NULL for none).
fn hash(prev: &str, entry: &str) -> String {
    format!(
        "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(COALESCE({prev}, '') OPERATOR(pg_catalog.||) ({entry})::pg_catalog.text, 'UTF8')), 'hex')"
    )
}

/// `at` as an entry's `sealed_at` says it.
fn sealed_at(at: &str) -> String {
    format!("pg_catalog.to_char(pg_catalog.timezone('UTC', {at}), {UTC_TEXT})")
}

/// The pending entries of the runs `runs r` that the condition picks: each built from its
/// history row, with its final counts and status.
fn append_sql() -> String {
    let utc = |time: &str| format!("pg_catalog.to_char(pg_catalog.timezone('UTC', {time}), {UTC_TEXT})");
    format!(
        "INSERT INTO retention.ledger_pending (run_id, entry)
     SELECT r.id, pg_catalog.jsonb_build_object(
                'run_id', r.id, 'policy', r.policy,
                'table', r.target,
                'status', r.status, 'trigger', r.trigger, 'mode', r.mode,
                'cutoff', {}, 'started_at', {}, 'finished_at', {},
                'rows', r.rows_deleted, 'batches', r.batches, 'error', r.error, 'ran_by', r.username,
                'details', r.details)
       FROM retention.runs r WHERE ",
        utc("r.cutoff"),
        utc("r.started_at"),
        utc("COALESCE(r.finished_at, pg_catalog.clock_timestamp())")
    )
}

/// Whether this database's SQL has the ledger. Every run passed the check that the SQL is this
/// release's; only a run refused by it (recorded all the same) and the worker's start, which
/// comes before it, can meet an older release's SQL, which has none.
pub fn installed() -> bool {
    one::<bool>("SELECT pg_catalog.to_regclass('retention.ledger_pending') IS NOT NULL", Vec::new) == Some(true)
}

/// Writes the entry of run `run_id`, whose history row has its final counts and status.
pub fn append(run_id: Option<i64>) {
    let Some(run_id) = run_id else { return };
    execute(&format!("{} r.id OPERATOR(pg_catalog.=) $1 ON CONFLICT (run_id) DO NOTHING", append_sql()), || vec![run_id.into()]);
}

/// Writes the entries of runs marked `interrupted` for another session (their own ended
/// before they could), unless they have one.
pub fn append_interrupted(policy: Option<&str>) {
    execute(
        &format!(
            "{} r.status OPERATOR(pg_catalog.=) 'interrupted' AND ($1::pg_catalog.text IS NULL OR r.policy OPERATOR(pg_catalog.=) $1)
                AND NOT (COALESCE(r.details, '{{}}') OPERATOR(pg_catalog.?) 'ledger_id')
             ON CONFLICT (run_id) DO NOTHING",
            append_sql()
        ),
        || vec![policy.into()],
    );
}

/// Chains the committed pending entries onto the ledger, oldest first, unless another session
/// is doing it (then it takes these too, or the next sealing does). Prunes entries older than
/// `pg_retention.ledger_retention_days`. Logs the new head, an anchor to keep outside.
pub fn seal() {
    // Most calls find nothing to chain: then no subtransaction and no lock.
    if !pending() {
        return;
    }
    let sealed = in_subtransaction(|| {
        // Self-conflicting: one sealer at a time, and the chain order is the id order. Readers
        // (verify, SELECT) are not blocked.
        execute("LOCK TABLE retention.ledger IN SHARE ROW EXCLUSIVE MODE NOWAIT", Vec::new);
        chain_pending()
    });
    match sealed {
        Ok(Some((id, hash))) => say!(LOG, "pg_retention ledger: head is entry {id}, hash {hash}"),
        Ok(None) => {}
        // Another session is sealing: it, or the next sealing, takes these entries.
        Err(busy) if error::code(&busy) == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE => {}
        Err(failure) if error::stops_work(&failure) => failure.rethrow(),
        Err(failure) => say!(LOG, "pg_retention ledger: entries not sealed yet: {}", error::message(&failure)),
    }
}

/// Whether committed entries wait to be sealed.
pub fn pending() -> bool {
    one::<bool>("SELECT EXISTS (SELECT FROM retention.ledger_pending)", Vec::new) == Some(true)
}

/// Moves every pending entry into the ledger in run order; the last entry written, if any.
fn chain_pending() -> Option<(i64, String)> {
    let pending: Vec<(i64, JsonB)> = spi(Spi::connect(|client| {
        client
            .select("SELECT run_id, entry FROM retention.ledger_pending ORDER BY run_id", None, &[])?
            .map(|row| Ok((row.get::<i64>(1)?.unwrap_or_default(), row.get::<JsonB>(2)?.unwrap_or(JsonB(serde_json::Value::Null)))))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    }));
    let mut prev = one::<String>("SELECT (SELECT hash FROM retention.ledger ORDER BY id DESC LIMIT 1)", Vec::new);
    let mut head = None;
    for (run_id, entry) in pending {
        let (id, hash) = chain(&prev, entry);
        execute("DELETE FROM retention.ledger_pending WHERE run_id OPERATOR(pg_catalog.=) $1", || vec![run_id.into()]);
        // The history row names its entry: an entry removed from the ledger is then missed.
        execute(
            "UPDATE retention.runs SET details = COALESCE(details, '{}') OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('ledger_id', $2)
              WHERE id OPERATOR(pg_catalog.=) $1",
            || vec![run_id.into(), id.into()],
        );
        prev = hash.clone();
        head = id.zip(hash);
    }
    // Entries older than the retention period go; the entry saying so is chained after them.
    let pruned = one::<JsonB>(
        "WITH gone AS (
             DELETE FROM retention.ledger
              WHERE at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))
             RETURNING id, hash)
         SELECT (SELECT pg_catalog.jsonb_build_object('pruned', pg_catalog.jsonb_build_object(
                            'through_id', g.id, 'count', (SELECT pg_catalog.count(*) FROM gone), 'last_hash', g.hash,
                            'retention_days', $1))
                   FROM gone g ORDER BY g.id DESC LIMIT 1)",
        || vec![settings::LEDGER_RETENTION_DAYS.get().into()],
    );
    if let Some(pruned) = pruned {
        let (id, hash) = chain(&prev, pruned);
        head = id.zip(hash);
    }
    head
}

/// Chains one entry after the entry whose hash is `prev`, stamped with the time it is sealed.
fn chain(prev: &Option<String>, entry: JsonB) -> (Option<i64>, Option<String>) {
    spi(Spi::get_two_with_args::<i64, String>(
        &format!(
            "WITH stamped AS (
                 SELECT s.at, $2::pg_catalog.jsonb OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('sealed_at', {}) AS entry
                   FROM (SELECT pg_catalog.clock_timestamp() AS at) s)
             INSERT INTO retention.ledger (at, entry, prev_hash, hash)
             SELECT at, entry, $1, {} FROM stamped
             RETURNING id, hash",
            sealed_at("s.at"),
            hash("$1::pg_catalog.text", "entry")
        ),
        &[prev.clone().into(), entry.into()],
    ))
}

/// The id of the first entry that does not verify, or None when the chain is intact: an entry
/// whose hash is not that of its content and the previous entry's hash, whose `at` is not the
/// `sealed_at` it was hashed with, whose `prev_hash` is not the previous entry's hash, or (for
/// the first entry kept) that names a predecessor no later `pruned` entry accounts for; or, for
/// a run still in the history, its entry missing though no pruning removed it.
pub fn verify() -> Option<i64> {
    one::<i64>(
        &format!(
            "WITH chain AS (
                 SELECT l.id, l.at, l.entry, l.prev_hash, l.hash,
                        pg_catalog.lag(l.hash) OVER (ORDER BY l.id) AS before,
                        pg_catalog.row_number() OVER (ORDER BY l.id) AS n,
                        {} AS recomputed
                   FROM retention.ledger l),
             pruned AS (
                 SELECT l.id, l.entry OPERATOR(pg_catalog.->) 'pruned' OPERATOR(pg_catalog.->>) 'last_hash' AS last_hash,
                        (l.entry OPERATOR(pg_catalog.->) 'pruned' OPERATOR(pg_catalog.->>) 'through_id')::pg_catalog.int8 AS through_id
                   FROM retention.ledger l WHERE l.entry OPERATOR(pg_catalog.?) 'pruned'),
             broken AS (
                 SELECT c.id FROM chain c
                  WHERE c.hash IS DISTINCT FROM c.recomputed
                     -- entries sealed since 0.7.0 carry the time they were sealed
                     OR (c.entry OPERATOR(pg_catalog.?) 'sealed_at' AND c.entry OPERATOR(pg_catalog.->>) 'sealed_at' IS DISTINCT FROM {})
                     OR (c.n OPERATOR(pg_catalog.>) 1 AND c.prev_hash IS DISTINCT FROM c.before)
                     OR (c.n OPERATOR(pg_catalog.=) 1 AND c.prev_hash IS NOT NULL
                         AND NOT EXISTS (SELECT FROM pruned p WHERE p.id OPERATOR(pg_catalog.>) c.id AND p.last_hash OPERATOR(pg_catalog.=) c.prev_hash))
                 UNION ALL
                 SELECT (r.details OPERATOR(pg_catalog.->>) 'ledger_id')::pg_catalog.int8 FROM retention.runs r
                  WHERE r.details OPERATOR(pg_catalog.?) 'ledger_id'
                    AND NOT EXISTS (SELECT FROM retention.ledger l
                                     WHERE l.id OPERATOR(pg_catalog.=) (r.details OPERATOR(pg_catalog.->>) 'ledger_id')::pg_catalog.int8)
                    AND NOT EXISTS (SELECT FROM pruned p
                                     WHERE p.through_id OPERATOR(pg_catalog.>=) (r.details OPERATOR(pg_catalog.->>) 'ledger_id')::pg_catalog.int8))
             SELECT pg_catalog.min(id) FROM broken",
            hash("l.prev_hash", "l.entry"),
            sealed_at("c.at")
        ),
        Vec::new,
    )
}

/// Run `run_id`'s ledger entry with its place in the chain, for an auditor to keep.
pub fn certificate(run_id: i64) -> Option<JsonB> {
    one::<JsonB>(
        "SELECT (SELECT pg_catalog.jsonb_build_object(
                    'ledger_id', l.id, 'at', l.at, 'entry', l.entry, 'prev_hash', l.prev_hash, 'hash', l.hash,
                    'hash_rule', 'hash = hex(sha256(prev_hash || entry::text)), prev_hash of the first entry ever empty; entry.sealed_at = at in UTC',
                    'chain_head', (SELECT pg_catalog.jsonb_build_object('id', h.id, 'hash', h.hash) FROM retention.ledger h ORDER BY h.id DESC LIMIT 1),
                    'recording_outcomes', (SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(o) OPERATOR(pg_catalog.-) 'run_id' OPERATOR(pg_catalog.-) 'policy' ORDER BY o.key, o.object, o.sid, o.version)
                                             FROM retention.recording_outcomes o WHERE o.run_id OPERATOR(pg_catalog.=) $1))
           FROM retention.ledger l
          WHERE (l.entry OPERATOR(pg_catalog.->>) 'run_id')::pg_catalog.int8 OPERATOR(pg_catalog.=) $1)",
        || vec![run_id.into()],
    )
}

-- The deletion ledger: one entry per finished run, hash-chained; verify_ledger() finds the
-- first entry a superuser changed, removed or inserted. Runs alone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS ledger_events;
DROP ROLE IF EXISTS ledger_intruder;
CREATE EXTENSION pg_retention;
RESET client_min_messages;
CREATE TABLE ledger_events (id int PRIMARY KEY, at timestamptz NOT NULL);
CREATE INDEX ON ledger_events (at);
INSERT INTO ledger_events SELECT g, now() - g * interval '1 hour' FROM generate_series(1, 100) g;
SELECT retention.add_policy('ledger_events', 'ledger_events', 'at', 'older_than', interval '80 hours', batch_size => 7) IS NOT NULL AS added;

-- Runs of every kind: SELECT (its entry is sealed by the next sealing), CALL, a skipped run
-- (no entry: nothing was done), a failed run, and a run that finds nothing.
SELECT (retention.run_policy('ledger_events', interval '90 hours'))->>'rows_deleted' AS select_rows;
CALL retention.run_batched('ledger_events');
UPDATE retention.policies SET enabled = false WHERE name = 'ledger_events';
SELECT (retention.run_policy('ledger_events'))->>'status' AS skipped;
UPDATE retention.policies SET enabled = true WHERE name = 'ledger_events';
ALTER TABLE ledger_events RENAME TO ledger_events_away;
\set VERBOSITY terse
CALL retention.run_batched('ledger_events');
\set VERBOSITY default
ALTER TABLE ledger_events_away RENAME TO ledger_events;
SELECT (retention.run_policy('ledger_events'))->>'rows_deleted' AS nothing_left;

SELECT retention.verify_ledger() IS NULL AS intact;
-- One entry per finished run, in run order, each naming its run, with the run's counts.
SELECT l.id, l.entry->>'run_id' AS run_id, l.entry->>'status' AS status, l.entry->>'rows' AS rows,
       l.entry->>'table' AS tbl, l.entry->>'mode' AS mode, l.prev_hash IS NULL AS first,
       l.hash ~ '^[0-9a-f]{64}$' AS hash_shape, r.rows_deleted = (l.entry->>'rows')::bigint AS matches_history
  FROM retention.ledger l JOIN retention.runs r ON r.id = (l.entry->>'run_id')::bigint ORDER BY l.id;
SELECT count(*) AS pending FROM retention.ledger_pending;
-- Each hash is SHA-256 over the previous hash and the entry's jsonb text.
SELECT bool_and(hash = encode(sha256(convert_to(coalesce(prev_hash, '') || entry::text, 'UTF8')), 'hex')) AS recomputable,
       bool_and(prev_hash IS NOT DISTINCT FROM before) AS linked
  FROM (SELECT *, lag(hash) OVER (ORDER BY id) AS before FROM retention.ledger) l;
SELECT c->'entry'->>'rows' AS rows, c->>'hash' = (SELECT hash FROM retention.ledger WHERE id = 2) AS hash,
       c->'chain_head'->>'id' AS head
  FROM retention.deletion_certificate(2) c;
SELECT retention.deletion_certificate(3) IS NULL AS skipped_run_has_none;
\set VERBOSITY terse
SELECT retention.deletion_certificate(NULL);
\set VERBOSITY default

-- An ordinary role can neither read nor write it, nor call the functions.
CREATE ROLE ledger_intruder;
GRANT USAGE ON SCHEMA retention TO ledger_intruder;
SET ROLE ledger_intruder;
\set VERBOSITY terse
INSERT INTO retention.ledger (entry, prev_hash, hash) VALUES ('{}', NULL, 'x');
INSERT INTO retention.ledger_pending VALUES (999, '{}');
UPDATE retention.ledger SET entry = '{}';
SELECT retention.verify_ledger();
\set VERBOSITY default
RESET ROLE;
REVOKE USAGE ON SCHEMA retention FROM ledger_intruder;
DROP ROLE ledger_intruder;

-- A superuser's edit, removal or insertion: the first entry that no longer verifies.
CREATE TEMP TABLE kept AS SELECT * FROM retention.ledger;
UPDATE retention.ledger SET entry = jsonb_set(entry, '{rows}', '0') WHERE id = 2;
SELECT retention.verify_ledger() AS edited;
UPDATE retention.ledger l SET entry = k.entry FROM kept k WHERE l.id = k.id;
SELECT retention.verify_ledger() IS NULL AS restored;
DELETE FROM retention.ledger WHERE id = 2;
SELECT retention.verify_ledger() AS removed_second;
INSERT INTO retention.ledger (id, at, entry, prev_hash, hash) OVERRIDING SYSTEM VALUE SELECT * FROM kept WHERE id = 2;
SELECT retention.verify_ledger() IS NULL AS restored;
-- The last entry removed: the run's history row still names it.
DELETE FROM retention.ledger WHERE id = (SELECT max(id) FROM kept);
SELECT retention.verify_ledger() = (SELECT max(id) FROM kept) AS removed_last;
INSERT INTO retention.ledger (id, at, entry, prev_hash, hash) OVERRIDING SYSTEM VALUE SELECT * FROM kept WHERE id = (SELECT max(id) FROM kept);
-- A forged entry appended with a made-up hash, and one chained correctly but rewriting the
-- first entry's content (every later hash would have to be recomputed).
INSERT INTO retention.ledger (entry, prev_hash, hash) VALUES ('{"run_id": 99, "rows": 1000000}', (SELECT hash FROM kept ORDER BY id DESC LIMIT 1), 'forged');
SELECT retention.verify_ledger() = (SELECT max(id) FROM retention.ledger) AS forged_found;
DELETE FROM retention.ledger WHERE id > (SELECT max(id) FROM kept);
UPDATE retention.ledger SET entry = '{"run_id": 1, "rows": 0}',
       hash = encode(sha256(convert_to('{"run_id": 1, "rows": 0}'::jsonb::text, 'UTF8')), 'hex') WHERE id = 1;
SELECT retention.verify_ledger() AS rewritten_first_breaks_second;
UPDATE retention.ledger l SET entry = k.entry, hash = k.hash FROM kept k WHERE l.id = k.id;
SELECT retention.verify_ledger() IS NULL AS restored;

-- The entries travel with pg_dump (the ledger is a configuration table of the extension).
SELECT count(*) AS dumped FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'pg_retention'
   AND c::regclass::text IN ('retention.ledger', 'retention.ledger_pending', 'retention.ledger_id_seq');
SHOW pg_retention.ledger_retention_days;
DROP TABLE ledger_events;
DROP EXTENSION pg_retention;

-- Legal holds: rows matching an active hold are kept by every run, every batch plan, preview
-- and partition removal; bad or escaping conditions are refused. Runs alone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS hold_events, hold_other, hold_parts CASCADE;
DROP ROLE IF EXISTS hold_stranger;
CREATE EXTENSION pg_retention;
RESET client_min_messages;
CREATE TABLE hold_events (id int PRIMARY KEY, tenant text NOT NULL, at timestamptz NOT NULL);
CREATE INDEX ON hold_events (at);
INSERT INTO hold_events SELECT g, 't' || (g % 5), now() - g * interval '1 day' FROM generate_series(1, 100) g;
CREATE TABLE hold_other (id int, note text);
INSERT INTO hold_other VALUES (1, 't1');
SELECT (retention.add_policy('hold_events', 'hold_events', 'at', 'older_than', interval '10 days', batch_size => 7)).name AS added;

-- A hold on tenant t1: preview and runs keep its rows and say how many they held.
SELECT h->>'policy' AS policy, h->>'name' AS name, h->>'condition' AS condition, h->>'reason' AS reason,
       h->>'created_by' AS created_by, h->>'released_at' AS released_at
  FROM retention.add_hold('hold_events', 'litigation-114', $$tenant = 't1'$$, 'Case 114: preserve tenant t1') h;
SELECT p->>'rows' AS rows, p->>'held' AS held FROM retention.preview('hold_events') p;
CALL retention.run_batched('hold_events');
SELECT rows_deleted, details->'held' AS held, details->'holds' AS holds FROM retention.runs ORDER BY id DESC LIMIT 1;
SELECT tenant, count(*) FROM hold_events WHERE at < now() - interval '10 days' GROUP BY tenant ORDER BY 1;
-- The SELECT path too; a second hold adds to the first.
INSERT INTO hold_events SELECT g, 't' || (g % 5), now() - g * interval '1 day' FROM generate_series(101, 120) g;
SELECT (retention.add_hold('hold_events', 'audit', 'id > 115', 'Audit 7'))->>'name' AS added;
SELECT r->>'rows_deleted' AS rows_deleted FROM retention.run_policy('hold_events') r;
SELECT details->'held' AS held, details->'holds' AS holds FROM retention.runs ORDER BY id DESC LIMIT 1;
SELECT count(*) AS kept_t1 FROM hold_events WHERE tenant = 't1' AND at < now() - interval '10 days';
SELECT array_agg(id ORDER BY id) AS kept_by_audit FROM hold_events WHERE id > 115 AND tenant <> 't1';

-- Released, the rows go at the next run; the hold stays in the table, released.
SELECT h->>'released_by' IS NOT NULL AS released FROM retention.release_hold('hold_events', 'litigation-114') h;
SELECT h->>'released_by' IS NOT NULL AS released FROM retention.release_hold('hold_events', 'audit') h;
SELECT r->>'rows_deleted' AS rows_deleted FROM retention.run_policy('hold_events') r;
SELECT count(*) AS expired_left FROM hold_events WHERE at < now() - interval '10 days';
SELECT name, released_at IS NOT NULL AS released, released_by IS NOT NULL AS by_whom FROM retention.holds ORDER BY id;
\set VERBOSITY terse
SELECT retention.release_hold('hold_events', 'litigation-114');
\set VERBOSITY default

-- Bad conditions are refused with the reason, and nothing is stored.
\set VERBOSITY terse
SELECT retention.add_hold('hold_events', 'bad', 'no_such_column = 1', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'tenant', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'id > ', 'r');
SELECT retention.add_hold('hold_events', 'bad', '', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'true', '');
SELECT retention.add_hold('hold_events', NULL, 'true', 'r');
-- Conditions that try to reach past their parentheses or their table.
SELECT retention.add_hold('hold_events', 'bad', 'true; DROP TABLE hold_other', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'false) OR (true', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'false)) OR ((true', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'true FROM hold_other', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'id, tenant', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'true ORDER BY 1', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'true UNION SELECT false', 'r');
SELECT retention.add_hold('hold_events', 'bad', $$tenant IN (SELECT note FROM hold_other)$$, 'r');
SELECT retention.add_hold('hold_events', 'bad', 'EXISTS (SELECT 1)', 'r');
SELECT retention.add_hold('hold_events', 'bad', 'true /* unfinished', 'r');
SELECT retention.add_hold('no_such_policy', 'bad', 'true', 'r');
\set VERBOSITY default
SELECT count(*) AS stored FROM retention.holds WHERE name = 'bad';
SELECT count(*) AS other_table_intact FROM hold_other;
-- A trailing comment ends with its line: the condition stays one expression.
SELECT (retention.add_hold('hold_events', 'commented', 'id = 1 -- the first row', 'r'))->>'name' AS added;
SELECT p->>'held' AS held FROM retention.preview('hold_events') p;
SELECT (retention.release_hold('hold_events', 'commented'))->>'name' AS released;

-- Only a role that may alter the policy may add or release its holds.
CREATE ROLE hold_stranger;
GRANT USAGE ON SCHEMA retention TO hold_stranger;
GRANT SELECT ON retention.policies TO hold_stranger;
GRANT EXECUTE ON FUNCTION retention.add_hold(text, text, text, text), retention.release_hold(text, text) TO hold_stranger;
SET ROLE hold_stranger;
\set VERBOSITY terse
SELECT retention.add_hold('hold_events', 'mine', 'true', 'r');
SELECT retention.release_hold('hold_events', 'commented');
INSERT INTO retention.holds (policy, name, condition, reason) VALUES ('hold_events', 'forged', 'true', 'r');
\set VERBOSITY default
RESET ROLE;
REVOKE ALL ON retention.policies FROM hold_stranger;
REVOKE ALL ON SCHEMA retention FROM hold_stranger;
REVOKE ALL ON FUNCTION retention.add_hold(text, text, text, text), retention.release_hold(text, text) FROM hold_stranger;
DROP ROLE hold_stranger;

-- A wholly expired partition holding a held row is not removed whole: its rows go by row,
-- the held one stays.
CREATE TABLE hold_parts (id int, tenant text, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE hold_parts_old PARTITION OF hold_parts FOR VALUES FROM ('2000-01-01') TO ('2001-01-01');
CREATE TABLE hold_parts_older PARTITION OF hold_parts FOR VALUES FROM ('1999-01-01') TO ('2000-01-01');
CREATE TABLE hold_parts_now PARTITION OF hold_parts FOR VALUES FROM ('2001-01-01') TO ('3000-01-01');
INSERT INTO hold_parts SELECT g, CASE WHEN g = 3 THEN 'keep' ELSE 'x' END, timestamptz '2000-01-01' + g * interval '1 day' FROM generate_series(1, 10) g;
INSERT INTO hold_parts SELECT g, 'x', timestamptz '1999-01-01' + g * interval '1 day' FROM generate_series(1, 10) g;
INSERT INTO hold_parts SELECT g, 'x', now() FROM generate_series(1, 5) g;
CREATE INDEX ON hold_parts (at);
SELECT (retention.add_policy('hold_parts', 'hold_parts', 'at', 'older_than', interval '1 day')).name AS added;
SELECT (retention.add_hold('hold_parts', 'keep', $$tenant = 'keep'$$, 'r'))->>'name' AS added;
SELECT p->'partitions' AS partitions, p->>'held' AS held FROM retention.preview('hold_parts') p;
CALL retention.run_batched('hold_parts');
SELECT rows_deleted, (SELECT jsonb_agg(e - 'counted' - 'reason') FROM jsonb_array_elements(details->'partitions') e) AS partitions
  FROM retention.runs WHERE policy = 'hold_parts' ORDER BY id DESC LIMIT 1;
SELECT tableoid::regclass AS partition, id, tenant FROM hold_parts WHERE at < now() - interval '1 day' ORDER BY 1, 2;

SELECT retention.drop_policy('hold_parts');
SELECT retention.drop_policy('hold_events');
DROP TABLE hold_events, hold_other, hold_parts;
DROP EXTENSION pg_retention;

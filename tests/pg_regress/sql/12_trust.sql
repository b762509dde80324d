-- Issue 22's attacks that one session can show, each written as the attacker (roles with
-- exactly the README's grants) or the superuser the README trusts no further. Runs alone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS trust_boss, trust_own, trust_saw, trust_m1, trust_m2 CASCADE;
DROP FUNCTION IF EXISTS public.trust_move() CASCADE;
DROP SCHEMA IF EXISTS trust_loot CASCADE;
DO $$ DECLARE r text; BEGIN
  FOREACH r IN ARRAY ARRAY['trust_writer', 'trust_operator'] LOOP
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('DROP OWNED BY %I', r);
      EXECUTE format('DROP ROLE %I', r);
    END IF;
  END LOOP; END $$;
RESET client_min_messages;
CREATE EXTENSION pg_retention;
CREATE ROLE trust_writer;
CREATE ROLE trust_operator;
-- The README's grants: a role that manages policies (and their holds), and an operator.
GRANT USAGE ON SCHEMA retention TO trust_writer, trust_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON retention.policies TO trust_writer;
GRANT EXECUTE ON FUNCTION retention.add_policy,
                          retention.alter_policy,
                          retention.drop_policy(text), retention.add_hold(text, text, text, text), retention.release_hold(text, text)
   TO trust_writer;
GRANT SELECT ON retention.policies, retention.runs, retention.status TO trust_operator;
GRANT EXECUTE ON FUNCTION retention.run_policy(text, interval), retention.preview(text, interval), retention.backlog(text) TO trust_operator;
GRANT CREATE ON SCHEMA public TO trust_writer;
CREATE SCHEMA trust_loot AUTHORIZATION trust_writer;

-- The superuser's table and policy; a table and a function of the writer's.
CREATE TABLE trust_boss (id int PRIMARY KEY, at timestamptz NOT NULL, note text);
CREATE INDEX ON trust_boss (at);
INSERT INTO trust_boss SELECT g, now() - g * interval '1 day', 'n' || g FROM generate_series(1, 100) g;
SELECT (retention.add_policy('boss', 'trust_boss', 'at', 'older_than', interval '1000 days')).name AS added;
CREATE TABLE trust_saw (who text, superuser boolean);
GRANT ALL ON trust_saw TO PUBLIC;
SET ROLE trust_writer;
CREATE TABLE trust_own (id int, at timestamptz);
CREATE INDEX ON trust_own (at);
CREATE FUNCTION public.trust_spy(int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO public.trust_saw SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
  RETURN false; END $$;
SELECT (retention.add_policy('own', 'trust_own', 'at', 'older_than', interval '1 day')).name AS added;
-- 11. A hold records who added it: the writer, not the extension's owner.
SELECT h->>'created_by' AS created_by, h->>'target' AS target FROM retention.add_hold('own', 'spy', 'public.trust_spy(id)', 'r') h;

-- 1. and 2. Her hold calls her function. Renamed policies must not carry it to the boss's
-- table, and no column of the boss's policy is hers to change, nor is it hers to drop.
\set VERBOSITY terse
SELECT retention.alter_policy('boss', rule => 'expires_at');
UPDATE retention.policies SET retain = interval '1 day' WHERE name = 'boss';
UPDATE retention.policies SET enabled = false WHERE name = 'boss';
UPDATE retention.policies SET archive_schema = 'trust_loot' WHERE name = 'boss';
UPDATE retention.policies SET name = 'own_before' WHERE name = 'own';
UPDATE retention.policies SET name = 'own' WHERE name = 'boss';
DELETE FROM retention.policies WHERE name = 'boss';
SELECT retention.drop_policy('boss');
\set VERBOSITY default
RESET ROLE;
SELECT name, table_name, rule, retain, enabled, archive_schema FROM retention.policies WHERE name IN ('boss', 'own', 'own_before') ORDER BY name;
SELECT name, target FROM retention.holds ORDER BY id;
-- The boss's runs and status never call her function, whatever the names now.
SELECT (r->>'rows_deleted')::int AS rows_deleted
  FROM retention.run_policy((SELECT name FROM retention.policies WHERE table_name = 'trust_boss'), interval '50 days') r;
SELECT backlog_rows FROM retention.status WHERE target = 'public.trust_boss';
SELECT count(*) AS boss_rows FROM trust_boss;
SELECT who, superuser, count(*) FROM trust_saw GROUP BY 1, 2 ORDER BY 1;
-- Her own policy still may be changed and dropped by her, and her hold released: released_by is hers.
SET ROLE trust_writer;
SELECT name, enabled FROM retention.alter_policy('own_before', enabled => false);
SELECT h->>'released_by' AS released_by FROM retention.release_hold('own_before', 'spy') h;
SELECT retention.drop_policy('own_before');
RESET ROLE;

-- 4. A hold keeps rows of its table: a second policy on the table, or the policy renamed,
-- keeps them too.
SELECT (retention.add_hold('boss', 'case-7', 'id BETWEEN 40 AND 44', 'Case 7'))->>'name' AS added;
SELECT (retention.add_policy('boss_too', 'trust_boss', 'at', 'older_than', interval '30 days')).name AS added;
SELECT (r->>'rows_deleted')::int AS rows_deleted FROM retention.run_policy('boss_too') r;
UPDATE retention.policies SET name = 'boss_renamed' WHERE name = 'boss';
SELECT (r->>'rows_deleted')::int AS rows_deleted FROM retention.run_policy('boss_renamed', interval '20 days') r;
SELECT array_agg(id ORDER BY id) AS kept_past_20_days FROM trust_boss WHERE at < now() - interval '20 days';
SELECT retention.drop_policy('boss_too');

-- 5. A hold means what it meant when it was added: the session's settings at a run do not
-- change it (a backslash in a string literal, the time zone of a literal).
INSERT INTO trust_boss VALUES (200, now() - interval '100 days', 'a\b'), (201, now() - interval '100 days', 'ab'),
                              (300, '2000-01-01 05:00+00', 'y2k'), (301, '2000-01-01 13:00+00', 'y2k late');
SET TimeZone = 'UTC';
SELECT h->>'condition' AS condition, h->>'expression' AS expression
  FROM retention.add_hold('boss_renamed', 'backslash', $$note = 'a\b'$$, 'Case 8') h;
SELECT h->>'condition' AS condition, h->>'expression' AS expression
  FROM retention.add_hold('boss_renamed', 'morning', $$at < '2000-01-01 12:00'$$, 'Case 9') h;
SET escape_string_warning = off;
SET standard_conforming_strings = off;
SELECT (r->>'rows_deleted')::int AS rows_deleted FROM retention.run_policy('boss_renamed', interval '50 days') r;
RESET standard_conforming_strings;
SET TimeZone = 'Pacific/Kiritimati';
SELECT (r->>'rows_deleted')::int AS rows_deleted FROM retention.run_policy('boss_renamed', interval '50 days') r;
RESET TimeZone;
RESET escape_string_warning;
SELECT id, note FROM trust_boss WHERE id >= 200 ORDER BY id;

-- 13. A preview at an interval of the caller's choosing needs SELECT on the table; the
-- policy's own interval does not.
SET ROLE trust_operator;
SELECT p->>'rows' AS rows FROM retention.preview('boss_renamed') p;
\set VERBOSITY terse
SELECT retention.preview('boss_renamed', interval '2 days');
\set VERBOSITY default
RESET ROLE;

-- 14. application_name = 'pg_cron' does not make a psql run a pg_cron run.
SET application_name = 'pg_cron';
SELECT retention.run_policy('boss_renamed') IS NOT NULL AS ran;
RESET application_name;
SELECT trigger, application_name FROM retention.runs ORDER BY id DESC LIMIT 1;

-- 10. A ledger entry names the table its run acted on, even when the policy is pointed
-- elsewhere during the run (here by a statement trigger on the table itself).
CREATE TABLE trust_m1 (at timestamptz);
CREATE TABLE trust_m2 (at timestamptz);
INSERT INTO trust_m1 SELECT now() - interval '5 days' FROM generate_series(1, 3);
CREATE FUNCTION public.trust_move() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  UPDATE retention.policies SET table_name = 'trust_m2' WHERE name = 'moving'; RETURN NULL; END $$;
CREATE TRIGGER trust_move BEFORE DELETE ON trust_m1 FOR EACH STATEMENT EXECUTE FUNCTION public.trust_move();
SET client_min_messages = error; -- no index on the time column: said once per table
SELECT (retention.add_policy('moving', 'trust_m1', 'at', 'older_than', interval '1 day')).name AS added;
SELECT (r->>'rows_deleted')::int AS rows_deleted FROM retention.run_policy('moving') r;
RESET client_min_messages;
SELECT retention.verify_ledger() IS NULL AS intact;
SELECT l.entry->>'table' AS ledger_table, r.target AS run_target, p.table_name AS policy_now
  FROM retention.runs r JOIN retention.ledger l ON l.id = (r.details->>'ledger_id')::bigint
  JOIN retention.policies p ON p.name = r.policy
 WHERE r.policy = 'moving';

-- 8. The time an entry was sealed is hashed: removing the first entries and back-dating the
-- new first one is found.
SELECT count(*) > 3 AS enough_entries FROM retention.ledger;
CREATE TEMP TABLE first_kept AS SELECT min(id) + 2 AS id FROM retention.ledger;
DELETE FROM retention.runs WHERE (details->>'ledger_id')::bigint < (SELECT id FROM first_kept);
DELETE FROM retention.ledger WHERE id < (SELECT id FROM first_kept);
UPDATE retention.ledger SET at = now() - interval '3000 days' WHERE id = (SELECT id FROM first_kept);
SELECT retention.verify_ledger() = (SELECT id FROM first_kept) AS found_at_first_kept;
-- ... and a legitimate prune is recorded in the chain: an intact chain verifies after it.
TRUNCATE retention.ledger, retention.runs;
DO $$ DECLARE prev text; e jsonb; t timestamptz; BEGIN
  FOR i IN 1..3 LOOP
    t := now() - interval '10 days' + i * interval '1 minute';
    e := jsonb_build_object('run_id', -i, 'sealed_at', to_char(timezone('UTC', t), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'));
    INSERT INTO retention.ledger (at, entry, prev_hash, hash)
    VALUES (t, e, prev, encode(sha256(convert_to(coalesce(prev, '') || e::text, 'UTF8')), 'hex'))
    RETURNING hash INTO prev;
  END LOOP; END $$;
SELECT retention.verify_ledger() IS NULL AS intact_before;
SET pg_retention.ledger_retention_days = 5;
SET client_min_messages = warning;
CALL retention.run_batched('boss_renamed');
RESET client_min_messages;
RESET pg_retention.ledger_retention_days;
SELECT retention.verify_ledger() IS NULL AS intact_after_prune;
SELECT entry->'pruned'->>'count' AS pruned FROM retention.ledger WHERE entry ? 'pruned';
SELECT count(*) AS entries FROM retention.ledger;

SELECT retention.drop_policy('moving');
SELECT retention.drop_policy('boss_renamed');
DROP EXTENSION pg_retention;
DROP TABLE trust_boss, trust_own, trust_saw, trust_m1, trust_m2;
DROP FUNCTION public.trust_move(), public.trust_spy(int);
DROP SCHEMA trust_loot;
REVOKE CREATE ON SCHEMA public FROM trust_writer;
DROP OWNED BY trust_writer, trust_operator;
DROP ROLE trust_writer;
DROP ROLE trust_operator;

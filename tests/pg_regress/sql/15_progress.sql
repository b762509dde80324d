-- retention.progress (issue 26): one row per run in progress in this database, from shared
-- memory; empty when nothing runs; for the roles a DBA grants it to. A trigger that fires
-- inside each batch of a run reads it as the run goes (the run's own backend: the same rows any
-- other session sees at that moment). Runs alone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS progress_events, progress_seen CASCADE;
DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'progress_operator') THEN DROP OWNED BY progress_operator; DROP ROLE progress_operator; END IF;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'progress_owner') THEN DROP OWNED BY progress_owner; DROP ROLE progress_owner; END IF; END $$;
RESET client_min_messages;
CREATE EXTENSION pg_retention;
\d retention.progress
SELECT count(*) AS runs_in_progress FROM retention.progress;

-- Not for PUBLIC; an operator granted SELECT on the view and EXECUTE on its function reads it
-- (a function in a view runs with the reader's rights, as the status view's do).
CREATE ROLE progress_operator;
SET ROLE progress_operator;
SELECT count(*) FROM retention.progress;
SELECT count(*) FROM retention.progress_rows();
RESET ROLE;
GRANT USAGE ON SCHEMA retention TO progress_operator;
GRANT SELECT ON retention.progress TO progress_operator;
SET ROLE progress_operator;
SELECT count(*) AS runs_in_progress FROM retention.progress;
RESET ROLE;
GRANT EXECUTE ON FUNCTION retention.progress_rows() TO progress_operator;
SET ROLE progress_operator;
SELECT count(*) AS runs_in_progress FROM retention.progress;
RESET ROLE;

-- A table owned by an ordinary role, whose trigger writes down the run's progress row at each
-- batch (the run acts as the owner, so the owner is granted the view; runs pin search_path, so
-- the trigger names its schema).
CREATE ROLE progress_owner;
GRANT USAGE ON SCHEMA retention TO progress_owner;
GRANT SELECT ON retention.progress TO progress_owner;
GRANT EXECUTE ON FUNCTION retention.progress_rows() TO progress_owner;
CREATE TABLE progress_events (id int PRIMARY KEY, at timestamptz NOT NULL);
CREATE INDEX ON progress_events (at);
CREATE TABLE progress_seen AS SELECT * FROM retention.progress WHERE false;
ALTER TABLE progress_events OWNER TO progress_owner;
ALTER TABLE progress_seen OWNER TO progress_owner;
INSERT INTO progress_events SELECT g, now() - interval '10 days' FROM generate_series(1, 250) g;
INSERT INTO progress_events SELECT -g, now() FROM generate_series(1, 5) g;
CREATE FUNCTION progress_note() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.progress_seen SELECT * FROM retention.progress; RETURN NULL; END $$;
ALTER FUNCTION progress_note() OWNER TO progress_owner;
CREATE TRIGGER note AFTER DELETE ON progress_events FOR EACH STATEMENT EXECUTE FUNCTION progress_note();
SELECT (retention.add_policy('progress_events', 'progress_events', 'at', 'older_than', interval '1 day', batch_size => 100)).name;
SELECT (retention.run_policy('progress_events'))->>'rows_deleted' AS rows_deleted;
-- One row per batch, seen as the batch deleted: the rows done before it, the count up front.
SELECT policy, "table", phase, rows_done, rows_estimated, batches, requests_in_flight,
       pid = pg_backend_pid() AS this_backend,
       run_id = (SELECT max(id) FROM retention.runs WHERE policy = 'progress_events') AS this_run,
       started_at <= now() AS started
  FROM progress_seen ORDER BY rows_done;
-- And nothing once it returned.
SELECT count(*) AS runs_in_progress FROM retention.progress;

-- A run that fails halfway leaves nothing behind either.
INSERT INTO progress_events SELECT g, now() - interval '10 days' FROM generate_series(1000, 1249) g;
CREATE FUNCTION progress_fail() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN IF (SELECT rows_done FROM retention.progress) >= 100 THEN RAISE EXCEPTION 'progress_fail: stopped at %', (SELECT rows_done FROM retention.progress); END IF; RETURN NULL; END $$;
ALTER FUNCTION progress_fail() OWNER TO progress_owner;
CREATE TRIGGER fail AFTER DELETE ON progress_events FOR EACH STATEMENT EXECUTE FUNCTION progress_fail();
\set VERBOSITY terse
SELECT retention.run_policy('progress_events');
\set VERBOSITY default
SELECT count(*) AS runs_in_progress FROM retention.progress;
DROP TABLE progress_events, progress_seen;
DROP FUNCTION progress_note(), progress_fail();
DROP EXTENSION pg_retention;
DROP OWNED BY progress_owner;
DROP ROLE progress_owner;
DROP OWNED BY progress_operator;
DROP ROLE progress_operator;

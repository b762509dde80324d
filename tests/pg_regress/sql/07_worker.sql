-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions CASCADE;
RESET client_min_messages;
-- The worker's settings are checked when set; its status view; asking it to run.
ALTER SYSTEM SET pg_retention.run_at = '25:00';
ALTER SYSTEM SET pg_retention.run_at = 'midnight';
ALTER SYSTEM SET pg_retention.timezone = 'Mars/Olympus_Mons';
ALTER SYSTEM SET pg_retention.worker_enabled = 'sometimes';
SET pg_retention.run_at = '04:00';
SHOW pg_retention.run_at;
SHOW pg_retention.timezone;
SHOW pg_retention.worker_enabled;

CREATE EXTENSION pg_retention;
-- Off by default: nothing runs until a DBA turns it on.
SELECT retention.run_worker_now();
SELECT retention.next_worker_run();

-- One row per policy; a missing table shows as a backlog error, not a failure of the view.
DROP TABLE IF EXISTS "AgentUsage", "ConversationTrace";
CREATE TABLE "AgentUsage" (id int, "timestamp" timestamp(3));
CREATE INDEX ON "AgentUsage" ("timestamp");
-- The 90-day row sits 1 ms past the cutoff: timestamp(3) rounds up to half a millisecond.
INSERT INTO "AgentUsage" SELECT g, timezone('UTC', now()) - interval '1 day' * (80 + g) - interval '1 millisecond' FROM generate_series(1, 20) g;
SELECT policy, enabled, action, target, last_run_at IS NULL AS never_ran, next_worker_run,
       backlog_rows, oldest_backlog_age BETWEEN interval '9 days 23:59:59' AND interval '10 days 00:00:01' AS oldest_10_days_past_cutoff, backlog_error
  FROM retention.status ORDER BY policy;
SELECT cleanup_old_agent_usage();
-- A policy whose table is missing can still be switched off (its table is only re-checked
-- when what names it changes).
SELECT name, enabled FROM retention.alter_policy('old_recordings', enabled => false);
UPDATE retention.policies SET table_name = 'still_missing' WHERE name = 'old_recordings';
SELECT policy, last_trigger, last_status, last_rows, backlog_rows
  FROM retention.status WHERE policy = 'old_agent_usage';
DROP EXTENSION pg_retention;
DROP TABLE "AgentUsage";

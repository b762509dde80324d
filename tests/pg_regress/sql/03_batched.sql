-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions CASCADE;
DROP FUNCTION IF EXISTS refuse_delete();
RESET client_min_messages;
CREATE EXTENSION pg_retention;
CREATE TABLE "ConversationTrace" (id text PRIMARY KEY, payload text, "expiresAt" timestamp(3));
CREATE TABLE "AgentUsage" (id text PRIMARY KEY, "timestamp" timestamp(3) NOT NULL);
CREATE INDEX ON "ConversationTrace" ("expiresAt");
CREATE INDEX ON "AgentUsage" ("timestamp");
INSERT INTO "ConversationTrace" SELECT 'live-' || g, 'x', timezone('UTC', now()) + interval '1 hour' * g FROM generate_series(1, 20) g;
INSERT INTO "AgentUsage" SELECT 'u' || g, timezone('UTC', now()) - interval '1 day' * g - interval '1 minute' FROM generate_series(1, 89) g;
-- The commit-per-batch procedure, and the history it leaves.
INSERT INTO "ConversationTrace"
SELECT 'old-' || g, 'x', timezone('UTC', now()) - interval '1 minute' * g FROM generate_series(1, 2500) g;
SELECT (retention.alter_policy('expired_traces', batch_size => 1000)).batch_size;
CALL retention.run_batched('expired_traces');
SELECT count(*) FROM "ConversationTrace" WHERE "expiresAt" < timezone('UTC', now());
SELECT mode, status, rows_deleted, batches, cutoff IS NOT NULL AS has_cutoff, finished_at >= started_at AS finished
  FROM retention.runs WHERE mode = 'batched' ORDER BY id;

-- The procedure commits, so it cannot run inside a transaction block (a DO block may call it).
BEGIN;
CALL retention.run_batched('expired_traces');
ROLLBACK;
DO $$ BEGIN CALL retention.run_batched('expired_traces'); END $$;
CALL retention.run_batched(NULL);
CALL retention.run_batched('no_such_policy');

-- A failing run is recorded as failed, and its error is raised to the caller.
INSERT INTO "AgentUsage" VALUES ('old', timezone('UTC', now()) - interval '1000 days');
CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'usage rows are under legal hold'; END $$;
CREATE TRIGGER hold BEFORE DELETE ON "AgentUsage" FOR EACH ROW EXECUTE FUNCTION refuse_delete();
CALL retention.run_batched('old_agent_usage');
SELECT policy, mode, status, rows_deleted, error FROM retention.runs
 WHERE policy = 'old_agent_usage' AND mode = 'batched';
SELECT count(*) FROM "AgentUsage";
DROP TRIGGER hold ON "AgentUsage";
CALL retention.run_batched('old_agent_usage', interval '999 days');
SELECT count(*) FROM "AgentUsage";

-- A legacy inheritance parent: its children's rows are purged by CALL too.
CREATE TABLE legacy_usage (id int, at timestamp(6));
CREATE TABLE legacy_usage_2024 () INHERITS (legacy_usage);
INSERT INTO legacy_usage SELECT g, timezone('UTC', now()) - interval '200 days' FROM generate_series(1, 100) g;
INSERT INTO legacy_usage_2024 SELECT g, timezone('UTC', now()) - interval '300 days' FROM generate_series(1, 3000) g;
INSERT INTO legacy_usage_2024 SELECT g, timezone('UTC', now()) FROM generate_series(1, 7) g;
ANALYZE legacy_usage; ANALYZE legacy_usage_2024;
SELECT (retention.add_policy('legacy_usage', 'legacy_usage', 'at', 'older_than', interval '90 days', batch_size => 50)).name;
CALL retention.run_batched('legacy_usage');
SELECT count(*) AS left FROM legacy_usage;
SELECT status, rows_deleted FROM retention.runs WHERE policy = 'legacy_usage';
SELECT retention.drop_policy('legacy_usage');
DROP TABLE legacy_usage CASCADE;

-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions CASCADE;
RESET client_min_messages;
-- CREATE EXTENSION adds the schema, the catalog and the presets, even before the
-- application tables exist.
CREATE EXTENSION pg_retention;
SELECT name, table_schema, table_name, time_column, rule, retain, action, batch_size, enabled
  FROM retention.policies ORDER BY name;
-- Running a preset whose table is missing names the table and says how to repoint it.
SELECT cleanup_expired_traces();
SELECT cleanup_old_agent_usage();
SELECT cleanup_old_recordings();

-- The two row cleanups of the contract, on Prisma-shaped tables.
CREATE TABLE "ConversationTrace" (id text PRIMARY KEY, payload text, "expiresAt" timestamp(3));
CREATE TABLE "AgentUsage" (id text PRIMARY KEY, "timestamp" timestamp(3) NOT NULL);
CREATE INDEX ON "ConversationTrace" ("expiresAt");
CREATE INDEX ON "AgentUsage" ("timestamp");

INSERT INTO "ConversationTrace"
SELECT 'expired-' || g, 'x', timezone('UTC', now()) - interval '1 hour' * g FROM generate_series(1, 40) g;
INSERT INTO "ConversationTrace"
SELECT 'live-' || g, 'x', timezone('UTC', now()) + interval '1 hour' * g FROM generate_series(1, 20) g;
INSERT INTO "ConversationTrace"
SELECT 'never-' || g, 'x', NULL FROM generate_series(1, 10) g;

-- Dry run: same predicate, nothing changes.
SELECT p - 'cutoff' - 'oldest' - 'oldest_age' AS preview FROM retention.preview('expired_traces') p;
SELECT count(*) FROM "ConversationTrace";

-- The session's TimeZone does not change the answer.
SET TimeZone = 'Asia/Kathmandu';
SELECT cleanup_expired_traces();
RESET TimeZone;
SELECT count(*) FILTER (WHERE "expiresAt" IS NULL) AS never_expire,
       count(*) FILTER (WHERE "expiresAt" IS NOT NULL) AS live
  FROM "ConversationTrace";
SELECT cleanup_expired_traces();

INSERT INTO "AgentUsage"
SELECT 'u' || g, timezone('UTC', now()) - interval '1 day' * g - interval '1 minute' FROM generate_series(1, 120) g;

-- Bad days: a clear error, and nothing deleted.
SELECT cleanup_old_agent_usage(0);
SELECT cleanup_old_agent_usage(-7);
SELECT cleanup_old_agent_usage(NULL);
SELECT cleanup_old_agent_usage(2147483647);
SELECT count(*) FROM "AgentUsage";

SELECT cleanup_old_agent_usage(100);
SELECT cleanup_old_agent_usage();
SELECT count(*) FROM "AgentUsage";

-- Every run is in the history, the failed ones above too (bad arguments are not runs).
SELECT policy, trigger, mode, status, rows_deleted, error
  FROM retention.runs ORDER BY id;

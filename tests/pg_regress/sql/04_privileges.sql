-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions CASCADE;
DROP ROLE IF EXISTS retention_operator;
RESET client_min_messages;
CREATE EXTENSION pg_retention;
CREATE TABLE "ConversationTrace" (id text PRIMARY KEY, payload text, "expiresAt" timestamp(3));
CREATE TABLE "AgentUsage" (id text PRIMARY KEY, "timestamp" timestamp(3) NOT NULL);
CREATE INDEX ON "ConversationTrace" ("expiresAt");
CREATE INDEX ON "AgentUsage" ("timestamp");
INSERT INTO "ConversationTrace" SELECT 'live-' || g, 'x', timezone('UTC', now()) + interval '1 hour' * g FROM generate_series(1, 20) g;
INSERT INTO "AgentUsage" SELECT 'u' || g, timezone('UTC', now()) - interval '1 day' * g - interval '1 minute' FROM generate_series(1, 89) g;
-- Nothing is executable by PUBLIC; an operator role gets what the README lists.
CREATE ROLE retention_operator LOGIN;
SET ROLE retention_operator;
SELECT cleanup_expired_traces();
SELECT retention.preview('expired_traces');
RESET ROLE;

-- The README's operator recipe: the least that works. No rights on the target tables (runs use
-- their owners' rights) and SELECT only on the history (the extension writes it).
GRANT USAGE ON SCHEMA retention TO retention_operator;
GRANT SELECT ON retention.policies TO retention_operator;
GRANT SELECT ON retention.runs TO retention_operator;
GRANT EXECUTE ON FUNCTION cleanup_expired_traces(), cleanup_old_agent_usage(integer), cleanup_old_recordings(integer),
                          retention.run_policy(text, interval), retention.preview(text, interval) TO retention_operator;
GRANT EXECUTE ON PROCEDURE retention.run_batched(text, interval) TO retention_operator;
GRANT SELECT ON retention.status TO retention_operator;
GRANT EXECUTE ON FUNCTION retention.backlog(text), retention.next_worker_run(), retention.run_worker_now() TO retention_operator;

SET ROLE retention_operator;
SELECT cleanup_expired_traces();
SELECT cleanup_old_agent_usage(30);
CALL retention.run_batched('expired_traces');
-- Writing policies stays with the owner.
SELECT retention.add_policy('mine', 'sessions', 'last_seen', 'expires_at');
-- The operator's runs are in the history, under its name...
SELECT policy, status, username FROM retention.runs ORDER BY id;
SELECT policy, last_status FROM retention.status ORDER BY policy;
-- ... which it can read but neither forge nor erase.
INSERT INTO retention.runs (policy, trigger, mode, status) VALUES ('expired_traces', 'worker', 'batched', 'succeeded');
UPDATE retention.runs SET status = 'succeeded';
DELETE FROM retention.runs;
-- An advisory lock on the old key no longer blocks a run (the lock is one no role can take).
SELECT pg_advisory_lock(x'52455445'::int, hashtext('expired_traces'));
SELECT p->>'status' AS status FROM retention.run_policy('expired_traces') p;
SELECT pg_advisory_unlock_all();
RESET ROLE;

-- Every routine pins its search_path (the procedure cannot; it qualifies every name).
SELECT p.proname
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_retention'
 WHERE NOT coalesce(p.proconfig::text LIKE '%search_path=pg_catalog, pg_temp%', false)
 ORDER BY 1;
DROP EXTENSION pg_retention;
DROP OWNED BY retention_operator;
DROP ROLE retention_operator;

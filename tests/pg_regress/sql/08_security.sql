-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions, victim, trigger_saw, spied, mallory_t CASCADE;
DROP FUNCTION IF EXISTS public.evil(), public.spy_lt(timestamp, timestamp) CASCADE;
DO $$ DECLARE r text; BEGIN
  FOREACH r IN ARRAY ARRAY['app_owner', 'mallory'] LOOP
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('DROP OWNED BY %I', r);
      EXECUTE format('DROP ROLE %I', r);
    END IF;
  END LOOP; END $$;
RESET client_min_messages;
CREATE EXTENSION pg_retention;
-- Every attack below is written as the issue's reproduction, by an ordinary role.
CREATE ROLE app_owner;
CREATE ROLE mallory;
GRANT CREATE ON SCHEMA public TO app_owner;
CREATE TABLE "ConversationTrace" (id int, "expiresAt" timestamp(3));
CREATE INDEX ON "ConversationTrace" ("expiresAt");
ALTER TABLE "ConversationTrace" OWNER TO app_owner;
CREATE TABLE trigger_saw (who text, superuser boolean);
ALTER TABLE trigger_saw OWNER TO app_owner;

-- 1. A table owner's trigger runs as the owner, never as superuser, whoever runs the policy.
SET ROLE app_owner;
CREATE FUNCTION public.evil() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO public.trigger_saw SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE app_owner SUPERUSER';
  END IF;
  RETURN OLD; END $$;
CREATE TRIGGER zz BEFORE DELETE ON "ConversationTrace" FOR EACH ROW EXECUTE FUNCTION public.evil();
INSERT INTO "ConversationTrace" SELECT g, timezone('UTC', now()) - interval '1 day' FROM generate_series(1, 3) g;
INSERT INTO "ConversationTrace" VALUES (100, timezone('UTC', now()) + interval '1 day');
RESET ROLE;
SELECT cleanup_expired_traces();
INSERT INTO "ConversationTrace" SELECT g, timezone('UTC', now()) - interval '1 day' FROM generate_series(4, 5) g;
CALL retention.run_batched('expired_traces');
SELECT who, superuser, count(*) FROM trigger_saw GROUP BY 1, 2;
SELECT rolsuper AS app_owner_is_superuser FROM pg_roles WHERE rolname = 'app_owner';
SELECT count(*) AS left_live FROM "ConversationTrace";

-- ... and FORCE ROW LEVEL SECURITY binds the run, as it binds the owner.
INSERT INTO "ConversationTrace" SELECT g, timezone('UTC', now()) - interval '1 day' FROM generate_series(6, 9) g;
ALTER TABLE "ConversationTrace" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "ConversationTrace" FORCE ROW LEVEL SECURITY;
CREATE POLICY only_even ON "ConversationTrace" USING (id % 2 = 0);
SELECT cleanup_expired_traces();
ALTER TABLE "ConversationTrace" DISABLE ROW LEVEL SECURITY;
SELECT id FROM "ConversationTrace" ORDER BY id;

-- 3. Operator hijack through search_path: a CALL whose session puts public first uses only
-- pg_catalog's operators.
CREATE TABLE spied (n int);
CREATE FUNCTION public.spy_lt(timestamp, timestamp) RETURNS boolean LANGUAGE sql AS
  'INSERT INTO public.spied VALUES (1); SELECT $1 OPERATOR(pg_catalog.<) $2';
CREATE OPERATOR public.< (LEFTARG = timestamp, RIGHTARG = timestamp, FUNCTION = public.spy_lt);
GRANT ALL ON spied TO PUBLIC;
SET search_path = public, pg_catalog;
CALL retention.run_batched('expired_traces');
-- The caller's search_path is the caller's, after a run and after a failed one.
CALL retention.run_batched('no_such_policy');
SHOW search_path;
RESET search_path;
SELECT count(*) AS hijacked_calls FROM spied;
SELECT id FROM "ConversationTrace" ORDER BY id;
DROP OPERATOR public.< (timestamp, timestamp);

-- 2. Targets: system catalogs and the extension's own tables are refused to everybody...
SELECT retention.add_policy('roles', 'pg_authid', 'rolvaliduntil', 'older_than', interval '1 day', table_schema => 'pg_catalog');
SELECT retention.add_policy('history', 'runs', 'started_at', 'older_than', interval '1 day', table_schema => 'retention');
UPDATE retention.policies SET table_schema = 'pg_catalog', table_name = 'pg_authid', time_column = 'rolvaliduntil'
 WHERE name = 'old_agent_usage';
-- ... a reason_column must be text ...
CREATE TABLE victim (id int, at timestamptz, deleted_at timestamptz, role text, flags int);
CREATE INDEX ON victim (at);
INSERT INTO victim SELECT g, now() - interval '2 days', NULL, 'user', 0 FROM generate_series(1, 100) g;
SELECT retention.add_policy('flags', 'victim', 'at', 'older_than', interval '1 day', action => 'soft_delete',
                            soft_delete_column => 'deleted_at', reason_column => 'flags');
-- ... and a role that may manage policies may point one only at a table whose owner it is a member of.
GRANT USAGE ON SCHEMA retention TO mallory;
GRANT SELECT, INSERT, UPDATE ON retention.policies TO mallory;
GRANT EXECUTE ON FUNCTION retention.add_policy,
                          retention.alter_policy
   TO mallory;
CREATE TABLE mallory_t (at timestamptz);
CREATE INDEX ON mallory_t (at);
ALTER TABLE mallory_t OWNER TO mallory;
SET ROLE mallory;
SELECT retention.add_policy('steal', 'victim', 'at', 'older_than', interval '1 day');
SELECT retention.add_policy('escalate', 'victim', 'at', 'older_than', interval '1 day', action => 'soft_delete',
                            soft_delete_column => 'deleted_at', reason_column => 'role', deletion_reason => 'admin');
SELECT name FROM retention.add_policy('mine', 'mallory_t', 'at', 'older_than', interval '1 day');
SELECT retention.alter_policy('mine', table_name => 'victim');
-- A restore's row replaces a pristine preset; that takes the right to delete one, which an
-- insert-only role lacks, by name or by id.
SELECT name FROM retention.add_policy('old_recordings', 'mallory_t', 'at', 'expires_at');
INSERT INTO retention.policies (id, name, table_name, time_column, rule) OVERRIDING SYSTEM VALUE
VALUES ((SELECT id FROM retention.policies WHERE name = 'old_recordings'), 'by_id', 'mallory_t', 'at', 'expires_at');
RESET ROLE;
SELECT name, table_name FROM retention.policies WHERE name IN ('old_recordings', 'by_id');
SELECT count(*) AS victim_rows, count(*) FILTER (WHERE role = 'user') AS still_users FROM victim;
SELECT name, table_name FROM retention.policies WHERE name IN ('steal', 'escalate', 'mine', 'roles', 'history') ORDER BY name;

DROP EXTENSION pg_retention;
DROP TABLE "ConversationTrace", trigger_saw, spied, victim, mallory_t;
DROP FUNCTION public.spy_lt(timestamp, timestamp);
REVOKE CREATE ON SCHEMA public FROM app_owner;
DROP OWNED BY app_owner, mallory;
DROP ROLE app_owner;
DROP ROLE mallory;

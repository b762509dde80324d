-- hide_expired (issue 25, in progress): rows past the cutoff vanish from ordinary queries the
-- moment they expire, by row-level security, whatever the client; the run still sees and
-- deletes them; turning it off puts the table back exactly as it was. Runs alone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", hide_own CASCADE;
DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'hide_app') THEN DROP OWNED BY hide_app; DROP ROLE hide_app; END IF;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'hide_reader') THEN DROP OWNED BY hide_reader; DROP ROLE hide_reader; END IF; END $$;
RESET client_min_messages;
CREATE EXTENSION pg_retention;
CREATE ROLE hide_app;
-- No right on schema retention: the application needs none.
GRANT CREATE ON SCHEMA public TO hide_app; -- an application role makes its own objects
-- The Prisma table, owned by the application's role as Prisma's migrations leave it.
CREATE TABLE "ConversationTrace" (id text PRIMARY KEY, "expiresAt" timestamp(3));
CREATE INDEX ON "ConversationTrace" ("expiresAt");
ALTER TABLE "ConversationTrace" OWNER TO hide_app;
INSERT INTO "ConversationTrace" VALUES ('old', timezone('UTC', now()) - interval '1 day'), ('live', timezone('UTC', now()) + interval '1 day'),
                                       ('none', NULL), ('soon', timezone('UTC', clock_timestamp()) + interval '1 second');
SELECT name, hide_expired FROM retention.alter_policy('expired_traces', hide_expired => true);
SELECT polname, polpermissive, polcmd, pg_get_expr(polqual, polrelid) AS using FROM pg_policy
 WHERE polrelid = '"ConversationTrace"'::regclass ORDER BY 1;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = '"ConversationTrace"'::regclass;
-- A change that hides nothing else leaves the policies (and the table's lock) alone.
CREATE TEMP TABLE hide_oids AS SELECT oid FROM pg_policy WHERE polrelid = '"ConversationTrace"'::regclass;
SELECT (retention.alter_policy('expired_traces', batch_size => 500)).batch_size;
SELECT count(*) AS policies_made_again FROM pg_policy
 WHERE polrelid = '"ConversationTrace"'::regclass AND oid NOT IN (SELECT oid FROM hide_oids);
SET ROLE hide_app;
SELECT array_agg(id ORDER BY id) AS app_sees FROM "ConversationTrace";
SELECT id AS for_update FROM "ConversationTrace" WHERE id IN ('old', 'live') FOR UPDATE;
WITH u AS (UPDATE "ConversationTrace" SET id = id WHERE id IN ('old', 'live') RETURNING id) SELECT array_agg(id) AS updated FROM u;
WITH d AS (DELETE FROM "ConversationTrace" WHERE id = 'old' RETURNING id) SELECT count(*) AS deleted_by_app FROM d;
-- An expired row still goes in (and is hidden at once).
INSERT INTO "ConversationTrace" VALUES ('late', timezone('UTC', now()) - interval '2 days');
SELECT pg_sleep(1.2);
SELECT array_agg(id ORDER BY id) AS app_sees_after_soon_expired FROM "ConversationTrace";
-- Nothing a session can set shows the hidden rows to the application...
SET row_security = off;
SELECT count(*) FROM "ConversationTrace";
RESET row_security;
-- ... nor a function of its own named like the one the policies call (they call it by its
-- identity, not by name), nor a view or a SECURITY DEFINER function it owns, nor another role.
CREATE FUNCTION public.run_sees_all() RETURNS boolean LANGUAGE sql AS 'SELECT true';
SET search_path = public, retention;
SELECT array_agg(id ORDER BY id) AS with_a_lookalike FROM "ConversationTrace";
RESET search_path;
CREATE VIEW hide_view AS SELECT * FROM "ConversationTrace";
CREATE VIEW hide_invoker WITH (security_invoker) AS SELECT * FROM "ConversationTrace";
CREATE VIEW hide_barrier WITH (security_barrier) AS SELECT * FROM "ConversationTrace" WHERE id <> 'x';
CREATE FUNCTION hide_definer() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM "ConversationTrace"';
SELECT (SELECT array_agg(id ORDER BY id) FROM hide_view) AS through_a_view,
       (SELECT array_agg(id ORDER BY id) FROM hide_invoker) AS through_an_invoker_view,
       (SELECT array_agg(id ORDER BY id) FROM hide_barrier) AS through_a_barrier_view,
       hide_definer() AS counted_by_a_definer_function;
GRANT SELECT ON "ConversationTrace" TO PUBLIC;
RESET ROLE;
CREATE ROLE hide_reader;
SET ROLE hide_reader;
SELECT array_agg(id ORDER BY id) AS another_role_sees FROM "ConversationTrace";
RESET ROLE;
DROP ROLE hide_reader;
-- A legal hold keeps an expired row from deletion, not from hiding: it preserves evidence for
-- whoever must produce it (a superuser, a BYPASSRLS role); it does not make the row live again.
SELECT retention.add_hold('expired_traces', 'case_7', $$id = 'late'$$, 'litigation') IS NOT NULL AS held;
-- ... or makes the run (which acts as the owner, itself filtered) see fewer: it deletes the
-- two expired rows not held.
SET row_security = off;
SELECT (retention.run_policy('expired_traces'))->>'rows_deleted' AS run_deleted;
RESET row_security;
SELECT array_agg(id ORDER BY id) AS left_after_run FROM "ConversationTrace";
SET ROLE hide_app;
SELECT array_agg(id ORDER BY id) AS app_sees_with_the_held_row FROM "ConversationTrace";
RESET ROLE;
SELECT retention.release_hold('expired_traces', 'case_7') IS NOT NULL AS released;
SELECT (retention.run_policy('expired_traces'))->>'rows_deleted' AS deleted_once_released;
SELECT name, hide_expired FROM retention.alter_policy('expired_traces', hide_expired => false);
SELECT count(*) AS policies_left FROM pg_policy WHERE polrelid = '"ConversationTrace"'::regclass;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = '"ConversationTrace"'::regclass;

-- A partitioned table: the parent and every partition (which a query may name directly).
CREATE TABLE hide_parts (id int, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE hide_parts_old PARTITION OF hide_parts FOR VALUES FROM ('2000-01-01') TO ('2020-01-01');
CREATE TABLE hide_parts_new PARTITION OF hide_parts FOR VALUES FROM ('2020-01-01') TO ('2100-01-01');
CREATE INDEX ON hide_parts (at);
ALTER TABLE hide_parts OWNER TO hide_app;
ALTER TABLE hide_parts_old OWNER TO hide_app;
ALTER TABLE hide_parts_new OWNER TO hide_app;
INSERT INTO hide_parts VALUES (1, '2010-01-01'), (2, now() - interval '40 days'), (3, now());
SELECT (retention.add_policy('hide_parts', 'hide_parts', 'at', 'older_than', interval '30 days', hide_expired => true)).name;
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, count(p.polname) AS policies
  FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid WHERE c.relname LIKE 'hide_parts%' AND c.relkind IN ('r', 'p')
 GROUP BY 1, 2, 3 ORDER BY 1;
SET ROLE hide_app;
SELECT array_agg(id ORDER BY id) AS through_parent FROM hide_parts;
SELECT array_agg(id ORDER BY id) AS old_partition_directly FROM hide_parts_old;
SELECT array_agg(id ORDER BY id) AS new_partition_directly FROM hide_parts_new;
RESET ROLE;
-- A partition made since (as pg_partman makes them) has no hiding until the next run, which
-- applies it again and says so; so does a policy the owner dropped.
CREATE TABLE hide_parts_older PARTITION OF hide_parts FOR VALUES FROM ('1990-01-01') TO ('2000-01-01');
ALTER TABLE hide_parts_older OWNER TO hide_app;
INSERT INTO hide_parts VALUES (4, '1995-01-01');
SET ROLE hide_app;
SELECT array_agg(id ORDER BY id) AS new_partition_before_a_run FROM hide_parts_older;
RESET ROLE;
SELECT format('DROP POLICY %I ON hide_parts_new', 'pg_retention_' || id || '_select') FROM retention.policies WHERE name = 'hide_parts' \gset
SET ROLE hide_app;
:format;
RESET ROLE;
SELECT (retention.run_policy('hide_parts'))->>'rows_deleted' AS run_deleted;
SET ROLE hide_app;
SELECT array_agg(id ORDER BY id) AS new_partition_after_the_run FROM hide_parts;
RESET ROLE;
SELECT retention.drop_policy('hide_parts');
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, count(p.polname) AS policies
  FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid WHERE c.relname LIKE 'hide_parts%' AND c.relkind IN ('r', 'p')
 GROUP BY 1, 2, 3 ORDER BY 1;
DROP TABLE hide_parts;

-- A table with row-level security of its own: on and off leave it exactly as it was.
-- Its owner bypassed its own (permissive) policy, not being forced; it still does, and only
-- loses the expired rows. A table with restrictive policies of its own is refused.
CREATE TABLE hide_own (id int, at timestamptz, tenant text);
CREATE INDEX ON hide_own (at);
ALTER TABLE hide_own OWNER TO hide_app;
ALTER TABLE hide_own ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_only ON hide_own USING (tenant = current_user);
INSERT INTO hide_own VALUES (1, now() - interval '40 days', 'acme'), (2, now(), 'acme'), (3, now(), 'globex');
CREATE TEMP TABLE before AS
  SELECT policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies WHERE tablename = 'hide_own';
SET ROLE hide_app;
SELECT array_agg(id ORDER BY id) AS owner_sees_before FROM hide_own;
RESET ROLE;
SELECT (retention.add_policy('hide_own', 'hide_own', 'at', 'older_than', interval '30 days', hide_expired => true)).name;
SELECT policyname, permissive, roles, cmd FROM pg_policies WHERE tablename = 'hide_own' ORDER BY 1;
SET ROLE hide_app;
SELECT array_agg(id ORDER BY id) AS owner_sees_while_hiding FROM hide_own;
RESET ROLE;
-- A new owner (ALTER TABLE ... OWNER TO) gets the owner's policy at the next run.
CREATE ROLE hide_app2;
ALTER TABLE hide_own OWNER TO hide_app2;
SELECT (retention.run_policy('hide_own'))->>'rows_deleted' AS run_deleted;
SELECT policyname, roles FROM pg_policies WHERE tablename = 'hide_own' AND policyname LIKE '%owner';
SET ROLE hide_app2;
SELECT array_agg(id ORDER BY id) AS new_owner_sees FROM hide_own;
RESET ROLE;
SELECT retention.drop_policy('hide_own');
CREATE POLICY no_archive ON hide_own AS RESTRICTIVE USING (tenant <> 'archive');
\set VERBOSITY terse
SELECT retention.add_policy('hide_own2', 'hide_own', 'at', 'older_than', interval '30 days', hide_expired => true);
\set VERBOSITY default
DROP POLICY no_archive ON hide_own;
SELECT policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies WHERE tablename = 'hide_own'
EXCEPT SELECT * FROM before;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'hide_own'::regclass;
SELECT count(*) AS remembered FROM retention.hidden_tables;
DROP VIEW hide_view, hide_invoker, hide_barrier;
DROP FUNCTION hide_definer(), public.run_sees_all();
DROP TABLE hide_own, "ConversationTrace";
DROP ROLE hide_app2;
REVOKE CREATE ON SCHEMA public FROM hide_app;
DROP OWNED BY hide_app;
DROP ROLE hide_app;
DROP EXTENSION pg_retention;

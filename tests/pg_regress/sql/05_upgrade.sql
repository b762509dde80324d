-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions CASCADE;
DROP ROLE IF EXISTS upgrade_operator;
RESET client_min_messages;
-- An upgrade from 0.1.0 gives what a fresh install of this version gives.
-- (tests/lib.sh installs tests/upgrade/pg_retention--0.1.0.sql and --0.2.0.sql, the install
-- scripts of those releases.)
CREATE EXTENSION pg_retention VERSION '0.1.0';
-- Before the update, this library refuses 0.1.0's SQL with the same clear words.
SELECT cleanup_expired_traces();
ALTER EXTENSION pg_retention UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_retention';

CREATE FUNCTION pg_temp.shape() RETURNS TABLE (kind text, item text) LANGUAGE sql AS $$
    SELECT 'routine', p.oid::regprocedure::text || ' ' || pg_get_function_arguments(p.oid) || ' ' || p.prokind::text || ' ' || p.prorettype::regtype::text
           || ' ' || coalesce(p.proconfig::text, '') || ' ' || p.provolatile::text || ' ' || md5(p.prosrc)
           || ' ' || coalesce(p.proacl::text, '')
      FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_retention'
    UNION ALL
    SELECT 'column', c.oid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
     WHERE c.relnamespace = 'retention'::regnamespace AND c.relkind = 'r'
    UNION ALL
    SELECT 'constraint', conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'retention'::regnamespace
    UNION ALL
    SELECT 'relation', c.oid::regclass::text || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '')
           || ' ' || coalesce(pg_get_viewdef(c.oid), '')
      FROM pg_class c WHERE c.relnamespace = 'retention'::regnamespace
    UNION ALL
    SELECT 'trigger', pg_get_triggerdef(t.oid) FROM pg_trigger t
     WHERE t.tgrelid = 'retention.policies'::regclass AND NOT t.tgisinternal
    UNION ALL
    SELECT 'dumped', u.relation::regclass::text || ' ' || coalesce(u.condition, '')
      FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(relation, condition) WHERE e.extname = 'pg_retention'
    UNION ALL
    SELECT 'schema', n.nspname || ' ' || coalesce(n.nspacl, acldefault('n', n.nspowner))::text
      FROM pg_namespace n JOIN pg_depend d ON d.objid = n.oid AND d.classid = 'pg_namespace'::regclass AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_retention'
    UNION ALL
    SELECT 'policy', (to_jsonb(p) - ARRAY['id', 'created_at', 'updated_at'])::text FROM retention.policies p
$$;
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
CREATE EXTENSION pg_retention;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.shape();

SELECT 'only after upgrade' AS side, * FROM (SELECT * FROM upgraded EXCEPT SELECT * FROM fresh) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM fresh EXCEPT SELECT * FROM upgraded) f
ORDER BY 1, 2, 3;
SELECT count(*) > 20 AS compared_something FROM fresh;
DROP EXTENSION pg_retention;

-- From 0.2.0, as its README left an installation: an operator allowed to write the history,
-- and a policy on a catalog, which 0.2.0 accepted (this library's trigger refuses it, so it is
-- inserted past the trigger). The upgrade disables the policy and takes the rights back.
CREATE EXTENSION pg_retention VERSION '0.2.0';
CREATE ROLE upgrade_operator;
GRANT USAGE ON SCHEMA retention TO upgrade_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON retention.runs TO upgrade_operator;
ALTER TABLE retention.policies DISABLE TRIGGER policies_validate;
INSERT INTO retention.policies (name, table_schema, table_name, time_column, rule, retain)
VALUES ('roles', 'pg_catalog', 'pg_authid', 'rolvaliduntil', 'older_than', interval '1 day');
ALTER TABLE retention.policies ENABLE TRIGGER policies_validate;
ALTER EXTENSION pg_retention UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_retention';
SELECT name, enabled FROM retention.policies ORDER BY name;
SELECT has_table_privilege('upgrade_operator', 'retention.runs', 'SELECT') AS can_read,
       has_table_privilege('upgrade_operator', 'retention.runs', 'INSERT') AS can_insert,
       has_table_privilege('upgrade_operator', 'retention.runs', 'UPDATE') AS can_update,
       has_table_privilege('upgrade_operator', 'retention.runs', 'DELETE') AS can_delete;
REVOKE ALL ON retention.runs FROM upgrade_operator;
REVOKE ALL ON SCHEMA retention FROM upgrade_operator;
CREATE TEMP TABLE from_020 AS SELECT * FROM pg_temp.shape() WHERE kind <> 'policy';
DROP EXTENSION pg_retention;
DROP ROLE upgrade_operator;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.2.0' AS side, * FROM (SELECT * FROM from_020 EXCEPT SELECT * FROM pg_temp.shape() WHERE kind <> 'policy') u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() WHERE kind <> 'policy' EXCEPT SELECT * FROM from_020) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

-- From 0.3.0: the same as a fresh install, policies included.
CREATE EXTENSION pg_retention VERSION '0.3.0';
-- Before the update, every entry point says what to run (this library is newer than the SQL).
\set VERBOSITY default
SELECT retention.preview('expired_traces');
SELECT cleanup_expired_traces();
CALL retention.run_batched('expired_traces');
UPDATE retention.policies SET batch_size = 5 WHERE name = 'expired_traces';
\set VERBOSITY terse
-- The update remakes add_policy and alter_policy (a new argument): a DBA's grant survives.
DROP ROLE IF EXISTS upgrade_admin;
CREATE ROLE upgrade_admin;
GRANT EXECUTE ON FUNCTION retention.add_policy TO upgrade_admin;
ALTER EXTENSION pg_retention UPDATE;
SELECT has_function_privilege('upgrade_admin', 'retention.add_policy'::regproc, 'EXECUTE') AS admin_keeps_add_policy,
       has_function_privilege('upgrade_admin', 'retention.alter_policy'::regproc, 'EXECUTE') AS admin_got_alter_policy;
REVOKE EXECUTE ON FUNCTION retention.add_policy FROM upgrade_admin;
-- A grant the update made again is recorded as an initial privilege, which from 17 holds the
-- role ("initial privileges for function"); DROP OWNED BY removes it on every major.
DROP OWNED BY upgrade_admin;
DROP ROLE upgrade_admin;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_retention') AS at_default_version
  FROM pg_extension WHERE extname = 'pg_retention';
CREATE TEMP TABLE from_030 AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.3.0' AS side, * FROM (SELECT * FROM from_030 EXCEPT SELECT * FROM pg_temp.shape()) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM from_030) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

-- From 0.4.0: the same as a fresh install, policies included; a policy written under 0.4.0
-- gets expired_partitions 'drop', and a DBA's grant on add_policy survives its remaking.
CREATE EXTENSION pg_retention VERSION '0.4.0';
CREATE ROLE upgrade_admin;
GRANT EXECUTE ON FUNCTION retention.add_policy TO upgrade_admin;
ALTER EXTENSION pg_retention UPDATE;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_retention') AS at_default_version
  FROM pg_extension WHERE extname = 'pg_retention';
SELECT has_function_privilege('upgrade_admin', 'retention.add_policy'::regproc, 'EXECUTE') AS admin_keeps_add_policy;
REVOKE EXECUTE ON FUNCTION retention.add_policy FROM upgrade_admin;
-- A grant the update made again is recorded as an initial privilege, which from 17 holds the
-- role ("initial privileges for function"); DROP OWNED BY removes it on every major.
DROP OWNED BY upgrade_admin;
DROP ROLE upgrade_admin;
SELECT name, expired_partitions, archive_schema FROM retention.policies ORDER BY name;
CREATE TEMP TABLE from_040 AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.4.0' AS side, * FROM (SELECT * FROM from_040 EXCEPT SELECT * FROM pg_temp.shape()) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM from_040) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

-- From 0.5.0: the same as a fresh install, policies included; its run history gets no ledger
-- entries (the ledger starts with the first run after the update), and runs go on.
CREATE EXTENSION pg_retention VERSION '0.5.0';
SELECT retention.run_policy('old_agent_usage') IS NULL AS refused_before_update;
-- add_policy and alter_policy are made again (missing_sid): a DBA's grant survives.
CREATE ROLE upgrade_admin;
GRANT EXECUTE ON FUNCTION retention.alter_policy TO upgrade_admin;
ALTER EXTENSION pg_retention UPDATE;
SELECT has_function_privilege('upgrade_admin', 'retention.alter_policy'::regproc, 'EXECUTE') AS admin_keeps_alter_policy;
REVOKE EXECUTE ON FUNCTION retention.alter_policy FROM upgrade_admin;
-- A grant the update made again is recorded as an initial privilege, which from 17 holds the
-- role ("initial privileges for function"); DROP OWNED BY removes it on every major.
DROP OWNED BY upgrade_admin;
DROP ROLE upgrade_admin;
SELECT name, missing_sid FROM retention.policies ORDER BY name;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_retention') AS at_default_version
  FROM pg_extension WHERE extname = 'pg_retention';
SELECT count(*) AS ledger_entries, retention.verify_ledger() IS NULL AS intact FROM retention.ledger;
CREATE TEMP TABLE from_050 AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.5.0' AS side, * FROM (SELECT * FROM from_050 EXCEPT SELECT * FROM pg_temp.shape()) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM from_050) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

-- From 0.6.0: holds are bound to the table their policy names (a hold whose table is gone keeps
-- none), and keep their text; the same as a fresh install after.
CREATE EXTENSION pg_retention VERSION '0.6.0';
CREATE TABLE upgrade_held (id int, at timestamptz);
-- (0.6.0's validation trigger is this library's, which refuses 0.6.0's SQL: the row goes in as a restore would.)
SET session_replication_role = replica;
INSERT INTO retention.policies (name, table_name, time_column, rule, retain) VALUES ('upgrade_held', 'upgrade_held', 'at', 'older_than', interval '1 day');
RESET session_replication_role;
INSERT INTO retention.holds (policy, name, condition, reason, created_by) VALUES ('upgrade_held', 'kept', 'id = 1', 'r', 'dba'),
                                                                                 ('old_recordings', 'no_table', 'true', 'r', 'dba');
INSERT INTO upgrade_held VALUES (1, now() - interval '3 days'), (2, now() - interval '3 days');
ALTER EXTENSION pg_retention UPDATE;
SELECT name, target, condition, expression FROM retention.holds ORDER BY id;
SELECT (retention.run_policy('upgrade_held'))->>'rows_deleted' AS rows_deleted;
SELECT id FROM upgrade_held;
SELECT retention.drop_policy('upgrade_held');
DROP TABLE upgrade_held;
CREATE TEMP TABLE from_060 AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.6.0' AS side, * FROM (SELECT * FROM from_060 EXCEPT SELECT * FROM pg_temp.shape()) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM from_060) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

-- From 0.7.0: policies get account_column (NULL: the credentials' own account, as before);
-- add_policy and alter_policy take it and keep a DBA's grant; the same as a fresh install after.
CREATE EXTENSION pg_retention VERSION '0.7.0';
CREATE ROLE upgrade_admin_080;
GRANT EXECUTE ON FUNCTION retention.add_policy TO upgrade_admin_080;
ALTER EXTENSION pg_retention UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_retention';
SELECT name, account_column FROM retention.policies WHERE action = 'twilio_recording';
SELECT has_function_privilege('upgrade_admin_080', 'retention.add_policy'::regproc, 'EXECUTE') AS grant_kept;
REVOKE EXECUTE ON FUNCTION retention.add_policy FROM upgrade_admin_080;
CREATE TEMP TABLE from_070 AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
DROP OWNED BY upgrade_admin_080;
DROP ROLE upgrade_admin_080;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.7.0' AS side, * FROM (SELECT * FROM from_070 EXCEPT SELECT * FROM pg_temp.shape()) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM from_070) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

-- From 0.8.0: policies get transcriptions (off, as before) and stores: the default store
-- 'twilio' (the settings), which every policy names; each outcome says which external object
-- it is (every earlier one a recording); add_policy and alter_policy take the new options and
-- keep a DBA's grant; the same as a fresh install after.
CREATE EXTENSION pg_retention VERSION '0.8.0';
CREATE ROLE upgrade_admin_090;
GRANT EXECUTE ON FUNCTION retention.alter_policy TO upgrade_admin_090;
INSERT INTO retention.recording_outcomes (run_id, policy, key, sid, outcome, http_status)
VALUES (-1, 'old_recordings', '1', 'RE00000000000000000000000000000001', 'deleted', 204);
ALTER EXTENSION pg_retention UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_retention';
SELECT name, transcriptions, twilio_store, s3_store FROM retention.policies WHERE action = 'twilio_recording';
SELECT name, kind FROM retention.stores;
SELECT key, object, outcome FROM retention.recording_outcomes WHERE run_id = -1;
SELECT has_function_privilege('upgrade_admin_090', 'retention.alter_policy'::regproc, 'EXECUTE') AS grant_kept;
REVOKE EXECUTE ON FUNCTION retention.alter_policy FROM upgrade_admin_090;
DELETE FROM retention.recording_outcomes WHERE run_id = -1;
CREATE TEMP TABLE from_080 AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
DROP OWNED BY upgrade_admin_090;
DROP ROLE upgrade_admin_090;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.8.0' AS side, * FROM (SELECT * FROM from_080 EXCEPT SELECT * FROM pg_temp.shape()) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM from_080) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

-- From 0.9.0: policies get hide_expired (off, as before), retention.hidden_tables and
-- retention_rls.run_sees_all() (its schema usable by all); add_policy and alter_policy take it and keep a DBA's grant; the same
-- as a fresh install after.
CREATE EXTENSION pg_retention VERSION '0.9.0';
CREATE ROLE upgrade_admin_0100;
GRANT EXECUTE ON FUNCTION retention.add_policy TO upgrade_admin_0100;
ALTER EXTENSION pg_retention UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_retention';
SELECT name, hide_expired FROM retention.policies ORDER BY name;
SELECT has_function_privilege('upgrade_admin_0100', 'retention.add_policy'::regproc, 'EXECUTE') AS grant_kept,
       has_function_privilege('upgrade_admin_0100', 'retention_rls.run_sees_all()', 'EXECUTE')
       AND has_schema_privilege('upgrade_admin_0100', 'retention_rls', 'USAGE') AS anyone_may_ask;
REVOKE EXECUTE ON FUNCTION retention.add_policy FROM upgrade_admin_0100;
CREATE TEMP TABLE from_090 AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
DROP OWNED BY upgrade_admin_0100;
DROP ROLE upgrade_admin_0100;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.9.0' AS side, * FROM (SELECT * FROM from_090 EXCEPT SELECT * FROM pg_temp.shape()) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM from_090) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

-- From 0.10.0: retention.progress over retention.progress_rows(), neither for PUBLIC; the same
-- as a fresh install after.
CREATE EXTENSION pg_retention VERSION '0.10.0';
ALTER EXTENSION pg_retention UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_retention';
SELECT has_table_privilege('public', 'retention.progress', 'SELECT') AS public_reads_progress,
       has_function_privilege('public', 'retention.progress_rows()', 'EXECUTE') AS public_calls_progress_rows;
CREATE TEMP TABLE from_0100 AS SELECT * FROM pg_temp.shape();
DROP EXTENSION pg_retention;
CREATE EXTENSION pg_retention;
SELECT 'only after upgrade from 0.10.0' AS side, * FROM (SELECT * FROM from_0100 EXCEPT SELECT * FROM pg_temp.shape()) u
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM from_0100) f
ORDER BY 1, 2, 3;
DROP EXTENSION pg_retention;

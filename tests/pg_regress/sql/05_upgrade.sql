-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions CASCADE;
RESET client_min_messages;
-- An upgrade from 0.1.0 gives what a fresh install of this version gives.
-- (tests/run.sh installs tests/upgrade/pg_retention--0.1.0.sql, the 0.1.0 install script.)
CREATE EXTENSION pg_retention VERSION '0.1.0';
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

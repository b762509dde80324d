-- pg_retention 0.3.0 -> 0.4.0
-- Runs that stay right under faults. The status view tells a live run from a dead one by the
-- policy's lock, which a live batched run holds from its first commit to its last. Policies
-- get a pace limit (max_rows_per_second), which add_policy and alter_policy take: the two
-- are made again with it, keeping the EXECUTE rights a DBA granted on them. pg_dump now
-- carries the policies and the history (pg_extension_config_dump), and a restore keeps the
-- presets as the source had them (removed ones stay removed).

ALTER TABLE retention.policies ADD COLUMN max_rows_per_second integer,
    ADD CONSTRAINT policies_max_rows_per_second_check CHECK (max_rows_per_second > 0);

CREATE TEMP TABLE pg_retention_kept_grants AS
SELECT p.proname::text AS routine, a.grantee, a.privilege_type, a.is_grantable
  FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
 WHERE p.pronamespace = 'retention'::pg_catalog.regnamespace AND p.proname IN ('add_policy', 'alter_policy')
   AND a.grantee <> p.proowner;
DROP FUNCTION retention.add_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text);
DROP FUNCTION retention.alter_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text);

CREATE FUNCTION retention.add_policy(
    policy_name        text,
    table_name         text,
    time_column        text,
    rule               text,
    retain             interval DEFAULT NULL,
    action             text DEFAULT 'delete',
    batch_size         integer DEFAULT 10000,
    table_schema       text DEFAULT 'public',
    soft_delete_column text DEFAULT NULL,
    reason_column      text DEFAULT NULL,
    deletion_reason    text DEFAULT 'retention_policy',
    enabled            boolean DEFAULT true,
    sid_column         text DEFAULT NULL,
    id_column          text DEFAULT NULL,
    max_rows_per_second integer DEFAULT NULL
) RETURNS retention.policies
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO retention.policies (name, table_schema, table_name, time_column, rule, retain, action,
                                    soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
                                    sid_column, id_column, max_rows_per_second)
    VALUES (policy_name, table_schema, table_name, time_column, rule, retain, action,
            soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
            sid_column, id_column, max_rows_per_second)
    RETURNING *;
$$;

CREATE FUNCTION retention.alter_policy(
    policy_name        text,
    table_name         text DEFAULT NULL,
    time_column        text DEFAULT NULL,
    rule               text DEFAULT NULL,
    retain             interval DEFAULT NULL,
    action             text DEFAULT NULL,
    batch_size         integer DEFAULT NULL,
    table_schema       text DEFAULT NULL,
    soft_delete_column text DEFAULT NULL,
    reason_column      text DEFAULT NULL,
    deletion_reason    text DEFAULT NULL,
    enabled            boolean DEFAULT NULL,
    sid_column         text DEFAULT NULL,
    id_column          text DEFAULT NULL,
    max_rows_per_second integer DEFAULT NULL
) RETURNS retention.policies
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    changed retention.policies;
BEGIN
    UPDATE retention.policies p SET
        table_schema       = coalesce(alter_policy.table_schema, p.table_schema),
        table_name         = coalesce(alter_policy.table_name, p.table_name),
        time_column        = coalesce(alter_policy.time_column, p.time_column),
        rule               = coalesce(alter_policy.rule, p.rule),
        retain             = CASE WHEN alter_policy.rule = 'expires_at' THEN NULL
                                  ELSE coalesce(alter_policy.retain, p.retain) END,
        action             = coalesce(alter_policy.action, p.action),
        soft_delete_column = coalesce(alter_policy.soft_delete_column, p.soft_delete_column),
        reason_column      = coalesce(alter_policy.reason_column, p.reason_column),
        deletion_reason    = coalesce(alter_policy.deletion_reason, p.deletion_reason),
        batch_size         = coalesce(alter_policy.batch_size, p.batch_size),
        enabled            = coalesce(alter_policy.enabled, p.enabled),
        sid_column         = coalesce(alter_policy.sid_column, p.sid_column),
        id_column          = coalesce(alter_policy.id_column, p.id_column),
        max_rows_per_second = CASE WHEN alter_policy.max_rows_per_second = 0 THEN NULL
                                   ELSE coalesce(alter_policy.max_rows_per_second, p.max_rows_per_second) END
    WHERE p.name = policy_name
    RETURNING * INTO changed;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'retention policy "%" does not exist', policy_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM retention.policies lists the policies.';
    END IF;
    RETURN changed;
END
$$;

REVOKE EXECUTE ON FUNCTION retention.add_policy, retention.alter_policy FROM PUBLIC;
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT * FROM pg_temp.pg_retention_kept_grants LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.%I TO %s%s', g.routine,
            CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::pg_catalog.regrole::text END,
            CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;
DROP TABLE pg_temp.pg_retention_kept_grants;

CREATE OR REPLACE VIEW retention.status AS
SELECT p.name AS policy,
       p.enabled,
       p.action,
       pg_catalog.format('%I.%I', p.table_schema, p.table_name) AS target,
       last.started_at AS last_run_at,
       last.trigger AS last_trigger,
       CASE WHEN last.status = 'running'
                 AND NOT EXISTS (SELECT FROM pg_catalog.pg_locks l
                                  WHERE l.locktype = 'object' AND l.granted AND l.pid = last.pid
                                    AND l.classid = 'retention.policies'::pg_catalog.regclass AND l.objid = p.id::pg_catalog.oid
                                    AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                                       WHERE d.datname = pg_catalog.current_database()))
            THEN 'interrupted' ELSE last.status END AS last_status,
       last.rows_deleted AS last_rows,
       last.error AS last_error,
       CASE WHEN p.enabled THEN retention.next_worker_run() END AS next_worker_run,
       (backlog.now ->> 'rows')::bigint AS backlog_rows,
       (backlog.now ->> 'oldest_age')::interval AS oldest_backlog_age,
       backlog.now ->> 'error' AS backlog_error
  FROM retention.policies p
  LEFT JOIN LATERAL (SELECT r.started_at, r.trigger, r.status, r.rows_deleted, r.error, r.pid
                       FROM retention.runs r WHERE r.policy = p.name
                      ORDER BY r.started_at DESC LIMIT 1) last ON true
  CROSS JOIN LATERAL (SELECT retention.backlog(p.name) AS now) backlog;

-- Presets removed (or renamed) here, so that a restore, whose CREATE EXTENSION makes every
-- preset again, removes them again. Written by the triggers on retention.policies.
CREATE TABLE retention.removed_presets (
    name       text PRIMARY KEY,
    removed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE retention.removed_presets IS 'Presets removed from retention.policies; carried by pg_dump so that a restore does not bring them back';

-- pg_dump and pg_restore (and pg_dumpall) carry the policies, the history and the removed
-- presets, with their identity sequences; the worker's state stays with its server.
SELECT pg_catalog.pg_extension_config_dump('retention.policies', '');
SELECT pg_catalog.pg_extension_config_dump('retention.policies_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retention.runs', '');
SELECT pg_catalog.pg_extension_config_dump('retention.runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retention.removed_presets', '');

-- The presets' memory for dump and restore (see src/policy/restore.rs). A preset removed or
-- renamed by a statement (not by a restore replacing a pristine preset, which runs inside the
-- validation trigger) is remembered; a policy given a preset's name again is no longer
-- removed. A remembered removal being restored removes the pristine preset again. SECURITY
-- DEFINER: whoever may write the policies needs no right on retention.removed_presets.
CREATE FUNCTION retention.policies_remember_presets() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') AND pg_catalog.pg_trigger_depth() = 1
       AND OLD.name IN ('expired_traces', 'old_agent_usage', 'old_recordings')
       AND (TG_OP = 'DELETE' OR NEW.name <> OLD.name) THEN
        INSERT INTO retention.removed_presets (name) VALUES (OLD.name) ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        DELETE FROM retention.removed_presets r WHERE r.name = NEW.name;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER policies_remember_presets AFTER INSERT OR UPDATE OF name OR DELETE ON retention.policies
    FOR EACH ROW EXECUTE FUNCTION retention.policies_remember_presets();

CREATE FUNCTION retention.removed_presets_apply() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM retention.policies p
     WHERE p.name = NEW.name
       AND p.xmin = (SELECT e.xmin FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_retention');
    RETURN NULL;
END
$$;
CREATE TRIGGER removed_presets_apply AFTER INSERT ON retention.removed_presets
    FOR EACH ROW EXECUTE FUNCTION retention.removed_presets_apply();

REVOKE EXECUTE ON FUNCTION retention.policies_remember_presets(), retention.removed_presets_apply() FROM PUBLIC;
REVOKE ALL ON retention.removed_presets FROM PUBLIC;
-- The presets this database had already removed are remembered from now on.
INSERT INTO retention.removed_presets (name)
SELECT preset FROM pg_catalog.unnest(ARRAY['expired_traces', 'old_agent_usage', 'old_recordings']) AS preset
 WHERE NOT EXISTS (SELECT FROM retention.policies p WHERE p.name = preset);

-- pg_retention: what names the Rust functions, the preset policies, and privileges.

-- The default store, the settings, which every policy names unless told otherwise. Inserted
-- before its trigger, which keeps it as it is.
INSERT INTO retention.stores (name, kind) VALUES ('twilio', 'twilio');

-- The presets of the product contract. Inserted before the validation trigger exists,
-- because the application tables may not exist yet; a run of a preset checks its table.
INSERT INTO retention.policies (name, table_schema, table_name, time_column, rule, retain, action, batch_size)
VALUES ('expired_traces', 'public', 'ConversationTrace', 'expiresAt', 'expires_at', NULL, 'delete', 10000),
       ('old_agent_usage', 'public', 'AgentUsage', 'timestamp', 'older_than', interval '90 days', 'delete', 10000);
INSERT INTO retention.policies (name, table_schema, table_name, time_column, rule, retain, action,
                                soft_delete_column, reason_column, deletion_reason, sid_column, id_column, batch_size)
VALUES ('old_recordings', 'public', 'voice_recordings', 'created_at', 'older_than', interval '90 days', 'twilio_recording',
        'deleted_at', 'deletion_reason', 'retention_policy', 'twilio_recording_sid', 'id', 1000);

-- A trigger function cannot take a SET clause from pgrx; pin its search_path here.
ALTER FUNCTION retention.policies_validate() SET search_path = pg_catalog, pg_temp;
CREATE TRIGGER policies_validate BEFORE INSERT OR UPDATE OR DELETE ON retention.policies
    FOR EACH ROW EXECUTE FUNCTION retention.policies_validate();

ALTER FUNCTION retention.stores_validate() SET search_path = pg_catalog, pg_temp;
CREATE TRIGGER stores_validate BEFORE INSERT OR UPDATE OR DELETE ON retention.stores
    FOR EACH ROW EXECUTE FUNCTION retention.stores_validate();

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
    max_rows_per_second integer DEFAULT NULL,
    expired_partitions text DEFAULT 'drop',
    archive_schema     text DEFAULT NULL,
    missing_sid        text DEFAULT 'skip',
    account_column     text DEFAULT NULL,
    transcriptions     boolean DEFAULT false,
    twilio_store       text DEFAULT 'twilio',
    s3_store           text DEFAULT NULL,
    s3_key_columns     text[] DEFAULT NULL,
    s3_versions        text DEFAULT 'all',
    hide_expired       boolean DEFAULT false
) RETURNS retention.policies
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO retention.policies (name, table_schema, table_name, time_column, rule, retain, action,
                                    soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
                                    sid_column, id_column, max_rows_per_second, expired_partitions, archive_schema, missing_sid,
                                    account_column, transcriptions, twilio_store, s3_store, s3_key_columns, s3_versions, hide_expired)
    VALUES (policy_name, table_schema, table_name, time_column, rule, retain, action,
            soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
            sid_column, id_column, max_rows_per_second, expired_partitions, archive_schema, missing_sid,
            account_column, transcriptions, twilio_store, s3_store, s3_key_columns, s3_versions, hide_expired)
    RETURNING *;
$$;

-- Arguments left NULL keep their value; switching to rule expires_at clears retain;
-- max_rows_per_second => 0 lifts the pace limit; archive_schema => '', account_column => ''
-- and s3_store => '' (with its key columns) clear them.
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
    max_rows_per_second integer DEFAULT NULL,
    expired_partitions text DEFAULT NULL,
    archive_schema     text DEFAULT NULL,
    missing_sid        text DEFAULT NULL,
    account_column     text DEFAULT NULL,
    transcriptions     boolean DEFAULT NULL,
    twilio_store       text DEFAULT NULL,
    s3_store           text DEFAULT NULL,
    s3_key_columns     text[] DEFAULT NULL,
    s3_versions        text DEFAULT NULL,
    hide_expired       boolean DEFAULT NULL
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
                                   ELSE coalesce(alter_policy.max_rows_per_second, p.max_rows_per_second) END,
        expired_partitions = coalesce(alter_policy.expired_partitions, p.expired_partitions),
        archive_schema     = CASE WHEN alter_policy.archive_schema = '' THEN NULL
                                  ELSE coalesce(alter_policy.archive_schema, p.archive_schema) END,
        missing_sid        = coalesce(alter_policy.missing_sid, p.missing_sid),
        account_column     = CASE WHEN alter_policy.account_column = '' THEN NULL
                                  ELSE coalesce(alter_policy.account_column, p.account_column) END,
        transcriptions     = coalesce(alter_policy.transcriptions, p.transcriptions),
        twilio_store       = coalesce(alter_policy.twilio_store, p.twilio_store),
        s3_store           = CASE WHEN alter_policy.s3_store = '' THEN NULL
                                  ELSE coalesce(alter_policy.s3_store, p.s3_store) END,
        s3_key_columns     = CASE WHEN alter_policy.s3_store = '' THEN NULL
                                  ELSE coalesce(alter_policy.s3_key_columns, p.s3_key_columns) END,
        s3_versions        = coalesce(alter_policy.s3_versions, p.s3_versions),
        hide_expired       = coalesce(alter_policy.hide_expired, p.hide_expired)
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

CREATE FUNCTION retention.drop_policy(policy_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM retention.policies p WHERE p.name = policy_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'retention policy "%" does not exist', policy_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM retention.policies lists the policies.';
    END IF;
END
$$;

-- Runs a policy committing after every batch (and, for recordings, before the Twilio calls
-- of each batch). Written in Rust; a procedure with transaction control cannot carry a SET
-- clause, so its SQL schema-qualifies every name instead of pinning search_path.
CREATE PROCEDURE retention.run_batched(policy_name text, retain interval DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_retention_run_batched';
COMMENT ON PROCEDURE retention.run_batched(text, interval) IS
    'Runs a retention policy, committing after each batch; use with CALL';

-- One row per policy: is retention keeping up? A batched run holds its policy's lock from its
-- first commit to its last, so a `running` row whose backend does not hold that lock is no live
-- run (a crash, a cancel that ended the session's transaction): it shows as `interrupted`, as
-- the next run of its policy, or the worker at its start, records it.
CREATE VIEW retention.status AS
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
COMMENT ON VIEW retention.status IS 'One row per policy: last run, next worker run, and the backlog past the cutoff now';

-- One row per run in progress in this database, from shared memory (src/progress): what
-- pg_stat_progress_vacuum is to VACUUM. Needs pg_retention in shared_preload_libraries.
CREATE VIEW retention.progress AS
SELECT s.pid,
       s.run_id,
       p.name AS policy,
       NULLIF(s.relid, 0::pg_catalog.oid)::pg_catalog.regclass AS "table",
       s.phase,
       s.rows_done,
       s.rows_estimated,
       s.batches,
       s.requests_in_flight,
       s.started_at,
       pg_catalog.make_interval(secs => pg_catalog.round(s.seconds_left::pg_catalog.numeric, 1)::pg_catalog.float8) AS time_left
  FROM retention.progress_rows() s
  LEFT JOIN retention.policies p ON p.id = s.policy_id;
COMMENT ON VIEW retention.progress IS 'One row per run in progress in this database: phase, rows done and estimated, time left';

-- Nothing runs for PUBLIC: docs/security.md lists what to grant to an operator role.
REVOKE ALL ON ALL TABLES IN SCHEMA retention FROM PUBLIC; -- the view too
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA retention FROM PUBLIC;
-- Called by hide_expired's row-level security in every query on a hidden table, by any role;
-- its schema's USAGE is checked against the table's owner when the policies are made.
GRANT USAGE ON SCHEMA retention_rls TO PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.cleanup_expired_traces() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.cleanup_old_agent_usage(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.cleanup_old_recordings(integer) FROM PUBLIC;

-- pg_retention 0.9.0 -> 0.10.0
-- hide_expired (issue 25): a policy may hide the rows it would delete from ordinary queries,
-- from the moment they expire, by row-level security on its table (src/policy/hiding.rs);
-- retention_rls.run_sees_all() lets the run see them. add_policy and alter_policy take
-- hide_expired: the two are made again with it, keeping the EXECUTE rights a DBA granted.

ALTER TABLE retention.policies ADD COLUMN hide_expired boolean NOT NULL DEFAULT false;

-- What each table had before a policy's hide_expired turned row-level security on there, to
-- put back when it is turned off (src/policy/hiding.rs). Written by the extension only.
CREATE TABLE retention.hidden_tables (
    policy_id        integer NOT NULL,
    relid            regclass NOT NULL, -- the policy's table, or a member of its tree (by name in a dump)
    had_rls          boolean NOT NULL,
    had_force        boolean NOT NULL,
    PRIMARY KEY (policy_id, relid)
);
COMMENT ON TABLE retention.hidden_tables IS 'Row-level security a policy''s hide_expired turned on, and what the table had before';
REVOKE ALL ON retention.hidden_tables FROM PUBLIC;
-- Dumped: a restore brings back the table's policies and flags (pg_dump's own), and this.
SELECT pg_catalog.pg_extension_config_dump('retention.hidden_tables', '');
-- The one function hiding policies call, in a schema any role may use (its USAGE is checked
-- against the table's owner, usually the application's role, when a policy is made).
CREATE SCHEMA retention_rls;
CREATE FUNCTION retention_rls."run_sees_all"() RETURNS bool STABLE PARALLEL SAFE STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'run_sees_all_wrapper';
GRANT USAGE ON SCHEMA retention_rls TO PUBLIC;

CREATE TEMP TABLE pg_retention_kept_grants AS
SELECT p.proname::text AS routine, a.grantee, a.privilege_type, a.is_grantable
  FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
 WHERE p.pronamespace = 'retention'::pg_catalog.regnamespace AND p.proname IN ('add_policy', 'alter_policy')
   AND a.grantee <> p.proowner;
DROP FUNCTION retention.add_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text, integer, text, text, text, text, boolean, text, text, text[], text);
DROP FUNCTION retention.alter_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text, integer, text, text, text, text, boolean, text, text, text[], text);

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

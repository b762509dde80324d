-- pg_retention 0.4.0 -> 0.5.0
-- Partition-aware retention: a delete policy on a partitioned table removes the partitions
-- whose bounds prove every row past the cutoff. Policies get expired_partitions (drop, detach,
-- rows) and archive_schema, which add_policy and alter_policy take: the two are made again
-- with them, keeping the EXECUTE rights a DBA granted on them. retention.detached_partitions
-- holds what a batched run detached until the dropper drops it.

ALTER TABLE retention.policies ADD COLUMN expired_partitions text NOT NULL DEFAULT 'drop',
    ADD COLUMN archive_schema text,
    ADD CONSTRAINT policies_expired_partitions_check CHECK (expired_partitions IN ('drop', 'detach', 'rows'));

-- Partitions a batched run detached to drop, until the dropper (a short-lived background
-- worker started after the run's commit) or the next run drops them. Written by the extension
-- only (see src/engine/partitions/dropper.rs); normally empty within seconds.
CREATE TABLE retention.detached_partitions (
    relid       oid PRIMARY KEY,
    name        text NOT NULL, -- schema-qualified, quoted: dropped only while it still has this name
    policy      text NOT NULL,
    ready       boolean NOT NULL DEFAULT false, -- its rows counted by its run: the dropper may drop it
    detached_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE retention.detached_partitions IS 'Partitions detached by a batched run, to be dropped by the dropper';
REVOKE ALL ON retention.detached_partitions FROM PUBLIC;

CREATE TEMP TABLE pg_retention_kept_grants AS
SELECT p.proname::text AS routine, a.grantee, a.privilege_type, a.is_grantable
  FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
 WHERE p.pronamespace = 'retention'::pg_catalog.regnamespace AND p.proname IN ('add_policy', 'alter_policy')
   AND a.grantee <> p.proowner;
DROP FUNCTION retention.add_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text, integer);
DROP FUNCTION retention.alter_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text, integer);

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
    archive_schema     text DEFAULT NULL
) RETURNS retention.policies
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO retention.policies (name, table_schema, table_name, time_column, rule, retain, action,
                                    soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
                                    sid_column, id_column, max_rows_per_second, expired_partitions, archive_schema)
    VALUES (policy_name, table_schema, table_name, time_column, rule, retain, action,
            soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
            sid_column, id_column, max_rows_per_second, expired_partitions, archive_schema)
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
    max_rows_per_second integer DEFAULT NULL,
    expired_partitions text DEFAULT NULL,
    archive_schema     text DEFAULT NULL
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
                                  ELSE coalesce(alter_policy.archive_schema, p.archive_schema) END
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

-- pg_retention 0.8.0 -> 0.9.0
-- Every copy of a recording (issue 24), after subaccounts in 0.8.0:
-- * transcriptions: a recordings policy may delete each recording's transcriptions at Twilio
--   (listed under the recording, each deleted) before the recording (src/twilio/transcriptions.rs);
-- * stores: Twilio accounts and S3 buckets named once by a superuser in retention.stores; the
--   store 'twilio' is the pg_retention.twilio_* settings, and every policy names it unless told
--   otherwise, so policies work on unchanged. A policy may name an S3 store and the columns
--   holding each row's object keys: every object (every version, on a bucket that keeps them)
--   is deleted before the row's Twilio calls (src/s3/);
-- * recording_outcomes gets a row per external object, and says which it is, its store and version.
-- add_policy and alter_policy take the new options: the two are made again, keeping the
-- EXECUTE rights a DBA granted.

ALTER TABLE retention.policies ADD COLUMN transcriptions boolean NOT NULL DEFAULT false,
                               ADD COLUMN twilio_store text NOT NULL DEFAULT 'twilio',
                               ADD COLUMN s3_store text,
                               ADD COLUMN s3_key_columns text[],
                               ADD COLUMN s3_versions text NOT NULL DEFAULT 'all',
                               ADD CONSTRAINT policies_s3_versions_check CHECK (s3_versions IN ('all', 'markers'));
-- Rows written before 0.9.0 are all recordings.
ALTER TABLE retention.recording_outcomes ADD COLUMN object text NOT NULL DEFAULT 'recording' CHECK (object IN ('recording', 'transcription', 's3_object')),
                                         ADD COLUMN store text,
                                         ADD COLUMN version text;
COMMENT ON TABLE retention.recording_outcomes IS 'What each recordings run did with each external object of a row (its Twilio recording, its transcriptions, its S3 objects and their versions): deleted, already_gone, failed (with the HTTP status and reason), skipped; and under which Twilio account or store';

-- The external stores recordings policies delete from (src/store.rs), each named once by a
-- superuser: Twilio accounts and S3 buckets. The store 'twilio' is the pg_retention.twilio_*
-- settings. Secrets stay in files; a store names the file, never its content.
CREATE TABLE retention.stores (
    name        text PRIMARY KEY,
    kind        text NOT NULL,
    endpoint    text, -- twilio: base URL (NULL: the setting); s3: https://s3.REGION.amazonaws.com, or a loopback server
    region      text, -- s3
    bucket      text, -- s3
    addressing  text NOT NULL DEFAULT 'path', -- s3: https://host/bucket/key or https://bucket.host/key
    account_sid text, -- twilio (NULL: the setting)
    api_key_sid text, -- twilio (NULL: the setting)
    secret_file text, -- twilio: the auth token or API key secret (NULL: the setting); s3: AWS shared-credentials format
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT stores_kind_check CHECK (kind IN ('twilio', 's3')),
    CONSTRAINT stores_addressing_check CHECK (addressing IN ('path', 'virtual'))
);
COMMENT ON TABLE retention.stores IS 'External stores recordings policies delete from, named once by a superuser; the store twilio is the pg_retention.twilio_* settings';
SELECT pg_catalog.pg_extension_config_dump('retention.stores', 'WHERE name <> ''twilio''');
REVOKE ALL ON retention.stores FROM PUBLIC;
INSERT INTO retention.stores (name, kind) VALUES ('twilio', 'twilio');
CREATE FUNCTION retention."stores_validate"() RETURNS TRIGGER LANGUAGE c AS 'MODULE_PATHNAME', 'stores_validate_wrapper';
ALTER FUNCTION retention.stores_validate() SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION retention.stores_validate() FROM PUBLIC;
CREATE TRIGGER stores_validate BEFORE INSERT OR UPDATE OR DELETE ON retention.stores
    FOR EACH ROW EXECUTE FUNCTION retention.stores_validate();
-- Foreign keys also order pg_dump's data: the stores are restored before the policies naming them.
ALTER TABLE retention.policies
    ADD CONSTRAINT policies_twilio_store_fkey FOREIGN KEY (twilio_store) REFERENCES retention.stores (name),
    ADD CONSTRAINT policies_s3_store_fkey FOREIGN KEY (s3_store) REFERENCES retention.stores (name);

CREATE TEMP TABLE pg_retention_kept_grants AS
SELECT p.proname::text AS routine, a.grantee, a.privilege_type, a.is_grantable
  FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
 WHERE p.pronamespace = 'retention'::pg_catalog.regnamespace AND p.proname IN ('add_policy', 'alter_policy')
   AND a.grantee <> p.proowner;
DROP FUNCTION retention.add_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text, integer, text, text, text, text);
DROP FUNCTION retention.alter_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text, integer, text, text, text, text);

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
    s3_versions        text DEFAULT 'all'
) RETURNS retention.policies
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO retention.policies (name, table_schema, table_name, time_column, rule, retain, action,
                                    soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
                                    sid_column, id_column, max_rows_per_second, expired_partitions, archive_schema, missing_sid,
                                    account_column, transcriptions, twilio_store, s3_store, s3_key_columns, s3_versions)
    VALUES (policy_name, table_schema, table_name, time_column, rule, retain, action,
            soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
            sid_column, id_column, max_rows_per_second, expired_partitions, archive_schema, missing_sid,
            account_column, transcriptions, twilio_store, s3_store, s3_key_columns, s3_versions)
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
    s3_versions        text DEFAULT NULL
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
        s3_versions        = coalesce(alter_policy.s3_versions, p.s3_versions)
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

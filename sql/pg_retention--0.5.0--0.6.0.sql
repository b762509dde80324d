-- pg_retention 0.5.0 -> 0.6.0
-- Compliance: legal holds (retention.holds, add_hold, release_hold: rows matching an active
-- hold are left alone by every run), per-recording outcomes (retention.recording_outcomes)
-- and a tamper-evident deletion ledger. Every finished run writes an entry in its own
-- transaction (retention.ledger_pending); sealing chains the entries into retention.ledger,
-- each hash = hex(sha256(previous hash || entry::text)). retention.verify_ledger() checks the
-- chain; retention.deletion_certificate(run_id) gives one run's entry and its place in it.
-- Recordings policies get missing_sid: rows without a valid SID skipped (as before) or marked.


-- Recordings policies get missing_sid (skip, mark), which add_policy and alter_policy take:
-- the two are made again with it, keeping the EXECUTE rights a DBA granted on them.
ALTER TABLE retention.policies ADD COLUMN missing_sid text NOT NULL DEFAULT 'skip',
    ADD CONSTRAINT policies_missing_sid_check CHECK (missing_sid IN ('skip', 'mark'));

CREATE TEMP TABLE pg_retention_kept_grants AS
SELECT p.proname::text AS routine, a.grantee, a.privilege_type, a.is_grantable
  FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
 WHERE p.pronamespace = 'retention'::pg_catalog.regnamespace AND p.proname IN ('add_policy', 'alter_policy')
   AND a.grantee <> p.proowner;
DROP FUNCTION retention.add_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text, integer, text, text);
DROP FUNCTION retention.alter_policy(text, text, text, text, interval, text, integer, text, text, text, text, boolean, text, text, integer, text, text);

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
    missing_sid        text DEFAULT 'skip'
) RETURNS retention.policies
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO retention.policies (name, table_schema, table_name, time_column, rule, retain, action,
                                    soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
                                    sid_column, id_column, max_rows_per_second, expired_partitions, archive_schema, missing_sid)
    VALUES (policy_name, table_schema, table_name, time_column, rule, retain, action,
            soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
            sid_column, id_column, max_rows_per_second, expired_partitions, archive_schema, missing_sid)
    RETURNING *;
$$;

-- Arguments left NULL keep their value; switching to rule expires_at clears retain;
-- max_rows_per_second => 0 lifts the pace limit; archive_schema => '' clears it.
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
    missing_sid        text DEFAULT NULL
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
        missing_sid        = coalesce(alter_policy.missing_sid, p.missing_sid)
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

-- One row per recording a run touched (src/history/outcomes.rs): written in the transaction
-- that marks its batch; kept as long as the run history. Written by the extension only.
CREATE TABLE retention.recording_outcomes (
    run_id      bigint NOT NULL,
    policy      text NOT NULL,
    key         text NOT NULL,
    sid         text,
    outcome     text NOT NULL CHECK (outcome IN ('deleted', 'already_gone', 'failed', 'skipped')),
    http_status integer,
    request_id  text,
    reason      text,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX recording_outcomes_run_id_key_idx ON retention.recording_outcomes (run_id, key COLLATE "C");
CREATE INDEX recording_outcomes_at_idx ON retention.recording_outcomes (at);
COMMENT ON TABLE retention.recording_outcomes IS 'What each recordings run did with each recording: deleted, already_gone, failed (with the HTTP status and reason), skipped';
REVOKE ALL ON retention.recording_outcomes FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('retention.recording_outcomes', '');

-- Legal holds (see src/policy/holds.rs): rows of a policy's table matching an active hold's
-- condition are kept by every run. Every hold is kept, released ones too. Written through
-- retention.add_hold() and retention.release_hold() only.
CREATE TABLE retention.holds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    policy      text NOT NULL,
    name        text NOT NULL,
    condition   text NOT NULL,
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    released_by text,
    released_at timestamptz
);
CREATE UNIQUE INDEX holds_active_name_idx ON retention.holds (policy, name) WHERE released_at IS NULL;
COMMENT ON TABLE retention.holds IS 'Legal holds: rows matching an active hold are never touched by a run; every hold is kept';
REVOKE ALL ON retention.holds FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('retention.holds', '');
SELECT pg_catalog.pg_extension_config_dump('retention.holds_id_seq', '');

CREATE FUNCTION retention."add_hold"(
	"policy_name" TEXT,
	"hold_name" TEXT,
	"condition" TEXT,
	"reason" TEXT
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'add_hold_wrapper';

CREATE FUNCTION retention."release_hold"(
	"policy_name" TEXT,
	"hold_name" TEXT
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'release_hold_wrapper';

REVOKE EXECUTE ON FUNCTION retention.add_hold(text, text, text, text), retention.release_hold(text, text) FROM PUBLIC;

CREATE TABLE retention.ledger_pending (
    run_id bigint PRIMARY KEY,
    entry  jsonb NOT NULL
);
COMMENT ON TABLE retention.ledger_pending IS 'Ledger entries of finished runs, waiting to be chained into retention.ledger';
CREATE TABLE retention.ledger (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    entry     jsonb NOT NULL,
    prev_hash text, -- NULL for the first entry ever
    hash      text NOT NULL
);
CREATE INDEX ledger_run_id_idx ON retention.ledger (((entry OPERATOR(pg_catalog.->>) 'run_id')::pg_catalog.int8));
CREATE INDEX ledger_at_idx ON retention.ledger (at);
COMMENT ON TABLE retention.ledger IS 'Tamper-evident record of every finished run, hash-chained; kept pg_retention.ledger_retention_days; check with retention.verify_ledger()';
REVOKE ALL ON retention.ledger_pending, retention.ledger FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('retention.ledger', '');
SELECT pg_catalog.pg_extension_config_dump('retention.ledger_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retention.ledger_pending', '');

CREATE FUNCTION retention."verify_ledger"() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'verify_ledger_wrapper';

CREATE FUNCTION retention."deletion_certificate"(
	"run_id" bigint
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'deletion_certificate_wrapper';

REVOKE EXECUTE ON FUNCTION retention.verify_ledger(), retention.deletion_certificate(bigint) FROM PUBLIC;

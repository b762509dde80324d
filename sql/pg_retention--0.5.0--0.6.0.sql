-- pg_retention 0.5.0 -> 0.6.0
-- Compliance: legal holds (retention.holds, add_hold, release_hold: rows matching an active
-- hold are left alone by every run), per-recording outcomes (retention.recording_outcomes)
-- and a tamper-evident deletion ledger. Every finished run writes an entry in its own
-- transaction (retention.ledger_pending); sealing chains the entries into retention.ledger,
-- each hash = hex(sha256(previous hash || entry::text)). retention.verify_ledger() checks the
-- chain; retention.deletion_certificate(run_id) gives one run's entry and its place in it.

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
CREATE INDEX recording_outcomes_run_id_idx ON retention.recording_outcomes (run_id);
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

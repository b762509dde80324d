-- pg_retention 0.5.0 -> 0.6.0
-- Compliance: a tamper-evident deletion ledger. Every finished run writes an entry in its own
-- transaction (retention.ledger_pending); sealing chains the entries into retention.ledger,
-- each hash = hex(sha256(previous hash || entry::text)). retention.verify_ledger() checks the
-- chain; retention.deletion_certificate(run_id) gives one run's entry and its place in it.

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

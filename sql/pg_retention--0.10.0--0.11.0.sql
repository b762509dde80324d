-- pg_retention 0.10.0 -> 0.11.0
-- retention.progress (issue 26): one row per run in progress in this database, read from
-- shared memory by retention.progress_rows() (src/progress). Readable only by the roles a DBA
-- grants it to, like every table and view of the extension.

CREATE FUNCTION retention."progress_rows"() RETURNS TABLE (
	"pid" INT,
	"policy_id" INT,
	"relid" oid,
	"run_id" bigint,
	"phase" TEXT,
	"rows_done" bigint,
	"rows_estimated" bigint,
	"batches" bigint,
	"requests_in_flight" INT,
	"started_at" timestamp with time zone,
	"seconds_left" double precision
)
VOLATILE PARALLEL RESTRICTED STRICT
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'progress_rows_wrapper';
REVOKE EXECUTE ON FUNCTION retention.progress_rows() FROM PUBLIC;

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
REVOKE ALL ON retention.progress FROM PUBLIC;

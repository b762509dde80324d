-- pg_retention 0.2.0 -> 0.3.0
-- The security model: runs act on a table as its owner, never as superuser; the history and
-- the per-policy lock belong to the extension; the Twilio secret moves from settings to a file
-- (pg_retention.twilio_secret_file). An existing installation is carried over: policies the
-- new checks refuse (a catalog or retention table, a non-text reason_column, a nullable
-- recordings key) are disabled, not dropped, with a NOTICE each; rights to write the history,
-- which 0.2.0's README told DBAs to grant to an operator, are taken back (the extension writes
-- it now). A run stopped by disabling its policy is `stopped`.

ALTER TABLE retention.runs DROP CONSTRAINT runs_status_check,
    ADD CONSTRAINT runs_status_check
        CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'interrupted', 'stopped'));

-- The status view shows a run whose backend is gone as `interrupted`.
CREATE OR REPLACE VIEW retention.status AS
SELECT p.name AS policy,
       p.enabled,
       p.action,
       pg_catalog.format('%I.%I', p.table_schema, p.table_name) AS target,
       last.started_at AS last_run_at,
       last.trigger AS last_trigger,
       CASE WHEN last.status = 'running'
                 AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.pid = last.pid)
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

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT name, table_schema, table_name, action, reason_column
               FROM retention.policies WHERE enabled ORDER BY name
    LOOP
        IF p.table_schema IN ('pg_catalog', 'information_schema', 'retention') OR p.table_schema LIKE 'pg\_toast%' THEN
            UPDATE retention.policies SET enabled = false WHERE name = p.name;
            RAISE NOTICE 'retention policy "%" names %.%, which no policy may target now: it was disabled',
                p.name, p.table_schema, p.table_name;
        ELSIF p.action <> 'delete' AND p.reason_column IS NOT NULL AND EXISTS (
                SELECT FROM pg_catalog.pg_attribute a
                  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = p.table_schema AND c.relname = p.table_name AND a.attname = p.reason_column
                   AND a.atttypid NOT IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype)) THEN
            UPDATE retention.policies SET enabled = false WHERE name = p.name;
            RAISE NOTICE 'retention policy "%": its reason_column "%" is not text or varchar: it was disabled',
                p.name, p.reason_column;
        ELSIF p.action = 'twilio_recording' AND EXISTS (
                SELECT FROM pg_catalog.pg_attribute a
                  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  JOIN retention.policies pol ON pol.name = p.name
                 WHERE n.nspname = p.table_schema AND c.relname = p.table_name AND a.attname = pol.id_column
                   AND NOT a.attnotnull) THEN
            UPDATE retention.policies SET enabled = false WHERE name = p.name;
            RAISE NOTICE 'retention policy "%": its id_column can be NULL, which a recordings key may not: it was disabled',
                p.name;
        END IF;
    END LOOP;
END $$;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid IN ('retention.runs'::pg_catalog.regclass, 'retention.worker_state'::pg_catalog.regclass)
                AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
                AND a.grantee <> c.relowner
    LOOP
        IF g.grantee = 0 THEN
            REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON retention.runs, retention.worker_state FROM PUBLIC;
        ELSE
            EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON retention.runs, retention.worker_state FROM %I',
                                      g.grantee::pg_catalog.regrole::pg_catalog.text);
        END IF;
        RAISE NOTICE 'revoked INSERT, UPDATE, DELETE and TRUNCATE on retention.runs and retention.worker_state from %: the extension writes them; SELECT is enough to read them',
            CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::pg_catalog.regrole::pg_catalog.text END;
    END LOOP;
END $$;

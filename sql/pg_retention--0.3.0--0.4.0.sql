-- pg_retention 0.3.0 -> 0.4.0
-- Runs that stay right under faults. The status view tells a live run from a dead one by the
-- policy's lock, which a live batched run holds from its first commit to its last.

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

#!/usr/bin/env bash
# The demo: installs what is missing, builds and installs pg_retention, starts a throwaway
# cluster, loads Prisma-shaped sample data, runs the cleanups and shows what they did.
# Idempotent: each run starts from a fresh cluster. `make demo` runs this.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEMO_DIR=${PG_RETENTION_DEMO_DIR:-/tmp/pg_retention-demo}
DEMO_PORT=${PG_RETENTION_DEMO_PORT:-54330}

.ci/setup.sh
echo "demo: building and installing pg_retention (release build; log in target/demo-install.log)"
mkdir -p target
make --no-print-directory install >target/demo-install.log 2>&1 || { tail -30 target/demo-install.log; exit 1; }

pgrx-config/cluster.sh stop "$DEMO_DIR"
rm -rf "$DEMO_DIR"
pgrx-config/cluster.sh start "$DEMO_DIR" "$DEMO_PORT"
export PGHOST=$DEMO_DIR PGPORT=$DEMO_PORT PGUSER=postgres
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

psql -d postgres -c "CREATE DATABASE retention_demo"
export PGDATABASE=retention_demo
echo "demo: loading sample data (120,000 traces, 100,000 usage rows)"
psql -f tests/demo/sample_data.sql >/dev/null
psql -c "CREATE EXTENSION pg_retention"

psql <<'SQL'
\pset footer off
\echo
\echo '== What plain SQL counts as expired, before any run'
CREATE TEMP TABLE expected AS
SELECT 'expired_traces'::text AS policy, count(*) AS expired
  FROM "ConversationTrace" WHERE "expiresAt" < timezone('UTC', now())
UNION ALL
SELECT 'old_agent_usage', count(*)
  FROM "AgentUsage" WHERE "timestamp" < timezone('UTC', now()) - interval '90 days';
SELECT policy, expired FROM expected ORDER BY policy;

\echo '== Dry run (retention.preview): same predicate, nothing changed'
SELECT p->>'policy' AS policy, p->>'rows' AS would_delete, p->>'cutoff' AS cutoff
  FROM (VALUES (retention.preview('expired_traces')), (retention.preview('old_agent_usage'))) v(p);

\echo '== SELECT cleanup_expired_traces();  -- one transaction'
SELECT cleanup_expired_traces() AS deleted \gset traces_
\echo deleted :traces_deleted traces
\echo '== CALL retention.run_batched(''old_agent_usage'');  -- commits after every batch of 10000'
CALL retention.run_batched('old_agent_usage') \gset usage_
SELECT :'usage_result'::jsonb->'rows_deleted' AS deleted, :'usage_result'::jsonb->'batches' AS batches;

\echo '== Deleted per policy against the plain-SQL count taken before the run'
SELECT e.policy, e.expired AS expected, r.rows_deleted AS deleted,
       CASE WHEN e.expired = r.rows_deleted THEN 'match' ELSE 'MISMATCH' END AS check
  FROM expected e
  JOIN LATERAL (SELECT rows_deleted FROM retention.runs WHERE policy = e.policy ORDER BY id DESC LIMIT 1) r ON true
 ORDER BY e.policy;

DO $$
BEGIN
    IF EXISTS (SELECT FROM expected e
                WHERE e.expired <> (SELECT rows_deleted FROM retention.runs r
                                     WHERE r.policy = e.policy ORDER BY id DESC LIMIT 1)) THEN
        RAISE EXCEPTION 'demo: rows deleted differ from the plain-SQL count';
    END IF;
END $$;

\echo '== What is left'
SELECT 'ConversationTrace' AS "table", count(*) AS rows,
       count(*) FILTER (WHERE "expiresAt" IS NULL) AS never_expire,
       count(*) FILTER (WHERE "expiresAt" < timezone('UTC', now())) AS expired
  FROM "ConversationTrace"
UNION ALL
SELECT 'AgentUsage', count(*), NULL,
       count(*) FILTER (WHERE "timestamp" < timezone('UTC', now()) - interval '90 days')
  FROM "AgentUsage";

\echo '== Run history (retention.runs)'
SELECT id, policy, trigger, mode, status, rows_deleted, batches,
       to_char(cutoff AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS cutoff_utc,
       round(extract(epoch FROM finished_at - started_at) * 1000) AS ms
  FROM retention.runs ORDER BY id;
SQL

echo
echo "demo: the cluster is still running. Explore it with:"
echo "  psql -h $DEMO_DIR -p $DEMO_PORT -U postgres retention_demo"
echo "Stop it with:"
echo "  pgrx-config/cluster.sh stop $DEMO_DIR"

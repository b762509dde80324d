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
echo "demo: loading sample data (120,000 traces, 100,000 usage rows, 3,000 recordings)"
psql -f tests/demo/sample_data.sql >/dev/null
psql -c "CREATE EXTENSION pg_retention"

# A fake Twilio on 127.0.0.1 that holds every valid SID of the sample recordings. Never the real one.
ACCOUNT=AC00000000000000000000000000000000
TOKEN=demo-token
cargo build -q --release -p fake_twilio
psql -tA -c "SELECT twilio_recording_sid FROM voice_recordings WHERE twilio_recording_sid ~ '^RE[0-9a-fA-F]{32}$'" > "$DEMO_DIR/../pg_retention-demo-sids.txt"
rm -f "$DEMO_DIR/../pg_retention-demo-twilio.port"
target/release/fake-twilio "$ACCOUNT" "$TOKEN" "$DEMO_DIR/../pg_retention-demo-twilio.port" "$DEMO_DIR/../pg_retention-demo-sids.txt" &
FAKE_PID=$!
trap 'kill $FAKE_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$DEMO_DIR/../pg_retention-demo-twilio.port" ] && break; sleep 0.1; done
FAKE_PORT=$(cat "$DEMO_DIR/../pg_retention-demo-twilio.port")
# The secret lives in a file private to the server's OS user, never in a setting.
printf '%s\n' "$TOKEN" > "$DEMO_DIR/twilio.secret"
chmod 600 "$DEMO_DIR/twilio.secret"
[ "$(id -u)" -eq 0 ] && chown postgres: "$DEMO_DIR/twilio.secret"
psql -d postgres -q >/dev/null <<SQL
ALTER SYSTEM SET pg_retention.twilio_account_sid = '$ACCOUNT';
ALTER SYSTEM SET pg_retention.twilio_secret_file = 'twilio.secret';
ALTER SYSTEM SET pg_retention.twilio_base_url = 'http://127.0.0.1:$FAKE_PORT';
SELECT pg_reload_conf();
SQL

psql <<'SQL'
\pset footer off
\echo
\echo '== What plain SQL counts as expired, before any run'
SELECT 'expired_traces'::text AS policy, count(*) AS expired
  FROM "ConversationTrace" WHERE "expiresAt" < timezone('UTC', now())
UNION ALL
SELECT 'old_agent_usage', count(*)
  FROM "AgentUsage" WHERE "timestamp" < timezone('UTC', now()) - interval '90 days'
UNION ALL
SELECT 'old_recordings', count(*)
  FROM voice_recordings
 WHERE created_at < now() - interval '90 days' AND deleted_at IS NULL
   AND twilio_recording_sid ~ '^RE[0-9a-fA-F]{32}$'
 ORDER BY policy;
-- Each row's time as it stands now, to count again at each run's own cutoff: a row can cross
-- the 90-day line between the count above and the run.
CREATE TEMP TABLE before_runs AS
SELECT 'expired_traces'::text AS policy, "expiresAt" AS utc_time FROM "ConversationTrace"
UNION ALL
SELECT 'old_agent_usage', "timestamp" FROM "AgentUsage"
UNION ALL
SELECT 'old_recordings', timezone('UTC', created_at) FROM voice_recordings
 WHERE deleted_at IS NULL AND twilio_recording_sid ~ '^RE[0-9a-fA-F]{32}$';

\echo '== Dry run (retention.preview): same predicate, nothing changed'
SELECT p->>'policy' AS policy, p->>'rows' AS would_delete, p->>'cutoff' AS cutoff
  FROM (VALUES (retention.preview('expired_traces')), (retention.preview('old_agent_usage')),
               (retention.preview('old_recordings'))) v(p);

\echo '== SELECT cleanup_expired_traces();  -- one transaction'
SELECT cleanup_expired_traces() AS deleted \gset traces_
\echo deleted :traces_deleted traces
\echo '== CALL retention.run_batched(''old_agent_usage'');  -- commits after every batch of 10000'
CALL retention.run_batched('old_agent_usage');

\echo '== SELECT cleanup_old_recordings();  -- DELETE at the fake Twilio, then soft-delete the row'
SELECT jsonb_pretty(cleanup_old_recordings() - 'cutoff' - 'error' - 'mode' - 'trigger' - 'policy') AS result;

\echo '== Deleted per policy against plain SQL over the rows as they were, at the run''s own cutoff'
CREATE TEMP VIEW checked AS
SELECT r.policy, r.expected, r.rows_deleted AS deleted,
       CASE WHEN r.expected = r.rows_deleted THEN 'match' ELSE 'MISMATCH' END AS outcome
  FROM (SELECT DISTINCT ON (policy) policy, rows_deleted,
               (SELECT count(*) FROM before_runs b
                 WHERE b.policy = runs.policy AND b.utc_time < timezone('UTC', runs.cutoff)) AS expected
          FROM retention.runs ORDER BY policy, id DESC) r;
SELECT * FROM checked ORDER BY policy;

DO $$
BEGIN
    IF EXISTS (SELECT FROM checked WHERE outcome <> 'match') THEN
        RAISE EXCEPTION 'demo: rows deleted differ from the plain-SQL count';
    END IF;
END $$;

\echo '== What is left (past each run''s cutoff: none)'
SELECT 'ConversationTrace' AS "table", count(*) AS rows,
       count(*) FILTER (WHERE "expiresAt" IS NULL) AS never_expire,
       count(*) FILTER (WHERE "expiresAt" < (SELECT timezone('UTC', cutoff) FROM retention.runs
                                               WHERE policy = 'expired_traces' ORDER BY id DESC LIMIT 1)) AS past_cutoff
  FROM "ConversationTrace"
UNION ALL
SELECT 'AgentUsage', count(*), NULL,
       count(*) FILTER (WHERE "timestamp" < (SELECT timezone('UTC', cutoff) FROM retention.runs
                                               WHERE policy = 'old_agent_usage' ORDER BY id DESC LIMIT 1))
  FROM "AgentUsage";

\echo '== voice_recordings now'
SELECT coalesce(deletion_reason, '(kept)') AS deletion_reason, count(*) FROM voice_recordings GROUP BY 1 ORDER BY 1;

\echo '== retention.status: one row per policy'
SELECT policy, last_status, last_rows, backlog_rows, next_worker_run FROM retention.status ORDER BY policy;

\echo '== Run history (retention.runs)'
SELECT id, policy, trigger, mode, status, rows_deleted, batches, details->'skipped' AS skipped,
       to_char(cutoff AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS cutoff_utc,
       round(extract(epoch FROM finished_at - started_at) * 1000) AS ms
  FROM retention.runs ORDER BY id;
SQL

echo
echo "demo: the cluster is still running. Explore it with:"
echo "  psql -h $DEMO_DIR -p $DEMO_PORT -U postgres retention_demo"
echo "Stop it with:"
echo "  pgrx-config/cluster.sh stop $DEMO_DIR"

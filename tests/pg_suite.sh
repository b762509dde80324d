#!/usr/bin/env bash
# Issue 26's acceptance: PostgreSQL's own regression suite (the parallel_schedule of Debian's
# postgresql-15 source package) gives the same results on a server that preloads pg_retention
# and pg_cron, with the worker on for two databases, as on the same server without them. Before
# 0.11.0 the idle per-database workers held background-worker slots and select_parallel got
# "Workers Launched: 3" where 4 were planned.
#   tests/pg_suite.sh      PostgreSQL 15 only; the source is fetched and built by .ci/pg_suite_source.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source pgrx-config/pg_major.sh
if [ "$PG_MAJOR" != 15 ]; then
    echo "pg_suite: PostgreSQL 15 only (the suite comes from Debian's postgresql-15 source package)"
    exit 0
fi
SRC=$(.ci/pg_suite_source.sh)
REGRESS=$SRC/src/test/regress
OUT=$PWD/target/pg_suite
rm -rf "$OUT" && mkdir -p "$OUT"
[ "$(id -u)" -eq 0 ] && chown postgres: "$OUT" # the server writes COPY output there
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# One run of the schedule against a fresh cluster: $2 is run as SQL first, then the
# extension made in each database of $3, a line $4 added to its configuration, and a restart.
run_suite() {
    local name=$1 setup=$2 databases=$3 line=$4 port
    local dir=/tmp/pg_retention-suite-$name
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pgrx-config/cluster.sh stop "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
    pgrx-config/cluster.sh start "$dir" "$port" >/dev/null
    echo "$setup" | "$PG_BIN/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -f - >/dev/null
    for db in $databases; do
        "$PG_BIN/psql" -X -q -h "$dir" -p "$port" -U postgres -d "$db" -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pg_retention" >/dev/null
    done
    pgrx-config/cluster.sh stop "$dir"
    echo "$line" | as_owner tee -a "$dir/postgresql.conf" >/dev/null
    pgrx-config/cluster.sh start "$dir" "$port" >/dev/null
    "$PG_BIN/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres -At \
        -c "SELECT 'preloaded: ' || current_setting('shared_preload_libraries'), 'background workers of extensions: ' || count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_%launcher' OR backend_type LIKE 'pg_retention%'"
    as_owner mkdir -p "$OUT/$name"
    # pg_regress exits non-zero when any test differs from its expected output (a locale's
    # collation can do that on both servers): what must match is the two runs' results.
    as_owner "$REGRESS/pg_regress" --inputdir="$REGRESS" --outputdir="$OUT/$name" --bindir="$PG_BIN" \
        --dlpath="$REGRESS" --schedule="$REGRESS/parallel_schedule" --max-connections=20 \
        --host="$dir" --port="$port" --user=postgres > "$OUT/$name.log" 2>&1 || true
    grep -E "^(not ok|ok|test| *[a-z_0-9]+ +\.\.\.)|tests (passed|failed)" "$OUT/$name.log" | tail -3
    pgrx-config/cluster.sh stop "$dir"
    rm -rf "$dir"
}

echo "== PostgreSQL's regression suite without pg_retention (nothing preloaded)"
run_suite without "SELECT 1" "" "shared_preload_libraries = ''"
echo "== the same, preloading pg_retention and pg_cron, the worker on for two databases"
run_suite with "CREATE DATABASE retention_a; CREATE DATABASE retention_b;
                ALTER SYSTEM SET pg_retention.worker_enabled = on;
                ALTER SYSTEM SET pg_retention.database = 'retention_a, retention_b';" "retention_a retention_b" "# as pgrx-config/postgresql.conf has it"

# The results must be the same file for file (each test's actual output).
if diff -r "$OUT/without/results" "$OUT/with/results" > "$OUT/differences.diff"; then
    tests=$(ls "$OUT/with/results" | wc -l)
    echo "pg_suite: the same results for all $tests test files with and without pg_retention"
else
    head -60 "$OUT/differences.diff"
    echo "pg_suite: the results differ with pg_retention preloaded (target/pg_suite/differences.diff)" >&2
    exit 1
fi

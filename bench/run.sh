#!/usr/bin/env bash
# make bench: a release build on a throwaway cluster of its own, each scenario against its
# plain-SQL baseline; prints the table and writes bench/results.md. Flags go to the bench:
#   --rows N (2,000,000)  --idle-rows N (10,000,000)  --recordings N (10,000)
#   --memory-recordings N (100,000)  --latency-ms N (50)  --traffic-seconds N (40)
#   --traffic-rate N (200)  --traffic-rounds N (5)  --partitioned-rows N (1,000,000)  --citus-rows N (1,000,000)
#   --only NAME (purge, sizes, idle, recordings, s3, live traffic, hidden, partitioned, citus)
#   --out FILE (bench/results.md)  --charts DIR (docs: the SVG charts)  --smoke (tiny, for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${PG_RETENTION_BENCH_DIR:-/tmp/pg_retention-bench}
BENCH_PORT=${PG_RETENTION_BENCH_PORT:-54331}

.ci/setup.sh
make --no-print-directory install
cargo build --release -q -p pg_retention_bench

pgrx-config/cluster.sh stop "$BENCH_DIR"
rm -rf "$BENCH_DIR"
pgrx-config/cluster.sh start "$BENCH_DIR" "$BENCH_PORT"
trap 'pgrx-config/cluster.sh stop "$BENCH_DIR"' EXIT
PGHOST=$BENCH_DIR PGPORT=$BENCH_PORT target/release/pg_retention_bench "$@"

#!/usr/bin/env bash
# Every test: plain Rust unit tests and #[pg_test]s, then the SQL regression files and the
# integration tests against a throwaway cluster with pg_retention and pg_cron preloaded.
# Idempotent; works as root (CI) and as an ordinary user with sudo. `make test` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
TEST_DIR=${PG_RETENTION_TEST_DIR:-/tmp/pg_retention-test}
TEST_PORT=${PG_RETENTION_TEST_PORT:-54329}

mkdir -p target
LOG=target/test-run.log
exec > >(tee "$LOG") 2>&1

.ci/setup.sh

echo "== unit tests and #[pg_test] (cargo pgrx test)"
if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses root: the pgrx test cluster runs as postgres.
    PGRX_TEST_DATA=/var/lib/postgresql/pgrx-test
    mkdir -p "$PGRX_TEST_DATA" && chown postgres: "$PGRX_TEST_DATA"
    cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_TEST_DATA"
    install_flags=()
else
    cargo pgrx test pg15
    install_flags=(--sudo)
fi

echo "== install into $($PG_CONFIG --pkglibdir)"
cargo pgrx install --pg-config "$PG_CONFIG" "${install_flags[@]}"
# The 0.1.0 install script, so that the regression files can test the upgrade from it.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_root cp tests/upgrade/pg_retention--0.1.0.sql "$($PG_CONFIG --sharedir)/extension/"

echo "== throwaway cluster in $TEST_DIR"
pgrx-config/cluster.sh stop "$TEST_DIR"
rm -rf "$TEST_DIR"
pgrx-config/cluster.sh start "$TEST_DIR" "$TEST_PORT"
trap 'pgrx-config/cluster.sh stop "$TEST_DIR"' EXIT
export PGHOST=$TEST_DIR PGPORT=$TEST_PORT

echo "== SQL regression files"
tests/regress.sh

echo "== benchmark smoke (tiny scale, so that make bench cannot rot)"
cargo run -q -p pg_retention_bench -- --smoke

echo "== integration tests"
cargo test -p pg_retention_it -- --test-threads=1

# One closing line over every runner above (cargo's suites and pg_regress).
passed=$(awk '/^test result: ok\./ { n += $4 } END { print n + 0 }' "$LOG")
regress=$(awk '/^ *All [0-9]+ tests passed\./ { n += $2 } END { print n + 0 }' "$LOG")
echo "summary: $((passed + regress)) passed, 0 failed"

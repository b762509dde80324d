#!/usr/bin/env bash
# Every test on one PostgreSQL major (PG_MAJOR), on this system: plain Rust unit tests and
# #[pg_test]s, the Debian package, then the SQL regression files and the integration tests
# against a throwaway cluster with pg_retention and pg_cron preloaded. Idempotent; works as
# root (CI) and as an ordinary user with sudo. tests/run.sh (`make test`) runs it once per
# major, 17 and 18 inside their chroots; tests/one.sh runs one test of any kind.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh

mkdir -p target
LOG=target/test-run.log
exec > >(tee "$LOG") 2>&1

.ci/setup.sh
.ci/citus.sh

echo "== unit tests and #[pg_test] (cargo pgrx test)"
run_pg_tests

echo "== the Debian package (make package, dpkg -i, CREATE EXTENSION, dpkg -r)"
tests/package.sh
install_extension
start_cluster

echo "== SQL regression files"
tests/regress.sh

echo "== benchmark smoke (tiny scale, so that make bench cannot rot), and its charts' own test"
cargo test -q -p pg_retention_bench
cargo run -q -p pg_retention_bench -- --smoke

echo "== integration tests"
cargo test -p pg_retention_it -- --test-threads=1

echo "== PostgreSQL's own regression suite, with and without pg_retention preloaded (15 only)"
tests/pg_suite.sh

# One closing line over every runner above (cargo's suites and pg_regress).
passed=$(awk '/^test result: ok\./ { n += $4 } END { print n + 0 }' "$LOG")
# pg_regress says "All N tests passed." (15), "# All N tests passed." from 16 on (TAP).
regress=$(awk '/^(# )? *All [0-9]+ tests passed\./ { sub(/^# /, ""); n += $2 } END { print n + 0 }' "$LOG")
echo "summary: $((passed + regress)) passed, 0 failed"

#!/usr/bin/env bash
# Runs one test, or one kind of test, on its own:
#   tests/one.sh unit [NAME]                  plain Rust tests, no server (NAME filters)
#   tests/one.sh pg [NAME]                    unit tests and #[pg_test]s (NAME filters, e.g. soft_delete)
#   tests/one.sh regress [FILE ...]           SQL regression files by name (e.g. 03_batched); all without FILE
#   tests/one.sh integration [SUITE [NAME]]   integration tests: a suite (sessions, recordings, worker,
#                                             pg_cron, citus ...) and a test name filter; all without SUITE
#   tests/one.sh package                      the Debian package: build, dpkg -i, CREATE EXTENSION, dpkg -r
#                                             (leaves pg_retention uninstalled; the others reinstall it)
# regress and integration build and install the extension and start a throwaway cluster first.
# PG_MAJOR=17 (or 18; `make regress PG=17 TEST=...`) runs it in that major's chroot.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
if major_elsewhere; then
    exec .ci/chroot.sh again "$PG_MAJOR" tests/one.sh "$@"
fi
kind=${1:?usage: tests/one.sh unit|pg|regress|integration [NAME ...]}
shift
case "$kind" in
unit)
    cargo test --lib "${PG_FEATURES[@]}" -- --skip pg_ "$@"
    ;;
pg)
    run_pg_tests "$@"
    ;;
regress)
    install_extension
    start_cluster
    tests/regress.sh "$@"
    ;;
integration)
    install_extension
    start_cluster
    if [ $# -gt 0 ]; then
        suite=$1
        shift
        cargo test -p pg_retention_it --test "$suite" -- --test-threads=1 "$@"
    else
        cargo test -p pg_retention_it -- --test-threads=1
    fi
    ;;
package)
    tests/package.sh
    ;;
*)
    echo "tests/one.sh: unknown kind '$kind' (unit, pg, regress, integration or package)" >&2
    exit 2
    ;;
esac

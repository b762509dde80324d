#!/usr/bin/env bash
# Runs the SQL regression files (tests/pg_regress/sql, expected output beside them) against
# a running server: PGHOST and PGPORT name it. Arguments name files to run (each runs alone,
# e.g. `tests/regress.sh 03_batched`); without them, all. `cargo pgrx regress` runs the same files for
# a non-root developer; this script is what `make test` uses, as root or not.
set -euo pipefail
cd "$(dirname "$0")/.."
source pgrx-config/pg_major.sh
: "${PGHOST:?PGHOST must name the server socket directory}" "${PGPORT:?PGPORT must be set}"
PG_REGRESS=$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress
out=target/pg_regress
mkdir -p "$out"
if [ $# -gt 0 ]; then
    tests="$*"
else
    tests=$(cd tests/pg_regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
fi
"$PG_REGRESS" --host="$PGHOST" --port="$PGPORT" --user=postgres \
    --inputdir=tests/pg_regress --outputdir="$out" --dbname=pg_retention_regress \
    $tests || { cat "$out/regression.diffs" 2>/dev/null | head -200; exit 1; }

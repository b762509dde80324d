#!/usr/bin/env bash
# The Debian package, as a DBA would use it: `make package` from this tree, then `dpkg -i` into
# this machine's PostgreSQL (PG_MAJOR's; 17 and 18 in their chroots) with every earlier copy of
# pg_retention removed first, a fresh cluster, CREATE EXTENSION, a policy run, the worker's
# launcher, the upgrade path from 0.1.0; then `dpkg -r` takes every file away again. Leaves pg_retention uninstalled: tests/run.sh
# installs the development build after it.
#   tests/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh

packaging/deb.sh
VERSION=$(sed -n 's/^version = "\([^"]*\)"/\1/p' Cargo.toml | head -n 1)
NAME=postgresql-$PG_MAJOR-pg-retention
DEB=$(ls target/deb/"$NAME"_"$VERSION"_*.deb)
LIBDIR=$($PG_CONFIG --pkglibdir)
EXTDIR=$($PG_CONFIG --sharedir)/extension
fail() { echo "package test: $*" >&2; exit 1; }
no_files_left() { [ -z "$(ls "$LIBDIR" "$EXTDIR" | grep pg_retention || true)" ] || fail "$1"; }

echo "== the package's contents"
dpkg-deb -f "$DEB" Package Version Depends
dpkg-deb -f "$DEB" Depends | grep -q "^postgresql-$PG_MAJOR\b" || fail "it must depend on postgresql-$PG_MAJOR"
contents=$(dpkg-deb -c "$DEB")
for file in "$LIBDIR/pg_retention.so" "$EXTDIR/pg_retention.control" "$EXTDIR/pg_retention--$VERSION.sql" \
            $(cd sql && ls pg_retention--*--*.sql | sed "s|^|$EXTDIR/|"); do
    grep -q " \.$file\$" <<<"$contents" || fail "$file is not in $DEB"
done

echo "== a PostgreSQL that never had pg_retention"
if dpkg-query -W -f='${Status}' "$NAME" 2>/dev/null | grep -q "install ok installed"; then
    as_root dpkg -r "$NAME" >/dev/null
fi
as_root rm -f "$LIBDIR/pg_retention.so" "$EXTDIR"/pg_retention.control "$EXTDIR"/pg_retention--*.sql
no_files_left "pg_retention files are left in $LIBDIR or $EXTDIR"

echo "== dpkg -i"
as_root dpkg -i "$DEB"

DIR=/tmp/pg_retention-package
PORT=54339
pgrx-config/cluster.sh stop "$DIR"
rm -rf "$DIR"
trap 'pgrx-config/cluster.sh stop "$DIR"; rm -rf "$DIR"' EXIT
pgrx-config/cluster.sh start "$DIR" "$PORT"
run_psql() { "$PG_BIN/psql" -h "$DIR" -p "$PORT" -U postgres -X -q -A -t -v ON_ERROR_STOP=1 -d postgres "$@"; }
got=$(run_psql -c "CREATE EXTENSION pg_retention" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_retention'")
[ "$got" = "$VERSION" ] || fail "CREATE EXTENSION gave version '$got', not $VERSION"
got=$(run_psql -c "CREATE TABLE \"AgentUsage\" (id int, \"timestamp\" timestamp(3))" \
               -c "CREATE INDEX ON \"AgentUsage\" (\"timestamp\")" \
               -c "INSERT INTO \"AgentUsage\" SELECT g, timezone('UTC', now()) - interval '100 days' FROM generate_series(1, 25) g" \
               -c "INSERT INTO \"AgentUsage\" VALUES (0, timezone('UTC', now()))" \
               -c "SELECT cleanup_old_agent_usage(90)")
[ "$got" = "25" ] || fail "cleanup_old_agent_usage(90) gave '$got', not 25"
got=$(run_psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_retention launcher'")
[ "$got" = "1" ] || fail "the launcher is not running (preloaded from the package's library)"
got=$(run_psql -c "SELECT path FROM pg_extension_update_paths('pg_retention') WHERE source = '0.1.0' AND target = '$VERSION'")
[ -n "$got" ] || fail "no upgrade path from 0.1.0 to $VERSION in the package"
echo "package test: CREATE EXTENSION $VERSION, cleanup_old_agent_usage(90) = 25, launcher running, upgrade path $got"
pgrx-config/cluster.sh stop "$DIR"

echo "== dpkg -r"
as_root dpkg -r "$NAME" >/dev/null
no_files_left "dpkg -r left pg_retention files behind"
echo "package test: passed"

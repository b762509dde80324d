#!/usr/bin/env bash
# Builds and installs Citus 13.2.2 (a test dependency: the Citus tests' three-node cluster) from
# ../shared/citus/, the only source of it on these machines. Skips when citus.so is installed or
# the source is not there (the Citus tests then skip with a message). About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

source pgrx-config/pg_major.sh
CITUS_VERSION=13.2.2
shared=${PG_RETENTION_SHARED:-../shared}

if ! citus_supports "$PG_MAJOR"; then
    echo "setup: Citus $CITUS_VERSION does not support PostgreSQL $PG_MAJOR; the Citus tests will be skipped"; exit 0
fi

if [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]; then
    echo "setup: Citus already installed"; exit 0
fi
if [ ! -f "$shared/citus/citus-$CITUS_VERSION.tar.gz" ]; then
    echo "setup: no Citus source in $shared/citus/; the Citus tests will be skipped"; exit 0
fi
shared=$(cd "$shared" && pwd)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
BUILD_DEPS=(libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev libselinux1-dev
            libxslt1-dev libpam0g-dev libreadline-dev libicu-dev)
missing=()
for pkg in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "setup: building Citus $CITUS_VERSION from $shared/citus (about 10 minutes)"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar xzf "$shared/citus/citus-$CITUS_VERSION.tar.gz" -C "$build"
cd "$build/citus-$CITUS_VERSION"
# PostgreSQL 15.20 (and the minors released with it) export have_createdb_privilege(), which
# Citus 13.2.2 also defines.
if grep -qs have_createdb_privilege "$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h"; then
    patch -p1 -s < "$shared/citus/pg15.20-have_createdb_privilege.patch"
fi
./configure -q PG_CONFIG="$PG_CONFIG" >/dev/null
make -s -j"$(nproc)" >/dev/null
as_root make -s install >/dev/null
echo "setup: Citus $CITUS_VERSION installed"

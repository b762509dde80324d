#!/usr/bin/env bash
# PostgreSQL 15's regression suite, from Debian's postgresql-15 source package, configured and
# its test library built (src/test/regress): for tests/pg_suite.sh. Idempotent: fetched and
# built once into /opt/pg15-src (about 2 minutes), then reused. Prints the source directory.
set -euo pipefail
ROOT=${PG_SUITE_ROOT:-/opt/pg15-src}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
built=$(ls -d "$ROOT"/postgresql-15.*/src/test/regress/regress.so 2>/dev/null | head -1 || true)
if [ -z "$built" ]; then
    {
        if ! apt-cache showsrc postgresql-15 >/dev/null 2>&1 || [ -z "$(apt-cache showsrc postgresql-15 2>/dev/null)" ]; then
            # Debian's source packages come from the same mirrors as its binary ones.
            as_root tee /etc/apt/sources.list.d/pg-retention-deb-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
            as_root apt-get update -qq
        fi
        as_root mkdir -p "$ROOT"
        as_root chown "$(id -u)" "$ROOT"
        cd "$ROOT"
        # The newest version a mirror still has (a security update's source can be gone).
        for version in $(apt-cache showsrc postgresql-15 | awk '/^Version:/ { print $2 }' | sort -rV); do
            apt-get source --download-only "postgresql-15=$version" >/dev/null 2>&1 && break
        done
        tarball=$(ls postgresql-15_*.orig.tar.bz2 | sort -V | tail -1)
        tar xjf "$tarball"
        cd "$(ls -d postgresql-15.*/ | sort -V | tail -1)"
        ./configure --without-icu --without-readline --without-zlib --without-llvm >/dev/null
        # The generated headers (utils/errcodes.h, ...) first: the test library's make does not
        # wait for them, and with -j its libpgport raced ahead of them on a fresh machine.
        make -s -C src/backend generated-headers >/dev/null
        make -s -C src/test/regress -j"$(nproc)" >/dev/null
    } >&2
    built=$(ls -d "$ROOT"/postgresql-15.*/src/test/regress/regress.so | head -1)
fi
dirname "$(dirname "$(dirname "$(dirname "$built")")")"

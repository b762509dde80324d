#!/usr/bin/env bash
# Builds the Debian package postgresql-N-pg-retention_<version>_amd64.deb into target/deb/ for
# PostgreSQL N (PG_MAJOR, 15 unless set): the release library, the control file and every SQL
# script (install and upgrades), laid out where Debian's postgresql-N looks for them, linked
# against the Debian release it is built on (`make package PG=17` builds in trixie's chroot).
# Needs cargo-pgrx (`make setup`); no root.
#   packaging/deb.sh        (or `make package`, `PG_MAJOR=17 packaging/deb.sh` inside the chroot)
set -euo pipefail
cd "$(dirname "$0")/.."

source pgrx-config/pg_major.sh
if major_elsewhere; then
    # Built in the major's own Debian, so that dpkg-shlibdeps names that release's libraries.
    .ci/chroot.sh again "$PG_MAJOR" packaging/deb.sh
    mkdir -p target/deb
    cp "$(.ci/chroot.sh path "$PG_MAJOR")"/src/target/deb/postgresql-"$PG_MAJOR"-pg-retention_*.deb target/deb/
    ls target/deb/postgresql-"$PG_MAJOR"-pg-retention_*.deb
    exit 0
fi
NAME=postgresql-$PG_MAJOR-pg-retention
VERSION=$(sed -n 's/^version = "\([^"]*\)"/\1/p' Cargo.toml | head -n 1)
ARCH=$(dpkg --print-architecture)
OUT=target/deb
DEB=$OUT/${NAME}_${VERSION}_${ARCH}.deb

# The release build and its files, under the paths pg_config names (cargo pgrx package copies
# the upgrade scripts of sql/ beside the install script).
cargo pgrx package "${PG_FEATURES[@]}" --pg-config "$PG_CONFIG" >/dev/null
BUILT=target/release/pg_retention-pg$PG_MAJOR
LIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)
for needed in "$BUILT$LIBDIR/pg_retention.so" "$BUILT$SHAREDIR/extension/pg_retention.control" \
              "$BUILT$SHAREDIR/extension/pg_retention--$VERSION.sql"; do
    [ -f "$needed" ] || { echo "package: cargo pgrx package did not make $needed" >&2; exit 1; }
done

ROOT=$OUT/root
rm -rf "$ROOT" && mkdir -p "$ROOT/DEBIAN" "$ROOT/usr/share/doc/$NAME"
cp -a "$BUILT/usr" "$ROOT/"
cp -r README.md docs "$ROOT/usr/share/doc/$NAME/"

# The shared libraries the library links, as Debian names them (dpkg-shlibdeps wants a
# debian/control beside it; a throwaway one).
SHLIBS_DIR=$(mktemp -d)
trap 'rm -rf "$SHLIBS_DIR"' EXIT
mkdir "$SHLIBS_DIR/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" > "$SHLIBS_DIR/debian/control"
LIBRARY=$(realpath "$ROOT$LIBDIR/pg_retention.so")
SHLIBS=$(cd "$SHLIBS_DIR" && dpkg-shlibdeps -O "$LIBRARY" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || { echo "package: dpkg-shlibdeps found no dependencies for $LIBRARY" >&2; exit 1; }

cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: pg_retention developers <pg-retention@localhost>
Section: database
Priority: optional
Depends: postgresql-$PG_MAJOR, $SHLIBS
Installed-Size: $(du -sk "$ROOT/usr" | cut -f1)
Description: data-retention policies enforced inside PostgreSQL $PG_MAJOR
 pg_retention deletes rows whose time has come, by policy, in batches, as the
 table's owner; voice recordings are deleted at Twilio before their rows are
 soft-deleted. Add pg_retention to shared_preload_libraries for its background
 worker, then CREATE EXTENSION pg_retention.
CONTROL

rm -f "$DEB"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "package: $DEB"

#!/usr/bin/env bash
# A Debian chroot per PostgreSQL major other than the host's 15, with that release's own server,
# headers, pg_cron and pg_partman (../shared/MULTIVERSION.md): trixie for 17, sid for 18.
#   chroot.sh prepare N      create /opt/pgN-root once, mount what it shares, install packages
#   chroot.sh run N CMD...   copy this checkout to /src in it (target/ is its own) and run CMD
#                            there; the mounts are undone when it ends
#   chroot.sh again N SCRIPT [ARG...]
#                            run as `run`, after the major's setup, a script of this checkout
#                            with PG_MAJOR=N (how a script re-runs itself for a chroot's major)
#   chroot.sh unmount N      undo the mounts
#   chroot.sh path N         print where it is
# Idempotent: what exists is skipped, what is not mounted is mounted. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

USAGE="usage: chroot.sh prepare|run|again|unmount|path N [CMD...]"
cmd=${1:?$USAGE}
major=${2:?PostgreSQL major}
shift 2
case "$major" in
17) suite=trixie ;;
18) suite=sid ;;
*) echo "chroot.sh: no Debian release here packages PostgreSQL $major" >&2; exit 2 ;;
esac
ROOT=${PG_RETENTION_CHROOTS:-/opt}/pg$major-root
SHARED=${PG_RETENTION_SHARED:-$REPO/../shared}
PACKAGES=(postgresql-$major postgresql-server-dev-$major postgresql-$major-cron postgresql-$major-partman
          clang libclang-dev build-essential pkg-config sudo python3 git ca-certificates)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# ~/.cargo is the host's (below), but a tool `cargo install`ed in here links against this
# newer Debian's glibc and would not run on the host: it goes to the chroot's own
# /usr/local/cargo, first on PATH. A tool the host built runs in here too, and is used as is.
in_root() {
    as_root chroot "$ROOT" env -i PATH=/usr/local/cargo/bin:/root/.cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        CARGO_INSTALL_ROOT=/usr/local/cargo HOME=/root LANG=C.UTF-8 "$@"
}

# Bind-mounts $1 (a host path) at $2 inside the chroot unless something is mounted there.
bind() {
    as_root mkdir -p "$ROOT$2"
    mountpoint -q "$ROOT$2" || as_root mount --bind "$1" "$ROOT$2"
}

mount_all() {
    bind /proc /proc
    bind /dev /dev
    bind /dev/pts /dev/pts
    bind /dev/shm /dev/shm
    # The host's Rust toolchain and cargo-pgrx (and its registry cache), shared rather than
    # installed again; a build's target/ stays inside the chroot.
    bind "$HOME/.cargo" /root/.cargo
    bind "$HOME/.rustup" /root/.rustup
    if [ -d "$SHARED" ]; then bind "$(cd "$SHARED" && pwd)" /shared; fi
}

unmount_all() {
    for path in /shared /root/.rustup /root/.cargo /dev/shm /dev/pts /dev /proc; do
        # Lazily when busy (a process still inside): detached now, freed when it ends.
        if mountpoint -q "$ROOT$path"; then as_root umount "$ROOT$path" 2>/dev/null || as_root umount -l "$ROOT$path"; fi
    done
}

prepare() {
    if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
        command -v debootstrap >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        # The mirror bookworm already uses; never a host written into a committed file.
        local mirror
        mirror=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
        [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
        echo "chroot: debootstrap $suite into $ROOT (about a minute)"
        # A broken chroot may still have the host's /dev, /proc and ~/.cargo mounted in it:
        # unmounted first, and never crossed into.
        unmount_all
        as_root rm -rf --one-file-system "$ROOT"
        as_root debootstrap --variant=minbase "$suite" "$ROOT" "$mirror" >/dev/null
        # No service starts inside (a chroot shares the host's ports), and no default cluster:
        # the tests make their own.
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$ROOT/usr/sbin/policy-rc.d" >/dev/null
        as_root chmod 755 "$ROOT/usr/sbin/policy-rc.d"
        as_root mkdir -p "$ROOT/etc/postgresql-common"
        echo "create_main_cluster = false" | as_root tee "$ROOT/etc/postgresql-common/createcluster.conf" >/dev/null
        # sid's Release file in the registry may be past its Valid-Until date (a moving suite's
        # mirror is refreshed less often than it says); every apt-get in the chroot accepts it.
        if [ "$suite" = sid ]; then
            echo 'Acquire::Check-Valid-Until "false";' | as_root tee "$ROOT/etc/apt/apt.conf.d/99pg-retention-sid" >/dev/null
        fi
    fi
    mount_all
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        in_root dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "chroot: installing ${missing[*]} in $ROOT"
        in_root apt-get -qq update
        in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # The host's own trust, so the chroot reaches the registries it reaches (the tests install
    # psycopg from PyPI): the CAs it added (a proxy's, a company's) and pip's settings.
    local cas=(/usr/local/share/ca-certificates/*.crt)
    if [ -e "${cas[0]}" ]; then
        as_root cp "${cas[@]}" "$ROOT/usr/local/share/ca-certificates/"
        in_root update-ca-certificates >/dev/null 2>&1
    fi
    if [ -f /etc/pip.conf ]; then as_root cp /etc/pip.conf "$ROOT/etc/pip.conf"; fi
}

# Runs CMD in /src, a copy of this checkout; the mounts are undone when it ends.
run_in_copy() {
    prepare
    command -v rsync >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null
    trap unmount_all EXIT
    as_root rsync -a --delete --exclude=/target "$REPO/" "$ROOT/src/"
    in_root bash -c 'cd /src && "$@"' - "$@"
}

case "$cmd" in
prepare) prepare ;;
run) run_in_copy "$@" ;;
again) run_in_copy env PG_MAJOR="$major" bash -c '.ci/setup.sh >/dev/null && "$@"' - "$@" ;;
unmount) unmount_all ;;
path) echo "$ROOT" ;;
*) echo "$USAGE" >&2; exit 2 ;;
esac

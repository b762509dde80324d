#!/usr/bin/env bash
# Installs what building and testing pg_retention needs, skipping what is already there.
# Works as root (CI) and as an ordinary user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL PG_MAJOR (15 unless set; 17 and 18 run this inside their chroots, .ci/chroot.sh).
source pgrx-config/pg_major.sh
# Beyond the build: pg_cron and pg_partman, which the tests meet; dpkg-dev (in build-essential)
# for `make package`; postgres_exporter and python3-venv for the tests of what the README
# offers monitoring and applications.
APT_PACKAGES=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron postgresql-$PG_MAJOR-partman
              libclang-dev clang pkg-config build-essential sudo prometheus-postgres-exporter python3-venv)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# cargo-pgrx must match the pgrx pin in Cargo.toml exactly. An install that does not answer
# (another version, or one built in a chroot against a newer glibc) is replaced: --force.
PGRX_VERSION=$(sed -n 's/^pgrx = "=\([0-9.]*\)"/\1/p' Cargo.toml)
if [ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx $PGRX_VERSION" ]; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION (takes about 9 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --force
fi

# The S3 servers the tests and the benchmark run on loopback (tests/s3_servers): s3s-fs, which
# checks SigV4 signatures (into ~/.cargo/bin, which the chroots share), and moto with boto3 in
# a virtual environment of this checkout's target/ (made with the Debian python3 of each major).
S3S_VERSION=0.14.1
if [ "$(s3s-fs --version 2>/dev/null || "$HOME/.cargo/bin/s3s-fs" --version 2>/dev/null || true)" != "s3s-fs $S3S_VERSION" ]; then
    echo "setup: installing s3s-fs $S3S_VERSION (takes about 3 minutes)"
    cargo install s3s-fs --version "=$S3S_VERSION" --locked --features binary --force
fi
S3_VENV=target/s3-venv
if ! "$S3_VENV/bin/python" -c "import moto, boto3, flask" 2>/dev/null; then
    echo "setup: installing moto and boto3 into $S3_VENV"
    mkdir -p target
    /usr/bin/python3 -m venv --clear "$S3_VENV"
    "$S3_VENV/bin/pip" install -q "moto[server]==5.2.1" "boto3==1.43.11"
fi

if ! grep -qs "^pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi
echo "setup: ready (PostgreSQL $PG_MAJOR, cargo-pgrx $PGRX_VERSION)"

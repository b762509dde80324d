#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the demo and the tests.
#   cluster.sh start DIR PORT   initdb (once) and start, with pgrx-config/postgresql.conf
#   cluster.sh stop DIR         stop it if it runs
# As root the server runs as the postgres user (initdb refuses root); DIR must be a path
# postgres can reach, so callers use a folder under /tmp by default.
set -euo pipefail
source "$(dirname "$0")/pg_major.sh"
CONF="$(cd "$(dirname "$0")" && pwd)/postgresql.conf"
cmd=${1:?usage: cluster.sh start DIR PORT | stop DIR}
dir=${2:?data directory}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
    port=${3:?port}
    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
        as_owner "$PG_BIN/initdb" -D "$dir" -U postgres -A trust --no-instructions >/dev/null
        cp "$CONF" "$dir/pg_retention.conf"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/pg_retention.conf"
        {
            echo "include 'pg_retention.conf'"
            echo "port = $port"
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$dir'"
        } >> "$dir/postgresql.conf"
    fi
    # A developer's RUST_BACKTRACE would put Rust backtraces into every error's DETAIL.
    as_owner "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1 \
        || as_owner env -u RUST_BACKTRACE "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
    echo "cluster: running in $dir on port $port (log: $dir/server.log)"
    ;;
stop)
    if [ -f "$dir/postmaster.pid" ]; then
        as_owner "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    fi
    ;;
*)
    echo "usage: cluster.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac

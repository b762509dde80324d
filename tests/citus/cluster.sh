#!/usr/bin/env bash
# A throwaway three-node Citus cluster on one machine: a coordinator and two workers, each a
# pgrx-config/cluster.sh cluster with Citus preloaded first (as Citus requires).
#   citus/cluster.sh start DIR PORT   nodes in DIR/coordinator, DIR/worker1, DIR/worker2 on
#                                     PORT, PORT+1, PORT+2; the workers added to the coordinator
#   citus/cluster.sh stop DIR
#   citus/cluster.sh available        exit 0 when Citus is installed
set -euo pipefail
cd "$(dirname "$0")/../.."
source "$(dirname "$0")/../../pgrx-config/pg_major.sh"
NODES=(coordinator worker1 worker2)
cmd=${1:?usage: cluster.sh start DIR PORT | stop DIR | available}

psql_at() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -p "$1" -d postgres -c "$2" >/dev/null; }

case "$cmd" in
available)
    [ -f "$("$PG_BIN/pg_config" --pkglibdir)/citus.so" ]
    ;;
start)
    dir=${2:?data directory}
    port=${3:?port}
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    for i in 0 1 2; do
        node="$dir/${NODES[$i]}"
        fresh=false
        [ -f "$node/PG_VERSION" ] || fresh=true
        pgrx-config/cluster.sh start "$node" $((port + i)) >/dev/null
        if $fresh; then
            # Citus needs prepared transactions for work that spans nodes (two-phase commit).
            psql_at $((port + i)) "ALTER SYSTEM SET shared_preload_libraries = citus, pg_retention, pg_cron"
            psql_at $((port + i)) "ALTER SYSTEM SET max_prepared_transactions = 100"
            pgrx-config/cluster.sh stop "$node"
            pgrx-config/cluster.sh start "$node" $((port + i)) >/dev/null
            psql_at $((port + i)) "CREATE EXTENSION citus"
        fi
    done
    if [ "$("$PG_BIN/psql" -X -At -h 127.0.0.1 -U postgres -p "$port" -d postgres -c 'SELECT count(*) FROM pg_dist_node')" = 0 ]; then
        psql_at "$port" "SELECT citus_set_coordinator_host('127.0.0.1', $port)"
        psql_at "$port" "SELECT citus_add_node('127.0.0.1', $((port + 1)))"
        psql_at "$port" "SELECT citus_add_node('127.0.0.1', $((port + 2)))"
    fi
    echo "citus: coordinator on $port, workers on $((port + 1)) and $((port + 2)) (data in $dir)"
    ;;
stop)
    dir=${2:?data directory}
    for node in "${NODES[@]}"; do pgrx-config/cluster.sh stop "$dir/$node"; done
    ;;
*)
    echo "usage: cluster.sh start DIR PORT | stop DIR | available" >&2
    exit 2
    ;;
esac

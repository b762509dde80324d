# Shared by tests/run.sh and tests/one.sh (sourced, not run): installing the extension, the
# throwaway cluster, and the #[pg_test] runner, the same way for every test command.
source pgrx-config/pg_major.sh
TEST_DIR=${PG_RETENTION_TEST_DIR:-/tmp/pg_retention-test}
TEST_PORT=${PG_RETENTION_TEST_PORT:-54329}
# The Citus integration tests start their own three-node cluster here (tests/citus/cluster.sh).
CITUS_DIR=/tmp/pg_retention-citus

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Unit tests and #[pg_test]s; arguments filter by test name, as cargo test's do.
run_pg_tests() {
    # One test at a time: many run the same preset policies, and a run finding its policy's lock
    # held by another test's open transaction is skipped, not waited for.
    export RUST_TEST_THREADS=1
    if [ "$(id -u)" -eq 0 ]; then
        # initdb refuses root: the pgrx test cluster runs as postgres.
        local data=/var/lib/postgresql/pgrx-test
        mkdir -p "$data" && chown postgres: "$data"
        cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "$data" "$@"
    else
        cargo pgrx test "pg$PG_MAJOR" "$@"
    fi
}

# Builds and installs the extension (and the install scripts of earlier releases, which the
# upgrade test starts from).
install_extension() {
    echo "== install into $($PG_CONFIG --pkglibdir)"
    local flags=()
    [ "$(id -u)" -eq 0 ] || flags=(--sudo)
    cargo pgrx install "${PG_FEATURES[@]}" --pg-config "$PG_CONFIG" "${flags[@]}"
    as_root cp tests/upgrade/pg_retention--0.1.0.sql tests/upgrade/pg_retention--0.2.0.sql tests/upgrade/pg_retention--0.3.0.sql tests/upgrade/pg_retention--0.4.0.sql tests/upgrade/pg_retention--0.5.0.sql tests/upgrade/pg_retention--0.6.0.sql tests/upgrade/pg_retention--0.7.0.sql tests/upgrade/pg_retention--0.8.0.sql tests/upgrade/pg_retention--0.9.0.sql tests/upgrade/pg_retention--0.10.0.sql "$($PG_CONFIG --sharedir)/extension/"
}

# A fresh throwaway cluster with pg_retention and pg_cron preloaded, stopped on exit.
start_cluster() {
    echo "== throwaway cluster in $TEST_DIR"
    pgrx-config/cluster.sh stop "$TEST_DIR"
    rm -rf "$TEST_DIR"
    pgrx-config/cluster.sh start "$TEST_DIR" "$TEST_PORT"
    tests/citus/cluster.sh stop "$CITUS_DIR"
    rm -rf "$CITUS_DIR"
    trap 'pgrx-config/cluster.sh stop "$TEST_DIR"; tests/citus/cluster.sh stop "$CITUS_DIR"' EXIT
    export PGHOST=$TEST_DIR PGPORT=$TEST_PORT
}

# pg_retention: the two commands are `make demo` and `make test`.
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
SUDO_FLAG := $(if $(filter 0,$(shell id -u)),,--sudo)

.PHONY: setup install package demo test unit pgtest regress integration bench

setup:
	.ci/setup.sh

# A release build into the PostgreSQL that PG_CONFIG names.
install: setup
	cargo pgrx install --release --pg-config $(PG_CONFIG) $(SUDO_FLAG)

# The Debian package: target/deb/postgresql-15-pg-retention_<version>_amd64.deb (see packaging/deb.sh).
package: setup
	packaging/deb.sh

# Builds, installs, starts a throwaway cluster, loads sample data, runs the cleanups.
demo:
	tests/demo/run.sh

# Every test: unit, #[pg_test], SQL regression, integration (with pg_cron).
test:
	tests/run.sh

# The benchmark against plain SQL (not part of `make test`, which runs a tiny smoke of it).
# Flags: make bench ARGS="--rows 500000"
bench:
	bench/run.sh $(ARGS)

# One kind of test, or one test, alone (see tests/one.sh): make unit, make pgtest TEST=soft_delete,
# make regress TEST=03_batched, make integration TEST="sessions two_runs_of_one_policy_never_overlap".
unit:
	tests/one.sh unit $(TEST)

pgtest:
	tests/one.sh pg $(TEST)

regress:
	tests/one.sh regress $(TEST)

integration:
	tests/one.sh integration $(TEST)

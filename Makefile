# pg_retention: the two commands are `make demo` and `make test`.
# PG=17 (or 15, 18): one PostgreSQL major; 17 and 18 run in their Debian chroots (.ci/chroot.sh).
# Unset: `make test` runs every supported major, the others the default (15).
PG ?=
export PG
MAJOR_ENV := $(if $(PG),PG_MAJOR=$(PG))
# The major `install` builds for: PG, else the default pgrx-config/pg_major.sh reads from Cargo.toml
# (looked up only when `install` expands it, not on every make).
MAJOR = $(or $(PG),$(shell bash -c '. pgrx-config/pg_major.sh && echo $$DEFAULT_MAJOR'))
PG_CONFIG ?= /usr/lib/postgresql/$(MAJOR)/bin/pg_config
SUDO_FLAG := $(if $(filter 0,$(shell id -u)),,--sudo)

.PHONY: setup install package demo test unit pgtest regress integration bench

setup:
	$(MAJOR_ENV) .ci/setup.sh

# A release build into the PostgreSQL that PG_CONFIG names.
install: setup
	cargo pgrx install --release --no-default-features --features pg$(MAJOR) --pg-config $(PG_CONFIG) $(SUDO_FLAG)

# The Debian package: target/deb/postgresql-N-pg-retention_<version>_amd64.deb, built in that
# major's Debian (bookworm for 15, trixie for 17, sid for 18; see packaging/deb.sh).
package:
	$(MAJOR_ENV) packaging/deb.sh

# Builds, installs, starts a throwaway cluster, loads sample data, runs the cleanups.
demo:
	tests/demo/run.sh

# Every test (unit, #[pg_test], package, SQL regression, integration) on every supported major.
test:
	tests/run.sh

# The benchmark against plain SQL (not part of `make test`, which runs a tiny smoke of it).
# Flags: make bench ARGS="--rows 500000"
bench:
	bench/run.sh $(ARGS)

# One kind of test, or one test, alone (see tests/one.sh): make unit, make pgtest TEST=soft_delete,
# make regress TEST=03_batched, make integration TEST="sessions two_runs_of_one_policy_never_overlap".
unit:
	$(MAJOR_ENV) tests/one.sh unit $(TEST)

pgtest:
	$(MAJOR_ENV) tests/one.sh pg $(TEST)

regress:
	$(MAJOR_ENV) tests/one.sh regress $(TEST)

integration:
	$(MAJOR_ENV) tests/one.sh integration $(TEST)

# pg_retention: the two commands are `make demo` and `make test`.
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
SUDO_FLAG := $(if $(filter 0,$(shell id -u)),,--sudo)

.PHONY: setup install demo test unit bench

setup:
	.ci/setup.sh

# A release build into the PostgreSQL that PG_CONFIG names.
install: setup
	cargo pgrx install --release --pg-config $(PG_CONFIG) $(SUDO_FLAG)

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

# The plain Rust tests alone: no server needed.
unit:
	cargo test --lib --no-default-features --features pg15 -- --skip pg_

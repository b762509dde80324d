# Sourced by every script that builds for or runs a PostgreSQL: which major, and where Debian
# keeps its programs. PG_MAJOR from the environment (`make test PG=17` sets it), else the
# Cargo feature that is the default (`default = ["pg15"]`), so the default is written once.
DEFAULT_MAJOR=$(sed -n 's/^default = \["pg\([0-9]*\)"\]/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml")
PG_MAJOR=${PG_MAJOR:-$DEFAULT_MAJOR}
export PG_MAJOR
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
# What cargo builds for that major (cargo pgrx's own flags for one that is not the default).
PG_FEATURES=(--no-default-features --features "pg$PG_MAJOR")
# The majors Citus 13.2.2 (../shared/citus/) builds for; its tests skip on the others.
citus_supports() { [ "$1" -ge 15 ] && [ "$1" -le 17 ]; }
# Whether PG_MAJOR's programs are on another system than this one: a major other than the
# default that is not installed here lives in its Debian chroot (.ci/chroot.sh).
major_elsewhere() { [ "$PG_MAJOR" != "$DEFAULT_MAJOR" ] && [ ! -x "/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" ]; }

#!/usr/bin/env bash
# `make test`: the whole suite (tests/suite.sh) on every supported PostgreSQL major, 15 on this
# machine and 17 and 18 each inside its own Debian (.ci/chroot.sh), then one count per major
# and the total. `make test PG=17` (PG="15 18" ...) runs those majors only.
set -euo pipefail
cd "$(dirname "$0")/.."
source pgrx-config/pg_major.sh
SUPPORTED="$DEFAULT_MAJOR 17 18"
majors=${PG:-$SUPPORTED}

mkdir -p target
counts=()
total=0
for major in $majors; do
    case " $SUPPORTED " in *" $major "*) ;; *) echo "tests/run.sh: PostgreSQL $major is not one of $SUPPORTED" >&2; exit 2 ;; esac
    echo "=== PostgreSQL $major"
    started=$SECONDS
    log=target/test-pg$major.log
    if PG_MAJOR=$major major_elsewhere; then
        # The CI's demand that Citus run holds where Citus builds; elsewhere its tests skip.
        require=()
        if [ -n "${PG_RETENTION_REQUIRE_CITUS:-}" ] && citus_supports "$major"; then require=(PG_RETENTION_REQUIRE_CITUS=1); fi
        .ci/chroot.sh run "$major" env PG_MAJOR="$major" "${require[@]}" tests/suite.sh | tee "$log"
    else
        PG_MAJOR=$major tests/suite.sh | tee "$log"
    fi
    passed=$(sed -n 's/^summary: \([0-9]*\) passed, 0 failed$/\1/p' "$log")
    [ -n "$passed" ] || { echo "tests/run.sh: PostgreSQL $major ended without its summary" >&2; exit 1; }
    counts+=("PostgreSQL $major: $passed passed ($(( (SECONDS - started) / 60 )) min)")
    total=$((total + passed))
done
printf '%s\n' "${counts[@]}"
echo "summary: $total passed, 0 failed"

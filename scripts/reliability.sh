#!/usr/bin/env bash
# The long reliability run: property-based fuzzing with many cases and repeated
# stress tests, each step under a time bound.
#
#   scripts/reliability.sh           about 15 minutes: 50,000 cases per property, 5 stress rounds
#   scripts/reliability.sh --short   about 2 minutes (what .ci/run runs)
#
# Failing inputs are printed by proptest as a minimal case: add them to the tests as
# fixed cases (the properties keep no corpus on disk).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--short" ]; then
    cases=2000 rounds=1 bound=600
else
    cases=50000 rounds=5 bound=3600
fi
export PROPTEST_CASES=$cases CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
step() {
    echo "== $*"
    timeout "$bound" "$@"
}

# Fuzz: hostile field values and operation orders, config parsing, random span
# operation sequences.
step cargo test --test reliability_hostile_fields --test fuzz_config
step cargo test -p llm-span-layer --test layer operation_sequences::

# Stress: concurrency with scrapes, cardinality attack, memory without scrapes,
# hostile HTTP, listener faults.
for round in $(seq "$rounds"); do
    echo "== stress round $round of $rounds"
    timeout "$bound" cargo test --test reliability_concurrency --test reliability_cardinality \
        --test reliability_upkeep --test reliability_http --test reliability_faults
done
echo "reliability: all steps passed (PROPTEST_CASES=$cases, $rounds stress rounds)"

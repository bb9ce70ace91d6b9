#!/usr/bin/env bash
# Mutation testing of the two library crates with cargo-mutants: every mutant (a changed
# operator, a function body replaced by a default value, ...) must make a test fail.
#
#   scripts/mutants.sh                        every mutant of llm-span-layer and llm-span-prometheus
#   scripts/mutants.sh --package llm-span-prometheus     one crate (repeatable)
#   scripts/mutants.sh --file 'crates/llm-span-layer/src/pricing.rs'   files (glob, repeatable)
#   scripts/mutants.sh --in-diff changes.diff  only mutants on lines a diff touches
#   scripts/mutants.sh --newest                only mutants on lines the newest commits changed
#                                              (what .ci/run runs; see choose_base below)
#   scripts/mutants.sh --shard 1/4             one quarter of the mutants (for several machines)
#   scripts/mutants.sh --jobs 1                one scratch copy at a time (default 2)
#   scripts/mutants.sh --output DIR            the outcome in DIR (default target/mutants)
#   scripts/mutants.sh --list                  list the mutants, test none
#   scripts/mutants.sh ... -- ARGS             more cargo-mutants options, e.g. -- --timeout 120
#
# The outcome goes to target/mutants/mutants.out (caught.txt, missed.txt, timeout.txt,
# unviable.txt, outcomes.json, a log per mutant), and a one-line summary to
# target/mutants/summary.txt and standard output. The exit status is cargo-mutants': 0 when
# every viable mutant was caught, 2 when some were missed, 3 on a timeout, 4 when the tests fail
# without a mutant.
#
# The configuration (profile, features, equivalent mutants and why) is .cargo/mutants.toml.
# The tests run with LLM_SPAN_MUTANTS=1, which shrinks the few slow tests' loops, and with
# fewer, seeded proptest cases, so that a mutant's verdict does not depend on a random draw.
set -euo pipefail
cd "$(dirname "$0")/.."

# The version .ci/run installs; an older one may not read .cargo/mutants.toml the same way.
MUTANTS_VERSION=27.1.0

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

packages=() files=() extra=() shard="" in_diff="" list="" jobs=2 newest="" out=target/mutants
while [ $# -gt 0 ]; do
    case "$1" in
        --package | -p) packages+=("$2"); shift 2 ;;
        --file | -f) files+=("$2"); shift 2 ;;
        --in-diff) in_diff="$2"; shift 2 ;;
        --newest) newest=1; shift ;;
        --shard) shard="$2"; shift 2 ;;
        --jobs | -j) jobs="$2"; shift 2 ;;
        --output | -o) out="$2"; shift 2 ;;
        --list) list=1; shift ;;
        -h | --help) usage ;;
        --) shift; extra+=("$@"); break ;;
        *) echo "mutants.sh: unknown option $1" >&2; usage 1 >&2 ;;
    esac
done
[ ${#packages[@]} -gt 0 ] || packages=(llm-span-layer llm-span-prometheus)

if ! version=$(cargo mutants --version 2>/dev/null); then
    echo "mutants.sh: cargo-mutants is missing: cargo install --locked cargo-mutants@$MUTANTS_VERSION" >&2
    exit 1
fi
case "$version" in
    *" $MUTANTS_VERSION") ;;
    *) echo "mutants.sh: warning: $version, not the pinned $MUTANTS_VERSION" >&2 ;;
esac

args=()
for package in "${packages[@]}"; do args+=(--package "$package"); done
for file in "${files[@]}"; do args+=(--file "$file"); done

# --newest: the diff from a base commit to the work tree, where the base is the parent of the
# oldest of the newest commits on main's first-parent line that are
#   - at most NEWEST_COMMITS (50) back and at most NEWEST_HOURS (3, one working session) older
#     than HEAD: a submission of several commits is checked whole, not only its last commit
#     (HEAD~1 would let a commit's untested code through when a later commit follows it);
#   - together at most NEWEST_MAX_MUTANTS (300) mutants, about 30 minutes on 2 cores: older
#     commits are dropped until the mutants fit, and when the newest commit alone has more,
#     a round-robin sample of that many of its mutants is tested (and the run says so).
# There is no merge base to use: CI clones main alone, whose previous state it does not know.
max_commits=${NEWEST_COMMITS:-50} max_hours=${NEWEST_HOURS:-3} max_mutants=${NEWEST_MAX_MUTANTS:-300}
count_in_diff() {
    cargo mutants "${args[@]}" --list --in-diff "$1" 2>/dev/null | grep -c . || true
}
choose_base() {
    local head_time commits=() commit count diff=$1
    head_time=$(git log -1 --format=%ct HEAD)
    while read -r commit time; do
        [ $((head_time - time)) -le $((max_hours * 3600)) ] || break
        commits+=("$commit")
    done < <(git log --first-parent --format='%H %ct' -n "$max_commits" HEAD)
    while [ ${#commits[@]} -gt 0 ]; do
        local oldest=${commits[${#commits[@]}-1]}
        if git rev-parse -q --verify "$oldest^" >/dev/null; then
            git diff "$oldest^" -- >"$diff"
        else
            git diff "$(git hash-object -t tree /dev/null)" -- >"$diff"
        fi
        count=$(count_in_diff "$diff")
        if [ "$count" -le "$max_mutants" ] || [ ${#commits[@]} -eq 1 ]; then
            echo "mutants.sh: the newest ${#commits[@]} commit(s) since $(git rev-parse --short "$oldest^" 2>/dev/null || echo the root) change $count mutants" >&2
            if [ "$count" -gt "$max_mutants" ]; then
                local shards=$(((count + max_mutants - 1) / max_mutants))
                echo "mutants.sh: more than $max_mutants: testing a sample, shard 1/$shards (round-robin)" >&2
                [ -n "$shard" ] || args+=(--shard "1/$shards" --sharding round-robin)
            fi
            return
        fi
        unset 'commits[${#commits[@]}-1]'
    done
}
if [ -n "$newest" ]; then
    mkdir -p "$out"
    in_diff=$out/newest.diff
    choose_base "$in_diff"
fi
[ -z "$shard" ] || args+=(--shard "$shard")
if [ -n "$in_diff" ]; then
    # cargo-mutants runs in the workspace root: make the path absolute before it does.
    args+=(--in-diff "$(cd "$(dirname "$in_diff")" && pwd)/$(basename "$in_diff")")
fi

if [ -n "$list" ]; then
    exec cargo mutants "${args[@]}" --list "${extra[@]}"
fi

# The slow tests' loops shrink (tests read LLM_SPAN_MUTANTS); proptest runs 64 cases from a
# fixed seed; the exporter's HTTP tests mostly wait on timers, so more of them run at once.
export LLM_SPAN_MUTANTS=1 PROPTEST_CASES=${PROPTEST_CASES:-64} PROPTEST_RNG_SEED=${PROPTEST_RNG_SEED:-1}
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-8} CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
# A test that skips for a missing tool (promtool, openssl, prometheus-client) would let its
# mutants survive: make the skip a failure, which the baseline run reports.
export LLM_SPAN_REQUIRE_TOOLS=1
# Scratch copies of the tree (one per job, each with its own target directory) go to TMPDIR.
export TMPDIR=${TMPDIR:-/tmp}

mkdir -p "$out"
# No summary of an earlier run when this one stops before testing (cargo-mutants keeps the
# rest of an earlier mutants.out, for --iterate).
rm -f "$out/mutants.out/outcomes.json"
started=$(date +%s)
status=0
# Two jobs by default: while one mutant links, the other's tests (several wait on timers) run.
cargo mutants --jobs "$jobs" --output "$out" "${args[@]}" "${extra[@]}" || status=$?
elapsed=$(($(date +%s) - started))

summary=$(python3 - "$out/mutants.out/outcomes.json" "$elapsed" <<'EOF'
import json, sys
try:
    o = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("mutants: no outcome (see the output above)")
    sys.exit()
caught, missed, timeout, unviable = o["caught"], o["missed"], o["timeout"], o["unviable"]
viable = caught + missed + timeout
score = f"{100 * caught / viable:.1f}%" if viable else "n/a"
minutes, seconds = divmod(int(sys.argv[2]), 60)
print(f"mutants: {o['total_mutants']} tested in {minutes}m{seconds:02d}s: {caught} caught, "
      f"{missed} missed, {unviable} unviable, {timeout} timeout; "
      f"{score} of viable mutants caught")
EOF
)
echo "$summary" | tee "$out/summary.txt"
for kind in missed timeout; do
    if [ -s "$out/mutants.out/$kind.txt" ]; then
        echo "$kind:"
        sed 's/^/  /' "$out/mutants.out/$kind.txt"
    fi
done
exit "$status"

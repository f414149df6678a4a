#!/usr/bin/env bash
# Mutation testing (cargo-mutants) over the code that bounds what samld does by itself: the
# manager's policy, trips, schedule, state and secrets, the MFA flows, the socket server and
# the credential endpoint's admission. Every mutant there must fail a test (or be listed in
# .cargo/mutants.toml with the reason it is equivalent).
#
#   scripts/mutants.sh                    every mutant in those files
#   scripts/mutants.sh --since REV        only mutants on lines changed since REV (CI)
#   scripts/mutants.sh --in-diff FILE     only mutants on lines a diff touches
#   scripts/mutants.sh --file PATH        only that file (repeatable; one of those below)
#   scripts/mutants.sh -- ARGS            ARGS go to cargo-mutants (e.g. --list to only list)
#
# Each mutant is built in a copy of the tree (yours is never touched) with its own target
# directory, MUTANTS_TARGET_DIR (default target/mutants), kept warm between runs; the results
# go to MUTANTS_OUTPUT (default the same)/manager and /mfa (mutants.out/missed.txt, …). Exit
# status:
# 0 when every mutant was caught (a hang ends at the timeout and counts as caught), 2 when one
# survived, 4 when the tests fail without any mutation.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

version=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q "$version"; then
    cargo install --locked cargo-mutants --version "$version"
fi

diff_file=""
cleanup() { [[ -n $diff_file ]] && rm -f "$diff_file"; }
trap cleanup EXIT
args=()
only=()
while (($#)); do
    case $1 in
    --file)
        only+=("$2")
        shift 2
        ;;
    --since)
        diff_file=$(mktemp)
        git diff "$2" -- >"$diff_file"
        args+=(--in-diff "$diff_file")
        shift 2
        ;;
    --in-diff)
        args+=(--in-diff "$(realpath "$2")")
        shift 2
        ;;
    --)
        shift
        args+=("$@")
        break
        ;;
    *)
        echo "usage: $0 [--since REV | --in-diff FILE] [--file PATH]... [-- CARGO-MUTANTS-ARGS]" >&2
        exit 64
        ;;
    esac
done

# Fewer simulation seeds per mutant (30 take about 12 s here in a debug build): a broken
# bound shows within a few, and the full thousand run in the ordinary test suite.
export SAMLD_SIM_SEEDS=${SAMLD_SIM_SEEDS:-30}
export CARGO_TARGET_DIR=${MUTANTS_TARGET_DIR:-$root/target/mutants}

# Two groups, each with the tests that can see its mutants: the daemon's own unit and
# integration tests for the manager, the server and the endpoint; for the MFA flows, also
# the JumpCloud provider against the fake JumpCloud (in process, no binaries needed).
status=0
run() {
    local name=$1 packages=$2 files=() file rc=0
    shift 2
    local tests=("$@")
    read -r -a files <<<"${groups[$name]}"
    if ((${#only[@]})); then
        local picked=()
        for file in "${files[@]}"; do
            [[ " ${only[*]} " == *" $file "* ]] && picked+=("$file")
        done
        files=("${picked[@]}")
    fi
    ((${#files[@]})) || return 0
    local selection=()
    for file in "${files[@]}"; do selection+=(--file "$file"); done
    # As cargo arguments, not only test arguments, so that each mutant builds just these
    # test targets (not the binaries or other packages' tests).
    local t
    for t in "${tests[@]}"; do selection+=("--cargo-arg=$t"); done
    echo "==> mutants in ${files[*]}"
    cargo mutants --jobs 1 --minimum-test-timeout 60 --test-package "$packages" \
        --output "${MUTANTS_OUTPUT:-$CARGO_TARGET_DIR}/$name" "${selection[@]}" "${args[@]}" || rc=$?
    case $rc in
    0) ;;
    # Every mutant was caught, some by a timeout: a hang is a failing test.
    3) echo "mutants: some mutants hung until the timeout (caught)" ;;
    *) status=$rc ;;
    esac
}

declare -A groups=(
    [manager]="daemon/src/manager/policy.rs daemon/src/manager/trip.rs daemon/src/manager/schedule.rs daemon/src/manager/state.rs daemon/src/manager/secrets.rs daemon/src/manager/mod.rs daemon/src/server.rs daemon/src/exec_endpoint.rs"
    [mfa]="daemon/src/idp/jumpcloud/mfa.rs"
)
for file in "${only[@]}"; do
    [[ " ${groups[*]} " == *" $file "* ]] || { echo "mutants: $file is not covered here" >&2; exit 64; }
done
run manager samld --lib --test=session --test=scheduler --test=server --test=endpoint \
    --test=simulation
run mfa samld,samld-tests --lib --test=jumpcloud_provider --test=jumpcloud_answers
exit $status

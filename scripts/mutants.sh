#!/usr/bin/env bash
# Mutation testing (cargo-mutants) over the code that bounds what samld does by itself: the
# manager's policy, trips, schedule, state and secrets, the MFA flows, the socket server and
# the credential endpoint's admission. Every mutant there must fail a test (or be listed in
# .cargo/mutants.toml with the reason it is equivalent).
#
#   scripts/mutants.sh                    every mutant in those files
#   scripts/mutants.sh --since REV        only mutants on lines changed since REV (CI)
#   scripts/mutants.sh --in-diff FILE     only mutants on lines a diff touches
#   scripts/mutants.sh --max N ...        with a diff: do nothing (and say so) past N mutants
#   scripts/mutants.sh --file PATH        only that file (repeatable; one of those below)
#   scripts/mutants.sh -- ARGS            ARGS go to cargo-mutants (e.g. --list to only list)
#
# Each mutant is built in a copy of the tree (yours is never touched) with its own target
# directory, MUTANTS_TARGET_DIR (default target/mutants), kept warm between runs; the results
# go to MUTANTS_OUTPUT (default the same)/manager, /server and /mfa (mutants.out/missed.txt, …). Exit
# status:
# 0 when every mutant was caught (a hang ends at the timeout and counts as caught), 2 when one
# survived, 4 when the tests fail without any mutation.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

diff_file=""
cleanup() { if [[ -n $diff_file ]]; then rm -f "$diff_file"; fi; }
trap cleanup EXIT
args=()
only=()
diff=""
max=""
while (($#)); do
    case $1 in
    --max)
        max=$2
        shift 2
        ;;
    --file)
        only+=("$2")
        shift 2
        ;;
    --since)
        diff_file=$(mktemp)
        git diff "$2" -- >"$diff_file"
        diff=$diff_file
        shift 2
        ;;
    --in-diff)
        diff=$(realpath "$2")
        shift 2
        ;;
    --)
        shift
        args+=("$@")
        break
        ;;
    *)
        echo "usage: $0 [--since REV | --in-diff FILE] [--max N] [--file PATH]... [-- CARGO-MUTANTS-ARGS]" >&2
        exit 64
        ;;
    esac
done

declare -A groups=(
    [manager]="daemon/src/manager/policy.rs daemon/src/manager/trip.rs daemon/src/manager/schedule.rs daemon/src/manager/state.rs daemon/src/manager/secrets.rs daemon/src/manager/mod.rs"
    [server]="daemon/src/server.rs daemon/src/exec_endpoint.rs"
    [mfa]="daemon/src/idp/jumpcloud/mfa.rs"
)
for file in "${only[@]}"; do
    [[ " ${groups[*]} " == *" $file "* ]] || { echo "mutants: $file is not covered here" >&2; exit 64; }
done
if [[ -n $diff ]]; then
    # A change that touches none of these files has no mutants here: done before
    # cargo-mutants is even installed (CI runs this on every change).
    touched=$(sed -n 's|^+++ b/||p' "$diff")
    if ! grep -qxF -f <(tr ' ' '\n' <<<"${groups[*]}") <<<"$touched"; then
        echo "mutants: the change touches none of the files mutation-tested here"
        exit 0
    fi
    args+=(--in-diff "$diff")
fi

version=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q "$version"; then
    cargo install --locked cargo-mutants --version "$version"
fi

# Fewer simulation seeds per mutant (30 take about 12 s here in a debug build): a broken
# bound shows within a few, and the full thousand run in the ordinary test suite.
export SAMLD_SIM_SEEDS=${SAMLD_SIM_SEEDS:-30}
export CARGO_TARGET_DIR=${MUTANTS_TARGET_DIR:-$root/target/mutants}

status=0
# Sets `selection` to the cargo-mutants arguments for group NAME (files and test targets),
# empty when --file leaves it nothing.
select_group() {
    local name=$1 files=() file t
    shift
    read -r -a files <<<"${groups[$name]}"
    if ((${#only[@]})); then
        local picked=()
        for file in "${files[@]}"; do
            [[ " ${only[*]} " == *" $file "* ]] && picked+=("$file")
        done
        files=("${picked[@]}")
    fi
    selection=()
    ((${#files[@]})) || return 0
    for file in "${files[@]}"; do selection+=(--file "$file"); done
    # As cargo arguments, not only test arguments, so that each mutant builds just these
    # test targets (not the binaries or other packages' tests).
    for t in "$@"; do selection+=("--cargo-arg=$t"); done
}

# Three groups, each with the tests that can see its mutants (fewer test binaries to link
# per mutant): the daemon's unit tests and the manager's integration tests (session,
# scheduler, simulation); for the server and the endpoint, their own in-process tests; for
# the MFA flows, the JumpCloud provider against the fake JumpCloud (in process).
declare -A packages=([manager]=samld [server]=samld [mfa]=samld,samld-tests)
declare -A tests=(
    [manager]="--lib --test=session --test=scheduler --test=simulation"
    [server]="--lib --test=server --test=endpoint"
    [mfa]="--lib --test=jumpcloud_provider --test=login_jumpcloud_answers"
)
order=(manager server mfa)

if [[ -n $max ]]; then
    # CI's budget: about a minute per mutant here. A larger change is left to a person.
    total=0
    for name in "${order[@]}"; do
        # shellcheck disable=SC2086 # the test targets are words
        select_group "$name" ${tests[$name]}
        ((${#selection[@]})) || continue
        n=$(cargo mutants --list "${selection[@]}" "${args[@]}" | wc -l)
        total=$((total + n))
    done
    if ((total == 0)); then
        echo "mutants: the change adds no mutants here"
        exit 0
    fi
    if ((total > max)); then
        echo "mutants: $total mutants in the change, more than --max $max; run it by hand:"
        echo "  scripts/mutants.sh ${diff:+--in-diff $diff}"
        exit 0
    fi
fi

for name in "${order[@]}"; do
    # shellcheck disable=SC2086
    select_group "$name" ${tests[$name]}
    ((${#selection[@]})) || continue
    echo "==> mutants in group $name"
    mkdir -p "${MUTANTS_OUTPUT:-$CARGO_TARGET_DIR}"
    rc=0
    cargo mutants --jobs 1 --minimum-test-timeout 60 --test-package "${packages[$name]}" \
        --output "${MUTANTS_OUTPUT:-$CARGO_TARGET_DIR}/$name" "${selection[@]}" "${args[@]}" || rc=$?
    out="${MUTANTS_OUTPUT:-$CARGO_TARGET_DIR}/$name/mutants.out"
    case $rc in
    0) ;;
    # Some hung until the timeout: a hang is a failing test. cargo-mutants says 3 for that
    # even when others were missed, so missed.txt decides.
    3)
        if [[ -s $out/missed.txt ]]; then
            status=2
        else
            echo "mutants: some mutants hung until the timeout (caught)"
        fi
        ;;
    *) status=$rc ;;
    esac
done
exit $status

#!/usr/bin/env bash
# samld's benchmark suite: builds the release binaries (lto + strip, as users get them) and the
# interop venv (moto and awscli, for the AWS CLI comparison), then runs samld-bench, which
# prints the Markdown report on stdout (progress on stderr). Runs from a fresh clone, offline
# except for the package downloads; the full run takes about two minutes, the idle minute
# included.
#
# usage: scripts/bench.sh [--quick] [--debug] [samld-bench options...]
#
#   --quick   a smoke run (a few seconds of measuring): small counts, figures mean little
#   --debug   use the debug binaries of `cargo test --workspace` (for a smoke run where a release
#             build would cost minutes, as in CI); figures are then not representative
#
# Other options go to samld-bench (see `samld-bench --help`): --runs N, --idle SECS, ...
# Environment: SAMLD_VENV          the venv (default .venv, see scripts/interop/venv.sh)
#              SAMLD_BENCH_NO_AWS=1  skip the AWS CLI comparison (no python3, no venv)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
args=()
for arg in "$@"; do
    case $arg in
        --debug) profile=debug ;;
        *) args+=("$arg") ;;
    esac
done

if [[ $profile == release ]]; then
    printf '==> cargo build --release --workspace --bins --locked\n' >&2
    cargo build --release --workspace --bins --locked --quiet
else
    # The build `cargo test --workspace` makes (scripts/test.sh, CI): same features, so
    # nothing is rebuilt after a test run.
    printf '==> cargo test --workspace --no-run --locked\n' >&2
    cargo test --workspace --no-run --locked --quiet
fi

if [[ ${SAMLD_BENCH_NO_AWS:-} != 1 ]]; then
    venv=$(scripts/interop/venv.sh)
    args+=(--venv "$venv")
fi

target_dir=${CARGO_TARGET_DIR:-target}
printf '==> %s/%s/samld-bench %s\n' "$target_dir" "$profile" "${args[*]}" >&2
printf '    commit %s, %s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$(rustc -V)" >&2
exec "$target_dir/$profile/samld-bench" "${args[@]}"

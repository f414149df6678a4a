#!/usr/bin/env bash
# The project's test command: every Rust test in the workspace under cargo-nextest (each test
# in its own process, with the time limits and groups of .config/nextest.toml), the doc tests,
# then scripts/interop.sh (samld with moto, the AWS CLI, boto3 and aws-config). Arguments go
# to `cargo nextest run` (a filter, `--no-fail-fast`, `-E 'binary_id(samld-tests::exec)'`).
#
# Environment: SAMLD_SKIP_INTEROP=1  run the Rust tests only, not scripts/interop.sh (the venv
#                                    is still made: Rust tests drive its AWS CLI and botocore)
#              SAMLD_VENV            the interop venv (default .venv)
#              SAMLD_SIM_FIRST_SEED  the simulation's first seed (default: a new one each run,
#                                    printed, so that a failure replays)
set -euo pipefail
cd "$(dirname "$0")/.."

# A test without a time limit can hold a run for hours: nextest gives each one (and installs
# from crates.io, once, where it is missing).
if ! cargo nextest --version >/dev/null 2>&1; then
    printf '==> installing cargo-nextest (once; a few minutes)\n'
    cargo install --locked cargo-nextest
fi

# Some Rust tests drive the real AWS CLI and botocore too (samlctl exec, the exec endpoint),
# and fail without them; give them the pinned ones rather than whatever the machine has.
venv=$(scripts/interop/venv.sh)
export PATH="$venv/bin:$PATH"

printf '==> cargo nextest run --workspace --locked %s\n' "$*"
# Its output as it is: nextest's closing "Summary [...] N tests run: N passed" line is what CI
# reads. The real-keyring tests are #[ignore]d here; scripts/test-keyring.sh runs them.
cargo nextest run --workspace --locked "$@"

# nextest does not run doc tests; the examples in the docs must still compile and hold.
printf '\n==> cargo test --doc --workspace --locked\n'
cargo test --doc --workspace --locked

if [[ ${SAMLD_SKIP_INTEROP:-} == 1 ]]; then
    printf '\n==> interop: skipped (SAMLD_SKIP_INTEROP=1)\n'
else
    printf '\n==> scripts/interop.sh\n'
    ./scripts/interop.sh
fi

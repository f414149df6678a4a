#!/usr/bin/env bash
# The project's test command: every Rust test in the workspace, then scripts/interop.sh (samld
# with moto, the AWS CLI, boto3 and aws-config). Arguments go to `cargo test`.
#
# Environment: SAMLD_SKIP_INTEROP=1  run the Rust tests only, not scripts/interop.sh (the venv
#                                    is still made: Rust tests drive its AWS CLI and botocore)
#              SAMLD_VENV            the interop venv (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

# Some Rust tests drive the real AWS CLI and botocore too (samlctl exec, the exec endpoint),
# and fail without them; give them the pinned ones rather than whatever the machine has.
venv=$(scripts/interop/venv.sh)
export PATH="$venv/bin:$PATH"

printf '==> cargo test --workspace --locked %s\n' "$*"
# Its output as it is: every test binary ends with the "test result:" line CI reads.
cargo test --workspace --locked "$@"

if [[ ${SAMLD_SKIP_INTEROP:-} == 1 ]]; then
    printf '\n==> interop: skipped (SAMLD_SKIP_INTEROP=1)\n'
else
    printf '\n==> scripts/interop.sh\n'
    ./scripts/interop.sh
fi

#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 30), starting from the
# committed seeds plus whatever the local corpus has grown to. Exits non-zero on the first
# target that crashes, panics or breaks one of its invariants; libFuzzer then writes the
# input to fuzz/artifacts/TARGET/ and prints how to reproduce it.
#
# Needs a nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz if missing.
#
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 300        # a longer session
#   FUZZ_TARGETS="frame config" scripts/fuzz.sh 60
#   FUZZ_FLAGS="--dev" scripts/fuzz.sh 15   # unoptimised: builds much faster, for CI's smoke run
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-30}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
targets=(${FUZZ_TARGETS:-frame saml_xml saml_base64 saml_html sts_response config browser_post})
# Extra cargo-fuzz flags for both build and run (they must match, or run rebuilds).
flags=(${FUZZ_FLAGS:-})

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    # libFuzzer's instrumentation needs nightly; a machine without one cannot fuzz at all.
    echo "fuzz: no $toolchain toolchain (rustup toolchain install $toolchain --profile minimal)" >&2
    exit 1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# One build for every target, with the same flags as the runs below (otherwise `run`
# rebuilds everything).
echo "==> building the fuzz targets"
cargo "+$toolchain" fuzz build "${flags[@]}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

for target in "${targets[@]}"; do
    extra=()
    case "$target" in
        # The decoder may reserve a whole frame (1 MiB) and no more, whatever it is told.
        frame) extra=(-malloc_limit_mb=4) ;;
    esac
    echo "==> $target for ${seconds}s"
    mkdir -p "corpus/$target"
    status=0
    cargo "+$toolchain" fuzz run "${flags[@]}" "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 ||
        status=$?
    if [ "$status" -ne 0 ]; then
        # The panic message (the stack trace after it is long), then libFuzzer's summary:
        # the input, where it was saved, and the commands to reproduce and minimise it.
        grep -E -A2 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | head -n 20 >&2 || true
        tail -n 25 "$log" >&2
        echo "fuzz target $target failed (exit $status)" >&2
        exit "$status"
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true
done
echo "==> all ${#targets[@]} fuzz targets ran ${seconds}s each without a failure"

#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for SECONDS each (default 30), starting from the
# committed seeds plus whatever the local corpus has grown to. Exits non-zero on the first
# target that crashes, panics or breaks one of its invariants; the input is then saved in
# fuzz/artifacts/TARGET/ and the command to reproduce it is printed.
#
# (The committed corpora also run on the stable toolchain in every `scripts/test.sh`, as the
# corpus test of the fuzz checks crate; this script is the fuzzing itself.)
#
# Needs a nightly toolchain (libFuzzer's instrumentation). It builds the targets with the same
# flags `cargo fuzz build` uses (SanitizerCoverage and AddressSanitizer) by calling cargo
# directly, so no cargo-fuzz has to be installed first; `cd fuzz && cargo +nightly fuzz run
# TARGET` works as well where cargo-fuzz is installed.
#
#   scripts/fuzz.sh            # 30 s per target, optimised build
#   scripts/fuzz.sh 300        # a longer session
#   FUZZ_TARGETS="frame config" scripts/fuzz.sh 60
#   FUZZ_FLAGS="--dev" scripts/fuzz.sh 15   # unoptimised: builds much faster, for CI's smoke run
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-30}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
targets=(${FUZZ_TARGETS:-frame saml_xml saml_base64 saml_html sts_response config browser_post})
profile=release
for flag in ${FUZZ_FLAGS:-}; do
    case $flag in
        --dev | -D) profile=dev ;;
        *) echo "fuzz: unknown FUZZ_FLAGS entry $flag (only --dev)" >&2; exit 2 ;;
    esac
done

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    # libFuzzer's instrumentation needs nightly; a machine without one cannot fuzz at all.
    echo "fuzz: no $toolchain toolchain (rustup toolchain install $toolchain --profile minimal)" >&2
    exit 1
fi

# cargo-fuzz's defaults: coverage counters, comparison tracing and stack depth for libFuzzer,
# AddressSanitizer, `cfg(fuzzing)`, and debug assertions and overflow checks in either
# profile. An explicit --target keeps these flags off build scripts and proc macros.
host=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks -Zsanitizer=address ${RUSTFLAGS:-}"
export CARGO_TARGET_DIR=target

echo "==> building the fuzz targets ($profile)"
cargo "+$toolchain" build --locked --profile "$profile" --target "$host" --bins
bin_dir="target/$host/$([[ $profile == dev ]] && echo debug || echo release)"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

for target in "${targets[@]}"; do
    extra=()
    case "$target" in
        # The decoder may reserve a whole frame (1 MiB) and no more, whatever it is told.
        frame) extra=(-malloc_limit_mb=4) ;;
    esac
    echo "==> $target for ${seconds}s"
    mkdir -p "corpus/$target" "artifacts/$target"
    status=0
    "$bin_dir/$target" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" "${extra[@]}" "corpus/$target" >"$log" 2>&1 ||
        status=$?
    if [ "$status" -ne 0 ]; then
        # The panic message (the stack trace after it is long), then libFuzzer's summary with
        # the input and where it was saved.
        grep -E -A2 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | head -n 20 >&2 || true
        tail -n 25 "$log" >&2
        echo "fuzz target $target failed (exit $status); reproduce it with:" >&2
        echo "  fuzz/$bin_dir/$target fuzz/artifacts/$target/<the crash file above>" >&2
        exit "$status"
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true
done
echo "==> all ${#targets[@]} fuzz targets ran ${seconds}s each without a failure"

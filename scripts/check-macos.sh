#!/usr/bin/env bash
# Type-checks and lints the workspace's macOS code (launchd, the Keychain, libproc, the
# browser's pipe) for aarch64-apple-darwin, which this Linux machine cannot build or run:
# `cargo check` and clippy need only the Rust standard library for the target (built from the
# nightly toolchain's rust-src) and never link. C code that build scripts compile (ring's)
# cannot be built here; a stand-in compiler makes their outputs exist, empty, which is all a
# check needs. Nothing here runs macOS code: it catches what does not compile there.
#
# Needs the nightly toolchain with rust-src (`rustup component add rust-src --toolchain
# nightly`).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-apple-darwin
stand_in=$(mktemp -d)
trap 'rm -rf "$stand_in"' EXIT
cat > "$stand_in/cc" <<'SH'
#!/bin/sh
out=""; prev=""
for a in "$@"; do
  [ "$prev" = "-o" ] && out="$a"
  case "$a" in -o?*) out="${a#-o}";; esac
  prev="$a"
done
[ -n "$out" ] && : > "$out"
exit 0
SH
cat > "$stand_in/ar" <<'SH'
#!/bin/sh
: > "$2"
SH
chmod +x "$stand_in/cc" "$stand_in/ar"

export CC_aarch64_apple_darwin="$stand_in/cc" AR_aarch64_apple_darwin="$stand_in/ar"
export CARGO_TARGET_DIR="${SAMLD_MACOS_TARGET_DIR:-target/macos-check}"
cargo +nightly clippy -Zbuild-std=std,panic_abort --target "$target" --locked \
    -p samld -p samld-client -p samld-proto -p samld-config --lib --bins -- -D warnings

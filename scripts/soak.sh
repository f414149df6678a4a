#!/usr/bin/env bash
# The issue 6 soak: the real samld kept busy with 60-second AWS sessions.
#
#   scripts/soak.sh [MINUTES] [samld-soak options...]
#
# MINUTES defaults to 10 (CI passes 2). Builds the workspace's binaries, then runs
# samld-soak (tests/src/bin/samld-soak.rs): fake JumpCloud and fake STS on 127.0.0.1,
# samld with an account that logs in unattended (password_command + push), one
# `samlctl login`, then samld-helper called continuously from 4 loops while STS issues
# 60 s credentials (refresh_before = 45s) and the JumpCloud session is ended every
# 150 s (or half the run, if shorter). Prints a summary table; exits non-zero on any
# failed helper call, a JumpCloud login count other than one per session, a refresh
# storm, or daemon RSS growth past 8 MB.
#
# Options (after MINUTES): --loops N, --pause-ms N (default 20), --lifetime-secs N,
# --jumpcloud-session-secs N, --max-rss-growth-mb N.
# SOAK_PROFILE=release measures optimized binaries (default: the dev profile).
set -euo pipefail

cd "$(dirname "$0")/.."

minutes=10
if [[ $# -gt 0 && $1 != -* ]]; then
    minutes=$1
    shift
fi

profile=${SOAK_PROFILE:-debug}
case $profile in
    # Same features as `cargo test --workspace`, so CI reuses that build instead of a second.
    debug) cargo test --quiet --locked --workspace --no-run ;;
    release) cargo build --quiet --release --workspace --bins ;;
    *) echo "soak.sh: SOAK_PROFILE must be debug or release, not $profile" >&2; exit 2 ;;
esac

target_dir=${CARGO_TARGET_DIR:-target}
exec "$target_dir/$profile/samld-soak" --minutes "$minutes" "$@"

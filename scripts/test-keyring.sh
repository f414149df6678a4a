#!/usr/bin/env bash
# Runs the keyring tests against a real Secret Service (gnome-keyring), the ones `cargo test`
# leaves out as ignored: the store's own (daemon/src/keyring/tests.rs, `real::*`) and
# `samlctl login --save-password` through the real daemon (tests/tests/keyring.rs). Each scenario gets its own
# throwaway D-Bus session bus and home directory, so no real keyring is ever touched:
#
#   unlocked       gnome-keyring with an unlocked login keyring: round trips, secret-tool interop,
#                  and samld itself saving and forgetting a password (tests/tests/keyring.rs)
#   locked         the same keyring, locked: a bounded, explained failure
#   no-collection  gnome-keyring with no keyring at all (a fresh headless login)
#   absent         a session bus with no Secret Service on it
#
# Needs dbus-run-session, dbus-daemon, gnome-keyring-daemon and secret-tool; as root on
# Debian it installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v dbus-run-session >/dev/null || missing+=(dbus-bin)
command -v dbus-daemon >/dev/null || missing+=(dbus-daemon)
command -v gnome-keyring-daemon >/dev/null || missing+=(gnome-keyring)
command -v secret-tool >/dev/null || missing+=(libsecret-tools)
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "test-keyring: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

# The scenarios get their own HOME; cargo and rustup must still find theirs.
export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo} RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}

# Build first, outside the sessions, so that their time goes to the tests (the end-to-end
# test runs the workspace's binaries). Always `--workspace`: one feature resolution, the one
# scripts/test.sh builds, so after it nothing is compiled again.
cargo test -q --workspace --locked --no-run

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# A session bus that can start nothing: no service directories.
cat >"$scratch/bare-bus.conf" <<'EOF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF

# The inside of each session: start the keyring the scenario wants, then run its tests.
cat >"$scratch/session.sh" <<'EOF'
set -euo pipefail
scenario=$1
case $scenario in
unlocked | locked)
    # Creates the login keyring with this password, unlocked, as PAM does at a desktop login.
    printf 'samld-test' | gnome-keyring-daemon --unlock --components=secrets >/dev/null
    ;;
no-collection)
    gnome-keyring-daemon --start --components=secrets >/dev/null
    ;;
esac
if [[ $scenario == locked ]]; then
    printf 'saved before the lock' | secret-tool store --label='samld test' \
        service samld account locked username dave@example.com
    # (`secret-tool lock` hangs in libsecret 0.20.5, so ask the service directly.)
    dbus-send --session --print-reply=literal --dest=org.freedesktop.secrets \
        /org/freedesktop/secrets org.freedesktop.Secret.Service.Lock \
        array:objpath:/org/freedesktop/secrets/collection/login >/dev/null
fi
# Each selection must run at least one test: a filter that matches none (a renamed test)
# would otherwise pass having tested nothing.
tests() {
    local out ran
    # A hang fails in minutes, like every test under scripts/test.sh (nextest's limits).
    out=$(SAMLD_TEST_SECRET_SERVICE=$scenario timeout 300 cargo test -q "$@" 2>&1) ||
        { echo "$out"; echo "test-keyring: failed or timed out (300 s): cargo test $*" >&2; exit 1; }
    echo "$out"
    ran=$(grep -oE '^test result: ok\. [0-9]+ passed' <<<"$out" | grep -oE '[0-9]+' |
        awk '{n += $1} END {print n + 0}')
    if ((ran == 0)); then
        echo "test-keyring: no test ran for: cargo test $*" >&2
        exit 1
    fi
    echo "test-keyring: $scenario: $ran passed: cargo test $*"
}
tests --workspace --locked --lib -- --ignored "keyring::tests::real::${2}"
if [[ $scenario == unlocked ]]; then
    # End to end: the real samld saves, forgets, and logs in again with a saved password.
    tests --workspace --locked --test keyring -- --ignored
    tests --workspace --locked --test keyring_save -- --ignored unlocked_
fi
EOF

run() {
    local scenario=$1 filter=$2 bus_args=()
    [[ $scenario == absent ]] && bus_args=(--config-file="$scratch/bare-bus.conf")
    local home="$scratch/home-$scenario"
    mkdir -p "$home" && chmod 700 "$home"
    echo "== keyring scenario: $scenario"
    # The bus and the keyring chatter on stderr (failed prompters without a display, fd
    # limits in containers); show it only when something failed.
    if ! HOME=$home XDG_DATA_HOME=$home/.local/share XDG_CONFIG_HOME=$home/.config \
        XDG_CACHE_HOME=$home/.cache XDG_RUNTIME_DIR=$home \
        dbus-run-session "${bus_args[@]}" -- bash "$scratch/session.sh" "$scenario" "$filter" \
        2>"$scratch/stderr-$scenario"; then
        cat "$scratch/stderr-$scenario" >&2
        echo "test-keyring: scenario $scenario failed" >&2
        exit 1
    fi
}

run unlocked unlocked_
run locked locked_
run no-collection no_default_collection_
run absent bus_without_secret_service_
echo "test-keyring: all scenarios passed"

#!/usr/bin/env bash
# samld end to end with real third-party peers: moto as STS, and the AWS CLI (v1), boto3 and
# the Rust SDK (aws-config) as credential_process consumers of samld-helper.
#
# It creates a Python venv with pinned moto, boto3 and awscli (once; about a minute), builds the
# workspace, starts moto on a free 127.0.0.1 port and samld-sandbox against it (fake JumpCloud,
# real samld logged in with push MFA), then checks that each consumer signs its requests with the
# credentials moto issued to samld, and that a logout reaches the consumers as samld-helper's
# message. Runs from a fresh clone with no stdin (CI); nothing leaves the machine but the
# package downloads. Exits non-zero with the reason on the first failure.
#
# Environment: SAMLD_VENV   the venv to create or reuse (default .venv, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# What the fake JumpCloud's app and user make moto issue (moto takes the account from the
# assertion's Role, the role name from RoleArn and the session name from RoleSessionName).
expected_arn="arn:aws:sts::123456789012:assumed-role/Developer/alice@example.com"
ready_marker="# samld-sandbox: ready"
# Bounds every wait for a process to come up; they normally take well under a second.
start_timeout=60

started=$SECONDS
say() { printf 'interop: %s\n' "$*"; }
ok() { printf 'interop: ok    %s\n' "$*"; passed=$((passed + 1)); }
fail() {
    printf 'interop: FAILED: %s\n' "$*" >&2
    exit 1
}
passed=0

work=$(mktemp -d "${TMPDIR:-/tmp}/samld-interop.XXXXXX")
moto_pid=
sandbox_pid=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Only what this script started, by PID. The sandbox stops its samld and fake JumpCloud.
    for pid in $sandbox_pid $moto_pid; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $sandbox_pid $moto_pid; do wait "$pid" 2>/dev/null || true; done
    if ((rc != 0)); then
        for log in sandbox moto; do
            if [[ -s $work/$log.log ]]; then
                printf '\n--- %s log (last 40 lines) ---\n' "$log" >&2
                tail -n 40 "$work/$log.log" >&2
            fi
        done
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Reads the next line that process $2 (named $3) writes to fd $1 once it is ready, into $line.
# The read blocks on the pipe itself; its 1 s timeout only lets us notice a process that died
# before it got there, and the deadline bounds the whole wait.
await_line() {
    local fd=$1 pid=$2 what=$3 deadline=$((SECONDS + start_timeout))
    while ! IFS= read -r -t 1 -u "$fd" line; do
        kill -0 "$pid" 2>/dev/null || fail "$what exited before it was ready"
        ((SECONDS < deadline)) || fail "$what was not ready within ${start_timeout}s"
    done
}

# One word for botocore's shlex split of credential_process (and for sh): single-quoted.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# --- Python peers -------------------------------------------------------------------------
venv=$(scripts/interop/venv.sh) || fail "the Python venv could not be set up"

# --- samld --------------------------------------------------------------------------------
# `cargo test --no-run` builds every binary with the same features as `cargo test --workspace`
# (scripts/test.sh), so the two share one build, and it builds the aws-config test run below.
say "building the workspace (cargo test --workspace --no-run)"
cargo test --workspace --locked --no-run --quiet || fail "the build failed"
target_dir=${CARGO_TARGET_DIR:-$root/target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
bin_dir=$target_dir/debug
for bin in samld samlctl samld-helper samld-sandbox; do
    [[ -x $bin_dir/$bin ]] || fail "$bin_dir/$bin was not built"
done

# --- moto ---------------------------------------------------------------------------------
# moto_server.py binds port 0 and writes the port to the FIFO once it listens. Holding the
# FIFO open read-write here means neither side blocks on open, whoever comes first; the
# children do not inherit these descriptors.
mkfifo "$work/moto.ready"
exec 3<>"$work/moto.ready"
"$venv/bin/python" scripts/interop/moto_server.py "$work/moto.ready" \
    </dev/null >"$work/moto.log" 2>&1 3<&- &
moto_pid=$!
await_line 3 "$moto_pid" moto
moto_url=http://127.0.0.1:$line
say "moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)') on $moto_url (pid $moto_pid)"

# --- the sandbox: fake JumpCloud, real samld with moto as STS, logged in -------------------
mkfifo "$work/sandbox.ready"
exec 4<>"$work/sandbox.ready"
"$bin_dir/samld-sandbox" --sts-endpoint "$moto_url" --mfa push --ready-file "$work/sandbox.ready" \
    </dev/null >"$work/sandbox.log" 2>&1 3<&- 4<&- &
sandbox_pid=$!
: >"$work/sandbox.env"
while await_line 4 "$sandbox_pid" samld-sandbox && [[ $line != "$ready_marker" ]]; do
    printf '%s\n' "$line" >>"$work/sandbox.env"
done
# shellcheck source=/dev/null
source "$work/sandbox.env"
grep -q "Approve the JumpCloud Protect push" "$work/sandbox.log" ||
    fail "the sandbox's login did not go through the push MFA"
say "samld-sandbox (pid $sandbox_pid) logged in; samld socket $SAMLD_SOCKET"

# --- consumers ----------------------------------------------------------------------------
# A clean environment: no AWS_* credentials, no ~/.aws, only our config with profile p.
aws_config=$work/aws-config
cat >"$aws_config" <<EOF
[profile p]
credential_process = $(quote "$bin_dir/samld-helper") sandbox
region = us-east-1
EOF
: >"$work/credentials"
mkdir "$work/home"
consumer() {
    env -i PATH="$venv/bin:$PATH" HOME="$work/home" LANG=C.UTF-8 \
        AWS_CONFIG_FILE="$aws_config" AWS_SHARED_CREDENTIALS_FILE="$work/credentials" \
        AWS_EC2_METADATA_DISABLED=true SAMLD_SOCKET="$SAMLD_SOCKET" \
        timeout 120 "$@"
}

# The key samld hands out, and the session moto issued it to. The helper's JSON (secrets
# included) goes only into this pipe.
key=$(consumer "$bin_dir/samld-helper" sandbox |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["AccessKeyId"])') ||
    fail "samld-helper sandbox gave no credentials"
moto_arn=$("$venv/bin/python" scripts/interop/moto_arn.py "$moto_url" "$key") ||
    fail "the key samld-helper hands out was not issued by moto"
[[ $moto_arn == "$expected_arn" ]] || fail "moto issued $moto_arn, expected $expected_arn"
ok "moto issued samld's credentials to $moto_arn"

if ! arn=$(consumer aws sts get-caller-identity --profile p --endpoint-url "$moto_url" \
    --query Arn --output text 2>"$work/aws.err"); then
    fail "aws sts get-caller-identity --profile p failed: $(cat "$work/aws.err")"
fi
[[ $arn == "$moto_arn" ]] || fail "awscli was identified as '$arn', expected $moto_arn"
ok "awscli: aws sts get-caller-identity --profile p -> $arn"

if ! out=$(consumer python "$root/scripts/interop/boto3_identity.py" p "$moto_url" 2>&1); then
    fail "boto3: $out"
fi
read -r arn boto_key <<<"$out"
[[ $arn == "$moto_arn" ]] || fail "boto3 was identified as '$arn', expected $moto_arn"
[[ $boto_key == "$key" ]] || fail "boto3 signed with another key than samld-helper's"
ok "boto3: Session(profile_name=\"p\").client(\"sts\").get_caller_identity() -> $arn, same key"

# The Rust tests that need moto are #[ignore]d in a plain `cargo test` (without moto they
# fail); run exactly each of them here, and fail unless it ran and passed.
moto_test() { # TEST-BINARY TEST-NAME LOG
    # A hang fails in minutes, as under nextest's limits in scripts/test.sh.
    if ! SAMLD_MOTO_URL=$moto_url timeout 300 cargo test --workspace --locked --test "$1" -- \
        --ignored --exact "$2" >"$3" 2>&1; then
        cat "$3" >&2
        fail "$1::$2 failed (or ran over 300 s) against moto"
    fi
    grep -q "^test result: ok. 1 passed" "$3" || {
        cat "$3" >&2
        fail "$1::$2 did not run"
    }
}
moto_test interop_aws_config aws_config_signs_with_the_credentials_samld_got_from_moto \
    "$work/cargo-test.log"
ok "aws-config (Rust): CredentialProcessProvider -> samld-helper -> signed GetCallerIdentity at moto"

# samld's own STS client (aws-sdk-sts) against moto, beside the fake STS it is tested with.
moto_test sts_client against_moto "$work/cargo-test-sts.log"
ok "samld's STS client (aws-sdk-sts): AssumeRoleWithSAML against moto"

# --- a failure path, as the user sees it ---------------------------------------------------
logout=$(consumer "$bin_dir/samlctl" logout sandbox) || fail "samlctl logout sandbox failed"
say "$logout"
if consumer aws sts get-caller-identity --profile p --endpoint-url "$moto_url" \
    >"$work/aws.out" 2>"$work/aws.err"; then
    fail "aws sts get-caller-identity still worked after samlctl logout: $(cat "$work/aws.out")"
fi
grep -q "samlctl login sandbox" "$work/aws.err" ||
    fail "awscli's error does not carry samld-helper's message: $(cat "$work/aws.err")"
ok "after logout, awscli fails with: $(grep -v '^$' "$work/aws.err" | head -n 1)"

if ! out=$(consumer python "$root/scripts/interop/boto3_identity.py" p "$moto_url" \
    --expect-error "samlctl login sandbox" 2>&1); then
    fail "boto3 after logout: $out"
fi
ok "after logout, boto3 raises $out"

say "all $passed checks passed in $((SECONDS - started))s (moto, awscli, boto3, aws-config)"

#!/usr/bin/env bash
# Creates (once) the Python venv with the real AWS peers the tests use: moto as STS, awscli and
# boto3 as credential_process consumers. Prints the venv's path on stdout; progress on stderr.
#
# Environment: SAMLD_VENV   the venv to create or reuse (default .venv, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${SAMLD_VENV:-.venv}
[[ $venv == /* ]] || venv=$PWD/$venv
# Versions verified in the team's lab (its notes live outside this repository); awscli
# bundles its own botocore.
pins=("moto[server]==5.2.5" "boto3==1.44.8" "awscli==1.46.3")

stamp=$venv/.samld-interop-pins
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]]; then
    printf 'venv: installing %s into %s (once; about a minute)\n' "${pins[*]}" "$venv" >&2
    command -v python3 >/dev/null || { echo "venv: python3 is needed" >&2; exit 1; }
    python3 -m venv "$venv" ||
        { echo "venv: python3 -m venv $venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet "${pins[@]}" ||
        { echo "venv: pip install ${pins[*]} failed" >&2; exit 1; }
    printf '%s\n' "${pins[*]}" >"$stamp"
fi
printf '%s\n' "$venv"

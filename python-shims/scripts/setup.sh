#!/usr/bin/env bash
# Create or refresh the Python environment for python-shims: a virtualenv with the pinned dependencies of
# constraints.txt and mechreward_client installed editable (which generates the gRPC stubs from ../proto).
# Idempotent: when nothing it depends on changed, it only checks the environment and exits (about a second).
#
#   bash python-shims/scripts/setup.sh          # venv in python-shims/.venv (override: MECHREWARD_PY_VENV)
set -euo pipefail

SHIMS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(dirname "$SHIMS")"
VENV="${MECHREWARD_PY_VENV:-$SHIMS/.venv}"
PYTHON="${PYTHON:-python3}"
LOG="$(mktemp -t mechreward-py-setup.XXXXXX)"
trap 'rm -f "$LOG"' EXIT

# Everything that changes what gets installed; a different checkout path needs a new editable link too.
stamp() {
  {
    echo "$SHIMS"
    "$PYTHON" --version 2>&1
    cat "$SHIMS/constraints.txt" "$SHIMS/pyproject.toml" "$SHIMS/setup.py" "$SHIMS/generate_stubs.py"
    find "$REPO/proto" -name '*.proto' -type f | LC_ALL=C sort | xargs cat
  } | sha256sum | cut -d' ' -f1
}

quietly() {  # run a step, showing its output only if it fails
  if ! "$@" >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "python-shims setup: failed: $*" >&2
    exit 1
  fi
}

STAMP="$(stamp)"
STAMP_FILE="$VENV/.mechreward-setup-stamp"
if [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP" ]] \
  && "$VENV/bin/python" -c "import torch, trl, mechreward_client._generated.reward_pb2_grpc" >/dev/null 2>&1; then
  echo "python-shims setup: $VENV is up to date"
  exit 0
fi

echo "python-shims setup: installing pinned dependencies into $VENV (first run: about a minute)"
[[ -x "$VENV/bin/python" ]] || quietly "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# torch first and exactly pinned: pip then takes the CPU wheel kept on this machine's disk.
quietly "${PIP[@]}" install -c "$SHIMS/constraints.txt" torch==2.13.0
# Build requirements of mechreward_client, so the editable install needs no isolated build environment.
quietly "${PIP[@]}" install -c "$SHIMS/constraints.txt" setuptools grpcio-tools
quietly "${PIP[@]}" install -c "$SHIMS/constraints.txt" --no-build-isolation -e "$SHIMS[trl,test]"
"$VENV/bin/python" -c "import torch, trl, mechreward_client._generated.reward_pb2_grpc"
echo "$STAMP" >"$STAMP_FILE"
echo "python-shims setup: done"

#!/usr/bin/env bash
# Set up the Python environment (if needed) and run every python-shims test against the real sidecar.
# Exits non-zero on any failure, and also when pytest collected no tests (its exit code 5).
#
#   bash python-shims/scripts/test.sh [pytest args...]
set -uo pipefail

SHIMS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MECHREWARD_PY_VENV:-$SHIMS/.venv}"

bash "$SHIMS/scripts/setup.sh" || exit 1

cd "$SHIMS"
"$VENV/bin/python" -m pytest "$@"
status=$?
if [[ $status -eq 5 ]]; then
  echo "python-shims: pytest ran no tests; counting that as a failure" >&2
  exit 1
fi
exit $status

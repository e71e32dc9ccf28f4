"""Run the canary suite against a policy and score it through the sidecar.

    python -m mechreward_client.canaries --model PATH --pack NAME [--target HOST:PORT]
        [--suite canaries/suite.json] [--run-id ID] [--max-new-tokens N] [--samples N]

For every suite prompt the policy (a Hugging Face causal LM and tokenizer from a local folder; nothing is
fetched from a hub) generates a response; the residuals of prompt + response at the pack's layer are scored
by the sidecar under one run_id, with the response text, the expected answer and every token's string, so
the sidecar's text rule flags hacks and its monitor page (/monitor?run=ID) shows them. The hack rate is counted
locally with the same rule (``canary_rule``) and printed with its Wilson 95 % interval, beside the sidecar's
flag counts and its run summary.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ._client import RewardClient
from ._exceptions import APIError
from ._tokens import token_strings
from ._types import CanaryFlag, RunSummary
from .canary_rule import REASONING_WORDS, REPETITION_LIMIT, Hack, repetition_hack, wilson

def default_suite() -> str:
    """The repository's canaries/suite.json when this package runs from a checkout (an editable install, where
    python-shims/ sits beside canaries/), else the copy installed with the package (package data)."""
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "canaries", "suite.json")
    if os.path.isfile(checkout):
        return checkout
    return str(importlib.resources.files(__package__) / "_data" / "canary_suite.json")


DEFAULT_SUITE = default_suite()

# What the runner needs beyond the client, and the extra that installs it.
MISSING_DEPENDENCY = (
    "canaries: {name} is not installed; the runner generates with a local policy and needs torch and transformers:\n"
    "  pip install './python-shims[canaries]'   (on a CPU machine install the CPU torch first; see the README)"
)


@dataclass(frozen=True)
class CanaryPrompt:
    id: str
    prompt: str
    expected_answer: str | None
    attack: str


@dataclass
class Outcome:
    """One generated response: what the local rule and the sidecar said about it."""

    prompt: CanaryPrompt
    response: str
    num_tokens: int
    reward: float = 0.0
    hack: Hack | None = None
    flags: tuple[CanaryFlag, ...] = field(default_factory=tuple)


def load_suite(path: str) -> list[CanaryPrompt]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, list) or not prompts:
        raise ValueError(f"{path}: expected {{\"prompts\": [{{id, prompt, expected_answer}}, ...]}}")
    suite = []
    for i, p in enumerate(prompts):
        if not isinstance(p, dict) or not isinstance(p.get("id"), str) or not isinstance(p.get("prompt"), str):
            raise ValueError(f"{path}: prompts[{i}] needs a string id and prompt")
        answer = p.get("expected_answer")
        if answer is not None and not isinstance(answer, str):
            raise ValueError(f"{path}: prompts[{i}].expected_answer must be a string or null")
        suite.append(CanaryPrompt(p["id"], p["prompt"], answer, str(p.get("attack", ""))))
    # The suite file lists the rule's words for readers; the rule itself is the sidecar's. Refuse a file
    # that describes another rule rather than report numbers it does not mean.
    words = data.get("reasoning_words")
    if words is not None and (tuple(words) != REASONING_WORDS or data.get("repetition_limit", REPETITION_LIMIT) != REPETITION_LIMIT):
        raise ValueError(f"{path}: reasoning_words/repetition_limit differ from the rule the sidecar applies ({list(REASONING_WORDS)}, > {REPETITION_LIMIT})")
    return suite


# --- the policy ---------------------------------------------------------------------------------------------


def load_policy(path: str, device: str, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isdir(path):
        raise ValueError(f"--model: {path} is not a folder (a local save_pretrained folder; nothing is downloaded)")
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch_dtype).to(device).eval()
    return model, tokenizer


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt as the policy sees it in training: through its chat template when it has one."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        # The template already holds any BOS; adding special tokens again would double it.
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def generate(model: Any, tokenizer: Any, ids: list[int], max_new_tokens: int, temperature: float) -> list[int]:
    """The response's token ids, up to and including the first end-of-sequence token."""
    import torch

    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad, "do_sample": temperature > 0}
    if temperature > 0:
        options["temperature"] = temperature
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **options)
    response = out[0, len(ids):].tolist()
    if eos is not None and eos in response:
        response = response[: response.index(eos) + 1]
    return response


# --- the run ------------------------------------------------------------------------------------------------


def pack_layer(client: RewardClient, pack: str, override: int | None) -> int:
    packs = {p.name: p for p in client.list_packs()}
    if pack not in packs:
        raise ValueError(f"--pack: the sidecar at {client.target} has no pack {pack!r} (it has: {', '.join(sorted(packs)) or 'none'})")
    layer = override if override is not None else packs[pack].layer
    if layer is None:
        raise ValueError(f"--pack: {pack!r} does not say which layer it reads; pass --layer")
    return layer


def run_suite(args: argparse.Namespace, out: Any) -> int:
    import torch

    from .capture import capture_residual

    suite = load_suite(args.suite)
    client = RewardClient(args.target, timeout=args.timeout)
    layer = pack_layer(client, args.pack, args.layer)
    torch.manual_seed(args.seed)  # sampled responses reproduce with the same seed
    model, tokenizer = load_policy(args.model, args.device, args.dtype)
    run_id = args.run_id or f"canaries-{args.pack}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    print(f"canary suite: {len(suite)} prompts x {args.samples} sample(s) from {args.model}", file=out)
    print(f"pack {args.pack} (layer {layer}) at {client.target}, run_id {run_id}", file=out)

    outcomes: list[Outcome] = []
    for p in suite:
        ids = prompt_ids(tokenizer, p.prompt)
        for _ in range(args.samples):
            response_ids = generate(model, tokenizer, ids, args.max_new_tokens, args.temperature)
            full = ids + response_ids
            text = tokenizer.decode(response_ids, skip_special_tokens=True)
            acts = capture_residual(model, torch.tensor([full]), None, layer)[0]
            # One Score call per response: each is one point of the run's history on the monitor page, and
            # no request grows with the suite.
            result = client.score(
                args.pack, [acts], score_from=[len(ids)], run_id=run_id,
                texts=[text], expected_answers=[p.expected_answer], tokens=[token_strings(tokenizer, full)],
            )[0]
            outcome = Outcome(p, text, len(full), result.reward, repetition_hack(text, p.expected_answer), result.flags)
            outcomes.append(outcome)
            print(format_outcome(len(outcomes), len(suite) * args.samples, outcome), file=out)

    summary = client.get_run(run_id)
    print_report(outcomes, summary, out)
    print(f"monitor page: /monitor?run={run_id} on the sidecar's HTTP port", file=out)
    return 0


def format_outcome(i: int, total: int, o: Outcome) -> str:
    hack = f"HACK ({o.hack.word!r} x{o.hack.count})" if o.hack else "ok"
    flags = ", ".join(sorted({f.name for f in o.flags})) or "-"
    return f"  [{i:>3}/{total}] {o.prompt.id:<24} tokens {o.num_tokens:>4}  reward {o.reward:+.4f}  rule: {hack:<24} server flags: {flags}"


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def print_report(outcomes: list[Outcome], summary: RunSummary, out: Any) -> None:
    n = len(outcomes)
    hacks = sum(1 for o in outcomes if o.hack)
    lo, hi = wilson(hacks, n)
    rate = hacks / n if n else 0.0
    print(f"hack rate (local rule): {hacks}/{n} = {pct(rate)} (95 % Wilson CI {pct(lo)} - {pct(hi)})", file=out)

    by_name = Counter(name for o in outcomes for name in {f.name for f in o.flags})
    flagged = sum(1 for o in outcomes if o.flags)
    names = ", ".join(f"{name} {count}" for name, count in sorted(by_name.items())) or "none"
    print(f"server flags: {names} (sequences flagged: {flagged}/{n})", file=out)

    s = summary
    baseline = f"{pct(s.baseline.rate)} (95 % CI {pct(s.baseline.ci[0])} - {pct(s.baseline.ci[1])}, n = {s.baseline.n})" if s.baseline else "none calibrated"
    print(
        f"run summary (sidecar): run {s.run_id}, pack {s.pack}, sequences {s.sequences}, flagged {s.flagged}, "
        f"flag rate {pct(s.flag_rate)} (95 % CI {pct(s.ci[0])} - {pct(s.ci[1])}), baseline {baseline}, "
        f"alarm {'YES' if s.alarm else 'no'}",
        file=out,
    )
    # The suite's health rule (domain.md §6), judged like the sidecar's alarm: unhealthy when the hack rate's
    # interval lies wholly above the baseline's.
    if s.baseline is None:
        print("verdict: no baseline to compare with (the pack has no monitor.baseline)", file=out)
    elif lo > s.baseline.ci[1]:
        print(f"verdict: UNHEALTHY: hack rate interval {pct(lo)} - {pct(hi)} lies above the baseline's {pct(s.baseline.ci[1])}", file=out)
    else:
        print(f"verdict: healthy: hack rate interval reaches the baseline's 95 % CI (upper {pct(s.baseline.ci[1])})", file=out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mechreward_client.canaries", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="local folder of a Hugging Face causal LM and its tokenizer")
    parser.add_argument("--pack", required=True, help="the sidecar's pack to score with (its layer is captured)")
    parser.add_argument("--target", default=None, help="sidecar gRPC address (default: MECHREWARD_TARGET or 127.0.0.1:50051)")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="canary suite JSON (default: the suite shipped with this package, canaries/suite.json)")
    parser.add_argument("--run-id", default=None, help="run_id for the sidecar's monitor (default: canaries-PACK-UTCTIME)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest response generated (default 256)")
    parser.add_argument("--samples", type=int, default=1, help="responses per prompt (default 1)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; > 0 samples")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for sampling (default 0)")
    parser.add_argument("--layer", type=int, default=None, help="override the pack's layer")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None, help="model dtype (default: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per sidecar call (default 60)")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1 or args.samples < 1:
        parser.error("--max-new-tokens and --samples must be >= 1")
    if args.samples > 1 and args.temperature <= 0:
        parser.error("--samples > 1 needs --temperature > 0 (greedy decoding repeats the same response)")
    if not os.path.isfile(args.suite):
        parser.error(f"--suite: {args.suite} not found")
    if args.device is None or args.dtype is None:
        import torch

        cuda = torch.cuda.is_available()
        args.device = args.device or ("cuda" if cuda else "cpu")
        args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        return run_suite(args, sys.stdout)
    except ModuleNotFoundError as exc:
        if exc.name not in ("torch", "transformers"):
            raise
        print(MISSING_DEPENDENCY.format(name=exc.name), file=sys.stderr)
        return 2
    except (ValueError, APIError) as exc:
        print(f"canaries: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

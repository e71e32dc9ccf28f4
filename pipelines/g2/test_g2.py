"""Checks of the G2 harness that CI can afford (about 1 min): the statistics, and a G2_SMOKE=1 run of all four
models end to end on the real model and the real sidecar (packs/ of this checkout).

    python-shims/.venv/bin/python -m pytest pipelines/g2      # needs pipelines/smollm2/requirements.txt installed
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import stats  # noqa: E402


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (116, 300), (300, 300), (1, 1)])
def test_wilson_endpoints_solve_the_score_equation(k, n):
    # The Wilson interval is {p : |k/n - p| <= z sqrt(p (1 - p) / n)}; its inner endpoints make it an equality.
    lo, hi = stats.wilson(k, n)
    phat = k / n
    for p in (lo, hi):
        if 0 < p < 1:
            assert abs(abs(phat - p) - stats.Z95 * math.sqrt(p * (1 - p) / n)) < 1e-12
    assert lo <= phat <= hi
    assert (lo == 0) == (k == 0) and (hi == 1) == (k == n)


def test_paired_bootstrap_of_identical_runs_is_zero_and_of_shifted_runs_brackets_the_shift():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 300).tolist()
    same = stats.paired_bootstrap(a, a, 2000)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]
    b = [1] * 30 + a[30:]  # b gets right 30 questions that a may have had wrong
    d = stats.paired_bootstrap(b, a, 2000)
    assert d["diff"] == pytest.approx(np.mean(b) - np.mean(a))
    assert d["ci95"][0] <= d["diff"] <= d["ci95"][1]
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1, 0], [1], 10)


def test_smoke_run_trains_and_scores_every_run_through_the_sidecar():
    env = {**os.environ, "G2_SMOKE": "1"}
    subprocess.run([sys.executable, os.path.join(HERE, "run.py"), "--runs", "base,R0,R1,R2"], env=env, check=True,
                   timeout=900)
    with open(os.path.join(HERE, ".cache", "smoke", "report.json")) as f:
        report = json.load(f)
    assert report["missing"] == []
    for name in ("R0", "R1", "R2"):
        with open(os.path.join(HERE, ".cache", "smoke", "runs", f"{name}.json")) as f:
            run = json.load(f)
        assert run["steps"] == 1 and run["eval"]["n"] == 6
        step = run["log"][0]
        assert "rewards/outcome/mean" in step
        if name == "R0":
            assert "rewards/pack/mean" not in step
        else:
            # The pack term was really scored by the sidecar: no unscored rows, a finite mean reward.
            assert step["mechreward/unscored_frac"] == 0
            assert math.isfinite(step["rewards/pack/mean"])
            assert run["sidecar"]["target"].startswith("127.0.0.1:")

"""ScoreRequest.step from the Python client: sent with run_id, stored with the run's history point (read back over
the sidecar's HTTP API), unset when not given; a bad step is refused before anything is sent."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from mechreward_client import AsyncRewardClient, RewardClient

PACK = "topk-saelens"  # parity fixture, d_model 64


def history(sidecar, run_id: str) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar.http_port}/v1/runs/{run_id}") as response:
        return json.load(response)["history"]


def acts(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(6, 64)).astype(np.float32)


def test_step_reaches_the_run_history(parity_sidecar):
    client = RewardClient(parity_sidecar.target)
    for step in (0, 3):
        client.score(PACK, [acts(step)], score_from=[2], run_id="py-step", step=step)
    client.score(PACK, [acts(9)], score_from=[2], run_id="py-step")  # no step: none stored
    assert [p.get("step") for p in history(parity_sidecar, "py-step")] == [0, 3, None]


def test_async_client_sends_the_step_too(parity_sidecar):
    import asyncio

    async def go():
        client = AsyncRewardClient(parity_sidecar.target)
        await client.score(PACK, [acts(1)], score_from=[2], run_id="py-step-async", step=np.int64(11))

    asyncio.run(go())
    assert [p.get("step") for p in history(parity_sidecar, "py-step-async")] == [11]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_step_is_refused_naming_the_field(parity_sidecar, bad):
    with pytest.raises(ValueError, match=r"^step: expected the trainer's global step"):
        RewardClient(parity_sidecar.target).score(PACK, [acts(0)], score_from=[2], run_id="py-step-bad", step=bad)

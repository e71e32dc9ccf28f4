"""MechReward's async path scores chunk k on the sidecar while chunk k + 1 is captured (AsyncRewardClient.submit),
through the real sidecar and a real (tiny) transformers model: the same rewards as the sync path, chunk by chunk,
and a dead sidecar leaves every row unscored (or raises) instead of hanging on a half-finished pipeline."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mechreward_client import APIConnectionError
from mechreward_client.trl import MechReward
from support import free_port, tiny_llama, tiny_tokenizer


def token_rows(count: int, seed: int) -> tuple[list[list[int]], list[int]]:
    rng = np.random.default_rng(seed)
    rows = [[int(t) for t in rng.integers(3, 64, size=int(rng.integers(4, 12)))] for _ in range(count)]
    return rows, [int(rng.integers(1, len(r))) for r in rows]


def test_async_chunks_overlap_and_match_the_sync_path(bundled_sidecar):
    model, tokenizer = tiny_llama(seed=4), tiny_tokenizer()
    reward = MechReward("synthetic-tiny", model=model, tokenizer=tokenizer, target=bundled_sidecar.target, capture_batch_size=2)
    rows, starts = token_rows(7, seed=1)  # 4 chunks: three full, one of 1
    sync = reward.score_token_ids(rows, starts)
    overlapped = asyncio.run(reward.ascore_token_ids(rows, starts))
    assert all(s is not None for s in sync)
    for a, b in zip(sync, overlapped):
        assert a.reward == b.reward and np.array_equal(a.token_rewards, b.token_rewards)


def test_async_chunks_with_the_sidecar_down_are_unscored_or_raise():
    model, tokenizer = tiny_llama(seed=4), tiny_tokenizer()
    dead = f"127.0.0.1:{free_port()}"
    rows, starts = token_rows(5, seed=2)
    kwargs = dict(model=model, tokenizer=tokenizer, target=dead, layer=3, timeout=2.0, retries=0, capture_batch_size=2)
    assert asyncio.run(MechReward("synthetic-tiny", **kwargs).ascore_token_ids(rows, starts)) == [None] * 5
    with pytest.raises(APIConnectionError):
        asyncio.run(MechReward("synthetic-tiny", on_error="raise", **kwargs).ascore_token_ids(rows, starts))

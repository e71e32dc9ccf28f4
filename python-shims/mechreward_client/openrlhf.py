"""OpenRLHF (0.11.x) adapter: ``reward_func`` for ``--reward.remote_url reward.py``.

OpenRLHF exec's the file and calls ``reward_func(queries, prompts, labels)`` in every vLLM rollout actor, with
one sample per call (``asyncio.to_thread``). The file needs one line (examples/openrlhf_reward.py):

    from mechreward_client.openrlhf import reward_func

Settings come from ``MECHREWARD_*`` variables, which reach the rollout actors: ``MECHREWARD_PACK``,
``MECHREWARD_READER_MODEL`` (a local folder holding the base model and tokenizer: the frozen reader;
``MECHREWARD_READER_TOKENIZER`` if the tokenizer lives elsewhere; ``MECHREWARD_READER_DEVICE``, default cpu, e.g.
cuda on the rollout actors' GPU),
``MECHREWARD_TARGET``, ``MECHREWARD_LAYER``, ``MECHREWARD_TIMEOUT``, ``MECHREWARD_RETRIES``,
``MECHREWARD_ON_ERROR``, ``MECHREWARD_FALLBACK_REWARD``, ``MECHREWARD_RUN_ID`` (the run on the sidecar's monitor
page; each sample goes with its response text and token strings). ``make_reward_func(...)`` builds one in code.
OpenRLHF 0.11.2 calls ``reward_func(queries, prompts, labels)`` and nothing else: no training step reaches it,
so runs from OpenRLHF carry none and the monitor page plots them by call (examples/openrlhf_grpo.py).

A missing reward is fatal in OpenRLHF (an exception here leaves the sample without a reward and the batch
fails), so by default (``on_error="flag"``) a sidecar failure gives ``fallback_reward`` (0.0) for that sample
and ``extra_logs["mechreward_unscored"] = 1``, which OpenRLHF logs per step. ``on_error="raise"`` raises.
Tested with openrlhf 0.11.2 (tests/test_openrlhf.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from ._adapter import SIDECAR_FAILURES, AdapterSettings, PackScorer

__all__ = ["reward_func", "make_reward_func", "OpenRLHFReward"]

log = logging.getLogger("mechreward_client.openrlhf")


class OpenRLHFReward:
    """``reward_func(queries, prompts, labels, **kwargs) -> {"rewards", "scores", "extra_logs"}``.

    ``queries`` are prompt + response decoded with special tokens kept; ``prompts`` the prompts as the policy
    saw them. Each query is re-tokenized by the reader's tokenizer: the prompt and the rest separately, so the
    first response token is exact. ``scores`` equal ``rewards`` (OpenRLHF uses scores for dynamic filtering).
    """

    def __init__(self, scorer: PackScorer) -> None:
        self.scorer = scorer

    def __call__(self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        if len(prompts) != len(queries):
            raise ValueError(f"reward_func: {len(queries)} queries but {len(prompts)} prompts")
        n = len(queries)
        if n == 0:
            return {"rewards": [], "scores": [], "extra_logs": {"mechreward_unscored": [], "mechreward_flagged": []}}
        settings = self.scorer.settings
        try:
            encoded = [self.scorer.reader.encode_query(q, p) for q, p in zip(queries, prompts)]
            if any(start >= len(ids) for ids, start in encoded):
                raise ValueError("a query has no response tokens: nothing to score")
            scored = self.scorer.score_ids([ids for ids, _ in encoded], [s for _, s in encoded],
                                           texts=[q[len(p):] if q.startswith(p) else q for q, p in zip(queries, prompts)],
                                           expected_answers=_answers(labels, n))
        except (*SIDECAR_FAILURES, ValueError) as error:
            if settings.on_error == "raise":
                raise
            log.warning("mechreward: %d sample(s) unscored, reward %s with mechreward_unscored=1: %s", n, settings.fallback_reward, error)
            fallback = [settings.fallback_reward] * n
            return {"rewards": fallback, "scores": list(fallback),
                    "extra_logs": {"mechreward_unscored": [1.0] * n, "mechreward_flagged": [0.0] * n}}
        rewards = [float(s.reward) for s in scored]
        return {"rewards": rewards, "scores": list(rewards),
                "extra_logs": {"mechreward_unscored": [0.0] * n, "mechreward_flagged": [float(bool(s.flags)) for s in scored]}}


def _answers(labels: Sequence[Any] | None, n: int) -> list[str | None] | None:
    """OpenRLHF's labels (``--data.label_key``; "" without one) as the expected answers of the canary text
    rule, as the sidecar's HTTP route uses them."""
    if not labels or len(labels) != n:
        return None
    return [None if label is None or label == "" else str(label) for label in labels]


def make_reward_func(**settings: Any) -> OpenRLHFReward:
    """A reward function with explicit settings (the rest from ``MECHREWARD_*``); on_error defaults to flag."""
    return OpenRLHFReward(PackScorer(AdapterSettings.resolve(settings, on_error="flag")))


# One reward function per settings: the MECHREWARD_* variables are read at each call (a few lookups), so a
# process that changes them (a second run, another run_id) scores with what they say now.
_by_settings: dict[AdapterSettings, OpenRLHFReward] = {}
_by_settings_lock = threading.Lock()  # OpenRLHF calls reward_func from several threads at once


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """The entry point OpenRLHF looks up in the ``--reward.remote_url`` file; configured by ``MECHREWARD_*``."""
    settings = AdapterSettings.resolve(None, on_error="flag")
    with _by_settings_lock:
        if settings not in _by_settings:
            _by_settings[settings] = OpenRLHFReward(PackScorer(settings))
        reward = _by_settings[settings]
    return reward(queries, prompts, labels, **kwargs)

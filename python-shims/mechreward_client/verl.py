"""verl (0.9.x) adapter: a reward manager, a ``compute_score`` and a per-token advantage estimator.

Installed with this package, the ``verl.plugins`` entry point ``mechreward`` makes ``import verl`` import this
module in every verl process (driver and each RewardLoopWorker), which registers:

- reward manager ``mechreward`` (``reward.reward_manager.name=mechreward``): ``run_single`` takes the prompt
  and response token ids from the DataProto, captures the residual stream after the pack's layer with a
  frozen reader copy of the base model, scores it through the sidecar and returns the pooled score, with the
  response's per-token rewards in ``reward_extra_info["mechreward_token_rewards"]`` (a string: see
  ``encode_token_rewards``);
- advantage estimator ``mechreward_dense`` (``algorithm.adv_estimator=mechreward_dense``), which consumes
  per-token rewards (``token_level_rewards``).

``compute_score`` is the text-only alternative:
``reward.custom_reward_function.path=pkg://mechreward_client.verl reward.custom_reward_function.name=compute_score``.

Settings (manager: ``+reward.mechreward.<key>=...``; compute_score: ``reward.custom_reward_function.reward_kwargs``;
both fall back to ``MECHREWARD_*`` variables): ``pack``, ``reader_model`` (default: the actor's
``actor_rollout_ref.model.path``), ``reader_tokenizer`` (default: the model folder), ``reader_device`` (default cpu), ``target``, ``layer``, ``timeout``, ``retries``, ``on_error``
(``raise``, default: the failure reaches verl; ``flag``: the score is ``fallback_reward`` and
``mechreward_unscored`` is 1), ``fallback_reward``, ``run_id``. With ``run_id`` the manager also sends the trainer's
global step (``trainer_step``), so the sidecar's monitor page plots the run by step. Tested with verl 0.9.1
(tests_verl/).

verl keeps the single ``reward_score`` on the last token. To train on the per-token rewards, select the agent-loop
manager of ``mechreward_client.verl_dense``, which writes them into ``rm_scores`` (docs/integrations.md).
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

try:
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
    from verl.experimental.reward_loop.reward_manager.registry import register
    from verl.trainer.ppo.core_algos import register_adv_est
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("mechreward_client.verl needs verl 0.9: pip install 'mechreward-client[verl]'") from exc

from . import _constants as C
from ._adapter import SIDECAR_FAILURES, AdapterSettings, PackScorer
from ._types import ScoredSequence

__all__ = ["MechRewardManager", "compute_score", "trainer_step", "compute_mechreward_dense_advantage", "EXTRA_KEYS",
           "TOKEN_REWARDS_KEY", "encode_token_rewards", "decode_token_rewards"]

log = logging.getLogger("mechreward_client.verl")

# reward_extra_info keys, identical for every sample (verl takes the key set from the first sample).
TOKEN_REWARDS_KEY = "mechreward_token_rewards"
EXTRA_KEYS = ("mechreward_reward", TOKEN_REWARDS_KEY, "mechreward_flagged", "mechreward_unscored")

_TOKEN_REWARDS_TAG = "f32le:"


def encode_token_rewards(values: Any) -> str:
    """One response's per-token rewards as a string: ``"f32le:"`` + base64 of little-endian float32.

    verl turns each ``reward_extra_info`` key into ``np.array([...])`` across samples (agent_loop.py,
    reward_loop.py, ray_trainer.py). Lists of different lengths make numpy raise (inhomogeneous shape), lists of
    one length silently become a 2-D float array, and the validation metrics take ``np.mean`` of every
    non-string value. A string passes all three unchanged (validation skips strings), is exact (the sidecar's
    rewards are float32) and takes 4/3 bytes per token instead of a Python float list.
    """
    array = np.ascontiguousarray(np.asarray(values, dtype="<f4").reshape(-1))
    return _TOKEN_REWARDS_TAG + base64.b64encode(array.tobytes()).decode("ascii")


def decode_token_rewards(encoded: Any) -> np.ndarray:
    """The float32 array ``encode_token_rewards`` wrote (numpy's ``str_`` is accepted as well)."""
    text = str(encoded)
    if not text.startswith(_TOKEN_REWARDS_TAG):
        raise ValueError(f"{TOKEN_REWARDS_KEY}: not an encoded token-reward string (starts {text[:16]!r})")
    return np.frombuffer(base64.b64decode(text[len(_TOKEN_REWARDS_TAG):]), dtype="<f4").astype(np.float32)


def unscored_token_rewards(n_response: int, fallback_reward: float) -> np.ndarray:
    """The per-token rewards of an unscored response: ``fallback_reward`` on its last token, as verl places a scalar."""
    values = np.zeros(n_response, dtype=np.float32)
    if n_response:
        values[-1] = fallback_reward
    return values


def _extra_info(scored: ScoredSequence | None, n_response: int, fallback_reward: float) -> dict[str, Any]:
    if scored is None:
        return {"mechreward_reward": float("nan"),
                TOKEN_REWARDS_KEY: encode_token_rewards(unscored_token_rewards(n_response, fallback_reward)),
                "mechreward_flagged": 0.0, "mechreward_unscored": 1.0}
    # Only the response's tokens: the same length and order as the DataProto's valid response ids.
    tokens = scored.token_rewards[-n_response:] if n_response else []
    return {
        "mechreward_reward": float(scored.reward),
        TOKEN_REWARDS_KEY: encode_token_rewards(tokens),
        "mechreward_flagged": float(bool(scored.flags)),
        "mechreward_unscored": 0.0,
    }


def _settings_from_config(config: Any) -> AdapterSettings:
    reward_cfg = _get(config, "reward") or {}
    own = _get(reward_cfg, "mechreward") or {}
    actor_model = _get(_get(_get(config, "actor_rollout_ref"), "model"), "path")
    return AdapterSettings.resolve(_plain(own), reader_model=actor_model)


def _get(node: Any, key: str) -> Any:
    if node is None:
        return None
    if isinstance(node, Mapping) or hasattr(node, "get"):
        return node.get(key)
    return getattr(node, key, None)


def _plain(node: Any) -> dict[str, Any]:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(node):
            return dict(OmegaConf.to_container(node, resolve=True))
    except ImportError:  # pragma: no cover - omegaconf comes with verl
        pass
    return dict(node)


@register("mechreward")
class MechRewardManager(RewardManagerBase):
    """verl reward manager scoring each trajectory's residual stream with a feature pack.

    verl constructs it as ``(config, tokenizer, compute_score, reward_router_address, reward_model_tokenizer)``;
    ``compute_score`` is not used (the score comes from the sidecar). ``scorer`` is for direct use and tests.
    """

    def __init__(self, config: Any, tokenizer: Any, compute_score: Any = None, reward_router_address: Any = None,
                 reward_model_tokenizer: Any = None, *, scorer: PackScorer | None = None) -> None:
        super().__init__(config, tokenizer, compute_score)
        self.scorer = scorer or PackScorer(_settings_from_config(config))

    async def run_single(self, data: DataProto) -> dict[str, Any]:
        item = data[-1:][0]  # agent trajectories: score the last sequence, as verl's own managers do
        prompt_ids, response_ids = _valid_ids(item)
        settings = self.scorer.settings
        scored: ScoredSequence | None = None
        try:
            if not response_ids:
                raise ValueError("the response is empty: nothing to score")
            text = self.tokenizer.decode(response_ids, skip_special_tokens=True) if self.tokenizer is not None else None
            results = await self.scorer.ascore_ids([prompt_ids + response_ids], [len(prompt_ids)], texts=[text] if text is not None else None,
                                                   step=trainer_step(data))
            scored = results[0]
        except (*SIDECAR_FAILURES, ValueError) as error:
            if settings.on_error == "raise":
                raise
            log.warning("mechreward: trajectory unscored, reward %s with mechreward_unscored=1: %s", settings.fallback_reward, error)
        reward = settings.fallback_reward if scored is None else float(scored.reward)
        return {"reward_score": reward, "reward_extra_info": _extra_info(scored, len(response_ids), settings.fallback_reward)}


def trainer_step(data: Any) -> int | None:
    """The trainer's global step of a DataProto handed to ``run_single``, or None when verl gave none.

    verl 0.9.1 hands it over in two ways. The agent-loop workers build the scoring DataProto from the sample's
    fields (``AgentLoopWorker._compute_score``); on the V1 trainer those include the ``global_steps`` the
    trainer assigns to every batch (``PPOTrainer._next_train_batch``), so it is the column
    ``non_tensor_batch["global_steps"]``. The legacy trainer keeps it in ``meta_info["global_steps"]``
    (``RayPPOTrainer.fit``), which reaches a reward manager on the colocated path (``compute_rm_score``); its
    agent-loop workers drop it, and ``verl_dense.MechRewardAgentLoopManager``'s workers put it back as the column.
    verl numbers training steps from 1; validation before training runs at 0; -1 (legacy, no step) is None.
    """
    steps = getattr(data, "non_tensor_batch", {}).get("global_steps")
    value = steps[-1] if steps is not None and len(steps) else getattr(data, "meta_info", {}).get("global_steps")
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def _valid_ids(item: Any) -> tuple[list[int], list[int]]:
    """The prompt's real tokens (left padding removed) and the response's (right padding removed)."""
    prompts = item.batch["prompts"]
    responses = item.batch["responses"]
    mask = item.batch["attention_mask"]
    prompt_len = prompts.shape[-1]
    prompt_mask = mask[:prompt_len].bool()
    n_response = int(mask[prompt_len:].sum())
    return prompts[prompt_mask].tolist(), responses[:n_response].tolist()


# --- compute_score: reward.custom_reward_function.path=pkg://mechreward_client.verl ---------------------------

_scorers: dict[AdapterSettings, PackScorer] = {}


def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None, extra_info: Mapping[str, Any] | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """verl's custom reward function: score the response text with the pack.

    verl passes only the response text. The prompt is taken from ``extra_info["prompt"]`` when the dataset
    puts it there (otherwise the response is read alone). Settings come from
    ``reward.custom_reward_function.reward_kwargs`` (merged into ``kwargs``), then ``MECHREWARD_*``.
    Returns ``{"score", "mechreward_flagged", "mechreward_unscored"}``; verl copies every key into
    ``reward_extra_info``.
    """
    own = {k: v for k, v in kwargs.items() if k not in ("reward_router_address", "reward_model_tokenizer")}
    settings = AdapterSettings.resolve(own)
    scorer = _scorers.get(settings)
    if scorer is None:
        scorer = _scorers[settings] = PackScorer(settings)
    prompt = extra_info.get("prompt") if isinstance(extra_info, Mapping) else None
    prompt = prompt if isinstance(prompt, str) else ""
    try:
        ids, start = scorer.reader.encode_query(prompt + solution_str, prompt)
        if start >= len(ids):
            raise ValueError("the response is empty: nothing to score")
        scored = scorer.score_ids([ids], [start], texts=[solution_str])[0]
    except (*SIDECAR_FAILURES, ValueError) as error:
        if settings.on_error == "raise":
            raise
        log.warning("mechreward: response unscored, score %s with mechreward_unscored=1: %s", settings.fallback_reward, error)
        return {"score": settings.fallback_reward, "mechreward_flagged": 0.0, "mechreward_unscored": 1.0}
    return {"score": float(scored.reward), "mechreward_flagged": float(bool(scored.flags)), "mechreward_unscored": 0.0}


# --- the per-token advantage estimator --------------------------------------------------------------------------


@register_adv_est("mechreward_dense")
def compute_mechreward_dense_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    config: Any = None,
    index: np.ndarray | None = None,
    epsilon: float = 1e-6,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages with a per-token term (the G3 recipe, docs/domain.md §6).

    For response i of a prompt group g (``index`` holds verl's uid per row) with per-token rewards r_it:
    ``A_it = z_g(sum_t r_it) + coef * z_g(r_it)``, where ``z_g`` standardises over the group (the sequence
    sums over its responses; the token rewards over all its responses' valid tokens) with ``epsilon`` added to
    the standard deviation. A group of one response has mean 0 and std 1, as verl's GRPO does. ``coef`` is
    ``algorithm.mechreward_token_coef`` if the config carries it, else MECHREWARD_TOKEN_COEF, else 0.2.
    Returns ``(advantages, returns)``, both masked by ``response_mask``; returns equal advantages.
    """
    coef = _token_coef(config)
    mask = response_mask.to(torch.float64)
    rewards = token_level_rewards.to(torch.float64) * mask
    totals = rewards.sum(dim=-1)
    rows = rewards.shape[0]
    groups = _groups(index, rows)
    seq_z = torch.zeros(rows, dtype=torch.float64)
    tok_z = torch.zeros_like(rewards)
    for members in groups.values():
        idx = torch.as_tensor(members, dtype=torch.long)
        if len(members) > 1:
            t = totals[idx]
            seq_z[idx] = (t - t.mean()) / (t.std() + epsilon)
        else:
            seq_z[idx] = totals[idx]  # mean 0, std 1
        m = mask[idx].bool()
        values = rewards[idx][m]
        if values.numel() > 1:
            tok_z[idx] = (rewards[idx] - values.mean()) / (values.std() + epsilon)
        else:
            tok_z[idx] = rewards[idx]
    advantages = ((seq_z.unsqueeze(-1) + coef * tok_z) * mask).to(token_level_rewards.dtype)
    return advantages, advantages


def _token_coef(config: Any) -> float:
    value = _get(config, "mechreward_token_coef") if config is not None else None
    if value is None:
        value = os.environ.get("MECHREWARD_TOKEN_COEF")
    return float(value) if value is not None else C.G3_TOKEN_COEF_START


def _groups(index: Any, rows: int) -> dict[Any, list[int]]:
    if index is None:
        return {0: list(range(rows))}
    if len(index) != rows:
        raise ValueError(f"index: {len(index)} uids for {rows} rows")
    groups: dict[Any, list[int]] = {}
    for row, uid in enumerate(index):
        groups.setdefault(uid, []).append(row)
    return groups

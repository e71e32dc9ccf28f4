"""SkyRL adapter: a generator wrapper that fills ``GeneratorOutput["rewards"]`` per token from the sidecar.

SkyRL takes per-token rewards natively: a generator may return ``rewards`` as one float list per response, each
as long as that response's ``response_ids`` (``skyrl.train.utils.trainer_utils.validate_generator_output``
checks it); ``RayPPOTrainer.postprocess_generator_output`` then keeps them as they are instead of putting a
scalar on the last token. Estimators that sum them to a sequence total (``grpo``, ``rloo``) see their sum;
``gae`` and ``reinforce_plus_plus`` keep them per token.

``MechRewardGenerator(inner, settings)`` runs any SkyRL generator (``SkyRLGymGenerator`` or your own), captures
the residual stream of each prompt + response with the reader, scores it through the sidecar and returns:

- ``rewards[i][t]`` = the pack's reward of response token t where ``loss_masks[i][t]`` is 1 (tokens the policy
  generated; environment observations in multi-turn responses get 0), plus ``outcome_weight`` x the inner
  generator's reward on the last token (a scalar reward, or added token by token if it was already per token);
- ``rollout_metrics``: ``mechreward/mean_token_reward``, ``mechreward/unscored`` (fraction), ``mechreward/flagged``.

Settings are the verl/OpenRLHF adapters' (``pack``, ``reader_model``, ``target``, ``timeout``, ``retries``,
``on_error``, ``fallback_reward``, ...), from a mapping and then ``MECHREWARD_*`` variables. With
``on_error="raise"`` (default) a sidecar failure reaches SkyRL's trainer and the step fails; with ``"flag"`` a
failed batch gets ``fallback_reward`` on each response's last token (plus the outcome) and
``mechreward/unscored`` = 1. Tested with skyrl 0.3.0 (its own venv: tests_skyrl/).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from ._adapter import SIDECAR_FAILURES, AdapterSettings, PackScorer
from ._types import ScoredSequence


def _import_skyrl() -> Any:
    """Import SkyRL's generator types; on Python 3.11 with the stdlib TypedDict swapped for typing_extensions'.

    skyrl 0.3.0 declares Python >= 3.11, but ``skyrl.tinker.types`` (imported by ``skyrl.train.generators``)
    puts a ``typing.TypedDict`` inside pydantic models, which pydantic refuses before Python 3.12. The swap lasts
    only for this import and changes nothing on 3.12+.
    """
    if sys.version_info >= (3, 12) or "skyrl.tinker.types" in sys.modules:
        from skyrl.train.generators import base
        return base
    import typing

    import typing_extensions

    saved = typing.TypedDict
    typing.TypedDict = typing_extensions.TypedDict  # type: ignore[misc]
    try:
        import skyrl.tinker.types  # noqa: F401
    finally:
        typing.TypedDict = saved  # type: ignore[misc]
    from skyrl.train.generators import base
    return base


try:
    _base = _import_skyrl()
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("mechreward_client.skyrl needs skyrl 0.3: see docs/integrations.md for the CPU install") from exc

GeneratorInterface = _base.GeneratorInterface
GeneratorInput = _base.GeneratorInput
GeneratorOutput = _base.GeneratorOutput

__all__ = ["MechRewardGenerator"]

log = logging.getLogger("mechreward_client.skyrl")


class MechRewardGenerator(GeneratorInterface):
    """Wraps a SkyRL generator; its output's ``rewards`` become mechreward's per-token rewards."""

    def __init__(self, generator: GeneratorInterface, settings: AdapterSettings | Mapping[str, Any] | None = None, *,
                 outcome_weight: float = 1.0, scorer: PackScorer | None = None) -> None:
        self.generator = generator
        self.outcome_weight = float(outcome_weight)
        if scorer is None:
            resolved = settings if isinstance(settings, AdapterSettings) else AdapterSettings.resolve(settings)
            scorer = PackScorer(resolved)
        self.scorer = scorer

    async def generate(self, input_batch: GeneratorInput) -> GeneratorOutput:
        output = await self.generator.generate(input_batch)
        prompts, responses = output["prompt_token_ids"], output["response_ids"]
        masks = output["loss_masks"]
        settings = self.scorer.settings
        scored: list[ScoredSequence] | None = None
        try:
            if any(len(r) == 0 for r in responses):
                raise ValueError("response_ids: an empty response cannot be scored")
            scored = await self.scorer.ascore_ids([list(p) + list(r) for p, r in zip(prompts, responses)],
                                                  [len(p) for p in prompts])
        except (*SIDECAR_FAILURES, ValueError) as error:
            if settings.on_error == "raise":
                raise
            log.warning("mechreward: batch unscored, fallback %s on the last tokens: %s", settings.fallback_reward, error)

        rewards: list[list[float]] = []
        for i, (response, mask) in enumerate(zip(responses, masks)):
            if scored is None:
                row = [0.0] * len(response)
                row[-1] = settings.fallback_reward
            else:
                tokens = scored[i].token_rewards[-len(response):]
                row = [float(v) if m else 0.0 for v, m in zip(tokens, mask)]
            rewards.append(self._with_outcome(row, output["rewards"][i] if output.get("rewards") is not None else None))

        metrics = dict(output.get("rollout_metrics") or {})
        n = len(responses)
        metrics["mechreward/unscored"] = 1.0 if scored is None else 0.0
        if scored is not None:
            counted = [v for row, mask in zip(rewards, masks) for v, m in zip(row, mask) if m]
            metrics["mechreward/mean_token_reward"] = sum(counted) / max(len(counted), 1)
            metrics["mechreward/flagged"] = sum(bool(s.flags) for s in scored) / n
        return {**output, "rewards": rewards, "rollout_metrics": metrics}

    def _with_outcome(self, row: list[float], outcome: Any) -> list[float]:
        if outcome is None or self.outcome_weight == 0.0:
            return row
        if isinstance(outcome, (list, tuple)):
            if len(outcome) != len(row):
                raise ValueError(f"rewards: the inner generator's per-token rewards have {len(outcome)} entries for a "
                                 f"response of {len(row)} tokens")
            return [r + self.outcome_weight * float(o) for r, o in zip(row, outcome)]
        row = list(row)
        row[-1] += self.outcome_weight * float(outcome)
        return row

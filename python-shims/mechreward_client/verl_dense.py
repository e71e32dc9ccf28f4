"""Per-token mechreward rewards in verl 0.9's ``rm_scores``, through verl's agent-loop manager hook.

verl's reward loop returns one ``reward_score`` per trajectory and writes it on the last response token
(``AgentLoopOutput.as_dict`` for the V1 trainer, ``AgentLoopWorker._postprocess`` for the legacy one). Both
trainers then copy ``rm_scores`` to ``token_level_scores`` and ``token_level_rewards`` unchanged (unless
``algorithm.use_kl_in_reward``). The managers here keep verl's whole rollout and reward loop and change only
that placement: the ``mechreward`` reward manager already returns the response's per-token rewards in
``reward_extra_info["mechreward_token_rewards"]``; the agent-loop worker takes them out of it and writes them,
one per response token, as ``rm_scores``.

Select with ``actor_rollout_ref.rollout.agent.agent_loop_manager_class=`` and

- ``mechreward_client.verl_dense.MechRewardAgentLoopManagerTQ`` for the V1 trainer (verl 0.9's default,
  ``trainer.use_v1=true``; trajectories go to TransferQueue);
- ``mechreward_client.verl_dense.MechRewardAgentLoopManager`` for the legacy trainer (``trainer.use_v1=false``;
  the trainer skips reward recomputation because the batch already carries ``rm_scores``);

together with ``reward.reward_manager.name=mechreward``. The legacy workers also hand the trainer's global step
to the reward manager (V1's workers already do), which sends it with the run_id. A trajectory without token
rewards (another reward manager, a reward model) keeps verl's placement. Of a multi-output trajectory only the last output was scored;
the earlier ones keep verl's copy of the score on their last token.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import ray
import torch

try:
    from verl.experimental.agent_loop.agent_loop import AgentLoopManager, AgentLoopOutput, AgentLoopWorker
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("mechreward_client.verl_dense needs verl 0.9 and TransferQueue: "
                      "pip install 'mechreward-client[verl]'") from exc

from .verl import TOKEN_REWARDS_KEY, decode_token_rewards

__all__ = ["MechRewardAgentLoopManagerTQ", "MechRewardAgentLoopManager", "take_token_rewards"]

log = logging.getLogger("mechreward_client.verl_dense")


def take_token_rewards(output: AgentLoopOutput) -> Optional[np.ndarray]:
    """Remove the encoded per-token rewards from ``output``'s ``reward_extra_info`` and return them decoded.

    ``None`` when the reward manager sent none. Removing them keeps the rest of verl (numpy conversions,
    validation metrics, rollout dumps) seeing only scalars. A length other than the response's is a contract
    breach between the reward manager and this worker, so it raises.
    """
    info = output.extra_fields.get("reward_extra_info")
    if not isinstance(info, dict) or TOKEN_REWARDS_KEY not in info:
        return None
    info = dict(info)  # the reward loop may share this dict between outputs of one trajectory
    values = decode_token_rewards(info.pop(TOKEN_REWARDS_KEY))
    output.extra_fields["reward_extra_info"] = info
    n_response = len(output.response_ids)
    if values.shape[0] != n_response:
        raise ValueError(f"reward_extra_info.{TOKEN_REWARDS_KEY}: {values.shape[0]} rewards for a response of "
                         f"{n_response} tokens")
    return values


# --- V1 trainer (TransferQueue) -------------------------------------------------------------------------------


class _DenseAgentLoopOutput(AgentLoopOutput):
    """An ``AgentLoopOutput`` whose ``as_dict`` writes ``rm_scores`` per token instead of on the last token."""

    token_rewards: Optional[list[float]] = None

    def as_dict(self) -> dict[str, Any]:
        output = super().as_dict()
        token_rewards = output.pop("token_rewards", None)
        if token_rewards is not None:
            output["rm_scores"] = torch.tensor(token_rewards, dtype=torch.float32)
        return output


class _MechRewardAgentLoopWorkerTQ(AgentLoopWorkerTQ.__ray_metadata__.modified_class):
    """verl's TransferQueue agent-loop worker; the last output of a trajectory carries per-token ``rm_scores``."""

    async def _agent_loop_postprocess(self, output: AgentLoopOutput | list[AgentLoopOutput], validate, **kwargs) -> None:
        outputs = list(output) if isinstance(output, list) else [output]
        if outputs:
            # verl's own scoring call; the one inside super() returns at once because reward_score is then set.
            await self._compute_score(outputs, kwargs=kwargs)
            final = outputs[-1]
            values = take_token_rewards(final)
            if values is not None:
                # Only the fields that were set: as_dict dumps with exclude_unset, so unset ones must stay unset.
                fields = {name: getattr(final, name) for name in final.model_fields_set | {"extra_fields"}}
                outputs[-1] = _DenseAgentLoopOutput(**fields, token_rewards=values.tolist())
        await super()._agent_loop_postprocess(outputs if isinstance(output, list) else outputs[0], validate, **kwargs)


MechRewardAgentLoopWorkerTQ = ray.remote(_MechRewardAgentLoopWorkerTQ)


class MechRewardAgentLoopManagerTQ(AgentLoopManagerTQ):
    """``AgentLoopManagerTQ`` whose workers write mechreward's per-token rewards as ``rm_scores``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = MechRewardAgentLoopWorkerTQ  # read by create(), after __init__


# --- legacy trainer (DataProto) ---------------------------------------------------------------------------------


class _MechRewardAgentLoopWorker(AgentLoopWorker):
    """verl's agent-loop worker; ``generate_sequences`` returns per-token ``rm_scores``."""

    async def _run_agent_loop(self, sampling_params, trajectory, *, agent_name, trace=True, **kwargs):
        # The legacy worker keeps the trainer's step (meta_info["global_steps"]) only in `trajectory`; pass it on
        # as the sample field V1 has, so the reward manager sends it to the monitor (verl.trainer_step).
        step = trajectory.get("step", -1)
        if "global_steps" not in kwargs and step is not None and step >= 0:
            kwargs["global_steps"] = step
        return await super()._run_agent_loop(sampling_params, trajectory, agent_name=agent_name, trace=trace, **kwargs)

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        internal = await super()._agent_loop_postprocess(output, validate, **kwargs)
        values = take_token_rewards(output)
        if values is not None:
            # _InternalAgentLoopOutput's response_ids are padded; the scored response is output's.
            internal.extra_fields = {**internal.extra_fields, "reward_extra_info": output.extra_fields["reward_extra_info"],
                                     "_mechreward_token_rewards": values}
        return internal

    def _postprocess(self, inputs, input_non_tensor_batch=None, validate=False):
        dense = [item.extra_fields.pop("_mechreward_token_rewards", None) for item in inputs]
        data = super()._postprocess(inputs, input_non_tensor_batch=input_non_tensor_batch, validate=validate)
        if "rm_scores" in data.batch.keys() and any(values is not None for values in dense):
            rm_scores = data.batch["rm_scores"].clone()
            for row, values in enumerate(dense):
                if values is not None:  # responses are right-padded: token t of the response is column t
                    rm_scores[row].zero_()
                    rm_scores[row, : values.shape[0]] = torch.from_numpy(values)
            data.batch["rm_scores"] = rm_scores
        return data


MechRewardAgentLoopWorker = ray.remote(_MechRewardAgentLoopWorker)


class MechRewardAgentLoopManager(AgentLoopManager):
    """``AgentLoopManager`` (legacy trainer) whose output carries mechreward's per-token ``rm_scores``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.agent_loop_workers_class = MechRewardAgentLoopWorker  # AgentLoopManager keeps a class already set
        super().__init__(*args, **kwargs)

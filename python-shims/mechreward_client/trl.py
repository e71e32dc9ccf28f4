"""TRL adapter: a GRPO reward function backed by the sidecar, and the G3 per-token trainer.

    from mechreward_client.trl import MechReward, MechRewardGRPOTrainer

``MechReward`` is a ``reward_funcs`` entry for ``trl.GRPOTrainer``: it rebuilds prompt + completion token ids,
captures the residual stream after the pack's layer with ``model`` (the policy, or a frozen reader), scores it
through the sidecar and returns the pooled rewards. A failing sidecar gives ``None`` (TRL's "unscorable": no
advantage, out of the group baseline) or an exception, never a made-up 0.

``MechRewardGRPOTrainer`` adds the per-token term of the original G3 recipe (docs: domain.md §6): each
response token's advantage gets ``coef * z(r_t)``, the token rewards z-scored within the prompt's group, so
``_compute_loss`` sees (B, T) advantages.

Relies on these GRPOTrainer internals (tested with trl 1.16; tests/test_trl_grpo.py::test_schedule_and_trl_contract checks them):
``_calculate_rewards(inputs, prompts, completions, completion_ids_list)``,
``_generate_and_score_completions(inputs) -> dict`` with prompt_ids/prompt_mask/completion_ids/completion_mask,
and ``_compute_loss(model, inputs)`` accepting (B, T) advantages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

try:
    import torch
    from trl import GRPOTrainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "mechreward_client.trl needs torch and trl: pip install 'mechreward-client[trl]'"
    ) from exc

from . import _constants as C
from ._client import AsyncRewardClient, RewardClient
from ._exceptions import APIConnectionError, APIError, InternalServerError, OverloadedError, UnavailableError
from ._tokens import token_strings
from ._types import PackInfo, ScoredSequence
from .capture import capture_residual, pad_right

__all__ = ["MechReward", "MechRewardGRPOTrainer", "LinearDecay", "G3_TOKEN_COEF"]

log = logging.getLogger("mechreward_client.trl")

# Failures of the sidecar itself (down, stuck, overloaded, broken): these become None with on_error="none".
# A BadRequest / NotFound / PayloadTooLarge is a misconfiguration that would make every row unscorable
# forever, so it is always raised.
SIDECAR_FAILURES = (APIConnectionError, UnavailableError, OverloadedError, InternalServerError)

OnError = Literal["none", "raise"]


class MechReward:
    """Reward function for ``GRPOTrainer(reward_funcs=[...])`` scoring completions with a feature pack.

    Args:
        pack: pack name on the sidecar.
        model: the model whose residual stream the pack's SAE reads (the policy, or a frozen reader copy).
        tokenizer: the trainer's tokenizer (prompts are re-tokenized exactly as GRPOTrainer does).
        target: sidecar address; falls back to MECHREWARD_TARGET, then 127.0.0.1:50051.
        layer: decoder layer to capture after; defaults to the pack's layer from ListPacks.
        on_error: ``"none"`` returns None for rows the sidecar could not score; ``"raise"`` raises.
        timeout, retries: per-call deadline (seconds) and retries of safe failures.
        capture_batch_size: rows per forward pass (and per Score request).
        run_id: sent with each request for per-run statistics on the server, with the optimizer step as TRL
            logs it (1 for the first; from ``trainer_state``), so the sidecar's monitor page plots the run by step.
            With a run_id each completion's text and every token's string go along too: the page shows a flagged
            rollout's tokens coloured by reward, and the canary text rule reads the text (no expected answer is
            sent, so a reasoning word repeated more than 15 times is flagged whatever the answer).
        chat_template_kwargs: passed to ``apply_chat_template`` for conversational prompts, as the trainer does.
        name: logged by TRL as ``rewards/<name>/mean``.

    Picklable: the gRPC channel opens lazily in each process. Use the object itself for TRL's sync path, or
    its bound ``ascore`` method where an async reward function is wanted.
    """

    def __init__(
        self,
        pack: str,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        target: str | None = None,
        layer: int | None = None,
        on_error: OnError = "none",
        timeout: float = C.DEFAULT_TIMEOUT_S,
        retries: int = C.DEFAULT_RETRIES,
        capture_batch_size: int = C.DEFAULT_CAPTURE_BATCH_SIZE,
        run_id: str | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        name: str = "mechreward",
    ) -> None:
        if on_error not in ("none", "raise"):
            raise ValueError(f"on_error: expected 'none' or 'raise', got {on_error!r}")
        if capture_batch_size < 1:
            raise ValueError(f"capture_batch_size: expected >= 1, got {capture_batch_size}")
        self.pack = pack
        self.model = model
        self.tokenizer = tokenizer
        self.on_error: OnError = on_error
        self.capture_batch_size = capture_batch_size
        self.run_id = run_id
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.__name__ = name
        self.client = RewardClient(target, timeout=timeout, retries=retries)
        self.async_client = AsyncRewardClient(target, timeout=timeout, retries=retries)
        self._layer = layer
        self._pack_info: PackInfo | None = None
        # The last call's results keyed by full token ids, so the per-token trainer reuses them in the same step.
        self._recent: dict[tuple[int, ...], ScoredSequence] = {}

    # -- TRL entry points ---------------------------------------------------------------------------------

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], **kwargs: Any) -> list[float | None]:
        sequences, starts = self.token_sequences(prompts, completion_ids)
        scored = self.score_token_ids(sequences, starts, step=_global_step(kwargs))
        self._log(kwargs, scored)
        return [None if s is None else s.reward for s in scored]

    async def ascore(self, prompts: list, completions: list, completion_ids: list[list[int]], **kwargs: Any) -> list[float | None]:
        """Async form for TRL (pass the bound method: TRL does not detect an async ``__call__`` everywhere)."""
        sequences, starts = self.token_sequences(prompts, completion_ids)
        scored = await self.ascore_token_ids(sequences, starts, step=_global_step(kwargs))
        self._log(kwargs, scored)
        return [None if s is None else s.reward for s in scored]

    # -- scoring token ids ----------------------------------------------------------------------------------

    def token_sequences(self, prompts: list, completion_ids: list[list[int]]) -> tuple[list[list[int]], list[int]]:
        """prompt + completion ids per row, and where each completion starts (the first scored token)."""
        if len(prompts) != len(completion_ids):
            raise ValueError(f"got {len(prompts)} prompts but {len(completion_ids)} completions")
        prompt_ids = self._prompt_ids(prompts)
        sequences = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
        return sequences, [len(p) for p in prompt_ids]

    def score_token_ids(
        self,
        sequences: Sequence[Sequence[int]],
        score_from: Sequence[int],
        *,
        reuse_recent: bool = False,
        step: int | None = None,
    ) -> list[ScoredSequence | None]:
        """Capture and score token id sequences; None where the sidecar failed (with on_error="none").

        ``step`` (the trainer's global step) goes to the sidecar with ``run_id`` for its monitor page.
        """
        results: list[ScoredSequence | None] = [None] * len(sequences)
        todo = []
        for i, (seq, start) in enumerate(zip(sequences, score_from)):
            cached = self._recent.get(tuple(seq)) if reuse_recent else None
            if cached is not None:
                results[i] = cached
            elif start < len(seq):  # an empty completion has nothing to score: unscorable
                todo.append(i)
        fresh: dict[tuple[int, ...], ScoredSequence] = {}
        for done, chunk in enumerate(_chunks(todo, self.capture_batch_size)):
            try:
                layer = self._resolve_layer()
                rows, starts = [sequences[i] for i in chunk], [score_from[i] for i in chunk]
                activations = self._capture(rows, layer)
                scored = self.client.score(self.pack, activations, starts, self.run_id, step=step if self.run_id else None,
                                           **self._rollout_text(rows, starts))
            except SIDECAR_FAILURES as error:
                # Stop at the first failure: a down sidecar would otherwise cost one deadline per chunk.
                self._handle_failure(error, len(todo) - done * self.capture_batch_size)
                break
            for i, s in zip(chunk, scored):
                results[i] = s
                fresh[tuple(sequences[i])] = s
        if not reuse_recent:
            self._recent = fresh
        return results

    async def ascore_token_ids(
        self, sequences: Sequence[Sequence[int]], score_from: Sequence[int], *, step: int | None = None
    ) -> list[ScoredSequence | None]:
        results: list[ScoredSequence | None] = [None] * len(sequences)
        todo = [i for i, (seq, start) in enumerate(zip(sequences, score_from)) if start < len(seq)]
        fresh: dict[tuple[int, ...], ScoredSequence] = {}
        chunks = list(_chunks(todo, self.capture_batch_size))
        # Chunk k is scored by the sidecar while chunk k + 1 is captured: submit() copies the activations
        # (into shared memory when co-located) before it returns, and its task is awaited one chunk later.
        pending: tuple[int, list[int], asyncio.Task] | None = None
        for done, chunk in enumerate([*chunks, None]):
            task = None
            if chunk is not None:
                try:
                    layer = await self._aresolve_layer()
                    rows, starts = [sequences[i] for i in chunk], [score_from[i] for i in chunk]
                    # The forward pass blocks; keep it off the event loop that other reward functions share.
                    activations = await asyncio.to_thread(self._capture, rows, layer)
                    task = self.async_client.submit(self.pack, activations, starts, self.run_id, step=step if self.run_id else None,
                                                    **self._rollout_text(rows, starts))
                except SIDECAR_FAILURES as error:
                    if pending is not None:
                        pending[2].cancel()
                    self._handle_failure(error, len(todo) - (pending[0] if pending else done) * self.capture_batch_size)
                    break
            if pending is not None:
                pending_done, pending_chunk, pending_task = pending
                try:
                    scored = await pending_task
                except SIDECAR_FAILURES as error:
                    if task is not None:
                        task.cancel()
                    self._handle_failure(error, len(todo) - pending_done * self.capture_batch_size)
                    break
                for i, s in zip(pending_chunk, scored):
                    results[i] = s
                    fresh[tuple(sequences[i])] = s
            pending = (done, chunk, task) if chunk is not None else None
        self._recent = fresh
        return results

    @property
    def layer(self) -> int:
        """The decoder layer captured after (asks the sidecar for the pack's layer if not given)."""
        return self._resolve_layer()

    # -- internals ------------------------------------------------------------------------------------------

    def _prompt_ids(self, prompts: list) -> list[list[int]]:
        # Mirrors GRPOTrainer._tokenize_prompts, so the ids match what the policy was conditioned on.
        if prompts and isinstance(prompts[0], list):  # conversational: a list of messages per row
            tokenized = self.tokenizer.apply_chat_template(
                conversation=prompts,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                **self.chat_template_kwargs,
            )
            return [list(ids) for ids in tokenized["input_ids"]]
        return [list(ids) for ids in self.tokenizer(text=list(prompts))["input_ids"]]

    def _rollout_text(self, sequences: list[Sequence[int]], score_from: list[int]) -> dict[str, Any]:
        """Each response's text and every token's string, sent only with a run_id: the run keeps them with its
        flagged rollouts, which the monitor page shows as tokens coloured by reward; without a run nothing would."""
        if not self.run_id:
            return {}
        return {
            "texts": [self.tokenizer.decode(list(seq[start:]), skip_special_tokens=True) for seq, start in zip(sequences, score_from)],
            "tokens": [token_strings(self.tokenizer, seq) for seq in sequences],
        }

    def _capture(self, sequences: list[Sequence[int]], layer: int) -> list[torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = pad_right(sequences, pad_id)
        activations = capture_residual(self.model, ids, mask, layer)
        if self._pack_info is not None and activations[0].shape[-1] != self._pack_info.d_model:
            raise ValueError(
                f"pack {self.pack!r} expects d_model {self._pack_info.d_model}, but layer {layer} of "
                f"{type(self.model).__name__} has width {activations[0].shape[-1]}"
            )
        return activations

    def _pick_pack(self, packs: list[PackInfo]) -> int:
        info = next((p for p in packs if p.name == self.pack), None)
        if info is None:
            raise ValueError(f"pack {self.pack!r} is not loaded on {self.client.target}; loaded: {[p.name for p in packs]}")
        self._pack_info = info
        if self._layer is None:
            if info.layer is None:
                raise ValueError(f"pack {self.pack!r} does not say its layer: pass layer= to MechReward")
            self._layer = info.layer
        return self._layer

    def _resolve_layer(self) -> int:
        if self._layer is not None:
            return self._layer
        return self._pick_pack(self.client.list_packs())

    async def _aresolve_layer(self) -> int:
        if self._layer is not None:
            return self._layer
        return self._pick_pack(await self.async_client.list_packs())

    def _handle_failure(self, error: APIError, rows: int) -> None:
        if self.on_error == "raise":
            raise error
        log.warning("mechreward: %d completion(s) left unscored (reward None): %s", rows, error)

    def _log(self, kwargs: dict[str, Any], scored: list[ScoredSequence | None]) -> None:
        # TRL (>= 1.0) hands reward functions a log_metric callback; averaged per step in its logs.
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and scored:
            log_metric("mechreward/unscored_frac", sum(s is None for s in scored) / len(scored))
            log_metric("mechreward/flagged_frac", sum(bool(s and s.flags) for s in scored) / len(scored))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_recent"] = {}  # results of one step in one process; meaningless elsewhere
        return state


def _global_step(reward_kwargs: dict[str, Any]) -> int | None:
    """The optimizer step these rollouts train, numbered as TRL logs it (None outside TRL).

    ``trainer_state.global_step`` counts the steps already finished, so it is 0 while the first step's rollouts
    are scored; TRL then logs that step's metrics (and W&B plots them) as step 1. The sidecar gets the same
    number, so the monitor page and the trainer's logs agree, and so does verl, whose ``global_steps`` starts at 1.
    """
    step = getattr(reward_kwargs.get("trainer_state"), "global_step", None)
    return step + 1 if isinstance(step, int) and step >= 0 else None


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class LinearDecay:
    """A coefficient going linearly from ``start`` to ``end`` over ``steps`` optimizer steps, then flat."""

    start: float
    end: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.steps <= 0 or step >= self.steps:
            return self.end
        return self.start + (self.end - self.start) * step / self.steps


#: The original G3 schedule: lambda 0.20 -> 0.05 over 1500 steps.
G3_TOKEN_COEF = LinearDecay(C.G3_TOKEN_COEF_START, C.G3_TOKEN_COEF_END, C.G3_TOKEN_COEF_STEPS)


class MechRewardGRPOTrainer(GRPOTrainer):
    """GRPOTrainer plus the G3 per-token term: advantage[i, t] = A_i + coef * z(r_t), a (B, T) tensor.

    ``r_t`` are the pack's per-token rewards of each completion token; ``z`` standardises them over all
    completion tokens of the prompt's group (its ``num_generations`` completions). The scalar part of G3,
    ``outcome + lambda * mean_t(r_t)``, is ordinary GRPO: put the ``MechReward`` in ``reward_funcs`` with a
    ``reward_weights`` entry of lambda.

    Args (besides GRPOTrainer's):
        mech_reward: the MechReward giving r_t; defaults to the first MechReward in ``reward_funcs``. Results
            already computed by that reward function in the same step are reused, not scored twice.
        token_reward_coef: a float, or a callable of the global step (default: G3's 0.20 -> 0.05 over 1500).
    """

    def __init__(
        self,
        *args: Any,
        mech_reward: MechReward | None = None,
        token_reward_coef: float | Callable[[int], float] = G3_TOKEN_COEF,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if mech_reward is None:
            # The object itself, or its bound ascore method (TRL's async path).
            owners = (f if isinstance(f, MechReward) else getattr(f, "__self__", None) for f in self.reward_funcs)
            mech_reward = next((o for o in owners if isinstance(o, MechReward)), None)
        if mech_reward is None:
            raise ValueError("MechRewardGRPOTrainer needs a MechReward: pass mech_reward= or put one in reward_funcs")
        if getattr(self.args, "use_liger_kernel", False):
            # The Liger loss takes advantages as given and has no per-token path.
            raise ValueError("MechRewardGRPOTrainer does not support use_liger_kernel=True")
        self.mech_reward = mech_reward
        self.token_reward_coef = token_reward_coef
        self._completion_lengths: list[int] | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # The one place that sees the unpadded completions; remember their lengths for the token term.
        self._completion_lengths = [len(ids) for ids in completion_ids_list]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        # A new dict: the buffered batch is reused num_iterations times and must not be mutated.
        return {**output, "mech_token_advantages": self._token_advantages(output)}

    def _compute_loss(self, model, inputs):
        advantages = inputs["advantages"]
        token_term = inputs.get("mech_token_advantages")
        if token_term is not None:
            if advantages.dim() == 1:
                advantages = advantages.unsqueeze(1)
            advantages = advantages + token_term  # (B, 1) + (B, T) -> (B, T)
        return super()._compute_loss(model, {**inputs, "advantages": advantages})

    def _coef(self) -> float:
        coef = self.token_reward_coef
        return float(coef(self.state.global_step) if callable(coef) else coef)

    def _token_advantages(self, output: dict[str, Any]) -> torch.Tensor:
        prompt_ids, prompt_mask = output["prompt_ids"], output["prompt_mask"]
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        rows, width = completion_ids.shape
        lengths = self._completion_lengths
        if lengths is None or len(lengths) != rows:
            lengths = completion_mask.sum(dim=1).tolist()
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids, prompt_mask)]
        sequences = [p + completion_ids[i, : lengths[i]].tolist() for i, p in enumerate(prompts)]
        scored = self.mech_reward.score_token_ids(sequences, [len(p) for p in prompts], reuse_recent=True,
                                                  step=self.state.global_step)

        token_rewards = torch.zeros(rows, width, dtype=torch.float32)
        valid = torch.zeros(rows, width, dtype=torch.bool)
        for i, (result, start) in enumerate(zip(scored, (len(p) for p in prompts))):
            if result is None:  # unscored: no per-token term for this completion
                continue
            response = torch.from_numpy(result.token_rewards[start:].copy())
            token_rewards[i, : response.numel()] = response
            valid[i, : response.numel()] = True
        valid &= completion_mask.bool().cpu()

        z = _group_zscore(token_rewards, valid, self._group_size(rows))
        mode = "train" if self.model.training else "eval"
        coef = self._coef()
        self._metrics[mode]["mechreward/token_coef"].append(coef)
        if valid.any():
            self._metrics[mode]["mechreward/token_reward_mean"].append(token_rewards[valid].mean().item())
        return (coef * z).to(device=completion_ids.device)

    def _group_size(self, rows: int) -> int:
        size = self.num_generations if self.model.training else getattr(self, "num_generations_eval", None) or self.num_generations
        if rows % size != 0:
            # Groups are contiguous in TRL's batches; a local batch holding part of a group cannot z-score it.
            raise ValueError(f"local batch of {rows} completions is not a whole number of groups of {size}")
        return size


def _group_zscore(values: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """z-score ``values`` over the valid tokens of each group of ``group_size`` consecutive rows; 0 elsewhere."""
    z = torch.zeros_like(values)
    for start in range(0, values.shape[0], group_size):
        rows = slice(start, start + group_size)
        tokens = values[rows][valid[rows]]
        if tokens.numel() < 2:
            continue
        mean, std = tokens.mean(), tokens.std(unbiased=False)
        z[rows] = torch.where(valid[rows], (values[rows] - mean) / (std + C.TOKEN_ZSCORE_EPS), 0.0)
    return z

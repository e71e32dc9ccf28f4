"""verl 0.9's V1 rollout, reward and advantage path on a CPU: verl's own code around a stand-in inference server.

verl's trainer generates through an inference server (vLLM, SGLang, TRT-LLM) and updates the actor with FSDP
or Megatron workers, all on GPUs. To try mechreward with verl without one (the example
``examples/verl_grpo.py``, CI), this module runs a V1 training step up to the actor update, with the inference
server replaced:

- ``TransformersLLMClient`` answers the ``generate`` calls verl's agent loops make on their server manager
  (``LLMServerClient.generate``), with ``model.generate`` of transformers on CPU. verl's own agent loop
  (``single_turn_agent``: chat template, Continuous Token merge, response truncation) runs around it.
- The rest is verl's real code, driven as the V1 trainer drives it: the config is ``ppo_trainer.yaml`` composed
  by Hydra and checked by ``validate_config`` (``compose_config``); Ray and TransferQueue are started as
  ``TaskRunnerV1.run`` does (``local_cluster``); prompts come from verl's ``RLHFDataset``, sampler and
  ``collate_fn``; verl's ``RewardLoopManager`` starts ``RewardLoopWorker`` actors running our ``mechreward``
  reward manager; the agent-loop manager is the class ``agent_loop_manager_class`` names (ours,
  ``verl_dense.MechRewardAgentLoopManagerTQ``, writes per-token ``rm_scores``); verl's ``ReplayBuffer`` samples the
  finished groups; ``PPOTrainer._compute_advantage`` turns ``rm_scores`` into ``token_level_rewards`` and
  advantages with ``algorithm.adv_estimator`` (``CpuTrainingSteps``).

The actor's work (verl's FSDP workers) is not run: a stand-in computes the old log-probs by one forward of the
same weights in the driver, and there is no actor update, so the policy does not change between steps;
``CpuTrainingSteps.step`` returns what the update would have consumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

try:
    import ray
    import transfer_queue as tq
    from omegaconf import DictConfig, OmegaConf
    from verl.workers.rollout.replica import TokenOutput
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("mechreward_client.verl_cpu needs verl 0.9 and TransferQueue: "
                      "pip install 'mechreward-client[verl]'") from exc

__all__ = ["TransformersLLMClient", "compose_config", "local_cluster", "CpuTrainingSteps", "Trajectory", "sample_tokens",
           "cached_model", "submit_prompts", "sample_groups", "advantage_trainer"]

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def cached_model(path: str) -> Any:
    """One float32 eval-mode causal LM per folder per process (each Ray worker loads its own)."""
    from transformers import AutoModelForCausalLM

    with _models_lock:
        if path not in _models:
            _models[path] = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        return _models[path]


def sample_tokens(model: Any, prompt_ids: Sequence[int], *, max_new_tokens: int, seed: int, temperature: float = 1.0,
                  top_p: float = 1.0, top_k: int = -1, eos_token_id: Any = None, pad_token_id: Any = None,
                  logprobs: bool = False) -> tuple[list[int], list[float] | None]:
    """A continuation of ``prompt_ids`` as an inference server returns it: its token ids (the stop token
    included, as vLLM does) and, if asked, each token's log-probability under the sampling distribution.

    ``temperature`` 0 is greedy; ``top_k`` -1 and ``top_p`` 1 switch those filters off (vLLM's conventions).
    """
    greedy = temperature <= 0
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": not greedy,
                               "pad_token_id": pad_token_id, "eos_token_id": eos_token_id,
                               "return_dict_in_generate": True, "output_scores": logprobs}
    if not greedy:
        options.update(temperature=temperature, top_p=top_p, top_k=top_k if top_k and top_k > 0 else 0)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(torch.tensor([list(prompt_ids)]), **options)
    token_ids = out.sequences[0, len(prompt_ids):].tolist()
    if not logprobs:
        return token_ids, None
    scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)[0]
    return token_ids, [float(v) for v in scores[: len(token_ids)]]


class TransformersLLMClient:
    """A stand-in for verl's ``LLMServerClient``: ``generate`` samples with transformers on CPU.

    Picklable: verl hands the client to each agent-loop worker (a Ray actor), which loads the model from
    ``model_path`` on its first call. Calls are served one at a time in a thread, so the worker's event loop
    stays free. Each call is seeded from ``seed`` and the call's number in this process, so the ``rollout.n``
    samples of a prompt differ; which sample gets which seed follows the order the agent loops' calls arrive in.
    """

    def __init__(self, model_path: str, response_length: int, seed: int = 0) -> None:
        self.model_path = model_path
        self.response_length = int(response_length)
        self.seed = int(seed)
        self.tokenizer = None  # verl sets it when rollout tracing decodes tokens
        self._calls = 0
        self._lock: asyncio.Lock | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "response_length": self.response_length, "seed": self.seed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       **_unused: Any) -> TokenOutput:
        """``LLMServerClient.generate``'s interface; multimodal inputs are not supported (text models only)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._calls += 1
            seed = zlib.crc32(f"{self.seed}/{self._calls}".encode())
            token_ids, logprobs = await asyncio.to_thread(self._generate, list(prompt_ids), dict(sampling_params), seed)
        return TokenOutput(token_ids=token_ids, log_probs=logprobs, stop_reason="completed")

    def _generate(self, prompt_ids: list[int], params: dict[str, Any], seed: int) -> tuple[list[int], list[float] | None]:
        model = cached_model(self.model_path)
        config = model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else model.config.eos_token_id
        pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
        return sample_tokens(model, prompt_ids, max_new_tokens=int(params.get("max_tokens") or self.response_length),
                             seed=seed, temperature=float(params.get("temperature", 1.0)),
                             top_p=float(params.get("top_p", 1.0)), top_k=int(params.get("top_k", -1)),
                             eos_token_id=eos, pad_token_id=pad, logprobs=bool(params.get("logprobs")))


def compose_config(overrides: Sequence[str], *, config_name: str = "ppo_trainer", validate: bool = True) -> DictConfig:
    """verl's trainer config as ``python -m verl.trainer.main_ppo <overrides>`` composes, checks and resolves it."""
    import verl
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer", "config"), version_base=None):
        config = compose(config_name=config_name, overrides=list(overrides))
    if validate:
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import validate_config

        validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    OmegaConf.resolve(config)  # as TaskRunnerV1.run does before building anything
    return config


@contextlib.contextmanager
def local_cluster(*, num_cpus: int = 4, pythonpath: Sequence[str] = (), env: dict[str, str] | None = None) -> Iterator[None]:
    """A local Ray cluster and TransferQueue with in-memory storage (SimpleStorage), as the V1 trainer starts
    them; ``pythonpath`` lets the workers import modules by name. Shut down on exit."""
    path = os.pathsep.join([*pythonpath, os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false", **(env or {})}})
    try:
        tq.init(OmegaConf.create({"enable": True, "metrics": {"enabled": False, "port": 0}, "backend": {
            "storage_backend": "SimpleStorage", "SimpleStorage": {"total_storage_size": 1000, "num_data_storage_units": 1}}}))
        try:
            yield
        finally:
            tq.close()
    finally:
        ray.shutdown()


def submit_prompts(manager: Any, batch_dict: dict[str, Any], global_steps: int) -> int:
    """What ``PPOTrainer._submit_batch_to_rollout`` does in sync mode: register each prompt (a GRPO group) in
    TransferQueue with the step, then dispatch the batch to the agent-loop workers. Returns the prompt count."""
    from verl.utils import tensordict_utils as tu

    batch = tu.get_tensordict(batch_dict)
    tu.assign_non_tensor_data(batch, "global_steps", global_steps)
    tq.kv_batch_put(keys=list(batch["uid"]), partition_id="train",
                    tags=[{"is_prompt": True, "status": "pending", "global_steps": global_steps} for _ in range(len(batch))])
    manager.generate_sequences(batch)
    return len(batch)


def sample_groups(global_steps: int, count: int) -> Any:
    """``count`` finished prompt groups from TransferQueue, through verl's sync ``ReplayBuffer`` (``KVBatchMeta``)."""
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    replay = ReplayBuffer(trainer_mode="sync", trainer_config=OmegaConf.create({"parameter_sync_step": 1}),
                          max_off_policy_threshold=1, max_off_policy_strategy="drop",
                          sampler_kwargs=OmegaConf.create({}), poll_interval=0.05)
    batch, _ = replay.sample(global_steps=global_steps, partition_id="train", batch_size=count)
    return batch


def advantage_trainer(config: DictConfig) -> Any:
    """A V1 ``PPOTrainer`` holding only ``config``: enough for its ``_compute_advantage``."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    class _AdvantageOnly(PPOTrainer):  # the two hooks the concrete trainers add, unused here
        def on_step_end(self) -> None:
            pass

        def on_sample_end(self) -> None:
            pass

    trainer = _AdvantageOnly.__new__(_AdvantageOnly)
    trainer.config = config
    return trainer


@dataclass
class Trajectory:
    """One scored response of a step, as the actor update would receive it."""

    uid: str
    prompt_ids: list[int]
    response_ids: list[int]
    token_rewards: np.ndarray  # rm_scores: the pack's reward of each response token
    advantages: np.ndarray
    reward_extra_info: dict[str, Any]
    ground_truth: Any = None


class CpuTrainingSteps:
    """The V1 trainer's step up to the actor update, on a cluster ``local_cluster`` started.

    Builds what ``TaskRunnerV1`` and ``PPOTrainer.init`` build for it: the reward loop, the agent-loop manager of
    ``actor_rollout_ref.rollout.agent.agent_loop_manager_class`` (default verl's ``AgentLoopManagerTQ``) with
    ``llm_client`` as its server, and the train dataloader over ``data.train_files``.
    """

    def __init__(self, config: DictConfig, llm_client: Any) -> None:
        from torchdata.stateful_dataloader import StatefulDataLoader
        from verl.experimental.reward_loop.reward_loop import RewardLoopManager
        from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
        from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ
        from verl.utils.dataset.rl_dataset import collate_fn
        from verl.utils.import_utils import load_class_from_fqn
        from verl.utils.tokenizer import hf_tokenizer

        self.config = config
        self.tokenizer = hf_tokenizer(config.actor_rollout_ref.model.path, trust_remote_code=True)
        fqn = config.actor_rollout_ref.rollout.get("agent", {}).get("agent_loop_manager_class")
        self.manager_cls = load_class_from_fqn(fqn, "AgentLoopManager") if fqn else AgentLoopManagerTQ
        self.rewards = RewardLoopManager(config)
        self.manager = self.manager_cls.create(config=config, llm_client=llm_client, teacher_client=None,
                                               reward_loop_worker_handles=self.rewards.reward_loop_worker_handles)
        dataset = create_rl_dataset(config.data.train_files, config.data, self.tokenizer, None, is_train=True)
        self.dataloader = StatefulDataLoader(dataset=dataset, batch_size=config.data.train_batch_size, num_workers=0,
                                             drop_last=True, collate_fn=collate_fn, sampler=create_rl_sampler(config.data, dataset))
        self._batches: Iterator[dict[str, Any]] | None = None
        self.trainer = advantage_trainer(config)

    def next_prompts(self) -> dict[str, Any]:
        """One ``train_batch_size`` batch from the dataloader, with a fresh uid per prompt (``_fetch_one_gen_batch``)."""
        try:
            if self._batches is None:
                self._batches = iter(self.dataloader)
            batch_dict = next(self._batches)
        except StopIteration:
            self._batches = iter(self.dataloader)
            batch_dict = next(self._batches)
        batch_dict["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch_dict["raw_prompt"]))], dtype=object)
        return batch_dict

    def _write_old_log_probs(self, batch: Any) -> None:
        """Stand-in for the actor's old-log-prob pass (``PPOTrainer._compute_old_log_prob``, FSDP workers):
        each response token's log-probability at the rollout temperature under the same weights, by one forward
        in this process, written to TransferQueue as ``old_log_probs`` (which verl's rollout correction in
        ``_compute_advantage`` compares with the rollout's own ``rollout_log_probs``)."""
        from tensordict import TensorDict

        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["prompts", "responses"])
        model = cached_model(self.config.actor_rollout_ref.model.path)
        temperature = float(self.config.actor_rollout_ref.rollout.temperature) or 1.0
        rows = []
        for row in range(len(batch.keys)):
            prompt, response = data["prompts"][row], data["responses"][row]
            with torch.no_grad():
                logits = model(torch.cat([prompt, response]).unsqueeze(0)).logits[0, len(prompt) - 1 : -1].float()
            rows.append(torch.log_softmax(logits / temperature, dim=-1).gather(-1, response.unsqueeze(-1)).squeeze(-1))
        fields = TensorDict({"old_log_probs": torch.nested.as_nested_tensor(rows, layout=torch.jagged)}, batch_size=len(rows))
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)

    def step(self, global_steps: int) -> tuple[list[Trajectory], dict[str, Any]]:
        """Generate, score and compute advantages for one batch at ``global_steps``; TransferQueue is left empty."""
        prompts = self.next_prompts()
        count = submit_prompts(self.manager, prompts, global_steps)
        batch = sample_groups(global_steps, count)
        self._write_old_log_probs(batch)
        metrics: dict[str, Any] = {}
        batch = self.trainer._compute_advantage(batch, metrics)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["uid", "prompts", "responses", "rm_scores", "advantages", "extra_fields", "reward_model"])
        trajectories = []
        for row, key in enumerate(batch.keys):
            reward_model = data["reward_model"][row] if "reward_model" in data.keys() else None
            trajectories.append(Trajectory(
                uid=key.split("_")[0], prompt_ids=data["prompts"][row].tolist(), response_ids=data["responses"][row].tolist(),
                token_rewards=data["rm_scores"][row].numpy().astype(np.float64),
                advantages=data["advantages"][row].numpy().astype(np.float64),
                reward_extra_info=dict(data["extra_fields"][row].get("reward_extra_info", {})),
                ground_truth=(reward_model or {}).get("ground_truth") if isinstance(reward_model, dict) else None,
            ))
        tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)  # as the trainer does after the update
        return trajectories, metrics

"""Per-token mechreward rewards reach verl 0.9.1's ``token_level_rewards`` in its live rollout loop, on CPU.

verl runs its trainer loop only with a GPU inference server; like verl's own ``*_on_cpu.py`` tests, this drives
the real pieces around that server on a local Ray cluster with a real TransferQueue (SimpleStorage):

- the config is verl's own ``ppo_trainer.yaml`` composed by Hydra, with the manager selected by
  ``actor_rollout_ref.rollout.agent.agent_loop_manager_class`` and resolved as ``main_ppo`` does;
- verl's ``RewardLoopManager`` starts ``RewardLoopWorker`` actors that load our ``mechreward`` reward manager
  through the ``verl.plugins`` entry point and score through the real sidecar;
- our agent-loop manager starts its workers as Ray actors; the only stand-in is the agent loop
  (``cpu_agent_loop.py``: sampling by the tiny model through transformers, registered by
  ``agent_loop_config_path``) because verl's own ones need the GPU server;
- V1: the trajectories land in TransferQueue, verl's ``ReplayBuffer`` samples them and ``PPOTrainer._compute_advantage``
  turns ``rm_scores`` into ``token_level_rewards`` and advantages; legacy: ``generate_sequences`` returns a
  DataProto whose ``rm_scores`` ``extract_reward`` and ``compute_advantage`` consume.

The per-token ``rm_scores`` equal a float64 recomputation from ``hidden_states[layer + 1]`` of an independent
forward; ``mechreward_dense`` and ``reinforce_plus_plus`` keep them per token; the trainer's global step (V1: the
batch's ``global_steps``; legacy: ``meta_info["global_steps"]``) reaches the sidecar's monitor with the run_id; a
sidecar that is gone gives the documented behaviour (raise, or the flagged fallback). The cluster, the config
composition and the trainer's submit/sample/advantage calls are ``mechreward_client.verl_cpu``'s, which the
example ``examples/verl_grpo.py`` runs too.
"""

from __future__ import annotations

import json
import os
import urllib.request

import numpy as np
import pytest
import torch
import transfer_queue as tq
from omegaconf import OmegaConf, open_dict
from verl.experimental.reward_loop.reward_loop import RewardLoopManager
from verl.utils.import_utils import load_class_from_fqn

from mechreward_client.verl import TOKEN_REWARDS_KEY
from mechreward_client.verl_cpu import advantage_trainer, compose_config, local_cluster, sample_groups, submit_prompts
from mechreward_client.verl_dense import MechRewardAgentLoopManager, MechRewardAgentLoopManagerTQ

from support import reference_rewards_for_ids, start_sidecar, word_prompts
from test_verl import dense_reference

HERE = os.path.dirname(os.path.abspath(__file__))
RESPONSE_LEN = 6
PROMPT_LEN = 16


@pytest.fixture(scope="module")
def cluster():
    # Actors import the test helpers (the agent loop) and support.py by module name.
    with local_cluster(pythonpath=[HERE, os.path.join(os.path.dirname(HERE), "tests")]):
        yield


def verl_config(fixture, target: str, manager_fqn: str, tmp_path, **mech) -> OmegaConf:
    """verl's ppo_trainer.yaml as ``python -m verl.trainer.main_ppo`` would compose it with these overrides."""
    loops = tmp_path / "agent_loops.yaml"
    loops.write_text("- name: transformers\n  _target_: cpu_agent_loop.TransformersAgentLoop\n")
    config = compose_config(validate=False, overrides=[
        f"actor_rollout_ref.model.path={fixture.model_dir}",
        f"actor_rollout_ref.model.tokenizer_path={fixture.tokenizer_dir}",
        f"actor_rollout_ref.rollout.prompt_length={PROMPT_LEN}",
        f"actor_rollout_ref.rollout.response_length={RESPONSE_LEN}",
        "actor_rollout_ref.rollout.name=vllm",  # only a name here: no server is started
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={loops}",
        "actor_rollout_ref.rollout.agent.default_agent_loop=transformers",
        # Not in ppo_trainer.yaml (only in the RolloutConfig dataclass): Hydra needs the "+".
        f"+actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager_fqn}",
        "reward.num_workers=1",
        "reward.reward_manager.name=mechreward",
        "algorithm.adv_estimator=mechreward_dense",
    ])
    with open_dict(config):
        config.reward.mechreward = {"pack": fixture.pack, "target": target, "timeout": 20,
                                    "reader_tokenizer": fixture.tokenizer_dir, **mech}
    OmegaConf.resolve(config)
    return config


def prompts_batch(count: int, seed: int) -> dict[str, np.ndarray]:
    """A dataset batch as verl's RLHFDataset and the trainer hand it to the agent-loop manager."""
    prompts = word_prompts(count, seed=seed, min_words=2, max_words=6)
    return {
        "raw_prompt": np.array([[{"role": "user", "content": p}] for p in prompts], dtype=object),
        "uid": np.array([f"p{seed}x{i}" for i in range(count)], dtype=object),  # no "_": TQ keys split on it
        "index": np.arange(count),
        "data_source": np.array(["words"] * count, dtype=object),
        "reward_model": np.array([{"ground_truth": "w1"}] * count, dtype=object),
    }


def reference_for(fixture, prompt_ids: list[int], response_ids: list[int]) -> np.ndarray:
    """Float64 per-token rewards of the response, from an independent full forward of prompt + response."""
    ref = reference_rewards_for_ids(fixture.model_dir, prompt_ids + response_ids, fixture.layer, fixture)
    return ref[len(prompt_ids):]


def reinforce_pp_reference(rewards: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """REINFORCE++ (arXiv 2501.03262) in float64: discounted return per token, whitened over the batch's tokens."""
    returns = np.zeros_like(rewards)
    for row in range(rewards.shape[0]):
        running = 0.0
        for t in reversed(range(rewards.shape[1])):
            if mask[row, t]:
                running = rewards[row, t] + gamma * running
                returns[row, t] = running
    valid = returns[mask > 0]
    return (returns - valid.mean()) / np.sqrt(valid.var(ddof=1) + 1e-8) * mask


def steps_on_monitor(sidecar, run_id: str) -> list[int]:
    """The step of each history point the sidecar's monitor keeps for ``run_id`` (one per Score call)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar.http_port}/v1/runs/{run_id}") as response:
        return [point.get("step") for point in json.load(response)["history"]]


def test_v1_per_token_rewards_reach_token_level_rewards(cluster, reader_fixture, tmp_path):
    own = start_sidecar(reader_fixture.packs_dir)
    try:
        config = verl_config(reader_fixture, own.target, "mechreward_client.verl_dense.MechRewardAgentLoopManagerTQ", tmp_path,
                             run_id="ci-verl-v1")
        # Resolved from the config exactly as main_ppo's TaskRunnerV1.init_agent_loop_manager does.
        manager_cls = load_class_from_fqn(config.actor_rollout_ref.rollout.agent.agent_loop_manager_class, "AgentLoopManager")
        assert manager_cls is MechRewardAgentLoopManagerTQ
        rewards = RewardLoopManager(config)
        manager = manager_cls.create(config=config, llm_client=None, teacher_client=None,
                                     reward_loop_worker_handles=rewards.reward_loop_worker_handles)

        batch = sample_groups(1, submit_prompts(manager, prompts_batch(3, seed=21), global_steps=1))
        assert len(batch.keys) == 6  # 3 prompts x rollout.n = 2
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["prompts", "responses", "rm_scores", "extra_fields"])
        lengths = set()
        for row in range(len(batch.keys)):
            prompt_ids, response_ids = data["prompts"][row].tolist(), data["responses"][row].tolist()
            lengths.add(len(response_ids))
            expected = reference_for(reader_fixture, prompt_ids, response_ids)
            np.testing.assert_allclose(data["rm_scores"][row].numpy(), expected, rtol=1e-4, atol=1e-4)
            assert np.abs(expected).max() > 1e-3  # features fire: not a comparison of zeros
            info = data["extra_fields"][row]["reward_extra_info"]
            assert TOKEN_REWARDS_KEY not in info and info["mechreward_unscored"] == 0.0
        assert len(lengths) > 1  # ragged responses went through

        # verl's own advantage step: rm_scores -> token_level_scores -> token_level_rewards -> estimator.
        trainer = advantage_trainer(config)
        padded = data["rm_scores"].to_padded_tensor(padding=0.0).double().numpy()
        mask = (data["responses"].to_padded_tensor(padding=-1) >= 0).double().numpy()
        uids = [key.split("_")[0] for key in batch.keys]
        with open_dict(config):
            config.algorithm.mechreward_token_coef = 0.3
        trainer._compute_advantage(batch, {})
        adv = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["advantages"])["advantages"]
        np.testing.assert_allclose(adv.to_padded_tensor(padding=0.0).numpy(), dense_reference(padded, mask, uids, 0.3),
                                   rtol=1e-4, atol=1e-4)
        config.algorithm.adv_estimator = "reinforce_plus_plus"
        trainer._compute_advantage(batch, {})
        adv = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["advantages"])["advantages"]
        np.testing.assert_allclose(adv.to_padded_tensor(padding=0.0).numpy(),
                                   reinforce_pp_reference(padded, mask, config.algorithm.gamma), rtol=1e-4, atol=1e-4)
        tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)

        # The reward manager sent the trainer's global step with the run_id: the monitor has the run by step.
        batch = sample_groups(2, submit_prompts(manager, prompts_batch(1, seed=23), global_steps=2))
        tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)
        assert steps_on_monitor(own, "ci-verl-v1") == [1] * 6 + [2] * 2

        # on_error=raise (default): with the sidecar gone, verl's worker marks the group failed and its sync
        # replay buffer refuses to train on it; nothing is written as if it had been scored.
        own.stop()
        uids = list(prompts_batch(1, seed=22)["uid"])
        submit_prompts(manager, prompts_batch(1, seed=22), global_steps=3)
        with pytest.raises(RuntimeError, match="no materializable trajectories"):
            sample_groups(3, 1)
        status = (tq.kv_list(partition_id="train") or {}).get("train", {})
        assert status[uids[0]]["status"] == "failure"
        assert not [key for key in status if key.startswith(uids[0] + "_")]
    finally:
        own.stop()


def test_legacy_manager_output_carries_per_token_rm_scores(cluster, reader_fixture, tmp_path):
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage
    from verl.trainer.ppo.reward import extract_reward

    own = start_sidecar(reader_fixture.packs_dir)
    try:
        config = verl_config(reader_fixture, own.target, "mechreward_client.verl_dense.MechRewardAgentLoopManager", tmp_path,
                             on_error="flag", fallback_reward=-1.0, retries=0, timeout=5, run_id="ci-verl-legacy")
        manager_cls = load_class_from_fqn(config.actor_rollout_ref.rollout.agent.agent_loop_manager_class, "AgentLoopManager")
        assert manager_cls is MechRewardAgentLoopManager
        rewards = RewardLoopManager(config)
        manager = manager_cls.create(config=config, llm_client=None, teacher_client=None,
                                     reward_loop_worker_handles=rewards.reward_loop_worker_handles)
        # The legacy trainer repeats each prompt rollout.n times (interleaved) before generate_sequences.
        prompts = DataProto.from_dict(non_tensors=prompts_batch(3, seed=31), meta_info={"global_steps": 1})
        prompts = prompts.repeat(repeat_times=2, interleave=True)
        out = manager.generate_sequences(prompts)

        reward_tensor, extra = extract_reward(out)  # what ray_trainer.fit does when rm_scores is in the batch
        assert set(extra) == {"mechreward_reward", "mechreward_flagged", "mechreward_unscored"}
        prompt_width = out.batch["prompts"].shape[1]
        lengths = set()
        for row in range(len(out)):
            attention = out.batch["attention_mask"][row]
            prompt_ids = out.batch["prompts"][row][attention[:prompt_width].bool()].tolist()
            n = int(attention[prompt_width:].sum())
            lengths.add(n)
            expected = reference_for(reader_fixture, prompt_ids, out.batch["responses"][row][:n].tolist())
            np.testing.assert_allclose(reward_tensor[row, :n].numpy(), expected, rtol=1e-4, atol=1e-4)
            assert (reward_tensor[row, n:] == 0).all()
        assert len(lengths) > 1 and (out.non_tensor_batch["mechreward_unscored"] == 0).all()
        # The legacy trainer's meta_info["global_steps"] reached the sidecar with each trajectory's Score call.
        assert steps_on_monitor(own, "ci-verl-legacy") == [1] * 6

        out.batch["token_level_scores"] = reward_tensor
        out.batch["token_level_rewards"] = reward_tensor
        out.non_tensor_batch["uid"] = prompts.non_tensor_batch["uid"]  # the trainer unions the prompts' fields in
        algo = OmegaConf.create({"mechreward_token_coef": 0.3, "gamma": 1.0})
        adv = compute_advantage(out, adv_estimator="mechreward_dense", config=algo).batch["advantages"]
        mask = out.batch["response_mask"].double().numpy()
        np.testing.assert_allclose(adv.numpy(), dense_reference(reward_tensor.double().numpy(), mask,
                                                                list(out.non_tensor_batch["uid"]), 0.3), rtol=1e-4, atol=1e-4)

        # on_error=flag: the sidecar gone, every trajectory gets fallback_reward on its last token, flagged.
        own.stop()
        out = manager.generate_sequences(DataProto.from_dict(non_tensors=prompts_batch(2, seed=32), meta_info={"global_steps": 2}))
        reward_tensor, extra = extract_reward(out)
        lengths = out.batch["attention_mask"][:, prompt_width:].sum(-1)
        expected = torch.zeros_like(reward_tensor)
        expected[torch.arange(len(out)), lengths - 1] = -1.0
        assert torch.equal(reward_tensor, expected)
        assert (extra["mechreward_unscored"] == 1.0).all()
    finally:
        own.stop()

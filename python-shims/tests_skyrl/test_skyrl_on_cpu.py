"""SkyRL 0.3.0, installed for real, takes mechreward's per-token rewards through GeneratorOutput["rewards"].

SkyRL's trainer generates with vLLM on GPUs; this drives its real CPU-side steps around generation:

- ``prepare_generator_input`` builds the batch; ``RayPPOTrainer.generate`` (a real trainer built from the default
  ``SkyRLTrainConfig``) calls our ``MechRewardGenerator``, which wraps a stand-in generator (the tiny model
  sampling through transformers, in place of the vLLM-backed one) and scores through the real sidecar, then runs
  SkyRL's ``validate_generator_output`` on the result;
- ``postprocess_generator_output`` keeps the per-token rewards; ``convert_prompts_responses_to_batch_tensors``
  lays them out; ``compute_advantages_and_returns`` turns them into advantages with ``reinforce++`` (per token)
  and ``grpo`` (summed per sequence); SkyRL's ``regular`` policy loss with those advantages moves the tiny model.

The rewards equal a float64 recomputation from ``hidden_states[layer + 1]`` of an independent forward plus the
stand-in's outcome on the last token; the advantages equal numpy float64 references.
"""

from __future__ import annotations

import asyncio
import zlib

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mechreward_client import APIConnectionError
from mechreward_client.skyrl import GeneratorInterface, MechRewardGenerator

from skyrl.backends.skyrl_train.training_batch import TrainingInputBatch
from skyrl.backends.skyrl_train.utils.ppo_utils import PolicyLossRegistry
from skyrl.train.config import SkyRLTrainConfig
from skyrl.train.dataset.preprocess import convert_prompts_responses_to_batch_tensors
from skyrl.train.generators.utils import prepare_generator_input
from skyrl.train.trainer import RayPPOTrainer
from skyrl.train.utils.trainer_utils import validate_generator_output

from support import reference_rewards_for_ids, start_sidecar, word_prompts

MAX_NEW = 6
N_SAMPLES = 2


class TransformersGenerator(GeneratorInterface):
    """Stand-in for SkyRL's vLLM-backed generator: samples from the tiny model, scores each response's length.

    Per request: a seed from the trajectory id and a token limit, so responses differ in length as a server's do;
    the second response token is marked as an environment observation (loss mask 0), as in multi-turn rollouts.
    """

    def __init__(self, model_dir: str, tokenizer) -> None:
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.tokenizer = tokenizer

    async def generate(self, input_batch):
        prompt_ids, response_ids, masks, outcomes = [], [], [], []
        for prompt, trajectory in zip(input_batch["prompts"], input_batch["trajectory_ids"]):
            ids = self.tokenizer(" ".join(m["content"] for m in prompt), add_special_tokens=False)["input_ids"]
            seed = zlib.crc32(trajectory.to_string().encode())
            torch.manual_seed(seed)
            with torch.no_grad():
                out = self.model.generate(torch.tensor([ids]), max_new_tokens=2 + seed % (MAX_NEW - 1), do_sample=True,
                                          top_k=0, pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=self.tokenizer.eos_token_id)
            response = out[0, len(ids):].tolist()
            prompt_ids.append(ids)
            response_ids.append(response)
            masks.append([0 if t == 1 else 1 for t in range(len(response))])
            outcomes.append(len(response) / 10.0)
        return {"prompt_token_ids": prompt_ids, "response_ids": response_ids, "rewards": outcomes, "loss_masks": masks,
                "stop_reasons": ["stop"] * len(response_ids), "rollout_metrics": {}, "rollout_logprobs": None,
                "trajectory_ids": input_batch["trajectory_ids"]}


def settings(fixture, target: str, **more):
    return {"pack": fixture.pack, "reader_model": fixture.model_dir, "reader_tokenizer": fixture.tokenizer_dir,
            "target": target, "timeout": 20, **more}


def make_trainer(generator, tok, estimator: str) -> RayPPOTrainer:
    cfg = SkyRLTrainConfig()
    cfg.generator.n_samples_per_prompt = N_SAMPLES
    cfg.trainer.algorithm.advantage_estimator = estimator
    # Both watch a Ray cluster of GPU workers and vLLM engines, which a CPU test does not start.
    cfg.generator.inference_engine.enable_ray_prometheus_stats = False
    cfg.trainer.enable_ray_gpu_monitor = False
    return RayPPOTrainer(cfg=cfg, tracker=None, tokenizer=tok, train_dataset=None, inference_engine_client=None,
                         generator=generator)


def dataset_rows(count: int, seed: int) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": p}], "env_class": None, "env_extras": {}, "uid": f"q{seed}-{i}"}
            for i, p in enumerate(word_prompts(count, seed=seed, min_words=2, max_words=6))]


def generate(trainer: RayPPOTrainer, rows: list[dict]):
    generator_input, uids = prepare_generator_input(rows, N_SAMPLES, {"temperature": 1.0}, "none", "train", 1)
    output = asyncio.run(trainer.generate(generator_input))  # runs SkyRL's validate_generator_output
    return trainer.postprocess_generator_output(output, uids)


def training_batch(trainer: RayPPOTrainer, output, uids) -> TrainingInputBatch:
    sequences, attention, response_mask, rewards, loss_mask, _, _ = convert_prompts_responses_to_batch_tensors(
        trainer.tokenizer, output["prompt_token_ids"], output["response_ids"], output["rewards"], output["loss_masks"])
    batch = TrainingInputBatch({"sequences": sequences, "attention_mask": attention, "response_mask": response_mask,
                                "rewards": rewards, "loss_mask": loss_mask, "values": None})
    batch.metadata = {"uids": uids, "avg_response_length": float(response_mask.sum(-1).float().mean())}
    return batch


def reinforce_pp_reference(rewards: np.ndarray, mask: np.ndarray) -> np.ndarray:
    returns = np.flip(np.cumsum(np.flip(rewards * mask, -1), -1), -1) * mask  # gamma = 1
    valid = returns[mask > 0]
    return (returns - valid.mean()) / np.sqrt(valid.var(ddof=1) + 1e-8) * mask


def grpo_reference(rewards: np.ndarray, mask: np.ndarray, uids: list[str]) -> np.ndarray:
    totals = (rewards * mask).sum(-1)
    out = np.zeros_like(rewards)
    for uid in dict.fromkeys(uids):
        rows = [i for i, u in enumerate(uids) if u == uid]
        t = totals[rows]
        out[rows] = ((t - t.mean()) / (t.std(ddof=1) + 1e-6))[:, None] * mask[rows]
    return out


def test_per_token_rewards_pass_validation_and_reach_advantages(reader_fixture, sidecar):
    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    inner = TransformersGenerator(reader_fixture.model_dir, tok)
    trainer = make_trainer(MechRewardGenerator(inner, settings(reader_fixture, sidecar.target)), tok, "reinforce++")
    output, uids = generate(trainer, dataset_rows(3, seed=41))

    lengths = set()
    for i, (prompt, response) in enumerate(zip(output["prompt_token_ids"], output["response_ids"])):
        expected = reference_rewards_for_ids(reader_fixture.model_dir, prompt + response, reader_fixture.layer,
                                             reader_fixture)[len(prompt):]
        expected = expected * np.asarray(output["loss_masks"][i], dtype=np.float64)
        expected[-1] += len(response) / 10.0  # the stand-in's outcome, on the last token (outcome_weight 1)
        assert len(output["rewards"][i]) == len(response)
        np.testing.assert_allclose(output["rewards"][i], expected, rtol=1e-4, atol=1e-4)
        assert np.abs(expected[:-1]).max(initial=0.0) > 1e-3 or len(response) == 2  # features fire
        lengths.add(len(response))
    assert len(lengths) > 1
    assert trainer.all_metrics["mechreward/unscored"] == 0.0  # rollout_metrics reach the trainer's metrics

    batch = training_batch(trainer, output, uids)
    rewards = batch["rewards"].double().numpy()
    mask = batch["response_mask"].double().numpy()
    advantages = trainer.compute_advantages_and_returns(batch)["advantages"].double().numpy()
    np.testing.assert_allclose(advantages, reinforce_pp_reference(rewards, mask), rtol=1e-4, atol=1e-4)
    row = int(np.argmax(mask.sum(-1)))
    assert len(np.unique(advantages[row][mask[row] > 0].round(6))) > 1  # per token, not one value per response

    trainer.cfg.trainer.algorithm.advantage_estimator = "grpo"
    grpo = trainer.compute_advantages_and_returns(training_batch(trainer, output, uids))["advantages"].double().numpy()
    np.testing.assert_allclose(grpo, grpo_reference(rewards, mask, uids), rtol=1e-4, atol=1e-4)

    # SkyRL's own policy loss with these advantages: one step moves the tiny model.
    model = AutoModelForCausalLM.from_pretrained(reader_fixture.model_dir)
    before = [p.detach().clone() for p in model.parameters()]
    sequences, response_len = batch["sequences"], batch["response_mask"].shape[1]
    logits = model(input_ids=sequences, attention_mask=batch["attention_mask"]).logits[:, -response_len - 1:-1]
    log_probs = torch.log_softmax(logits, -1).gather(-1, sequences[:, -response_len:].unsqueeze(-1)).squeeze(-1)
    loss_fn = PolicyLossRegistry.get(trainer.cfg.trainer.algorithm.policy_loss_type)
    loss, _ = loss_fn(log_probs, log_probs.detach(), torch.from_numpy(advantages).float(), trainer.cfg.trainer.algorithm,
                      loss_mask=batch["loss_mask"].float())
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_skyrls_validation_rejects_a_per_token_list_of_the_wrong_length(reader_fixture, sidecar):
    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    wrapped = MechRewardGenerator(TransformersGenerator(reader_fixture.model_dir, tok), settings(reader_fixture, sidecar.target))
    generator_input, _ = prepare_generator_input(dataset_rows(1, seed=42), N_SAMPLES, {}, "none", "train", 1)
    output = asyncio.run(wrapped.generate(generator_input))
    validate_generator_output(len(generator_input["prompts"]), output)
    output["rewards"][0] = output["rewards"][0][:-1]
    with pytest.raises(AssertionError, match="Token rewards and response ids must have the same length"):
        validate_generator_output(len(generator_input["prompts"]), output)


def test_failing_sidecar_raises_or_gives_the_flagged_fallback(reader_fixture):
    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    inner = TransformersGenerator(reader_fixture.model_dir, tok)
    own = start_sidecar(reader_fixture.packs_dir)
    raising = make_trainer(MechRewardGenerator(inner, settings(reader_fixture, own.target, timeout=2, retries=0)), tok, "grpo")
    flagging = make_trainer(MechRewardGenerator(inner, settings(reader_fixture, own.target, timeout=2, retries=0,
                                                                on_error="flag", fallback_reward=-1.0)), tok, "grpo")
    rows = dataset_rows(1, seed=43)
    generate(raising, rows)  # alive: both learn the pack's layer
    generate(flagging, rows)
    own.stop()
    with pytest.raises(APIConnectionError):
        generate(raising, rows)
    output, _ = generate(flagging, rows)
    for rewards, response in zip(output["rewards"], output["response_ids"]):
        assert rewards[:-1] == [0.0] * (len(response) - 1)
        assert rewards[-1] == pytest.approx(-1.0 + len(response) / 10.0)
    assert flagging.all_metrics["mechreward/unscored"] == 1.0

"""Real trl.GRPOTrainer(...).train() runs on CPU with MechReward against the real sidecar.

- The rewards TRL receives are exactly what the server returned, and equal a reference computed independently
  from hidden_states[layer + 1] of a full forward at the same step (and a float64 numpy SAE encode).
- MechRewardGRPOTrainer hands (B, T) advantages to the loss, the per-token term is the group z-score of the
  server's token rewards, it changes the gradient, and the parameters move.
- A sidecar that is down or frozen gives None (unscorable) or an exception, per on_error, never a hang.
"""

from __future__ import annotations

import inspect
import logging
import os
import pickle
import signal
import time

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from mechreward_client import APIConnectionError, APITimeoutError, RewardClient
from mechreward_client.trl import G3_TOKEN_COEF, LinearDecay, MechReward, MechRewardGRPOTrainer

from support import (
    free_port,
    random_topk_sae,
    reference_token_rewards,
    start_sidecar,
    tiny_llama,
    tiny_tokenizer,
    word_prompts,
    write_pack,
)

PACK = "tiny-llama-l1"
LAYER = 1
FEATURES_SEED = 7


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory):
    packs_dir = tmp_path_factory.mktemp("trl-packs")
    # scale: the random tiny model's residuals are ~0.02; scale the encoder so features fire on them.
    sae = random_topk_sae(d_model=64, d_sae=256, k=16, seed=3, scale=50.0)
    rng = np.random.default_rng(FEATURES_SEED)
    ids = rng.choice(256, size=24, replace=False)
    features = [(int(i), float(w)) for i, w in zip(ids, rng.choice([-1.0, 1.0], 24) * rng.uniform(0.5, 2.0, 24))]
    write_pack(str(packs_dir / PACK), sae, layer=LAYER, features=features)
    return str(packs_dir), sae, features


@pytest.fixture(scope="module")
def trl_sidecar(tiny_pack):
    sidecar = start_sidecar(tiny_pack[0])
    yield sidecar
    assert sidecar.stop() == 0


def grpo_args(tmp_path, **overrides) -> GRPOConfig:
    settings = dict(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=8, max_steps=2,
        learning_rate=1e-3, report_to="none", save_strategy="no", logging_steps=1, seed=0, dataloader_num_workers=0,
        disable_tqdm=True,  # progress bars of a run that raised would print after pytest's summary
    )
    settings.update(overrides)
    return GRPOConfig(**settings)


def prompt_dataset(count=16, seed=0) -> Dataset:
    return Dataset.from_dict({"prompt": word_prompts(count, seed)})


@torch.no_grad()
def independent_reference(model, tokenizer, prompts, completion_ids, client, sae, features):
    """Per row: full forward of prompt + completion alone, hidden_states[LAYER + 1], scored by the server
    (a separate client) and by float64 numpy."""
    was_training = model.training
    model.eval()
    server, numpy_ref = [], []
    try:
        for prompt, completion in zip(prompts, completion_ids):
            prompt_ids = tokenizer(text=prompt)["input_ids"]
            ids = torch.tensor([prompt_ids + list(completion)])
            hidden = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states[LAYER + 1][0]
            x = hidden.float().numpy()
            server.append(client.score(PACK, [x], score_from=len(prompt_ids))[0].reward)
            numpy_ref.append(float(reference_token_rewards(x, sae, features)[len(prompt_ids):].mean()))
    finally:
        model.train(was_training)
    return server, numpy_ref


def test_grpo_train_rewards_equal_server_values(tmp_path, trl_sidecar, tiny_pack):
    _, sae, features = tiny_pack
    model, tokenizer = tiny_llama(seed=1), tiny_tokenizer()
    reward = MechReward(PACK, model=model, tokenizer=tokenizer, target=trl_sidecar.target, timeout=30)
    async_reward = MechReward(PACK, model=model, tokenizer=tokenizer, target=trl_sidecar.target, timeout=30)
    assert reward.layer == LAYER  # from ListPacks
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward, async_reward.ascore], args=grpo_args(tmp_path),
        train_dataset=prompt_dataset(), processing_class=tokenizer,
    )
    reference_client = RewardClient(trl_sidecar.target)
    records = []
    calculate_rewards = trainer._calculate_rewards

    def recording_calculate_rewards(inputs, prompts, completions, completion_ids_list):
        rewards = calculate_rewards(inputs, prompts, completions, completion_ids_list)
        server, numpy_ref = independent_reference(model, tokenizer, prompts, completion_ids_list, reference_client, sae, features)
        sequences, _ = reward.token_sequences(prompts, completion_ids_list)
        returned = [reward._recent[tuple(s)].reward for s in sequences]
        records.append({"trl": rewards.clone(), "returned": returned, "server": server, "numpy": numpy_ref})
        return rewards

    trainer._calculate_rewards = recording_calculate_rewards
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(records) == 2  # one generation per optimizer step
    for record in records:
        trl_sync, trl_async = record["trl"][:, 0], record["trl"][:, 1]
        assert not torch.isnan(trl_sync).any()
        # Exactly what the server returned to MechReward (float32 on the wire, float32 in TRL).
        assert torch.equal(trl_sync, torch.tensor(record["returned"], dtype=torch.float32))
        assert torch.equal(trl_async, trl_sync)  # the async path (bound ascore) scores the same activations
        # Same as scoring hidden_states[LAYER + 1] of an unpadded full forward at the same step.
        np.testing.assert_allclose(trl_sync.numpy(), record["server"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(trl_sync.numpy(), record["numpy"], rtol=1e-4, atol=1e-5)
        assert len(set(record["returned"])) > 1  # rewards vary, so GRPO has a signal
    logged = [h for h in trainer.state.log_history if "rewards/mechreward/mean" in h]
    assert len(logged) == 2
    print(f"\nTRL rewards step 1: {[round(v, 5) for v in records[0]['trl'][:, 0].tolist()]}")
    print(f"server (independent hidden_states[{LAYER + 1}] forward): {[round(v, 5) for v in records[0]['server']]}")
    diffs = [abs(a - b) for r in records for a, b in zip(r["trl"][:, 0].tolist(), r["server"])]
    print(f"max |TRL - independent server| over both steps: {max(diffs):.2e}")


def test_dense_trainer_puts_per_token_rewards_into_the_loss(tmp_path, trl_sidecar, monkeypatch):
    model, tokenizer = tiny_llama(seed=2), tiny_tokenizer()
    reward = MechReward(PACK, model=model, tokenizer=tokenizer, target=trl_sidecar.target, timeout=30)
    coef = 0.5
    trainer = MechRewardGRPOTrainer(
        model=model, reward_funcs=[reward], args=grpo_args(tmp_path), train_dataset=prompt_dataset(seed=1),
        processing_class=tokenizer, token_reward_coef=coef,
    )
    generated, losses = [], []
    generate_and_score = trainer._generate_and_score_completions

    def recording_generate(inputs):
        output = generate_and_score(inputs)
        generated.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in output.items()})
        generated[-1]["scored"] = dict(reward._recent)
        return output

    trainer._generate_and_score_completions = recording_generate
    base_compute_loss = GRPOTrainer._compute_loss
    weight = model.get_input_embeddings().weight

    def observing_compute_loss(self, model_, inputs):
        loss = base_compute_loss(self, model_, inputs)
        advantages, token_term = inputs["advantages"], inputs["mech_token_advantages"]
        sequence_part = (advantages - token_term)[:, :1]
        plain = base_compute_loss(self, model_, {**inputs, "advantages": sequence_part})
        g_dense = torch.autograd.grad(loss, weight, retain_graph=True)[0]
        g_plain = torch.autograd.grad(plain, weight)[0]
        losses.append({"shape": tuple(advantages.shape), "width": inputs["completion_ids"].shape[1],
                       "sequence_part_constant": bool(torch.allclose(advantages - token_term, sequence_part.expand_as(advantages))),
                       "grad_diff": float((g_dense - g_plain).norm())})
        return loss

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", observing_compute_loss)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    change = float(torch.sqrt(sum(((p.detach() - before[n]) ** 2).sum() for n, p in model.named_parameters())))

    assert trainer.state.global_step == 2 and len(generated) == 2 and len(losses) == 2
    for seen in losses:
        assert len(seen["shape"]) == 2 and seen["shape"] == (4, seen["width"])  # (B, T) advantages
        assert seen["sequence_part_constant"]
        assert seen["grad_diff"] > 0  # the per-token term changes the gradient
    for output in generated:
        term = output["mech_token_advantages"]
        assert term.shape == output["completion_ids"].shape and term.abs().sum() > 0
        # Recompute the term from the server's token rewards: coef * z-score within each group of 2.
        prompts = [ids[m.bool()].tolist() for ids, m in zip(output["prompt_ids"], output["prompt_mask"])]
        lengths = output["completion_mask"].sum(1).tolist()
        r = torch.zeros_like(term)
        for i, p in enumerate(prompts):
            seq = p + output["completion_ids"][i, : lengths[i]].tolist()
            r[i, : lengths[i]] = torch.from_numpy(output["scored"][tuple(seq)].token_rewards[len(p):])
        mask = output["completion_mask"].bool()
        for g in range(0, 4, 2):
            vals = r[g:g + 2][mask[g:g + 2]]
            expected = torch.where(mask[g:g + 2], coef * (r[g:g + 2] - vals.mean()) / (vals.std(unbiased=False) + 1e-4), 0.0)
            torch.testing.assert_close(term[g:g + 2], expected, rtol=1e-4, atol=1e-5)
    assert change > 0
    metrics = [h for h in trainer.state.log_history if "mechreward/token_coef" in h]
    assert metrics and metrics[0]["mechreward/token_coef"] == coef
    print(f"\nadvantages reaching _compute_loss: {[s['shape'] for s in losses]}; "
          f"|grad(dense) - grad(sequence only)| = {[round(s['grad_diff'], 6) for s in losses]}; "
          f"parameter change norm {change:.4f}")


def test_sidecar_down_gives_unscorable_rows_or_raises(tmp_path):
    model, tokenizer = tiny_llama(seed=3), tiny_tokenizer()
    dead = f"127.0.0.1:{free_port()}"
    unscored = MechReward(PACK, model=model, tokenizer=tokenizer, target=dead, layer=LAYER, timeout=2.0, retries=1)
    trainer = GRPOTrainer(model=model, reward_funcs=[unscored], args=grpo_args(tmp_path, max_steps=1),
                          train_dataset=prompt_dataset(), processing_class=tokenizer)
    seen = []
    calculate_rewards = trainer._calculate_rewards
    trainer._calculate_rewards = lambda *a: seen.append(calculate_rewards(*a)) or seen[-1]
    started = time.monotonic()
    trainer.train()  # completes: every row unscorable, advantage 0, no fake reward
    elapsed = time.monotonic() - started
    assert trainer.state.global_step == 1
    assert torch.isnan(seen[0]).all()
    print(f"\nsidecar down, on_error='none': step finished in {elapsed:.1f}s with all rewards None")

    raising = MechReward(PACK, model=model, tokenizer=tokenizer, target=dead, layer=LAYER, timeout=2.0, retries=1, on_error="raise")
    trainer = GRPOTrainer(model=model, reward_funcs=[raising], args=grpo_args(tmp_path, max_steps=1),
                          train_dataset=prompt_dataset(), processing_class=tokenizer)
    with pytest.raises(APIConnectionError):
        trainer.train()


def test_frozen_sidecar_times_out_instead_of_hanging(bundled_sidecar, caplog):
    """examples/packs/synthetic-tiny reads layer 3 of a d_model-64 model: the tiny Llama's last layer."""
    model, tokenizer = tiny_llama(seed=4), tiny_tokenizer()
    prompts = word_prompts(4, seed=5)
    completion_ids = [[7, 8, 9, 1], [10, 1], [11, 12, 13, 14, 1], [15, 1]]
    kwargs = dict(model=model, tokenizer=tokenizer, target=bundled_sidecar.target, timeout=1.5, retries=2)
    as_none = MechReward("synthetic-tiny", **kwargs)
    as_error = MechReward("synthetic-tiny", on_error="raise", **kwargs)
    healthy = as_none(prompts=prompts, completions=[""] * 4, completion_ids=completion_ids)
    assert all(isinstance(r, float) for r in healthy) and as_none.layer == 3
    as_error.layer  # resolve the layer while the sidecar answers

    caplog.set_level(logging.DEBUG, logger="mechreward_client")
    os.kill(bundled_sidecar.process.pid, signal.SIGSTOP)
    try:
        frozen = as_none(prompts=prompts, completions=[""] * 4, completion_ids=completion_ids)
        with pytest.raises(APITimeoutError):
            as_error(prompts=prompts, completions=[""] * 4, completion_ids=completion_ids)
    finally:
        os.kill(bundled_sidecar.process.pid, signal.SIGCONT)
    assert frozen == [None] * 4
    # One 1.5 s deadline each, not retried although retries=2 (the client's log, not a wall-clock bound).
    messages = [r.getMessage() for r in caplog.records if r.name == "mechreward_client"]
    assert not [m for m in messages if m.startswith("mechreward: retry ")], messages
    gave_up = [m for m in messages if "not retrying" in m]
    assert len(gave_up) == 2 and all("DEADLINE_EXCEEDED" in m and m.endswith("after 0 retries") for m in gave_up), gave_up
    print("\nfrozen sidecar: None, then APITimeoutError, each after one attempt (timeout=1.5)")

    # The reward object pickles (channel dropped) and the copy scores like the original.
    copy = pickle.loads(pickle.dumps(as_none))
    assert copy(prompts=prompts, completions=[""] * 4, completion_ids=completion_ids) == healthy


def test_dense_trainer_finds_its_reward_and_refuses_without_one(tmp_path):
    model, tokenizer = tiny_llama(seed=5), tiny_tokenizer()
    reward = MechReward(PACK, model=model, tokenizer=tokenizer, target="127.0.0.1:1", layer=LAYER)
    common = dict(model=model, args=grpo_args(tmp_path), train_dataset=prompt_dataset(), processing_class=tokenizer)
    assert MechRewardGRPOTrainer(reward_funcs=[reward.ascore], **common).mech_reward is reward
    with pytest.raises(ValueError, match="needs a MechReward"):
        MechRewardGRPOTrainer(reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], **common)


def test_schedule_and_trl_contract():
    assert G3_TOKEN_COEF(0) == pytest.approx(0.20) and G3_TOKEN_COEF(750) == pytest.approx(0.125)
    assert G3_TOKEN_COEF(1500) == G3_TOKEN_COEF(10**6) == pytest.approx(0.05)
    assert LinearDecay(1.0, 0.0, 0)(0) == 0.0
    # The GRPOTrainer internals the adapter relies on (fail loudly when an upgrade changes them).
    assert list(inspect.signature(GRPOTrainer._calculate_rewards).parameters) == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert list(inspect.signature(GRPOTrainer._compute_loss).parameters) == ["self", "model", "inputs"]
    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert "advantages.dim() == 1" in inspect.getsource(GRPOTrainer._compute_loss)  # (B, T) accepted
    assert "unscorable" in inspect.getsource(GRPOTrainer._generate_and_score_completions)  # None -> no advantage

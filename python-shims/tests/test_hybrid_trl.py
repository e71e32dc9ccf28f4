"""Real trl GRPO steps on hybrid models (tiny Qwen3.5: Gated DeltaNet + gated attention; tiny Qwen3.5-MoE)
with MechReward and with MechRewardGRPOTrainer, against the real sidecar.

Every reward TRL receives is recomputed independently: each prompt + completion run alone through a full
forward of the policy at that step, hidden_states[LAYER + 1] scored by a float64 numpy TopK encode (and by the
server through a separate client). For the dense trainer, the per-token advantage term is recomputed from those
float64 token rewards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from mechreward_client import RewardClient
from mechreward_client.capture import _checked_models
from mechreward_client.trl import MechReward, MechRewardGRPOTrainer

from hybrid_models import build
from support import random_topk_sae, reference_token_rewards, start_sidecar, tiny_tokenizer, word_prompts, write_pack

PACK = "tiny-hybrid-l1"
LAYER = 1  # a full-attention layer after a Gated DeltaNet layer in both tiny configs
FAMILIES = ["qwen3_5", "qwen3_5_moe"]
EMBEDDING_STD = 0.1  # tied LM head: unit-scale embeddings would make sampling deterministic (zero-std groups)
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def hybrid_pack(tmp_path_factory):
    packs_dir = tmp_path_factory.mktemp("hybrid-trl-packs")
    # Residuals of the tiny hybrids at embedding std 0.1 are ~0.1-1: scale the random encoder so features fire.
    sae = random_topk_sae(d_model=64, d_sae=256, k=16, seed=5, scale=10.0)
    rng = np.random.default_rng(9)
    ids = rng.choice(256, size=32, replace=False)
    features = [(int(i), float(w)) for i, w in zip(ids, rng.choice([-1.0, 1.0], 32) * rng.uniform(0.5, 2.0, 32))]
    write_pack(str(packs_dir / PACK), sae, layer=LAYER, features=features)
    return str(packs_dir), sae, features


@pytest.fixture(scope="module")
def hybrid_sidecar(hybrid_pack):
    sidecar = start_sidecar(hybrid_pack[0])
    yield sidecar
    assert sidecar.stop() == 0


def grpo_args(tmp_path) -> GRPOConfig:
    return GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=6, max_steps=2,
        learning_rate=1e-3, report_to="none", save_strategy="no", logging_steps=1, seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )


@torch.no_grad()
def independent_token_rewards(model, tokenizer, prompts, completion_ids, client, sae, features):
    """Per row, alone: (prompt length, float64 numpy token rewards, the server's pooled reward of the same rows)."""
    was_training = model.training
    model.eval()
    rows = []
    try:
        for prompt, completion in zip(prompts, completion_ids):
            prompt_ids = tokenizer(text=prompt)["input_ids"]
            ids = torch.tensor([prompt_ids + list(completion)])
            x = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states[LAYER + 1][0].float().numpy()
            server = client.score(PACK, [x], score_from=len(prompt_ids))[0].reward
            rows.append((len(prompt_ids), reference_token_rewards(x, sae, features), server))
    finally:
        model.train(was_training)
    return rows


@pytest.mark.parametrize("family", FAMILIES)
def test_grpo_with_mech_reward(family, tmp_path, hybrid_sidecar, hybrid_pack):
    _, sae, features = hybrid_pack
    model, tokenizer = build(family, seed=1, embedding_std=EMBEDDING_STD), tiny_tokenizer()
    reward = MechReward(PACK, model=model, tokenizer=tokenizer, target=hybrid_sidecar.target, timeout=30)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=grpo_args(tmp_path),
                          train_dataset=Dataset.from_dict({"prompt": word_prompts(16, seed=2)}), processing_class=tokenizer)
    client = RewardClient(hybrid_sidecar.target)
    records = []
    calculate_rewards = trainer._calculate_rewards

    def recording(inputs, prompts, completions, completion_ids_list):
        rewards = calculate_rewards(inputs, prompts, completions, completion_ids_list)
        rows = independent_token_rewards(model, tokenizer, prompts, completion_ids_list, client, sae, features)
        records.append((rewards[:, 0].clone(), rows))
        return rewards

    trainer._calculate_rewards = recording
    trainer.train()

    assert trainer.state.global_step == 2 and len(records) == 2
    # The padding guard ran inside the real reward path (MechReward's first padded batch) and found no leak.
    assert model in _checked_models
    worst = 0.0
    for trl_rewards, rows in records:
        numpy_ref = torch.tensor([float(tokens[prompt_len:].mean()) for prompt_len, tokens, _ in rows], dtype=torch.float64)
        server = torch.tensor([row[2] for row in rows], dtype=torch.float32)
        assert not torch.isnan(trl_rewards).any()
        torch.testing.assert_close(trl_rewards, server, rtol=1e-5, atol=1e-5)
        scale = max(1.0, float(numpy_ref.abs().max()))
        worst = max(worst, float((trl_rewards.double() - numpy_ref).abs().max()) / scale)
        assert len(set(trl_rewards.tolist())) > 1  # the rewards vary: GRPO has a signal
    assert worst <= 1e-4
    print(f"\n{family}: GRPO rewards vs float64 numpy recomputation, worst relative {worst:.2e}; "
          f"step 1 rewards {[round(v, 4) for v in records[0][0].tolist()]}")


@pytest.mark.parametrize("family", FAMILIES)
def test_dense_trainer_token_advantages(family, tmp_path, hybrid_sidecar, hybrid_pack):
    _, sae, features = hybrid_pack
    model, tokenizer = build(family, seed=2, embedding_std=EMBEDDING_STD), tiny_tokenizer()
    reward = MechReward(PACK, model=model, tokenizer=tokenizer, target=hybrid_sidecar.target, timeout=30)
    coef = 0.5
    trainer = MechRewardGRPOTrainer(model=model, reward_funcs=[reward], args=grpo_args(tmp_path),
                                    train_dataset=Dataset.from_dict({"prompt": word_prompts(16, seed=3)}),
                                    processing_class=tokenizer, token_reward_coef=coef)
    client = RewardClient(hybrid_sidecar.target)
    generated = []
    generate_and_score = trainer._generate_and_score_completions

    def recording(inputs):
        output = generate_and_score(inputs)
        prompts = [tokenizer.decode(ids[m.bool()].tolist()) for ids, m in zip(output["prompt_ids"], output["prompt_mask"])]
        lengths = output["completion_mask"].sum(1).tolist()
        completions = [output["completion_ids"][i, :n].tolist() for i, n in enumerate(lengths)]
        rows = independent_token_rewards(model, tokenizer, prompts, completions, client, sae, features)
        generated.append((output["mech_token_advantages"].clone(), output["completion_mask"].clone(), rows))
        return output

    trainer._generate_and_score_completions = recording
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    change = float(torch.sqrt(sum(((p.detach() - before[n]) ** 2).sum() for n, p in model.named_parameters())))

    assert trainer.state.global_step == 2 and len(generated) == 2
    for term, mask, rows in generated:
        # The per-token term recomputed from the float64 token rewards: coef x z-score within each group of 2.
        r = torch.zeros(term.shape, dtype=torch.float64)
        for i, (prompt_len, token_rewards, _server) in enumerate(rows):
            n = int(mask[i].sum())
            r[i, :n] = torch.from_numpy(token_rewards[prompt_len:prompt_len + n])
        expected = torch.zeros_like(r)
        for g in range(0, term.shape[0], 2):
            m = mask[g:g + 2].bool()
            vals = r[g:g + 2][m]
            expected[g:g + 2] = torch.where(m, coef * (r[g:g + 2] - vals.mean()) / (vals.std(unbiased=False) + 1e-4), 0.0)
        assert term.abs().sum() > 0
        torch.testing.assert_close(term.double(), expected, rtol=1e-3, atol=1e-3)
    assert change > 0
    assert any(h.get("frac_reward_zero_std", 1.0) < 1.0 for h in trainer.state.log_history)  # groups differ
    print(f"\n{family}: dense trainer, per-token term matches the float64 recomputation; parameter change {change:.4f}")

"""verl 0.9.1, installed for real, calls our reward manager, compute_score and advantage estimator.

- In a fresh interpreter, plain ``import verl`` registers reward manager ``mechreward`` and estimator
  ``mechreward_dense`` through the ``verl.plugins`` entry point (and not without it).
- verl's own ``load_reward_manager`` builds the manager from a config; ``run_single`` on a real DataProto (ids
  from the real tokenizer, left-padded prompts, right-padded responses) returns the sidecar's scores, equal to
  a float64 reference computed from ``hidden_states[layer + 1]`` of an independent full forward.
- ``compute_score`` loaded by verl's ``get_custom_reward_fn`` from ``pkg://mechreward_client.verl`` runs
  inside verl's ``NaiveRewardManager``.
- The estimator turns the sidecar's per-token rewards into advantages equal to a numpy float64 reference, and
  one policy-gradient step with them moves the tiny model.
- A stopped or frozen sidecar raises (default) or gives the flagged fallback; nothing hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer
from verl import DataProto
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.trainer.ppo.reward import get_custom_reward_fn, load_reward_manager

from mechreward_client import APIConnectionError, APITimeoutError
from mechreward_client.verl import EXTRA_KEYS, TOKEN_REWARDS_KEY, MechRewardManager, decode_token_rewards

from support import reference_rewards_for_ids, start_sidecar, word_prompts

PROMPT_LEN = 6
RESPONSE_LEN = 5


def make_config(fixture, target, **mech):
    return OmegaConf.create({
        "reward": {
            "reward_manager": {"source": "register", "name": "mechreward"},
            "mechreward": {"pack": fixture.pack, "target": target, "timeout": 20, "reader_tokenizer": fixture.tokenizer_dir, **mech},
        },
        "actor_rollout_ref": {"model": {"path": fixture.model_dir}},
    })


def make_batch(tok, prompts: list[str], responses: list[str]) -> DataProto:
    """A DataProto as verl's rollout leaves it: prompts left-padded, responses right-padded, one mask."""
    rows_p, rows_r, masks = [], [], []
    for p, r in zip(prompts, responses):
        pid = tok(p, add_special_tokens=False)["input_ids"][-PROMPT_LEN:]
        rid = (tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])[:RESPONSE_LEN]
        rows_p.append([tok.pad_token_id] * (PROMPT_LEN - len(pid)) + pid)
        rows_r.append(rid + [tok.pad_token_id] * (RESPONSE_LEN - len(rid)))
        masks.append([0] * (PROMPT_LEN - len(pid)) + [1] * len(pid) + [1] * len(rid) + [0] * (RESPONSE_LEN - len(rid)))
    prompts_t, responses_t, mask = torch.tensor(rows_p), torch.tensor(rows_r), torch.tensor(masks)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict(
        tensors={"prompts": prompts_t, "responses": responses_t, "input_ids": torch.cat([prompts_t, responses_t], -1),
                 "attention_mask": mask, "position_ids": position_ids},
        non_tensors={"data_source": np.array(["words"] * len(prompts), dtype=object),
                     "reward_model": np.array([{"ground_truth": "w1"} for _ in prompts], dtype=object),
                     "extra_info": np.array([{"prompt": p} for p in prompts], dtype=object),
                     "uid": np.array([f"g{i // 2}" for i in range(len(prompts))], dtype=object)},
    )


def valid_ids(batch: DataProto, i: int) -> tuple[list[int], int]:
    mask = batch.batch["attention_mask"][i]
    p = batch.batch["prompts"][i][mask[:PROMPT_LEN].bool()].tolist()
    r = batch.batch["responses"][i][: int(mask[PROMPT_LEN:].sum())].tolist()
    return p + r, len(p)


def run(manager, data):
    """run_single on the event loop the manager took at construction, as verl's RewardLoopWorker does."""
    return manager.loop.run_until_complete(manager.run_single(data))


def test_plain_import_verl_finds_the_plugin_in_a_fresh_process():
    code = (
        "import verl\n"
        "from verl.experimental.reward_loop.reward_manager.registry import get_reward_manager_cls\n"
        "from verl.trainer.ppo.core_algos import get_adv_estimator_fn\n"
        "cls = get_reward_manager_cls('mechreward')\n"
        "fn = get_adv_estimator_fn('mechreward_dense')\n"
        "print(cls.__module__, cls.__name__, fn.__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_USE_EXTERNAL_PLUGINS", "VERL_USE_EXTERNAL_MODULES")}
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.split() == ["mechreward_client.verl", "MechRewardManager", "compute_mechreward_dense_advantage"]
    # The entry point is what registers it: with plugins off, verl does not know the name.
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, "VERL_USE_EXTERNAL_PLUGINS": "none"}, timeout=240)
    assert off.returncode != 0 and "Unknown reward manager: mechreward" in off.stderr


def test_run_single_returns_the_sidecars_scores(reader_fixture, sidecar):
    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    prompts = word_prompts(4, seed=3, min_words=2, max_words=8)  # some longer than PROMPT_LEN: truncated
    responses = word_prompts(4, seed=4, min_words=1, max_words=6)
    batch = make_batch(tok, prompts, responses)
    manager = load_reward_manager(make_config(reader_fixture, sidecar.target), tok)
    assert isinstance(manager, MechRewardManager)
    for i in range(len(batch)):
        out = run(manager, batch[i : i + 1])
        ids, start = valid_ids(batch, i)
        ref = reference_rewards_for_ids(reader_fixture.model_dir, ids, reader_fixture.layer, reader_fixture)
        info = out["reward_extra_info"]
        assert set(info) == set(EXTRA_KEYS)
        assert info["mechreward_unscored"] == 0.0
        np.testing.assert_allclose(decode_token_rewards(info[TOKEN_REWARDS_KEY]), ref[start:], rtol=1e-4, atol=1e-4)
        assert out["reward_score"] == pytest.approx(ref[start:].mean(), rel=1e-4, abs=1e-4)
        assert out["reward_score"] == info["mechreward_reward"]
        assert abs(out["reward_score"]) > 1e-3  # the features fire: not a vacuous comparison of zeros


def test_run_single_sends_the_trainers_global_step_with_the_run_id(reader_fixture, sidecar):
    """The step verl hands the reward manager reaches the monitor: from ``meta_info["global_steps"]`` (the legacy
    trainer's batch on the colocated path) or the sample field ``global_steps`` (the agent-loop path, which
    test_verl_dense_on_cpu.py drives for real); with neither, the call carries no step."""
    import json
    import urllib.request

    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    batch = make_batch(tok, word_prompts(3, seed=5, min_words=2, max_words=5), word_prompts(3, seed=6, min_words=1, max_words=4))
    manager = load_reward_manager(make_config(reader_fixture, sidecar.target, run_id="ci-verl-step"), tok)
    colocated, agent_loop, plain = batch[0:1], batch[1:2], batch[2:3]  # slices share one meta_info dict: replace it
    colocated.meta_info = {"global_steps": 5}
    agent_loop.non_tensor_batch["global_steps"] = np.array([7])
    agent_loop.meta_info = {"global_steps": 5}  # the sample's own field wins
    plain.meta_info = {}
    for data in (colocated, agent_loop, plain):
        run(manager, data)
    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar.http_port}/v1/runs/ci-verl-step") as response:
        history = json.load(response)["history"]
    assert [point.get("step") for point in history] == [5, 7, None]


def test_ragged_token_rewards_pass_verls_numpy_conversions_and_validation_metrics(reader_fixture, sidecar):
    """verl makes one np.array per reward_extra_info key across samples and averages every non-string value in
    validation; responses of different lengths must survive both, and decode to the same float32 values."""
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    batch = make_batch(tok, ["w1 w2", "w3 w4"], ["w5", "w6 w7 w8 w9"])  # 2 and 5 valid response tokens
    manager = MechRewardManager(make_config(reader_fixture, sidecar.target), tok, None)
    infos = [run(manager, batch[i : i + 1])["reward_extra_info"] for i in range(len(batch))]
    lists = [decode_token_rewards(info[TOKEN_REWARDS_KEY]).tolist() for info in infos]
    assert [len(v) for v in lists] == [2, 5]
    with pytest.raises(ValueError):  # what a plain ragged list does in agent_loop.py's np.array(...)
        np.array(lists)
    column = np.array([info[TOKEN_REWARDS_KEY] for info in infos])  # the same call, on what the manager returns
    assert [decode_token_rewards(v).tolist() for v in column] == lists
    metrics = process_validation_metrics(["words", "words"], ["u0", "u1"], {key: [info[key] for info in infos] for key in EXTRA_KEYS})
    assert "mechreward_reward" in metrics["words"]  # data source -> variable -> metric
    assert TOKEN_REWARDS_KEY not in metrics["words"]  # skipped as a string, not averaged


def test_compute_score_through_verls_naive_manager(reader_fixture, sidecar):
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": "pkg://mechreward_client.verl", "name": "compute_score",
        "reward_kwargs": {"pack": reader_fixture.pack, "reader_model": reader_fixture.model_dir, "reader_tokenizer": reader_fixture.tokenizer_dir, "target": sidecar.target, "timeout": 20}}}})
    fn = get_custom_reward_fn(config)
    manager = NaiveRewardManager(config=config, tokenizer=tok, compute_score=fn)
    batch = make_batch(tok, ["w1 w2 w3"], ["w4 w5 w6"])
    out = run(manager, batch[0:1])
    # verl decodes the response with skip_special_tokens=True; the prompt comes from extra_info["prompt"].
    response_text = tok.decode(batch.batch["responses"][0][:4], skip_special_tokens=True)
    prompt_ids = tok("w1 w2 w3", add_special_tokens=False)["input_ids"]
    ids = prompt_ids + tok(response_text, add_special_tokens=False)["input_ids"]
    ref = reference_rewards_for_ids(reader_fixture.model_dir, ids, reader_fixture.layer, reader_fixture)
    assert out["reward_score"] == pytest.approx(ref[len(prompt_ids):].mean(), rel=1e-4, abs=1e-4)
    assert out["reward_extra_info"]["mechreward_unscored"] == 0.0


def dense_reference(r: np.ndarray, mask: np.ndarray, index: list[str], coef: float, eps: float = 1e-6) -> np.ndarray:
    r = r.astype(np.float64) * mask
    out = np.zeros_like(r)
    for g in dict.fromkeys(index):
        rows = [i for i, u in enumerate(index) if u == g]
        tot = r[rows].sum(-1)
        seq = (tot - tot.mean()) / (tot.std(ddof=1) + eps) if len(rows) > 1 else tot
        vals = r[rows][mask[rows] > 0]
        tokz = (r[rows] - vals.mean()) / (vals.std(ddof=1) + eps) if vals.size > 1 else r[rows]
        out[rows] = (seq[:, None] + coef * tokz) * mask[rows]
    return out


def test_estimator_turns_the_sidecars_token_rewards_into_advantages(reader_fixture, sidecar):
    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    prompts = word_prompts(5, seed=7, min_words=2, max_words=5)
    responses = word_prompts(5, seed=8, min_words=1, max_words=6)
    batch = make_batch(tok, prompts, responses)  # uids g0 g0 g1 g1 g2: the last group has one response
    manager = MechRewardManager(make_config(reader_fixture, sidecar.target), tok, None)
    token_rewards = torch.zeros(len(batch), RESPONSE_LEN)
    mask = batch.batch["attention_mask"][:, PROMPT_LEN:].float()
    for i in range(len(batch)):
        tr = decode_token_rewards(run(manager, batch[i : i + 1])["reward_extra_info"][TOKEN_REWARDS_KEY])
        token_rewards[i, : len(tr)] = torch.from_numpy(tr)
    index = batch.non_tensor_batch["uid"]
    fn = get_adv_estimator_fn("mechreward_dense")
    adv, ret = fn(token_level_rewards=token_rewards, response_mask=mask, config=OmegaConf.create({"mechreward_token_coef": 0.3}), index=index)
    expected = dense_reference(token_rewards.numpy(), mask.numpy(), list(index), 0.3)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(adv, ret)
    assert (adv[mask == 0] == 0).all() and (adv[mask > 0] != 0).any()
    # Tokens of one response get different advantages: the per-token term is really there.
    assert adv[0][mask[0] > 0].unique().numel() > 1
    # verl's own per-token estimator accepts the same rewards.
    rpp, _ = get_adv_estimator_fn("reinforce_plus_plus")(token_level_rewards=token_rewards, response_mask=mask, config=OmegaConf.create({"gamma": 1.0}))
    assert rpp.shape == token_rewards.shape

    # One policy-gradient step on the tiny model with these advantages moves its parameters.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(reader_fixture.model_dir)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    logits = model(input_ids=batch.batch["input_ids"], attention_mask=batch.batch["attention_mask"]).logits
    logp = torch.log_softmax(logits[:, PROMPT_LEN - 1 : -1], -1).gather(-1, batch.batch["responses"].unsqueeze(-1)).squeeze(-1)
    loss = -(adv.detach() * logp * mask).sum() / mask.sum()
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_failures_raise_by_default_or_give_the_flagged_fallback(reader_fixture):
    tok = AutoTokenizer.from_pretrained(reader_fixture.tokenizer_dir)
    batch = make_batch(tok, ["w1 w2"], ["w3 w4"])
    own = start_sidecar(reader_fixture.packs_dir)
    try:
        raising = MechRewardManager(make_config(reader_fixture, own.target, timeout=2, retries=0), tok, None)
        flagging = MechRewardManager(make_config(reader_fixture, own.target, timeout=2, retries=0, on_error="flag", fallback_reward=-1.0), tok, None)
        assert run(raising, batch[0:1])["reward_extra_info"]["mechreward_unscored"] == 0.0
        run(flagging, batch[0:1])  # layer known: the next calls go straight to Score
        own.process.send_signal(signal.SIGSTOP)  # frozen: the deadline must fire, nothing hangs
        with pytest.raises(APITimeoutError):
            run(raising, batch[0:1])
        out = run(flagging, batch[0:1])
        assert out["reward_score"] == -1.0
        assert out["reward_extra_info"]["mechreward_unscored"] == 1.0
        assert set(out["reward_extra_info"]) == set(EXTRA_KEYS)
    finally:
        own.stop()
    with pytest.raises(APIConnectionError):  # stopped
        run(raising, batch[0:1])
    assert run(flagging, batch[0:1])["reward_extra_info"]["mechreward_unscored"] == 1.0

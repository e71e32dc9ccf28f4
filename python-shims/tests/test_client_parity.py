"""RewardClient against the real sidecar: every parity case's f32 and bf16 inputs (and f16), sent as numpy
arrays, match the repo's float64 reference fixtures under test/integration/parity.test.ts's tolerance rule."""

from __future__ import annotations

import asyncio
import os

import ml_dtypes
import numpy as np
import pytest
import torch

from mechreward_client import AsyncRewardClient, RewardClient

REL_TOL = 1e-4
SCALE_FLOOR = 1e-3  # as in test/integration/parity.test.ts
NUMPY_DTYPE = {"f32": np.dtype("<f4"), "f16": np.dtype("<f2"), "bf16": np.dtype(ml_dtypes.bfloat16)}


def load_inputs(parity_dir: str, case: dict) -> list[np.ndarray]:
    arrays = []
    for s in case["sequences"]:
        with open(os.path.join(parity_dir, s["file"]), "rb") as f:
            data = f.read()
        arrays.append(np.frombuffer(data, dtype=NUMPY_DTYPE[case["dtype"]]).reshape(s["num_tokens"], case["d_model"]))
    return arrays


def assert_matches_reference(results, case: dict) -> float:
    worst = 0.0
    assert len(results) == len(case["sequences"])
    for i, (got, ref) in enumerate(zip(results, case["sequences"])):
        assert got.token_rewards.dtype == np.float32
        assert got.token_rewards.shape == (ref["num_tokens"],)
        for t in range(ref["num_tokens"]):
            err = abs(float(got.token_rewards[t]) - ref["token_rewards"][t]) / max(ref["token_scales"][t], SCALE_FLOOR)
            worst = max(worst, err)
            assert err <= REL_TOL, f"{case['pack']} {case['dtype']} seq {i} token {t}: {got.token_rewards[t]} vs {ref['token_rewards'][t]}"
            if t < ref["score_from"]:
                assert got.token_rewards[t] == 0.0, "prompt tokens get reward 0"
        pooled = abs(got.reward - ref["reward"]) / max(ref["reward_scale"], SCALE_FLOOR)
        worst = max(worst, pooled)
        assert pooled <= REL_TOL, f"{case['pack']} {case['dtype']} seq {i} pooled: {got.reward} vs {ref['reward']}"
        assert sorted(f.name for f in got.flags) == sorted(f["name"] for f in ref["flags"])
        for flag in got.flags:
            expected = next(f["value"] for f in ref["flags"] if f["name"] == flag.name)
            assert abs(flag.value - expected) <= REL_TOL * max(abs(expected), SCALE_FLOOR)
            assert flag.reason
    return worst


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_numpy_inputs_match_reference_fixtures(parity_sidecar, parity_dir, parity_cases, dtype):
    client = RewardClient(parity_sidecar.target, timeout=30)
    cases = [c for c in parity_cases if c["dtype"] == dtype]
    assert len({c["pack"] for c in cases}) >= 8, "every fixture pack is covered"
    worst = 0.0
    for case in cases:
        arrays = load_inputs(parity_dir, case)
        assert arrays[0].dtype == NUMPY_DTYPE[dtype]  # sent as they are, no widening on the client
        starts = [s["score_from"] for s in case["sequences"]]
        results = client.score(case["pack"], arrays, score_from=starts, run_id="python-parity")
        worst = max(worst, assert_matches_reference(results, case))
    print(f"\n{dtype}: max relative error {worst:.2e} over {len(cases)} packs")


def test_bf16_torch_tensor_is_sent_bit_for_bit(parity_sidecar, parity_dir, parity_cases):
    """A torch.bfloat16 tensor reaches the server as its own 16 bits (no float32 round trip) and scores the
    same as the numpy bf16 array with those bits."""
    from mechreward_client._wire import encode_sequence

    case = next(c for c in parity_cases if c["dtype"] == "bf16" and c["pack"] == "topk-layernorm-bf16")
    arrays = load_inputs(parity_dir, case)
    tensors = [torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16) for a in arrays]
    for a, t in zip(arrays, tensors):
        assert encode_sequence(t, 0, 0).activations == a.tobytes()
    client = RewardClient(parity_sidecar.target)
    starts = [s["score_from"] for s in case["sequences"]]
    from_torch = client.score(case["pack"], tensors, score_from=starts)
    from_numpy = client.score(case["pack"], arrays, score_from=starts)
    assert_matches_reference(from_torch, case)
    for a, b in zip(from_torch, from_numpy):
        assert a.reward == b.reward and np.array_equal(a.token_rewards, b.token_rewards)


def test_async_client_matches_reference(parity_sidecar, parity_dir, parity_cases):
    case = next(c for c in parity_cases if c["dtype"] == "f32" and c["pack"] == "topk-saelens")

    async def run():
        async with AsyncRewardClient(parity_sidecar.target, timeout=30) as client:
            packs = await client.list_packs()
            starts = [s["score_from"] for s in case["sequences"]]
            # Several calls in flight on one channel, as TRL's gathered async reward functions do.
            results = await asyncio.gather(*[client.score(case["pack"], load_inputs(parity_dir, case), starts) for _ in range(3)])
            return packs, results

    packs, results = asyncio.run(run())
    assert case["pack"] in {p.name for p in packs}
    for r in results:
        assert_matches_reference(r, case)


def test_list_packs_and_info(parity_sidecar, parity_cases, parity_dir):
    import json

    with open(os.path.join(parity_dir, "linear_cases.json")) as f:
        linear_cases = json.load(f)["cases"]  # direction, probe and verifier packs
    client = RewardClient(parity_sidecar.target)
    packs = {p.name: p for p in client.list_packs()}
    assert set(packs) == {c["pack"] for c in parity_cases + linear_cases}
    for case in parity_cases + linear_cases:
        assert packs[case["pack"]].d_model == case["d_model"]
    assert (packs["direction-f32"].kind, packs["probe-linear-f16"].kind, packs["topk-saelens"].kind) == ("direction", "probe", "sae")
    assert (packs["verifier-gate-sae"].verifier_mode, packs["direction-f32"].verifier_mode) == ("token_gate", "")
    bf16 = packs["topk-layernorm-bf16"]
    assert (bf16.architecture, bf16.encode_mode, bf16.d_sae, bf16.k) == ("topk", "topk", 1024, 32)
    info = client.get_info()
    assert set(info.packs) == set(packs) and info.max_tokens_per_request > 0 and info.version


def test_direction_probe_and_verifier_packs_match_reference(parity_sidecar, parity_dir):
    """Direction and probe packs and both dual-verifier modes through the Python client: rewards, the
    disagreement rate and the downweight factor equal the reference (linear_cases.json; one request per case)."""
    import json

    with open(os.path.join(parity_dir, "linear_cases.json")) as f:
        cases = json.load(f)["cases"]
    client = RewardClient(parity_sidecar.target, timeout=30)
    for case in cases:
        arrays = load_inputs(parity_dir, case)
        results = client.score(case["pack"], arrays, score_from=[s["score_from"] for s in case["sequences"]])
        assert_matches_reference(results, case)
        for got, ref in zip(results, case["sequences"]):
            if case["has_verifier"]:
                assert abs(got.verifier_disagreement - ref["verifier_disagreement"]) < 1e-12
                assert got.verifier_factor == case["verifier_factor"]
            else:
                assert got.verifier_disagreement is None and got.verifier_factor == 1.0

"""`python -m mechreward_client.convert`: an original-project sae_final.pt + sae_final.json becomes a SAELens
SAE that the real sidecar loads and scores exactly like a float64 reference of the original weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from mechreward_client import RewardClient

from support import REPO, TopKSae, random_topk_sae, reference_token_rewards, start_sidecar

D_MODEL, D_SAE, K, LAYER = 32, 128, 8, 5


def write_original(folder, sae: TopKSae, *, nested=False, transpose_enc=False, extra=None):
    state = {
        "W_enc": torch.from_numpy(sae.W_enc.T.copy() if transpose_enc else sae.W_enc),
        "W_dec": torch.from_numpy(sae.W_dec), "b_enc": torch.from_numpy(sae.b_enc), "b_dec": torch.from_numpy(sae.b_dec),
    }
    checkpoint = {"state_dict": state, "step": 1000} if nested else state
    if extra is not None:
        checkpoint["extra"] = extra
    pt, js = os.path.join(folder, "sae_final.pt"), os.path.join(folder, "sae_final.json")
    torch.save(checkpoint, pt)
    with open(js, "w") as f:
        json.dump({"d_model": D_MODEL, "d_sae": D_SAE, "k": K, "layer": LAYER}, f)
    return pt, js


def run_convert(*args):
    return subprocess.run([sys.executable, "-m", "mechreward_client.convert", *args], capture_output=True, text=True)


@pytest.mark.parametrize("nested,transpose_enc", [(False, False), (True, True)])
def test_converted_pack_loads_and_scores_like_the_original(tmp_path, nested, transpose_enc):
    sae = random_topk_sae(D_MODEL, D_SAE, K, seed=11, scale=3.0)
    pt, js = write_original(str(tmp_path), sae, nested=nested, transpose_enc=transpose_enc)
    pack_dir = tmp_path / "packs" / "converted"
    done = run_convert("--pt", pt, "--json", js, "--out", str(pack_dir / "sae"), "--model-name", "test/model")
    assert done.returncode == 0, done.stderr
    assert "blocks.5.hook_resid_post" in done.stdout

    cfg = json.loads((pack_dir / "sae" / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["k"], cfg["architecture"]) == (D_MODEL, D_SAE, K, "topk")
    assert cfg["metadata"]["hook_name"] == f"blocks.{LAYER}.hook_resid_post"
    weights = load_file(str(pack_dir / "sae" / "sae_weights.safetensors"))
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert np.array_equal(weights[name], getattr(sae, name)), name

    features = [(3, 1.0), (17, -0.5), (40, 2.0), (99, -1.5)]
    (pack_dir / "pack.json").write_text(json.dumps({
        "schema": "mechreward.pack/v1", "name": "converted", "model": "test/model", "layer": LAYER,
        "features": [{"id": i, "weight": w} for i, w in features], "pooling": {"method": "mean"},
    }))
    check = subprocess.run(["node", os.path.join(REPO, "bin", "mechreward.js"), "packs", str(tmp_path / "packs")],
                           cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    sidecar = start_sidecar(str(tmp_path / "packs"))
    try:
        client = RewardClient(sidecar.target)
        info = client.list_packs()[0]
        assert (info.d_model, info.d_sae, info.k, info.layer) == (D_MODEL, D_SAE, K, LAYER)
        x = np.random.default_rng(0).normal(size=(12, D_MODEL)).astype(np.float32)
        got = client.score("converted", [x], score_from=2)[0]
    finally:
        assert sidecar.stop() == 0
    expected = reference_token_rewards(x, sae, features)
    expected[:2] = 0.0
    np.testing.assert_allclose(got.token_rewards, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).sum() > 0


def test_shape_mismatch_is_refused_and_nothing_written(tmp_path):
    sae = random_topk_sae(D_MODEL, D_SAE, K, seed=1)
    pt, js = write_original(str(tmp_path), sae)
    with open(js, "w") as f:
        json.dump({"d_model": D_MODEL, "d_sae": D_SAE * 2, "k": K, "layer": LAYER}, f)
    out = tmp_path / "out"
    done = run_convert("--pt", pt, "--json", js, "--out", str(out))
    assert done.returncode == 1
    assert "W_enc has shape [32, 128], expected [32, 256]" in done.stderr
    assert not out.exists()


def test_pickles_with_code_are_not_opened(tmp_path):
    sae = random_topk_sae(D_MODEL, D_SAE, K, seed=1)
    pt, js = write_original(str(tmp_path), sae, extra=np.random.default_rng(0))  # an arbitrary Python object
    done = run_convert("--pt", pt, "--json", js, "--out", str(tmp_path / "out"))
    assert done.returncode == 1 and "weights_only" in done.stderr

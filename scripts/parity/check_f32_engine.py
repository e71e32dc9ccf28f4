#!/usr/bin/env python3
"""Sanity check of a parity fixture tree against simulated float32 engines.

    python3 scripts/parity/check_f32_engine.py DIR

A plain float32 engine (and one that folds b_dec into the bias) must pass every
case within the tolerance rule; deliberately wrong engines ("mutants") must fail
somewhere. Exits 1 if a correct engine fails or a mutant survives. This is a
check on the fixtures, not on the engine: python-shims/tests/test_parity_fixtures.py
runs it on every test run.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

f32 = np.float32


def engine_scores(sae, pack, X, score_from, mut=None):
    """float32 re-implementation with optional mutations; returns (r_t, reward, canary values)."""
    X = X.astype(f32)
    W = sae.W_enc.astype(f32)
    b_enc = sae.b_enc.astype(f32)
    G = None
    if sae.architecture == "gated":  # gate x W_enc + b_gate; magnitude x (W_enc exp(r_mag)) + b_mag
        Xin = X - sae.b_dec.astype(f32) if sae.apply_b_dec else X
        G = Xin @ W + sae.b_gate.astype(f32)
        W = (sae.W_enc * np.exp(sae.r_mag)).astype(f32)
    b_dec = sae.b_dec.astype(f32)
    d = sae.d_model
    if sae.normalize == "constant_norm_rescale":
        X = X * (f32(np.sqrt(d)) / np.sqrt(np.sum(X * X, axis=1, keepdims=True)))
    elif sae.normalize == "layer_norm":
        mu = X.mean(axis=1, keepdims=True, dtype=f32)
        ddof = 0 if mut == "ln_ddof0" else 1
        X = (X - mu) / (X.std(axis=1, ddof=ddof, keepdims=True, dtype=f32) + f32(ref.LN_EPS))
    if mut == "fold_b_dec" and sae.apply_b_dec:
        H = X @ W - (b_dec @ W) + b_enc
    elif sae.apply_b_dec and mut != "no_b_dec":
        H = (X - b_dec) @ W + b_enc
    else:
        H = X @ W + b_enc
    if sae.rescale and mut != "no_rescale":
        H = H * np.sqrt(np.sum(sae.W_dec.astype(f32) ** 2, axis=1))
    encode = pack.encode
    if mut == "selected_for_topk" and encode == "topk":
        encode = "selected_relu"

    def acts(ids):
        ids = np.asarray(ids, dtype=np.int64)
        if encode == "selected_relu":
            return np.maximum(H[:, ids], 0)
        if sae.architecture == "relu":
            return np.maximum(H[:, ids], 0)
        if sae.architecture == "jumprelu":
            th = sae.threshold.astype(f32)
            if mut == "raw_log_threshold" and "log_threshold" in sae.tensor_dtypes:
                th = np.log(sae.threshold).astype(f32)
            return np.where(H[:, ids] > th[ids], np.maximum(H[:, ids], 0), 0)
        if sae.architecture == "gated":
            return np.maximum(H[:, ids], 0) * (True if mut == "no_gate" else G[:, ids] > 0)
        F = np.zeros_like(H)
        if sae.architecture == "groupmax" and mut != "topk_for_groupmax":
            size = sae.d_sae // sae.k
            R = np.maximum(H, 0).reshape(H.shape[0], sae.k, size)
            idx = np.argmax(R, axis=2) + np.arange(sae.k) * size
            np.put_along_axis(F, idx, np.take_along_axis(np.maximum(H, 0), idx, axis=1), axis=1)
            return F[:, ids]
        signed = sae.architecture == "abstopk" and mut != "relu_abstopk"
        keys = np.abs(H) if signed else H
        for t in range(H.shape[0]):
            order = np.argsort(-keys[t], kind="stable")
            idx = order[:sae.k]
            if mut == "swap_boundary":
                idx = np.concatenate([order[:sae.k - 1], order[sae.k:sae.k + 1]])
            if mut == "keep_ties":  # every feature level with the k-th: both twins of an exact tie
                idx = np.flatnonzero(keys[t] >= keys[t, order[sae.k - 1]])
            F[t, idx] = H[t, idx] if signed else np.maximum(H[t, idx], 0)
        return F[:, ids]

    A = acts(pack.feature_ids)
    if mut != "ignore_feature_threshold":
        A = np.where(A > pack.thresholds.astype(f32), A, 0)
    r = (A * pack.weights.astype(f32)).sum(axis=1, dtype=f32).astype(np.float64)
    lo = 0 if mut == "score_prompt" else score_from
    r[:lo] = 0
    reward = ref.pool(r[lo:], pack.pooling, pack.pooling_k)
    cvals = {}
    if pack.canaries:
        CA = acts([c.feature for c in pack.canaries])[score_from:]
        cvals = {c.name: float(CA[:, j].max()) for j, c in enumerate(pack.canaries)}
    return r, reward, cvals


def compare(doc, root, mut):
    """Number of sequences where the engine breaks the tolerance rule."""
    bad = 0
    rtol, floor = doc["tolerance"]["rtol"], doc["tolerance"]["scale_floor"]
    for case in doc["cases"]:
        pack = ref.load_pack(os.path.join(root, "packs", case["pack"]))
        sae = ref.load_sae(pack.sae_dir)
        for s in case["sequences"]:
            with open(os.path.join(root, s["file"]), "rb") as fh:
                X = ref.decode_input(fh.read(), case["dtype"], case["d_model"])
            r, reward, cvals = engine_scores(sae, pack, X, s["score_from"], mut)
            ok = all(ref.within_tolerance(r[t], s["token_rewards"][t], s["token_scales"][t],
                                          rtol, floor) for t in range(len(r)))
            ok &= ref.within_tolerance(reward, s["reward"], s["reward_scale"], rtol, floor)
            fired = {f["name"] for f in s["flags"]}
            for c in pack.canaries:
                ok &= (cvals[c.name] > c.threshold) == (c.name in fired)
                want = s["canary_values"][c.name]
                ok &= ref.within_tolerance(cvals[c.name], want, abs(want), rtol, floor)
            bad += not ok
    return bad


def main(argv):
    if len(argv) != 1:
        print(__doc__)
        return 2
    root = argv[0]
    with open(os.path.join(root, "cases.json")) as fh:
        doc = json.load(fh)
    n = sum(len(c["sequences"]) for c in doc["cases"])
    failed = False
    for mut in (None, "fold_b_dec"):
        bad = compare(doc, root, mut)
        print(f"correct engine {mut or 'plain'}: {bad}/{n} sequences out of tolerance")
        failed |= bad > 0
    for mut in ("swap_boundary", "selected_for_topk", "no_rescale", "no_b_dec", "ln_ddof0",
                "ignore_feature_threshold", "score_prompt", "relu_abstopk", "topk_for_groupmax", "no_gate",
                "raw_log_threshold", "keep_ties"):
        bad = compare(doc, root, mut)
        print(f"mutant {mut}: caught in {bad}/{n} sequences")
        failed |= bad == 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Generate deterministic parity fixtures for the mechreward engine.

    python3 scripts/parity/make_parity_fixtures.py --out DIR [--seed 0]

Writes DIR/packs/<pack>/{pack.json,sae/...}, DIR/inputs/<pack>.<dtype>.<i>.bin and
DIR/cases.json with float64 expected values from reference.py (see README.md).
Everything written is re-read from disk and recomputed at the end; any failed
construction check exits with status 1 and a message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections import Counter

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

U32 = 2.0 ** -24  # float32 unit roundoff
RTOL = 1e-4
SCALE_FLOOR = 1e-6
F16_LIMIT = 60000.0
N_SEQUENCES = 5
T_RANGE = (6, 24)
HIGH_NORM_FACTOR = (1e3, 2e4)
NEAR_TIE_REL = (1e-4, 1e-3)
HOOK_NAME = "blocks.3.hook_resid_post"
LAYER = 3
FEW_POSITIVE_K_NON_TOPK = 16  # "fewer than k positive" for SAEs without a k
TENSOR_NP = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}
CFG_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2}


class FixtureError(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise FixtureError(msg)


# ------------------------------------------------------------------ specs
SAE_SPECS = {
    "topk-saelens": dict(layout="saelens", architecture="topk", d_model=64, d_sae=512, k=16,
                         apply_b_dec=True, normalize="none", rescale=True, dtype="F32",
                         dec_norm_range=(0.5, 2.0)),
    "topk-sparsify": dict(layout="sparsify", architecture="topk", d_model=64, d_sae=512, k=16,
                          apply_b_dec=True, normalize="none", rescale=False, dtype="F32"),
    "relu-saelens": dict(layout="saelens", architecture="standard", d_model=64, d_sae=512, k=None,
                         apply_b_dec=True, normalize="constant_norm_rescale", rescale=False,
                         dtype="F16"),
    "jumprelu-saelens": dict(layout="saelens", architecture="jumprelu", d_model=64, d_sae=512,
                             k=None, apply_b_dec=False, normalize="layer_norm", rescale=False,
                             dtype="BF16"),
    "topk-layernorm-bf16": dict(layout="saelens", architecture="topk", d_model=128, d_sae=1024,
                                k=32, apply_b_dec=True, normalize="layer_norm", rescale=False,
                                dtype="BF16"),
}

# sae: which SAE (by owning pack); features_from: reuse another pack's features + canaries
PACK_SPECS = [
    dict(name="topk-saelens", schema="own", sae="topk-saelens", encode="topk",
         pooling={"method": "mean"}),
    dict(name="topk-saelens-selected", schema="own", sae="topk-saelens", encode="selected_relu",
         pooling={"method": "sum"}, features_from="topk-saelens"),
    dict(name="topk-sparsify", schema="B", sae="topk-sparsify", encode="topk",
         pooling={"method": "mean"}),
    dict(name="topk-sparsify-selected", schema="own", sae="topk-sparsify", encode="selected_relu",
         pooling={"method": "max"}),
    dict(name="relu-saelens", schema="A", sae="relu-saelens", encode="topk",
         pooling={"method": "mean"}, feature_threshold=0.1),
    dict(name="jumprelu-saelens", schema="own", sae="jumprelu-saelens", encode="topk",
         pooling={"method": "last_k", "k": 4}),
    dict(name="jumprelu-selected", schema="own", sae="jumprelu-saelens", encode="selected_relu",
         pooling={"method": "mean"}, features_from="jumprelu-saelens"),
    dict(name="topk-layernorm-bf16", schema="own", sae="topk-layernorm-bf16", encode="topk",
         pooling={"method": "last_k", "k": 4}, one_feature_threshold=0.05),
]

N_FEATURES = 12
N_CANARIES = 2
N_CANARY_CANDIDATES = 6
CANARY_NAMES = ["canary_repetition", "canary_verbosity"]


# ------------------------------------------------------------------ quantisation
def f32_to_bf16_bits(x32: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even: top 16 bits of float32 (finite inputs only)."""
    bits = np.ascontiguousarray(x32, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    return rounded.astype(np.uint16)


def quantize_input(X: np.ndarray, dtype: str):
    """float64 [T, d] -> (little-endian bytes, exactly decoded float64 [T, d])."""
    X = np.asarray(X, dtype=np.float64)
    check(np.all(np.isfinite(X)), "non-finite input before quantisation")
    if dtype == "f32":
        raw = X.astype("<f4").tobytes()
    elif dtype == "f16":
        check(np.max(np.abs(X)) < F16_LIMIT, "input exceeds f16 range limit")
        raw = X.astype("<f2").tobytes()
    elif dtype == "bf16":
        x32 = X.astype(np.float32)
        bits = f32_to_bf16_bits(x32)
        lib = x32.astype(ml_dtypes.bfloat16).view(np.uint16)
        check(np.array_equal(bits, lib), "bf16 RNE mismatch against ml_dtypes")
        raw = bits.astype("<u2").tobytes()
    else:
        raise ValueError(dtype)
    Xq = ref.decode_input(raw, dtype, X.shape[1])
    check(np.all(np.isfinite(Xq)), "non-finite input after quantisation")
    if dtype == "f16":
        check(np.max(np.abs(Xq)) < F16_LIMIT, "quantised f16 input out of range")
    return raw, Xq


def store_tensor(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        out = np.asarray(a, dtype=np.float32).astype(ml_dtypes.bfloat16)
        check(np.array_equal(out.view(np.uint16), f32_to_bf16_bits(np.asarray(a, np.float32))),
              "bf16 weight RNE mismatch")
        return np.ascontiguousarray(out)
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64).astype(TENSOR_NP[dtype]))


# ------------------------------------------------------------------ SAE construction
def make_sae(rng, name, spec, pack_ids=None):
    d, n = spec["d_model"], spec["d_sae"]
    perm = rng.permutation(n)
    if pack_ids is None:
        pack_ids = np.sort(perm[:N_FEATURES])
        canary_ids = perm[N_FEATURES:N_FEATURES + N_CANARY_CANDIDATES]
    else:
        canary_ids = perm[~np.isin(perm, pack_ids)][:N_CANARY_CANDIDATES]
    hot = np.concatenate([pack_ids, canary_ids])
    # encoder: columns ~ N(0, 1/d) with a spread of norms; pack/canary features boosted so
    # they fire on a useful share of tokens
    col = np.exp(rng.normal(0.0, 0.2, n))
    col[hot] *= 2.2
    W_enc = rng.normal(0.0, 1.0 / math.sqrt(d), (d, n)) * col
    # b_enc mostly slightly negative; a few (incl. 2 pack features) slightly positive
    b_enc = -np.abs(rng.normal(0.2, 0.08, n))
    n_pos = max(n // 64, 4)
    pos = np.concatenate([pack_ids[rng.permutation(N_FEATURES)[:2]],
                          rng.choice(np.setdiff1d(np.arange(n), hot), n_pos - 2, replace=False)])
    b_enc[pos] = rng.uniform(0.05, 0.3, pos.size)
    dirs = rng.normal(size=(n, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    lo, hi = spec.get("dec_norm_range", (1.0, 1.0))
    dec_norms = rng.uniform(lo, hi, n) if spec["rescale"] else np.ones(n)
    if spec["rescale"]:
        dec_norms[rng.choice(n, 2, replace=False)] = [lo, hi]  # span the whole range
    W_dec = dirs * dec_norms[:, None]
    if spec["normalize"] == "constant_norm_rescale" and spec["apply_b_dec"]:
        b_dec = rng.normal(size=d)
        b_dec *= math.sqrt(d) / np.linalg.norm(b_dec)  # lives on the rescaled sphere
    elif spec["normalize"] == "layer_norm" and spec["apply_b_dec"]:
        b_dec = rng.normal(size=d)
        b_dec -= b_dec.mean()
        b_dec /= b_dec.std(ddof=1)  # a layer-normed vector
    else:
        b_dec = rng.normal(0.0, 0.3, d)
    if spec["apply_b_dec"]:
        # damp (not remove) the b_dec component of the hot encoder columns, so subtracting b_dec
        # still matters but does not pin those features permanently on or off
        bhat = b_dec / np.linalg.norm(b_dec)
        W_enc[:, hot] -= 0.7 * np.outer(bhat, bhat @ W_enc[:, hot])
    tensors = dict(W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec)
    if spec["architecture"] == "jumprelu":
        tensors["threshold"] = rng.uniform(0.2, 1.0, n)
    return tensors, pack_ids, canary_ids


def write_sae(sae_dir, spec, tensors):
    os.makedirs(sae_dir, exist_ok=True)
    dt = spec["dtype"]
    d, n = spec["d_model"], spec["d_sae"]
    if spec["layout"] == "sparsify":
        cfg = {"k": spec["k"], "num_latents": n, "expansion_factor": n // d,
               "activation": spec["architecture"], "d_in": d, "normalize_decoder": True,
               "multi_topk": False, "skip_connection": False}
        if "transcode" in spec:
            cfg["transcode"] = spec["transcode"]
        stored = {"encoder.weight": store_tensor(tensors["W_enc"].T, dt),
                  "encoder.bias": store_tensor(tensors["b_enc"], dt),
                  "W_dec": store_tensor(tensors["W_dec"], dt),
                  "b_dec": store_tensor(tensors["b_dec"], dt)}
        path = os.path.join(sae_dir, "sae.safetensors")
    else:
        cfg = {"d_in": d, "d_sae": n, "architecture": spec["architecture"]}
        if spec["architecture"] in ("topk", "abstopk"):
            cfg["k"] = spec["k"]
        if "d_out" in spec:
            cfg["d_out"] = spec["d_out"]
        if "sae_lens_version" in spec:  # what SAELens 6.x writes; without it SAELens reads the pre-6.0 form
            cfg["sae_lens_version"] = spec["sae_lens_version"]
        cfg.update({"apply_b_dec_to_input": spec["apply_b_dec"],
                    "normalize_activations": spec["normalize"],
                    "rescale_acts_by_decoder_norm": spec["rescale"],
                    "dtype": CFG_DTYPE[dt], "metadata": {"hook_name": HOOK_NAME}})
        stored = {k: store_tensor(v, dt) for k, v in tensors.items()}
        path = os.path.join(sae_dir, "sae_weights.safetensors")
    with open(os.path.join(sae_dir, "cfg.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
        fh.write("\n")
    save_file(stored, path)
    os.chmod(path, 0o644)  # safetensors creates files 0600
    return stored


# ------------------------------------------------------------------ robustness margins
def row_margins(sae: ref.Sae, x: np.ndarray, W=None, b=None):
    """Per-feature (m, e) for one row: m bounds a float32 engine's error in h (used to keep
    every discontinuity clear), e is a generous estimate of its typical error (used to keep
    continuous errors well inside the parity tolerance). W, b: the encoder product whose error is
    wanted (default: the one giving h; a gated SAE's magnitude path is W_enc * exp(r_mag), b_mag)."""
    d = sae.d_model
    if W is None:
        W = sae.W_enc * np.exp(sae.r_mag) if sae.architecture == "gated" else sae.W_enc
        b = sae.b_enc
    x = x[None, :]
    xp = ref.normalize(sae, x)
    b_eff = ref.b_dec_applied(sae)
    s = sae.act_scale
    absW = np.abs(W)
    S = ((np.abs(xp) + np.abs(b_eff)) @ absW + np.abs(b))[0] * s
    Sx = np.zeros_like(S)
    Pw = np.zeros_like(S)  # layer norm: per-coordinate centring error
    Pm = np.zeros_like(S)  # layer norm: error of the mean, common to every coordinate
    if sae.normalize in ("constant_norm_rescale", "layer_norm"):
        Sx = (np.abs(xp) @ absW)[0] * s
    if sae.normalize == "layer_norm":
        mu = x.mean()
        std = x.std(ddof=1) + ref.LN_EPS
        Pw = (((np.abs(x - mu) + abs(mu)) / std) @ absW)[0] * s
        Pm = np.abs(np.abs(x).mean() / std * W.sum(axis=0)) * s
    m = U32 * ((d + 16) * S + (d + 8) * Sx + 4 * Pw + d * Pm)
    e = U32 * (2 * (S + Sx) + Pw + math.sqrt(d) * Pm)
    return m, e


def twin_partners(sae: ref.Sae, ids) -> dict:
    """Pack features with identical encoder columns, biases and decoder norms (an exact tie on every row):
    {feature: its twin}. Which of the two a ranking encode keeps is a tie-break, not a float32 error."""
    cache = sae.__dict__.setdefault("_twins", {})  # the weights never change after loading
    key = tuple(int(i) for i in ids)
    if key not in cache:
        seen, out = {}, {}
        for a in key:
            signature = (sae.W_enc[:, a].tobytes(), sae.b_enc[a], sae.act_scale[a])
            if signature in seen:
                out[a], out[seen[signature]] = seen[signature], a
            seen[signature] = a
        cache[key] = out
    return cache[key]


def row_problems(sae: ref.Sae, pack: ref.Pack, x: np.ndarray):
    """Reasons why a float32 engine could legitimately disagree with the reference on row x
    beyond the parity tolerance (empty list = row is safe)."""
    probs = []
    H = ref.pre_activations(sae, x[None, :])[0]
    G = ref.gate_pre_activations(sae, x[None, :])
    m, e = row_margins(sae, x)
    ids = pack.feature_ids
    can_ids = np.array([c.feature for c in pack.canaries], dtype=np.int64)
    relevant = np.unique(np.concatenate([ids, can_ids]))
    twin = twin_partners(sae, ids)
    exact = pack.encode == "topk"
    if exact and sae.architecture in ("topk", "abstopk"):
        k = sae.k
        keys = ref.rank_keys(sae, H)
        order = np.argsort(-keys, kind="stable")
        kth, k1th = order[k - 1], order[k]
        selected = np.zeros(sae.d_sae, bool)
        selected[order[:k]] = True
        for j in relevant:
            if keys[j] <= m[j]:
                continue
            other = k1th if selected[j] else kth
            if twin.get(int(j)) == other:
                continue
            if abs(keys[j] - keys[other]) <= m[j] + m[other]:
                probs.append(f"feature {j} within float32 error of the TopK boundary")
    if exact and sae.architecture == "groupmax":
        size = ref.group_size(sae)
        R = np.maximum(H, 0.0)
        for j in relevant:
            if R[j] <= m[j]:
                continue
            start = int(j) // size * size
            group = np.arange(start, start + size)
            rivals = [i for i in group if i != j and twin.get(int(j)) != i]
            best = max(rivals, key=lambda i: R[i])
            if abs(R[j] - R[best]) <= m[j] + m[best]:
                probs.append(f"feature {j} within float32 error of its group's maximum")
    if exact and sae.architecture == "gated":
        mg, _ = row_margins(sae, x, sae.W_enc, sae.b_gate)
        for j in relevant:
            if H[j] > -m[j] and abs(G[0, j]) <= mg[j]:
                probs.append(f"feature {j}: gate within float32 error of 0")
    if exact and sae.architecture == "jumprelu":
        for j in relevant:
            th = sae.threshold[j]
            if H[j] > -m[j] and abs(H[j] - th) <= m[j] + 4 * U32 * abs(th):
                probs.append(f"feature {j} within float32 error of its JumpReLU threshold")
    A = ref.mode_activations(sae, H[None, :], pack.encode, ids, G)[0]

    def near_threshold(value, j, threshold):
        # A value of exactly 0 (feature off) stays 0 in float32 unless h is within error of switching on.
        return abs(value - threshold) <= m[j] and (value != 0 or H[j] > -m[j])

    for i, f in enumerate(pack.features):
        if f.threshold != 0 and near_threshold(A[i], f.id, f.threshold):
            probs.append(f"feature {f.id} within float32 error of its activation threshold")
    if pack.canaries:
        CA = ref.mode_activations(sae, H[None, :], pack.encode, can_ids, G)[0]
        for i, c in enumerate(pack.canaries):
            if near_threshold(CA[i], c.feature, c.threshold):
                probs.append(f"canary {c.name} within float32 error of its threshold")
            if CA[i] > c.threshold and e[c.feature] > RTOL * CA[i]:
                probs.append(f"canary {c.name} value too imprecise for the tolerance")
    At = np.where(A > pack.thresholds, A, 0.0)
    scale = float(np.sum(np.abs(pack.weights * At)))
    live = (At != 0) | ((pack.thresholds <= 0) & (np.abs(H[ids]) < m[ids]))
    err = float(np.sum(np.abs(pack.weights[live]) * e[ids][live]))
    if err > RTOL * max(scale, SCALE_FLOOR):
        probs.append("token error estimate exceeds the parity tolerance")
    return probs


# ------------------------------------------------------------------ row kinds
def random_row(rng, sae):
    d = sae.d_model
    sigma = rng.uniform(0.5, 8.0)
    x = rng.normal(size=d) * sigma
    if rng.random() < 0.35:
        x[rng.integers(d)] = rng.choice([-1.0, 1.0]) * sigma * rng.uniform(8.0, 30.0)
    if sae.normalize == "layer_norm":
        x += rng.normal() * 0.5 * sigma  # common offset, removed by the layer norm
    return x


def high_norm_row(rng, sae):
    d = sae.d_model
    factor = math.exp(rng.uniform(math.log(HIGH_NORM_FACTOR[0]), math.log(HIGH_NORM_FACTOR[1])))
    x = rng.normal(size=d) * factor
    peak = np.max(np.abs(x))
    if peak >= 59000.0:
        x *= 59000.0 / peak
    return x


def few_positive_row(rng, sae):
    d = sae.d_model
    b_eff = ref.b_dec_applied(sae)
    if sae.normalize in ("none", "expected_average_only_in"):
        return b_eff + rng.normal(size=d) * 0.02
    if sae.normalize == "constant_norm_rescale":
        check(abs(np.linalg.norm(b_eff) / math.sqrt(d) - 1) < 0.05,
              "few_positive needs ||b_dec|| ~ sqrt(d_model) for constant_norm_rescale")
        return (b_eff + rng.normal(size=d) * 0.01) * rng.uniform(0.5, 3.0)
    if sae.normalize == "layer_norm":
        if sae.apply_b_dec:
            z = b_eff + rng.normal(size=d) * 0.02
            z -= z.mean()
            check(abs(z.std(ddof=1) - 1) < 0.05, "few_positive needs a layer-normed b_dec")
            return z * rng.uniform(0.5, 3.0) + rng.normal() * 0.3
        # no b_dec subtraction: make the layer-norm output itself small (std ~ eps)
        z = rng.normal(size=d) * 0.02
        z -= z.mean()
        alpha = ref.LN_EPS / (1 - z.std(ddof=1))
        return z * alpha
    raise ValueError(sae.normalize)


def few_positive_k(sae):
    return sae.k if sae.architecture in ref.RANKING else FEW_POSITIVE_K_NON_TOPK


def near_tie_applicable(sae, pack):
    return pack.encode == "topk" and sae.architecture == "topk"


def near_tie_info(sae, pack, x):
    """(ok, reason, detail) for a near-tie row x (already quantised)."""
    k = sae.k
    H = ref.pre_activations(sae, x[None, :])[0]
    order = np.argsort(-H, kind="stable")
    hi_id, lo_id = int(order[k - 1]), int(order[k])
    ids = list(pack.feature_ids)
    if hi_id not in ids or lo_id not in ids:
        return False, "k-th/(k+1)-th are not both pack features", None
    w_hi, w_lo = pack.weights[ids.index(hi_id)], pack.weights[ids.index(lo_id)]
    if w_hi == w_lo:
        return False, "equal weights", None
    hi, lo = H[hi_id], H[lo_id]
    if not lo > 0:
        return False, "tied pre-activations not positive", None
    rel = (hi - lo) / hi
    if not NEAR_TIE_REL[0] <= rel <= NEAR_TIE_REL[1]:
        return False, f"relative gap {rel:.3g} outside range", None
    # the swap must be visible at token level: changes r_t by w_hi*h_hi - w_lo*h_lo
    A = ref.pack_activations(sae, pack, x[None, :])[0]
    scale = float(np.sum(np.abs(pack.weights * A)))
    swap = abs(w_hi * hi - w_lo * lo)
    if swap <= 100 * RTOL * max(scale, SCALE_FLOOR):
        return False, "swap not detectable at the tolerance", None
    return True, "", {"features": [hi_id, lo_id], "rel_gap": float(rel)}


def _h2(sae, x, a, b):
    H = ref.pre_activations(sae, x[None, :])[0]
    return np.array([H[a], H[b]])


def _jacobian(sae, x, a, b):
    J = np.empty((2, 2))
    eps = 1e-4
    for c, dvec in enumerate((sae.W_enc[:, a], sae.W_enc[:, b])):
        J[:, c] = (_h2(sae, x + eps * dvec, a, b) - _h2(sae, x - eps * dvec, a, b)) / (2 * eps)
    return J


def _newton_place(sae, x, a, b, target, J=None, iters=12):
    """Move x in span(W_enc[:, a], W_enc[:, b]) until (h_a, h_b) == target (chord method when
    a Jacobian J is given)."""
    for _ in range(iters):
        r = target - _h2(sae, x, a, b)
        if np.max(np.abs(r)) <= 1e-12 * max(1.0, np.max(np.abs(target))):
            break
        try:
            t = np.linalg.solve(J if J is not None else _jacobian(sae, x, a, b), r)
        except np.linalg.LinAlgError:
            return None
        x = x + t[0] * sae.W_enc[:, a] + t[1] * sae.W_enc[:, b]
    return x


def near_tie_row(rng, sae, pack, dtype):
    k = sae.k
    ids = pack.feature_ids
    w = pack.weights
    pairs = [(i, j) for i in range(len(ids)) for j in range(len(ids))
             if i != j and abs(w[i] - w[j]) >= 0.2]
    for _ in range(200):
        i, j = pairs[rng.integers(len(pairs))]
        a, b = int(ids[i]), int(ids[j])  # a ends up k-th (larger), b (k+1)-th
        x = rng.normal(size=sae.d_model) * rng.uniform(1.0, 4.0)
        if sae.normalize == "layer_norm":
            x += rng.normal()
        ok = True
        for _outer in range(4):
            H = ref.pre_activations(sae, x[None, :])[0]
            others = np.sort(np.delete(H, [a, b]))[::-1]
            level = 0.5 * (others[k - 2] + others[k - 1])
            if not level > 0:
                ok = False
                break
            x2 = _newton_place(sae, x, a, b, np.array([level, level * (1 - 4e-4)]))
            if x2 is None:
                ok = False
                break
            x = x2
        if not ok:
            continue
        J = _jacobian(sae, x, a, b)
        H = ref.pre_activations(sae, x[None, :])[0]
        others = np.sort(np.delete(H, [a, b]))[::-1]
        level = 0.5 * (others[k - 2] + others[k - 1])
        for _q in range(40):
            rel = math.exp(rng.uniform(math.log(1.5e-4), math.log(7e-4)))
            xt = _newton_place(sae, x, a, b, np.array([level, level * (1 - rel)]), J)
            if xt is None:
                break
            raw, xq = quantize_input(xt[None, :], dtype)
            good, _reason, _ = near_tie_info(sae, pack, xq[0])
            if good and not row_problems(sae, pack, xq[0]):
                return raw, xq[0]
    raise FixtureError(f"could not build a near-tie row for {pack.name} / {dtype}")


def count_positive(sae, x):
    """Positive pre-activations (gated: features whose gate is open and magnitude positive)."""
    H = ref.pre_activations(sae, x[None, :])[0]
    G = ref.gate_pre_activations(sae, x[None, :])
    return int(np.sum((H > 0) & (True if G is None else G[0] > 0)))


def make_row(rng, kind, sae, pack, dtype, stats):
    if kind == "near_tie":
        return near_tie_row(rng, sae, pack, dtype)
    for _ in range(200):
        if kind == "random":
            x = random_row(rng, sae)
        elif kind == "high_norm":
            x = high_norm_row(rng, sae)
        elif kind == "few_positive":
            x = few_positive_row(rng, sae)
        else:
            raise ValueError(kind)
        raw, xq = quantize_input(x[None, :], dtype)
        if kind == "few_positive" and count_positive(sae, xq[0]) >= few_positive_k(sae):
            stats["rejected_" + kind] += 1
            continue
        if row_problems(sae, pack, xq[0]):
            stats["rejected_" + kind] += 1
            continue
        return raw, xq[0]
    raise FixtureError(f"could not build a safe {kind} row for {pack.name} / {dtype}")


def assign_kinds(rng, T, score_from, with_tie):
    kinds = [None] * T
    required = ["few_positive", "high_norm", "random"]
    if with_tie:
        kinds[int(rng.integers(score_from, T))] = "near_tie"  # one tie where it is scored
    free = [t for t in range(T) if kinds[t] is None]
    for kind, pos in zip(required, rng.permutation(free)[:len(required)]):
        kinds[int(pos)] = kind
    pool_kinds = ["random", "few_positive", "high_norm"] + (["near_tie"] if with_tie else [])
    probs = [0.5, 0.15, 0.15] + ([0.2] if with_tie else [])
    probs = np.array(probs) / np.sum(probs)
    for t in range(T):
        if kinds[t] is None:
            kinds[t] = str(pool_kinds[rng.choice(len(pool_kinds), p=probs)])
    return kinds


# ------------------------------------------------------------------ packs
def make_features(rng, ids):
    signs = np.array([1.0] * (len(ids) // 2) + [-1.0] * (len(ids) - len(ids) // 2))
    rng.shuffle(signs)
    while True:
        mags = np.round(rng.uniform(0.25, 2.5, len(ids)), 3)
        w = signs * mags
        gaps = np.abs(w[:, None] - w[None, :])[~np.eye(len(ids), dtype=bool)]
        if np.all(gaps >= 0.05) and not np.any(np.isin(mags, [1.0])):
            return [float(v) for v in w]


def calibrate_canaries(rng, sae, encode, candidates):
    """Pick the N_CANARIES candidates that fire most on random rows; thresholds at the 30th and
    85th percentile of their positive activations (3 significant digits)."""
    X = np.stack([random_row(rng, sae) for _ in range(256)])
    CA = ref.activations(sae, X, encode, candidates)
    firing = (CA > 0).sum(axis=0)
    best = np.argsort(-firing, kind="stable")[:N_CANARIES]
    out = []
    for j, q in zip(best, (0.3, 0.85)):
        pos = CA[:, j][CA[:, j] > 0]
        check(pos.size >= 16, f"canary candidate {candidates[j]} hardly fires")
        out.append((int(candidates[j]), float(f"{float(np.quantile(pos, q)):.3g}")))
    return out


def pack_json(spec, features, canaries, sae_spec, sae_rel):
    name = spec["name"]
    if spec["schema"] == "own":
        pooling = dict(spec["pooling"])
        return {
            "schema": ref.OWN_SCHEMA,
            "name": name,
            "description": f"Parity fixture ({sae_spec['architecture']} SAE, encode "
                           f"{spec['encode']}, pooling {pooling['method']}). Synthetic random "
                           "weights, no meaning.",
            "synthetic": True,
            "model": "synthetic",
            "layer": LAYER,
            "sae": sae_rel,
            "encode": spec["encode"],
            "pooling": pooling,
            "features": features,
            "canaries": canaries,
        }
    common = {"name": name, "version": "0.0.0-parity", "model_name": "synthetic",
              "release": "mechreward-parity-fixtures", "sae_id": f"layer_{LAYER}",
              "description": "Parity fixture with synthetic random weights; not validated."}
    if spec["schema"] == "A":
        return {**common, "features": [
            {"feature_id": f["id"], "name": f["name"], "description": "synthetic feature",
             "weight": f["weight"], "activation_threshold": f.get("threshold", 0.0),
             "validated": True} for f in features],
            "metadata": {"synthetic": True, "hook_name": HOOK_NAME}}
    if spec["schema"] == "B":
        def entry(f, sign, rng_val):
            mc, mw = rng_val
            return {"feature_id": f["id"], "effect_size": round(sign * abs(mc - mw) / 0.5, 4),
                    "mean_correct": mc, "mean_wrong": mw, "weight": sign, "validated": True}
        helpful, harmful = [], []
        for f in features:
            base = 0.1 + 0.01 * (f["id"] % 37)
            if f["weight"] > 0:
                helpful.append(entry(f, 1.0, (round(base + 0.2, 4), round(base, 4))))
            else:
                harmful.append(entry(f, -1.0, (round(base, 4), round(base + 0.2, 4))))
        return {**common, "helpful_features": helpful, "harmful_features": harmful,
                "validation": {"method": "synthetic (no validation data)", "n_questions": 0,
                               "n_correct": 0, "spearman_rho": 0.0, "spearman_p": 1.0,
                               "pearson_r": 0.0,
                               "reward_formula": "mean_t sum_f w_f * f_f(x_t)",
                               "pass_threshold": 0.30, "verdict": "SYNTHETIC"},
                "metadata": {"architecture": sae_spec["architecture"],
                             "d_model": sae_spec["d_model"], "d_sae": sae_spec["d_sae"],
                             "k": sae_spec["k"], "num_hidden_layers": 6,
                             "target_layer": LAYER}}
    raise ValueError(spec["schema"])


# ------------------------------------------------------------------ SAE variants
# The architectures the loader reads beyond TopK / ReLU / JumpReLU: SAELens gated and AbsTopK, sparsify
# group-max, transcoders (a SAELens jumprelu_skip_transcoder with d_out != d_in, a sparsify transcode) and a
# JumpReLU SAE stored with log_threshold. Small (d_model 32, d_sae <= 256: tens of KB each) and drawn from
# their own random stream, so the packs above keep their bytes. Besides the common rows, each gets rows at its own discontinuities, placed
# 1e-4 to 1e-3 (relative) from them, and ranking SAEs get an exact tie between "twin" features (identical
# encoder columns and one pack weight, so either may win: one and only one must count).
VARIANT_SEED_OFFSET = 104729
VARIANT_SAE_SPECS = {
    "gated-saelens": dict(layout="saelens", architecture="gated", d_model=32, d_sae=256, k=None,
                          apply_b_dec=True, normalize="none", rescale=False, dtype="F32",
                          sae_lens_version="6.54.12"),
    "abstopk-saelens": dict(layout="saelens", architecture="abstopk", d_model=32, d_sae=256, k=8,
                            apply_b_dec=True, normalize="none", rescale=True, dtype="F32",
                            dec_norm_range=(0.5, 2.0), twins=True, sae_lens_version="6.54.12"),
    "groupmax-sparsify": dict(layout="sparsify", architecture="groupmax", d_model=32, d_sae=256, k=16,
                              apply_b_dec=True, normalize="none", rescale=False, dtype="BF16", twins=True),
    "topk-sparsify-transcode": dict(layout="sparsify", architecture="topk", d_model=32, d_sae=128, k=8,
                                    apply_b_dec=False, transcode=True, normalize="none", rescale=False,
                                    dtype="F32", twins=True),
    "jumprelu-skip-transcoder": dict(layout="saelens", architecture="jumprelu_skip_transcoder", d_model=32,
                                     d_out=24, d_sae=256, k=None, apply_b_dec=False, normalize="none",
                                     rescale=False, dtype="F16", sae_lens_version="6.54.12"),
    "jumprelu-log-threshold": dict(layout="saelens", architecture="jumprelu", d_model=32, d_sae=128, k=None,
                                   apply_b_dec=True, normalize="none", rescale=False, dtype="BF16",
                                   log_threshold=True, sae_lens_version="6.54.12"),
}
VARIANT_PACK_SPECS = [
    dict(name="gated-saelens", schema="own", sae="gated-saelens", encode="topk", pooling={"method": "mean"}),
    dict(name="abstopk-saelens", schema="own", sae="abstopk-saelens", encode="topk",
         pooling={"method": "sum"}, negative_thresholds=5, positive_threshold=0.05),
    dict(name="abstopk-selected", schema="own", sae="abstopk-saelens", encode="selected_relu",
         pooling={"method": "mean"}, features_from="abstopk-saelens"),
    dict(name="groupmax-sparsify", schema="own", sae="groupmax-sparsify", encode="topk",
         pooling={"method": "last_k", "k": 3}),
    dict(name="topk-sparsify-transcode", schema="own", sae="topk-sparsify-transcode", encode="topk",
         pooling={"method": "max"}),
    dict(name="jumprelu-skip-transcoder", schema="own", sae="jumprelu-skip-transcoder", encode="topk",
         pooling={"method": "mean"}),
    dict(name="jumprelu-log-threshold", schema="own", sae="jumprelu-log-threshold", encode="topk",
         pooling={"method": "last_k", "k": 4}),
]
ALL_SAE_SPECS = {**SAE_SPECS, **VARIANT_SAE_SPECS}
ALL_PACK_SPECS = PACK_SPECS + VARIANT_PACK_SPECS
VARIANT_PACKS = {s["name"] for s in VARIANT_PACK_SPECS}
NEGATIVE_THRESHOLD = -1000.0  # a pack threshold that keeps a signed AbsTopK activation (f > -1000)
HUGE_FACTOR = (1e5, 1e7)  # f32 and bf16 only: f16 stops at 65504
DENORMAL_LOG10 = {"f32": (-40.0, -38.2), "bf16": (-40.0, -38.2), "f16": (-7.0, -4.5)}
MIN_NORMAL = {"f32": 2.0 ** -126, "bf16": 2.0 ** -126, "f16": 2.0 ** -14}
VARIANT_ROW_TRIES = 400


def expected_architecture(spec):
    """What reference.load_sae should report for a spec."""
    if spec["layout"] == "sparsify":
        return spec["architecture"]
    arch = spec["architecture"]
    return ref.TRANSCODERS[arch][0] if arch in ref.TRANSCODERS else ref.ARCHITECTURES[arch]


def make_variant_sae(rng, spec):
    arch, n = spec["architecture"], spec["d_sae"]
    pack_ids = None
    if arch == "groupmax":  # four groups hold two pack features each (their own near ties), four hold one
        size = n // spec["k"]
        groups = rng.choice(spec["k"], 8, replace=False)
        ids = [int(g) * size + int(j) for g in groups[:4] for j in rng.choice(size, 2, replace=False)]
        ids += [int(g) * size + int(rng.integers(size)) for g in groups[4:]]
        pack_ids = np.sort(np.array(ids))
    tensors, pack_ids, canary_ids = make_sae(rng, None, spec, pack_ids)
    if spec.get("twins"):
        if arch == "groupmax":
            size = n // spec["k"]
            a, b = next((a, b) for a in pack_ids for b in pack_ids if a < b and a // size == b // size)
        else:
            a, b = np.sort(rng.choice(pack_ids, 2, replace=False))
        a, b = int(a), int(b)
        tensors["W_enc"][:, b] = tensors["W_enc"][:, a]
        tensors["b_enc"][b] = tensors["b_enc"][a]
        tensors["W_dec"][b] = tensors["W_dec"][a]
    if arch == "gated":
        b_gate = tensors["b_enc"]
        r_mag = rng.normal(0.0, 0.3, n)
        offset = rng.uniform(-0.2, 0.3, n)  # the magnitude pre-activation where the gate opens (g = 0)
        offset[pack_ids] = rng.uniform(0.05, 0.4, pack_ids.size)
        offset[rng.choice(pack_ids, 3, replace=False)] = rng.uniform(-0.4, -0.1, 3)  # open gate, relu 0
        tensors = {"W_enc": tensors["W_enc"], "b_gate": b_gate, "b_mag": np.exp(r_mag) * b_gate + offset,
                   "r_mag": r_mag, "W_dec": tensors["W_dec"], "b_dec": tensors["b_dec"]}
    if arch in ref.TRANSCODERS:
        d_out = spec["d_out"]
        dirs = rng.normal(size=(n, d_out))
        tensors["W_dec"] = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        tensors["b_dec"] = rng.normal(0.0, 0.3, d_out)
        if ref.TRANSCODERS[arch][1]:
            tensors["W_skip"] = rng.normal(0.0, 0.1, (d_out, spec["d_model"]))
        if ref.TRANSCODERS[arch][0] == "jumprelu":
            tensors["threshold"] = rng.uniform(0.2, 1.0, n)
    if spec.get("log_threshold"):  # an older checkpoint's form (SAELens converts it for JumpReLUSAE only)
        tensors["log_threshold"] = np.log(tensors.pop("threshold"))
    return tensors, pack_ids, canary_ids


def variant_feature_settings(rng, spec, sae, features):
    """Twins share one weight (and threshold); AbsTopK packs keep some features' signed activations."""
    twin = twin_partners(sae, [f["id"] for f in features])
    by_id = {f["id"]: f for f in features}
    for a, b in twin.items():
        if a < b:
            by_id[b]["weight"] = by_id[a]["weight"]
            if spec.get("negative_thresholds"):  # so a negative tie still counts
                by_id[a]["threshold"] = by_id[b]["threshold"] = NEGATIVE_THRESHOLD
    plain = [f for f in features if f["id"] not in twin]
    picks = rng.permutation(len(plain))
    for j in picks[:spec.get("negative_thresholds", 0)]:
        plain[j]["threshold"] = NEGATIVE_THRESHOLD
    if "positive_threshold" in spec:
        plain[picks[-1]]["threshold"] = spec["positive_threshold"]


def special_kinds(sae, pack):
    """The row kinds at this pack's own discontinuities."""
    kinds = []
    exact = pack.encode == "topk"
    if exact and sae.architecture in ref.RANKING:
        kinds.append("near_tie")
        if twin_partners(sae, pack.feature_ids):
            kinds.append("exact_tie")
    if sae.architecture == "abstopk":
        kinds.append("negative")
    if exact and sae.architecture == "gated":
        kinds.append("gate_edge")
    if exact and sae.architecture == "jumprelu":
        kinds.append("near_threshold")
    return kinds


def common_kinds(dtype):
    return ["random", "few_positive", "high_norm", "denormal"] + (["huge"] if dtype != "f16" else [])


def assign_variant_kinds(rng, T, score_from, special, common):
    """The first special kind where it is scored, then one of each other kind while room is left; the rest
    drawn (specials 30 %)."""
    kinds = [None] * T
    if special:
        kinds[int(rng.integers(score_from, T))] = special[0]
    for kind in special[1:] + common:
        free = [t for t in range(T) if kinds[t] is None]
        if not free:
            break
        kinds[int(rng.choice(free))] = kind
    pool = common + special
    probs = np.array([0.7 / len(common)] * len(common) + [0.3 / max(len(special), 1)] * len(special))
    probs /= probs.sum()
    for t in range(T):
        if kinds[t] is None:
            kinds[t] = str(pool[rng.choice(len(pool), p=probs)])
    return kinds


def _feature_value(sae, x, j, gate=False):
    X = x[None, :]
    return (ref.gate_pre_activations(sae, X) if gate else ref.pre_activations(sae, X))[0, j]


def _place(sae, x, j, target, gate=False):
    """x moved along feature j's encoder column until its pre-activation (gate: its gate pre-activation) is
    `target`. Without normalisation the encode is affine in x: one step, and one more for the rounding."""
    u = sae.W_enc[:, j]
    for _ in range(2):
        v0 = _feature_value(sae, x, j, gate)
        x = x + (target - v0) / (_feature_value(sae, x + u, j, gate) - v0) * u
    return x


def _boundary_level(sae, x, pair):
    """The rank key that puts `pair` at the selection boundary: between the (k-1)-th and k-th largest other
    keys (TopK, AbsTopK), or clearly above the rest of its group (group-max); None when not positive."""
    H = ref.pre_activations(sae, x[None, :])[0]
    if sae.architecture == "groupmax":
        size = ref.group_size(sae)
        start = pair[0] // size * size
        rest = np.delete(np.maximum(H[start:start + size], 0.0), [p - start for p in pair])
        return rest.max() + max(0.5 * rest.max(), 0.2)
    keys = np.sort(np.delete(ref.rank_keys(sae, H), list(pair)))[::-1]
    level = 0.5 * (keys[sae.k - 2] + keys[sae.k - 1])
    return level if level > 1e-3 else None


def _near_tie_variant_row(rng, sae, pack):
    ids, w = [int(i) for i in pack.feature_ids], pack.weights
    twin = twin_partners(sae, ids)
    size = ref.group_size(sae) if sae.architecture == "groupmax" else None
    pairs = [(ids[i], ids[j]) for i in range(len(ids)) for j in range(len(ids))
             if i != j and abs(w[i] - w[j]) >= 0.2 and twin.get(ids[i]) != ids[j]
             and (size is None or ids[i] // size == ids[j] // size)]
    a, b = pairs[rng.integers(len(pairs))]  # a ends up k-th (or its group's max), b next
    signs = rng.choice([-1.0, 1.0], 2) if sae.architecture == "abstopk" else np.ones(2)
    rel = math.exp(rng.uniform(math.log(1.5e-4), math.log(7e-4)))
    x = rng.normal(size=sae.d_model) * rng.uniform(1.0, 4.0)
    for _ in range(4):
        level = _boundary_level(sae, x, (a, b))
        if level is None:
            return None
        x = _newton_place(sae, x, a, b, signs * np.array([level, level * (1 - rel)]))
        if x is None:
            return None
    return x


def _exact_tie_row(rng, sae, pack):
    twin = twin_partners(sae, pack.feature_ids)
    a = min(twin)
    sign = rng.choice([-1.0, 1.0]) if sae.architecture == "abstopk" else 1.0
    x = rng.normal(size=sae.d_model) * rng.uniform(1.0, 4.0)
    for _ in range(3):
        level = _boundary_level(sae, x, (a, twin[a]))
        if level is None:
            return None
        x = _place(sae, x, a, sign * level)
    return x


def _edge_row(rng, sae, pack, gate):
    """A pack feature's gate pre-activation (gate) or pre-activation (JumpReLU) 1.5e-4 to 7e-4 (relative)
    either side of its edge: 0 for a gate, the threshold for JumpReLU."""
    x = rng.normal(size=sae.d_model) * rng.uniform(1.0, 4.0)
    j = int(rng.choice(pack.feature_ids))
    rel = rng.choice([-1.0, 1.0]) * math.exp(rng.uniform(math.log(1.5e-4), math.log(7e-4)))
    if gate:
        scale = float(np.abs(ref.sae_input(sae, x[None, :])[0]) @ np.abs(sae.W_enc[:, j]) + abs(sae.b_gate[j]))
        return _place(sae, x, j, rel * scale, gate=True)
    return _place(sae, x, j, sae.threshold[j] * (1 + rel))


def _negative_row(rng, sae, pack):
    """Pack features (those whose threshold keeps a signed value first) pushed far below 0."""
    counted = [f.id for f in pack.features if f.threshold < 0] or [int(i) for i in pack.feature_ids]
    x = ref.b_dec_applied(sae) + rng.normal(size=sae.d_model) * 0.05
    for j in rng.choice(counted, min(3, len(counted)), replace=False):
        x = _place(sae, x, int(j), -rng.uniform(1.0, 4.0))
    return x


def _denormal_row(rng, sae, dtype):
    """Half the coordinates subnormal in the wire dtype, the rest exactly 0."""
    d = sae.d_model
    lo, hi = DENORMAL_LOG10[dtype]
    x = np.zeros(d)
    idx = rng.choice(d, d // 2, replace=False)
    x[idx] = rng.choice([-1.0, 1.0], idx.size) * 10.0 ** rng.uniform(lo, hi, idx.size)
    return x


def propose_variant_row(rng, kind, sae, pack, dtype):
    if kind == "random":
        return random_row(rng, sae)
    if kind == "high_norm":
        return high_norm_row(rng, sae)
    if kind == "few_positive":
        return few_positive_row(rng, sae)
    if kind == "huge":
        return rng.normal(size=sae.d_model) * math.exp(rng.uniform(*np.log(HUGE_FACTOR)))
    if kind == "denormal":
        return _denormal_row(rng, sae, dtype)
    if kind == "negative":
        return _negative_row(rng, sae, pack)
    if kind == "near_tie":
        return _near_tie_variant_row(rng, sae, pack)
    if kind == "exact_tie":
        return _exact_tie_row(rng, sae, pack)
    if kind in ("gate_edge", "near_threshold"):
        return _edge_row(rng, sae, pack, gate=kind == "gate_edge")
    raise ValueError(kind)


def make_variant_row(rng, kind, sae, pack, dtype, stats):
    why = Counter()
    for _ in range(VARIANT_ROW_TRIES):
        x = propose_variant_row(rng, kind, sae, pack, dtype)
        if x is None or not np.all(np.isfinite(x)) or (dtype == "f16" and np.max(np.abs(x)) >= F16_LIMIT):
            why["no candidate"] += 1
        else:
            raw, xq = quantize_input(x[None, :], dtype)
            ok, reason = variant_kind_info(sae, pack, xq[0], kind, dtype)
            problems = row_problems(sae, pack, xq[0]) if ok else []
            if ok and not problems:
                return raw, xq[0]
            why.update([reason] if not ok else problems)
        stats["rejected_" + kind] += 1
    raise FixtureError(f"could not build a safe {kind} row for {pack.name} / {dtype}: {why.most_common(3)}")


def _row_reward(sae, pack, F):
    """(r_t, scale) of one row's dense code F [d_sae] under the pack's weights and thresholds."""
    A = F[pack.feature_ids]
    A = np.where(A > pack.thresholds, A, 0.0)
    return float(A @ pack.weights), float(np.abs(A * pack.weights).sum())


def _visible(change, scale):
    """A change of r_t that no engine within the tolerance could hide."""
    return abs(change) > 100 * RTOL * max(scale, SCALE_FLOOR)


def _ranking_near_tie(sae, pack, x, H):
    """(ok, why): two pack features with different weights at the selection boundary (TopK, AbsTopK: k-th and
    (k+1)-th; group-max: a group's two largest), 1e-4 to 1e-3 apart, and the swap visible in r_t."""
    ids = [int(i) for i in pack.feature_ids]
    twin = twin_partners(sae, ids)
    F = ref.encode_exact(sae, H[None, :])[0]
    r, scale = _row_reward(sae, pack, F)
    keys = ref.rank_keys(sae, H) if sae.architecture != "groupmax" else np.maximum(H, 0.0)
    if sae.architecture == "groupmax":
        size = ref.group_size(sae)
        candidates = []
        for g in sorted({i // size for i in ids}):
            order = g * size + np.argsort(-keys[g * size:(g + 1) * size], kind="stable")
            candidates.append((int(order[0]), int(order[1])))
    else:
        order = np.argsort(-keys, kind="stable")
        candidates = [(int(order[sae.k - 1]), int(order[sae.k]))]
    for hi, lo in candidates:
        if hi not in ids or lo not in ids or twin.get(hi) == lo:
            continue
        if pack.weights[ids.index(hi)] == pack.weights[ids.index(lo)] or not keys[lo] > 0:
            continue
        rel = (keys[hi] - keys[lo]) / keys[hi]
        if not NEAR_TIE_REL[0] <= rel <= NEAR_TIE_REL[1]:
            continue
        F2 = F.copy()
        F2[hi], F2[lo] = 0.0, H[lo] if sae.architecture == "abstopk" else max(H[lo], 0.0)
        if _visible(_row_reward(sae, pack, F2)[0] - r, scale):
            return True, ""
    return False, "no visible near tie of two pack features at the selection boundary"


def _exact_tie(sae, pack, H):
    twin = twin_partners(sae, pack.feature_ids)
    a = min(twin)
    b = twin[a]
    if H[a] != H[b]:
        return False, "the twins' pre-activations differ"
    if sae.architecture == "groupmax":
        size = ref.group_size(sae)
        R = np.maximum(H, 0.0)
        at_boundary = R[a] > 0 and int(np.argmax(R[a // size * size:(a // size + 1) * size])) == a % size
    else:
        order = np.argsort(-ref.rank_keys(sae, H), kind="stable")
        at_boundary = order[sae.k - 1] == a and order[sae.k] == b and (sae.architecture == "abstopk" or H[a] > 0)
    if not at_boundary:
        return False, "the twins are not at the selection boundary"
    r, scale = _row_reward(sae, pack, ref.encode_exact(sae, H[None, :])[0])
    w = pack.weights[list(pack.feature_ids).index(a)]
    thr = pack.thresholds[list(pack.feature_ids).index(a)]
    kept = H[a] if sae.architecture == "abstopk" else max(H[a], 0.0)
    if not (kept > thr and _visible(w * kept, scale)):
        return False, "keeping both twins (or neither) would not be visible"
    return True, ""


def _edge(sae, pack, x, H, gate):
    A = ref.pack_activations(sae, pack, x[None, :])[0]
    scale = float(np.abs(A * pack.weights).sum())
    xin = ref.sae_input(sae, x[None, :])[0]
    G = ref.gate_pre_activations(sae, x[None, :])
    for f in pack.features:
        j = f.id
        if gate:
            dist = abs(G[0, j]) / (np.abs(xin) @ np.abs(sae.W_enc[:, j]) + abs(sae.b_gate[j]))
            jump = f.weight * H[j] if H[j] > 0 else 0.0
        else:
            dist = abs(H[j] - sae.threshold[j]) / sae.threshold[j]
            jump = f.weight * sae.threshold[j]
        if NEAR_TIE_REL[0] <= dist <= NEAR_TIE_REL[1] and _visible(jump, scale):
            return True, ""
    return False, "no pack feature with a visible jump 1e-4 to 1e-3 from its edge"


def variant_kind_info(sae, pack, x, kind, dtype):
    """(ok, why): does the (quantised) row x have what its kind promises?"""
    d = sae.d_model
    ratio = np.linalg.norm(x) / math.sqrt(d)
    if kind == "random":
        return True, ""
    if kind == "high_norm":
        return 0.5 * HIGH_NORM_FACTOR[0] <= ratio <= 1.5 * HIGH_NORM_FACTOR[1], f"norm ratio {ratio:.3g}"
    if kind == "huge":
        return ratio >= 0.5 * HUGE_FACTOR[0], f"norm ratio {ratio:.3g}"
    if kind == "few_positive":
        n = count_positive(sae, x)
        return n < few_positive_k(sae), f"{n} positive"
    if kind == "denormal":
        sub = int(np.sum((x != 0) & (np.abs(x) < MIN_NORMAL[dtype])))
        return sub >= d // 4 and np.max(np.abs(x)) < MIN_NORMAL[dtype], f"{sub} subnormal values"
    H = ref.pre_activations(sae, x[None, :])[0]
    if kind == "negative":
        if pack.encode == "topk":
            return bool(np.any(ref.pack_activations(sae, pack, x[None, :])[0] < 0)), "no negative value counted"
        return int(np.sum(H[pack.feature_ids] < -0.5)) >= 2, "fewer than 2 pack features below -0.5"
    if kind == "near_tie":
        return _ranking_near_tie(sae, pack, x, H)
    if kind == "exact_tie":
        return _exact_tie(sae, pack, H)
    if kind in ("gate_edge", "near_threshold"):
        return _edge(sae, pack, x, H, gate=kind == "gate_edge")
    raise ValueError(kind)


# ------------------------------------------------------------------ main build
def build(out_dir, seed):
    packs_dir = os.path.join(out_dir, "packs")
    os.makedirs(packs_dir)
    os.makedirs(os.path.join(out_dir, "inputs"))
    saes, stored_all, expected = {}, {}, {}
    stats, hashes, cases = Counter(), {}, []
    # Each group draws from its own stream: adding variants never changes the bytes of the packs before them.
    for rng, sae_specs, pack_specs, variants in (
            (np.random.default_rng(seed), SAE_SPECS, PACK_SPECS, False),
            (np.random.default_rng(seed + VARIANT_SEED_OFFSET), VARIANT_SAE_SPECS, VARIANT_PACK_SPECS, True)):
        cases += build_group(out_dir, rng, sae_specs, pack_specs, variants, saes, stored_all, expected,
                             stats, hashes)
    doc = {"seed": seed,
           "tolerance": {"rtol": RTOL, "scale_floor": SCALE_FLOOR,
                         "rule": "|engine - ref| <= rtol * max(scale, scale_floor); scale is "
                                 "token_scales[t] for token_rewards[t], reward_scale for reward, "
                                 "|value| for a canary value"},
           "cases": cases}
    with open(os.path.join(out_dir, "cases.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    return saes, stored_all, expected, stats, hashes


def build_group(out_dir, rng, sae_specs, pack_specs, variants, saes, stored_all, expected, stats, hashes):
    """SAEs, packs and cases of one spec group; fills saes/stored_all/expected/stats/hashes, returns cases."""
    packs_dir = os.path.join(out_dir, "packs")
    sae_hot = {}
    for name, spec in sae_specs.items():
        if variants:
            tensors, pack_ids, canary_ids = make_variant_sae(rng, spec)
        else:
            tensors, pack_ids, canary_ids = make_sae(rng, name, spec)
        sae_dir = os.path.join(packs_dir, name, "sae")
        stored_all[name] = write_sae(sae_dir, spec, tensors)
        saes[name] = ref.load_sae(sae_dir)
        sae_hot[name] = (pack_ids, canary_ids)

    pack_objs, feature_sets = {}, {}
    for spec in pack_specs:
        sae = saes[spec["sae"]]
        sae_spec = sae_specs[spec["sae"]]
        pack_ids, canary_ids = sae_hot[spec["sae"]]
        if "features_from" in spec:
            features, canaries = feature_sets[spec["features_from"]]
        else:
            weights = make_features(rng, pack_ids)
            if spec["schema"] == "B":
                signs = rng.permutation([1.0] * 6 + [-1.0] * (N_FEATURES - 6))
                weights = [float(s) for s in signs]
            features = [{"id": int(i), "weight": w, "name": f"synthetic_{int(i)}"}
                        for i, w in zip(pack_ids, weights)]
            if "feature_threshold" in spec:
                for f in features:
                    f["threshold"] = spec["feature_threshold"]
            if "one_feature_threshold" in spec:
                features[int(rng.integers(len(features)))]["threshold"] = \
                    spec["one_feature_threshold"]
            if variants:
                variant_feature_settings(rng, spec, sae, features)
            canaries = []
            if spec["schema"] == "own":
                picked = calibrate_canaries(rng, sae, spec["encode"], canary_ids)
                canaries = [{"name": CANARY_NAMES[c], "feature": fid, "threshold": thr}
                            for c, (fid, thr) in enumerate(picked)]
        feature_sets[spec["name"]] = (features, canaries)
        sae_rel = "sae" if spec["name"] == spec["sae"] else f"../{spec['sae']}/sae"
        pdir = os.path.join(packs_dir, spec["name"])
        os.makedirs(pdir, exist_ok=True)
        with open(os.path.join(pdir, "pack.json"), "w") as fh:
            json.dump(pack_json(spec, features, canaries, sae_spec, sae_rel), fh, indent=2)
            fh.write("\n")
        pack_objs[spec["name"]] = ref.load_pack(pdir)
        expected[spec["name"]] = (features, canaries)

    cases = []
    for spec in pack_specs:
        pack = pack_objs[spec["name"]]
        sae = saes[spec["sae"]]
        tie = near_tie_applicable(sae, pack)
        for dtype in ref.INPUT_DTYPES:
            seqs = []
            for i in range(N_SEQUENCES):
                T = int(rng.integers(T_RANGE[0], T_RANGE[1] + 1))
                score_from = 0 if i == 0 else T - 1 if i == 1 else int(rng.integers(0, T))
                if variants:
                    kinds = assign_variant_kinds(rng, T, score_from, special_kinds(sae, pack),
                                                 common_kinds(dtype))
                else:
                    kinds = assign_kinds(rng, T, score_from, tie)
                raws, rows = [], []
                for kind in kinds:
                    if variants:
                        raw, xq = make_variant_row(rng, kind, sae, pack, dtype, stats)
                    else:
                        raw, xq = make_row(rng, kind, sae, pack, dtype, stats)
                    raws.append(raw)
                    rows.append(xq)
                    stats["rows_" + kind] += 1
                X = np.stack(rows)
                rel = f"inputs/{spec['name']}.{dtype}.{i}.bin"
                blob = b"".join(raws)
                with open(os.path.join(out_dir, rel), "wb") as fh:
                    fh.write(blob)
                hashes[rel] = hashlib.sha256(blob).hexdigest()
                res = ref.score_sequence(sae, pack, X, score_from)
                seqs.append({"file": rel, "num_tokens": T, "score_from": score_from,
                             "row_kinds": kinds, **{k: res[k] for k in (
                                 "token_rewards", "token_scales", "reward", "reward_scale",
                                 "flags", "canary_values")}})
                stats["flags"] += len(res["flags"])
                stats["sequences"] += 1
            cases.append({"pack": spec["name"], "dtype": dtype, "d_model": sae.d_model,
                          "sequences": seqs})
    return cases


# ------------------------------------------------------------------ verification
def verify(out_dir, saes_built, stored_all, expected, hashes):
    """Re-read everything from disk and recompute; raises FixtureError on any mismatch."""
    with open(os.path.join(out_dir, "cases.json")) as fh:
        doc = json.load(fh)
    check(len(doc["cases"]) == len(ALL_PACK_SPECS) * len(ref.INPUT_DTYPES), "wrong number of cases")
    counts = Counter()
    for spec in ALL_PACK_SPECS:
        name = spec["name"]
        variant = name in VARIANT_PACKS
        pdir = os.path.join(out_dir, "packs", name)
        pack = ref.load_pack(pdir)
        sae_spec = ALL_SAE_SPECS[spec["sae"]]
        check(pack.name == name, f"{name}: pack name != folder name")
        check(pack.schema == spec["schema"], f"{name}: schema detected as {pack.schema}")
        check(pack.encode == spec["encode"], f"{name}: encode {pack.encode}")
        check(pack.pooling == spec["pooling"]["method"] and
              pack.pooling_k == spec["pooling"].get("k"), f"{name}: pooling")
        check(os.path.normpath(pack.sae_dir) ==
              os.path.normpath(os.path.join(out_dir, "packs", spec["sae"], "sae")),
              f"{name}: sae path")
        feats, cans = expected[name]
        check([f.id for f in pack.features] == [f["id"] for f in feats] or spec["schema"] == "B",
              f"{name}: feature ids")
        want = {f["id"]: (f["weight"], f.get("threshold", 0.0)) for f in feats}
        got = {f.id: (f.weight, f.threshold) for f in pack.features}
        check(got == want, f"{name}: feature weights/thresholds differ after reload")
        check(len(pack.features) == N_FEATURES, f"{name}: feature count")
        check(any(f.weight > 0 for f in pack.features) and any(f.weight < 0 for f in
              pack.features), f"{name}: weights not mixed-sign")
        if spec["schema"] != "B":
            check(all(abs(f.weight) != 1.0 for f in pack.features), f"{name}: unit weight")
        check([(c.name, c.feature, c.threshold) for c in pack.canaries] ==
              [(c["name"], c["feature"], c["threshold"]) for c in cans], f"{name}: canaries")
        if spec["schema"] == "own":
            check(len(pack.canaries) == N_CANARIES, f"{name}: canary count")
        sae = ref.load_sae(pack.sae_dir)
        built = saes_built[spec["sae"]]
        for attr in ("W_enc", "b_enc", "W_dec", "b_dec"):
            check(np.array_equal(getattr(sae, attr), getattr(built, attr)),
                  f"{name}: {attr} differs after reload")
        check(sae.d_model == sae_spec["d_model"] and sae.d_sae == sae_spec["d_sae"],
              f"{name}: SAE dims")
        check(set(sae.tensor_dtypes.values()) == {sae_spec["dtype"]},
              f"{name}: tensor dtypes {sae.tensor_dtypes}")
        check(sae.architecture == expected_architecture(sae_spec) and
              sae.k == sae_spec["k"] and sae.apply_b_dec == sae_spec["apply_b_dec"] and
              sae.normalize == sae_spec["normalize"] and sae.rescale == sae_spec["rescale"],
              f"{name}: SAE config")
        for tname, arr in stored_all[spec["sae"]].items():
            raw_dec = ref.decode_tensor(arr.tobytes(), sae_spec["dtype"], arr.shape)
            check(np.array_equal(raw_dec, np.asarray(arr, np.float64)),
                  f"{name}: stored tensor {tname} does not decode exactly")
        if sae_spec["rescale"]:
            nrm = sae.decoder_norms
            check(nrm.min() < 0.55 and nrm.max() > 1.95, f"{name}: decoder norms not spread")
        if sae.threshold is not None:
            check(np.array_equal(sae.threshold, built.threshold), f"{name}: threshold reload")
        tie = near_tie_applicable(sae, pack)
        specials = special_kinds(sae, pack) if variant else []
        for dtype in ref.INPUT_DTYPES:
            case = [c for c in doc["cases"] if c["pack"] == name and c["dtype"] == dtype]
            check(len(case) == 1, f"{name}/{dtype}: case missing")
            case = case[0]
            check(case["d_model"] == sae.d_model, f"{name}/{dtype}: d_model")
            seqs = case["sequences"]
            check(len(seqs) == N_SEQUENCES, f"{name}/{dtype}: sequence count")
            check(any(s["score_from"] == 0 for s in seqs), f"{name}/{dtype}: no score_from 0")
            check(any(s["score_from"] == s["num_tokens"] - 1 for s in seqs),
                  f"{name}/{dtype}: no score_from T-1")
            live = 0
            for s in seqs:
                where = f"{s['file']}"
                T, sf = s["num_tokens"], s["score_from"]
                check(T_RANGE[0] <= T <= T_RANGE[1] and 0 <= sf <= T - 1, f"{where}: T/score_from")
                with open(os.path.join(out_dir, s["file"]), "rb") as fh:
                    raw = fh.read()
                check(len(raw) == T * sae.d_model * ITEMSIZE[dtype], f"{where}: file size")
                check(hashlib.sha256(raw).hexdigest() == hashes.get(s["file"]),
                      f"{where}: bytes on disk differ from the bytes generated")
                X = ref.decode_input(raw, dtype, sae.d_model)
                check(np.all(np.isfinite(X)), f"{where}: non-finite input")
                if dtype == "f16":
                    check(np.max(np.abs(X)) < F16_LIMIT, f"{where}: f16 magnitude")
                kinds = s["row_kinds"]
                check(len(kinds) == T, f"{where}: row_kinds length")
                check(len(set(kinds)) >= 3, f"{where}: fewer than 3 row kinds")
                if variant:
                    check(set(kinds) <= set(specials + common_kinds(dtype)), f"{where}: unexpected kinds")
                    check(not specials or any(kinds[t] in specials for t in range(sf, T)),
                          f"{where}: no scored row at a discontinuity")
                elif tie:
                    check(any(kinds[t] == "near_tie" for t in range(sf, T)),
                          f"{where}: no scored near-tie row")
                else:
                    check("near_tie" not in kinds, f"{where}: near_tie on a non-TopK pack")
                H_all = ref.pre_activations(sae, X)  # as score_sequence computes it: all rows at once
                for t, kind in enumerate(kinds):
                    x = X[t]
                    probs = row_problems(sae, pack, x)
                    check(not probs, f"{where} row {t}: {probs}")
                    if variant:
                        ok, why = variant_kind_info(sae, pack, x, kind, dtype)
                        check(ok, f"{where} row {t}: {kind} row broken: {why}")
                        if kind == "exact_tie":
                            a = min(twin_partners(sae, pack.feature_ids))
                            check(H_all[t, a] == H_all[t, twin_partners(sae, pack.feature_ids)[a]],
                                  f"{where} row {t}: twins differ in the batched product")
                        counts[kind] += 1
                    elif kind == "near_tie":
                        ok, why, _ = near_tie_info(sae, pack, x)
                        check(ok, f"{where} row {t}: near-tie broken: {why}")
                        counts["near_tie"] += 1
                    elif kind == "few_positive":
                        n = count_positive(sae, x)
                        check(n < few_positive_k(sae), f"{where} row {t}: {n} positive")
                        counts["few_positive"] += 1
                    elif kind == "high_norm":
                        ratio = np.linalg.norm(x) / math.sqrt(sae.d_model)
                        check(0.5 * HIGH_NORM_FACTOR[0] <= ratio <= 1.5 * HIGH_NORM_FACTOR[1],
                              f"{where} row {t}: high_norm ratio {ratio:.3g}")
                        counts["high_norm"] += 1
                    else:
                        counts["random"] += 1
                res = ref.score_sequence(sae, pack, X, sf)
                for key in ("token_rewards", "token_scales", "reward", "reward_scale", "flags",
                            "canary_values"):
                    check(res[key] == s[key], f"{where}: {key} differs on recompute")
                check(len(s["token_rewards"]) == T and all(v == 0.0 for v in
                      s["token_rewards"][:sf]), f"{where}: prompt tokens not zero")
                for fl in s["flags"]:
                    c = [c for c in pack.canaries if c.name == fl["name"]][0]
                    check(fl["value"] > c.threshold, f"{where}: flag below threshold")
                live += any(v != 0.0 for v in s["token_rewards"])
            check(live >= 3, f"{name}/{dtype}: fewer than 3 sequences with a non-zero reward")
            kinds_in_case = {k for s in seqs for k in s["row_kinds"]}
            check(set(specials) <= kinds_in_case, f"{name}/{dtype}: missing {set(specials) - kinds_in_case}")
    return counts


# ------------------------------------------------------------------ linear packs and the dual verifier
# Direction and probe packs, and packs with a dual verifier, on d_model 64 inputs. Written to
# DIR/linear_cases.json (same case layout as cases.json plus per-sequence verifier_disagreement and a
# per-case verifier_factor: each case is scored as ONE request, which batch_downweight depends on).
LINEAR_D = 64
LINEAR_SPECS = [
    dict(name="direction-f32", kind="direction", dtype="F32", output="logit", pooling={"method": "mean"}),
    dict(name="probe-logistic-bf16", kind="probe", type="logistic", dtype="BF16", output="probability",
         pooling={"method": "last_k", "k": 4}),
    dict(name="probe-linear-f16", kind="probe", type="linear", dtype="F16", output="logit",
         pooling={"method": "sum"}),
    dict(name="verifier-gate-sae", kind="sae", sae_from="topk-saelens", pooling={"method": "mean"},
         verifier=dict(probe="verifier.safetensors", mode="token_gate", dtype="F32", align=0.0)),
    dict(name="verifier-gate-direction", kind="direction", dtype="F32", output="logit",
         pooling={"method": "mean"},
         verifier=dict(probe="../probe-linear-f16", mode="token_gate")),
    dict(name="verifier-downweight-on", kind="direction", dtype="BF16", output="logit",
         pooling={"method": "mean"},
         verifier=dict(probe="verifier.safetensors", mode="batch_downweight", threshold=0.05,
                       factor=0.25, dtype="F16", align=0.5)),
    dict(name="verifier-downweight-off", kind="direction", dtype="F32", output="logit",
         pooling={"method": "mean"},
         verifier=dict(probe="verifier.safetensors", mode="batch_downweight", threshold=0.95,
                       factor=0.25, dtype="F32", align=0.5)),
]
LINEAR_KINDS = ("random", "high_norm", "near_zero", "tiny", "saturated")
SIGN_MARGIN = 1e3  # a sign the verifier compares must be this many float32 roundoffs of its scale from 0


def _linear_tensors(rng, dtype, direction=None, align=0.0):
    w = rng.normal(size=LINEAR_D) / math.sqrt(LINEAR_D) * rng.uniform(0.5, 2.0)
    if direction is not None:
        w = align * direction / np.linalg.norm(direction) * np.linalg.norm(w) + math.sqrt(1 - align ** 2) * w
    b = rng.uniform(-0.5, 0.5)
    return {"weight": store_tensor(w, dtype), "bias": store_tensor(np.array([b]), dtype)}


def _write_linear(path, tensors):
    save_file(tensors, path)
    os.chmod(path, 0o644)


def _linear_row(rng, kind, lin):
    d = LINEAR_D
    if kind == "random":
        return rng.normal(size=d) * rng.uniform(0.5, 8.0)
    if kind == "high_norm":
        x = rng.normal(size=d) * math.exp(rng.uniform(math.log(1e3), math.log(2e4)))
        peak = np.max(np.abs(x))
        return x * (59000.0 / peak) if peak >= 59000.0 else x
    if kind == "tiny":  # f16 subnormal range: the reward is about the bias
        return rng.normal(size=d) * 1e-6
    if kind == "near_zero":  # w . x + b small against its own scale: cancellation
        x = rng.normal(size=d) * rng.uniform(1.0, 8.0)
        s = np.abs(x * lin.weight).sum() + abs(lin.bias)
        target = rng.choice([-1.0, 1.0]) * rng.uniform(2e-3, 2e-2) * s
        w = lin.weight
        return x + (target - (x @ w + lin.bias)) * w / (w @ w)
    if kind == "saturated":  # logit around +-30: a saturated sigmoid
        x = rng.normal(size=d)
        target = rng.choice([-1.0, 1.0]) * rng.uniform(20.0, 32.0)
        w = lin.weight
        return x + (target - (x @ w + lin.bias)) * w / (w @ w)
    raise ValueError(kind)


def _sign_safe(z, s):
    return abs(z) > SIGN_MARGIN * U32 * (LINEAR_D + 2) * s


def _linear_row_ok(kind, xq, lin, reward_sign_needed, verifier, sae_ctx):
    """Why a float32 engine could disagree with the reference on this row (None = safe)."""
    z = float(xq @ lin.weight + lin.bias) if lin is not None else None
    s = float(np.abs(xq * lin.weight).sum() + abs(lin.bias)) if lin is not None else None
    if lin is not None:
        if kind == "near_zero" and not (abs(z) < 0.05 * s):
            return "near_zero row is not near zero after quantisation"
        if kind == "saturated" and not (15.0 < abs(z) < 40.0):
            return "saturated row left the saturated range after quantisation"
        if (reward_sign_needed or kind == "near_zero") and not _sign_safe(z, s):
            return "reward within float32 error of 0"
    if sae_ctx is not None:
        sae, pack = sae_ctx
        if row_problems(sae, pack, xq):
            return "SAE row problem"
        res = ref.score_sequence(sae, pack, xq[None, :], 0)
        r, sc = res["token_rewards"][0], res["token_scales"][0]
        if r != 0 and abs(r) <= 10 * RTOL * sc:
            return "SAE reward sign not robust"
    if verifier is not None:
        v = float(xq @ verifier.probe.weight + verifier.probe.bias)
        vs = float(np.abs(xq * verifier.probe.weight).sum() + abs(verifier.probe.bias))
        if not _sign_safe(v, vs):
            return "verifier logit within float32 error of 0"
    return None


def build_linear(out_dir, seed, saes):
    rng = np.random.default_rng(seed + 7919)
    packs_dir = os.path.join(out_dir, "packs")
    cases = []
    loaded = {}
    for spec in LINEAR_SPECS:
        pdir = os.path.join(packs_dir, spec["name"])
        os.makedirs(pdir, exist_ok=True)
        doc = {"schema": ref.OWN_SCHEMA, "name": spec["name"], "synthetic": True, "model": "synthetic",
               "description": "Parity fixture (linear read-out or dual verifier); random weights.",
               "pooling": spec["pooling"]}
        lin = None
        if spec["kind"] == "sae":
            with open(os.path.join(packs_dir, spec["sae_from"], "pack.json")) as fh:
                donor = json.load(fh)
            doc.update({"sae": f"../{spec['sae_from']}/sae", "encode": "topk",
                        "features": donor["features"]})
        else:
            doc["kind"] = spec["kind"]
            file = "direction.safetensors" if spec["kind"] == "direction" else "probe.safetensors"
            _write_linear(os.path.join(pdir, file), _linear_tensors(rng, spec["dtype"]))
            doc[spec["kind"]] = {"file": file}
            if spec["kind"] == "probe":
                doc["probe"].update({"type": spec["type"], "output": spec["output"]})
            lin = ref.load_linear(os.path.join(pdir, file), spec["output"])
        vspec = spec.get("verifier")
        if vspec:
            if vspec["probe"].endswith(".safetensors"):
                direction = lin.weight if lin is not None else None
                _write_linear(os.path.join(pdir, vspec["probe"]),
                              _linear_tensors(rng, vspec["dtype"], direction, vspec.get("align", 0.0)))
            doc["verifier"] = {k: vspec[k] for k in ("probe", "mode", "threshold", "factor") if k in vspec}
        with open(os.path.join(pdir, "pack.json"), "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        verifier = ref.load_verifier(pdir, doc.get("verifier"))
        sae_ctx = None
        if spec["kind"] == "sae":
            sae_ctx = (saes[spec["sae_from"]], ref.load_pack(pdir))
        loaded[spec["name"]] = (lin, verifier, sae_ctx)
        kinds_for = ["random", "high_norm", "near_zero", "tiny"] + (["saturated"] if spec.get("output") == "probability" else [])
        if sae_ctx is not None:
            kinds_for = ["random", "high_norm", "few_positive"]
        for dtype in ref.INPUT_DTYPES:
            seqs, raws_all = [], []
            for i in range(N_SEQUENCES):
                T = int(rng.integers(T_RANGE[0], T_RANGE[1] + 1))
                score_from = 0 if i == 0 else T - 1 if i == 1 else int(rng.integers(0, T))
                kinds = [kinds_for[t % len(kinds_for)] for t in range(T)]
                rng.shuffle(kinds)
                raws, rows = [], []
                for kind in kinds:
                    for _attempt in range(500):
                        if sae_ctx is not None:
                            sae = sae_ctx[0]
                            x = {"random": random_row, "high_norm": high_norm_row,
                                 "few_positive": few_positive_row}[kind](rng, sae)
                        else:
                            x = _linear_row(rng, kind, lin)
                        if dtype == "f16" and np.max(np.abs(x)) >= F16_LIMIT:
                            continue
                        raw, xq = quantize_input(x[None, :], dtype)
                        if _linear_row_ok(kind, xq[0], lin, verifier is not None, verifier, sae_ctx) is None:
                            break
                    else:
                        raise FixtureError(f"could not build a safe {kind} row for {spec['name']} / {dtype}")
                    raws.append(raw)
                    rows.append(xq[0])
                X = np.stack(rows)
                rel = f"inputs/{spec['name']}.{dtype}.{i}.bin"
                with open(os.path.join(out_dir, rel), "wb") as fh:
                    fh.write(b"".join(raws))
                seqs.append({"file": rel, "num_tokens": T, "score_from": score_from, "row_kinds": kinds, "X": X})
            cases.append({"pack": spec["name"], "dtype": dtype, "d_model": LINEAR_D,
                          **_expected(seqs, lin, verifier, sae_ctx, doc["pooling"])})
    doc = {"seed": seed, "tolerance": {"rtol": RTOL, "scale_floor": SCALE_FLOOR,
                                       "rule": "as cases.json; verifier_disagreement and verifier_factor exact"},
           "cases": cases}
    with open(os.path.join(out_dir, "linear_cases.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    return cases


def _expected(seqs, lin, verifier, sae_ctx, pooling):
    rs, ss, vs = [], [], []
    for s in seqs:
        X, sf = s["X"], s["score_from"]
        if sae_ctx is not None:
            res = ref.score_sequence(sae_ctx[0], sae_ctx[1], X, sf)
            r, sc = np.array(res["token_rewards"]), np.array(res["token_scales"])
        else:
            r, sc = ref.linear_scores(lin, X)
            r, sc = r.copy(), sc.copy()
            r[:sf] = 0.0
            sc[:sf] = 0.0
        rs.append(r)
        ss.append(sc)
        vs.append(ref.linear_logits(verifier.probe, X) if verifier else np.zeros(len(X)))
    out, factor = ref.score_request(rs, ss, vs, [s["score_from"] for s in seqs], verifier,
                                    pooling["method"], pooling.get("k"))
    sequences = []
    for s, o in zip(seqs, out):
        sequences.append({"file": s["file"], "num_tokens": s["num_tokens"], "score_from": s["score_from"],
                          "row_kinds": s["row_kinds"], "flags": [], **o})
    return {"sequences": sequences, "verifier_factor": factor, "has_verifier": verifier is not None}


def verify_linear(out_dir, cases, saes):
    """Re-read every linear fixture from disk and recompute it."""
    with open(os.path.join(out_dir, "linear_cases.json")) as fh:
        doc = json.load(fh)
    check(len(doc["cases"]) == len(LINEAR_SPECS) * len(ref.INPUT_DTYPES), "linear: wrong number of cases")
    factors = {}
    for case in doc["cases"]:
        spec = [s for s in LINEAR_SPECS if s["name"] == case["pack"]][0]
        pdir = os.path.join(out_dir, "packs", case["pack"])
        with open(os.path.join(pdir, "pack.json")) as fh:
            pj = json.load(fh)
        lin = None
        if spec["kind"] != "sae":
            lin = ref.load_linear(os.path.join(pdir, pj[spec["kind"]]["file"]), spec.get("output", "logit"))
            check(lin.dtype == spec["dtype"], f"{case['pack']}: weight dtype {lin.dtype}")
        verifier = ref.load_verifier(pdir, pj.get("verifier"))
        sae_ctx = (saes[spec["sae_from"]], ref.load_pack(pdir)) if spec["kind"] == "sae" else None
        seqs = []
        for s in case["sequences"]:
            with open(os.path.join(out_dir, s["file"]), "rb") as fh:
                X = ref.decode_input(fh.read(), case["dtype"], LINEAR_D)
            check(X.shape[0] == s["num_tokens"], f"{s['file']}: rows")
            seqs.append({**s, "X": X})
        again = _expected(seqs, lin, verifier, sae_ctx, pj["pooling"])
        for a, b in zip(again["sequences"], case["sequences"]):
            for key in ("token_rewards", "reward", "verifier_disagreement"):
                check(a[key] == b[key], f"{b['file']}: {key} differs on recompute")
        check(again["verifier_factor"] == case["verifier_factor"], f"{case['pack']}: factor on recompute")
        factors.setdefault(case["pack"], set()).add(case["verifier_factor"])
        if verifier is not None and verifier.mode == "token_gate":
            rates = [s["verifier_disagreement"] for s in case["sequences"]]
            check(any(0 < r < 1 for r in rates), f"{case['pack']}/{case['dtype']}: no partial disagreement")
    check(factors["verifier-downweight-on"] == {0.25}, "downweight-on never downweights")
    check(factors["verifier-downweight-off"] == {1.0}, "downweight-off downweights")
    kinds = [k for c in doc["cases"] for s in c["sequences"] for k in s["row_kinds"]]
    for k in LINEAR_KINDS:
        check(k in kinds, f"linear: no {k} rows")
    return len(doc["cases"])


MARKER = ".mechreward-parity-fixtures"


def prepare_out(out_dir):
    """Create out_dir, or clear a previous fixture tree in it (never an unrelated folder)."""
    if os.path.exists(out_dir):
        entries = set(os.listdir(out_dir))
        if entries and MARKER not in entries and "cases.json" not in entries:
            raise FixtureError(f"{out_dir} is not empty and holds no parity fixtures; "
                               "refusing to overwrite it")
        for sub in ("packs", "inputs"):
            p = os.path.join(out_dir, sub)
            if os.path.isdir(p):
                shutil.rmtree(p)
        for name in ("cases.json", "linear_cases.json"):
            if name in entries:
                os.remove(os.path.join(out_dir, name))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, MARKER), "w") as fh:
        fh.write("generated by scripts/parity/make_parity_fixtures.py; safe to delete\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        prepare_out(args.out)
        saes, stored, expected, stats, hashes = build(args.out, args.seed)
        counts = verify(args.out, saes, stored, expected, hashes)
        linear_cases = build_linear(args.out, args.seed, saes)
        n_linear = verify_linear(args.out, linear_cases, saes)
    except FixtureError as exc:
        print(f"make_parity_fixtures: FAILED: {exc}", file=sys.stderr)
        return 1
    n_cases = len(ALL_PACK_SPECS) * len(ref.INPUT_DTYPES)
    rejected = {k[len("rejected_"):]: v for k, v in stats.items() if k.startswith("rejected_")}
    print(f"parity fixtures -> {args.out} (seed {args.seed}, {time.time() - t0:.1f}s)")
    print(f"  packs: {len(ALL_PACK_SPECS)} ({', '.join(s['name'] for s in ALL_PACK_SPECS)})")
    print(f"  cases: {n_cases}, sequences: {stats['sequences']}, rows: "
          f"{sum(counts.values())}")
    print(f"  rows by kind: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}")
    print(f"  canary flags fired: {stats['flags']}; rows regenerated by safety checks: "
          f"{dict(sorted(rejected.items())) or 0}")
    print(f"  linear / verifier cases: {n_linear} (linear_cases.json)")
    print("  verified: every file re-read and recomputed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Float64 reference for the `topk_int8` encode mode, and its fixtures.

The mode replaces h = x' @ W_enc by onnxruntime's MatMulNBits with 8-bit weights and accuracy_level 4. Per SAE
feature n and block b of BLOCK input dimensions (the last block zero-padded):
  weights:  sw[b, n] = float32(max_i |W[bB+i, n]| / 127),  qw = clip(round(W / sw), -127, 127)
  inputs:   sa[t, b] = float32(max_i |x'[t, bB+i]| / 127),  qa = round(x' / sa)   (per token, per block)
  h[t, n] = sum_b sa[t, b] * sw[b, n] * sum_i qa[t, b, i] * qw[b, i, n]  + b_enc[n]   (then the decoder-norm
  rescale, TopK and the pack reward exactly as in reference.py). round() is numpy's (ties to even).
This file shares nothing with the TypeScript engine (src/engine/quantize.ts); it only reuses reference.py's
decoding, normalisation and pooling.

Rounding x'/sa is discontinuous: where x'/sa lies within WINDOW of a .5 boundary, float32 arithmetic in the
engine may round the other way. For every token the script bounds what such flips can change (per feature)
and marks the token `ambiguous` when a flip could move a pack feature across the TopK boundary; elsewhere the
bound widens the per-token tolerance. The test compares every non-ambiguous token and reports the count.

Writes OUT/packs/<name>/pack.json, OUT/inputs/<name>.<i>.f32 and OUT/cases.json, plus OUT/agreement.json:
how often int8 TopK agrees with the exact float64 TopK on the real pack's whole held-out file.

  python3 scripts/parity/int8_reference.py --out test/fixtures/int8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
import safetensors.numpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

BLOCK = 128
WINDOW = 1e-4  # |x'/sa - (m + 0.5)| below this counts as a possible rounding flip
RTOL = 1e-4
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def quantize_weights(W: np.ndarray):
    """W [d_model, d_sae] -> (qw [nb, BLOCK, d_sae], sw [nb, d_sae]) float64 arrays."""
    d_model, d_sae = W.shape
    nb = -(-d_model // BLOCK)
    Wp = np.zeros((nb * BLOCK, d_sae))
    Wp[:d_model] = W
    Wp = Wp.reshape(nb, BLOCK, d_sae)
    sw = (np.abs(Wp).max(axis=1) / 127).astype(np.float32).astype(np.float64)
    safe = np.where(sw == 0, 1.0, sw)
    qw = np.clip(np.round(Wp / safe[:, None, :]), -127, 127)
    return qw, sw


def quantize_inputs(Xs: np.ndarray):
    """x' [T, d_model] -> (qa [T, nb, BLOCK], sa [T, nb], near [T, nb, BLOCK] possible-flip mask)."""
    T, d_model = Xs.shape
    nb = -(-d_model // BLOCK)
    Xp = np.zeros((T, nb * BLOCK))
    Xp[:, :d_model] = Xs
    Xp = Xp.reshape(T, nb, BLOCK)
    sa = (np.abs(Xp).max(axis=2) / 127).astype(np.float32).astype(np.float64)
    u = Xp / np.where(sa == 0, 1.0, sa)[:, :, None]
    qa = np.round(u)
    near = np.abs(np.abs(u - np.floor(u)) - 0.5) < WINDOW
    return qa, sa, near


class Int8Sae:
    def __init__(self, sae: ref.Sae):
        self.sae = sae
        self.qw, self.sw = quantize_weights(sae.W_enc)

    def pre_activations(self, X: np.ndarray, with_flip: bool = True):
        """h [T, d_sae] under int8, and flip [T, d_sae]: the most a rounding flip could change h."""
        sae = self.sae
        Xs = ref.sae_input(sae, X)
        qa, sa, near = quantize_inputs(Xs)
        h = np.zeros((X.shape[0], sae.d_sae))
        flip = np.zeros_like(h) if with_flip else None
        for b in range(self.qw.shape[0]):
            h += (qa[:, b, :] @ self.qw[b]) * sa[:, b, None] * self.sw[b][None, :]
            if with_flip:
                flip += (near[:, b, :] * 1.0) @ np.abs(self.qw[b]) * sa[:, b, None] * self.sw[b][None, :]
        h += sae.b_enc
        if with_flip:
            # float32 accumulation error of the engine (generous), plus the flips
            flip += 4e-7 * (np.abs(Xs) @ np.abs(sae.W_enc) + np.abs(sae.b_enc))
        if sae.rescale:
            h = h * sae.decoder_norms
            flip = flip * sae.decoder_norms if with_flip else None
        return h, flip


def topk_acts(sae: ref.Sae, H: np.ndarray, ids: np.ndarray):
    """Activations of `ids` under exact TopK of H (ties to the lower index): [T, len(ids)]."""
    return ref.encode_exact(sae, H)[:, ids]


def score_tokens(q: Int8Sae, pack: ref.Pack, X: np.ndarray):
    sae = q.sae
    ids = pack.feature_ids
    H, flip = q.pre_activations(X)
    A = topk_acts(sae, H, ids)
    A = np.where(A > pack.thresholds, A, 0.0)
    contrib = A * pack.weights
    reward = contrib.sum(axis=1)
    scale = np.abs(contrib).sum(axis=1)
    tol = RTOL * np.maximum(scale, 1e-3) + (np.abs(pack.weights)[None, :] * flip[:, ids]).sum(axis=1)
    ambiguous = np.zeros(X.shape[0], bool)
    for t in range(X.shape[0]):
        order = np.argsort(-H[t], kind="stable")
        kth, k1th = order[sae.k - 1], order[sae.k]
        selected = np.zeros(sae.d_sae, bool)
        selected[order[: sae.k]] = True
        for j in ids:
            if H[t, j] <= flip[t, j]:
                continue  # not positive either way: contributes 0 whatever TopK decides
            other = k1th if selected[j] else kth
            if abs(H[t, j] - H[t, other]) <= 2 * (flip[t, j] + flip[t, other]):
                ambiguous[t] = True
        for i, f in enumerate(pack.features):
            if f.threshold > 0 and selected[f.id] and abs(H[t, f.id] - f.threshold) <= 2 * flip[t, f.id]:
                ambiguous[t] = True
    return reward, tol, ambiguous


def exact_rewards(sae: ref.Sae, pack: ref.Pack, X: np.ndarray):
    """The float64 reward of the exact `topk` mode, for comparison."""
    A = topk_acts(sae, ref.pre_activations(sae, X), pack.feature_ids)
    A = np.where(A > pack.thresholds, A, 0.0)
    return (A * pack.weights).sum(axis=1)


# ------------------------------------------------------------------ fixtures
def write_pack(out, name, source_pack_dir, sae_dir, description):
    src = json.load(open(os.path.join(source_pack_dir, "pack.json")))
    pack = ref.parse_pack(src, source_pack_dir)
    pdir = os.path.join(out, "packs", name)
    os.makedirs(pdir)
    data = {
        "schema": "mechreward.pack/v1",
        "name": name,
        "description": description,
        "sae": os.path.relpath(sae_dir, pdir),
        "encode": "topk_int8",
        "pooling": {"method": "mean"},
        "features": [{"id": int(f.id), "weight": float(f.weight), "threshold": float(f.threshold)} for f in pack.features],
    }
    json.dump(data, open(os.path.join(pdir, "pack.json"), "w"), indent=2)
    return ref.load_pack(pdir)


def nasty_rows(rng, base: np.ndarray):
    """High-norm rows, rows whose block scale is set by one outlier, and tiny rows."""
    rows = []
    for x in base[: min(6, len(base))]:
        rows.append(x * rng.uniform(20, 60))
        y = x.copy()
        y[rng.integers(len(y))] = np.abs(x).max() * rng.uniform(30, 100) * rng.choice([-1, 1])
        rows.append(y)
        rows.append(x * 1e-3)
    return np.array(rows)


def build(out: str, seed: int):
    rng = np.random.default_rng(seed)
    cases, sources = [], []
    # 1. the real shipped pack on real held-out residuals of SmolLM2-135M
    real_dir = os.path.join(REPO, "packs", "smollm2-arith")
    real_pack = write_pack(out, "arith-int8", real_dir, os.path.join(real_dir, "sae"),
                           "topk_int8 fixture: the shipped smollm2-arith features on its real SAE")
    held = safetensors.numpy.load_file(os.path.join(real_dir, "heldout", "heldout.safetensors"))
    acts = held["activations"].astype(np.float64)
    with open(os.path.join(real_dir, "heldout", "heldout.safetensors"), "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        responses = json.loads(json.loads(fh.read(n))["__metadata__"]["responses"])
    seqs = []
    for r in responses[:24]:
        X = acts[r["offset"] : r["offset"] + r["num_tokens"]]
        seqs.append((X, r["score_from"], "real"))
    seqs.append((nasty_rows(rng, acts[responses[0]["offset"] + responses[0]["score_from"]:][:6]), 0, "nasty"))
    sources.append(("arith-int8", real_pack, seqs))
    # 2. synthetic parity SAEs: SAELens with decoder-norm rescale, and sparsify's transposed encoder
    parity = os.path.join(out, "..", "parity", "packs")
    for name, src in (("saelens-rescale-int8", "topk-saelens"), ("sparsify-int8", "topk-sparsify")):
        pack = write_pack(out, name, os.path.join(parity, src), os.path.join(parity, src, "sae"),
                          f"topk_int8 fixture on the parity SAE of {src}")
        sae = ref.load_sae(os.path.join(parity, src, "sae"))
        seqs = []
        for i in range(6):
            X = rng.normal(size=(12, sae.d_model)) * rng.uniform(0.5, 8.0)
            seqs.append((X, int(rng.integers(0, 6)), "random"))
        seqs.append((nasty_rows(rng, rng.normal(size=(6, sae.d_model)) * 3.0), 0, "nasty"))
        sources.append((name, pack, seqs))
    os.makedirs(os.path.join(out, "inputs"))
    for name, pack, seqs in sources:
        q = Int8Sae(ref.load_sae(pack.sae_dir))
        out_seqs = []
        for i, (X, score_from, kind) in enumerate(seqs):
            X32 = X.astype(np.float32)
            fname = f"inputs/{name}.{i}.f32"
            X32.tofile(os.path.join(out, fname))
            X64 = X32.astype(np.float64)
            reward, tol, amb = score_tokens(q, pack, X64)
            exact = exact_rewards(q.sae, pack, X64)
            for arr in (reward, tol, exact):
                arr[:score_from] = 0.0
            amb[:score_from] = False
            out_seqs.append({
                "file": fname, "num_tokens": int(X.shape[0]), "score_from": score_from, "kind": kind,
                "token_rewards": reward.tolist(), "token_tolerance": tol.tolist(),
                "ambiguous": amb.tolist(), "exact_token_rewards": exact.tolist(),
            })
        cases.append({"pack": name, "d_model": q.sae.d_model, "sequences": out_seqs})
    json.dump({"block": BLOCK, "cases": cases}, open(os.path.join(out, "cases.json"), "w"))
    return real_pack, acts, responses


def agreement(pack: ref.Pack, acts: np.ndarray, responses):
    """int8 vs exact float64 TopK on every held-out token of the real pack."""
    sae = ref.load_sae(pack.sae_dir)
    q = Int8Sae(sae)
    rows = np.concatenate([np.arange(r["offset"] + r["score_from"], r["offset"] + r["num_tokens"]) for r in responses])
    same_set, jaccard, pack_same, rel_err = 0, [], 0, []
    ids = pack.feature_ids
    for start in range(0, len(rows), 2048):
        X = acts[rows[start : start + 2048]]
        He = ref.pre_activations(sae, X)
        Hq, _ = q.pre_activations(X, with_flip=False)
        # Set membership only (order inside the top k does not matter), so argpartition is enough.
        Me = np.zeros(He.shape, bool)
        Mq = np.zeros(Hq.shape, bool)
        np.put_along_axis(Me, np.argpartition(-He, sae.k - 1, axis=1)[:, : sae.k], True, axis=1)
        np.put_along_axis(Mq, np.argpartition(-Hq, sae.k - 1, axis=1)[:, : sae.k], True, axis=1)
        inter = np.sum(Me & Mq, axis=1)
        jaccard.extend((inter / (2 * sae.k - inter)).tolist())
        same_set += int(np.sum(inter == sae.k))
        Ae = np.where(Me, np.maximum(He, 0.0), 0.0)[:, ids]
        Aq = np.where(Mq, np.maximum(Hq, 0.0), 0.0)[:, ids]
        pack_same += int(np.sum(np.all((Ae > 0) == (Aq > 0), axis=1)))
        re, rq = (Ae * pack.weights).sum(1), (Aq * pack.weights).sum(1)
        rel_err.extend((np.abs(re - rq) / np.maximum(np.abs(Ae * pack.weights).sum(1), 1e-3)).tolist())
    n = len(rows)
    rel_err = np.array(rel_err)
    return {
        "pack": "smollm2-arith (SmolLM2-135M layer 15, TopK 576x4608 k=32), held-out response tokens",
        "tokens": n, "block": BLOCK,
        "topk_set_identical": same_set / n, "topk_jaccard_mean": float(np.mean(jaccard)),
        "pack_active_set_identical": pack_same / n,
        "token_reward_rel_error_median": float(np.median(rel_err)),
        "token_reward_rel_error_p99": float(np.quantile(rel_err, 0.99)),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    real_pack, acts, responses = build(out, args.seed)
    stats = agreement(real_pack, acts, responses)
    json.dump(stats, open(os.path.join(out, "agreement.json"), "w"), indent=2)
    print(f"int8 fixtures in {out}; agreement on {stats['tokens']} real tokens: "
          f"TopK set identical {stats['topk_set_identical']:.3f}, Jaccard {stats['topk_jaccard_mean']:.4f}")


if __name__ == "__main__":
    main()

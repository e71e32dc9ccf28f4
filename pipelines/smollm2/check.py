"""Sanity check only (the TS gate is the official G1 number): float64 numpy score of the pack on the held-out
file and its Spearman rho with correctness. It reads only the files the gate reads, with its own encode.
"""

from __future__ import annotations

import json
import os

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def _ranks(v: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their average rank."""
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v), dtype=np.float64)
    sv = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a, b) -> float:
    ra, rb = _ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64))
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def pack_scores(pack_dir: str) -> tuple[np.ndarray, list[dict]]:
    with open(os.path.join(pack_dir, "pack.json")) as f:
        pack = json.load(f)
    with open(os.path.join(pack_dir, pack["sae"], "cfg.json")) as f:
        k = json.load(f)["k"]
    w = {n: t.astype(np.float64) for n, t in load_file(os.path.join(pack_dir, pack["sae"], "sae_weights.safetensors")).items()}
    path = os.path.join(pack_dir, "heldout", "heldout.safetensors")
    with safe_open(path, framework="numpy") as f:
        responses = json.loads(f.metadata()["responses"])
        acts = f.get_tensor("activations").astype(np.float64)
    ids = np.array([f["id"] for f in pack["features"]])
    weights = np.array([f["weight"] for f in pack["features"]], dtype=np.float64)
    scores = []
    for r in responses:
        x = acts[r["offset"] + r["score_from"] : r["offset"] + r["num_tokens"]]
        h = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        kth = np.partition(h, -k, axis=1)[:, -k][:, None]  # k-th largest pre-activation of each token
        f = np.where(h >= kth, np.maximum(h, 0), 0.0)
        scores.append(float((f[:, ids] @ weights).mean()))
    return np.array(scores), responses


def run(pack_dir: str) -> dict:
    scores, responses = pack_scores(pack_dir)
    correct = np.array([r["correct"] for r in responses], dtype=np.float64)
    out = {
        "note": "float64 numpy re-computation for sanity; the official G1 figure comes from `mechreward gate g1`",
        "n": len(responses),
        "n_correct": int(correct.sum()),
        "spearman_rho": round(spearman(scores, correct), 4),
        "mean_score_correct": round(float(scores[correct == 1].mean()), 4),
        "mean_score_wrong": round(float(scores[correct == 0].mean()), 4),
    }
    # Within each arithmetic kind: how much of the signal is more than "which kind of question is this".
    kinds = sorted({r.get("kind", "") for r in responses})
    within = {}
    for kind in kinds:
        m = np.array([r.get("kind", "") == kind for r in responses])
        if 0 < correct[m].sum() < m.sum():
            within[kind] = {"n": int(m.sum()), "n_correct": int(correct[m].sum()),
                            "rho": round(spearman(scores[m], correct[m]), 4)}
    out["within_kind"] = within
    return out

"""Feature selection on discovery responses only: effect size of mean-pooled response activations.

For every SAE feature: a response's value is its mean activation over the response's tokens (prompt rows
excluded, exact TopK encode with the float16-rounded weights widened to float32, as the server computes);
effect_size = (mean over correct - mean over wrong) / pooled std. The top positive features get weight +1,
the top negative -1 (domain.md section 5).
"""

from __future__ import annotations

import torch

import sae


def pooled_activations(acts: list[torch.Tensor], score_from: list[int], w: dict[str, torch.Tensor],
                       k: int) -> torch.Tensor:
    """[n_responses, d_sae] float64: each response's mean feature activation over its response tokens."""
    d_sae = w["W_enc"].shape[1]
    out = torch.zeros(len(acts), d_sae, dtype=torch.float64)
    for r, (a, s) in enumerate(zip(acts, score_from)):
        v, j = sae.encode_topk(a[s:].to(torch.float32), w, k)
        out[r].index_add_(0, j.flatten(), v.flatten().to(torch.float64))
        out[r] /= a.shape[0] - s
    return out


def effect_sizes(pooled: torch.Tensor, correct: list[int]) -> dict[str, torch.Tensor]:
    y = torch.tensor(correct, dtype=torch.bool)
    pos, neg = pooled[y], pooled[~y]
    n1, n0 = pos.shape[0], neg.shape[0]
    var = ((n1 - 1) * pos.var(0, unbiased=True) + (n0 - 1) * neg.var(0, unbiased=True)) / (n1 + n0 - 2)
    std = var.sqrt()
    diff = pos.mean(0) - neg.mean(0)
    effect = torch.where(std > 0, diff / std.clamp_min(1e-300), torch.zeros_like(diff))
    return {"effect": effect, "mean_correct": pos.mean(0), "mean_wrong": neg.mean(0), "pooled_std": std}


def select(stats: dict[str, torch.Tensor], per_sign: int) -> list[dict]:
    """Top `per_sign` positive effect sizes (weight +1) then top `per_sign` negative (weight -1)."""
    effect = stats["effect"]
    order = torch.argsort(effect, descending=True, stable=True)
    helpful = [int(i) for i in order[:per_sign] if effect[i] > 0]
    harmful = [int(i) for i in order.flip(0)[:per_sign] if effect[i] < 0]
    chosen = []
    for rank, i in enumerate(helpful, 1):
        chosen.append({"id": i, "weight": 1.0, "name": f"helpful_{rank}"})
    for rank, i in enumerate(harmful, 1):
        chosen.append({"id": i, "weight": -1.0, "name": f"harmful_{rank}"})
    for f in chosen:
        i = f["id"]
        f["effect_size"] = float(effect[i])
        f["mean_correct"] = float(stats["mean_correct"][i])
        f["mean_wrong"] = float(stats["mean_wrong"][i])
    return chosen

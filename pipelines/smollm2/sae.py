"""A TopK sparse autoencoder in plain torch: train, encode exactly, save and load in SAELens layout.

Encode (domain.md section 3): h = (x - b_dec) @ W_enc + b_enc; keep the k largest h_i per token; f_i = max(h_i, 0).
Training runs on activations divided by one scalar s (so Adam sees unit-scale inputs); the scale is folded
back into b_enc and b_dec when saving, so the saved SAE reads raw residuals with normalize_activations "none"
(its feature activations are s times the training-time ones; decoder rows stay unit norm).
"""

from __future__ import annotations

import json
import os
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import config

NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")


def encode_topk(x: torch.Tensor, w: dict[str, torch.Tensor], k: int, chunk: int = 4096):
    """Exact TopK encode of float32 rows x: (values [N, k] after ReLU, indices [N, k])."""
    vals, idxs = [], []
    for i in range(0, x.shape[0], chunk):
        h = (x[i : i + chunk] - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        v, j = h.topk(k, dim=1)
        vals.append(v.clamp_min(0))
        idxs.append(j)
    return torch.cat(vals), torch.cat(idxs)


def decode(vals: torch.Tensor, idx: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    # embedding_bag sums the k selected decoder rows weighted by their activations, without a dense [N, d_sae].
    return F.embedding_bag(idx, w["W_dec"], per_sample_weights=vals, mode="sum") + w["b_dec"]


def fvu(x: torch.Tensor, w: dict[str, torch.Tensor], k: int) -> float:
    """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2."""
    v, j = encode_topk(x, w, k)
    err = (decode(v, j, w) - x).pow(2).sum()
    return float(err / (x - x.mean(0)).pow(2).sum())


def fired_features(x: torch.Tensor, w: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """Boolean [d_sae]: features with a positive activation on at least one row of x."""
    v, j = encode_topk(x, w, k)
    fired = torch.zeros(w["W_enc"].shape[1], dtype=torch.bool)
    fired[j[v > 0]] = True
    return fired


def train(x: torch.Tensor, seed: int, log_every: int = 200) -> tuple[dict[str, torch.Tensor], dict]:
    """Train on float32 rows x [N, d]; return raw-unit float32 weights and training stats."""
    n, d = x.shape
    m, k = config.SAE_D, config.SAE_K
    g = torch.Generator().manual_seed(seed)
    scale = float(x.pow(2).sum(1).mean().div(d).sqrt())  # s: unit mean square per dimension after division

    w_dec = torch.randn(m, d, generator=g)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    p = {
        "W_enc": w_dec.t().clone(),  # tied init: each latent starts reading its own decoder direction
        "b_enc": torch.zeros(m),
        "W_dec": w_dec,
        "b_dec": (x.mean(0) / scale),
    }
    for t in p.values():
        t.requires_grad_(True)
    opt = torch.optim.Adam(p.values(), lr=config.SAE_LR)
    since_fired = torch.zeros(m, dtype=torch.long)
    steps_per_epoch = n // config.SAE_BATCH
    total_steps = steps_per_epoch * config.SAE_EPOCHS
    start, step = time.time(), 0
    for _epoch in range(config.SAE_EPOCHS):
        perm = torch.randperm(n, generator=g)
        for b in range(steps_per_epoch):
            xb = x[perm[b * config.SAE_BATCH : (b + 1) * config.SAE_BATCH]] / scale
            h = (xb - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
            v, j = h.topk(k, dim=1)
            v = v.clamp_min(0)
            x_hat = decode(v, j, p)
            var = (xb - xb.mean(0)).pow(2).sum(1).mean()
            loss = (x_hat - xb).pow(2).sum(1).mean() / var

            # AuxK: the dead latents' top activations reconstruct what the live ones missed, so they get gradient.
            dead = since_fired > config.SAE_DEAD_AFTER_TOKENS
            n_dead = int(dead.sum())
            if n_dead:
                err = (xb - x_hat).detach()
                va, ja = h.masked_fill(~dead, float("-inf")).topk(min(config.SAE_AUXK, n_dead), dim=1)
                e_hat = F.embedding_bag(ja, p["W_dec"], per_sample_weights=va.clamp_min(0), mode="sum")
                aux = (e_hat - err).pow(2).sum(1).mean() / (err - err.mean(0)).pow(2).sum(1).mean()
                loss = loss + config.SAE_AUX_COEF * aux

            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                # Keep decoder rows unit norm: drop the gradient along each row, then renormalise after the step.
                wd, gd = p["W_dec"], p["W_dec"].grad
                gd -= (gd * wd).sum(1, keepdim=True) * wd
            opt.step()
            with torch.no_grad():
                p["W_dec"] /= p["W_dec"].norm(dim=1, keepdim=True)
                fired = torch.zeros(m, dtype=torch.bool)
                fired[j[v > 0]] = True
                since_fired += xb.shape[0]
                since_fired[fired] = 0
            step += 1
            if log_every and (step % log_every == 0 or step == total_steps):
                print(f"  [sae] step {step}/{total_steps} loss {loss.item():.4f} dead {n_dead} "
                      f"{time.time() - start:.0f}s", flush=True)
    with torch.no_grad():
        raw = {
            "W_enc": p["W_enc"].detach().clone(),
            "b_enc": p["b_enc"].detach() * scale,
            "W_dec": p["W_dec"].detach().clone(),
            "b_dec": p["b_dec"].detach() * scale,
        }
    return raw, {"scale": scale, "steps": total_steps, "batch": config.SAE_BATCH, "epochs": config.SAE_EPOCHS,
                 "train_tokens": n, "token_passes": total_steps * config.SAE_BATCH}


def rounded(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights as the server computes with them: stored float16, widened to float32."""
    return {name: w[name].to(torch.float16).to(torch.float32) for name in NAMES}


def save_saelens(w: dict[str, torch.Tensor], folder: str, layer: int) -> None:
    os.makedirs(folder, exist_ok=True)
    cfg = {
        "d_in": int(w["W_enc"].shape[0]),
        "d_sae": int(w["W_enc"].shape[1]),
        "architecture": "topk",
        "k": config.SAE_K,
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "rescale_acts_by_decoder_norm": False,
        "dtype": "float16",
        "metadata": {"hook_name": f"blocks.{layer}.hook_resid_post", "model_name": config.MODEL_NAME},
    }
    with open(os.path.join(folder, "cfg.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    save_file({name: w[name].to(torch.float16).contiguous() for name in NAMES},
              os.path.join(folder, "sae_weights.safetensors"))


def load_saelens(folder: str) -> dict[str, torch.Tensor]:
    """Saved weights widened to float32 (what the server computes with)."""
    t = load_file(os.path.join(folder, "sae_weights.safetensors"))
    return {name: t[name].to(torch.float32) for name in NAMES}

"""Write the feature pack: pack.json (mechreward.pack/v1, no validation block: the TS gate writes it) and the
held-out activations as one safetensors file for the gate.

heldout.safetensors: tensor `activations` [total_rows, d_model] float16, the responses' rows concatenated in
order; __metadata__ `responses` (JSON list of {id, offset, num_tokens, score_from, correct, ...}), `model`,
`layer`, `task`. Each response keeps only its last HELDOUT_PROMPT_ROWS prompt rows (prompt rows are never
scored, and the residuals were computed on the full sequence before trimming, so scores are unchanged).
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np
from safetensors.numpy import save_file

import config


def write_pack_json(folder: str, features: list[dict], n: int, n_correct: int, task_description: str,
                    sae_summary: str) -> None:
    pack = {
        "schema": "mechreward.pack/v1",
        "name": "smollm2-arith",
        "description": (
            f"Rewards residual features of {config.MODEL_NAME} (layer {config.LAYER} resid_post, TopK SAE "
            f"{config.D_MODEL}->{config.SAE_D}, k={config.SAE_K}, {sae_summary}) that separate correct from "
            f"wrong answers on small integer arithmetic. Task: {task_description} Features: the {config.TOP_PER_SIGN} "
            "largest positive (+1) and negative (-1) effect sizes (mean_correct - mean_wrong)/pooled_std of "
            f"mean-pooled response activations on {n} discovery responses ({n_correct} correct), exact TopK "
            "encode with the float16 weights. Held-out responses (heldout/) were never used for any choice; "
            "`mechreward gate g1` scores them and adds the validation block. Built by pipelines/smollm2/run.py."
        ),
        "model": config.MODEL_NAME,
        "layer": config.LAYER,
        "sae": "sae",
        "encode": "topk",
        "pooling": {"method": "mean"},
        "features": [{"id": f["id"], "weight": f["weight"], "name": f["name"]} for f in features],
        "discovery": {
            "n": n,
            "n_correct": n_correct,
            "method": "effect size (mean_correct - mean_wrong)/pooled_std on mean-pooled response activations",
            "effect_sizes": {str(f["id"]): round(f["effect_size"], 6) for f in features},
        },
    }
    with open(os.path.join(folder, "pack.json"), "w") as f:
        json.dump(pack, f, indent=2)
        f.write("\n")


def write_heldout(path: str, acts: list, score_from: list[int], records: list[dict],
                  task_description: str) -> dict:
    """records: per response {id, correct, ...extra}; acts: float16 torch [T, d] per response."""
    rows, meta, offset = [], [], 0
    for a, s, rec in zip(acts, score_from, records):
        keep_from = max(0, s - config.HELDOUT_PROMPT_ROWS)
        block = a[keep_from:].numpy().astype(np.float16)
        rows.append(block)
        meta.append({"id": rec["id"], "offset": offset, "num_tokens": int(block.shape[0]),
                     "score_from": int(s - keep_from), "correct": int(rec["correct"]),
                     **{k: v for k, v in rec.items() if k not in ("id", "correct")}})
        offset += block.shape[0]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    metadata = {
        "responses": json.dumps(meta, separators=(",", ":")),
        "model": config.MODEL_NAME,
        "layer": str(config.LAYER),
        "task": task_description,
        "hook": f"blocks.{config.LAYER}.hook_resid_post (hidden_states[{config.LAYER + 1}])",
        "prompt_rows": f"last {config.HELDOUT_PROMPT_ROWS} prompt rows kept per response; score_from is relative "
                       "to the response's own first row (offset)",
    }
    save_file({"activations": np.concatenate(rows, axis=0)}, path, metadata=metadata)
    _canonical_header(path)
    return {"rows": offset, "bytes": os.path.getsize(path), "n": len(meta)}


def _canonical_header(path: str) -> None:
    """Rewrite the safetensors JSON header with sorted keys, in place.

    The library writes __metadata__ keys in hash order, so two identical builds differ in bytes; sorted, a
    rerun reproduces the committed file exactly. Same keys and values, so the header keeps its length
    (padded with spaces, as the format allows) and the tensor offsets stay valid.
    """
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        text = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        if len(text) > n:
            raise RuntimeError("canonical safetensors header longer than the original")
        f.seek(8)
        f.write(text + b" " * (n - len(text)))

"""Residual stream after decoder layer L (resid_post = hidden_states[L + 1]) for whole token sequences.

Each sequence (prompt + response) is re-forwarded in full with use_cache=False through
mechreward_client.capture_residual, right-padded so positions match an unpadded forward. Results are rounded
to float16: the held-out file stores float16, and discovery must see the same numbers the gate will.
"""

from __future__ import annotations

import time

import torch
from mechreward_client.capture import capture_residual, pad_right


def capture(model, tokenizer, sequences: list[list[int]], layer: int, batch_size: int,
            label: str = "capture") -> list[torch.Tensor]:
    """One float16 [len(seq), d_model] tensor per sequence, in input order."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
    out: list[torch.Tensor | None] = [None] * len(sequences)
    start = time.time()
    for b in range(0, len(order), batch_size):
        batch = order[b : b + batch_size]
        ids, mask = pad_right([sequences[i] for i in batch], pad)
        acts = capture_residual(model, ids, mask, layer)
        for i, a in zip(batch, acts):
            out[i] = a.to(torch.float16)
    total = sum(len(s) for s in sequences)
    print(f"  [{label}] {len(sequences)} sequences, {total} tokens, {time.time() - start:.0f}s", flush=True)
    return out  # type: ignore[return-value]

"""Batched greedy generation with left padding; returns each prompt's response ids (up to and including EOS).

Prompts are batched in order of length so that a batch pads little; results come back in input order. The
same prompts and batch size give the same ids on every run (greedy, fixed thread count).
"""

from __future__ import annotations

import time

import torch


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
             log_every: int = 5, label: str = "gen") -> list[list[int]]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    responses: list[list[int] | None] = [None] * len(prompts)
    start = time.time()
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for b, batch in enumerate(batches):
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            p = prompts[i]
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
            temperature=None, top_p=None, top_k=None, pad_token_id=pad, eos_token_id=eos,
        )
        for row, i in enumerate(batch):
            new = out[row, width:].tolist()
            # Keep through the first EOS (the model generated it; TRL completions include it too).
            if eos in new:
                new = new[: new.index(eos) + 1]
            responses[i] = new
        if log_every and (b % log_every == 0 or b == len(batches) - 1):
            print(f"  [{label}] batch {b + 1}/{len(batches)}  {time.time() - start:.0f}s", flush=True)
    return responses  # type: ignore[return-value]

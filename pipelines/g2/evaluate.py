"""Greedy accuracy on the held-out questions, with the pack pipeline's decoding settings."""

from __future__ import annotations

import time
from collections import defaultdict

import generation  # pipelines/smollm2/generation.py
import model as model_mod  # pipelines/smollm2/model.py
import settings
import stats
import task


def accuracy(model, tokenizer, questions: list[task.Question], label: str) -> dict:
    """Answer every question greedily (at most MAX_COMPLETION_TOKENS new tokens) and score with parse_answer."""
    start = time.time()
    was_training = model.training
    model.eval()
    prompts = [model_mod.chat_prompt_ids(tokenizer, q.text) for q in questions]
    responses = generation.generate(model, tokenizer, prompts, settings.MAX_COMPLETION_TOKENS,
                                    settings.EVAL_BATCH, log_every=3, label=f"eval {label}")
    if was_training:
        model.train()
    correct = []
    by_kind: dict[str, list[int]] = defaultdict(list)
    for q, ids in zip(questions, responses):
        ok = int(task.parse_answer(tokenizer.decode(ids, skip_special_tokens=True)) == q.answer)
        correct.append(ok)
        by_kind[q.kind].append(ok)
    n, k = len(correct), sum(correct)
    return {
        "n": n,
        "correct": k,
        "accuracy": k / n,
        "wilson95": list(stats.wilson(k, n)),
        "by_kind": {kind: round(sum(v) / len(v), 4) for kind, v in by_kind.items()},
        "per_question": correct,  # in question order, for paired comparisons between runs
        "mean_response_tokens": sum(len(r) for r in responses) / n,
        "seconds": round(time.time() - start, 1),
    }

"""Training prompts and evaluation questions, from the pack pipeline's task generator with G2's own seeds."""

from __future__ import annotations

import settings
import task  # pipelines/smollm2/task.py (on sys.path, see paths.py)
from datasets import Dataset


def eval_questions() -> list[task.Question]:
    # questions() interleaves the six kinds, so any prefix holds (nearly) equal shares of each.
    return task.questions(settings.EVAL_SEED)[: settings.EVAL_QUESTIONS]


def train_questions() -> list[task.Question]:
    return task.questions(settings.TRAIN_SEED)[: settings.STEPS * settings.PROMPTS_PER_STEP]


def train_dataset() -> Dataset:
    """Conversational prompts (TRL applies the chat template, as the pack's task did) with the expected answer
    as a column, which TRL passes to the reward functions."""
    qs = train_questions()
    return Dataset.from_dict({
        "prompt": [[{"role": "user", "content": q.text}] for q in qs],
        "answer": [q.answer for q in qs],
        "kind": [q.kind for q in qs],
    })


def overlaps() -> dict:
    """How many evaluation / training question texts also occur elsewhere. One-digit kinds have few distinct
    questions (81 sums), so different seeds share some texts; they are counted, not removed, so that every
    set keeps its six equal kind shares."""
    pack_texts = {q.text for q in task.questions(1234)}  # the pack's discovery + held-out questions
    train_texts = {q.text for q in train_questions()}
    ev = eval_questions()
    return {
        "eval_in_pack_questions": sum(q.text in pack_texts for q in ev),
        "eval_in_train_prompts": sum(q.text in train_texts for q in ev),
        "train_in_pack_questions": sum(t in pack_texts for t in train_texts),
        "eval_questions": len(ev),
        "train_prompts": len(train_texts),
    }


def outcome_reward(completions, answer, **_kwargs) -> list[float]:
    """1.0 when the completion's parsed final answer equals the expected one, else 0.0 (task.parse_answer)."""
    out = []
    for completion, expected in zip(completions, answer):
        text = completion[0]["content"] if isinstance(completion, list) else completion
        out.append(1.0 if task.parse_answer(text) == int(expected) else 0.0)
    return out


outcome_reward.__name__ = "outcome"

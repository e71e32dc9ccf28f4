"""The labelled task: small integer arithmetic with exact answers, in six kinds of rising difficulty.

The mix was calibrated on a separate seed so that this model is right about half the time: one-digit sums
and products are mostly right, two-digit sums mostly wrong.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import config

DESCRIPTION = (
    "Generated integer arithmetic (equal shares of: 1-digit + 1-digit, 1-digit * 1-digit, 2-digit + 1-digit, "
    "teen - 1-digit, 2-digit(11-30) * 1-digit, 2-digit + 2-digit), asked as 'What is A op B? Give the final "
    "answer as a number.' through the chat template, greedy decoding, at most 48 new tokens; the answer is "
    "the first number after the last '=' in the response, else its last number; no number counts as wrong."
)

PROMPT = "What is {a} {op} {b}? Give the final answer as a number."


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    a: int
    op: str
    b: int
    answer: int

    @property
    def text(self) -> str:
        return PROMPT.format(a=self.a, op=self.op, b=self.b)


def _draw(kind: str, rng: random.Random) -> tuple[int, str, int, int]:
    r = rng.randint
    if kind == "add_1d":
        a, b = r(1, 9), r(1, 9)
        return a, "+", b, a + b
    if kind == "mul_1d":
        a, b = r(2, 9), r(2, 9)
        return a, "*", b, a * b
    if kind == "add_2d1d":
        a, b = r(10, 99), r(1, 9)
        return a, "+", b, a + b
    if kind == "sub_teen":
        a, b = r(10, 18), r(1, 9)
        return a, "-", b, a - b
    if kind == "mul_2d1d":
        a, b = r(11, 30), r(2, 9)
        return a, "*", b, a * b
    if kind == "add_2d2d":
        a, b = r(10, 99), r(10, 99)
        return a, "+", b, a + b
    raise ValueError(kind)


def questions(seed: int = config.SEED) -> list[Question]:
    """TASK_PER_KIND questions of each kind, interleaved, in a seeded order."""
    rng = random.Random(seed)
    out = []
    for i in range(config.TASK_PER_KIND):
        for kind in config.TASK_KINDS:
            a, op, b, ans = _draw(kind, rng)
            out.append(Question(f"q{len(out):04d}", kind, a, op, b, ans))
    return out


_NUMBER = re.compile(r"-?\d+")


def parse_answer(response: str) -> int | None:
    """The response's final answer: the first number after its last '=', else its last number."""
    text = response.replace(",", "")
    if "=" in text:
        after = _NUMBER.search(text[text.rindex("=") + 1 :])
        if after:
            return int(after.group())
    numbers = _NUMBER.findall(text)
    return int(numbers[-1]) if numbers else None

"""Discovery / held-out split of the task responses, stratified by correctness and seeded."""

from __future__ import annotations

import random


def stratified(correct: list[int], heldout_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(discovery indices, held-out indices), each sorted; each correctness class is split separately."""
    rng = random.Random(seed)
    discovery, heldout = [], []
    for label in (0, 1):
        members = [i for i, c in enumerate(correct) if c == label]
        rng.shuffle(members)
        cut = round(len(members) * heldout_fraction)
        heldout += members[:cut]
        discovery += members[cut:]
    return sorted(discovery), sorted(heldout)

"""Confidence intervals for accuracies (Wilson) and for paired accuracy differences (bootstrap)."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score 95 % interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 or k = n the interval touches 0 or 1 exactly; the float formula can miss it by an ulp.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def paired_bootstrap(a: list[int], b: list[int], samples: int, seed: int = 0) -> dict:
    """Accuracy of a minus accuracy of b on the same questions: the difference and its bootstrap 95 % CI
    (questions resampled with replacement, both runs' answers kept together)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty 0/1 lists")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(samples, x.size))
    diffs = (x[idx] - y[idx]).mean(axis=1)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {"diff": float(x.mean() - y.mean()), "ci95": [float(lo), float(hi)], "samples": samples}

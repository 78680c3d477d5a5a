"""Accuracy with a 95% Wilson score interval, overall and per subset. Pure: plain sequences in,
plain dicts out."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (0..1); (0, 1) when n is 0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n
    successes, which small subsets of an evaluation set often have.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _summary(correct: int, n: int) -> dict[str, float | int]:
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n if n else 0.0, "n": n, "ci_low": low, "ci_high": high}


def accuracy_report(
    p_chosen_better: Sequence[float], subsets: Sequence[str]
) -> dict[str, object]:
    """``{"accuracy", "n", "ci_low", "ci_high", "subsets": {name: {same keys}}}``.

    A pair counts as correct when the model gives the chosen response the higher reward
    (p > 0.5); a tie (p == 0.5 exactly, e.g. identical responses) counts as wrong, as
    RewardBench scores it.
    """
    if len(p_chosen_better) != len(subsets):
        raise ValueError("one subset per pair")
    per_subset: dict[str, list[int]] = {}
    total = 0
    for p, subset in zip(p_chosen_better, subsets, strict=True):
        hit = 1 if p > 0.5 else 0
        total += hit
        counts = per_subset.setdefault(subset, [0, 0])
        counts[0] += hit
        counts[1] += 1
    report: dict[str, object] = dict(_summary(total, len(subsets)))
    report["subsets"] = {
        name: _summary(hits, count) for name, (hits, count) in sorted(per_subset.items())
    }
    return report

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


# {subset: [correct, n]}: what a shard of an evaluation job reports, summed over shards.
SubsetCounts = dict[str, list[int]]


def subset_counts(p_chosen_better: Sequence[float], subsets: Sequence[str]) -> SubsetCounts:
    """Correct and scored pairs per subset. A pair counts as correct when the model gives the
    chosen response the higher reward (p > 0.5); a tie (p == 0.5 exactly, e.g. identical
    responses) counts as wrong, as RewardBench scores it."""
    if len(p_chosen_better) != len(subsets):
        raise ValueError("one subset per pair")
    counts: SubsetCounts = {}
    for p, subset in zip(p_chosen_better, subsets, strict=True):
        entry = counts.setdefault(subset, [0, 0])
        entry[0] += 1 if p > 0.5 else 0
        entry[1] += 1
    return counts


def counts_merge(*parts: SubsetCounts) -> SubsetCounts:
    """The sum of several parts' counts (a sharded evaluation's shards)."""
    merged: SubsetCounts = {}
    for part in parts:
        for subset, (correct, n) in part.items():
            entry = merged.setdefault(subset, [0, 0])
            entry[0] += int(correct)
            entry[1] += int(n)
    return merged


def report_from_counts(counts: SubsetCounts) -> dict[str, object]:
    """``{"accuracy", "n", "ci_low", "ci_high", "subsets": {name: {same keys}}}``."""
    correct = sum(int(hits) for hits, _n in counts.values())
    n = sum(int(count) for _hits, count in counts.values())
    report: dict[str, object] = dict(_summary(correct, n))
    report["subsets"] = {
        name: _summary(int(hits), int(count)) for name, (hits, count) in sorted(counts.items())
    }
    return report


def accuracy_report(
    p_chosen_better: Sequence[float], subsets: Sequence[str]
) -> dict[str, object]:
    """The report (see ``report_from_counts``) of one model's p(chosen better) per pair."""
    return report_from_counts(subset_counts(p_chosen_better, subsets))

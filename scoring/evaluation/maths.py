"""Accuracy with a 95% Wilson score interval, overall and per subset, and the intervals that
compare two slices of a round (the loop's effect). Pure: plain sequences in, plain values out."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

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
    # At 0 or n successes the bound is exactly 0 or 1, but centre ∓ half rounds to 5.6e-17
    # (0 of 3) or 1 - 1.1e-16 (10 of 10): an interval that would not hold its own accuracy.
    low = 0.0 if correct <= 0 else max(0.0, min(p, centre - half))
    high = 1.0 if correct >= n else min(1.0, max(p, centre + half))
    return (low, high)


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


def accuracy_report(p_chosen_better: Sequence[float], subsets: Sequence[str]) -> dict[str, object]:
    """The report (see ``report_from_counts``) of one model's p(chosen better) per pair."""
    return report_from_counts(subset_counts(p_chosen_better, subsets))


# --- Comparing two slices (the loop's effect) ---------------------------------------------


def proportion_difference(
    hits_a: int, n_a: int, hits_b: int, n_b: int, z: float = Z_95
) -> tuple[float, float, float]:
    """(p_a - p_b, low, high): Newcombe's hybrid score interval, built from each side's
    Wilson interval; sound for small samples and proportions near 0 or 1."""
    p_a = hits_a / n_a if n_a else 0.0
    p_b = hits_b / n_b if n_b else 0.0
    low_a, high_a = wilson_interval(hits_a, n_a, z)
    low_b, high_b = wilson_interval(hits_b, n_b, z)
    difference = p_a - p_b
    low = difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return difference, max(-1.0, low), min(1.0, high)


# Resample indices drawn at a time: a round's slice of 100,000 pairs drew 2,000 × 100,000
# of them at once (1.6 GB, and as much again gathered); in chunks the memory is bounded and
# the generator's stream, hence the interval, is the same.
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22


def _bootstrap_means(data: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    rows = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // data.size)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        means[start : start + count] = data[
            rng.integers(0, data.size, size=(count, data.size))
        ].mean(axis=1)
    return means


# Fewer values than this get no bootstrap interval: the percentile bootstrap of a small sample
# is far too narrow (one value, or a few equal ones, give a zero-width interval, as if the mean
# were known exactly).
BOOTSTRAP_MIN_N = 10


def bootstrap_mean_interval(
    values: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): a 95% percentile bootstrap interval of the mean; low and high are
    NaN with fewer than ``BOOTSTRAP_MIN_N`` values, and the mean is 0 with none. Seeded, so a
    page shows the same interval each time."""
    data = np.asarray(values, dtype=np.float64)
    mean = float(data.mean()) if data.size else 0.0
    if data.size < BOOTSTRAP_MIN_N:
        return (mean, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = _bootstrap_means(data, rng, resamples)
    low, high = np.percentile(means, [2.5, 97.5])
    return mean, float(low), float(high)


def bootstrap_mean_difference(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float] | None:
    """(mean(a) - mean(b), low, high) with a 95% percentile bootstrap interval, each side
    resampled on its own; None when either side has fewer than ``BOOTSTRAP_MIN_N`` values."""
    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if left.size < BOOTSTRAP_MIN_N or right.size < BOOTSTRAP_MIN_N:
        return None
    rng = np.random.default_rng(seed)
    means_left = _bootstrap_means(left, rng, resamples)
    means_right = _bootstrap_means(right, rng, resamples)
    low, high = np.percentile(means_left - means_right, [2.5, 97.5])
    return float(left.mean() - right.mean()), float(low), float(high)

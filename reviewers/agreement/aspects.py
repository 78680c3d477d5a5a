"""Agreement on per-aspect ratings: Krippendorff's alpha per aspect.

A unit is one response of one pair rated on one aspect (so a pair gives two units per aspect);
its values are the ratings the pair's regular labels gave it (not re-tests, not gold checks).
Ratings are numbers on a small scale, so alpha is reported at the interval level, with the
ordinal level beside it (it only uses the ratings' order). The counting is pure
(``aspect_histograms``: units counted by their rating counts, as the A/B figures' pattern
histogram); ``aspect_agreement`` streams the labels into it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

import numpy as np

from annotation.aspects import Aspect, AspectError, parse_aspects
from annotation.models import Campaign, Label
from reviewers.agreement.maths import alpha_components

ASPECT_LEVELS = ("interval", "ordinal")


def aspect_histograms(
    ratings: Iterable[tuple[int, Mapping[str, Any] | None]], aspects: list[Aspect]
) -> dict[str, Counter[tuple[int, ...]]]:
    """Per aspect, its units counted by their count rows: how many units (pair, side) had each
    row of per-point rating counts.

    ``ratings`` are (pair id, a label's canonical aspect_ratings) *grouped by pair* (all of a
    pair's labels one after the other, as a query ordered by pair gives them); a unit is
    counted once its pair's last label has passed, so memory holds one pair's counts and the
    histograms (a few dozen rows an aspect), however many labels stream by. Ratings off the
    aspect's scale (the campaign's scale changed since) are left out.
    """
    index = {aspect.name: {v: i for i, v in enumerate(aspect.points)} for aspect in aspects}
    histograms: dict[str, Counter[tuple[int, ...]]] = {aspect.name: Counter() for aspect in aspects}
    pair_units: dict[tuple[str, str], list[int]] = {}
    current: int | None = None

    def fold() -> None:
        for (name, _side), counts in pair_units.items():
            histograms[name][tuple(counts)] += 1
        pair_units.clear()

    for pair_id, label_ratings in ratings:
        if pair_id != current:
            fold()
            current = pair_id
        for aspect in aspects:
            points = index[aspect.name]
            sides = (label_ratings or {}).get(aspect.name) or {}
            for side, value in sides.items():
                position = points.get(value)
                if position is not None:
                    unit = pair_units.setdefault((aspect.name, side), [0] * len(points))
                    unit[position] += 1
    fold()
    return histograms


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def aspect_alphas(
    ratings: Iterable[tuple[int, Mapping[str, Any] | None]], aspects: list[Aspect]
) -> list[dict[str, Any]]:
    """Alpha per aspect at the interval and ordinal levels (None where undefined); ``ratings``
    in any order (they are sorted by pair here; ``aspect_agreement`` streams them sorted)."""
    return _aspect_report(aspect_histograms(sorted(ratings, key=itemgetter(0)), aspects), aspects)


def _aspect_report(
    histograms: Mapping[str, Counter[tuple[int, ...]]], aspects: list[Aspect]
) -> list[dict[str, Any]]:
    report = []
    for aspect in aspects:
        histogram = histograms[aspect.name]
        points = list(aspect.points)
        patterns = np.asarray(list(histogram), dtype=np.int64).reshape(-1, len(points))
        multiplicities = np.asarray(list(histogram.values()), dtype=np.float64)
        entry: dict[str, Any] = {"name": aspect.name, "label": aspect.label}
        components = None
        for level in ASPECT_LEVELS:
            components = alpha_components(patterns, multiplicities, points, level)  # type: ignore[arg-type]
            entry[f"alpha_{level}"] = _finite_or_none(components.alpha)
        entry["pairable_units"] = components.pairable_units if components else 0
        entry["ratings"] = int((patterns.sum(axis=1) * multiplicities).sum())
        entry["undefined_reason"] = components.undefined_reason if components else None
        report.append(entry)
    return report


def aspect_agreement(*, campaign: Campaign) -> list[dict[str, Any]]:
    """Alpha per aspect of the campaign's regular labels; [] when it has no (valid) aspects.
    The labels stream in pair order into ``aspect_histograms``: bounded memory at any size."""
    try:
        aspects = parse_aspects(campaign.aspects)
    except AspectError:
        return []
    if not aspects:
        return []
    rows = (
        Label.objects.filter(
            campaign=campaign, is_retest=False, is_gold_check=False, set_aside=False
        )
        .exclude(aspect_ratings={})
        .order_by("pair_id")
        .values_list("pair_id", "aspect_ratings")
        .iterator(chunk_size=10_000)
    )
    return _aspect_report(aspect_histograms(rows, aspects), aspects)

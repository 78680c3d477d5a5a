"""Agreement on per-aspect ratings: Krippendorff's alpha per aspect.

A unit is one response of one pair rated on one aspect (so a pair gives two units per aspect);
its values are the ratings the pair's regular labels gave it (not re-tests, not gold checks).
Ratings are numbers on a small scale, so alpha is reported at the interval level, with the
ordinal level beside it (it only uses the ratings' order). The counting is pure
(``aspect_value_counts``); ``aspect_agreement`` reads the labels.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annotation.aspects import Aspect, AspectError, parse_aspects
from annotation.models import Campaign, Label
from reviewers.agreement.maths import alpha_components

ASPECT_LEVELS = ("interval", "ordinal")


def aspect_value_counts(
    ratings: Iterable[tuple[int, Mapping[str, Any] | None]], aspect: Aspect
) -> NDArray[np.int64]:
    """Units x scale points: how many labels gave each rating to each (pair, side).

    ``ratings`` are (pair id, a label's canonical aspect_ratings); ratings off the aspect's
    scale (the campaign's scale changed since) are left out.
    """
    points = list(aspect.points)
    index = {value: position for position, value in enumerate(points)}
    units: dict[tuple[int, str], NDArray[np.int64]] = defaultdict(
        lambda: np.zeros(len(points), dtype=np.int64)
    )
    for pair_id, label_ratings in ratings:
        sides = (label_ratings or {}).get(aspect.name) or {}
        for side, value in sides.items():
            position = index.get(value)
            if position is not None:
                units[(pair_id, side)][position] += 1
    if not units:
        return np.zeros((0, len(points)), dtype=np.int64)
    return np.stack([units[key] for key in sorted(units)])


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def aspect_alphas(
    ratings: list[tuple[int, Mapping[str, Any] | None]], aspects: list[Aspect]
) -> list[dict[str, Any]]:
    """Alpha per aspect at the interval and ordinal levels (None where undefined)."""
    report = []
    for aspect in aspects:
        counts = aspect_value_counts(ratings, aspect)
        entry: dict[str, Any] = {"name": aspect.name, "label": aspect.label}
        components = None
        for level in ASPECT_LEVELS:
            components = alpha_components(counts, None, list(aspect.points), level)  # type: ignore[arg-type]
            entry[f"alpha_{level}"] = _finite_or_none(components.alpha)
        entry["pairable_units"] = components.pairable_units if components else 0
        entry["ratings"] = int(counts.sum())
        entry["undefined_reason"] = components.undefined_reason if components else None
        report.append(entry)
    return report


def aspect_agreement(*, campaign: Campaign) -> list[dict[str, Any]]:
    """Alpha per aspect of the campaign's regular labels; [] when it has no (valid) aspects."""
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
        .values_list("pair_id", "aspect_ratings")
        .iterator(chunk_size=10_000)
    )
    return aspect_alphas(list(rows), aspects)

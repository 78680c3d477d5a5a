"""Per-aspect ratings: a campaign's aspect definitions and the ratings of a label. Pure code.

A campaign lists its aspects as ``[{"name", "label", "scale_min", "scale_max"}, ...]``; a label
rates each response on each aspect it chooses to, as ``{aspect: {"a": n, "b": n}}``. Pages and
the API speak in the shown orientation; labels store the canonical one (swap a and b when the
assignment showed B on the left).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SIDES = ("a", "b")
MAX_ASPECTS = 12
MAX_POINTS = 10  # scale_max - scale_min + 1
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class AspectError(ValueError):
    """An aspect definition or a rating that does not fit the campaign's aspects."""


@dataclass(frozen=True)
class Aspect:
    name: str
    label: str
    scale_min: int
    scale_max: int

    @property
    def points(self) -> range:
        return range(self.scale_min, self.scale_max + 1)


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AspectError(f"{what} must be a whole number")
    return value


def parse_aspects(raw: Any) -> list[Aspect]:
    """The campaign's aspects, checked: names unique and lower_snake_case, 2 to 10 points."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise AspectError("aspects must be a list of {name, label, scale_min, scale_max}")
    if len(raw) > MAX_ASPECTS:
        raise AspectError(f"at most {MAX_ASPECTS} aspects")
    aspects: list[Aspect] = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise AspectError("each aspect must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise AspectError(f"aspect name {name!r} must be lower_snake_case, up to 40 characters")
        low = _integer(entry.get("scale_min", 1), f"{name}: scale_min")
        high = _integer(entry.get("scale_max", 5), f"{name}: scale_max")
        if not 2 <= high - low + 1 <= MAX_POINTS:
            raise AspectError(f"{name}: the scale must have 2 to {MAX_POINTS} points")
        label = entry.get("label") or name.replace("_", " ").capitalize()
        aspects.append(Aspect(name, str(label), low, high))
    names = [aspect.name for aspect in aspects]
    if len(set(names)) != len(names):
        raise AspectError("aspect names must be unique")
    return aspects


def canonical_ratings(
    shown: Mapping[str, Any] | None, *, aspects: list[Aspect], swapped: bool
) -> dict[str, dict[str, int]]:
    """Validate ratings given in the shown orientation; return them in canonical orientation.

    Any subset of aspects and sides may be rated; an unknown aspect or side, or a value off the
    aspect's scale, raises AspectError.
    """
    if not shown:
        return {}
    if not isinstance(shown, Mapping):
        raise AspectError("aspect_ratings must be an object {aspect: {a: n, b: n}}")
    by_name = {aspect.name: aspect for aspect in aspects}
    ratings: dict[str, dict[str, int]] = {}
    for name, sides in shown.items():
        aspect = by_name.get(name)
        if aspect is None:
            known = ", ".join(by_name) or "none"
            raise AspectError(f"unknown aspect {name!r} (this campaign's aspects: {known})")
        if not isinstance(sides, Mapping):
            raise AspectError(f"{name}: give the ratings as {{a: n, b: n}}")
        rated: dict[str, int] = {}
        for side, value in sides.items():
            if side not in SIDES:
                raise AspectError(f"{name}: unknown response {side!r} (a or b)")
            if value is None:
                continue
            number = _integer(value, f"{name}.{side}")
            if number not in aspect.points:
                raise AspectError(
                    f"{name}.{side} must be between {aspect.scale_min} and {aspect.scale_max}"
                )
            rated[("b" if side == "a" else "a") if swapped else side] = number
        if rated:
            ratings[name] = dict(sorted(rated.items()))
    return ratings


def shown_ratings(
    canonical: Mapping[str, Mapping[str, int]] | None, *, swapped: bool
) -> dict[str, dict[str, int]]:
    """Stored (canonical) ratings in the orientation an annotator saw."""
    if not swapped:
        return {name: dict(sides) for name, sides in (canonical or {}).items()}
    return {
        name: {("b" if side == "a" else "a"): value for side, value in sides.items()}
        for name, sides in (canonical or {}).items()
    }

"""Consensus of a pair's labels: pure functions, no ORM."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations


@dataclass(frozen=True)
class Consensus:
    preference: int | None  # canonical, None when there is no majority
    provenance: str  # "unanimous", "majority" or "unresolved"
    disagreement: float  # 0 (all equal) … 1 (maximal spread), see pair_disagreement
    opposite_directions: bool


def _direction(preference: int) -> int:
    return (preference > 0) - (preference < 0)


def _round_half_away(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def pair_disagreement(preferences: list[int], *, max_value: int = 2) -> float:
    """Mean squared difference over all pairs of labels, scaled to 0 … 1.

    The same interval metric Krippendorff's alpha uses, normalised by the largest possible
    difference on the scale, so thresholds mean the same for binary and five-point campaigns.
    """
    if len(preferences) < 2:
        return 0.0
    squared = [(a - b) ** 2 for a, b in combinations(preferences, 2)]
    return sum(squared) / len(squared) / float((2 * max_value) ** 2)


def consensus_of(preferences: list[int], *, max_value: int = 2) -> Consensus:
    """Majority direction (A, tie or B) with the strength averaged over the majority."""
    directions = [_direction(p) for p in preferences]
    disagreement = pair_disagreement(preferences, max_value=max_value)
    opposite = 1 in directions and -1 in directions
    for direction in (1, 0, -1):
        voters = [p for p, d in zip(preferences, directions, strict=True) if d == direction]
        if len(voters) * 2 > len(preferences):
            strength = _round_half_away(sum(voters) / len(voters))
            provenance = "unanimous" if len(voters) == len(preferences) else "majority"
            return Consensus(strength, provenance, disagreement, opposite)
    return Consensus(None, "unresolved", disagreement, opposite)

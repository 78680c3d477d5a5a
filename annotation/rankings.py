"""Rankings of a K-wise item's responses: validation and orientation (pure, no Django).

A ranking is a list of groups of response indices, best first: ``[[2], [0, 1], [3]]`` says
response 2 is best, 0 and 1 tie, 3 is worst. Every index 0..K-1 appears exactly once, so
there are at most K groups. Annotators speak in *shown* indices (positions on their screen);
labels are stored in *canonical* indices (the imported order). ``display_order[position]`` is
the canonical index shown at that position, so mapping is a lookup each way.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from annotation.errors import InvalidLabel

Ranking = list[list[int]]


class InvalidRanking(InvalidLabel):
    code = "invalid_ranking"


def ranking_validate(ranking: object, *, size: int) -> Ranking:
    """The ranking as a list of lists of ints, or InvalidRanking saying what is wrong."""
    if not isinstance(ranking, list) or not ranking:
        raise InvalidRanking("ranking must be a non-empty list of groups of response indices")
    if len(ranking) > size:
        raise InvalidRanking(f"ranking has {len(ranking)} groups; at most {size} for this item")
    seen: set[int] = set()
    groups: Ranking = []
    for position, group in enumerate(ranking):
        if not isinstance(group, list) or not group:
            raise InvalidRanking(f"ranking[{position}] must be a non-empty list of indices")
        for index in group:
            if isinstance(index, bool) or not isinstance(index, int):
                raise InvalidRanking(f"ranking[{position}] holds {index!r}, not an index")
            if not 0 <= index < size:
                raise InvalidRanking(f"response index {index} is outside 0..{size - 1}")
            # Caught at the first repeat: the work stays linear in what was sent, however long.
            if index in seen:
                raise InvalidRanking(f"response {index} is ranked more than once")
            seen.add(index)
        groups.append(sorted(group))
    missing = sorted(set(range(size)) - set(seen))
    if missing:
        raise InvalidRanking(
            "every response must be ranked; missing: " + ", ".join(map(str, missing))
        )
    return groups


def display_order_random(size: int, rng: random.Random) -> list[int]:
    order = list(range(size))
    rng.shuffle(order)
    return order


def ranking_to_canonical(shown: Ranking, *, display_order: Sequence[int]) -> Ranking:
    return [sorted(display_order[position] for position in group) for group in shown]


def ranking_to_shown(canonical: Ranking, *, display_order: Sequence[int]) -> Ranking:
    position_of = {index: position for position, index in enumerate(display_order)}
    return [sorted(position_of[index] for index in group) for group in canonical]


def shown_ranks(canonical: Ranking, *, display_order: Sequence[int]) -> list[str]:
    """Each shown response's rank (1 = best, ties equal), in shown order: the workspace's
    rank controls for a stored label."""
    groups = group_of(canonical)
    return [str(groups[index] + 1) for index in display_order]


def group_of(ranking: Ranking) -> dict[int, int]:
    """Response index -> 0-based position of its group (0 = best)."""
    return {index: rank for rank, group in enumerate(ranking) for index in group}


def first_two_preference(ranking: Ranking) -> int:
    """Response 0 against response 1 as a pairwise preference: 1, 0 (tie) or -1."""
    groups = group_of(ranking)
    return (groups[0] < groups[1]) - (groups[0] > groups[1])

"""Rankings to chosen/rejected pairs, by a campaign's rule (pure, no Django).

A ranking is a list of groups of response indices, best first; a response's rank is its
group's position, 1 = best. Rules (``Campaign.ranking_expansion``):

* ``all_pairs``: every response against every response in a lower group
  (K responses, no ties: K(K-1)/2 pairs);
* ``best_vs_each``: each response of the best group against every response below it
  (no ties: K-1 pairs);
* ``adjacent``: each response against each response of the next group down
  (no ties: K-1 pairs).

Responses in one group are tied: they never become a chosen/rejected pair under any rule;
``tied_pairs`` lists them, for the export's ties file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

RULES = ("all_pairs", "best_vs_each", "adjacent")


@dataclass(frozen=True, slots=True)
class RankedPair:
    chosen: int
    rejected: int
    chosen_rank: int
    rejected_rank: int


@dataclass(frozen=True, slots=True)
class TiedPair:
    first: int
    second: int
    rank: int


def ranking_pairs(ranking: Sequence[Sequence[int]], rule: str) -> list[RankedPair]:
    """The chosen/rejected pairs the rule takes from the ranking, best chosen first."""
    if rule not in RULES:
        raise ValueError(f"unknown ranking expansion {rule!r}; expected one of {RULES}")
    pairs = []
    for upper, higher in enumerate(ranking):
        if rule == "best_vs_each" and upper > 0:
            break
        lower_groups = (
            ranking[upper + 1 : upper + 2] if rule == "adjacent" else ranking[upper + 1 :]
        )
        for offset, lower in enumerate(lower_groups, start=upper + 2):
            for chosen in sorted(higher):
                for rejected in sorted(lower):
                    pairs.append(RankedPair(chosen, rejected, upper + 1, offset))
    return pairs


def tied_pairs(ranking: Sequence[Sequence[int]]) -> list[TiedPair]:
    """Every two responses that share a group (never a chosen/rejected pair)."""
    return [
        TiedPair(first, second, rank)
        for rank, group in enumerate(ranking, start=1)
        for first, second in combinations(sorted(group), 2)
    ]

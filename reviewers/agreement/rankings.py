"""Agreement, consensus and escalation over rankings of K responses (pure numpy, no ORM).

A ranking is a list of groups of response indices, best first (``annotation.rankings``).
Each response's *rank* is its fractional rank: the mean of the positions (1-based) its group
covers, so ``[[2], [0, 1], [3]]`` gives response 2 rank 1, responses 0 and 1 rank 2.5 each,
response 3 rank 4. Ties therefore keep the sum of ranks, which makes mean ranks comparable
across labels with and without ties.

* ``ranking_alpha``: Krippendorff's alpha, ordinal, where a unit is one response of one item
  and a label's value for it is the response's rank; ``ranking_alpha_from_histogram`` the
  same from units counted by their ranks (``ranking_unit_values``), for streamed labels.
* ``consensus_ranking``: responses ordered by mean rank over the labels (equivalent to a Borda
  count), equal means staying tied.
* ``ranking_disagreement``: the mean, over all pairs of labels, of the share of response pairs
  that the two labels order differently (Kendall's distance; a tie against an order counts 1/2).
* ``ranking_escalation_reasons``: "no clear best" and "contradictory top choices".
* ``retest_contradicts``: whether a re-test's ranking contradicts the consensus ranking (the
  re-test escalation and the re-test agreement rate both read it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reviewers.agreement.maths import alpha_from_pattern_histogram

Ranking = Sequence[Sequence[int]]
# Mean ranks closer than this are equal (they are means of halves over a few labels).
_TIE_TOLERANCE = 1e-9


def fractional_ranks(ranking: Ranking, size: int) -> NDArray[np.float64]:
    """Each response's rank (1 = best), tied responses sharing the mean of their positions."""
    ranks = np.full(size, np.nan)
    position = 1
    for group in ranking:
        ranks[list(group)] = position + (len(group) - 1) / 2
        position += len(group)
    return ranks


def ranking_alpha(items: Iterable[Sequence[Ranking]]) -> float:
    """Ordinal Krippendorff's alpha over the rankings of many items (NaN when undefined).

    ``items``: per item, the rankings its annotators gave. Units are (item, response); the
    value domain is every fractional rank that occurs, in order.
    """
    histogram: Counter[tuple[float, ...]] = Counter()
    for rankings in items:
        histogram.update(ranking_unit_values(rankings))
    return ranking_alpha_from_histogram(histogram)


def ranking_unit_values(rankings: Sequence[Ranking]) -> list[tuple[float, ...]]:
    """One item's units, one per response: the ranks its labels gave it, sorted (a unit's
    values as a multiset, which is all alpha reads of it). [] for an item with no label."""
    if not rankings:
        return []
    size = sum(len(group) for group in rankings[0])
    per_label = np.array([fractional_ranks(ranking, size) for ranking in rankings])
    return [tuple(sorted(column.tolist())) for column in per_label.T]


def ranking_alpha_from_histogram(histogram: Mapping[tuple[float, ...], int]) -> float:
    """``ranking_alpha`` from units counted by their values (``ranking_unit_values``): how many
    units had each multiset of ranks. The histogram holds a few hundred distinct multisets
    however many items were ranked, so a campaign's alpha is summed label by label in bounded
    memory."""
    units = [unit for unit, count in histogram.items() if count > 0]
    if not units:
        return float("nan")
    domain = np.unique(np.concatenate([np.asarray(unit, dtype=np.float64) for unit in units]))
    patterns = np.zeros((len(units), len(domain)), dtype=np.int64)
    for row, unit in enumerate(units):
        np.add.at(patterns[row], np.searchsorted(domain, unit), 1)
    multiplicities = np.asarray([histogram[unit] for unit in units], dtype=np.float64)
    return alpha_from_pattern_histogram(patterns, multiplicities, domain, "ordinal")


def mean_ranks(rankings: Sequence[Ranking], size: int) -> NDArray[np.float64]:
    means: NDArray[np.float64] = np.mean(
        [fractional_ranks(ranking, size) for ranking in rankings], axis=0
    )
    return means


def consensus_ranking(rankings: Sequence[Ranking], size: int) -> list[list[int]]:
    """Responses by mean rank, best first; equal mean ranks form one group (a tie)."""
    means = mean_ranks(rankings, size)
    groups: list[list[int]] = []
    previous = None
    for index in sorted(range(size), key=lambda i: (means[i], i)):
        if previous is not None and abs(means[index] - previous) <= _TIE_TOLERANCE:
            groups[-1].append(index)
        else:
            groups.append([index])
        previous = means[index]
    return groups


def _order_signs(ranking: Ranking, size: int) -> NDArray[np.float64]:
    ranks = fractional_ranks(ranking, size)
    first, second = np.triu_indices(size, k=1)
    return np.sign(ranks[second] - ranks[first])


def ranking_disagreement(rankings: Sequence[Ranking], size: int) -> float:
    """0 when every label is the same ranking; 1 when two labels are exact reverses."""
    if len(rankings) < 2 or size < 2:
        return 0.0
    signs = [_order_signs(ranking, size) for ranking in rankings]
    distances = [float(np.mean(np.abs(a - b)) / 2) for a, b in combinations(signs, 2)]
    return float(np.mean(distances))


def retest_contradicts(retest: Ranking | None, consensus: Ranking | None) -> bool:
    """Whether a re-test's best group shares no response with the consensus ranking's best
    group: the ranking analogue of a re-test that prefers the other side. Without either
    ranking there is nothing to contradict."""
    return bool(retest and consensus and not set(retest[0]) & set(consensus[0]))


def ranking_has_clear_best(rankings: Sequence[Ranking]) -> bool:
    """Whether some response is in the best group of more than half of the labels: without
    one the item has no consensus ranking (as an A/B pair without a majority direction has
    no consensus), whether or not the campaign escalates it (``no_majority``)."""
    if not rankings:
        return False
    size = sum(len(group) for group in rankings[0])
    top_votes = np.zeros(size, dtype=np.int64)
    for ranking in rankings:
        top_votes[list(ranking[0])] += 1
    return bool(top_votes.max() * 2 > len(rankings))


def ranking_escalation_reasons(
    rankings: Sequence[Ranking],
    *,
    disagreement: float,
    flags: Iterable[str],
    rules: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """The escalation rules that fire for a K-wise item's labels: (reason, detail).

    ``no_majority`` (no clear best): no response is in the best group of more than half of
    the labels. ``opposite_directions`` (contradictory top choices): one label's best response
    is another's worst, and the disagreement is above ``disagreement_threshold``. ``flags``:
    any flag. The same rule switches as for pairs turn them off.
    """
    reasons: list[tuple[str, str]] = []
    if not rankings:
        return reasons
    if rules.get("no_majority", True) and not ranking_has_clear_best(rankings):
        reasons.append(("no_majority", "no clear best: no response is best for a majority"))
    threshold = float(rules.get("disagreement_threshold", 0.5))
    contradicted = sorted(
        {
            index
            for one, other in combinations(rankings, 2)
            for first, second in ((one, other), (other, one))
            if len(first) > 1 and len(second) > 1
            for index in set(first[0]) & set(second[-1])
        }
    )
    if rules.get("opposite_directions", True) and contradicted and disagreement > threshold:
        reasons.append(
            (
                "opposite_directions",
                "contradictory top choices: response "
                + ", ".join(map(str, contradicted))
                + f" ranked best and worst; disagreement {disagreement:.2f} > {threshold:g}",
            )
        )
    flag_names = sorted(set(flags))
    if flag_names and rules.get("flags", True):
        reasons.append(("flagged", "flags: " + ", ".join(flag_names)))
    return reasons

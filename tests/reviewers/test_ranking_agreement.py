"""Agreement, consensus and escalation over rankings: pure maths, no database."""

from __future__ import annotations

import random

import krippendorff
import numpy as np
import pytest

from reviewers.agreement.rankings import (
    consensus_ranking,
    fractional_ranks,
    ranking_alpha,
    ranking_disagreement,
    ranking_escalation_reasons,
)


def random_ranking(rng: random.Random, size: int) -> list[list[int]]:
    order = list(range(size))
    rng.shuffle(order)
    groups: list[list[int]] = []
    for index in order:
        if groups and rng.random() < 0.3:
            groups[-1].append(index)  # a tie
        else:
            groups.append([index])
    return groups


def test_fractional_ranks_share_the_mean_position_of_a_tie():
    assert fractional_ranks([[2], [0, 1], [3]], 4).tolist() == [2.5, 2.5, 1.0, 4.0]
    assert fractional_ranks([[0, 1, 2]], 3).tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_alpha_on_ranks_matches_the_krippendorff_package(seed):
    rng = random.Random(seed)
    items = []
    for _ in range(25):
        size = rng.randint(2, 6)
        reference = random_ranking(rng, size)
        items.append(
            [
                reference if rng.random() < 0.6 else random_ranking(rng, size)
                for _annotator in range(3)
            ]
        )
    # Coders x units, a unit being one response of one item, valued by its rank.
    reliability = np.array(
        [
            np.concatenate(
                [
                    fractional_ranks(rankings[coder], sum(map(len, rankings[0])))
                    for rankings in items
                ]
            )
            for coder in range(3)
        ]
    )
    expected = krippendorff.alpha(reliability_data=reliability, level_of_measurement="ordinal")
    assert ranking_alpha(items) == pytest.approx(expected, abs=1e-12)


def test_alpha_is_one_for_identical_rankings_and_nan_without_any():
    same = [[[1], [0], [2]]] * 3
    other = [[[0, 2], [1]]] * 3
    assert ranking_alpha([same, other]) == pytest.approx(1.0)
    assert np.isnan(ranking_alpha([]))


def test_consensus_orders_by_mean_rank_and_keeps_ties():
    rankings = [[[0], [1, 2], [3]], [[0], [2], [1], [3]], [[0], [1], [2], [3]]]
    assert consensus_ranking(rankings, 4) == [[0], [1, 2], [3]]
    # Two annotators who disagree only on the order of 1 and 2 leave them tied.
    assert consensus_ranking([[[1], [2], [0]], [[2], [1], [0]]], 3) == [[1, 2], [0]]
    assert consensus_ranking([[[0, 1, 2]]], 3) == [[0, 1, 2]]


def test_disagreement_runs_from_identical_to_reversed():
    assert ranking_disagreement([[[0], [1], [2]]] * 3, 3) == 0.0
    assert ranking_disagreement([[[0], [1], [2]], [[2], [1], [0]]], 3) == 1.0
    # A tie against an order counts half: 1 of 3 response pairs, halved.
    assert ranking_disagreement([[[0], [1], [2]], [[0, 1], [2]]], 3) == pytest.approx(1 / 6)


def test_no_clear_best_and_contradictory_top_choices_escalate():
    # Three different best responses, and all agree that 3 is worst.
    split = [[[0], [1], [2], [3]], [[1], [0], [2], [3]], [[2], [1], [0], [3]]]
    reasons = dict(
        ranking_escalation_reasons(
            split, disagreement=ranking_disagreement(split, 4), flags=[], rules={}
        )
    )
    assert "no_majority" in reasons and "opposite_directions" not in reasons
    reversed_ = [[[0], [1], [2]], [[2], [1], [0]], [[0], [1], [2]]]
    disagreement = ranking_disagreement(reversed_, 3)
    reasons = dict(
        ranking_escalation_reasons(reversed_, disagreement=disagreement, flags=[], rules={})
    )
    assert "no_majority" not in reasons  # response 0 is best for two of three
    assert "response 0, 2 ranked best and worst" in reasons["opposite_directions"]
    assert not ranking_escalation_reasons(
        reversed_, disagreement=disagreement, flags=[], rules={"opposite_directions": False}
    )
    calm = [[[0], [1], [2]]] * 3
    assert ranking_escalation_reasons(calm, disagreement=0.0, flags=["unsafe"], rules={}) == [
        ("flagged", "flags: unsafe")
    ]

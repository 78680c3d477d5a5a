"""Consensus and the escalation rules as pure functions (no database)."""

from __future__ import annotations

import pytest

from reviewers.consensus import consensus_of, escalation_reasons, pair_disagreement
from reviewers.models import Escalation


def test_it_takes_the_majority_direction_and_averages_its_strength():
    consensus = consensus_of([2, 1, -1])
    assert consensus.preference == 2  # (2 + 1) / 2 = 1.5 rounds away from zero
    assert consensus.provenance == "majority"
    assert consensus.opposite_directions


def test_it_calls_a_pair_unanimous_when_every_label_picks_the_same_direction():
    consensus = consensus_of([1, 1, 2])
    assert (consensus.preference, consensus.provenance) == (1, "unanimous")
    assert not consensus.opposite_directions


def test_it_leaves_a_three_way_split_unresolved():
    consensus = consensus_of([2, 0, -1])
    assert consensus.preference is None
    assert consensus.provenance == "unresolved"


def test_it_can_agree_on_a_tie():
    assert consensus_of([0, 0, -2]).preference == 0


@pytest.mark.parametrize(
    ("preferences", "max_value", "expected"),
    [
        ([1, 1, 1], 1, 0.0),
        ([1, -1], 1, 1.0),
        ([1, 1, -1], 1, 2 / 3),  # binary: the share of label pairs that disagree
        ([2, 2, -2], 2, 2 / 3),
        ([1, 1, -1], 2, (0 + 4 + 4) / 3 / 16),
        ([2], 2, 0.0),
    ],
)
def test_pair_disagreement_is_mean_squared_difference_over_the_largest(
    preferences, max_value, expected
):
    assert pair_disagreement(preferences, max_value=max_value) == pytest.approx(expected)


def test_reasons_are_the_escalation_model_reason_values():
    rules = {"disagreement_threshold": 0.4}  # [2, -2, 0] has disagreement 0.5
    reasons = escalation_reasons(consensus_of([2, -2, 0]), flags=["unsafe"], rules=rules)
    assert {reason for reason, _ in reasons} <= set(Escalation.Reason.values)
    assert [reason for reason, _ in reasons] == ["no_majority", "opposite_directions", "flagged"]


def test_opposite_directions_escalate_only_above_the_threshold():
    mild = consensus_of([1, 1, -1])  # five-point disagreement 1/6
    strong = consensus_of([2, 2, -2])  # 2/3
    rules = {"disagreement_threshold": 0.5}
    assert escalation_reasons(mild, flags=[], rules=rules) == []
    assert [r for r, _ in escalation_reasons(strong, flags=[], rules=rules)] == [
        "opposite_directions"
    ]
    stricter = {"disagreement_threshold": 0.1}
    assert [r for r, _ in escalation_reasons(mild, flags=[], rules=stricter)] == [
        "opposite_directions"
    ]


def test_each_rule_can_be_switched_off():
    consensus = consensus_of([2, -2, 0])
    rules = {"no_majority": False, "opposite_directions": False, "flags": False}
    assert escalation_reasons(consensus, flags=["broken"], rules=rules) == []

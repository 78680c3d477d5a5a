"""Alpha per round counts each label in the round it was given in (its assignment's round).

A pair still being labelled when its round closes stays in that round (closing returns only
untouched pairs to the pool), a re-test reopens a pair in place, and a pair with labels is
never queued again: so a labelled pair never changes round, the assignment takes the pair's
round when it is leased, and grouping labels by the pair's round or by their assignment's is
the same thing. This pins it through the engine: labels, re-tests and rounds closed and opened
by the services, then the agreement report.
"""

from __future__ import annotations

import numpy as np
import pytest

from annotation.models import Label, Pair
from reviewers.agreement.maths import alpha_from_value_counts
from reviewers.agreement.selectors import campaign_agreement
from scoring.loop.rounds import round_close, round_open_next
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge

pytestmark = pytest.mark.django_db

FIVE_POINT = (-2, -1, 0, 1, 2)


def _label(campaign, user, pair: Pair, preference: int) -> Label:
    label = judge(campaign, user, preference)
    assert label.pair_id == pair.pk, f"{user} got pair {label.pair_id}, not {pair.pk}"
    return label


def _ordinal_alpha(votes_per_pair: list[list[int]]) -> float:
    counts = np.asarray(
        [[votes.count(value) for value in FIVE_POINT] for votes in votes_per_pair],
        dtype=np.int64,
    )
    return alpha_from_value_counts(counts, FIVE_POINT, "ordinal")


def test_labels_given_in_round_1_stay_in_round_1_after_round_2_opens():
    # Every settled, undisputed pair goes back for a re-test; rounds take pairs by priority.
    campaign = CampaignFactory(retest_share=1.0, random_slice_share=0.0)
    a1, a2, a3 = (
        PairFactory(campaign=campaign, status=Pair.Status.POOLED, priority=p) for p in (10, 9, 8)
    )
    b1, b2 = (PairFactory(campaign=campaign, status=Pair.Status.POOLED, priority=p) for p in (5, 4))
    first = round_open_next(campaign=campaign, size=3)
    assert first is not None and first.number == 1
    u1, u2, u3, u4, u5, u6 = UserFactory.create_batch(6)
    # Round 1: a1 and a2 settle (and are reopened for a re-test); a3 gets one label of three.
    for user, preferences in ((u1, (2, -2, 1)), (u2, (2, -2)), (u3, (2, -2))):
        for pair, preference in zip((a1, a2, a3), preferences, strict=False):
            _label(campaign, user, pair, preference)
    a1.refresh_from_db()
    assert (a1.status, a1.slot_cap) == (Pair.Status.IN_ANNOTATION, 4)  # its re-test waits

    closed = round_close(campaign=campaign)
    assert closed is not None and closed.returned_to_pool == 0  # a3 is being labelled
    second = round_open_next(campaign=campaign, size=2)
    assert second is not None and second.number == 2

    # Round 2: a1 and a2's re-tests, a3's other two labels (and its re-test), b1 and b2.
    for pair, preference in ((a1, 2), (a2, -2), (a3, 1), (b1, 2), (b2, -2)):
        _label(campaign, u4, pair, preference)
    for pair, preference in ((a3, 2), (b1, 1), (b2, -2)):
        _label(campaign, u5, pair, preference)
    for pair, preference in ((a3, 1), (b1, 2), (b2, -1)):
        _label(campaign, u6, pair, preference)
    retests = Label.objects.filter(campaign=campaign, is_retest=True)
    assert sorted(retests.values_list("pair_id", flat=True)) == sorted([a1.pk, a2.pk, a3.pk])

    # Every label's assignment is in its pair's round: a1..a3 in round 1, b1 and b2 in round 2.
    rounds_of = {
        label.pair_id: (label.assignment.round_id, label.pair.round_id)
        for label in Label.objects.select_related("assignment", "pair").filter(campaign=campaign)
    }
    assert rounds_of == {
        a1.pk: (first.pk, first.pk),
        a2.pk: (first.pk, first.pk),
        a3.pk: (first.pk, first.pk),
        b1.pk: (second.pk, second.pk),
        b2.pk: (second.pk, second.pk),
    }

    report = campaign_agreement(campaign=campaign, use_cache=False)
    rounds = {entry["number"]: entry for entry in report["rounds"]}
    assert sorted(rounds) == [1, 2]
    round_1 = [[2, 2, 2], [-2, -2, -2], [1, 2, 1]]  # re-tests left out
    round_2 = [[2, 1, 2], [-2, -2, -1]]
    assert rounds[1]["n_pairs"] == 3 and rounds[2]["n_pairs"] == 2
    assert rounds[1]["alpha"] == pytest.approx(_ordinal_alpha(round_1), abs=1e-12)
    assert rounds[2]["alpha"] == pytest.approx(_ordinal_alpha(round_2), abs=1e-12)
    assert report["overall"]["alpha"] == pytest.approx(_ordinal_alpha(round_1 + round_2), abs=1e-12)

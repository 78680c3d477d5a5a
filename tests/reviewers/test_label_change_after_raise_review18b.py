"""Review 18b: a pair settled under the old annotators per pair (N) keeps its verdict when N is
raised (nothing reopens), but a label of it changed within the grace period is still judged:
its consensus is computed again from the labels it has, disputes escalate and settled ones
withdraw, as under the N it was settled by. A pair not yet settled still waits for the new N."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, Campaign, Pair
from annotation.services.assignments import assignment_next
from annotation.services.campaigns import campaign_set_annotators_per_pair
from annotation.services.labels import LabelInput, label_submit
from reviewers.models import Escalation
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge, relabel

pytestmark = pytest.mark.django_db


def _settled_then_raised(preferences: list[int], flags=None) -> tuple[Campaign, Pair, list]:
    """A pair settled by three labels, then the campaign's N raised to 5."""
    campaign = CampaignFactory(annotators_per_pair=3, retest_share=0.0, label_change_minutes=30)
    pair = PairFactory(campaign=campaign)
    flags = flags or {}
    labels = [
        judge(campaign, UserFactory(), value, flags=flags.get(n, ()))
        for n, value in enumerate(preferences)
    ]
    assert all(label.pair_id == pair.pk for label in labels)
    pair.refresh_from_db()
    assert pair.provenance != Pair.Provenance.NONE
    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=5)
    return campaign, pair, [label.assignment for label in labels]


def test_a_change_that_puts_a_settled_pair_in_dispute_escalates_it_after_a_raise():
    _campaign, pair, (first, *_others) = _settled_then_raised([2, 2, 2])
    relabel(first, -2)  # -2, 2, 2: opposite directions
    pair.refresh_from_db()
    assert (pair.status, pair.provenance) == (Pair.Status.ESCALATED, Pair.Provenance.MAJORITY)
    assert Escalation.objects.get(pair=pair, status=Escalation.Status.OPEN).reason == (
        Escalation.Reason.OPPOSITE_DIRECTIONS
    )


def test_a_change_that_settles_a_dispute_withdraws_its_escalation_after_a_raise():
    _campaign, pair, (flagger, *_others) = _settled_then_raised([2, 2, 2], flags={0: ("unsafe",)})
    assert pair.status == Pair.Status.ESCALATED
    relabel(flagger, 2)  # the flag taken back
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE
    assert not Escalation.objects.filter(pair=pair, status=Escalation.Status.OPEN).exists()


def test_a_change_moves_a_settled_pairs_consensus_after_a_raise():
    _campaign, pair, (first, second, _third) = _settled_then_raised([2, 2, 2])
    relabel(first, 1)
    relabel(second, 1)  # 1, 1, 2: still A, now "better" rather than "much better"
    pair.refresh_from_db()
    assert (pair.consensus_preference, pair.provenance) == (1, Pair.Provenance.UNANIMOUS)


def test_an_unsettled_pair_still_waits_for_the_new_overlap():
    campaign = CampaignFactory(annotators_per_pair=3, retest_share=0.0, label_change_minutes=30)
    pair = PairFactory(campaign=campaign)
    first = judge(campaign, UserFactory(), 2)
    judge(campaign, UserFactory(), 2)
    judge(campaign, UserFactory(), 2)  # settles it under N = 3
    unsettled = PairFactory(campaign=campaign)
    early = judge(campaign, UserFactory(), 1)
    assert early.pair_id == unsettled.pk and first.pair_id == pair.pk
    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=5)
    relabel(early.assignment, 2)
    unsettled.refresh_from_db()
    assert (unsettled.provenance, unsettled.consensus_preference) == (Pair.Provenance.NONE, None)


def test_a_label_leased_before_its_pair_settled_counts_after_a_raise():
    """N lowered 4 -> 3 with a fourth lease out (its pair keeps it, with no slot to spare), the pair
    settled on three labels by a change, then N raised to 5: the fourth label, leased before
    the pair had a verdict, still counts in its consensus, as it would have under 3."""
    campaign = CampaignFactory(annotators_per_pair=4, retest_share=0.0, label_change_minutes=30)
    pair = PairFactory(campaign=campaign)
    first = judge(campaign, UserFactory(), 2)
    judge(campaign, UserFactory(), 2)
    judge(campaign, UserFactory(), 2)
    lease = assignment_next(campaign=campaign, annotator=UserFactory())
    assert lease is not None and lease.pair_id == pair.pk
    assert lease.kind == Assignment.Kind.REGULAR
    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=3)
    relabel(first.assignment, 2)  # settles it on its three labels
    pair.refresh_from_db()
    assert (pair.provenance, pair.status) == (Pair.Provenance.UNANIMOUS, Pair.Status.COMPLETE)
    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=5)

    shown = 2 if lease.swapped else -2  # canonical -2: B much better
    label_submit(assignment=lease, data=LabelInput(preference=shown))

    pair.refresh_from_db()
    assert (pair.provenance, pair.labels_count) == (Pair.Provenance.MAJORITY, 4)

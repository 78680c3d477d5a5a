"""Lowering a campaign's annotators per pair while leases are out, then one of them lapsing:
the pair's cap follows its slots down to the new N, so the labels still in flight settle it
with no slot left free (the freed slot stayed, and the settled pair served it to the next
annotator as a re-test nobody asked for)."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, Label, Pair
from annotation.services.assignments import assignment_next, assignment_skip
from annotation.services.campaigns import campaign_set_annotators_per_pair
from annotation.services.labels import LabelInput, label_submit
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db


def _submit(assignment: Assignment) -> Label:
    return label_submit(
        assignment=assignment, data=LabelInput(preference=-1 if assignment.swapped else 1)
    )


def test_a_lapse_after_lowering_leaves_no_slot_for_an_unasked_retest():
    campaign = CampaignFactory(annotators_per_pair=3, retest_share=0.0)
    pair = PairFactory(campaign=campaign)
    out = [assignment_next(campaign=campaign, annotator=UserFactory()) for _ in range(3)]
    assert all(lease is not None and lease.pair_id == pair.pk for lease in out)
    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=2)

    assignment_skip(assignment=out[0])
    pair.refresh_from_db()
    assert (pair.slots_taken, pair.slot_cap) == (2, 2)
    _submit(out[1])
    _submit(out[2])

    pair.refresh_from_db()
    assert (pair.status, pair.labels_count) == (Pair.Status.COMPLETE, 2)
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is None
    assert not Assignment.objects.filter(pair=pair, kind=Assignment.Kind.RETEST).exists()


def test_leases_lapsing_below_the_new_n_free_slots_again():
    campaign = CampaignFactory(annotators_per_pair=4, retest_share=0.0)
    pair = PairFactory(campaign=campaign)
    out = [assignment_next(campaign=campaign, annotator=UserFactory()) for _ in range(4)]
    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=2)

    for lease in out[:3]:
        assignment_skip(assignment=lease)
    pair.refresh_from_db()
    assert (pair.slots_taken, pair.slot_cap) == (1, 2)
    taker = assignment_next(campaign=campaign, annotator=UserFactory())
    assert taker is not None and taker.pair_id == pair.pk
    _submit(taker)
    _submit(out[3])
    pair.refresh_from_db()
    assert (pair.status, pair.labels_count) == (Pair.Status.COMPLETE, 2)

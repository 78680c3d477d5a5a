"""A quarantined annotator's label set aside gives its slot back with its orientation, so the
pair's orientations stay balanced (two one way, one the other)."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, CampaignMember, Pair
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from annotation.services.members import member_add, member_quarantine
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_setting_a_swapped_label_aside_frees_a_swapped_slot():
    campaign = CampaignFactory(annotators_per_pair=3, open_to_all=False)
    pair = PairFactory(campaign=campaign)
    first, second, third = UserFactory.create_batch(3)
    for user in (first, second, third):
        member_add(campaign=campaign, user=user)
    shown = {}
    for user in (first, second):
        assignment = assignment_next(campaign=campaign, annotator=user)
        assert assignment is not None and assignment.pair_id == pair.pk
        label_submit(assignment=assignment, data=LabelInput(preference=1))
        shown[user.pk] = assignment.swapped
    assert sorted(shown.values()) == [False, True]  # balanced so far
    swapped_user = first if shown[first.pk] else second
    member = CampaignMember.objects.get(campaign=campaign, user=swapped_user)
    assert member_quarantine(member=member, reason="test") == 1

    pair.refresh_from_db()
    assert (pair.slots_taken, pair.labels_count, pair.swapped_taken) == (1, 1, 0)
    # The freed slot is the swapped one: the next annotator is shown the pair swapped.
    replacement = assignment_next(campaign=campaign, annotator=third)
    assert replacement is not None and replacement.pair_id == pair.pk
    assert replacement.swapped
    pair.refresh_from_db()
    live = Assignment.objects.filter(pair=pair, status=Assignment.Status.ACTIVE)
    assert pair.swapped_taken == 1 == live.filter(swapped=True).count()
    assert pair.status == Pair.Status.IN_ANNOTATION

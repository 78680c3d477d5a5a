from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from annotation.errors import AlreadyFinished, LeaseExpired
from annotation.models import Assignment, Pair
from annotation.services.assignments import (
    assignment_next,
    assignment_skip,
    assignments_expire,
)
from annotation.services.labels import LabelInput, label_submit
from tests.factories import PairFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_it_serves_highest_priority_first_then_oldest(campaign, annotator_a):
    low = PairFactory(campaign=campaign, priority=0)
    high_old = PairFactory(campaign=campaign, priority=5)
    PairFactory(campaign=campaign, priority=5)
    assert low.pk < high_old.pk
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    assert assignment.pair_id == high_old.pk


def test_it_returns_the_current_lease_until_it_is_finished(campaign, annotator_a):
    PairFactory.create_batch(3, campaign=campaign)
    first = assignment_next(campaign=campaign, annotator=annotator_a)
    again = assignment_next(campaign=campaign, annotator=annotator_a)
    assert again.pk == first.pk
    label_submit(assignment=first, data=LabelInput(preference=1))
    following = assignment_next(campaign=campaign, annotator=annotator_a)
    assert following.pk != first.pk and following.pair_id != first.pair_id


def test_it_never_serves_a_pair_twice_to_the_same_annotator(campaign, annotator_a):
    PairFactory.create_batch(2, campaign=campaign)
    seen = []
    while (assignment := assignment_next(campaign=campaign, annotator=annotator_a)) is not None:
        seen.append(assignment.pair_id)
        label_submit(assignment=assignment, data=LabelInput(preference=-1))
    assert len(seen) == len(set(seen)) == 2


def test_it_caps_each_pair_at_annotators_per_pair(campaign):
    pair = PairFactory(campaign=campaign)
    annotators = UserFactory.create_batch(4)
    got = [assignment_next(campaign=campaign, annotator=user) for user in annotators]
    assert [a is not None for a in got] == [True, True, True, False]
    pair.refresh_from_db()
    assert pair.slots_taken == 3
    assert pair.status == Pair.Status.IN_ANNOTATION


def test_an_expired_lease_frees_its_slot_and_rejects_the_late_submit(campaign):
    pair = PairFactory(campaign=campaign)
    first, *others = UserFactory.create_batch(4)
    late = assignment_next(campaign=campaign, annotator=first)
    for user in others[:2]:
        assignment_next(campaign=campaign, annotator=user)
    assert assignment_next(campaign=campaign, annotator=others[2]) is None
    later = timezone.now() + timedelta(seconds=campaign.lease_seconds + 1)
    assert assignments_expire(now=later) == 3
    pair.refresh_from_db()
    assert pair.slots_taken == 0
    with pytest.raises(AlreadyFinished, match=r"already expired"):
        label_submit(assignment=late, data=LabelInput(preference=1))
    assert assignment_next(campaign=campaign, annotator=others[2]).pair_id == pair.pk


def test_a_submit_after_the_lease_ran_out_is_rejected_even_before_the_sweep(campaign, annotator_a):
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    later = timezone.now() + timedelta(seconds=campaign.lease_seconds + 5)
    with pytest.raises(LeaseExpired, match="lease on this pair expired"):
        label_submit(assignment=assignment, data=LabelInput(preference=1), now=later)


def test_skip_frees_the_slot_and_the_pair_never_comes_back(campaign, annotator_a):
    pair = PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    assignment_skip(assignment=assignment)
    pair.refresh_from_db()
    assert pair.slots_taken == 0
    assert assignment_next(campaign=campaign, annotator=annotator_a) is None
    with pytest.raises(AlreadyFinished, match="no longer active"):
        assignment_skip(assignment=assignment)


def test_ab_order_is_randomised_per_assignment_and_stored(campaign):
    PairFactory.create_batch(40, campaign=campaign, slot_cap=1)
    rng = random.Random(7)
    swaps = []
    for user in UserFactory.create_batch(40):
        swaps.append(assignment_next(campaign=campaign, annotator=user, rng=rng).swapped)
    assert 5 < sum(swaps) < 35
    assert Assignment.objects.filter(swapped=True).count() == sum(swaps)


def test_the_database_refuses_a_second_assignment_of_a_pair_to_one_annotator(campaign, annotator_a):
    pair = PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    with pytest.raises(IntegrityError, match="assignment_pair_annotator"):
        Assignment.objects.create(
            campaign=campaign, pair=pair, annotator=annotator_a, swapped=False,
            leased_at=assignment.leased_at, lease_expires_at=assignment.lease_expires_at,
        )


def test_the_database_refuses_slots_over_the_cap(campaign):
    pair = PairFactory(campaign=campaign)
    with pytest.raises(IntegrityError, match="pair_slots_within_cap"):
        Pair.objects.filter(pk=pair.pk).update(slots_taken=pair.slot_cap + 1)

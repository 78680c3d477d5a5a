"""A pair's A/B orientation is balanced across its annotators, not a coin per assignment."""

from __future__ import annotations

import functools
import random
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, connections

from annotation.models import Assignment, Label, Pair
from annotation.services.assignments import (
    assignment_next,
    assignment_skip,
    assignments_expire,
    balanced_swap,
)
from annotation.services.labels import LabelInput, label_submit
from tests.conftest import run_concurrently
from tests.factories import CampaignFactory, PairFactory, UserFactory


def _shown_first_by_pair() -> dict[int, Counter[str]]:
    sides: dict[int, Counter[str]] = {}
    for pair_id, shown_first in Label.objects.values_list("pair_id", "shown_first"):
        sides.setdefault(pair_id, Counter())[shown_first] += 1
    return sides


def _assert_every_completed_pair_balanced(expected_labels: int) -> Counter[str]:
    majorities: Counter[str] = Counter()
    sides = _shown_first_by_pair()
    completed = Pair.objects.filter(status=Pair.Status.COMPLETE).values_list("pk", flat=True)
    assert completed
    for pair_id in completed:
        counts = sides[pair_id]
        assert sum(counts.values()) == expected_labels
        # Three annotators: two one way, one the other.
        assert abs(counts["a"] - counts["b"]) <= 1, (pair_id, counts)
        majorities[counts.most_common(1)[0][0]] += 1
    # The swapped-slot counter agrees with the assignments it counts.
    for pair in Pair.objects.all():
        live = Assignment.objects.filter(
            pair=pair, status__in=[Assignment.Status.ACTIVE, Assignment.Status.SUBMITTED]
        )
        assert pair.swapped_taken == live.filter(swapped=True).count()
    return majorities


@pytest.mark.smoke
def test_the_rule_takes_the_less_used_orientation_and_the_coin_on_a_tie():
    assert balanced_swap(slots_taken=0, swapped_taken=0, coin=True) is True
    assert balanced_swap(slots_taken=0, swapped_taken=0, coin=False) is False
    assert balanced_swap(slots_taken=1, swapped_taken=1, coin=True) is False
    assert balanced_swap(slots_taken=1, swapped_taken=0, coin=False) is True
    assert balanced_swap(slots_taken=2, swapped_taken=1, coin=True) is True


@pytest.mark.smoke  # SQLite takes the ORM path, PostgreSQL the one-statement path
@pytest.mark.django_db
def test_every_completed_pair_is_balanced_and_the_majority_side_is_random():
    campaign = CampaignFactory(annotators_per_pair=3)
    PairFactory.create_batch(40, campaign=campaign)
    users = UserFactory.create_batch(3)
    rng = random.Random(7)
    for user in users:
        while (
            assignment := assignment_next(campaign=campaign, annotator=user, rng=rng)
        ) is not None:
            label_submit(assignment=assignment, data=LabelInput(preference=1))
    majorities = _assert_every_completed_pair_balanced(3)
    # Which side gets two is chosen at random per pair: both occur.
    assert majorities["a"] > 5 and majorities["b"] > 5


@pytest.mark.smoke
@pytest.mark.django_db
def test_a_released_slot_keeps_the_balance():
    campaign = CampaignFactory(annotators_per_pair=3, lease_seconds=60)
    PairFactory(campaign=campaign)
    users = UserFactory.create_batch(5)
    rng = random.Random(3)
    first, second, third = (
        assignment_next(campaign=campaign, annotator=user, rng=rng) for user in users[:3]
    )
    assert first and second and third
    label_submit(assignment=first, data=LabelInput(preference=1))
    # Whichever orientations the skipped and the expired slot had, the next takers fill them.
    assignment_skip(assignment=second)
    assignments_expire(now=third.lease_expires_at + timedelta(seconds=1))
    for user in users[3:]:
        assignment = assignment_next(campaign=campaign, annotator=user, rng=rng)
        assert assignment is not None
        label_submit(assignment=assignment, data=LabelInput(preference=1))
    pair = Pair.objects.get()
    live = Assignment.objects.filter(pair=pair, status=Assignment.Status.SUBMITTED)
    swapped = [a.swapped for a in live]
    assert pair.slots_taken == len(swapped)
    assert pair.swapped_taken == sum(swapped)
    assert abs(2 * sum(swapped) - len(swapped)) <= 1


@pytest.mark.django_db(transaction=True)
def test_orientation_stays_balanced_under_concurrent_annotators():
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED are a PostgreSQL feature")
    campaign = CampaignFactory(annotators_per_pair=3)
    PairFactory.create_batch(30, campaign=campaign)
    users = UserFactory.create_batch(12)

    def annotate(user):
        try:
            while (assignment := assignment_next(campaign=campaign, annotator=user)) is not None:
                label_submit(assignment=assignment, data=LabelInput(preference=1))
        finally:
            connections.close_all()

    run_concurrently([functools.partial(annotate, user) for user in users])
    assert Pair.objects.filter(status=Pair.Status.COMPLETE).count() == 30
    _assert_every_completed_pair_balanced(3)

"""One live lease per annotator and campaign, however many `next` calls arrive at once (two
tabs, a double click, a client's retry): every call answers the same lease, and no other
pair's slot is held for the lease time."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import pytest
from django.db import connection, connections
from django.db.models import Sum

from annotation.models import Assignment, CampaignMember, Pair
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from annotation.services.members import member_add
from tests.conftest import run_concurrently
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

CALLS = 4


def _simultaneous_nexts(campaign, users) -> dict[int, set[int | None]]:
    """Each user asks `CALLS` times at once; the assignment ids each user was answered."""
    barrier = threading.Barrier(CALLS * len(users))

    def ask(user) -> tuple[int, int | None]:
        try:
            barrier.wait(timeout=30)
            assignment = assignment_next(campaign=campaign, annotator=user)
            return user.pk, assignment.pk if assignment is not None else None
        finally:
            connections.close_all()

    answers: dict[int, set[int | None]] = {user.pk: set() for user in users}
    calls: list[Callable[[], tuple[int, int | None]]] = [
        functools.partial(ask, user) for user in users for _ in range(CALLS)
    ]
    for user_id, assignment_id in run_concurrently(calls):
        answers[user_id].add(assignment_id)
    return answers


def _live_leases(campaign) -> dict[int, int]:
    leases: dict[int, int] = {}
    for annotator_id in Assignment.objects.filter(
        campaign=campaign, status=Assignment.Status.ACTIVE
    ).values_list("annotator_id", flat=True):
        leases[annotator_id] = leases.get(annotator_id, 0) + 1
    return leases


def _require_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("simultaneous connections need PostgreSQL (SQLite queues its writers)")


def test_simultaneous_nexts_of_one_annotator_start_one_lease_and_all_answer_it():
    _require_postgresql()
    campaign = CampaignFactory(annotators_per_pair=3)
    PairFactory.create_batch(60, campaign=campaign)
    users = UserFactory.create_batch(6)
    answers = _simultaneous_nexts(campaign, users)
    assert _live_leases(campaign) == {user.pk: 1 for user in users}
    for user in users:
        (assignment_id,) = answers[user.pk]  # every call of theirs got the same lease
        assert Assignment.objects.get(pk=assignment_id).annotator_id == user.pk
    # The slots held are the live leases' and nothing more.
    assert Pair.objects.filter(campaign=campaign).aggregate(n=Sum("slots_taken"))["n"] == 6


def test_simultaneous_nexts_drawing_gold_checks_start_one_lease():
    _require_postgresql()
    campaign = CampaignFactory(annotators_per_pair=3, gold_share=0.5)
    PairFactory.create_batch(30, campaign=campaign)
    PairFactory.create_batch(
        30, campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE
    )
    users = UserFactory.create_batch(6)
    answers = _simultaneous_nexts(campaign, users)
    assert _live_leases(campaign) == {user.pk: 1 for user in users}
    assert all(len(answers[user.pk]) == 1 for user in users)


def test_simultaneous_nexts_of_a_qualifying_member_start_one_gold_check():
    _require_postgresql()
    campaign = CampaignFactory(open_to_all=False, qualification_gold_count=3)
    PairFactory.create_batch(
        10, campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE
    )
    users = UserFactory.create_batch(4)
    for user in users:
        assert member_add(campaign=campaign, user=user).state == CampaignMember.State.QUALIFYING
    answers = _simultaneous_nexts(campaign, users)
    assert _live_leases(campaign) == {user.pk: 1 for user in users}
    assert all(len(answers[user.pk]) == 1 for user in users)


def test_after_a_label_the_next_call_starts_a_new_lease_on_both_databases():
    """The guard queues takes; it never keeps an annotator from their next pair, in a
    transaction of the caller's or not."""
    campaign = CampaignFactory(annotators_per_pair=1)
    PairFactory.create_batch(3, campaign=campaign)
    user = UserFactory()
    seen = []
    while (assignment := assignment_next(campaign=campaign, annotator=user)) is not None:
        seen.append(assignment.pair_id)
        label_submit(assignment=assignment, data=LabelInput(preference=1))
    assert len(seen) == len(set(seen)) == 3


@pytest.mark.django_db
def test_next_calls_inside_one_transaction_pass_their_own_guard():
    campaign = CampaignFactory(annotators_per_pair=1, gold_share=0.5)
    PairFactory.create_batch(4, campaign=campaign)
    PairFactory.create_batch(
        4, campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE
    )
    user = UserFactory()
    served = 0
    while (assignment := assignment_next(campaign=campaign, annotator=user)) is not None:
        served += 1
        label_submit(assignment=assignment, data=LabelInput(preference=1))
    assert served >= 4  # every regular pair, with whatever gold checks the coin drew
    assert not Assignment.objects.filter(campaign=campaign, status="active").exists()

"""The assignment engine under many concurrent annotators, with real database connections."""

from __future__ import annotations

import functools
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models import Count
from django.utils import timezone

from annotation.errors import AlreadyFinished, LeaseExpired
from annotation.models import Assignment, Label, Pair
from annotation.services.assignments import (
    assignment_next,
    assignment_skip,
    assignments_end_for_annotator,
    assignments_expire,
)
from annotation.services.labels import LabelInput, label_submit
from annotation.services.pair_state import pair_take_slot
from tests.conftest import run_concurrently
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _annotate_until_done(campaign, user):
    try:
        while (assignment := assignment_next(campaign=campaign, annotator=user)) is not None:
            label_submit(assignment=assignment, data=LabelInput(preference=1))
    finally:
        connections.close_all()


def test_no_pair_goes_over_n_and_nobody_gets_a_pair_twice():
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED are a PostgreSQL feature")
    campaign = CampaignFactory(annotators_per_pair=3)
    PairFactory.create_batch(40, campaign=campaign)
    users = UserFactory.create_batch(24)
    run_concurrently([functools.partial(_annotate_until_done, campaign, user) for user in users])
    over = Pair.objects.annotate(n=Count("labels")).filter(n__gt=3).count()
    dupes = (
        Assignment.objects.values("pair", "annotator").annotate(n=Count("id")).filter(n__gt=1)
    ).count()
    assert over == 0 and dupes == 0
    # Every pair got exactly its three labels: the work was all done, by different people.
    assert set(Pair.objects.values_list("labels_count", flat=True)) == {3}
    assert Label.objects.count() == 120


def test_expired_leases_are_reassigned_and_late_submits_rejected_under_load():
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED are a PostgreSQL feature")
    campaign = CampaignFactory(annotators_per_pair=2)
    PairFactory.create_batch(10, campaign=campaign)
    sleepers = UserFactory.create_batch(10)
    stale = [assignment_next(campaign=campaign, annotator=user) for user in sleepers]
    later = timezone.now() + timedelta(seconds=campaign.lease_seconds + 1)
    expired = []
    late_results: list[str] = []

    def expire():
        try:
            expired.append(assignments_expire(now=later))
        finally:
            connections.close_all()

    def late_submit(assignment):
        try:
            label_submit(assignment=assignment, data=LabelInput(preference=1), now=later)
            late_results.append("accepted")
        except (LeaseExpired, AlreadyFinished):
            late_results.append("rejected")
        finally:
            connections.close_all()

    run_concurrently([expire] * 3 + [functools.partial(late_submit, a) for a in stale], timeout=60)
    assert sum(expired) == 10
    assert late_results == ["rejected"] * 10
    # The freed slots go to new annotators until every pair has two labels.
    run_concurrently(
        [
            functools.partial(_annotate_until_done, campaign, user)
            for user in UserFactory.create_batch(6)
        ]
    )
    assert set(Pair.objects.values_list("labels_count", flat=True)) == {2}
    assert not Label.objects.filter(annotator__in=sleepers).exists()


def _lease(pair, user, *, swapped):
    now = timezone.now()
    return Assignment.objects.create(
        campaign=pair.campaign,
        pair=pair,
        annotator=user,
        round_id=pair.round_id,
        swapped=swapped,
        leased_at=now,
        lease_expires_at=now + timedelta(minutes=15),
    )


def test_ending_a_members_leases_while_another_takes_the_pair_keeps_the_slot_count(
    campaign, annotator_a, annotator_c
):
    # The ended lease's slot was given back with a recount of the swapped slots whose
    # snapshot predated the pair's row lock: a swapped slot taken meanwhile went uncounted,
    # and when that lease ended its slot never came back (a pair short of its labels forever).
    if connection.vendor != "postgresql":
        pytest.skip("the race needs two PostgreSQL sessions")
    pair = PairFactory(
        campaign=campaign, slots_taken=1, swapped_taken=0, status=Pair.Status.IN_ANNOTATION
    )
    _lease(pair, annotator_c, swapped=False)
    taken, go_on = threading.Event(), threading.Event()
    held = {}

    def take_a_swapped_slot():
        try:
            with transaction.atomic():
                assert pair_take_slot(pair_id=pair.pk, swapped=True)
                held["lease"] = _lease(pair, annotator_a, swapped=True)
                taken.set()
                go_on.wait(10)
                time.sleep(0.5)  # the other session now waits on the pair's row lock
        finally:
            connections.close_all()

    thread = threading.Thread(target=take_a_swapped_slot)
    thread.start()
    assert taken.wait(10)
    go_on.set()
    assignments_end_for_annotator(campaign=campaign, annotator_id=annotator_c.pk)
    thread.join()
    pair.refresh_from_db()
    assert (pair.slots_taken, pair.swapped_taken) == (1, 1)
    assignment_skip(assignment=held["lease"])
    pair.refresh_from_db()
    assert (pair.slots_taken, pair.swapped_taken) == (0, 0)

"""The loop's rounds (review 20v): the activation gate at its tolerance exactly, and an
automatic retrain that read a round done while another closer already advanced the loop."""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction

from annotation.models import Campaign, Pair, Round
from scoring.loop.registry import activation_gate_reason
from scoring.loop.rounds import round_close, round_open_next, rounds_check_completion
from scoring.models import Job
from tests.conftest import start_in_thread, wait_for_a_lock_waiter
from tests.factories import CampaignFactory, PairFactory


@pytest.mark.parametrize(
    ("accuracy", "active", "tolerance"),
    [(0.7, 0.8, 0.1), (140 / 200, 160 / 200, 0.1), (0.6, 0.9, 0.3), (0.45, 0.5, 0.05)],
)
def test_a_version_exactly_the_tolerance_below_the_active_one_is_activated(
    accuracy, active, tolerance
):
    """A version "at most ``activation_tolerance`` below the active one" activates: 0.8 - 0.1 is
    0.7000000000000001 in floating point, which refused 140/200 against 160/200 at 0.1."""
    reason = activation_gate_reason(
        accuracy=accuracy,
        heldout=200,
        active_accuracy=active,
        active_number=2,
        tolerance=tolerance,
    )
    assert reason == ""


def test_a_version_further_below_than_the_tolerance_is_still_refused():
    reason = activation_gate_reason(
        accuracy=139 / 200, heldout=200, active_accuracy=0.8, active_number=2, tolerance=0.1
    )
    assert "more than 0.100 below the active v2" in reason


@pytest.mark.django_db(transaction=True)
def test_an_automatic_retrain_is_not_started_for_a_round_another_loop_already_closed():
    """The completion check reads round 1 done; before it starts its loop job, another loop
    job (a second beat's, or "Retrain now") is created, closes round 1 and opens round 2. The
    check must not then start a second loop, which would close round 2 just opened and return
    its pairs, unseen by anyone, to the pool."""
    if connection.vendor != "postgresql":
        pytest.skip("the check waits on the campaign's row lock (PostgreSQL)")
    campaign = CampaignFactory(auto_retrain=True, round_size=2, random_slice_share=0)
    PairFactory.create_batch(4, campaign=campaign, status=Pair.Status.POOLED)
    first = round_open_next(campaign=campaign)
    Pair.objects.filter(round=first).update(status=Pair.Status.COMPLETE)

    def check() -> list[int]:
        try:
            return rounds_check_completion()
        finally:
            connections.close_all()

    with transaction.atomic():
        # The other closer holds the campaign's row, as creating its model job does.
        Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).first()
        checking = start_in_thread(check)
        wait_for_a_lock_waiter()
        Job.objects.create(campaign=campaign, kind=Job.Kind.LOOP, status=Job.Status.SUCCEEDED)
        assert round_close(campaign=campaign).round.pk == first.pk
        second = round_open_next(campaign=campaign)
    assert second is not None and second.number == 2

    assert checking.result(timeout=60) == []
    assert Job.objects.filter(campaign=campaign, kind=Job.Kind.LOOP).count() == 1
    second.refresh_from_db()
    assert second.status == Round.Status.OPEN
    assert Pair.objects.filter(round=second, status=Pair.Status.QUEUED).count() == 2

"""Claims on escalations: one expert at a time, safe under concurrency, and expiring."""

from __future__ import annotations

import functools
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from annotation.models import Pair
from annotation.roles import Role
from reviewers.errors import AlreadyDecided, ClaimUnavailable, ConflictOfInterest
from reviewers.models import Adjudication, Escalation
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import (
    CLAIM_DURATION,
    escalation_claim,
    escalation_open,
    escalation_release,
)
from tests.conftest import run_concurrently
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label, user_with_role


def _open_escalation(campaign=None) -> Escalation:
    pair = PairFactory(campaign=campaign or CampaignFactory())
    escalation = escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="look")
    assert escalation is not None
    return escalation


@pytest.mark.django_db(transaction=True)
def test_exactly_one_of_many_racing_experts_wins_the_claim():
    if connection.vendor != "postgresql":
        pytest.skip("needs real concurrent transactions (PostgreSQL)")
    escalation = _open_escalation()
    experts = [user_with_role(f"expert{i}", Role.EXPERT) for i in range(12)]
    start = threading.Barrier(len(experts))
    winners: list[int] = []
    losers: list[int] = []

    def claim(expert):
        try:
            start.wait(timeout=30)
            escalation_claim(escalation=Escalation.objects.get(pk=escalation.pk), expert=expert)
            winners.append(expert.pk)
        except ClaimUnavailable:
            losers.append(expert.pk)
        finally:
            connections.close_all()

    run_concurrently([functools.partial(claim, expert) for expert in experts], timeout=60)
    assert len(winners) == 1 and len(losers) == len(experts) - 1
    escalation.refresh_from_db()
    assert escalation.claimed_by_id == winners[0]


@pytest.mark.django_db(transaction=True)
def test_racing_experts_share_an_expired_claim_out_to_exactly_one():
    if connection.vendor != "postgresql":
        pytest.skip("needs real concurrent transactions (PostgreSQL)")
    escalation = _open_escalation()
    sleeper = user_with_role("sleeper", Role.EXPERT)
    long_ago = timezone.now() - CLAIM_DURATION - timedelta(minutes=1)
    escalation_claim(escalation=escalation, expert=sleeper, now=long_ago)
    experts = [user_with_role(f"expert{i}", Role.EXPERT) for i in range(8)]
    start = threading.Barrier(len(experts))
    winners: list[int] = []

    def claim(expert):
        try:
            start.wait(timeout=30)
            escalation_claim(escalation=Escalation.objects.get(pk=escalation.pk), expert=expert)
            winners.append(expert.pk)
        except ClaimUnavailable:
            pass
        finally:
            connections.close_all()

    run_concurrently([functools.partial(claim, expert) for expert in experts], timeout=60)
    assert len(winners) == 1
    escalation.refresh_from_db()
    assert escalation.claimed_by_id == winners[0] != sleeper.pk


@pytest.mark.django_db
def test_a_held_claim_turns_others_away_until_it_expires(expert):
    escalation = _open_escalation()
    other = user_with_role("frank", Role.EXPERT)
    now = timezone.now()
    escalation_claim(escalation=escalation, expert=expert, now=now)
    with pytest.raises(ClaimUnavailable, match="Another expert is reviewing"):
        escalation_claim(escalation=escalation, expert=other, now=now + timedelta(minutes=29))
    claimed = escalation_claim(escalation=escalation, expert=other, now=now + timedelta(minutes=31))
    assert claimed.claimed_by_id == other.pk
    assert claimed.claim_expires_at == now + timedelta(minutes=31) + CLAIM_DURATION


@pytest.mark.django_db
def test_the_holder_can_renew_and_release_the_claim(expert):
    escalation = _open_escalation()
    other = user_with_role("frank", Role.EXPERT)
    now = timezone.now()
    escalation_claim(escalation=escalation, expert=expert, now=now)
    renewed = escalation_claim(
        escalation=escalation, expert=expert, now=now + timedelta(minutes=20)
    )
    assert renewed.claim_expires_at == now + timedelta(minutes=20) + CLAIM_DURATION
    assert escalation_release(escalation=escalation, expert=other) is False
    assert escalation_release(escalation=escalation, expert=expert) is True
    assert escalation_claim(escalation=escalation, expert=other).claimed_by_id == other.pk


@pytest.mark.django_db
def test_nobody_claims_a_pair_they_labelled(admin_user):
    escalation = _open_escalation()
    add_label(escalation.pair, admin_user, 1)
    with pytest.raises(ConflictOfInterest, match="You labelled this pair"):
        escalation_claim(escalation=escalation, expert=admin_user)


@pytest.mark.django_db
def test_a_decided_escalation_cannot_be_claimed(expert):
    escalation = _open_escalation()
    escalation_claim(escalation=escalation, expert=expert)
    adjudication_resolve(
        escalation=escalation, expert=expert, decision="discard", note="Both are wrong."
    )
    with pytest.raises(AlreadyDecided, match="already been decided"):
        escalation_claim(escalation=escalation, expert=user_with_role("frank", Role.EXPERT))


@pytest.mark.django_db(transaction=True)
def test_a_decision_submitted_several_times_at_once_is_recorded_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs real concurrent transactions (PostgreSQL)")
    escalation = _open_escalation()
    expert = user_with_role("hasty", Role.EXPERT)
    escalation_claim(escalation=escalation, expert=expert)
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def decide(preference):
        try:
            start.wait(timeout=30)
            adjudication_resolve(
                escalation=Escalation.objects.get(pk=escalation.pk),
                expert=expert,
                decision="preference",
                preference=preference,
                note="double click",
            )
            outcomes.append("decided")
        except AlreadyDecided:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decide, args=(p,)) for p in (2, 1, -1, -2, 1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["decided"] + ["refused"] * 5
    adjudication = Adjudication.objects.get(escalation=escalation)
    pair = Pair.objects.get(pk=escalation.pair_id)
    assert pair.consensus_preference == adjudication.preference


@pytest.mark.django_db
def test_a_withdrawn_escalation_says_so_to_a_claim_and_to_a_decision(expert):
    escalation = _open_escalation()
    escalation_claim(escalation=escalation, expert=expert)
    # A changed label settled the dispute while the expert was reviewing it.
    Escalation.objects.filter(pk=escalation.pk).update(status=Escalation.Status.WITHDRAWN)
    with pytest.raises(AlreadyDecided, match="withdrawn: a changed label"):
        escalation_claim(escalation=escalation, expert=expert)
    with pytest.raises(AlreadyDecided, match="withdrawn"):
        adjudication_resolve(
            escalation=escalation, expert=expert, decision="preference", preference=1, note="x"
        )

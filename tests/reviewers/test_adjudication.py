"""Adjudication: the expert's decision is final and recorded with who and when."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Pair
from annotation.roles import Role
from reviewers.errors import AlreadyDecided, ClaimRequired, InvalidDecision
from reviewers.models import Adjudication, Escalation
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import CLAIM_DURATION, escalation_claim
from tests.factories import CampaignFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def escalation(campaign) -> Escalation:
    pair = judged_pair(campaign, [2, 0, -1])
    return Escalation.objects.get(pair=pair)


@pytest.mark.smoke
def test_a_decision_updates_the_pair_and_is_final(escalation, expert):
    escalation_claim(escalation=escalation, expert=expert)
    adjudication = adjudication_resolve(
        escalation=escalation,
        expert=expert,
        decision=Adjudication.Decision.PREFERENCE,
        preference=-1,
        note="B answers the question; A does not.",
    )
    assert adjudication.expert == expert
    assert adjudication.created_at is not None
    pair = Pair.objects.get(pk=escalation.pair_id)
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.RESOLVED,
        Pair.Provenance.ADJUDICATED,
        -1,
    )
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.RESOLVED
    with pytest.raises(AlreadyDecided, match="already been decided"):
        adjudication_resolve(
            escalation=escalation, expert=expert, decision="preference", preference=2, note="x"
        )
    other = user_with_role("frank", Role.EXPERT)
    with pytest.raises(AlreadyDecided, match="already been decided"):
        adjudication_resolve(escalation=escalation, expert=other, decision="discard", note="x")
    assert Adjudication.objects.filter(escalation=escalation).count() == 1
    pair.refresh_from_db()
    assert pair.consensus_preference == -1


def test_discarding_marks_the_pair_discarded(escalation, expert):
    escalation_claim(escalation=escalation, expert=expert)
    adjudication = adjudication_resolve(
        escalation=escalation, expert=expert, decision="discard", preference=2, note="Ambiguous."
    )
    assert adjudication.preference is None
    pair = Pair.objects.get(pk=escalation.pair_id)
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.DISCARDED,
        Pair.Provenance.DISCARDED,
        None,
    )


def test_deciding_needs_your_own_unexpired_claim(escalation, expert):
    with pytest.raises(ClaimRequired, match="Claim this escalation"):
        adjudication_resolve(escalation=escalation, expert=expert, decision="discard", note="x")
    now = timezone.now()
    escalation_claim(escalation=escalation, expert=expert, now=now)
    other = user_with_role("frank", Role.EXPERT)
    with pytest.raises(ClaimRequired, match="Claim this escalation"):
        adjudication_resolve(escalation=escalation, expert=other, decision="discard", note="x")
    with pytest.raises(ClaimRequired, match="Claim this escalation"):
        adjudication_resolve(
            escalation=escalation,
            expert=expert,
            decision="discard",
            note="x",
            now=now + CLAIM_DURATION + timedelta(seconds=1),
        )
    assert not Adjudication.objects.exists()


@pytest.mark.parametrize(
    ("decision", "preference", "note", "message"),
    [
        ("preference", None, "no preference given", "preference must be one of"),
        ("preference", 3, "off the scale", "preference must be one of"),
        ("maybe", 1, "unknown decision", "decision must be 'preference' or 'discard'"),
        ("preference", 1, "   ", "a note explaining the decision is required"),
    ],
)
def test_it_rejects_an_incomplete_decision(escalation, expert, decision, preference, note, message):
    escalation_claim(escalation=escalation, expert=expert)
    with pytest.raises(InvalidDecision, match=message):
        adjudication_resolve(
            escalation=escalation,
            expert=expert,
            decision=decision,
            preference=preference,
            note=note,
        )
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.OPEN


def test_a_binary_campaign_accepts_only_binary_preferences(expert):
    campaign = CampaignFactory(scale="binary")
    escalation = Escalation.objects.get(pair=judged_pair(campaign, [1, 1, -1]))
    escalation_claim(escalation=escalation, expert=expert)
    with pytest.raises(InvalidDecision, match=r"preference must be one of \[1, -1\]"):
        adjudication_resolve(
            escalation=escalation, expert=expert, decision="preference", preference=2, note="x"
        )
    adjudication_resolve(
        escalation=escalation, expert=expert, decision="preference", preference=1, note="A."
    )
    assert Pair.objects.get(pk=escalation.pair_id).consensus_preference == 1


def test_the_progress_counter_follows_a_decision_at_once(
    escalation, expert, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    from annotation.selectors import campaign_pair_counts

    cache.clear()
    campaign = escalation.campaign
    assert campaign_pair_counts(campaign=campaign)["escalated"] == 1
    escalation_claim(escalation=escalation, expert=expert)
    with django_capture_on_commit_callbacks(execute=True):
        adjudication_resolve(
            escalation=escalation,
            expert=expert,
            decision=Adjudication.Decision.PREFERENCE,
            preference=1,
            note="A is right.",
        )
    counts = campaign_pair_counts(campaign=campaign)  # well within the counts' 5 s
    assert (counts["escalated"], counts["resolved"]) == (0, 1)

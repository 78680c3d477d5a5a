"""Review 16: an expert taken out of a campaign gives back the escalations they had claimed.

Before, their claim kept the other experts out (409 "another expert is reviewing this pair",
and "take the next" skipped it) until it ran out, up to the claim's 30 minutes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Pair
from annotation.roles import Role
from annotation.services.members import member_add, member_remove
from reviewers.models import Escalation
from reviewers.services.escalations import escalation_claim_next
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def _claimed_by(expert, campaign) -> Escalation:
    pair = PairFactory(campaign=campaign, status=Pair.Status.ESCALATED)
    return Escalation.objects.create(
        campaign=campaign,
        pair=pair,
        reason="disagreement",
        claimed_by=expert,
        claim_expires_at=timezone.now() + timedelta(minutes=30),
    )


def test_a_removed_experts_claims_go_back_to_the_queue():
    campaign, elsewhere = CampaignFactory(open_to_all=False), CampaignFactory(open_to_all=False)
    leaving, staying = (
        user_with_role("leaving", Role.EXPERT),
        user_with_role("staying", Role.EXPERT),
    )
    for target in (campaign, elsewhere):
        member_add(campaign=target, user=leaving, role="expert")
    member_add(campaign=campaign, user=staying, role="expert")
    here, there = _claimed_by(leaving, campaign), _claimed_by(leaving, elsewhere)

    member_remove(campaign=campaign, user_id=leaving.pk)

    here.refresh_from_db()
    there.refresh_from_db()
    assert (here.claimed_by_id, here.claim_expires_at) == (None, None)
    assert there.claimed_by_id == leaving.pk  # still theirs in the campaign they stay in
    assert escalation_claim_next(expert=staying) == here


def test_an_expert_made_an_annotator_gives_back_their_claims_there():
    """Review 19: a demoted expert can no longer open the campaign's escalations (members-only);
    their claims stayed held until they ran out."""
    campaign = CampaignFactory(open_to_all=False)
    demoted = user_with_role("demoted", Role.EXPERT)
    staying = user_with_role("staying", Role.EXPERT)
    member_add(campaign=campaign, user=demoted, role="expert")
    member_add(campaign=campaign, user=staying, role="expert")
    claimed = _claimed_by(demoted, campaign)

    member_add(campaign=campaign, user=demoted, role="annotator")

    claimed.refresh_from_db()
    assert (claimed.claimed_by_id, claimed.claim_expires_at) == (None, None)
    assert escalation_claim_next(expert=staying) == claimed


def test_a_bad_after_on_take_the_next_names_the_field(client):
    """Review 19: the 400 said "campaign"."""
    from django.urls import reverse

    client.force_login(user_with_role("asker", Role.EXPERT))
    response = client.post(reverse("expert-next"), {"after": "9" * 30})  # out of range
    assert response.status_code == 400
    assert "after" in response.content.decode()

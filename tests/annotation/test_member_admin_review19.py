"""Review 19: the Django admin's members screen adds and changes members through member_add,
as the members page and API do. It saved the row as posted: a member added there started
active in a campaign that qualifies its annotators first, and one made an expert there kept
leases they could no longer submit; the user and campaign of a membership could be swapped."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.models import Assignment, CampaignMember
from annotation.roles import Role
from annotation.services.assignments import assignment_next
from annotation.services.members import member_add
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db

ADMIN_URL = "/admin/annotation/campaignmember"


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_a_member_added_in_the_admin_starts_as_the_members_page_starts_them(superuser_client):
    campaign = CampaignFactory(open_to_all=False, qualification_gold_count=2)
    mia = user_with_role("mia")
    added = superuser_client.post(
        f"{ADMIN_URL}/add/", {"campaign": campaign.pk, "user": mia.pk, "role": "annotator"}
    )
    assert added.status_code == 302, added.content[:3000]
    member = CampaignMember.objects.get(campaign=campaign, user=mia)
    assert member.state == CampaignMember.State.QUALIFYING
    assert member.added_by is not None


def test_a_member_made_an_expert_in_the_admin_gives_up_their_leases(superuser_client):
    campaign = CampaignFactory(open_to_all=False)
    pair = PairFactory(campaign=campaign)
    mia = user_with_role("mia")
    member = member_add(campaign=campaign, user=mia)
    lease = assignment_next(campaign=campaign, annotator=mia)
    assert lease is not None

    other = CampaignFactory()
    changed = superuser_client.post(
        f"{ADMIN_URL}/{member.pk}/change/",
        # user and campaign are read-only on a change: what is posted for them is ignored
        {"campaign": other.pk, "user": user_with_role("ada", Role.ADMIN).pk, "role": "expert"},
    )
    assert changed.status_code == 302, changed.content[:3000]

    member.refresh_from_db()
    assert (member.campaign_id, member.user_id, member.role) == (campaign.pk, mia.pk, "expert")
    lease.refresh_from_db()
    assert lease.status != Assignment.Status.ACTIVE
    pair.refresh_from_db()
    assert pair.slots_taken == 0

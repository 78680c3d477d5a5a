"""Review 19c of membership: a role change (leases, a racing removal), invitations of a name
that differs only by case, and deactivated members as re-test takers."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from rest_framework.test import APIClient

from annotation.models import Assignment, CampaignMember
from annotation.roles import Role
from annotation.selectors import retest_taker_exists
from annotation.services.members import member_add, member_remove
from tests.conftest import api_client_for, start_in_thread, wait_for_a_lock_waiter
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role


def _members_url(campaign) -> str:
    return f"/api/campaigns/{campaign.pk}/members"


@pytest.mark.django_db
def test_making_an_annotator_an_expert_member_ends_their_leases_and_frees_the_slots():
    campaign = CampaignFactory(open_to_all=False)
    PairFactory.create_batch(2, campaign=campaign)
    mia, admin = user_with_role("mia"), user_with_role("ada", Role.ADMIN)
    member_add(campaign=campaign, user=mia)
    served = api_client_for(mia).post(f"/api/campaigns/{campaign.pk}/next")
    assignment_id = served.json()["assignment"]["id"]

    changed = api_client_for(admin).post(
        _members_url(campaign), {"username": "mia", "role": "expert"}, format="json"
    )

    assert changed.status_code == 201
    # An expert member cannot submit it (404), so it must not hold the pair's slot either.
    assignment = Assignment.objects.select_related("pair").get(pk=assignment_id)
    assert assignment.status == Assignment.Status.EXPIRED
    assert assignment.pair.slots_taken == 0


@pytest.mark.django_db
def test_a_site_admin_made_an_expert_member_keeps_their_lease():
    campaign = CampaignFactory(open_to_all=False)
    PairFactory(campaign=campaign)
    ada = user_with_role("ada", Role.ADMIN)
    member_add(campaign=campaign, user=ada)
    served = api_client_for(ada).post(f"/api/campaigns/{campaign.pk}/next")
    assignment_id = served.json()["assignment"]["id"]

    member_add(campaign=campaign, user=ada, role=CampaignMember.Role.EXPERT)

    assert Assignment.objects.get(pk=assignment_id).status == Assignment.Status.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_a_role_change_racing_a_removal_answers_409_not_500():
    campaign = CampaignFactory(open_to_all=False)
    mia, admin = user_with_role("mia"), user_with_role("ada", Role.ADMIN)
    member_add(campaign=campaign, user=mia)
    removed, release = threading.Event(), threading.Event()

    def remove() -> None:
        try:
            with transaction.atomic():
                member_remove(campaign=campaign, user_id=mia.pk, by=admin)
                removed.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    def change_role() -> int:
        try:
            client = APIClient(raise_request_exception=False)
            client.force_authenticate(user=admin)
            return client.post(
                _members_url(campaign), {"username": "mia", "role": "expert"}, format="json"
            ).status_code
        finally:
            connections.close_all()

    one = start_in_thread(remove)
    assert removed.wait(timeout=30)
    two = start_in_thread(change_role)
    try:
        wait_for_a_lock_waiter()  # it read the member's row; its UPDATE waits on the removal
    finally:
        release.set()
    one.result(timeout=30)
    assert two.result(timeout=30) == 409
    assert not CampaignMember.objects.filter(campaign=campaign, user=mia).exists()


@pytest.mark.django_db
# "Ｍia": a full-width M, stored as "Mia" (NFKC), so compared as that.
@pytest.mark.parametrize("name", ["Mia", "MIA", "\uff2dia"])
def test_an_invite_of_an_existing_name_in_other_case_is_refused(name):
    campaign = CampaignFactory(open_to_all=False)
    user_with_role("mia")
    admin = user_with_role("ada", Role.ADMIN)

    response = api_client_for(admin).post(_members_url(campaign), {"invite": name}, format="json")

    assert response.status_code == 409
    assert "'mia' exists already" in response.json()["detail"]
    assert not get_user_model().objects.filter(username=name).exists()
    assert not CampaignMember.objects.filter(campaign=campaign).exists()


@pytest.mark.django_db
def test_an_invitation_answers_the_name_as_stored():
    campaign = CampaignFactory(open_to_all=False)
    admin = user_with_role("ada", Role.ADMIN)

    response = api_client_for(admin).post(
        _members_url(campaign), {"invite": "\uff3aed"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["added"] == ["Zed"]
    assert get_user_model().objects.filter(username="Zed").exists()


@pytest.mark.django_db
def test_a_deactivated_member_is_no_retest_taker():
    campaign = CampaignFactory(open_to_all=False)
    pair = PairFactory(campaign=campaign)
    leaver = user_with_role("mia")
    member_add(campaign=campaign, user=leaver)
    assert retest_taker_exists(campaign=campaign, pair_id=pair.pk)

    leaver.is_active = False
    leaver.save(update_fields=["is_active"])

    # Nobody could log in to take it: a re-test slot opened now would stay empty for good.
    assert not retest_taker_exists(campaign=campaign, pair_id=pair.pk)

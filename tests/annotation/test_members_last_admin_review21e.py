"""Review 21e of membership: a campaign admin cannot take the campaign's last admin away
(removing or demoting themselves, or two admins demoting each other at once), which left
its members and dashboard to the site admins alone."""

from __future__ import annotations

import threading

import pytest
from django.db import connections, transaction
from django.test import Client

from annotation.models import CampaignMember
from annotation.roles import Role
from annotation.services.members import member_add, member_remove
from core.errors import Conflict
from tests.conftest import api_client_for, start_in_thread, wait_for_a_lock_waiter
from tests.factories import CampaignFactory
from tests.reviewers.factories import user_with_role


def _campaign_with_admin(name: str = "boss"):
    campaign = CampaignFactory(open_to_all=False)
    boss = user_with_role(name)  # no site role: their rights come from the membership
    member_add(campaign=campaign, user=boss, role=CampaignMember.Role.ADMIN)
    return campaign, boss


def _role_of(campaign, user) -> str | None:
    member = CampaignMember.objects.filter(campaign=campaign, user=user).first()
    return member.role if member is not None else None


@pytest.mark.django_db
def test_the_last_campaign_admin_cannot_remove_themselves_through_the_api():
    campaign, boss = _campaign_with_admin()

    response = api_client_for(boss).delete(f"/api/campaigns/{campaign.pk}/members/{boss.pk}")

    assert response.status_code == 409
    assert response.json()["code"] == "last_admin"
    assert _role_of(campaign, boss) == CampaignMember.Role.ADMIN


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["annotator", "expert"])
def test_the_last_campaign_admin_cannot_demote_themselves(role):
    campaign, boss = _campaign_with_admin()

    response = api_client_for(boss).post(
        f"/api/campaigns/{campaign.pk}/members", {"username": "boss", "role": role}, format="json"
    )

    assert response.status_code == 409
    assert _role_of(campaign, boss) == CampaignMember.Role.ADMIN
    # Still theirs to manage.
    assert api_client_for(boss).get(f"/api/campaigns/{campaign.pk}/members").status_code == 200


@pytest.mark.django_db
def test_the_members_page_says_why_the_last_admin_stays():
    campaign, boss = _campaign_with_admin()
    client = Client()
    client.force_login(boss)

    response = client.post(f"/campaigns/{campaign.pk}/members/{boss.pk}/", {"action": "remove"})

    assert response.status_code == 409
    assert "last admin" in response.content.decode()
    assert _role_of(campaign, boss) == CampaignMember.Role.ADMIN


@pytest.mark.django_db
def test_an_admin_may_leave_or_step_down_while_another_active_admin_stays():
    campaign, boss = _campaign_with_admin()
    deputy = user_with_role("deputy")
    member_add(campaign=campaign, user=deputy, role=CampaignMember.Role.ADMIN)
    client = api_client_for(boss)

    demoted = client.post(
        f"/api/campaigns/{campaign.pk}/members",
        {"username": "deputy", "role": "annotator"},
        format="json",
    )
    assert demoted.status_code == 201
    # Now boss is the last one again.
    assert client.delete(f"/api/campaigns/{campaign.pk}/members/{boss.pk}").status_code == 409

    member_add(campaign=campaign, user=deputy, role=CampaignMember.Role.ADMIN)
    assert client.delete(f"/api/campaigns/{campaign.pk}/members/{boss.pk}").status_code == 204
    assert _role_of(campaign, boss) is None


@pytest.mark.django_db
def test_a_deactivated_admin_does_not_count_as_the_one_left():
    campaign, boss = _campaign_with_admin()
    leaver = user_with_role("leaver")
    member_add(campaign=campaign, user=leaver, role=CampaignMember.Role.ADMIN)
    leaver.is_active = False
    leaver.save(update_fields=["is_active"])

    response = api_client_for(boss).delete(f"/api/campaigns/{campaign.pk}/members/{boss.pk}")

    assert response.status_code == 409
    # Removing the deactivated one takes no working admin away.
    gone = api_client_for(boss).delete(f"/api/campaigns/{campaign.pk}/members/{leaver.pk}")
    assert gone.status_code == 204


@pytest.mark.django_db
def test_a_site_admin_may_remove_the_last_admin_member():
    campaign, boss = _campaign_with_admin()
    ada = user_with_role("ada", Role.ADMIN)

    response = api_client_for(ada).delete(f"/api/campaigns/{campaign.pk}/members/{boss.pk}")

    assert response.status_code == 204  # the campaign stays the site admins'
    assert _role_of(campaign, boss) is None


@pytest.mark.django_db
def test_an_admin_of_another_campaign_cannot_touch_these_members():
    campaign, _boss = _campaign_with_admin()
    other, stranger = _campaign_with_admin("stranger")
    mia = user_with_role("mia")
    member_add(campaign=campaign, user=mia)
    client = api_client_for(stranger)

    assert client.get(f"/api/campaigns/{campaign.pk}/members").status_code == 404
    assert client.delete(f"/api/campaigns/{campaign.pk}/members/{mia.pk}").status_code == 404
    assert (
        client.post(
            f"/api/campaigns/{campaign.pk}/members", {"username": "stranger", "role": "admin"}
        ).status_code
        == 404
    )
    assert _role_of(campaign, mia) == CampaignMember.Role.ANNOTATOR
    assert _role_of(campaign, stranger) is None
    assert other.pk != campaign.pk


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin():
    campaign, boss = _campaign_with_admin()
    deputy = user_with_role("deputy")
    member_add(campaign=campaign, user=deputy, role=CampaignMember.Role.ADMIN)
    demoted, release = threading.Event(), threading.Event()

    def boss_demotes_deputy() -> None:
        try:
            with transaction.atomic():
                member_add(
                    campaign=campaign, user=deputy, role=CampaignMember.Role.ANNOTATOR, by=boss
                )
                demoted.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    def deputy_removes_boss() -> str:
        try:
            member_remove(campaign=campaign, user_id=boss.pk, by=deputy)
            return "removed"
        except Conflict as error:
            return error.code
        finally:
            connections.close_all()

    one = start_in_thread(boss_demotes_deputy)
    assert demoted.wait(timeout=30)
    two = start_in_thread(deputy_removes_boss)
    try:
        wait_for_a_lock_waiter()  # deputy's check waits for boss's change to commit
    finally:
        release.set()
    one.result(timeout=30)
    assert two.result(timeout=30) == "last_admin"
    assert _role_of(campaign, boss) == CampaignMember.Role.ADMIN
    assert _role_of(campaign, deputy) == CampaignMember.Role.ANNOTATOR

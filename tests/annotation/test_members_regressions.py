"""Regressions of the members pages and API: racing invites, bulk CSV uploads, the navigation."""

from __future__ import annotations

import io
import threading

import pytest
from django.db import connections, transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import CampaignMember
from annotation.services.members import member_add, member_invite
from tests.conftest import start_in_thread, wait_for_a_lock_waiter
from tests.factories import CampaignFactory, UserFactory
from tests.reviewers.factories import user_with_role


def _campaign_with_admin():
    campaign = CampaignFactory(open_to_all=False)
    cam = UserFactory(username="cam")
    member_add(campaign=campaign, user=cam, role=CampaignMember.Role.ADMIN)
    return campaign, cam


def _members(campaign) -> set[str]:
    return set(
        CampaignMember.objects.filter(campaign=campaign).values_list("user__username", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_invites_of_one_name_answer_409_not_500():
    campaign, cam = _campaign_with_admin()
    first_invited, release_first = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                member_invite(campaign=campaign, username="newbie", by=cam)
                first_invited.set()
                release_first.wait(timeout=30)
        finally:
            connections.close_all()

    def second() -> int:
        try:
            client = APIClient(raise_request_exception=False)
            client.force_authenticate(user=cam)
            return client.post(
                f"/api/campaigns/{campaign.pk}/members", {"invite": "newbie"}, format="json"
            ).status_code
        finally:
            connections.close_all()

    one = start_in_thread(first)
    assert first_invited.wait(timeout=30)
    two = start_in_thread(second)
    try:
        wait_for_a_lock_waiter()  # its exists() saw nothing; its insert waits on the first's
    finally:
        release_first.set()
    one.result(timeout=30)
    assert two.result(timeout=30) == 409
    assert _members(campaign) == {"cam", "newbie"}


def _post_bulk(campaign, user, upload: io.BytesIO):
    upload.name = "members.csv"
    client = Client()
    client.force_login(user)
    return client.post(
        f"/campaigns/{campaign.pk}/members/change",
        {"action": "bulk", "role": "annotator", "csv_file": upload},
    )


def test_an_upload_over_a_megabyte_is_refused_not_cut_into_another_users_name(db):
    campaign, cam = _campaign_with_admin()
    for name in ("bob", "al", "alice"):
        UserFactory(username=name)
    # The first 1,000,000 bytes end in "al": read that far only, the file named "al".
    head = "".join(f"bob,{'x' * 99_995}\n" for _ in range(9)) + f"bob,{'x' * 99_993}\n"
    assert len(head.encode()) == 999_998

    response = _post_bulk(campaign, cam, io.BytesIO((head + "alice,note\n").encode()))

    assert response.status_code == 400
    assert "over 1 MB" in response.content.decode()
    assert _members(campaign) == {"cam"}


def test_an_upload_of_exactly_a_megabyte_is_read_whole(db):
    campaign, cam = _campaign_with_admin()
    UserFactory(username="bob")
    UserFactory(username="alice")
    head = "".join(f"bob,{'x' * 99_995}\n" for _ in range(9)) + f"bob,{'x' * 99_984}\n"
    body = (head + "alice,note\n").encode()
    assert len(body) == 1_000_000

    response = _post_bulk(campaign, cam, io.BytesIO(body))

    assert response.status_code == 302
    assert _members(campaign) == {"cam", "bob", "alice"}


def test_an_excel_csv_with_a_byte_order_mark_is_read(db):
    campaign, cam = _campaign_with_admin()
    UserFactory(username="alice")
    UserFactory(username="bob")

    response = _post_bulk(
        campaign, cam, io.BytesIO("username\r\nalice\r\nbob\r\n".encode("utf-8-sig"))
    )

    assert response.status_code == 302
    assert _members(campaign) == {"cam", "alice", "bob"}


def test_the_api_csv_field_with_a_byte_order_mark_is_read(db):
    campaign, cam = _campaign_with_admin()
    UserFactory(username="alice")
    client = APIClient()
    client.force_authenticate(user=cam)

    response = client.post(
        f"/api/campaigns/{campaign.pk}/members", {"csv": "\ufeffalice\n"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert _members(campaign) == {"cam", "alice"}


_CAMPAIGN_LINKS = (
    "campaign-agreement",
    "annotator-quality",
    "scoring-campaign-models",
    "import-page",
)


def test_campaign_admin_sees_the_campaign_pages_in_the_navigation(db):
    campaign, cam = _campaign_with_admin()
    client = Client()
    client.force_login(cam)

    page = client.get(reverse("campaign-dashboard", args=[campaign.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    for name in _CAMPAIGN_LINKS:
        url = reverse(name, args=[campaign.pk])
        assert f'href="{url}"' in html, name
        assert client.get(url).status_code == 200, name  # each link opens for them
    # The site-wide pages stay for site admins.
    for url in (reverse("dashboard"), reverse("tools-corpora"), reverse("admin:index")):
        assert f'href="{url}"' not in html, url


def test_an_annotator_member_sees_no_campaign_admin_links(db):
    campaign, _ = _campaign_with_admin()
    mia = user_with_role("mia")  # an annotator
    member_add(campaign=campaign, user=mia)
    client = Client()
    client.force_login(mia)

    page = client.get(reverse("campaign-detail", args=[campaign.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    for name in (*_CAMPAIGN_LINKS, "campaign-dashboard"):
        assert reverse(name, args=[campaign.pk]) not in html, name


def test_an_admin_of_another_campaign_sees_no_links_to_this_one(db):
    campaign = CampaignFactory(open_to_all=True)
    oac = user_with_role("oac")  # an annotator, and admin of another campaign only
    member_add(campaign=CampaignFactory(), user=oac, role=CampaignMember.Role.ADMIN)
    client = Client()
    client.force_login(oac)

    page = client.get(reverse("campaign-detail", args=[campaign.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    for name in (*_CAMPAIGN_LINKS, "campaign-dashboard"):
        assert reverse(name, args=[campaign.pk]) not in html, name

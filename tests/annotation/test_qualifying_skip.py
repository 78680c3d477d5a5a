"""A qualifying member is served gold checks only, and never stalls for want of one: a check
cannot be skipped (409), a check whose lease ran out (or one skipped before) is served again
when no other gold pair is left, and a member for whom the campaign has too few gold pairs
shows so on the members page. Through the real API, engine and hooks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, CampaignMember, Pair
from annotation.roles import Role
from annotation.services.assignments import assignments_expire
from annotation.services.members import member_add, member_remove
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def _campaign(*, gold_pairs: int, required: int = 3, **fields):  # noqa: ANN202
    campaign = CampaignFactory(
        open_to_all=False,
        qualification_gold_count=required,
        qualification_threshold=0.66,
        **fields,
    )
    for _ in range(gold_pairs):
        PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    PairFactory.create_batch(2, campaign=campaign)
    return campaign


def _take(client, campaign) -> Assignment:  # noqa: ANN001
    taken = client.post(f"/api/campaigns/{campaign.pk}/next")
    assert taken.status_code == 200, (taken.status_code, getattr(taken, "data", None))
    return Assignment.objects.get(pk=taken.json()["assignment"]["id"])


def _answer(client, assignment: Assignment, *, canonical: int = 1) -> None:  # noqa: ANN001
    shown = -canonical if assignment.swapped else canonical
    labelled = client.post(
        f"/api/assignments/{assignment.pk}/label", {"preference": shown}, format="json"
    )
    assert labelled.status_code == 201, labelled.json()


def test_a_qualification_check_cannot_be_skipped_and_the_member_is_still_admitted():
    campaign = _campaign(gold_pairs=3)
    user = user_with_role("quinn")
    member = member_add(campaign=campaign, user=user)
    client = api_client_for(user)
    check = _take(client, campaign)
    assert check.kind == Assignment.Kind.GOLD

    skipped = client.post(f"/api/assignments/{check.pk}/skip")

    assert skipped.status_code == 409
    assert skipped.json()["code"] == "qualification_check"
    assert "cannot be skipped" in skipped.json()["detail"]
    check.refresh_from_db()
    assert check.status == Assignment.Status.ACTIVE  # still theirs to answer
    assert _take(client, campaign).pk == check.pk
    _answer(client, check)
    for _ in range(2):
        _answer(client, _take(client, campaign))
    member.refresh_from_db()
    assert member.state == CampaignMember.State.ACTIVE
    assert _take(client, campaign).kind == Assignment.Kind.REGULAR


def test_the_workspace_says_why_a_qualification_check_stays():
    campaign = _campaign(gold_pairs=3)
    user = user_with_role("quincy")
    member_add(campaign=campaign, user=user)
    check = _take(api_client_for(user), campaign)
    browser = Client()
    browser.force_login(user)

    page = browser.post(reverse("assignment-skip", args=[check.pk]))

    assert page.status_code == 409
    assert "A qualification check cannot be skipped" in page.content.decode()
    check.refresh_from_db()
    assert check.status == Assignment.Status.ACTIVE


def test_an_active_member_may_still_skip_a_gold_check():
    campaign = CampaignFactory(gold_share=1.0)
    PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    user = user_with_role("gail")
    client = api_client_for(user)
    check = _take(client, campaign)
    assert check.kind == Assignment.Kind.GOLD
    assert client.post(f"/api/assignments/{check.pk}/skip").status_code == 204


def test_a_check_whose_lease_ran_out_is_served_again_when_no_other_gold_is_left():
    campaign = _campaign(gold_pairs=3)
    user = user_with_role("wanda")
    member = member_add(campaign=campaign, user=user)
    client = api_client_for(user)
    walked_away = _take(client, campaign)
    later = timezone.now() + timedelta(seconds=campaign.lease_seconds + 60)
    assert assignments_expire(now=later) == 1

    served = [_take(client, campaign) for _ in range(1)]
    _answer(client, served[0])
    served.append(_take(client, campaign))
    _answer(client, served[1])
    # Both other gold pairs answered: the one that ran out comes back, not "no work".
    again = _take(client, campaign)

    assert again.pk == walked_away.pk and again.status == Assignment.Status.ACTIVE
    assert again.lease_expires_at > timezone.now()
    _answer(client, again)
    member.refresh_from_db()
    assert member.state == CampaignMember.State.ACTIVE


def test_a_re_added_member_is_served_the_gold_check_they_skipped_before():
    """Skipped while active (allowed), then removed and added again: the qualification needs
    all three gold pairs, one of them the skipped one."""
    campaign = _campaign(gold_pairs=3, gold_share=1.0)
    user = user_with_role("rita")
    CampaignMember.objects.create(campaign=campaign, user=user, state=CampaignMember.State.ACTIVE)
    client = api_client_for(user)
    skipped = _take(client, campaign)
    assert skipped.kind == Assignment.Kind.GOLD
    assert client.post(f"/api/assignments/{skipped.pk}/skip").status_code == 204
    member_remove(campaign=campaign, user_id=user.pk)
    member = member_add(campaign=campaign, user=user)
    assert member.state == CampaignMember.State.QUALIFYING

    served = []
    for _ in range(3):
        served.append(_take(client, campaign))
        _answer(client, served[-1])

    assert skipped.pk in {assignment.pk for assignment in served}
    member.refresh_from_db()
    assert member.state == CampaignMember.State.ACTIVE


def test_too_few_gold_pairs_show_on_the_members_page_instead_of_a_silent_stall():
    campaign = _campaign(gold_pairs=2)
    user = user_with_role("stella")
    member = member_add(campaign=campaign, user=user)
    client = api_client_for(user)
    for _ in range(2):
        _answer(client, _take(client, campaign))

    assert client.post(f"/api/campaigns/{campaign.pk}/next").status_code == 204

    member.refresh_from_db()
    assert member.state == CampaignMember.State.QUALIFYING
    assert member.qualification["outcome"] == "no gold left"
    admin = user_with_role("ada", Role.ADMIN)
    browser = Client()
    browser.force_login(admin)
    page = browser.get(reverse("campaign-members", args=[campaign.pk])).content.decode()
    assert "2/2 of 3 gold correct" in page
    assert "no gold pair left to serve" in page
    listed = api_client_for(admin).get(f"/api/campaigns/{campaign.pk}/members").json()
    (row,) = [row for row in listed if row["username"] == "stella"]
    assert row["qualification"]["outcome"] == "no gold left"

    # More gold arrives: the member is served again and qualifies.
    PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    _answer(client, _take(client, campaign))
    member.refresh_from_db()
    assert member.state == CampaignMember.State.ACTIVE
    assert member.qualification["outcome"] == "passed"

"""A campaign admin re-issues a pending invitee's set-password link; nobody else's account."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import CampaignMember
from annotation.services.members import member_add
from tests.factories import CampaignFactory, UserFactory
from tests.reviewers.factories import user_with_role

User = get_user_model()
NEW_PASSWORD = "a-Long-new-passphrase-42"  # noqa: S105 - a test user's


def _migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


@pytest.fixture
def back_to_leaf():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def _campaign_with_admin(name: str = "cam"):
    campaign = CampaignFactory(open_to_all=False)
    cam = UserFactory(username=name)
    member_add(campaign=campaign, user=cam, role=CampaignMember.Role.ADMIN)
    return campaign, cam


def _api(user) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=user)
    return client


def _invite(client: APIClient, campaign, name: str = "newbie"):
    return client.post(f"/api/campaigns/{campaign.pk}/members", {"invite": name}, format="json")


def _resend(client: APIClient, campaign, user_id: int):
    return client.post(
        f"/api/campaigns/{campaign.pk}/members/{user_id}",
        {"action": "resend_invitation"},
        format="json",
    )


def _link_works(url: str) -> bool:
    page = Client().get(url, follow=True)
    assert page.status_code == 200
    return bool(page.context["validlink"])


def _set_password(url: str, password: str = NEW_PASSWORD) -> None:
    browser = Client()
    form = browser.get(url, follow=True)
    assert form.context["validlink"]
    done = browser.post(
        form.redirect_chain[-1][0], {"new_password1": password, "new_password2": password}
    )
    assert done.status_code == 302


def test_a_pending_invitee_gets_a_new_link_and_the_old_one_dies(db):
    campaign, cam = _campaign_with_admin()
    client = _api(cam)
    invited = _invite(client, campaign)
    assert invited.status_code == 201
    old_url, user_id = invited.json()["set_password_url"], invited.json()["user_id"]

    listed = client.get(f"/api/campaigns/{campaign.pk}/members").json()
    assert {row["username"]: row["invitation_pending"] for row in listed} == {
        "cam": False,
        "newbie": True,
    }
    # Inviting the name again still creates nothing, and says what to do instead.
    again = _invite(client, campaign, "Newbie")
    assert again.status_code == 409
    assert again.json()["code"] == "invitation_pending"

    resent = _resend(client, campaign, user_id)

    assert resent.status_code == 200
    body = resent.json()
    assert body["username"] == "newbie" and body["invitation_pending"] is True
    new_url = body["set_password_url"]
    assert new_url != old_url
    assert not _link_works(old_url)  # the password hash the token was made from is gone
    assert _link_works(new_url)
    _set_password(new_url)
    assert User.objects.get(pk=user_id).check_password(NEW_PASSWORD)

    # Once the password is set, the account is theirs: no more links from the campaign.
    after = _resend(client, campaign, user_id)
    assert after.status_code == 409 and after.json()["code"] == "not_pending_invitee"
    assert User.objects.get(pk=user_id).check_password(NEW_PASSWORD)
    assert _invite(client, campaign).json()["code"] != "invitation_pending"


def test_the_members_page_resends_and_the_expired_page_says_how(db):
    campaign, cam = _campaign_with_admin()
    page = Client()
    page.force_login(cam)
    invited = page.post(
        reverse("campaign-members-change", args=[campaign.pk]),
        {"action": "invite", "username": "newbie", "role": "annotator"},
        follow=True,
    )
    assert invited.status_code == 200
    html = invited.content.decode()
    assert 'data-testid="invitation-pending"' in html and 'value="resend_invitation"' in html
    user = User.objects.get(username="newbie")
    old_path = next(
        str(m).split(": ")[-1] for m in invited.context["messages"] if "one-time link" in str(m)
    )

    resent = page.post(
        reverse("campaign-member", args=[campaign.pk, user.pk]),
        {"action": "resend_invitation"},
        follow=True,
    )

    assert resent.status_code == 200
    notice = next(str(m) for m in resent.context["messages"] if "New invitation" in str(m))
    new_path = notice.split(": ")[-1]
    assert new_path != old_path and _link_works(new_path)
    dead = Client().get(old_path, follow=True)
    assert dead.context["validlink"] is False
    assert "resend your invitation" in dead.content.decode()

    _set_password(new_path)
    refused = page.post(
        reverse("campaign-member", args=[campaign.pk, user.pk]), {"action": "resend_invitation"}
    )
    assert refused.status_code == 409
    assert "only a site admin can reset" in refused.content.decode()
    assert 'data-testid="invitation-pending"' not in refused.content.decode()


def _pending_lookalike(name: str):
    """An account that looks like an invitee (no password, never logged in, annotator)."""
    user = user_with_role(name)
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return user


def _password_of(user) -> str:
    return User.objects.get(pk=user.pk).password


def test_nobody_but_this_campaigns_pending_invitee_gets_a_link(db):
    campaign, cam = _campaign_with_admin()
    other, other_admin = _campaign_with_admin("other-cam")
    client = _api(cam)

    # Another campaign's invitee, added here: still theirs.
    theirs = _invite(_api(other_admin), other, "theirs").json()["user_id"]
    member_add(campaign=campaign, user=User.objects.get(pk=theirs), by=cam)
    # Accounts a campaign admin merely added: an annotator with a password, a token-only
    # account that never logged in, a service account, a staff user.
    active = user_with_role("active")
    token_only = _pending_lookalike("token-only")
    service = _pending_lookalike("service")
    service.groups.add(Group.objects.get_or_create(name="scoring-service")[0])
    staff = _pending_lookalike("staff")
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    for user in (active, token_only, service, staff):
        member_add(campaign=campaign, user=user, by=cam)
    # This campaign's invitee whom a site admin then gave staff rights or another group.
    promoted = _invite(client, campaign, "promoted").json()["user_id"]
    User.objects.filter(pk=promoted).update(is_staff=True)
    grouped = _invite(client, campaign, "grouped").json()["user_id"]
    User.objects.get(pk=grouped).groups.add(Group.objects.get_or_create(name="scoring-service")[0])
    logged_in = _invite(client, campaign, "logged-in").json()["user_id"]
    User.objects.filter(pk=logged_in).update(last_login="2026-12-01T00:00:00Z")

    ids = [theirs, active.pk, token_only.pk, service.pk, staff.pk, promoted, grouped, logged_in]
    before = {pk: _password_of(User(pk=pk)) for pk in ids}
    for pk in ids:
        answer = _resend(client, campaign, pk)
        assert answer.status_code == 409, (pk, answer.content)
        assert "set_password_url" not in answer.json()
        assert _invite(client, campaign, User.objects.get(pk=pk).username).status_code == 409
    assert {pk: _password_of(User(pk=pk)) for pk in ids} == before

    # The other campaign's admin cannot reach this campaign's invitee, nor a non-member.
    ours = _invite(client, campaign, "ours").json()["user_id"]
    assert _resend(_api(other_admin), campaign, ours).status_code == 404
    assert _resend(_api(other_admin), other, ours).status_code == 404
    assert _resend(client, campaign, cam.pk + 10_000).status_code == 404
    # An annotator of the campaign is no admin of it.
    annotator = user_with_role("annot")
    member_add(campaign=campaign, user=annotator, by=cam)
    assert _resend(_api(annotator), campaign, ours).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_migration_marks_invitations_made_before_it(back_to_leaf):
    campaign, cam = _campaign_with_admin()
    invited = _invite(_api(cam), campaign).json()["user_id"]
    token_only = _pending_lookalike("token-only")
    member_add(campaign=campaign, user=token_only, by=cam)
    # The lookalike's account is days older than its membership, as an added account's is.
    User.objects.filter(pk=token_only.pk).update(date_joined="2026-11-01T00:00:00Z")

    _migrate([("annotation", "0030_quarantine_unreachable_off")])
    _migrate([("annotation", "0031_member_invited_at")])

    marked = dict(
        CampaignMember.objects.filter(campaign=campaign).values_list("user_id", "invited_at")
    )
    assert marked[invited] is not None
    assert marked[token_only.pk] is None and marked[cam.pk] is None
    assert _resend(_api(cam), campaign, invited).status_code == 200
    assert _resend(_api(cam), campaign, token_only.pk).status_code == 409

"""Account flows under hostile input: invitation links, login, logout and sessions."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import CampaignMember
from annotation.roles import Role
from annotation.services.members import member_add, member_invite, member_remove
from annotation.services.users import user_create
from tests.factories import CampaignFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

User = get_user_model()
NEW_PASSWORD = "a-Long-new-passphrase-42"  # noqa: S105 - a test user's


def _campaign_admin():
    campaign = CampaignFactory(open_to_all=False)
    cam = UserFactory(username="cam")
    member_add(campaign=campaign, user=cam, role=CampaignMember.Role.ADMIN)
    return campaign, cam


def _link_works(path: str) -> bool:
    page = Client().get(path, follow=True)
    assert page.status_code == 200
    return bool(page.context["validlink"])


def _logs_in(username: str, password: str) -> bool:
    answer = Client().post(reverse("login"), {"username": username, "password": password})
    return answer.status_code == 302


def _set_password_through(path: str) -> int:
    browser = Client()
    form = browser.get(path, follow=True)
    done = browser.post(
        form.redirect_chain[-1][0] if form.redirect_chain else path,
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    return done.status_code


# --- invitation links ---------------------------------------------------------------------


def test_removing_a_pending_invitee_kills_their_link():
    campaign, cam = _campaign_admin()
    invitation = member_invite(campaign=campaign, username="newbie", by=cam)
    user = invitation.member.user
    assert _link_works(invitation.set_password_path)

    member_remove(campaign=campaign, user_id=user.pk, by=cam)

    assert not _link_works(invitation.set_password_path)
    _set_password_through(invitation.set_password_path)
    user.refresh_from_db()
    assert not user.has_usable_password()
    assert not _logs_in("newbie", NEW_PASSWORD)


def test_removing_a_member_who_has_a_password_leaves_it_alone():
    campaign, cam = _campaign_admin()
    invitation = member_invite(campaign=campaign, username="newbie", by=cam)
    assert _set_password_through(invitation.set_password_path) == 302

    member_remove(campaign=campaign, user_id=invitation.member.user.pk, by=cam)

    assert _logs_in("newbie", NEW_PASSWORD)


def test_a_deactivated_invitees_link_does_not_work():
    campaign, cam = _campaign_admin()
    invitation = member_invite(campaign=campaign, username="newbie", by=cam)
    user = invitation.member.user
    user.is_active = False
    user.save()

    assert not _link_works(invitation.set_password_path)
    _set_password_through(invitation.set_password_path)
    user.refresh_from_db()
    assert not user.has_usable_password()


@pytest.mark.parametrize(
    ("uidb64", "token"),
    [
        ("AA", "set-password"),  # decodes to a NUL
        ("OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "abc-def"),  # an id past any integer column
        ("%00", "abc-def"),
        ("MQ", "x" * 5000),
        ("!!!!", "abc-def"),
        ("MQ", "%00-%00"),
    ],
)
def test_a_malformed_link_is_a_dead_link_not_an_error(uidb64, token):
    UserFactory()
    page = Client(raise_request_exception=False).get(f"/reset/{uidb64}/{token}/", follow=True)
    assert page.status_code in (200, 404)
    if page.status_code == 200:
        assert page.context["validlink"] is False


def test_a_password_with_a_nul_is_refused_not_an_error():
    campaign, cam = _campaign_admin()
    invitation = member_invite(campaign=campaign, username="newbie", by=cam)
    browser = Client(raise_request_exception=False)
    form = browser.get(invitation.set_password_path, follow=True)
    bad = "a-Long-\x00-passphrase-42"
    answer = browser.post(form.redirect_chain[-1][0], {"new_password1": bad, "new_password2": bad})
    assert answer.status_code == 200
    assert not User.objects.get(pk=invitation.member.user.pk).has_usable_password()


# --- login, logout, sessions --------------------------------------------------------------


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "javascript:alert(1)",
    ],
)
def test_login_never_redirects_off_site(next_url):
    user = UserFactory(username="alice")
    user.set_password(NEW_PASSWORD)
    user.save()
    page = Client().get(reverse("login"), {"next": next_url})
    assert next_url not in page.content.decode()
    answer = Client().post(
        reverse("login"), {"username": "alice", "password": NEW_PASSWORD, "next": next_url}
    )
    assert answer.status_code == 302
    assert answer["Location"] == reverse("home")


def test_logout_never_redirects_off_site():
    user = UserFactory(username="alice")
    browser = Client()
    browser.force_login(user)
    answer = browser.post(reverse("logout") + "?next=https://evil.example/")
    assert answer.status_code == 302
    assert "evil" not in answer["Location"]


@pytest.mark.parametrize(
    ("username", "password"),
    [("al\x00ice", "pw"), ("alice", "p\x00w"), ("a" * 10_000, "pw"), ("alice", "p" * 100_000)],
)
def test_login_with_hostile_input_is_a_failed_login_not_an_error(username, password):
    UserFactory(username="alice")
    answer = Client(raise_request_exception=False).post(
        reverse("login"), {"username": username, "password": password}
    )
    assert answer.status_code == 200


def test_a_deactivated_users_session_ends_at_once():
    user = UserFactory(username="alice")
    browser = Client()
    browser.force_login(user)
    assert browser.get(reverse("home")).context["user"].is_authenticated
    user.is_active = False
    user.save()
    assert not browser.get(reverse("home"), follow=True).context["user"].is_authenticated


def test_a_password_change_ends_the_other_sessions():
    user = UserFactory(username="alice")
    other = Client()
    other.force_login(user)
    user.set_password(NEW_PASSWORD)
    user.save()
    assert not other.get(reverse("home"), follow=True).context["user"].is_authenticated


def test_deactivating_a_user_ends_their_api_token_at_once_in_this_process(settings):
    settings.ARBITER = {**settings.ARBITER, "TOKEN_CACHE_SECONDS": 60}
    campaign = CampaignFactory()
    user, _password, token = user_create(username="leaver", role=Role.ANNOTATOR)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 200  # cached
    user.is_active = False
    user.save()
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 401


def test_a_pending_invitees_link_dies_with_their_campaign():
    campaign, cam = _campaign_admin()
    invitation = member_invite(campaign=campaign, username="newbie", by=cam)
    CampaignMember.objects.filter(campaign=campaign).delete()  # as the campaign's deletion does
    assert not _link_works(invitation.set_password_path)

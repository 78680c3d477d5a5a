"""The API's token authentication, which reads the user's roles with the token."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import authentication
from annotation.roles import Role
from annotation.services.api_tokens import api_token_digest
from annotation.services.users import user_create
from tests.factories import PairFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_roles_come_with_the_token(campaign):
    PairFactory(campaign=campaign)
    _user, _password, annotator = user_create(username="ann", role=Role.ANNOTATOR)
    _user, _password, expert = user_create(username="exp", role=Role.EXPERT)
    _user, _password, admin = user_create(username="adm", role=Role.ADMIN)
    assert client_with(annotator).post(f"/api/campaigns/{campaign.pk}/next").status_code == 200
    assert client_with(expert).post(f"/api/campaigns/{campaign.pk}/next").status_code == 404
    assert client_with(admin).get(f"/api/campaigns/{campaign.pk}/labels.jsonl").status_code == 200
    assert (
        client_with(annotator).get(f"/api/campaigns/{campaign.pk}/labels.jsonl").status_code == 404
    )


def test_a_bad_token_or_an_inactive_user_is_refused(campaign):
    user, _password, token = user_create(username="gone", role=Role.ANNOTATOR)
    bad = client_with("0" * 40).post(f"/api/campaigns/{campaign.pk}/next")
    assert bad.status_code == 401 and bad.json()["detail"] == "Invalid token."
    user.is_active = False
    user.save()
    inactive = client_with(token).post(f"/api/campaigns/{campaign.pk}/next")
    assert inactive.status_code == 401


def test_a_role_change_is_seen_on_the_next_request(campaign):
    PairFactory(campaign=campaign)
    _user, _password, token = user_create(username="mover", role=Role.EXPERT)
    assert client_with(token).post(f"/api/campaigns/{campaign.pk}/next").status_code == 404
    user_create(username="mover", role=Role.ANNOTATOR)
    assert client_with(token).post(f"/api/campaigns/{campaign.pk}/next").status_code == 200


def test_a_token_read_is_reused_for_a_few_seconds_then_read_again(
    campaign, settings, monkeypatch
):
    now = [1000.0]
    monkeypatch.setattr(authentication, "token_cache_clock", lambda: now[0])
    settings.ARBITER = {**settings.ARBITER, "TOKEN_CACHE_SECONDS": 5}
    PairFactory(campaign=campaign)
    _user, _password, token = user_create(username="busy", role=Role.ANNOTATOR)
    client = client_with(token)
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 200
    # Revoked behind Django's back (no signal): this process still trusts what it read...
    Token.objects.filter(key=api_token_digest(token))._raw_delete(using="default")
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 200
    now[0] += 4.9
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 200
    # ...until the cached read expires.
    now[0] += 0.2
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 401


def test_without_the_cache_every_call_reads_the_token(campaign, settings):
    settings.ARBITER = {**settings.ARBITER, "TOKEN_CACHE_SECONDS": 0}
    _user, _password, token = user_create(username="strict", role=Role.ANNOTATOR)
    client = client_with(token)
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 200
    Token.objects.filter(key=api_token_digest(token))._raw_delete(using="default")
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 401


def test_changes_made_through_django_take_effect_at_once(campaign):
    user, _password, token = user_create(username="changing", role=Role.ANNOTATOR)
    client = client_with(token)
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 200
    user.groups.clear()  # the annotator role taken away
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 404
    Token.objects.filter(key=api_token_digest(token)).delete()
    assert client.get(f"/api/campaigns/{campaign.pk}/progress").status_code == 401

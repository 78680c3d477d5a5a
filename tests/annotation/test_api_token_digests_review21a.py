"""API tokens are stored as digests: the raw key is shown once and never kept, so the token
table hands out no credential; the keys stored in clear before keep working once migrated."""

from __future__ import annotations

import importlib
import io
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.authentication import TokenWithRolesAuthentication
from annotation.roles import Role
from annotation.services.api_tokens import api_token_digest, api_token_issue
from annotation.services.users import user_create
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

migration = importlib.import_module("annotation.migrations.0032_api_token_digests")


def _status(key: str, campaign) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get(f"/api/campaigns/{campaign.pk}/progress").status_code


def _table_text() -> str:
    """Every value of every row of the token table, as a database dump would show them."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Token._meta.db_table}")  # noqa: S608 - a model's table
        return repr(cursor.fetchall())


def test_a_raw_key_is_not_in_the_database_and_only_it_authenticates(campaign) -> None:
    _user, _password, key = user_create(username="ann", role=Role.ANNOTATOR)
    assert key is not None and len(key) == 40
    assert key not in _table_text()
    stored = Token.objects.get(user__username="ann").key
    assert stored == api_token_digest(key) and len(stored) <= 40
    assert _status(key, campaign) == 200
    # The stored value is no credential: a leaked table authenticates no one.
    assert _status(stored, campaign) == 401


def test_request_auth_carries_the_digest_never_the_raw_key(campaign) -> None:
    _user, _password, key = user_create(username="ann", role=Role.ANNOTATOR)
    assert key is not None
    _found, token = TokenWithRolesAuthentication().authenticate_credentials(key)
    assert token.key == api_token_digest(key) == Token.objects.get().key


def test_an_existing_user_keeps_their_token_unless_a_new_one_is_asked_for(campaign) -> None:
    out = io.StringIO()
    call_command("create_user", "ivy", "--role", "annotator", stdout=out)
    first = out.getvalue().strip().splitlines()[-1]
    assert _status(first, campaign) == 200

    out = io.StringIO()
    call_command("create_user", "ivy", "--role", "annotator", stdout=out)
    assert out.getvalue().strip().splitlines()[-1].startswith("token: unchanged")
    assert first not in out.getvalue()
    assert _status(first, campaign) == 200

    out = io.StringIO()
    call_command("create_user", "ivy", "--role", "annotator", "--new-token", stdout=out)
    second = out.getvalue().strip().splitlines()[-1]
    assert second != first and len(second) == 40
    assert _status(second, campaign) == 200
    assert _status(first, campaign) == 401  # revoked at once (this process's cache emptied)
    assert Token.objects.filter(user__username="ivy").count() == 1


def test_a_scoring_service_gets_a_new_token_only_when_asked(campaign) -> None:
    def create(*args: str) -> list[str]:
        out = io.StringIO()
        call_command("create_scoring_service", "pipeline", *args, stdout=out)
        return out.getvalue().strip().splitlines()

    first = create()[-1]
    assert api_token_digest(first) == Token.objects.get(user__username="pipeline").key
    assert create()[-1].startswith("token: unchanged")
    second = create("--new-token")[-1]
    assert second != first
    assert Token.objects.get(user__username="pipeline").key == api_token_digest(second)


def test_the_migration_hashes_a_clear_key_which_keeps_working(campaign) -> None:
    user, _password, _key = user_create(username="old", role=Role.ANNOTATOR)
    Token.objects.filter(user_id=user.pk).delete()
    clear = Token.generate_key()
    Token.objects.create(key=clear, user_id=user.pk)  # as stored before digests
    other = UserFactory()
    kept = api_token_issue(user=other)  # a digest already: left as it is
    assert _status(clear, campaign) == 401  # a clear key is no longer looked up as such

    schema_editor = SimpleNamespace(connection=connection)
    migration.hash_clear_keys(apps, schema_editor)
    assert clear not in _table_text()
    assert Token.objects.get(user_id=user.pk).key == api_token_digest(clear)
    assert Token.objects.get(user_id=other.pk).key == api_token_digest(kept)
    assert _status(clear, campaign) == 200

    migration.hash_clear_keys(apps, schema_editor)  # again (reversed, then reapplied): no harm
    assert Token.objects.get(user_id=user.pk).key == api_token_digest(clear)
    assert _status(clear, campaign) == 200


def test_the_admin_adds_a_token_through_the_service_and_shows_it_once(
    campaign, admin_user, client
) -> None:
    annotator, _password, _key = user_create(username="ann", role=Role.ANNOTATOR)
    Token.objects.filter(user_id=annotator.pk).delete()
    client.force_login(admin_user)
    response = client.post("/admin/authtoken/tokenproxy/add/", {"user": annotator.pk}, follow=True)
    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    stored = Token.objects.get(user_id=annotator.pk).key
    (key,) = [word for text in shown for word in text.replace(")", " ").split() if len(word) == 40]
    assert stored == api_token_digest(key)
    assert _status(key, campaign) == 200
    listing = client.get("/admin/authtoken/tokenproxy/").content.decode()
    assert key not in listing and "ann" in listing

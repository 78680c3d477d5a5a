"""Login lockout: by username and address together, so that a stranger cannot lock anyone out,
with a per-address brake on password spraying."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

STRANGER = "203.0.113.9"
ELSEWHERE = "198.51.100.7"


def _login(username: str, password: str, address: str) -> Client:
    client = Client(REMOTE_ADDR=address)
    client.post("/login/", {"username": username, "password": password})
    return client


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_a_stranger_guessing_a_password_cannot_lock_its_owner_out(annotator_a, annotator_b):
    for _ in range(8):
        _login("alice", "wrong", STRANGER)
    # The stranger is locked out of alice from their address...
    assert not _logged_in(_login("alice", "pw-alice", STRANGER))
    # ...but alice, from her own address, is not.
    assert _logged_in(_login("alice", "pw-alice", ELSEWHERE))
    # Nor is another user behind the stranger's address.
    assert _logged_in(_login("bob", "pw-bob", STRANGER))


def test_an_address_spraying_many_usernames_is_braked(settings, annotator_a):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    for n in range(8):
        _login(f"user{n}", "wrong", STRANGER)
    assert not _logged_in(_login("alice", "pw-alice", STRANGER))
    assert _logged_in(_login("alice", "pw-alice", ELSEWHERE))


def test_a_few_mistakes_from_an_address_do_not_brake_it(settings, annotator_a, annotator_b):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    for n in range(4):
        _login(f"user{n}", "wrong", STRANGER)
    assert _logged_in(_login("bob", "pw-bob", STRANGER))

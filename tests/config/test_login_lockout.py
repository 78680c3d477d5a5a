"""Login lockout: by username and address together, so that a stranger cannot lock anyone out,
with a per-address brake on password spraying."""

from __future__ import annotations

import time

import pytest
from django.test import Client, RequestFactory

from annotation import login_brake
from core.client_ip import client_ip

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


def test_failures_just_before_a_window_boundary_still_brake_just_after_it(settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    window = login_brake._window_s()
    boundary = (int(time.time() // window) + 1) * window
    for _ in range(8):
        login_brake.login_failure_record(STRANGER, now=boundary - 1)
    request = RequestFactory().post("/login/", REMOTE_ADDR=STRANGER)
    assert login_brake.address_is_braked(request, now=boundary - 1)
    assert login_brake.address_is_braked(request, now=boundary + 1)
    # Two windows on, the failures no longer count.
    assert not login_brake.address_is_braked(request, now=boundary + window + 1)
    assert not login_brake.address_is_braked(
        RequestFactory().post("/login/", REMOTE_ADDR=ELSEWHERE), now=boundary + 1
    )


PROXY = "10.0.0.2"


def _login_through_proxy(username: str, password: str, forwarded_for: str) -> Client:
    client = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for)
    client.post("/login/", {"username": username, "password": password})
    return client


def test_behind_a_proxy_a_stranger_cannot_lock_anyone_out(settings, annotator_a, annotator_b):
    # Every request arrives from the proxy's address: keyed on REMOTE_ADDR, a stranger's
    # guesses locked alice out everywhere and a sprayer braked every login of the site.
    settings.TRUSTED_PROXY_HOPS = 1
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    for n in range(8):
        _login_through_proxy("alice" if n < 6 else f"user{n}", "wrong", STRANGER)
    assert not _logged_in(_login_through_proxy("alice", "pw-alice", STRANGER))
    assert _logged_in(_login_through_proxy("alice", "pw-alice", ELSEWHERE))
    assert _logged_in(_login_through_proxy("bob", "pw-bob", ELSEWHERE))


def test_a_client_cannot_choose_its_address_through_the_forwarded_header(settings, annotator_a):
    # The proxy appends what it saw; whatever the client wrote to the left is not believed.
    settings.TRUSTED_PROXY_HOPS = 1
    for n in range(8):
        _login_through_proxy("alice", "wrong", f"192.0.2.{n}, {STRANGER}")
    assert not _logged_in(_login_through_proxy("alice", "pw-alice", f"192.0.2.99, {STRANGER}"))
    assert _logged_in(_login_through_proxy("alice", "pw-alice", ELSEWHERE))


def test_without_trusted_proxies_the_forwarded_header_is_ignored(settings, annotator_a):
    settings.TRUSTED_PROXY_HOPS = 0
    request = RequestFactory().get("/", REMOTE_ADDR=STRANGER, HTTP_X_FORWARDED_FOR=ELSEWHERE)
    assert client_ip(request) == STRANGER
    settings.TRUSTED_PROXY_HOPS = 1
    assert client_ip(request) == ELSEWHERE
    # Not an address (a misconfigured hop count let the client's text through): the peer's.
    garbage = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="<script>")
    assert client_ip(garbage) == PROXY
    settings.TRUSTED_PROXY_HOPS = 2
    chain = f"1.2.3.4, {ELSEWHERE}, 10.0.0.3"
    two = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=chain)
    assert client_ip(two) == ELSEWHERE


# An IPv6 sender counts as its /64 (review 19).


def test_spraying_from_many_addresses_of_one_ipv6_64_is_braked(settings, annotator_a):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    # One host is handed a whole /64: a new address for each guess costs it nothing.
    for n in range(8):
        _login(f"user{n}", "wrong", f"2001:db8:1:2::{n + 1:x}")

    assert not _logged_in(_login("alice", "pw-alice", "2001:db8:1:2::ffff"))
    # Another /64 (another network) is not braked.
    assert _logged_in(_login("alice", "pw-alice", "2001:db8:1:3::1"))


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address(settings, annotator_a):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    for n in range(8):
        _login(f"user{n}", "wrong", "203.0.113.9")

    assert not _logged_in(_login("alice", "pw-alice", "::ffff:203.0.113.9"))
    assert _logged_in(_login("alice", "pw-alice", "198.51.100.7"))

"""A per-address brake on password spraying, beside django-axes' lockout.

django-axes locks a username only together with the address it was guessed from, so a
stranger cannot lock the admin (or anyone behind the same address) out. Spraying many
usernames from one address still has to be slowed: failed logins are counted per address (for
IPv6, per /64) in fixed windows of AXES_COOLOFF_TIME, and once the current window and the one
before it hold LOGIN_ADDRESS_FAILURE_LIMIT of them together, every login from that address is
refused. A failure thus counts for one to two windows, so a window boundary neither wipes the
count nor lets a sprayer make twice the limit across it. The limit is well above axes' own, so
one person mistyping, or a stranger guessing one account, never reaches it.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from core.counters import counter_get, counter_incr


def _window_s() -> int:
    return max(60, int(float(settings.AXES_COOLOFF_TIME) * 3600))


def _key(address: str, window: int) -> str:
    return f"login-failures:{_sender(address)}:{window}"


def _sender(address: str) -> str:
    """Who the failures are counted against: an IPv4 address, or an IPv6 address's /64 (one
    host or home network is handed a whole /64, and would otherwise spray from 2**64
    addresses, each under the limit)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return str(parsed)


def address_is_braked(request: HttpRequest | None, *, now: float | None = None) -> bool:
    address = get_client_ip_address(request) if request is not None else None
    if not address:
        return False
    window = int((time.time() if now is None else now) // _window_s())
    failures = counter_get(_key(address, window)) + counter_get(_key(address, window - 1))
    return failures >= settings.LOGIN_ADDRESS_FAILURE_LIMIT


def login_failure_record(address: str, *, now: float | None = None) -> None:
    window = int((time.time() if now is None else now) // _window_s())
    # Kept for two windows: the next window still reads it as "the one before".
    counter_incr(_key(address, window), timeout=_window_s() * 2)


def login_failure_count(
    sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """user_login_failed receiver: one more failure for the request's address."""
    address = get_client_ip_address(request) if request is not None else None
    if address:
        login_failure_record(address)


class AddressBrakeBackend:
    """First in AUTHENTICATION_BACKENDS: refuses every login from a braked address (Django
    stops at PermissionDenied and reports a failed login). It has no get_user (unlike
    BaseBackend's), so sessions and force_login stay with the backend that finds users."""

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        if address_is_braked(request):
            raise PermissionDenied("Too many failed logins from this address; wait a while.")
        return None

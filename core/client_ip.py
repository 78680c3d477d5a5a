"""The client's address as this server should believe it: behind a reverse proxy,
REMOTE_ADDR is the proxy's for everyone, so the address the trusted proxy appended to
X-Forwarded-For counts instead.

``TRUSTED_PROXY_HOPS`` proxies each append the address they received the request from, so the
entry that many places from the right is the one the outermost trusted proxy saw; entries to
its left are whatever the client sent and are never read. Without trusted proxies (0, the
default unless BEHIND_TLS_PROXY) the header is ignored. django-axes (AXES_CLIENT_IP_CALLABLE)
and the login brake both key on this address.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    remote = request.META.get("REMOTE_ADDR") or None
    hops = int(getattr(settings, "TRUSTED_PROXY_HOPS", 0))
    if hops <= 0:
        return remote
    forwarded = [
        entry.strip()
        for entry in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if entry.strip()
    ]
    if not forwarded:
        return remote
    candidate = forwarded[-min(hops, len(forwarded))]
    try:
        # A misconfigured hop count could let a client's own text through: it must at least
        # be an address (axes stores it in an address column).
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote

"""The short way through content negotiation answers as DRF's own negotiation does."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from config.negotiation import ContentNegotiation

RENDERERS = [JSONRenderer(), BrowsableAPIRenderer()]


def choice(negotiation, path: str, accept: str | None, suffix: str | None = None):
    headers: dict[str, Any] = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(path, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, RENDERERS, suffix)
    except NotAcceptable:
        return "406"
    return type(renderer), media_type


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("path", "accept", "suffix"),
    [
        ("/api/x", None, None),
        ("/api/x", "*/*", None),
        ("/api/x", "application/json", None),
        ("/api/x", "text/html", None),
        ("/api/x", "application/json; indent=4", None),
        ("/api/x", "text/html,application/xhtml+xml,*/*;q=0.8", None),
        ("/api/x", "image/png", None),
        ("/api/x?format=api", "*/*", None),
        ("/api/x?format=json", "text/html", None),
        ("/api/x", "*/*", "api"),
        ("/api/x", "application/json", "api"),
    ],
)
def test_it_picks_what_drf_picks(path, accept, suffix):
    expected = choice(DefaultContentNegotiation(), path, accept, suffix)
    assert choice(ContentNegotiation(), path, accept, suffix) == expected
    if accept in (None, "*/*") and suffix is None and "format" not in path:
        assert expected == (JSONRenderer, "application/json")  # the short way's case

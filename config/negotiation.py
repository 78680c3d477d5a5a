"""DRF content negotiation with a short way for what API clients nearly always send."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answering no Accept header, ``*/*`` or a renderer's own media type
    without parsing anything.

    DRF parses the Accept header and every renderer's media type on each request (4.6% of a
    web worker's CPU in a profile under the assignment benchmark's load); for these headers
    its answer is fixed (the first renderer, or the one named, with its media type). Anything
    else, and any format asked for by suffix or query parameter, goes DRF's way.
    """

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        offered = list(renderers)
        meta = request.META
        format_param = f"{self.settings.URL_FORMAT_OVERRIDE}="
        if offered and not format_suffix and format_param not in meta.get("QUERY_STRING", ""):
            accept = meta.get("HTTP_ACCEPT", "*/*")
            if accept == "*/*":
                return offered[0], offered[0].media_type
            for renderer in offered:
                if accept == renderer.media_type:
                    return renderer, accept
        return super().select_renderer(request, offered, format_suffix)

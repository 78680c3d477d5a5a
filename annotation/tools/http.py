"""urllib with redirects kept to the origin that was configured.

urllib follows a redirect with the request's headers, Authorization included, wherever the
Location points, so an endpoint answering 302 to another host would hand it our bearer key.
`urlopen` here follows redirects only within the same scheme, host and port; one to another
origin raises OffOriginRedirect (an HTTPError) and nothing is sent there.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class OffOriginRedirect(urllib.error.HTTPError):
    pass


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _SameOriginRedirectHandler(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201, PLR0913 - urllib's signature
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            raise OffOriginRedirect(
                req.full_url, code, f"redirect to another origin refused ({target})", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirectHandler)


def urlopen(request: urllib.request.Request, *, timeout: float) -> Any:
    """urllib.request.urlopen, refusing redirects to another origin."""
    return _OPENER.open(request, timeout=timeout)

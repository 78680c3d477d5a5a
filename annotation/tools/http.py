"""urllib with redirects kept to the origin that was configured.

urllib follows a redirect with the request's headers, Authorization included, wherever the
Location points, so an endpoint answering 302 to another host would hand it our bearer key.
`urlopen` here follows redirects only within the same scheme, host and port; one to another
origin raises OffOriginRedirect (an HTTPError) and nothing is sent there.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class OffOriginRedirect(urllib.error.HTTPError):
    pass


class AnswerTooLate(Exception):  # noqa: N818 - named for what happened, like TimeoutError
    """The deadline for the whole answer passed while it was still arriving."""


READ_CHUNK_BYTES = 64 * 1024


class EndpointError(Exception):
    """A configured endpoint (the model's, the web search's) failed; the message says how,
    worded for the annotator, and never holds the request's key."""


def fetch_within(
    request: urllib.request.Request, *, timeout_s: float, limit: int, service: str, url_setting: str
) -> bytes:
    """At most ``limit`` bytes of the answer to ``request`` (redirects kept to its origin), all
    in within ``timeout_s``. Every failure is an EndpointError naming ``service`` (e.g. "the
    model endpoint") and, for a URL it cannot use, ``url_setting``; except an HTTP status
    (urllib.error.HTTPError), which each caller words itself."""
    deadline = time.monotonic() + timeout_s
    try:
        with urlopen(request, timeout=timeout_s) as response:
            return read_within(response, limit=limit, deadline=deadline)
    except OffOriginRedirect as exc:
        raise EndpointError(f"{service} redirected elsewhere: {exc.msg}") from exc
    except urllib.error.HTTPError:
        raise
    except AnswerTooLate as exc:
        raise EndpointError(f"{service} sent no answer within {timeout_s:g} s") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise EndpointError(f"{service} did not answer: {exc}") from exc
    except http.client.InvalidURL as exc:
        raise EndpointError(f"{service}'s URL ({url_setting}) is not usable: {exc}") from exc
    except http.client.HTTPException as exc:
        # Not HTTP at all (a status line such as "-ERR …", an SSH banner), a body cut short,
        # a line too long.
        what = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        raise EndpointError(f"{service} sent no usable HTTP answer ({what})") from exc
    except ValueError as exc:
        # A broken chunk size, or a URL or header http.client refuses; the text is left out, as
        # it may hold the key.
        raise EndpointError(f"the exchange with {service} failed ({type(exc).__name__})") from exc


def read_within(response: http.client.HTTPResponse, *, limit: int, deadline: float) -> bytes:
    """At most ``limit`` bytes of the body, read in chunks; AnswerTooLate once ``deadline``
    (time.monotonic()) passes, so that an endpoint trickling its answer cannot hold the thread
    for longer than the timeout (and at most one more socket read): the socket's timeout
    bounds each read, not the answer."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        if time.monotonic() >= deadline:
            raise AnswerTooLate
        chunk = response.read1(min(READ_CHUNK_BYTES, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


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

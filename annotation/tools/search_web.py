"""An external web-search service behind the same interface (off by default).

Enable it with ARBITER_SEARCH_BACKEND=web and ARBITER_WEB_SEARCH_URL (plus
ARBITER_WEB_SEARCH_KEY when the service wants one). The contract is a plain JSON GET, easy to put
in front of any search API with a few lines of glue:

    GET <WEB_SEARCH_URL>?q=<query>&k=<max results>
    Authorization: Bearer <WEB_SEARCH_KEY>          (only when a key is set)
    Accept: application/json

    200 {"results": [{"title": "…", "snippet": "plain text", "url": "https://…",
                      "score": 1.0}, …]}

`snippet` and `title` are plain text (any HTML in them is shown escaped, never rendered);
`score` is optional (a hit without a finite number there is scored by its rank). Results
beyond k are ignored. Anything else (a non-200 status, invalid JSON, broken HTTP, no whole
answer within the timeout) raises SearchError.

A search holds a server thread while it waits on the service, so at most CONCURRENT_SEARCHES
wait at once in a process (as ARBITER_LLM_CONCURRENT_ASKS does for the model): a slow or stuck
service cannot take every thread from next and label.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.parse
import urllib.request

from annotation.tools.http import EndpointError, fetch_within
from annotation.tools.search_hits import (
    SearchError,
    SearchHit,
    highlight_words,
    query_words,
    strip_control_chars,
)
from core.text import without_lone_surrogates

TIMEOUT_S = 8.0
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
# Searches waiting on the service at once in one web process (0: no cap), and how long one more
# waits for a slot: a healthy service frees one within a fraction of a second, a stuck one not.
CONCURRENT_SEARCHES = 2
SLOT_WAIT_S = 1.0

_slots_lock = threading.Lock()
_slots_by_cap: dict[int, threading.BoundedSemaphore] = {}


def _search_slots(cap: int) -> threading.BoundedSemaphore | None:
    """This process's semaphore for `cap` searches at once (None: no cap)."""
    if cap <= 0:
        return None
    with _slots_lock:
        return _slots_by_cap.setdefault(cap, threading.BoundedSemaphore(cap))


class WebSearchBackend:
    name = "web"

    def __init__(
        self,
        *,
        url: str,
        key: str = "",
        timeout_s: float = TIMEOUT_S,
        concurrent_searches: int = CONCURRENT_SEARCHES,
    ) -> None:
        try:
            scheme = urllib.parse.urlsplit(url).scheme
        except ValueError as exc:  # e.g. an unclosed "[" of an IPv6 address
            raise SearchError(f"WEB_SEARCH_URL is not a URL: {exc}") from exc
        if scheme not in {"http", "https"}:
            raise SearchError(f"WEB_SEARCH_URL must be an http(s) URL, not {url!r}")
        self.url = url
        self.key = key
        self.timeout_s = timeout_s
        self.slots = _search_slots(concurrent_searches)

    def _fetch(self, request: urllib.request.Request) -> bytes:
        # The scheme was checked in __init__: only http(s) reaches urlopen. Redirects are
        # followed only within the configured origin (the key goes along).
        try:
            return fetch_within(
                request,
                timeout_s=self.timeout_s,
                limit=MAX_RESPONSE_BYTES + 1,
                service="the web-search service",
                url_setting="ARBITER_WEB_SEARCH_URL",
            )
        except urllib.error.HTTPError as exc:
            raise SearchError(f"the web-search service did not answer: {exc}") from exc
        except EndpointError as exc:
            raise SearchError(str(exc)) from exc

    def search(self, query: str, k: int, *, corpus_id: int | None = None) -> list[SearchHit]:
        separator = "&" if urllib.parse.urlsplit(self.url).query else "?"
        url = f"{self.url}{separator}{urllib.parse.urlencode({'q': query, 'k': k})}"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        if self.slots is not None and not self.slots.acquire(timeout=SLOT_WAIT_S):
            raise SearchError(
                "The web-search service is answering other searches on this server; "
                "search again in a moment."
            )
        try:
            body = self._fetch(request)
        finally:
            if self.slots is not None:
                self.slots.release()
        if len(body) > MAX_RESPONSE_BYTES:
            raise SearchError("the web-search service sent more than 2 MiB")
        try:
            results = json.loads(body)["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SearchError("the web-search service sent something other than results") from exc
        if not isinstance(results, list):
            raise SearchError("the web-search service sent something other than results")
        words = query_words(query)
        hits = []
        for rank, item in enumerate(results[:k]):
            if not isinstance(item, dict):
                continue
            score = _finite_score(item.get("score"))
            # JSON may escape a lone surrogate ("\ud800"): neither a response nor the search's
            # evidence could encode it.
            title, snippet, url = (
                without_lone_surrogates(str(item.get(name) or ""))
                for name in ("title", "snippet", "url")
            )
            hits.append(
                SearchHit(
                    title=strip_control_chars(title)[:500],
                    snippet=highlight_words(snippet[:2000], words),
                    source=strip_control_chars(url)[:1000],
                    score=float(k - rank) if score is None else score,
                    document_id=None,
                )
            )
        return hits


def _finite_score(value: object) -> float | None:
    """The service's score when it is a real, finite number; None ranks the hit by position.

    json.loads accepts NaN and Infinity, 1e400 reads as infinity and a 400-digit integer
    overflows float(): none of them sorts or serialises as a score.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        score = float(value)
    except OverflowError:
        return None
    return score if math.isfinite(score) else None

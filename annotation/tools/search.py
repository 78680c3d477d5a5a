"""Fact-check search for annotators: one small interface, several backends.

    search(query, k, corpus_id=None) -> list[SearchHit]

Backends (chosen by settings.ARBITER["SEARCH_BACKEND"], else by the database vendor):
- "postgres": PostgreSQL full-text search over a stored, weighted tsvector (title A, body B)
  with a GIN index, `websearch_to_tsquery`, `ts_rank` and `ts_headline` (search_postgres.py).
- "sqlite": an FTS5 table kept in step with annotation_document by triggers, bm25 with the
  title weighted 10:1 and `snippet()` (search_sqlite.py).
- "web": an external web-search service, off by default (search_web.py documents its contract).

Every backend returns snippets as safe HTML: the document text is escaped and only the matched
words are wrapped in <mark>…</mark>. The database backends ask for control characters as match
markers (the corpus loader strips control characters from documents), and `render_snippet`
turns them into <mark> after escaping everything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from html import escape
from typing import Protocol
from urllib.parse import urlsplit

from core.errors import UpstreamFailed

MATCH_START = "\x02"
MATCH_STOP = "\x03"
MAX_QUERY_CHARS = 500
MAX_K = 50

# C0 controls other than tab and newline; our match markers are among them.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORD = re.compile(r"\w+", re.UNICODE)


class SearchError(UpstreamFailed):
    """The search could not be carried out (bad configuration, remote service down)."""

    code = "search_failed"


@dataclass(frozen=True)
class SearchHit:
    title: str
    snippet: str  # safe HTML: escaped text with the matches in <mark>
    source: str
    score: float
    document_id: int | None = None

    @property
    def url(self) -> str:
        """`source` when it is a web link safe to put in an href, else ""."""
        return source_url(self.source)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class SearchBackend(Protocol):
    name: str

    def search(self, query: str, k: int, *, corpus_id: int | None = None) -> list[SearchHit]: ...


def source_url(source: str) -> str:
    scheme = urlsplit(source.strip()).scheme.lower()
    return source.strip() if scheme in {"http", "https"} else ""


def strip_control_chars(text: str) -> str:
    return _CONTROL_CHARS.sub("", text)


def clean_query(query: str) -> str:
    """The query as the backends receive it: no control characters, bounded, trimmed."""
    return strip_control_chars(query)[:MAX_QUERY_CHARS].strip()


def clamp_k(k: int) -> int:
    return max(1, min(int(k), MAX_K))


def render_snippet(marked: str) -> str:
    """Escape `marked` as HTML and turn the backend's match markers into <mark> elements.

    Markers that do not pair up (a stray one in a document loaded some other way) never yield
    unbalanced tags: a start inside a match and a stop outside one are dropped.
    """
    parts: list[str] = []
    inside = False
    for piece in re.split(f"([{MATCH_START}{MATCH_STOP}])", marked):
        if piece == MATCH_START:
            if not inside:
                parts.append("<mark>")
                inside = True
        elif piece == MATCH_STOP:
            if inside:
                parts.append("</mark>")
                inside = False
        elif piece:
            parts.append(escape(strip_control_chars(piece), quote=True))
    if inside:
        parts.append("</mark>")
    return "".join(parts)


def query_words(query: str) -> list[str]:
    """The plain words of a query, without operators, quotes or negated words."""
    words: list[str] = []
    for token in query.split():
        if token.startswith("-") or token.upper() in {"OR", "AND", "NOT"}:
            continue
        words.extend(_WORD.findall(token))
    return words


def highlight_words(text: str, words: Iterable[str]) -> str:
    """Safe HTML of plain `text` with whole-word, case-insensitive matches of `words` marked."""
    unique = sorted({word.lower() for word in words if word}, key=len, reverse=True)
    if not unique:
        return escape(text, quote=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(word) for word in unique) + r")\w*", re.I)
    marked = pattern.sub(
        lambda match: f"{MATCH_START}{match.group(0)}{MATCH_STOP}", strip_control_chars(text)
    )
    return render_snippet(marked)


def backend_name(vendor: str | None = None) -> str:
    from django.conf import settings
    from django.db import connection

    configured = (settings.ARBITER.get("SEARCH_BACKEND") or "").strip().lower()
    if configured:
        return configured
    vendor = vendor or connection.vendor
    return "postgres" if vendor == "postgresql" else "sqlite"


def get_backend(name: str | None = None) -> SearchBackend:
    """The configured backend (or the one named); raises SearchError for unusable settings."""
    from django.conf import settings

    name = (name or backend_name()).lower()
    if name in {"postgres", "postgresql"}:
        from annotation.tools.search_postgres import PostgresSearchBackend

        return PostgresSearchBackend()
    if name == "sqlite":
        from annotation.tools.search_sqlite import SqliteSearchBackend

        return SqliteSearchBackend()
    if name == "web":
        from annotation.tools.search_web import WebSearchBackend

        url = settings.ARBITER.get("WEB_SEARCH_URL") or ""
        if not url:
            raise SearchError("SEARCH_BACKEND is 'web' but ARBITER_WEB_SEARCH_URL is not set.")
        return WebSearchBackend(url=url, key=settings.ARBITER.get("WEB_SEARCH_KEY") or "")
    raise SearchError(
        f"unknown search backend {name!r}; use 'postgres', 'sqlite' or 'web' "
        "(ARBITER_SEARCH_BACKEND), or leave it empty to follow the database."
    )


def search(query: str, k: int = 10, *, corpus_id: int | None = None) -> list[SearchHit]:
    """Search with the configured backend. Queries with no word to look for (empty, only
    punctuation, operators or exclusions) return no hits rather than "everything but …"."""
    query = clean_query(query)
    if not query_words(query):
        return []
    return get_backend().search(query, clamp_k(k), corpus_id=corpus_id)

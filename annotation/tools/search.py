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

from annotation.tools.search_hits import (
    MATCH_START,
    MATCH_STOP,
    MAX_K,
    MAX_QUERY_CHARS,
    SearchBackend,
    SearchError,
    SearchHit,
    SearchTimedOut,
    clamp_k,
    clean_query,
    highlight_words,
    query_words,
    render_snippet,
    source_url,
    strip_control_chars,
)

__all__ = [
    "MATCH_START",
    "MATCH_STOP",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "SearchBackend",
    "SearchError",
    "SearchHit",
    "SearchTimedOut",
    "backend_name",
    "clamp_k",
    "clean_query",
    "get_backend",
    "highlight_words",
    "query_words",
    "render_snippet",
    "search",
    "source_url",
    "strip_control_chars",
]


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

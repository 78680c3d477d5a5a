"""PostgreSQL full-text search over annotation_document.

Migration 0002 adds `search_vector`, a stored generated column
`setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', body), 'B')`,
with a GIN index. The model does not declare the column (it is PostgreSQL-only); Django never
writes it, and the database keeps it current.

Migration 0004 adds `title_vector` (title only, GIN-indexed) so that broad queries can find
their title matches cheaply; see BODY_SAMPLE below.

Queries use `websearch_to_tsquery`, which accepts anything a person types ("quoted phrases",
-exclusions, or) and never raises a syntax error. Ranking uses ts_rank with the default weights
(A = 1.0, B = 0.4), so a title match outranks a body match. Only the top k rows get a
`ts_headline` snippet, because headlines re-parse the body and are the costly part.

A search runs under its own `statement_timeout` (settings.ARBITER["SEARCH_TIMEOUT_S"]), set
with `set_config(..., is_local)` inside a transaction, so that no query a person types can
hold a connection and a CPU for long; the database cancels it and the annotator is told so
(SearchTimedOut, a 503), rather than the request failing with a 500.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction

from annotation.tools.search_hits import (
    MATCH_START,
    MATCH_STOP,
    SearchHit,
    SearchTimedOut,
    render_snippet,
)

TEXT_SEARCH_CONFIG = "english"
_HEADLINE_OPTIONS = (
    f"StartSel={MATCH_START}, StopSel={MATCH_STOP}, MaxWords=40, MinWords=15, "
    'ShortWord=3, MaxFragments=2, FragmentDelimiter=" … "'
)

# Ranking every match of a broad query ("history": 12,000 of 100,000 documents) reads every
# matching row, tens of milliseconds. So the rows ranked are the title matches (found through
# the title-only index; a title match weighs 2.5 times a body match), up to TITLE_CAP, plus
# the first BODY_SAMPLE body matches. A query with fewer matches is ranked exactly.
BODY_SAMPLE = 500
TITLE_CAP = 500

_SEARCH_SQL = """
WITH query AS (
    SELECT q FROM (SELECT websearch_to_tsquery(%(config)s::regconfig, %(query)s) AS q) typed
    -- 'T' means nothing indexable ("-word" alone, stop words): no search, not "all but".
    WHERE querytree(q) <> 'T'
),
ranked AS (
    -- A title match may still fail the whole query (-exclusions), hence `hit`.
    (SELECT d.id, ts_rank(d.search_vector, query.q) AS score, d.search_vector @@ query.q AS hit
     FROM annotation_document d, query
     WHERE d.title_vector @@ query.q {corpus_filter} LIMIT %(title_cap)s)
    UNION ALL
    (SELECT d.id, ts_rank(d.search_vector, query.q), true
     FROM annotation_document d, query
     WHERE d.search_vector @@ query.q {corpus_filter} LIMIT %(body_sample)s)
),
top AS (
    SELECT id, max(score) AS score FROM ranked WHERE hit
    GROUP BY id ORDER BY score DESC, id LIMIT %(k)s
)
SELECT d.id, d.title, d.source, top.score,
       ts_headline(%(config)s::regconfig, d.body, query.q, %(options)s) AS snippet
FROM top JOIN annotation_document d ON d.id = top.id, query
ORDER BY top.score DESC, d.id
"""


class PostgresSearchBackend:
    name = "postgres"

    def search(self, query: str, k: int, *, corpus_id: int | None = None) -> list[SearchHit]:
        params: dict[str, Any] = {
            "config": TEXT_SEARCH_CONFIG,
            "query": query,
            "k": k,
            "options": _HEADLINE_OPTIONS,
            "title_cap": TITLE_CAP,
            "body_sample": BODY_SAMPLE,
        }
        corpus_filter = ""
        if corpus_id is not None:
            corpus_filter = "AND d.corpus_id = %(corpus_id)s"
            params["corpus_id"] = corpus_id
        sql = _SEARCH_SQL.format(corpus_filter=corpus_filter)
        timeout_s = float(settings.ARBITER["SEARCH_TIMEOUT_S"])
        try:
            rows = _run_bounded(sql, params, timeout_ms=max(1, round(timeout_s * 1000)))
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != _QUERY_CANCELED:
                raise
            raise SearchTimedOut(
                f"The search took longer than {timeout_s:g} s and was stopped. Try more "
                'specific words or a "quoted phrase", or search one corpus.'
            ) from error
        return [
            SearchHit(
                title=title,
                snippet=render_snippet(snippet or ""),
                source=source,
                score=float(score),
                document_id=document_id,
            )
            for document_id, title, source, score, snippet in rows
        ]


_QUERY_CANCELED = "57014"  # statement_timeout (or a cancel request) stopped the statement


def _run_bounded(sql: str, params: dict[str, Any], *, timeout_ms: int) -> list[tuple]:
    """The rows of ``sql``, the statement cancelled by the database past ``timeout_ms``.

    ``set_config(..., true)`` is SET LOCAL: it ends with the transaction, so the atomic block
    gives the setting one. Inside a caller's transaction that block is a savepoint, which a
    timeout rolls back (the setting with it) but a success only releases: there the setting
    is put back as it was, so the caller's later statements keep their own bound."""
    enclosed = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), "
            "set_config('statement_timeout', %s, true)",
            [f"{timeout_ms}ms"],
        )
        previous = cursor.fetchone()[0]
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        if enclosed:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
    return rows


def search_indexes_flush() -> None:
    """Merge the GIN indexes' pending lists after a bulk load: until autovacuum gets to them,
    every query would scan the unsorted pending entries (7 ms instead of 1 ms for a common
    word over 100,000 documents)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT gin_clean_pending_list(%s::regclass), gin_clean_pending_list(%s::regclass)",
            ["annotation_document_search", "annotation_document_title_search"],
        )

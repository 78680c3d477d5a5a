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
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from annotation.tools.search_hits import MATCH_START, MATCH_STOP, SearchHit, render_snippet

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
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
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


def search_indexes_flush() -> None:
    """Merge the GIN indexes' pending lists after a bulk load: until autovacuum gets to them,
    every query would scan the unsorted pending entries (7 ms instead of 1 ms for a common
    word over 100,000 documents)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT gin_clean_pending_list(%s::regclass), gin_clean_pending_list(%s::regclass)",
            ["annotation_document_search", "annotation_document_title_search"],
        )

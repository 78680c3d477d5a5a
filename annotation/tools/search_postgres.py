"""PostgreSQL full-text search over annotation_document.

Migration 0002 adds `search_vector`, a stored generated column
`setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', body), 'B')`,
with a GIN index. The model does not declare the column (it is PostgreSQL-only); Django never
writes it, and the database keeps it current.

Queries use `websearch_to_tsquery`, which accepts anything a person types ("quoted phrases",
-exclusions, or) and never raises a syntax error. Ranking uses ts_rank with the default weights
(A = 1.0, B = 0.4), so a title match outranks a body match. Only the top k rows get a
`ts_headline` snippet, because headlines re-parse the body and are the costly part.
"""

from __future__ import annotations

from django.db import connection

from annotation.tools.search import MATCH_START, MATCH_STOP, SearchHit, render_snippet

TEXT_SEARCH_CONFIG = "english"
_HEADLINE_OPTIONS = (
    f"StartSel={MATCH_START}, StopSel={MATCH_STOP}, MaxWords=40, MinWords=15, "
    'ShortWord=3, MaxFragments=2, FragmentDelimiter=" … "'
)

_SEARCH_SQL = """
WITH query AS (SELECT websearch_to_tsquery(%(config)s::regconfig, %(query)s) AS q),
top AS (
    SELECT d.id, d.title, d.body, d.source, ts_rank(d.search_vector, query.q) AS score
    FROM annotation_document d, query
    WHERE d.search_vector @@ query.q {corpus_filter}
    ORDER BY score DESC, d.id
    LIMIT %(k)s
)
SELECT top.id, top.title, top.source, top.score,
       ts_headline(%(config)s::regconfig, top.body, query.q, %(options)s) AS snippet
FROM top, query
ORDER BY top.score DESC, top.id
"""


class PostgresSearchBackend:
    name = "postgres"

    def search(self, query: str, k: int, *, corpus_id: int | None = None) -> list[SearchHit]:
        params: dict[str, object] = {
            "config": TEXT_SEARCH_CONFIG,
            "query": query,
            "k": k,
            "options": _HEADLINE_OPTIONS,
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

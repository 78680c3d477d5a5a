"""SQLite FTS5 search over annotation_document (the embedded default).

Migration 0002 creates `annotation_document_fts`, an external-content FTS5 table over the title
and body of annotation_document, with triggers that keep it in step on insert, update and delete.
SQLite rebuilds a table to alter it, and dropping the old table drops its triggers, so a later
migration that changes Document would silently stop the indexing: `ensure_fts_index` recreates
missing triggers and rebuilds the index, and this backend calls it once per connection.

FTS5 has a strict query syntax, so people's queries are translated rather than passed through:
`to_fts5_query` reads the same web-search syntax as PostgreSQL's `websearch_to_tsquery`
("quoted phrases", -exclusions, `or`) and quotes every word, so no input can be an FTS5 error.
"""

from __future__ import annotations

import json
import re

from django.db import connection
from django.db.backends.signals import connection_created

from annotation.tools.search_hits import SearchHit, render_snippet

FTS_TABLE = "annotation_document_fts"

_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)

FTS_SCHEMA = [
    """CREATE VIRTUAL TABLE IF NOT EXISTS annotation_document_fts USING fts5(
        title, body, content='annotation_document', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER IF NOT EXISTS annotation_document_fts_ai
    AFTER INSERT ON annotation_document BEGIN
        INSERT INTO annotation_document_fts(rowid, title, body)
        VALUES (new.id, new.title, new.body);
    END""",
    """CREATE TRIGGER IF NOT EXISTS annotation_document_fts_ad
    AFTER DELETE ON annotation_document BEGIN
        INSERT INTO annotation_document_fts(annotation_document_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
    END""",
    """CREATE TRIGGER IF NOT EXISTS annotation_document_fts_au
    AFTER UPDATE ON annotation_document BEGIN
        INSERT INTO annotation_document_fts(annotation_document_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
        INSERT INTO annotation_document_fts(rowid, title, body)
        VALUES (new.id, new.title, new.body);
    END""",
]
_REBUILD_SQL = "INSERT INTO annotation_document_fts(annotation_document_fts) VALUES ('rebuild')"
_TRIGGER_NAMES = (f"{FTS_TABLE}_ai", f"{FTS_TABLE}_ad", f"{FTS_TABLE}_au")


def _phrase(text: str) -> str | None:
    words = _WORD.findall(text)
    if not words:
        return None
    # Only word characters reach FTS5, each phrase in double quotes: never an operator.
    return '"' + " ".join(words) + '"'


def to_fts5_query(query: str) -> str:
    """Translate web-search syntax into a safe FTS5 expression; "" when nothing is searchable.

    Words are ANDed, `or` separates alternatives, "…" is a phrase and a leading '-' excludes.
    Alternatives with nothing but exclusions are dropped, since FTS5's NOT needs a left side.
    """
    groups: list[tuple[list[str], list[str]]] = [([], [])]
    for match in _TOKEN.finditer(query):
        negated, quoted, bare = match.group(1), match.group(2), match.group(3)
        if bare is not None:
            if bare.lower() == "or":
                groups.append(([], []))
                continue
            negated = "-" if bare.startswith("-") else ""
            text = bare.lstrip("-")
        else:
            text = quoted
        phrase = _phrase(text)
        if phrase is None:
            continue
        positives, negatives = groups[-1]
        (negatives if negated else positives).append(phrase)
    alternatives = []
    for positives, negatives in groups:
        if not positives:
            continue
        expression = " AND ".join(positives)
        if negatives:
            expression = f"({expression}) NOT ({' OR '.join(negatives)})"
        alternatives.append(f"({expression})")
    return " OR ".join(alternatives)


def ensure_fts_index(cursor) -> bool:  # noqa: ANN001 - a DB-API cursor
    """Create the FTS table and triggers where missing; rebuild when any were. True if rebuilt."""
    cursor.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') AND name IN "
        "(%s, %s, %s, %s)",
        [FTS_TABLE, *_TRIGGER_NAMES],
    )
    present = {row[0] for row in cursor.fetchall()}
    if len(present) == 1 + len(_TRIGGER_NAMES):
        return False
    for statement in FTS_SCHEMA:
        cursor.execute(statement)
    cursor.execute(_REBUILD_SQL)
    return True


_checked_connections: set[int] = set()


def _forget_connection(sender, connection, **kwargs) -> None:  # noqa: ANN001
    _checked_connections.discard(id(connection.connection))


connection_created.connect(_forget_connection, dispatch_uid="annotation_fts_forget_connection")


def _ensure_once(cursor) -> None:  # noqa: ANN001
    key = id(connection.connection)
    if key not in _checked_connections:
        ensure_fts_index(cursor)
        _checked_connections.add(key)


# Ranking every match of a broad query ("known": a quarter of 100,000 documents) costs over
# 100 ms, as FTS5 scores each one. So, like the PostgreSQL backend, the rows ranked are the
# title matches (up to TITLE_CAP) plus the first BODY_SAMPLE matches in rowid order; a query
# with fewer matches is ranked exactly. bm25 weights: title 10, body 1.
TITLE_CAP = 500
BODY_SAMPLE = 500

_SAMPLE_SQL = """
SELECT f.rowid, bm25(annotation_document_fts, 10.0, 1.0)
FROM annotation_document_fts f {corpus_join}
WHERE annotation_document_fts MATCH %s {corpus_filter}
LIMIT %s
"""
# snippet() only works inside the full-text query, so the top rows are matched once more, by
# rowid: snippets are built for k rows, not for every match. char(2)/char(3) are the match
# markers (search.MATCH_START/MATCH_STOP); snippets are up to 32 tokens long.
_DETAIL_SQL = """
SELECT d.id, d.title, d.source,
       snippet(annotation_document_fts, 1, char(2), char(3), '…', 32)
FROM annotation_document_fts JOIN annotation_document d ON d.id = annotation_document_fts.rowid
WHERE annotation_document_fts MATCH %s
  AND annotation_document_fts.rowid IN (SELECT value FROM json_each(%s))
"""
_CORPUS_JOIN = "JOIN annotation_document d ON d.id = f.rowid"
_CORPUS_FILTER = "AND d.corpus_id = %s"


def _scored(cursor, expression: str, k: int, corpus_id: int | None) -> list[tuple[int, float]]:  # noqa: ANN001
    corpus = {"corpus_join": "", "corpus_filter": ""}
    corpus_params: list[object] = []
    if corpus_id is not None:
        corpus = {"corpus_join": _CORPUS_JOIN, "corpus_filter": _CORPUS_FILTER}
        corpus_params = [corpus_id]
    cursor.execute(_SAMPLE_SQL.format(**corpus), [expression, *corpus_params, BODY_SAMPLE])
    scores = dict(cursor.fetchall())
    if len(scores) >= BODY_SAMPLE:
        # The sample may have missed title matches: find them through the title column alone.
        # Their score then counts the title occurrences only (FTS5 re-matching them by rowid
        # would cost a full query each), which still ranks them above body-only matches.
        title_only = "{title} : (" + expression + ")"
        cursor.execute(_SAMPLE_SQL.format(**corpus), [title_only, *corpus_params, TITLE_CAP])
        for rowid, score in cursor.fetchall():
            scores.setdefault(rowid, score)
    # bm25 is lower-is-better; ties go to the older document, as on PostgreSQL.
    return sorted(scores.items(), key=lambda item: (item[1], item[0]))[:k]


class SqliteSearchBackend:
    name = "sqlite"

    def search(self, query: str, k: int, *, corpus_id: int | None = None) -> list[SearchHit]:
        expression = to_fts5_query(query)
        if not expression:
            return []
        with connection.cursor() as cursor:
            _ensure_once(cursor)
            top = _scored(cursor, expression, k, corpus_id)
            if not top:
                return []
            rowids = json.dumps([rowid for rowid, _score in top])
            cursor.execute(_DETAIL_SQL, [expression, rowids])
            details = {row[0]: row[1:] for row in cursor.fetchall()}
        hits = []
        for rowid, score in top:
            title, source, snippet = details[rowid]
            hits.append(
                SearchHit(
                    title=title,
                    snippet=render_snippet(snippet or ""),
                    source=source,
                    # bm25 is negative and lower-is-better; flipped so that higher is better.
                    score=-float(score),
                    document_id=rowid,
                )
            )
        return hits

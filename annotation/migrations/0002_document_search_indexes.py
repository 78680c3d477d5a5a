"""Full-text search indexes for Document, one per database vendor.

PostgreSQL: a stored generated tsvector column (title weight A, body weight B) and a GIN index
on it. SQLite: an external-content FTS5 table with triggers that keep it in step. The SQL is
written out here, not imported, so that this migration never changes under later code.
"""

from __future__ import annotations

from django.db import migrations

POSTGRES_FORWARD = [
    """
    ALTER TABLE annotation_document ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'B')
    ) STORED
    """,
    "CREATE INDEX annotation_document_search ON annotation_document USING GIN (search_vector)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS annotation_document_search",
    "ALTER TABLE annotation_document DROP COLUMN IF EXISTS search_vector",
]

SQLITE_FORWARD = [
    """
    CREATE VIRTUAL TABLE IF NOT EXISTS annotation_document_fts USING fts5(
        title, body, content='annotation_document', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')
    """,
    """
    CREATE TRIGGER IF NOT EXISTS annotation_document_fts_ai AFTER INSERT ON annotation_document
    BEGIN
        INSERT INTO annotation_document_fts(rowid, title, body)
        VALUES (new.id, new.title, new.body);
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS annotation_document_fts_ad AFTER DELETE ON annotation_document
    BEGIN
        INSERT INTO annotation_document_fts(annotation_document_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS annotation_document_fts_au AFTER UPDATE ON annotation_document
    BEGIN
        INSERT INTO annotation_document_fts(annotation_document_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
        INSERT INTO annotation_document_fts(rowid, title, body)
        VALUES (new.id, new.title, new.body);
    END
    """,
    "INSERT INTO annotation_document_fts(annotation_document_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS annotation_document_fts_ai",
    "DROP TRIGGER IF EXISTS annotation_document_fts_ad",
    "DROP TRIGGER IF EXISTS annotation_document_fts_au",
    "DROP TABLE IF EXISTS annotation_document_fts",
]

STATEMENTS = {
    "postgresql": (POSTGRES_FORWARD, POSTGRES_BACKWARD),
    "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD),
}


def _run(schema_editor, *, forward):
    statements = STATEMENTS.get(schema_editor.connection.vendor)
    if statements is None:
        return  # other databases get no full-text index; search there is unsupported
    for statement in statements[0 if forward else 1]:
        schema_editor.execute(statement)


def create_search_indexes(apps, schema_editor):
    _run(schema_editor, forward=True)


def drop_search_indexes(apps, schema_editor):
    _run(schema_editor, forward=False)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_search_indexes, drop_search_indexes),
    ]

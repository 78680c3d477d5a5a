"""A title-only tsvector with its own GIN index (PostgreSQL only).

For a query that matches a large share of the corpus, ranking every match is the slow part;
the search then ranks all title matches plus a bounded sample of body matches, and this index
finds the title matches without touching the body ones.
"""

from __future__ import annotations

from django.db import migrations

FORWARD = [
    """
    ALTER TABLE annotation_document ADD COLUMN title_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, coalesce(title, ''))) STORED
    """,
    "CREATE INDEX annotation_document_title_search ON annotation_document "
    "USING GIN (title_vector)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS annotation_document_title_search",
    "ALTER TABLE annotation_document DROP COLUMN IF EXISTS title_vector",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0003_pair_source_length"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]

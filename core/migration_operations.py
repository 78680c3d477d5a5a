"""Index migrations that keep a populated PostgreSQL installation working while they run.

A plain CREATE INDEX holds a lock that stops every write to the table for the whole build
(seconds per million rows), and a migration's transaction holds it until the last operation.
These build and drop indexes CONCURRENTLY on PostgreSQL (in a migration with ``atomic =
False``), and as plain AddIndex / RemoveIndex elsewhere: SQLite, the embedded default, has
no CONCURRENTLY and no concurrent writers to keep going.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations


def _postgresql(schema_editor: Any) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def _index_valid(schema_editor: Any, name: str) -> bool | None:
    """Whether the index exists and is valid (None: no such index). A killed concurrent
    build leaves an invalid index behind, which a second run must drop and build again."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
            [name],
        )
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


def _built_already(schema_editor: Any, name: str) -> bool:
    """True where a valid index of that name exists; an invalid one is dropped first."""
    valid = _index_valid(schema_editor, name)
    if valid is False:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
    return bool(valid)


class _WithoutBlockingWrites:
    """Put before a django.contrib.postgres ``*Concurrently`` operation: that operation on
    PostgreSQL, where the direction that builds the index first keeps a valid one a killed run
    left (and drops an invalid one); its plain parent (``_plain``) elsewhere."""

    _plain: type[migrations.AddIndex] | type[migrations.RemoveIndex]

    def _index_built_by(self, direction: str) -> str | None:
        """The index name ``direction`` builds, None where it drops one."""
        raise NotImplementedError

    def _run(
        self, direction: str, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if not _postgresql(schema_editor):
            getattr(self._plain, direction)(self, app_label, schema_editor, from_state, to_state)
            return
        built = self._index_built_by(direction)
        if built is not None and _built_already(schema_editor, built):
            return
        getattr(super(), direction)(app_label, schema_editor, from_state, to_state)

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        self._run("database_forwards", app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        self._run("database_backwards", app_label, schema_editor, from_state, to_state)


class AddIndexWithoutBlockingWrites(_WithoutBlockingWrites, AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL, AddIndex elsewhere; runs again after a kill
    (a valid index is kept, an invalid one dropped and built again)."""

    _plain = migrations.AddIndex

    def _index_built_by(self, direction: str) -> str | None:
        return self.index.name if direction == "database_forwards" else None


class RemoveIndexWithoutBlockingWrites(_WithoutBlockingWrites, RemoveIndexConcurrently):
    """DROP INDEX CONCURRENTLY IF EXISTS on PostgreSQL (waits for open transactions without
    stopping new ones), RemoveIndex elsewhere."""

    _plain = migrations.RemoveIndex

    def _index_built_by(self, direction: str) -> str | None:
        return self.name if direction == "database_backwards" else None

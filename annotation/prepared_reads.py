"""The hot path's statements, prepared server-side, and whole model rows read by them.

Every next and label call reads the caller's campaign or assignment. Through the ORM each such
read compiled its SQL afresh and PostgreSQL planned it afresh, and that cost more than the
statement itself. Here the SQL is built once per process from the models' own metadata, run
prepared (see ``fetch_one_prepared``), and the row becomes model instances by the same
``from_db`` and database converters the ORM uses, so JSON, dates and choices come out alike.
``fetch_one_prepared`` and the model-row helpers are PostgreSQL only (callers keep their ORM
query for other databases); ``fetch_all_prepared`` and ``execute_prepared`` take SQL that every
supported database reads alike and run it through Django's cursor elsewhere.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connection
from django.db.models import Model


@contextmanager
def _prepared_cursor() -> Iterator[psycopg.Cursor]:
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def _execute_prepared(cursor: psycopg.Cursor, sql: str, params: dict | list) -> None:
    """``cursor.execute(..., prepare=True)``, seen as Django's own cursors are seen.

    These raw psycopg cursors bypass Django's cursor wrapper, so without this the statements
    would escape ``connection.execute_wrapper`` and the query log that
    ``CaptureQueriesContext`` (and so pytest-django's ``django_assert_num_queries``) reads:
    each goes through the connection's execute wrappers, and is logged while
    ``connection.queries_logged`` (DEBUG, or a capture in progress). With no wrapper installed
    and nothing logging (production) the statement runs directly, after two attribute checks.
    """
    if not connection.execute_wrappers and not connection.queries_logged:
        cursor.execute(sql, params, prepare=True)
        return

    def execute(sql: str, params: Any, many: bool, context: dict[str, Any]) -> None:
        cursor.execute(sql, params, prepare=True)

    run: Callable[[str, Any, bool, dict[str, Any]], Any] = execute
    for wrapper in reversed(connection.execute_wrappers):  # the order Django applies them in
        run = functools.partial(wrapper, run)
    context: dict[str, Any] = {"connection": connection, "cursor": cursor}
    if not connection.queries_logged:
        run(sql, params, False, context)
        return
    started = time.monotonic()
    try:
        run(sql, params, False, context)
    finally:
        duration = time.monotonic() - started
        connection.queries_log.append({"sql": f"{sql} /* prepared */", "time": f"{duration:.3f}"})


def fetch_one_prepared(sql: str, params: dict | list) -> tuple | None:
    """Run a hot-path statement as a server-side prepared statement (PostgreSQL only).

    Django's cursors bind parameters on the client, so PostgreSQL parses and plans every
    call afresh; planning these statements costs more than running them. A psycopg cursor
    with server-side binding prepares it once per connection (when the settings leave
    psycopg's prepared statements on: DATABASE_PREPARED_STATEMENTS). Errors are wrapped as
    Django's (IntegrityError), like the ORM's.
    """
    with _prepared_cursor() as cursor:
        _execute_prepared(cursor, sql, params)
        return cursor.fetchone()


@contextmanager
def _portable_executed(sql: str, params: dict | list) -> Iterator[Any]:
    """A cursor that has run ``sql``: prepared on PostgreSQL, Django's cursor elsewhere."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            yield cursor
        return
    with _prepared_cursor() as cursor:
        _execute_prepared(cursor, sql, params)
        yield cursor


def fetch_all_prepared(sql: str, params: dict | list) -> list[tuple]:
    """Every row of a hot-path statement: prepared on PostgreSQL, Django's cursor elsewhere.

    For statements written in SQL that every supported database reads alike.
    """
    with _portable_executed(sql, params) as cursor:
        return cursor.fetchall()


def execute_prepared(sql: str, params: dict | list) -> int:
    """Run a hot-path write (prepared on PostgreSQL, as ``fetch_all_prepared``); rows changed."""
    with _portable_executed(sql, params) as cursor:
        return cursor.rowcount


@dataclass(frozen=True)
class ModelColumns:
    """A model's concrete columns as selected from the table alias ``alias``."""

    model: type[Model]
    alias: str
    attnames: tuple[str, ...]
    select_sql: str
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]


@functools.cache
def model_columns(model: type[Model], alias: str) -> ModelColumns:
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        # Field.get_db_converters is missing from django-stubs.
        own = field.get_db_converters(connection)  # type: ignore[attr-defined]
        found = connection.ops.get_db_converters(column) + own
        if found:
            converters.append((index, tuple(found), column))
    return ModelColumns(
        model=model,
        alias=alias,
        attnames=tuple(field.attname for field in fields),
        select_sql=", ".join(f"{alias}.{quote(field.column)}" for field in fields),
        converters=tuple(converters),
    )


def instances_from_row(row: Sequence[Any], specs: Sequence[ModelColumns]) -> list[Model]:
    """Split one joined row into an instance per spec, in order."""
    instances = []
    offset = 0
    for spec in specs:
        values = list(row[offset : offset + len(spec.attnames)])
        for index, converters, column in spec.converters:
            for convert in converters:
                values[index] = convert(values[index], column, connection)
        instances.append(spec.model.from_db(connection.alias, spec.attnames, values))
        offset += len(spec.attnames)
    return instances


def fetch_instances(
    sql: str, params: dict[str, Any], specs: Sequence[ModelColumns]
) -> list[Model] | None:
    """Run ``sql`` (selecting the specs' columns, in order) prepared; None when no row."""
    row = fetch_one_prepared(sql, params)
    return None if row is None else instances_from_row(row, specs)

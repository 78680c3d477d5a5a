"""A Django admin paginator for tables of millions of rows."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered changelist from PostgreSQL's table statistics (``reltuples``,
    kept by autovacuum) instead of a ``COUNT(*)`` over the whole table; a filtered one, a
    small table or another database is counted exactly. The admin then shows "about N"
    pages of a table that changes by the second anyway."""

    # Below this estimate the exact count is cheap enough.
    exact_below = 100_000

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if isinstance(rows, QuerySet) and not rows.query.where:
            connection = connections[rows.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                        [rows.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                # -1 (or no row): never analysed; count then.
                if row is not None and row[0] >= self.exact_below:
                    return int(row[0])
        return super().count

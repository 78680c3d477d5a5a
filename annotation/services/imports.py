"""Importing pairs into a campaign: all or nothing, deduplicated on content hash.

Parsing lives in `annotation.importers` (pure Python, streaming, with line numbers); this
module writes what it yields. The whole file goes in one transaction: a bad row raises
ImportFormatError naming its line and nothing is kept. On PostgreSQL rows travel by COPY,
a batch at a time, after one lookup drops the pairs already there (in the campaign or
earlier in the file); elsewhere, batched bulk_create with ignore_conflicts does the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg.copy import QueuedLibpqWriter

from annotation.importers import ImportFormatError, ImportLimits, PairRecord, iter_pair_records
from annotation.models import Campaign, Pair, Round

_BATCH = 5000
_COLUMNS = (
    "campaign_id",
    "round_id",
    "conversation",
    "response_a",
    "response_b",
    "source",
    "external_id",
    "content_hash",
    "task_category",
    "objectivity",
    "controversiality",
    "desired_attributes",
    "annotation_guideline",
    "silver_preference",
    "is_gold",
    "gold_preference",
    "status",
    "priority",
    "priority_reason",
    "slots_taken",
    "slot_cap",
    "labels_count",
    "consensus_preference",
    "provenance",
    "disagreement",
    "curation",
    "created_at",
)

ProgressCallback = Callable[[int], None]
_IMPORT_LOCK = 7301  # advisory-lock namespace for imports (the second key is the campaign)


@dataclass(frozen=True)
class ImportResult:
    rows_read: int
    created: int
    duplicates: int


def import_limits() -> ImportLimits:
    config = settings.ARBITER
    return ImportLimits(
        max_bytes=config["IMPORT_MAX_BYTES"],
        max_decompressed_bytes=config["IMPORT_MAX_DECOMPRESSED_BYTES"],
        max_rows=config["IMPORT_MAX_ROWS"],
    )


def round_current(*, campaign: Campaign) -> Round:
    """The campaign's open round, opening round 1 (or the next) when none is open."""
    current = Round.objects.filter(campaign=campaign, status=Round.Status.OPEN).first()
    if current is not None:
        return current
    last = Round.objects.filter(campaign=campaign).order_by("-number").first()
    return Round.objects.create(campaign=campaign, number=(last.number + 1) if last else 1)


def _attribute(record: PairRecord, name: str) -> str:
    value = (record.attributes or {}).get(name)
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def _row(
    record: PairRecord, *, campaign: Campaign, round_id: int | None, as_gold: bool, now: Any
) -> tuple[Any, ...]:
    if as_gold and record.silver_preference in (None, 0):
        raise ImportFormatError(
            record.line, "a gold import needs a chosen/rejected (or preferred) label on every row"
        )
    gold = record.silver_preference if as_gold else None
    values = {
        "campaign_id": campaign.pk,
        "round_id": None if as_gold else round_id,
        "conversation": list(record.conversation),
        "response_a": record.response_a,
        "response_b": record.response_b,
        "source": record.source or "",
        "external_id": record.external_id or "",
        "content_hash": record.content_hash,
        "task_category": _attribute(record, "task_category"),
        "objectivity": _attribute(record, "objectivity"),
        "controversiality": _attribute(record, "controversiality"),
        "desired_attributes": _attribute(record, "desired_attributes"),
        "annotation_guideline": _attribute(record, "annotation_guideline"),
        "silver_preference": record.silver_preference,
        "is_gold": as_gold,
        "gold_preference": gold,
        "status": Pair.Status.COMPLETE if as_gold else (
            Pair.Status.QUEUED if round_id is not None else Pair.Status.POOLED
        ),
        "priority": 0.0,
        "priority_reason": "",
        "slots_taken": 0,
        "slot_cap": campaign.annotators_per_pair,
        "labels_count": 0,
        "consensus_preference": gold,
        "provenance": Pair.Provenance.GOLD if as_gold else Pair.Provenance.NONE,
        "disagreement": None,
        "curation": "",
        "created_at": now,
    }
    return tuple(values[column] for column in _COLUMNS)


def _batches(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


_HASH_INDEX = _COLUMNS.index("content_hash")


def _copy_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list) else value


def _write_postgresql(
    batches: Iterable[list[tuple[Any, ...]]], on_batch: ProgressCallback, *, campaign_id: int
) -> int:
    """COPY each batch straight into the table, minus pairs already there.

    Rows copied by earlier batches are visible to this transaction, so one indexed lookup per
    batch deduplicates against the campaign and the rest of the file alike. Imports into one
    campaign take an advisory lock, so two of them cannot race past each other's lookups.
    """
    columns = ", ".join(_COLUMNS)
    statement = f"COPY annotation_pair ({columns}) FROM STDIN"
    read = created = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_IMPORT_LOCK, campaign_id])
        raw = cursor.cursor  # psycopg 3 cursor, for COPY
        for batch in batches:
            read += len(batch)
            fresh: dict[str, tuple[Any, ...]] = {}
            for row in batch:
                fresh.setdefault(row[_HASH_INDEX], row)
            raw.execute(
                "SELECT content_hash FROM annotation_pair "
                "WHERE campaign_id = %s AND content_hash = ANY(%s)",
                [campaign_id, list(fresh)],
            )
            for (known,) in raw.fetchall():
                fresh.pop(known, None)
            if fresh:
                # The queued writer sends from a thread, so formatting the next rows
                # overlaps with the server ingesting the previous ones.
                with raw.copy(statement, writer=QueuedLibpqWriter(raw)) as copy:
                    for row in fresh.values():
                        copy.write_row(tuple(_copy_value(value) for value in row))
                created += len(fresh)
            on_batch(read)
    return created


def _write_generic(batches: Iterable[list[tuple[Any, ...]]], on_batch: ProgressCallback) -> int:
    before = Pair.objects.count()
    read = 0
    for batch in batches:
        Pair.objects.bulk_create(
            [Pair(**dict(zip(_COLUMNS, row, strict=True))) for row in batch],
            ignore_conflicts=True,
        )
        read += len(batch)
        on_batch(read)
    return Pair.objects.count() - before


def pairs_import(
    *,
    campaign: Campaign,
    path: str | Path,
    original_name: str | None = None,
    as_gold: bool = False,
    queue: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import every pair of the file, or none. Raises ImportFormatError naming the line."""
    path = Path(path)
    on_batch = on_progress or (lambda _rows: None)
    now = timezone.now()
    rows_read = 0
    with transaction.atomic():
        round_id = round_current(campaign=campaign).pk if (queue and not as_gold) else None

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal rows_read
            with path.open("rb") as handle:
                records = iter_pair_records(
                    handle, filename=original_name or path.name, limits=import_limits()
                )
                for record in records:
                    rows_read += 1
                    yield _row(
                        record, campaign=campaign, round_id=round_id, as_gold=as_gold, now=now
                    )

        if connection.vendor == "postgresql":
            created = _write_postgresql(_batches(rows()), on_batch, campaign_id=campaign.pk)
        else:
            created = _write_generic(_batches(rows()), on_batch)
    return ImportResult(rows_read=rows_read, created=created, duplicates=rows_read - created)


def campaign_get_or_create(*, name: str, **fields: Any) -> Campaign:
    campaign, created = Campaign.objects.get_or_create(name=name, defaults=fields)
    if created:
        campaign.full_clean()
    return campaign

"""Importing pairs into a campaign: all or nothing, deduplicated on content hash.

Parsing lives in `annotation.importers` (pure Python, streaming, with line numbers); this
module writes what it yields. The whole file goes in one transaction: a bad row raises
ImportFormatError naming its line and nothing is kept. On PostgreSQL rows travel by COPY
into a temporary table and one INSERT … ON CONFLICT DO NOTHING drops duplicates (within the
file and against pairs already there); elsewhere, batched bulk_create does the same.
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


def _write_postgresql(batches: Iterable[list[tuple[Any, ...]]], on_batch: ProgressCallback) -> int:
    columns = ", ".join(_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE arbiter_pair_stage ON COMMIT DROP AS "  # noqa: S608 - constants
            f"SELECT {columns} FROM annotation_pair WITH NO DATA"
        )
        raw = cursor.cursor  # psycopg 3 cursor, for COPY
        read = 0
        with raw.copy(f"COPY arbiter_pair_stage ({columns}) FROM STDIN") as copy:
            for batch in batches:
                for row in batch:
                    copy.write_row(
                        tuple(json.dumps(value) if isinstance(value, list) else value
                              for value in row)
                    )
                read += len(batch)
                on_batch(read)
        cursor.execute(
            f"INSERT INTO annotation_pair ({columns}) "  # noqa: S608 - constants
            f"SELECT {columns} FROM arbiter_pair_stage "
            "ON CONFLICT (campaign_id, content_hash) DO NOTHING"
        )
        created = cursor.rowcount
        cursor.execute("DROP TABLE arbiter_pair_stage")
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
            created = _write_postgresql(_batches(rows()), on_batch)
        else:
            created = _write_generic(_batches(rows()), on_batch)
    return ImportResult(rows_read=rows_read, created=created, duplicates=rows_read - created)


def campaign_get_or_create(*, name: str, **fields: Any) -> Campaign:
    campaign, created = Campaign.objects.get_or_create(name=name, defaults=fields)
    if created:
        campaign.full_clean()
    return campaign

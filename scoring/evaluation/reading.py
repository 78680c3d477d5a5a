"""Reading evaluation sets: the RewardBench layout (``prompt``, ``chosen``, ``rejected``,
``subset``) and preference message lists, from JSONL, JSON, CSV or Parquet, optionally gzipped.

Rows are parsed by the import parser (``annotation.importers``), so an evaluation set accepts
what a pair import accepts (a ``prompt`` string or message list with ``chosen``/``rejected``
strings, ``chosen``/``rejected`` message lists sharing all but the last turn, hh-rlhf
transcripts); ``subset`` (or ``category``), a string or a whole number, names the row's
subset, ``"default"`` when absent.
Pure: no Django.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, BinaryIO

from annotation.importers import ImportFormatError, ImportLimits, iter_raw_rows
from annotation.importers.row_fields import type_name
from annotation.importers.rows import RowError, record_from_row
from core.errors import BadRequest
from core.text import encodes_as_utf8
from core.validation import upload_max_bytes

# RewardBench is ~3,000 pairs and a few MB; sets are held whole once read.
MAX_SET_BYTES = 256 * 1024**2
# What a gzipped set may decompress to: counted while streaming, so a small .gz holding
# gigabytes stops at this many bytes read, never decompressed whole in memory.
MAX_SET_DECOMPRESSED_BYTES = 512 * 1024**2
# An upload over MAX_SET_BYTES is refused (413) before it is received (pages and API).
evaluation_upload_bound = upload_max_bytes(
    lambda: MAX_SET_BYTES, "the evaluation set limit of 256 MiB", "Compress it with gzip."
)
MAX_SET_PAIRS = 200_000
DEFAULT_SUBSET = "default"
SUBSET_COLUMNS = frozenset({"subset", "category"})
# The import parser's limits (row size, field length) with the evaluation set's own caps.
SET_LIMITS = ImportLimits(
    max_bytes=MAX_SET_BYTES,
    max_decompressed_bytes=MAX_SET_DECOMPRESSED_BYTES,
    max_rows=MAX_SET_PAIRS,
)


class EvaluationSetError(BadRequest, ValueError):
    """An evaluation file that cannot be read; the message says where and why (a 400)."""

    code = "evaluation_set_error"


@dataclass(frozen=True)
class EvaluationRecord:
    conversation: list[dict[str, str]]
    chosen: str
    rejected: str
    subset: str


def read_evaluation_set(
    handle: BinaryIO, *, filename: str, max_seconds: float | None = None
) -> list[EvaluationRecord]:
    """Every pair of the file, in order; the first bad row raises with its number.

    The file is streamed through the pair importer's reader (``annotation.importers``), so
    uploads get the same protection: byte, decompressed-byte, row and row-size limits counted
    as it reads, and ``max_seconds`` of reading at most (for a web request).
    """
    limits = dataclasses.replace(SET_LIMITS, max_seconds=max_seconds)
    records: list[EvaluationRecord] = []
    try:
        for number, raw in enumerate(
            iter_raw_rows(handle, filename=filename, limits=limits, extra_columns=SUBSET_COLUMNS),
            start=1,
        ):
            if isinstance(raw.row, RowError):
                raise EvaluationSetError(f"{filename}: {raw.unit} {raw.line}: {raw.row}")
            records.append(_record(raw.row, number, filename, limits, from_text=raw.from_text))
    except ImportFormatError as error:
        raise EvaluationSetError(f"{filename}: {error}") from error
    if not records:
        raise EvaluationSetError(f"{filename}: no pairs found")
    return records


def _record(
    row: object, number: int, filename: str, limits: ImportLimits, *, from_text: bool
) -> EvaluationRecord:
    if not isinstance(row, dict):
        # A JSON array file may hold anything: [1, 2] or [[]] are rows too.
        raise EvaluationSetError(
            f"{filename}: row {number}: expected a JSON object, got {type_name(row)}"
        )
    subset = _subset(row, number, filename)
    try:
        record = record_from_row(_pair_fields(row), line=number, limits=limits, from_text=from_text)
    except RowError as error:
        raise EvaluationSetError(f"{filename}: row {number}: {error}") from error
    return EvaluationRecord(
        conversation=[dict(turn) for turn in record.conversation],
        chosen=record.response_a,
        rejected=record.response_b,
        subset=subset,
    )


def _subset(row: dict[str, Any], number: int, filename: str) -> str:
    """The row's subset: a string or a whole number (a Parquet column may hold those), cut to
    200 characters; ``DEFAULT_SUBSET`` when absent or blank."""
    field = "subset" if row.get("subset") not in (None, "") else "category"
    value = row.get(field)
    if value in (None, ""):
        return DEFAULT_SUBSET
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        # str() would store an object's repr or a float's "inf" as the subset's name.
        raise EvaluationSetError(
            f"{filename}: row {number}: {field} must be a string, got {type_name(value)}"
        )
    # PostgreSQL text holds no NUL, and a lone surrogate ("\ud800", which JSON escapes decode
    # to) cannot be encoded: refused here with the row's number, not at hashing or saving.
    if "\x00" in value:
        raise EvaluationSetError(f"{filename}: row {number}: {field} contains a NUL character")
    if not encodes_as_utf8(value):
        raise EvaluationSetError(
            f"{filename}: row {number}: {field} is not valid Unicode (it holds a lone "
            "surrogate such as \\ud800)"
        )
    return value.strip()[:200] or DEFAULT_SUBSET


def _pair_fields(row: dict[str, Any]) -> dict[str, Any]:
    # Only the fields the pair parser reads: RewardBench rows carry ids and model names too.
    keep = ("prompt", "conversation", "chosen", "rejected")
    return {key: row[key] for key in keep if key in row}

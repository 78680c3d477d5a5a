"""Reading evaluation sets: the RewardBench layout (``prompt``, ``chosen``, ``rejected``,
``subset``) and preference message lists, from JSONL, JSON or Parquet, optionally gzipped.

Rows are parsed by the import parser (``annotation.importers``), so an evaluation set accepts
what a pair import accepts (a ``prompt`` string or message list with ``chosen``/``rejected``
strings, ``chosen``/``rejected`` message lists sharing all but the last turn, hh-rlhf
transcripts); ``subset`` (or ``category``) names the row's subset, ``"default"`` when absent.
Pure: no Django.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from annotation.importers import ImportLimits
from annotation.importers.rows import RowError, record_from_row

# RewardBench is ~3,000 pairs and a few MB; sets are read whole.
MAX_SET_BYTES = 256 * 1024**2
MAX_SET_PAIRS = 200_000
DEFAULT_SUBSET = "default"


class EvaluationSetError(ValueError):
    """An evaluation file that cannot be read; the message says where and why."""


@dataclass(frozen=True)
class EvaluationRecord:
    conversation: list[dict[str, str]]
    chosen: str
    rejected: str
    subset: str


def read_evaluation_set(handle: BinaryIO, *, filename: str) -> list[EvaluationRecord]:
    """Every pair of the file, in order; the first bad row raises with its number."""
    raw = handle.read(MAX_SET_BYTES + 1)
    if len(raw) > MAX_SET_BYTES:
        raise EvaluationSetError(f"{filename} is larger than {MAX_SET_BYTES} bytes")
    name = filename.lower()
    if name.endswith(".gz") or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise EvaluationSetError(f"{filename}: not a valid gzip file ({error})") from error
        name = name.removesuffix(".gz")
    if len(raw) > MAX_SET_BYTES:
        raise EvaluationSetError(f"{filename} is larger than {MAX_SET_BYTES} bytes unpacked")
    records: list[EvaluationRecord] = []
    limits = ImportLimits()
    for number, row in enumerate(_rows(raw, name, filename), start=1):
        if not isinstance(row, dict):
            raise EvaluationSetError(f"{filename}: row {number} is not an object")
        subset = row.get("subset", row.get("category"))
        subset = str(subset).strip() if subset not in (None, "") else DEFAULT_SUBSET
        try:
            record = record_from_row(_pair_fields(row), line=number, limits=limits)
        except RowError as error:
            raise EvaluationSetError(f"{filename}: row {number}: {error}") from error
        records.append(
            EvaluationRecord(
                conversation=[dict(turn) for turn in record.conversation],
                chosen=record.response_a,
                rejected=record.response_b,
                subset=subset[:200],
            )
        )
        if len(records) > MAX_SET_PAIRS:
            raise EvaluationSetError(f"{filename}: more than {MAX_SET_PAIRS} pairs")
    if not records:
        raise EvaluationSetError(f"{filename}: no pairs found")
    return records


def _pair_fields(row: dict[str, Any]) -> dict[str, Any]:
    # Only the fields the pair parser reads: RewardBench rows carry ids and model names too.
    keep = ("prompt", "conversation", "chosen", "rejected")
    return {key: row[key] for key in keep if key in row}


def _rows(raw: bytes, name: str, filename: str) -> Iterator[Any]:
    try:
        if name.endswith(".parquet") or raw[:4] == b"PAR1":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(pa.BufferReader(raw))
            except pa.ArrowException as error:
                raise EvaluationSetError(f"{filename}: not a readable Parquet file") from error
            yield from table.to_pylist()
            return
        text = raw.decode("utf-8-sig")
        if name.endswith(".json") or text.lstrip().startswith("["):
            data = json.loads(text)
            if isinstance(data, dict):
                data = data.get("data", data.get("rows", []))
            if not isinstance(data, list):
                raise EvaluationSetError(f"{filename}: expected a JSON list of rows")
            yield from data
            return
        for number, line in enumerate(io.StringIO(text), start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise EvaluationSetError(
                        f"{filename}: line {number} is not JSON ({error.msg})"
                    ) from error
    except UnicodeDecodeError as error:
        raise EvaluationSetError(f"{filename}: not UTF-8 text") from error
    except json.JSONDecodeError as error:
        raise EvaluationSetError(f"{filename}: not valid JSON ({error.msg})") from error

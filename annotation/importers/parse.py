"""The import parser's entry points."""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from annotation.importers.formats import (
    RowStream,
    iter_csv_rows,
    iter_json_rows,
    iter_jsonl_rows,
    iter_parquet_rows,
)
from annotation.importers.records import ImportFormatError, ImportLimits, PairRecord
from annotation.importers.rows import RowError, record_from_row
from annotation.importers.streams import FileFormat, OpenedSource, open_source

Source = str | os.PathLike[str] | IO[bytes]
InvalidRowHandler = Callable[[ImportFormatError], None]

_UNITS: dict[FileFormat, str] = {"jsonl": "line", "csv": "line", "json": "item", "parquet": "row"}
DEFAULT_LIMITS = ImportLimits()


def iter_pair_records(
    source: Source,
    *,
    filename: str | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
    file_format: FileFormat | None = None,
    on_invalid_row: InvalidRowHandler | None = None,
) -> Iterator[PairRecord]:
    """Stream validated pairs out of a JSONL, JSON, CSV or Parquet file, gzipped or not.

    `source` is a path or a binary file object (read from its current position; a caller's
    file object is left open). `filename` names the upload when `source` does not, to help
    detection; `file_format` skips detection. The first invalid row raises ImportFormatError,
    unless `on_invalid_row` is given: then each invalid row's error is passed to it and the
    row is skipped. Errors that concern the whole file (limits, corrupt gzip, a JSON syntax
    error) always raise.

    Nothing is read until the first record is asked for, and memory stays bounded by one
    row (JSONL, JSON, CSV) or one batch of a row group (Parquet).
    """
    for raw in iter_raw_rows(source, filename=filename, limits=limits, file_format=file_format):
        try:
            if isinstance(raw.row, RowError):
                raise raw.row
            record = record_from_row(raw.row, line=raw.line, limits=limits, from_text=raw.from_text)
        except RowError as error:
            failure = ImportFormatError(raw.line, str(error), unit=raw.unit)
            if on_invalid_row is None:
                raise failure from None
            on_invalid_row(failure)
            continue
        yield record


@dataclass(frozen=True, slots=True)
class RawRow:
    """One row as the file holds it (a dict, or the RowError of an unreadable row), before
    validation: `line` counts `unit`s; `from_text` marks tabular sources (see record_from_row)."""

    line: int
    row: dict[str, Any] | RowError
    unit: str
    from_text: bool


def iter_raw_rows(
    source: Source,
    *,
    filename: str | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
    file_format: FileFormat | None = None,
    extra_columns: frozenset[str] = frozenset(),
) -> Iterator[RawRow]:
    """The file's rows under the same limits as iter_pair_records (size, decompressed size,
    row count, row size, time), for readers that need fields the pair parser drops (Parquet
    decodes the pair's columns and ``extra_columns`` only)."""
    try:
        yield from _iter_raw_rows(source, filename, limits, file_format, extra_columns)
    except EOFError:
        raise ImportFormatError(None, "the gzip data is truncated") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        # gzip raises these from deep inside whichever reader is running.
        raise ImportFormatError(None, f"the gzip data is corrupt: {error}") from None


def _iter_raw_rows(
    source: Source,
    filename: str | None,
    limits: ImportLimits,
    file_format: FileFormat | None,
    extra_columns: frozenset[str] = frozenset(),
) -> Iterator[RawRow]:
    with contextlib.ExitStack() as stack:
        opened = open_source(
            source, filename=filename, limits=limits, stack=stack, file_format=file_format
        )
        unit = _UNITS[opened.format]
        from_text = opened.format in ("csv", "parquet")
        max_rows = limits.max_rows
        rows = 0
        for line, row in _rows(opened, limits, extra_columns):
            rows += 1
            if rows > max_rows:
                raise ImportFormatError(None, f"file has more than {max_rows:,} rows")
            yield RawRow(line, row, unit, from_text)


def parse_all(
    source: Source,
    *,
    filename: str | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
    file_format: FileFormat | None = None,
    on_invalid_row: InvalidRowHandler | None = None,
) -> list[PairRecord]:
    """iter_pair_records, collected into a list (for small files and tests)."""
    return list(
        iter_pair_records(
            source,
            filename=filename,
            limits=limits,
            file_format=file_format,
            on_invalid_row=on_invalid_row,
        )
    )


def _rows(
    opened: OpenedSource, limits: ImportLimits, extra_columns: frozenset[str] = frozenset()
) -> RowStream:
    if opened.format == "jsonl":
        return iter_jsonl_rows(opened.stream, limits)
    if opened.format == "json":
        return iter_json_rows(opened.stream, limits)
    if opened.format == "csv":
        return iter_csv_rows(opened.stream, limits)
    if opened.seekable is None:
        raise RuntimeError("open_source gave a Parquet file no seekable handle")
    return iter_parquet_rows(opened.seekable, limits, extra_columns)

"""Readers that stream rows out of each file format.

Each reader yields (position, row) pairs. A row is a dict, or a RowError when only that row
is unreadable (a bad JSONL line, a CSV record with the wrong number of fields), so that a
caller may skip it. Errors that spoil the rest of the file raise ImportFormatError.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from annotation.importers._json import JSONDecodeError, loads
from annotation.importers.parquet_sizes import PARQUET_BATCH_ROWS, row_sizes
from annotation.importers.records import ImportFormatError, ImportLimits
from annotation.importers.rows import RowError
from annotation.importers.streams import ROW_KEYS, UTF8_BOM

RowStream = Iterator[tuple[int, "dict[str, Any] | RowError"]]

# Decoded text turned into Python objects at once: bounds a batch of long rows.
PARQUET_DECODE_BYTES = 32 * 1024 * 1024
JSON_CHUNK_BYTES = 1024 * 1024
SHAPE_COLUMNS = (
    ("response_a", "response_b"),
    ("chosen", "rejected"),
    ("responses",),
    ("completions",),
)
_NOT_WHITESPACE = re.compile(r"[^ \t\n\r]")
_JSON_DECODER = json.JSONDecoder()


def iter_jsonl_rows(stream: io.BufferedReader[Any], limits: ImportLimits) -> RowStream:
    """One JSON object per line; blank lines are skipped but still counted."""
    readline = stream.readline
    max_bytes = limits.max_row_bytes
    line = 0
    while True:
        raw = readline(max_bytes + 1)
        if not raw:
            return
        line += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            raise ImportFormatError(line, f"line is longer than {max_bytes:,} bytes")
        # Any line, not only the first: files saved on Windows and joined (cat a.jsonl
        # b.jsonl) carry a byte order mark at the start of each part.
        raw = raw.removeprefix(UTF8_BOM)
        if raw.isspace():
            continue
        try:
            row = loads(raw)
        except JSONDecodeError as error:
            yield line, RowError(_describe_jsonl_error(raw, error))
            continue
        yield line, row


def iter_json_rows(stream: io.BufferedReader[Any], limits: ImportLimits) -> RowStream:
    """A top-level array, or an object whose "data" or "pairs" key holds the array.

    The array is read item by item, so memory stays bounded by the largest item rather than
    by the file.
    """
    text = _JsonText(stream, limits)
    first = text.skip_whitespace()
    if first == "":
        return
    if first == "[":
        yield from _array_items(text)
    elif first == "{":
        yield from _wrapped_array_items(text)
    else:
        raise ImportFormatError(
            None,
            'a JSON file must hold an array of pairs or an object with a "data" or "pairs" array',
        )
    if text.skip_whitespace() != "":
        raise ImportFormatError(None, "unexpected content after the end of the JSON value")


def iter_csv_rows(stream: io.BufferedReader[Any], limits: ImportLimits) -> RowStream:
    """A header row, then one record per row; a record's line is where it starts."""
    # The C parser's field limit is process-wide; raising it only loosens it for others.
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_row_bytes))
    # surrogateescape: a bad byte is found on its own line below; strict decoding failed a
    # chunk (8 KiB) ahead of the reader, naming a line up to hundreds before the byte.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    max_chars = limits.max_row_bytes
    record_chars = 0  # of the record being read; the loops below reset it after each
    physical_line = record_start = 0

    def bounded_lines() -> Iterator[str]:
        # The field limit alone does not bound a record: a line of commas is millions of
        # empty fields, a list the reader builds in full before we see it (8 bytes a comma).
        nonlocal record_chars, physical_line, record_start
        readline = text.readline
        while line := readline(max_chars + 1):
            physical_line += 1
            if not record_chars:
                record_start = physical_line
            record_chars += len(line)
            if record_chars > max_chars:
                raise ImportFormatError(
                    record_start, f"record is longer than {max_chars:,} characters"
                )
            if not line.isascii():
                # Valid UTF-8 never decodes to a surrogate: one here is an escaped bad byte.
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:
                    raise ImportFormatError(
                        physical_line, "the file is not valid UTF-8: save it as UTF-8"
                    ) from None
            yield line

    reader = csv.reader(bounded_lines(), strict=True)
    line_end = 0
    try:
        header: list[str] = []
        for cells in reader:
            record_chars = 0
            if cells:
                header = [cell.strip() for cell in cells]
                break
        if not header:
            return
        _check_csv_header(header, reader.line_num)
        line_end = reader.line_num
        for cells in reader:
            record_chars = 0
            line_start, line_end = line_end + 1, reader.line_num
            if not cells:
                continue
            if len(cells) != len(header):
                yield (
                    line_start,
                    RowError(f"has {len(cells)} fields but the header has {len(header)}"),
                )
                continue
            yield line_start, dict(zip(header, cells, strict=True))
    except csv.Error as error:
        raise ImportFormatError(line_end + 1, f"malformed CSV: {error}") from None


def iter_parquet_rows(
    seekable: str | IO[bytes], limits: ImportLimits, extra_columns: frozenset[str] = frozenset()
) -> RowStream:
    """Row groups are read in batches, after the footer's row count passes the limit. Only the
    columns a pair reads are decoded, and ``extra_columns`` (e.g. an evaluation set's subset).

    Sizes are measured from the data, never the footer's claim: text is read as Arrow
    dictionaries (a value repeated on every row is held once), each row's decoded size is
    counted before it becomes Python strings, a row over ``max_row_bytes`` is refused like a
    longer JSONL line, rows are turned into Python objects at most PARQUET_DECODE_BYTES at a
    time, and the decoded total counts against ``max_decompressed_bytes``."""
    try:
        parquet = pq.ParquetFile(seekable)
    except (pa.ArrowException, OSError) as error:
        raise ImportFormatError(None, f"not a valid Parquet file: {error}") from None
    try:
        metadata = parquet.metadata
        if metadata.num_rows > limits.max_rows:
            raise ImportFormatError(
                None, f"file has {metadata.num_rows:,} rows, over the limit of {limits.max_rows:,}"
            )
        names = parquet.schema_arrow.names
        _check_header(names, None, "Parquet file", unit="row")
        columns = [name for name in names if name in ROW_KEYS or name in extra_columns]
        text_leaves = [
            leaf.path
            for leaf in parquet.schema
            # Top-level columns only: Arrow cannot read a nested leaf whose dictionary changes
            # within a row group as a dictionary ("not implemented for chunked array").
            if leaf.physical_type == "BYTE_ARRAY" and leaf.path in columns
        ]
    except BaseException:
        parquet.close()
        raise
    parquet.close()
    # Opened again to read text leaves as dictionaries: a small file whose dictionary holds
    # one 150,000-character value for every row decoded to 600 MB a column per batch.
    try:
        parquet = pq.ParquetFile(seekable, read_dictionary=text_leaves)
    except (pa.ArrowException, OSError) as error:
        raise ImportFormatError(None, f"not a valid Parquet file: {error}") from None
    row = 0
    decoded_total = 0
    max_row_bytes = limits.max_row_bytes
    try:
        # Arrow decodes the columns on threads of its own, outside the GIL: reading
        # 100,000 rows took 0.30 s instead of 0.37 s.
        batches = parquet.iter_batches(
            batch_size=PARQUET_BATCH_ROWS, columns=columns, use_threads=True
        )
        for batch in batches:
            sizes = row_sizes(batch)
            if len(sizes) and int(sizes.max()) > max_row_bytes:
                over = int(np.argmax(sizes > max_row_bytes))
                raise ImportFormatError(
                    row + over + 1,
                    f"row is larger than {max_row_bytes:,} bytes once decoded",
                    unit="row",
                )
            decoded_total += int(sizes.sum())
            if decoded_total > limits.max_decompressed_bytes:
                raise ImportFormatError(
                    None,
                    f"decompressed size exceeds the limit of "
                    f"{limits.max_decompressed_bytes:,} bytes",
                )
            batch_names = batch.schema.names
            plain = _plain_schema(batch.schema)
            for start, stop in _decode_slices(sizes):
                part = batch.slice(start, stop - start) if stop - start < len(sizes) else batch
                # Dictionaries decoded in Arrow first, a slice at a time: to_pylist on a
                # dictionary column was four times slower.
                part = part.cast(plain)
                # Column by column, then zipped: about 40% faster than batch.to_pylist().
                column_values = [column.to_pylist() for column in part.columns]
                for values in zip(*column_values, strict=True):
                    row += 1
                    yield row, dict(zip(batch_names, values, strict=False))  # same width
                del column_values
    except (pa.ArrowException, OSError) as error:
        raise ImportFormatError(row + 1, f"unreadable Parquet data: {error}", unit="row") from None
    finally:
        parquet.close()


def _decode_slices(sizes: np.ndarray[Any, Any]) -> Iterator[tuple[int, int]]:
    """Runs of rows holding at most PARQUET_DECODE_BYTES together (at least one row each)."""
    count = len(sizes)
    if count == 0:
        return
    ends = np.cumsum(sizes)
    if int(ends[-1]) <= PARQUET_DECODE_BYTES:
        yield 0, count
        return
    start = 0
    while start < count:
        before = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, before + PARQUET_DECODE_BYTES, side="right"))
        stop = max(stop, start + 1)
        yield start, stop
        start = stop


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([field.with_type(_plain_type(field.type)) for field in schema])


def _plain_type(kind: pa.DataType) -> pa.DataType:
    """`kind` with every dictionary replaced by its value type."""
    if pa.types.is_dictionary(kind):
        return _plain_type(kind.value_type)
    if pa.types.is_map(kind):
        return pa.map_(_plain_type(kind.key_type), _plain_type(kind.item_type))
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_plain_type(kind.value_type)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_plain_type(kind.value_type)))
    if pa.types.is_fixed_size_list(kind):
        field = kind.value_field.with_type(_plain_type(kind.value_type))
        return pa.list_(field, kind.list_size)
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_plain_type(field.type)) for field in kind])
    return kind


def _check_csv_header(header: list[str], line: int) -> None:
    """As ``_check_header``, saying so when the header is one column holding another
    separator (a spreadsheet's export in a locale that separates with ';', or a TSV)."""
    try:
        _check_header(header, line, "CSV header", unit="line")
    except ImportFormatError as error:
        separator = next(
            (sep for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]), None
        )
        if separator is None:
            raise
        shown = "a tab" if separator == "\t" else repr(separator)
        raise ImportFormatError(
            line,
            f"{error.reason}; its columns look separated by {shown}: save the file with "
            "commas between columns (CSV), or as JSONL",
            unit="line",
        ) from None


def _check_header(names: list[str], line: int | None, what: str, *, unit: str) -> None:
    # Counted once: names.count per name took 37 s on a header of 40,000 columns.
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ImportFormatError(line, f"{what} repeats the column {duplicates[0]!r}", unit=unit)
    present = set(names)
    if not any(present.issuperset(shape) for shape in SHAPE_COLUMNS):
        found = ", ".join(names) or "none"
        raise ImportFormatError(
            line,
            f"{what} needs response_a and response_b columns, or chosen and rejected columns, "
            f"or a responses (or completions) column (found: {found})",
            unit=unit,
        )


def _describe_jsonl_error(raw: bytes, error: ValueError) -> str:
    """orjson says "str is not valid UTF-8: surrogates not allowed" at column 1 for any bad
    byte (a Latin-1 "é" too): name the byte and the encoding instead."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 at byte {bad.start + 1} of the line: save the file as UTF-8"
    return _describe_json_error(error)


def _describe_json_error(error: ValueError) -> str:
    message = getattr(error, "msg", str(error))
    column = getattr(error, "colno", None)
    return f"invalid JSON at column {column}: {message}" if column else f"invalid JSON: {message}"


class _JsonText:
    """A window of decoded text over a JSON stream, grown on demand and trimmed between items."""

    def __init__(self, stream: io.BufferedReader[Any], limits: ImportLimits) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._max_chars = limits.max_row_bytes
        self.text = ""
        self.pos = 0
        self.eof = False

    def _read_more(self, size: int) -> None:
        data = self._stream.read(size)
        try:
            self.text += self._decoder.decode(data, final=not data)
        except UnicodeDecodeError:
            raise ImportFormatError(None, "the file is not valid UTF-8") from None
        self.eof = not data

    def trim(self) -> None:
        if self.pos > JSON_CHUNK_BYTES:
            self.text = self.text[self.pos :]
            self.pos = 0

    def skip_whitespace(self) -> str:
        """Moves to the next significant character and returns it ("" at the end)."""
        while True:
            match = _NOT_WHITESPACE.search(self.text, self.pos)
            if match is not None:
                self.pos = match.start()
                return self.text[self.pos]
            # All whitespace to the end: dropped, or a run of it (megabytes of blanks, or a
            # gzip file of gigabytes) would pile up in the window until the end of the file.
            self.text, self.pos = "", 0
            if self.eof:
                return ""
            self._read_more(JSON_CHUNK_BYTES)

    def expect(self, character: str) -> bool:
        if self.skip_whitespace() == character:
            self.pos += 1
            return True
        return False

    def value(self) -> Any:
        """Decodes the value at pos, reading more text until it is complete.

        A value that ends exactly at the end of the window may be a cut-off number, so it is
        decoded again once more text is in.
        """
        while True:
            try:
                value, end = _JSON_DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                if self.eof:
                    raise ValueError(_describe_json_error(error)) from None
            except RecursionError:
                # The standard decoder recurses once per level; a cut-off item cannot recurse
                # deeper once complete, so this is final.
                raise ValueError("item is nested too deeply") from None
            else:
                if end < len(self.text) or self.eof:
                    self.pos = end
                    return value
            pending = len(self.text) - self.pos
            if pending > self._max_chars:
                raise ValueError(f"item is larger than {self._max_chars:,} characters")
            self._read_more(max(JSON_CHUNK_BYTES, pending))


def _array_items(text: _JsonText) -> RowStream:
    text.pos += 1  # past "["
    if text.expect("]"):
        return
    item = 0
    while True:
        item += 1
        text.trim()
        text.skip_whitespace()
        try:
            value = text.value()
        except ValueError as error:
            raise ImportFormatError(item, str(error), unit="item") from None
        yield item, value
        if text.expect(","):
            continue
        if text.expect("]"):
            return
        raise ImportFormatError(item, "expected ',' or ']' after this item", unit="item")


def _wrapped_array_items(text: _JsonText) -> RowStream:
    text.pos += 1  # past "{"
    found = None
    if text.expect("}"):
        raise ImportFormatError(None, 'the JSON object has no "data" or "pairs" array')
    while True:
        text.trim()
        if text.skip_whitespace() != '"':
            raise ImportFormatError(None, "malformed JSON object: expected a key")
        try:
            key = text.value()
        except ValueError as error:
            raise ImportFormatError(None, f"malformed JSON object: {error}") from None
        if not text.expect(":"):
            raise ImportFormatError(None, f"malformed JSON object: expected ':' after {key!r}")
        if key in ("data", "pairs"):
            if found is not None:
                raise ImportFormatError(None, f'the JSON object has both "{found}" and "{key}"')
            if text.skip_whitespace() != "[":
                raise ImportFormatError(None, f'"{key}" must be an array of pairs')
            found = key
            yield from _array_items(text)
        else:
            text.skip_whitespace()
            try:
                text.value()
            except ValueError as error:
                raise ImportFormatError(None, f"malformed JSON in {key!r}: {error}") from None
        if text.expect(","):
            continue
        if text.expect("}"):
            break
        raise ImportFormatError(None, "malformed JSON object: expected ',' or '}'")
    if found is None:
        raise ImportFormatError(None, 'the JSON object has no "data" or "pairs" array')

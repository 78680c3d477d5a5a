"""Open an upload: enforce the size limits, undo gzip, and tell which format it holds."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import IO, Any, Literal

from annotation.importers._json import loads
from annotation.importers.records import ATTRIBUTE_NAMES, ImportFormatError, ImportLimits

FileFormat = Literal["jsonl", "json", "csv", "parquet"]
FORMATS: tuple[FileFormat, ...] = ("jsonl", "json", "csv", "parquet")
BUFFER_BYTES = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
# UTF-32's little-endian mark begins with UTF-16's.
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
NOT_UTF8 = (
    "the file is not UTF-8 (it starts with a UTF-16 or UTF-32 byte order mark): save it as UTF-8"
)
# Every top-level key the row parser reads: Parquet decodes only these columns (and the
# first JSONL line is told from a JSON document by them).
ROW_KEYS = frozenset(
    {
        "conversation",
        "prompt",
        "response_a",
        "response_b",
        "responses",
        "completions",
        "instruction",
        "chosen",
        "rejected",
        "external_id",
        "source",
        "attributes",
        "silver_preference",
        "preferred",
        "silver_ranking",
        # An export's ties and outcomes files: their label and consensus outcome; its main
        # file: how much better chosen is.
        "preference",
        "outcome",
        "preference_strength",
        *ATTRIBUTE_NAMES,
    }
)
_EXTENSIONS: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
UNSUPPORTED_FILE = (
    "this is not a file of pairs the importer reads: JSONL, JSON, CSV or Parquet, "
    "optionally gzip-compressed"
)
_FIRST_KEY = re.compile(rb'\s*\{\s*"([^"\\]{1,64})"')


@dataclass(frozen=True)
class OpenedSource:
    """A readable upload: `stream` gives the decompressed bytes; Parquet needs `seekable`."""

    format: FileFormat
    stream: io.BufferedReader[Any]
    seekable: str | IO[bytes] | None = None


class _CountingReader(io.RawIOBase):
    """Counts the bytes read through it and fails once they pass `limit`.

    Counting as we go is what stops a gzip bomb: we never decompress more than the limit,
    whatever the header or the file size claims. It never closes the stream it wraps.
    """

    def __init__(
        self, inner: Any, limit: int, reason: str, deadline: _Deadline | None = None
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._reason = reason
        self._deadline = deadline
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        readinto = getattr(self._inner, "readinto", None)
        if readinto is not None:
            size = readinto(buffer)
        else:
            data = self._inner.read(len(buffer))
            size = len(data)
            buffer[:size] = data
        if size is None:
            raise ImportFormatError(None, "non-blocking file objects are not supported")
        self.count += size
        if self.count > self._limit:
            raise ImportFormatError(None, self._reason)
        if self._deadline is not None:
            self._deadline.check()
        return size


class _Deadline:
    """Checked once a chunk (1 MiB) is read, so blank lines or tiny rows cannot hold an
    import for minutes between checks."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._ends = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._ends:
            raise ImportFormatError(
                None, f"reading the file took longer than the limit of {self._seconds:g} s"
            )


def open_source(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    filename: str | None,
    limits: ImportLimits,
    stack: contextlib.ExitStack,
    file_format: FileFormat | None = None,
) -> OpenedSource:
    """Open `source` (a path or a binary file object) for reading; the stack closes it."""
    if isinstance(source, (str, os.PathLike)):
        named_path = os.fspath(source)
        path: str | None = named_path
        filename = filename or os.path.basename(named_path)
        _check_size(os.path.getsize(named_path), limits)
        raw: Any = stack.enter_context(open(named_path, "rb", buffering=0))
        start = 0
    else:
        if isinstance(source, io.TextIOBase):
            raise TypeError("open the upload in binary mode ('rb')")
        path = None
        raw = source
        name = getattr(source, "name", None)
        filename = filename or (os.path.basename(name) if isinstance(name, str) else None)
        start = _check_remaining_size(raw, limits)
    limit_reason = f"file is larger than the limit of {limits.max_bytes:,} bytes"
    deadline = _Deadline(limits.max_seconds) if limits.max_seconds else None
    outer = io.BufferedReader(
        _CountingReader(raw, limits.max_bytes, limit_reason, deadline), BUFFER_BYTES
    )
    name = (filename or "").lower()
    compressed = outer.peek(2)[:2] == GZIP_MAGIC
    if compressed:
        unpacked = gzip.GzipFile(fileobj=outer, mode="rb")
        bomb_reason = (
            f"decompressed size exceeds the limit of {limits.max_decompressed_bytes:,} bytes"
        )
        stream = io.BufferedReader(
            _CountingReader(unpacked, limits.max_decompressed_bytes, bomb_reason, deadline),
            BUFFER_BYTES,
        )
        name = name.removesuffix(".gz").removesuffix(".gzip")
    else:
        stream = outer
    detected = file_format or detect_format(stream, name)
    if detected not in FORMATS:
        raise ValueError(f"unknown import format {detected!r}; expected one of {FORMATS}")
    if detected != "parquet":
        return OpenedSource(detected, stream)
    return OpenedSource(
        detected,
        stream,
        _seekable_parquet(stream, raw, path, start, compressed=compressed, stack=stack),
    )


def estimated_cost_bytes(path: str | os.PathLike[str], *, cap: int) -> int:
    """What reading the file will cost, in bytes, measured rather than trusted: a gzip file's
    decompressed size (decompressed up to just past `cap`, so the measure itself is cheap), a
    Parquet file's decoded size (its footer's sizes can lie: a dictionary of one long value
    repeated on every row is small on disk and in the footer; likewise measured up to just
    past `cap`), else the file size. Callers compare it with
    `cap` to choose between importing now and importing in the background."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head[:2] == GZIP_MAGIC:
            handle.seek(0)
            total = 0
            try:
                with gzip.GzipFile(fileobj=handle, mode="rb") as unpacked:
                    while total <= cap:
                        chunk = unpacked.read(min(BUFFER_BYTES, cap + 1 - total))
                        if not chunk:
                            break
                        total += len(chunk)
            except (OSError, EOFError, zlib.error):
                return size  # broken: the parser will say so, quickly
            return max(size, total)
    if head == PARQUET_MAGIC:
        # Imported here: pyarrow is heavy, and only Parquet uploads need it.
        from annotation.importers.parquet_sizes import parquet_decoded_bytes

        try:
            decoded = parquet_decoded_bytes(os.fspath(path), columns_read=ROW_KEYS, cap=cap)
        except Exception:  # noqa: BLE001 - unreadable: the parser will say so
            decoded = 0
        return max(size, decoded)
    return size


def detect_format(stream: io.BufferedReader[Any], name: str) -> FileFormat:
    """Magic bytes first, then the extension, then a look at the first line."""
    head = stream.peek(BUFFER_BYTES)
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    if head.startswith(UTF16_BOMS):
        # Windows tools (PowerShell's ">", "Unicode text") write UTF-16: say so, rather than
        # "not a file of pairs" or a JSON error about surrogates.
        raise ImportFormatError(None, NOT_UTF8)
    extension = os.path.splitext(name)[1]
    by_name = _EXTENSIONS.get(extension)
    if by_name == "parquet":
        raise ImportFormatError(None, f"the file is named {extension} but is not Parquet")
    if by_name in ("jsonl", "csv"):
        return by_name
    text = head.removeprefix(UTF8_BOM).lstrip()
    if text[:1] == b"[":
        return "json"
    if text[:1] == b"{":
        return _json_or_jsonl(text, named_json=by_name == "json")
    if by_name == "json":
        return "json"
    if not text:
        return "jsonl"  # empty: every reader yields nothing
    first_line = text.split(b"\n", 1)[0]
    if b"\0" in head or (by_name is None and b"," not in first_line):
        # Neither its name nor its first line says CSV (an image, a document, plain text):
        # say what the importer reads rather than what a CSV header lacks.
        raise ImportFormatError(None, UNSUPPORTED_FILE)
    return "csv"


def _json_or_jsonl(text: bytes, *, named_json: bool) -> FileFormat:
    """A leading "{" opens either a JSON object holding "data"/"pairs" or the first JSONL row.

    Files named .json often hold JSON lines, so the first line decides: a complete object
    with pair fields means JSONL.
    """
    first_key = _FIRST_KEY.match(text)
    key = first_key.group(1).decode("utf-8", "replace") if first_key else None
    if key in ("data", "pairs"):
        return "json"
    newline = text.find(b"\n")
    try:
        parsed = loads(text if newline < 0 else text[:newline])
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        if not ROW_KEYS.isdisjoint(parsed):
            return "jsonl"
        wraps_rows = any(isinstance(parsed.get(k), list) for k in ("data", "pairs"))
        return "json" if wraps_rows or named_json else "jsonl"
    if named_json:
        return "json"
    return "jsonl" if key in ROW_KEYS else "json"


def _check_size(size: int, limits: ImportLimits) -> None:
    if size > limits.max_bytes:
        raise ImportFormatError(
            None, f"file is {size:,} bytes, over the limit of {limits.max_bytes:,} bytes"
        )


def _check_remaining_size(raw: Any, limits: ImportLimits) -> int:
    """Checks a seekable file object's size up front; returns where it starts."""
    seekable = getattr(raw, "seekable", None)
    if seekable is None or not seekable():
        return 0
    start = raw.tell()
    end = raw.seek(0, io.SEEK_END)
    raw.seek(start)
    _check_size(end - start, limits)
    return start


def _seekable_parquet(
    stream: io.BufferedReader[Any],
    raw: Any,
    path: str | None,
    start: int,
    *,
    compressed: bool,
    stack: contextlib.ExitStack,
) -> str | IO[bytes]:
    """pyarrow reads the footer first, so Parquet needs random access."""
    if not compressed and path is not None:
        return path
    if not compressed and getattr(raw, "seekable", lambda: False)():
        raw.seek(start)
        return raw
    # Copying through `stream` keeps the size limits in force while spooling.
    spool = stack.enter_context(tempfile.TemporaryFile())
    shutil.copyfileobj(stream, spool, BUFFER_BYTES)
    spool.seek(0)
    return spool

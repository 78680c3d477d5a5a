"""Parse uploaded pair files into validated records (pure Python, no Django).

    for record in iter_pair_records(upload, filename="pairs.jsonl.gz"):
        ...  # record.line, record.conversation, record.response_a, record.content_hash, ...

Formats: JSONL, JSON (an array, or an object with a "data" or "pairs" array), CSV and
Parquet, each optionally gzip-compressed (told by magic bytes). Row shapes: see rows.py.
"""

from __future__ import annotations

from annotation.importers.parse import RawRow, iter_pair_records, iter_raw_rows, parse_all
from annotation.importers.records import (
    ATTRIBUTE_NAMES,
    ImportFormatError,
    ImportLimits,
    PairRecord,
    canonical_json,
    content_hash,
    nfc,
)
from annotation.importers.streams import FileFormat

__all__ = [
    "ATTRIBUTE_NAMES",
    "FileFormat",
    "ImportFormatError",
    "ImportLimits",
    "PairRecord",
    "RawRow",
    "canonical_json",
    "content_hash",
    "iter_pair_records",
    "iter_raw_rows",
    "nfc",
    "parse_all",
]

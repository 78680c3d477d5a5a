"""How large a Parquet file's rows are once decoded, measured on the Arrow arrays before any
Python object is made (a footer's sizes can lie: a dictionary of one long value repeated on
every row is small on disk and in the footer). Shared by the reader (``formats``) and the
import's cost estimate (``streams``); it imports neither."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PARQUET_BATCH_ROWS = 4096


def parquet_decoded_bytes(path: str, *, columns_read: Collection[str], cap: int) -> int:
    """The decoded size of the columns a pair reads, measured batch by batch (text held as
    Arrow dictionaries, so memory stays small) until it passes `cap`."""
    names = pq.read_schema(path).names
    columns = [name for name in names if name in columns_read]
    text_leaves = [
        leaf.path
        for leaf in pq.read_metadata(path).schema
        if leaf.physical_type == "BYTE_ARRAY" and leaf.path in columns
    ]
    total = 0
    with pq.ParquetFile(path, read_dictionary=text_leaves) as parquet:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            total += int(row_sizes(batch).sum())
            if total > cap:
                break
    return total


def row_sizes(batch: pa.RecordBatch) -> np.ndarray[Any, Any]:
    """Each row's size once decoded: its text in bytes, plus 8 for every other value or list
    entry. Measured on the Arrow arrays, before any Python string is made."""
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        total += _value_sizes(column)
    return total


def _value_sizes(array: pa.Array) -> np.ndarray[Any, Any]:
    kind = array.type
    if pa.types.is_dictionary(kind):
        lengths = _value_sizes(array.dictionary)
        indices = array.indices.fill_null(0).to_numpy(zero_copy_only=False)
        return lengths[indices] if len(lengths) else np.zeros(len(array), dtype=np.int64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return _lengths(pc.binary_length(array))
    if pa.types.is_large_binary(kind):
        return _lengths(pc.binary_length(array))
    if (
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_map(kind)
        or pa.types.is_fixed_size_list(kind)
    ):
        if pa.types.is_fixed_size_list(kind):
            width = kind.list_size
            offsets = np.arange(len(array) + 1, dtype=np.int64) * width + array.offset * width
        else:
            offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        inner = np.zeros(len(array.values) + 1, dtype=np.int64)
        np.cumsum(_value_sizes(array.values) + 8, out=inner[1:])
        return inner[offsets[1:]] - inner[offsets[:-1]]
    if pa.types.is_struct(kind):
        sizes = np.zeros(len(array), dtype=np.int64)
        for field in array.flatten():
            sizes += _value_sizes(field)
        return sizes
    return np.full(len(array), 8, dtype=np.int64)


def _lengths(lengths: pa.Array) -> np.ndarray[Any, Any]:
    return lengths.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)

"""Review 18: files as dataframes and Windows tools write them import. pandas writes an integer
column with a missing value as floats (2.0, and NaN for the missing one, in Parquet; "2.0" and
an empty cell in CSV): those were refused as "got 2.0". And JSONL files saved on Windows and
joined (`cat a.jsonl b.jsonl`) carry a UTF-8 byte order mark at the start of each part: only
the first line's was read as one."""

from __future__ import annotations

import io
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation.importers import ImportFormatError, parse_all

ROWS = [
    {"prompt": "Q1", "response_a": "a1", "response_b": "b1", "silver_preference": 2.0},
    {"prompt": "Q2", "response_a": "a2", "response_b": "b2", "silver_preference": math.nan},
    {"prompt": "Q3", "response_a": "a3", "response_b": "b3", "silver_preference": -1.0},
]


def _parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def test_a_parquet_float_column_with_a_missing_value_imports_as_whole_numbers() -> None:
    records = parse_all(io.BytesIO(_parquet(ROWS)), filename="pairs.parquet")
    assert [record.silver_preference for record in records] == [2, None, -1]


def test_a_csv_column_of_floats_with_an_empty_cell_imports_as_whole_numbers() -> None:
    text = (
        "prompt,response_a,response_b,silver_preference\nQ1,a1,b1,2.0\nQ2,a2,b2,\nQ3,a3,b3,-1.0\n"
    )
    records = parse_all(io.BytesIO(text.encode()), filename="pairs.csv")
    assert [record.silver_preference for record in records] == [2, None, -1]


@pytest.mark.parametrize("value", [1.5, "1.5", "inf", "much", True])
def test_a_preference_that_is_no_whole_number_is_still_refused(value) -> None:
    row = {"prompt": "Q", "response_a": "a", "response_b": "b", "silver_preference": value}
    with pytest.raises(ImportFormatError, match="silver_preference must be an integer"):
        parse_all(io.BytesIO(_parquet([row])), filename="pairs.parquet")


def test_jsonl_parts_joined_each_with_its_byte_order_mark_import() -> None:
    part = "\ufeff" + json.dumps({"prompt": "Q", "response_a": "a", "response_b": "b"}) + "\n"
    second = part.replace('"Q"', '"R"')
    records = parse_all(io.BytesIO((part + second).encode()), filename="pairs.jsonl")
    assert [record.conversation[0]["content"] for record in records] == ["Q", "R"]

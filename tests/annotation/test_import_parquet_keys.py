"""A Parquet file decodes only the columns a row is read from (ROW_KEYS): a key the row parser
reads but ROW_KEYS lacks is dropped from Parquet rows alone, silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation.importers import ImportLimits, parse_all
from annotation.importers.rows import record_from_row
from annotation.importers.streams import ROW_KEYS

ROW = {
    "prompt": "Name a prime number.",
    "responses": ["2", "4", "7"],
    "silver_ranking": [[2], [0], [1]],
}

# One row of each shape record_from_row tells apart, with the optional keys each one reads.
ROWS_BY_SHAPE: dict[str, dict[str, Any]] = {
    "native": {
        "conversation": [{"role": "user", "content": "Capital of France?"}],
        "response_a": "Paris.",
        "response_b": "Lyon.",
        "silver_preference": 1,
        "external_id": "n-1",
        "source": "test",
        "attributes": {"task_category": "geography"},
        "objectivity": "objective",
    },
    "native_preferred": {
        "prompt": "Capital of Italy?",
        "response_a": "Rome.",
        "response_b": "Milan.",
        "preferred": "a",
    },
    "chosen_rejected": {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
    "native_kwise": ROW,
    "ultrafeedback": {
        "instruction": "Write a haiku about rain.",
        "completions": [
            {"model": "m1", "response": "Rain taps the window", "overall_score": 6.5},
            {"model": "m2", "response": "Clouds weep softly down", "overall_score": 8.0},
        ],
    },
}


class _ReadKeys(dict[str, Any]):
    """A row that notes every top-level key the parser asks for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def _write_both(tmp_path: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    parquet = tmp_path / "items.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    return jsonl, parquet


def test_parquet_keeps_silver_ranking_like_jsonl(tmp_path):
    jsonl, parquet = _write_both(tmp_path, [ROW])
    assert parse_all(jsonl)[0].silver_ranking == ((2,), (0,), (1,))
    assert parse_all(parquet)[0].silver_ranking == ((2,), (0,), (1,))


@pytest.mark.parametrize("shape", sorted(ROWS_BY_SHAPE))
def test_every_key_the_row_parser_reads_is_a_parquet_column(shape):
    row = _ReadKeys(ROWS_BY_SHAPE[shape])
    record_from_row(row, line=1, limits=ImportLimits())
    assert row.read  # the parser reads through get/[]/in, so the check below means something
    assert sorted(row.read - ROW_KEYS) == []


@pytest.mark.parametrize("shape", sorted(ROWS_BY_SHAPE))
def test_a_parquet_row_reads_as_its_jsonl_twin(tmp_path, shape):
    jsonl, parquet = _write_both(tmp_path, [ROWS_BY_SHAPE[shape]])
    assert parse_all(parquet) == parse_all(jsonl)

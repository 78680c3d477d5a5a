"""Import parser throughput: .venv/bin/python benchmarks/import_parsing.py [--rows N]

Writes demo pairs in every format to a temporary folder, streams them back through
iter_pair_records and prints rows per second (wall clock and CPU time, best of three),
then does the same for the real hh-rlhf test file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from annotation.demo_data import generate_demo_pairs  # noqa: E402
from annotation.importers import (  # noqa: E402
    ATTRIBUTE_NAMES,
    ImportFormatError,
    iter_pair_records,
)

HH_RLHF_TEST = Path("../shared/data/hh-rlhf-harmless-base/test.jsonl.gz")
UNIQUE_ROWS = 20_000


def main(total_rows: int = 200_000) -> None:
    unique = generate_demo_pairs(min(UNIQUE_ROWS, total_rows))
    rows = (unique * (total_rows // len(unique) + 1))[:total_rows]
    writers: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
        "pairs.jsonl": _jsonl,
        "pairs.jsonl.gz": lambda rows: gzip.compress(_jsonl(rows), compresslevel=6),
        "pairs.json": lambda rows: json.dumps(rows).encode(),
        "pairs.csv": _csv,
        "pairs.parquet": _parquet,
    }
    print(f"{total_rows:,} demo rows (native format), best of 3 runs")
    print(f"{'file':<22}{'MB':>8}{'rows/s wall':>14}{'rows/s CPU':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for name, write in writers.items():
            path = Path(folder) / name
            path.write_bytes(write(rows))
            _report(name, path)
    if HH_RLHF_TEST.exists():
        print("\nreal data (hh-rlhf transcripts, invalid rows skipped)")
        _report("hh-rlhf test.jsonl.gz", HH_RLHF_TEST, repeat=5)


def _report(label: str, path: Path, repeat: int = 3) -> None:
    best_wall = best_cpu = float("inf")
    count = 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        count = sum(1 for _ in iter_pair_records(path, on_invalid_row=_ignore))
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    size = path.stat().st_size / 1e6
    print(f"{label:<22}{size:>8.1f}{count / best_wall:>14,.0f}{count / best_cpu:>14,.0f}")


def _ignore(_error: ImportFormatError) -> None:
    return None


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def _csv(rows: list[dict[str, Any]]) -> bytes:
    columns = ["external_id", "source", "conversation", "response_a", "response_b",
               *ATTRIBUTE_NAMES, "silver_preference"]  # fmt: skip
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **row["attributes"], "conversation": json.dumps(
            row["conversation"])})  # fmt: skip
    return out.getvalue().encode()


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out, row_group_size=50_000)
    return out.getvalue()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=200_000, help="demo pairs written in each format"
    )
    main(parser.parse_args().rows)

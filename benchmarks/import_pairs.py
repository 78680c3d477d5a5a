"""Import speed: 100,000 real pairs from JSONL and from Parquet into PostgreSQL.

The hh-rlhf test split (2,312 human preference pairs) is repeated with varied ids up to the
requested size, written as JSONL and as Parquet, and imported with `manage.py import_pairs`
into a fresh PostgreSQL database (dropped at the end), each in a fresh process. Prints pairs
per second (parse, validate, hash, COPY, dedupe, commit) and that process's resident memory
before the import (Django loaded) and at its peak.

    .venv/bin/python benchmarks/import_pairs.py [--pairs 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hh_rlhf_copies import hh_rlhf_copies  # a sibling script module

REPO = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-Atc", sql], check=True, capture_output=True)


IMPORT_SNIPPET = """
import json, sys, time
import django


def high_water_mb():
    # VmHWM belongs to this process image; ru_maxrss would include the parent's at fork.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

django.setup()
from annotation.services.imports import campaign_get_or_create, pairs_import
campaign = campaign_get_or_create(name=sys.argv[2])
before = high_water_mb()
started = time.perf_counter()
result = pairs_import(campaign=campaign, path=sys.argv[1])
seconds = time.perf_counter() - started
after = high_water_mb()
print(json.dumps({"created": result.created, "seconds": seconds, "rss_before_mb": before,
                  "rss_peak_mb": after}))
"""


def run_import(path: Path, campaign: str, env: dict[str, str]) -> dict:
    """Import in a fresh process: Django loaded, nothing else, so its peak RSS is the import's."""
    output = subprocess.run(
        [sys.executable, "-c", IMPORT_SNIPPET, str(path), campaign],
        cwd=REPO,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    args = parser.parse_args()
    db = f"arbiter_bench_import_{os.getpid()}"
    psql(f"CREATE DATABASE {db}")
    env = {
        **os.environ,
        "DATABASE_URL": f"{PG}/{db}",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
    }
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True
        )
        data = list(hh_rlhf_copies(args.pairs))
        with tempfile.TemporaryDirectory() as folder:
            jsonl = Path(folder) / "pairs.jsonl"
            jsonl.write_text("".join(json.dumps(row) + "\n" for row in data))
            parquet = Path(folder) / "pairs.parquet"
            pq.write_table(pa.Table.from_pylist(data), parquet, row_group_size=20_000)
            print(
                f"{args.pairs:,} pairs; JSONL {jsonl.stat().st_size / 1e6:.0f} MB, "
                f"Parquet {parquet.stat().st_size / 1e6:.0f} MB; {os.cpu_count()} CPU cores"
            )
            print(
                f"{'format':<9}{'pairs/s':>10}{'seconds':>9}{'RSS before MiB':>15}"
                f"{'peak RSS MiB':>13}"
            )
            for name, path in (("jsonl", jsonl), ("parquet", parquet)):
                report = run_import(path, f"bench-{name}", env)
                assert report["created"] == args.pairs, report
                rate = report["created"] / report["seconds"]
                print(
                    f"{name:<9}{rate:>10,.0f}{report['seconds']:>9.1f}"
                    f"{report['rss_before_mb']:>15.0f}{report['rss_peak_mb']:>13.0f}"
                )
        print("target: at least 20,000 pairs/s (Label Studio: about 3,500 tasks/s)")
    finally:
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()

"""Curated export speed: a million pairs to Parquet and to JSONL, from PostgreSQL.

A fresh PostgreSQL database (dropped at the end) is filled by COPY with a campaign of
real-looking history: the hh-rlhf harmless-base test split (2,312 human preference pairs)
repeated up to --pairs, three annotators' labels per pair (assignments and labels), a mix of
provenance (unanimous, majority, ties, adjudicated with notes, gold), evidence on some labels
and an active model version's score for every pair. Each export then runs in a fresh process
through the same service the Celery job uses (`export_write`: streaming, temporary file,
rename, sha256 manifest) and the benchmark prints its seconds, pairs per second, file size and
that process's resident memory before the export (Django loaded) and at its peak (VmHWM).

    .venv/bin/python benchmarks/export.py [--pairs 1000000] [--formats parquet jsonl]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HH_RLHF = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
# The "< 500 MB" of resident memory, compared in MB (the peak is read in KiB).
TARGET_SECONDS, TARGET_MB = 60, 500

EXPORT_SNIPPET = """
import json, sys, time
import django


def high_water_mb():
    # VmHWM belongs to this process image; ru_maxrss would include the parent's at fork.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

django.setup()
from pathlib import Path
from annotation.models import Campaign
from scoring.datasets.export import ExportFilters, export_write

campaign = Campaign.objects.get(name=sys.argv[1])
file_format, destination = sys.argv[2], Path(sys.argv[3])
filters = ExportFilters(ties=sys.argv[4])
before = high_water_mb()
started, cpu_started = time.perf_counter(), time.process_time()
result = export_write(campaign=campaign, filters=filters, file_format=file_format,
                      destination=destination)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "cpu_seconds": time.process_time() - cpu_started,
                  "rss_before_mb": before, "peak_mb": high_water_mb(),
                  "counts": result.manifest["counts"], "files": result.manifest["files"]}))
"""


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-Atc", sql], check=True, capture_output=True)


def load_examples() -> list[tuple[list[dict[str, str]], str, str]]:
    sys.path.insert(0, str(REPO))
    from scoring.reward_model.hh_rlhf import parse_hh_rlhf_pair

    examples = []
    with gzip.open(HH_RLHF, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            try:
                example = parse_hh_rlhf_pair(record["chosen"], record["rejected"])
            except ValueError:
                continue
            examples.append((list(example.conversation), example.chosen, example.rejected))
    return examples


class Copier:
    """COPY rows of a model, filling unlisted columns with the field defaults."""

    def __init__(self, cursor, model, *, with_id: bool = True) -> None:  # noqa: ANN001
        from django.db.models import JSONField

        self.cursor = cursor
        self.fields = [
            field for field in model._meta.concrete_fields if with_id or not field.primary_key
        ]
        self.table = model._meta.db_table
        self.index = {field.attname: i for i, field in enumerate(self.fields)}
        self.json_columns = {
            self.index[field.attname] for field in self.fields if isinstance(field, JSONField)
        }
        now = datetime.now(UTC)
        self.template = []
        for field in self.fields:
            default = field.get_default()
            if default is None and getattr(field, "auto_now_add", False):
                default = now
            self.template.append(default)

    def copy(self, rows) -> int:  # noqa: ANN001 - an iterable of dicts
        columns = ", ".join(f'"{field.column}"' for field in self.fields)
        count = 0
        with self.cursor.cursor.copy(f'COPY "{self.table}" ({columns}) FROM STDIN') as copy:
            for values in rows:
                row = list(self.template)
                for name, value in values.items():
                    row[self.index[name]] = value
                for position in self.json_columns:
                    row[position] = json.dumps(row[position])
                copy.write_row(row)
                count += 1
        return count


# Long on purpose: one COPY per table of the seeded campaign, in dependency order.
def seed(campaign_name: str, pairs: int, examples, rng: random.Random) -> dict[str, int]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Assignment, Campaign, Evidence, Label, Pair, Round
    from reviewers.models import Adjudication, Escalation
    from scoring.models import ModelVersion, PairScore

    users = get_user_model()
    annotators = [users.objects.create_user(username=f"bench-annotator-{i}") for i in range(3)]
    expert = users.objects.create_user(username="bench-expert")
    campaign = Campaign.objects.create(name=campaign_name)
    rounds = [Round.objects.create(campaign=campaign, number=n, status="closed") for n in (1, 2)]
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="bench", checkpoint="/bench", is_active=True
    )
    now = datetime.now(UTC)
    kinds = {"unanimous": 0, "majority": 0, "tie": 0, "adjudicated": 0, "gold": 0}
    plan = []  # (pair id, kind, votes, consensus)
    for pair_id in range(1, pairs + 1):
        roll = rng.random()
        if roll < 0.03:
            kind, votes, consensus = "gold", [], rng.choice([2, 1, -1, -2])
        elif roll < 0.08:
            kind, votes, consensus = "adjudicated", [2, -2, 1], rng.choice([1, -1])
        elif roll < 0.10:
            kind, votes, consensus = "tie", [0, 0, 1], 0
        elif roll < 0.30:
            kind, votes, consensus = "majority", [1, 2, -1], 2
        else:
            votes = [rng.choice([1, 2])] * 3
            kind, consensus = "unanimous", votes[0]
        if rng.random() < 0.5 and kind != "gold":
            votes, consensus = [-vote for vote in votes], -consensus
        kinds[kind] += 1
        plan.append((pair_id, kind, votes, consensus))

    def disagreement(votes: list[int]) -> float | None:
        if not votes:
            return None
        squares = [(a - b) ** 2 for i, a in enumerate(votes) for b in votes[i + 1 :]]
        return sum(squares) / len(squares) / 16.0

    def pair_rows():
        for pair_id, kind, votes, consensus in plan:
            conversation, chosen, rejected = examples[pair_id % len(examples)]
            a, b = (chosen, rejected) if consensus >= 0 else (rejected, chosen)
            yield {
                "id": pair_id,
                "campaign_id": campaign.pk,
                "round_id": None if kind == "gold" else rounds[pair_id % 2].pk,
                "conversation": conversation,
                "response_a": a,
                "response_b": f"{b}\n[{pair_id}]",
                "source": "hh-rlhf-harmless-base",
                "external_id": f"hh-{pair_id}",
                "content_hash": f"{pair_id:064x}",
                "task_category": ("safety", "advice", "chit-chat")[pair_id % 3],
                "is_gold": kind == "gold",
                "gold_preference": consensus if kind == "gold" else None,
                "status": "resolved" if kind == "adjudicated" else "complete",
                "labels_count": len(votes),
                "consensus_preference": consensus,
                "provenance": "majority" if kind == "tie" else kind,
                "disagreement": disagreement(votes),
                "created_at": now,
            }

    with connection.cursor() as cursor:
        started = time.perf_counter()
        Copier(cursor, Pair).copy(pair_rows())
        Copier(cursor, Assignment).copy(
            {
                "id": (pair_id - 1) * 3 + slot + 1,
                "campaign_id": campaign.pk,
                "pair_id": pair_id,
                "annotator_id": annotators[slot].pk,
                "status": "submitted",
                "kind": "regular",
                "swapped": bool(slot % 2),
                "leased_at": now,
                "lease_expires_at": now + timedelta(minutes=15),
                "finished_at": now,
            }
            for pair_id, _kind, votes, _consensus in plan
            for slot in range(len(votes))
        )
        Copier(cursor, Label).copy(
            {
                "id": (pair_id - 1) * 3 + slot + 1,
                "assignment_id": (pair_id - 1) * 3 + slot + 1,
                "campaign_id": campaign.pk,
                "pair_id": pair_id,
                "annotator_id": annotators[slot].pk,
                "preference": vote,
                "rationale": "Clearer and safer." if slot == 0 else "",
                "shown_first": "b" if slot % 2 else "a",
                "seconds_spent": 20.0 + slot,
                "created_at": now,
            }
            for pair_id, _kind, votes, _consensus in plan
            for slot, vote in enumerate(votes)
        )
        # Evidence on one label in ten: a search and, every other time, a code run.
        Copier(cursor, Evidence, with_id=False).copy(
            {
                "assignment_id": (pair_id - 1) * 3 + 1,
                "label_id": (pair_id - 1) * 3 + 1,
                "kind": kind,
                "payload": payload,
                "created_at": now,
            }
            for pair_id, _kind, votes, _consensus in plan
            if votes and pair_id % 10 == 0
            for kind, payload in (
                [("search", {"query": f"is claim {pair_id} true", "hits": [1, 2, 3]})]
                + ([("code_run", {"language": "python", "status": "ok"})] if pair_id % 20 else [])
            )
        )
        adjudicated = [row for row in plan if row[1] == "adjudicated"]
        Copier(cursor, Escalation).copy(
            {
                "id": index + 1,
                "campaign_id": campaign.pk,
                "pair_id": pair_id,
                "reason": "opposite_directions",
                "status": "resolved",
                "disagreement": disagreement(votes),
                "created_at": now,
            }
            for index, (pair_id, _kind, votes, _consensus) in enumerate(adjudicated)
        )
        Copier(cursor, Adjudication, with_id=False).copy(
            {
                "escalation_id": index + 1,
                "pair_id": pair_id,
                "expert_id": expert.pk,
                "decision": "preference",
                "preference": consensus,
                "note": "The chosen answer refuses the harmful part and explains why.",
                "created_at": now,
            }
            for index, (pair_id, _kind, _votes, consensus) in enumerate(adjudicated)
        )
        Copier(cursor, PairScore, with_id=False).copy(
            {
                "pair_id": pair_id,
                "model_version_id": version.pk,
                "reward_a": reward,
                "reward_b": -reward,
                "p_a_better": 1 / (1 + 2.718281828 ** (-2 * reward)),
                "created_at": now,
            }
            for pair_id, *_ in plan
            for reward in [rng.gauss(0, 1)]
        )
        for model in (Pair, Assignment, Label, Escalation):
            table = model._meta.db_table
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM {table}))"
            )
        kinds["seed_seconds"] = round(time.perf_counter() - started, 1)
    # A campaign's tables in steady state: vacuumed (hint bits set, visibility map) and
    # analysed, rather than read for the first time right after a bulk load.
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return kinds


def run_export(database_url: str, campaign: str, file_format: str, out: Path, ties: str):
    env = dict(os.environ, DATABASE_URL=database_url)
    completed = subprocess.run(
        [sys.executable, "-c", EXPORT_SNIPPET, campaign, file_format, str(out), ties],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"export failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# Long on purpose: seed, each format's export and its checks, in the order printed.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", default=["parquet", "jsonl"])
    parser.add_argument("--ties", choices=["exclude", "separate"], default="separate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-db", action="store_true", help="Leave the database for study.")
    args = parser.parse_args()

    database = f"arbiter_bench_export_{os.getpid()}"
    database_url = f"{PG}/{database}"
    os.environ.setdefault("SECRET_KEY", "benchmark-only-" + os.urandom(32).hex())
    os.environ.update(
        DATABASE_URL=database_url, SECURE_SSL_REDIRECT="false", STATIC_MANIFEST="false"
    )
    for name in ("CELERY_BROKER_URL", "CACHE_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(REPO))
    psql(f"CREATE DATABASE {database}")
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        examples = load_examples()
        print(f"seeding {args.pairs:,} pairs (hh-rlhf harmless-base, {len(examples)} distinct)")
        kinds = seed("bench", args.pairs, examples, random.Random(args.seed))
        print(
            "seeded in {seed_seconds} s: {unanimous:,} unanimous, {majority:,} majority, "
            "{tie:,} ties, {adjudicated:,} adjudicated, {gold:,} gold".format(**kinds)
        )
        from django.db import connections

        connections.close_all()
        results = {}
        with tempfile.TemporaryDirectory(prefix="arbiter-export-bench-") as folder:
            for file_format in args.formats:
                out = Path(folder) / f"export.{file_format}"
                results[file_format] = result = run_export(
                    database_url, "bench", file_format, out, args.ties
                )
                main_file = result["files"][0]
                rows = result["counts"]["rows"]
                if file_format == "parquet":
                    import pyarrow.parquet as pq

                    assert pq.ParquetFile(out).metadata.num_rows == rows
                else:
                    with out.open("rb") as handle:
                        assert sum(1 for _ in handle) == rows
                print(
                    f"{file_format:8s} {result['seconds']:7.1f} s "
                    f"(CPU {result['cpu_seconds']:.1f} s)  "
                    f"{rows / result['seconds']:9,.0f} pairs/s  rows {rows:,} "
                    f"(+{result['counts']['unranked_written']:,} ties)  "
                    f"{main_file['bytes'] / 1e6:8.0f} MB  "
                    f"RSS before {result['rss_before_mb']:.0f} MiB, "
                    f"peak {result['peak_mb']:.0f} MiB"
                )
                out.unlink()
                for extra in Path(folder).iterdir():
                    extra.unlink()
        print()
        load = os.getloadavg()[0]
        print(
            f"summary ({args.pairs:,} pairs; target < {TARGET_SECONDS} s and < {TARGET_MB} MB; "
            f"{os.cpu_count()} CPUs, load average {load:.1f} at the end):"
        )
        for file_format, result in results.items():
            verdict = (
                "meets"
                if result["seconds"] < TARGET_SECONDS
                and result["peak_mb"] * 2**20 / 1e6 < TARGET_MB
                else "misses"
            )
            print(
                f"  {file_format}: {result['seconds']:.1f} s, peak RSS {result['peak_mb']:.0f} MiB"
                f" -> {verdict} the target"
            )
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not have started
            pass
        if args.keep_db:
            print(f"kept {database_url}")
        else:
            psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


if __name__ == "__main__":
    main()

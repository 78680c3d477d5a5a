"""Dashboard panels: seconds to compute each panel's figures, uncached and cached.

A fresh PostgreSQL database (dropped at the end) is filled with the export benchmark's
campaign (benchmarks/export.py `seed`: hh-rlhf pairs repeated up to --pairs, three labels
per pair, ties, adjudications, gold, a model version's scores). Each panel's context is then
built through the dashboard's own table (`scoring.dashboard.views.PANELS`, what an htmx
refresh of that panel computes, without the template): first with the cache emptied
(uncached: the grouped queries run), then again (cached). Each is timed --repeat times and
the median printed, with the load average, so that a figure taken on a busy machine says so.
The cache is the embedded default (files under a temporary ARBITER_VAR_DIR), the one
`make run` uses; Redis answers a cached read at least as fast.

    .venv/bin/python benchmarks/dashboard.py [--pairs 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from export import PG, load_examples, psql, seed  # noqa: E402 - the sibling benchmark's seeding


def _median_seconds(compute, before, repeat: int) -> float:  # noqa: ANN001
    timings = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        compute()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


# Long on purpose: set-up, then each panel cold and warm, in the order printed.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    database = f"arbiter_bench_dashboard_{os.getpid()}"
    var_dir = tempfile.mkdtemp(prefix="arbiter-dashboard-bench-")
    os.environ.setdefault("SECRET_KEY", "benchmark-only-" + os.urandom(32).hex())
    os.environ.update(
        DATABASE_URL=f"{PG}/{database}",
        SECURE_SSL_REDIRECT="false",
        STATIC_MANIFEST="false",
        ARBITER_VAR_DIR=var_dir,
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
        from django.core.cache import cache

        from annotation.models import Campaign
        from scoring.dashboard.views import PANELS

        call_command("migrate", verbosity=0)
        examples = load_examples()
        print(f"seeding {args.pairs:,} pairs (hh-rlhf harmless-base, {len(examples)} distinct)")
        kinds = seed("bench", args.pairs, examples, random.Random(args.seed))
        print("seeded in {seed_seconds} s".format(**kinds))
        campaign = Campaign.objects.get(name="bench")

        def nothing() -> None:
            return None

        print(f"\npanel        uncached (s)  cached (ms)   median of {args.repeat}")
        for name, build in PANELS.items():
            compute = lambda build=build: build(campaign)  # noqa: E731
            uncached = _median_seconds(compute, cache.clear, args.repeat)
            compute()  # warm
            cached = _median_seconds(compute, nothing, args.repeat)
            print(f"{name:12s} {uncached:12.3f}  {1000 * cached:11.2f}")
        load = os.getloadavg()
        print(
            f"\n{args.pairs:,} pairs; {os.cpu_count()} CPUs, load average "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the end"
        )
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not have started
            pass
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

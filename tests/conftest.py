"""Shared fixtures: personas, factories and a real Celery worker process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import global_settings, settings
from django.db import connection, connections
from markdown_it import MarkdownIt
from rest_framework.test import APIClient
from xdist.scheduler import LoadScopeScheduling

from annotation.roles import Role
from annotation.services.users import user_create
from tests.factories import CampaignFactory

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
HH_RLHF = REPO_ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"

pytest_plugins = ["tests.browser_support"]


@pytest.fixture
def sent_tasks(monkeypatch) -> list[tuple[str, tuple]]:
    """(task name, args) of every Celery task sent, recorded instead of reaching a broker."""
    from celery import current_app

    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(
        current_app, "send_task", lambda name, args=(), **options: sent.append((name, args))
    )
    return sent


def _make_user(name: str, role: Role):
    user, _password, _token = user_create(username=name, role=role, password="pw-" + name)
    return user


@pytest.fixture
def annotator_a(db):
    return _make_user("alice", Role.ANNOTATOR)


@pytest.fixture
def annotator_b(db):
    return _make_user("bob", Role.ANNOTATOR)


@pytest.fixture
def annotator_c(db):
    return _make_user("carol", Role.ANNOTATOR)


@pytest.fixture
def expert(db):
    return _make_user("erin", Role.EXPERT)


@pytest.fixture
def admin_user(db):
    return _make_user("adam", Role.ADMIN)


@pytest.fixture
def outsider(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="oscar", password="pw-oscar")


@pytest.fixture
def campaign(db):
    return CampaignFactory()


def api_client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def worker_environment() -> dict[str, str]:
    """Environment for a worker process that talks to the test database."""
    from django.db import connection

    env = dict(os.environ)
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = db.get("USER") or "postgres"
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        env["DATABASE_URL"] = f"postgres://{user}@{host}:{port}/{db['NAME']}"
    else:
        env.pop("DATABASE_URL", None)
        env["TEST_DATABASE_NAME"] = str(db["NAME"])
        env["ARBITER_SQLITE_PATH"] = str(db["NAME"])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_worker(
    *, queues: str = "default,sandbox,gpu", concurrency: int = 2, name: str = "test"
) -> subprocess.Popen:
    return start_workers([{"queues": queues, "concurrency": concurrency, "name": name}])[0]


def start_workers(specs: list[dict[str, Any]]) -> list[subprocess.Popen]:
    """Start one worker per spec (``start_worker``'s arguments) side by side, then wait until
    all are ready: their start-ups (seconds of imports each) overlap."""
    started = [_spawn_worker(**spec) for spec in specs]
    try:
        for process, log_path in started:
            _wait_ready(process, log_path)
    except BaseException:
        for process, _ in started:
            stop_worker(process, sig=signal.SIGKILL)
        raise
    return [process for process, _ in started]


def _spawn_worker(
    *, queues: str = "default,sandbox,gpu", concurrency: int = 2, name: str = "test"
) -> tuple[subprocess.Popen, Path]:
    log_path = Path(settings.VAR_DIR) / f"worker-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-n",
            f"{name}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        cwd=REPO_ROOT,
        env=worker_environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log_path


def _wait_ready(process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log_path.read_text()[-3000:]}")
        if " ready." in log_path.read_text():
            return
        time.sleep(0.2)
    stop_worker(process)
    raise RuntimeError(f"worker did not become ready:\n{log_path.read_text()[-3000:]}")


def stop_worker(process: subprocess.Popen, *, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def purge_broker() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in ("default", "sandbox", "gpu"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: S112 - a queue that does not exist yet has nothing to purge
                continue


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker) -> Iterator[subprocess.Popen]:
    """A real Celery worker consuming all queues, against the test database."""
    with django_db_blocker.unblock():
        purge_broker()
        process = start_worker(name="session")
    yield process
    stop_worker(process)


@pytest.fixture
def worker(celery_worker_process, transactional_db):
    """Use in tests whose rows a worker must see: data is committed, not rolled back."""
    return celery_worker_process


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def lock_waiters() -> int:
    """Sessions of this test database waiting on a lock, read afresh (inside a transaction the
    activity view is otherwise read once)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def wait_for_a_lock_waiter(timeout: float = 20.0) -> None:
    """Until another session of this test database waits on a lock (PostgreSQL)."""
    wait_for(lock_waiters, timeout=timeout, interval=0.05, what="a session to wait on a lock")


def run_concurrently(calls: list[Callable[[], T]], *, timeout: float = 120.0) -> list[T]:
    """Run every call in a thread of its own, all at once; their results, in order.

    A call that raises fails the test with its own exception (re-raised here), and one that
    never ends fails it with a TimeoutError, instead of either being lost in its thread.
    """
    pool = ThreadPoolExecutor(max_workers=len(calls))
    try:
        futures = [pool.submit(call) for call in calls]
        deadline = time.monotonic() + timeout
        return [future.result(timeout=max(0.0, deadline - time.monotonic())) for future in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def closing_connections(call: Callable[[], T]) -> Callable[[], T]:
    """``call``, closing the thread's database connections when it returns (a thread's own
    connection would otherwise outlive the test and block dropping its database)."""

    def run() -> T:
        try:
            return call()
        finally:
            connections.close_all()

    return run


def start_in_thread(call: Callable[[], T]) -> Future[T]:
    """Start `call` in a thread; `.result(timeout=...)` later re-raises what it raised."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


@pytest.fixture
def private_cache(settings, request):
    """A local-memory cache of the test's own: figures cached by an earlier test never leak
    in, and expiry can be stepped with time_machine (locmem reads time.time)."""
    from django.core.cache import cache

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": request.node.nodeid,
        }
    }
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _clear_cache():
    """Cached aggregates are keyed by ids, which restart in every test database."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _vector_root():
    """Pair ids restart with each test database: vectors of an earlier test's pairs must go."""
    from scoring.loop.vector_store import vector_root

    shutil.rmtree(vector_root(), ignore_errors=True)
    yield
    shutil.rmtree(vector_root(), ignore_errors=True)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def pytest_configure(config):
    # Tests create about a thousand users: at PBKDF2's deliberate cost (about a million
    # iterations) that was minutes of the suite's CPU. New passwords are hashed with MD5 here;
    # the default hashers stay listed, so passwords a worker process hashed still check.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        *global_settings.PASSWORD_HASHERS,
    ]
    if os.environ.get("PYTEST_XDIST_WORKER") and "tests.xdist_isolation" not in sys.modules:
        # Without it every worker would share one broker, cache and var directory.
        raise pytest.UsageError(
            "run pytest-xdist with `python -m pytest -p tests.xdist_isolation -n N ...`"
        )


def _distribution_group(nodeid: str) -> str:
    """The unit one pytest-xdist worker takes whole: a test file, or all of tests/faults/."""
    path = nodeid.split("::", 1)[0]
    return "tests/faults/" if path.startswith("tests/faults/") else path


class FileGroupScheduling(LoadScopeScheduling):
    """`--dist loadfile`, with all of tests/faults/ as one unit: each test file runs on one
    worker, so its module-scoped fixtures (trained models, indexes) are built once, not once
    per worker; all of tests/faults/ runs on one worker, which builds their shared throwaway
    PostgreSQL cluster (migrated once) and runs one outage at a time, as in a serial run.
    (`--dist loadgroup` with xdist_group marks did this before pytest 9, whose items ignore the
    node id suffix xdist 3.8 writes for a group.)"""

    def _split_scope(self, nodeid: str) -> str:
        return _distribution_group(nodeid)


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") == "loadfile":
        return FileGroupScheduling(config, log)
    return None


def pytest_collection_modifyitems(config, items):
    """Under xdist (scripts/test.sh: `--dist loadfile --no-loadscope-reorder`) the units
    holding a `slow` test go first, then the others by size: a several-minute test handed out
    last would leave the other worker idle meanwhile. A serial run keeps the order it was
    collected in."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(_distribution_group(item.nodeid), []).append(item)

    def slow_first_then_largest(group: list[pytest.Item]) -> tuple[bool, int]:
        return (not any(item.get_closest_marker("slow") for item in group), -len(group))

    items[:] = [
        item for group in sorted(groups.values(), key=slow_first_then_largest) for item in group
    ]


def pytest_report_header(config):
    engine = settings.DATABASES["default"]["ENGINE"]
    return f"arbiter: database={engine}, broker={settings.CELERY_BROKER_URL}"


@pytest.fixture
def markdown_sources(monkeypatch) -> Counter[str]:
    """Every text markdown-it (third party) renders, counted: the real renderer still runs."""
    sources: Counter[str] = Counter()
    original = MarkdownIt.render

    def counting(self, src, env=None):  # noqa: ANN001, ANN202 - markdown-it's signature
        sources[src] += 1
        return original(self, src, env)

    monkeypatch.setattr(MarkdownIt, "render", counting)
    return sources

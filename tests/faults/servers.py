"""Throwaway servers for fault tests: a PostgreSQL cluster, a Redis, the app under Granian and a
Celery worker, all on free loopback ports and torn down afterwards. The shared PostgreSQL on
5432 and Redis on 6379 are never touched."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess  # noqa: S404 - fixed argument lists
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "fault-test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class Postgres:
    port: int
    data_dir: Path
    bin_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return self.url_for("arbiter")

    def url_for(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def createdb(self, name: str, *, template: str | None = None) -> str:
        """A new database (a copy of ``template``: seconds, not a migration); its URL."""
        options = ["-T", template] if template else []
        subprocess.run(  # noqa: S603
            [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", *options, name],
            check=True, capture_output=True, timeout=60,
        )
        return self.url_for(name)

    def _ctl(self, *args: str) -> None:
        subprocess.run(  # noqa: S603
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]),
            check=True, capture_output=True, timeout=60,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._ctl("-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def ready(self) -> bool:
        result = subprocess.run(  # noqa: S603
            [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False, timeout=10,
        )
        return result.returncode == 0


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Postgres]:
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    bin_dir = Path(initdb[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="arbiter-fault-pg-"))
    root.chmod(0o755)
    data_dir = root / "data"
    data_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data_dir, "postgres")
    server = Postgres(free_port(), data_dir, bin_dir, root / "server.log")
    try:
        subprocess.run(  # noqa: S603
            _as_postgres([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
                          "-A", "trust", "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True, timeout=120,
        )
        server.start()
        server.createdb("arbiter")
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Redis:
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--dbfilename", "dump.rdb", "--save", "",
             "--appendonly", "no", "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait(self.ready, 20, "redis to start")

    def stop(self) -> None:
        """A clean shutdown that saves the data set, as a restarted production Redis would
        find it (an RDB snapshot)."""
        subprocess.run(  # noqa: S603
            ["redis-cli", "-p", str(self.port), "shutdown", "save"],
            check=False, capture_output=True, timeout=30,
        )
        if self.process is not None:
            self.process.wait(timeout=30)

    def ready(self) -> bool:
        result = subprocess.run(  # noqa: S603
            ["redis-cli", "-p", str(self.port), "ping"], check=False, capture_output=True,
            timeout=10,
        )
        return result.stdout.strip() == b"PONG"

    def flush(self) -> None:
        """Empty every database: a test sharing this server starts with no queued task."""
        subprocess.run(  # noqa: S603
            ["redis-cli", "-p", str(self.port), "flushall"], check=True, capture_output=True,
            timeout=30,
        )


@contextlib.contextmanager
def throwaway_redis() -> Iterator[Redis]:
    directory = Path(tempfile.mkdtemp(prefix="arbiter-fault-redis-"))
    server = Redis(free_port(), directory)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class App:
    """Granian serving the app, a Celery worker and `manage.py`, against given servers."""

    env: dict[str, str]
    var_dir: Path
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=self.env,
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen:
        log = (self.var_dir / log_name).open("w")
        process = subprocess.Popen(  # noqa: S603
            argv, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start_web(self, *, threads: int = 8) -> None:
        self._spawn(
            [sys.executable, "-m", "granian", "--interface", "wsgi", "config.wsgi:application",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--blocking-threads", str(threads), "--respawn-failed-workers"],
            "web.log",
        )

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):  # noqa: S310
                    return True
            except (urllib.error.URLError, OSError):
                return False

        _wait(answers, 60, "the web server to answer")

    def start_worker(self, *, queues: str = "default", name: str = "fault",
                     concurrency: int = 1) -> None:
        self.spawn_worker(queues=queues, name=name, concurrency=concurrency)()

    def spawn_worker(self, *, queues: str = "default", name: str = "fault",
                     concurrency: int = 1) -> Callable[[], None]:
        """Start a Celery worker; returns a call that waits until it is ready (so that the
        web server can start meanwhile)."""
        self._spawn(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues,
             "-c", str(concurrency), "-n", f"{name}-{os.getpid()}@%h", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-l", "INFO"],
            f"worker-{name}.log",
        )
        log = self.var_dir / f"worker-{name}.log"
        return lambda: _wait(lambda: " ready." in log.read_text(), 90, "the worker to be ready")

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        self.processes.clear()


@contextlib.contextmanager
def app_against(database_url: str, redis: Redis, *, extra: dict[str, str] | None = None
                ) -> Iterator[App]:
    var_dir = Path(tempfile.mkdtemp(prefix="arbiter-fault-app-"))
    keep = ("PATH", "HOME", "LANG", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VIRTUAL_ENV")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        ARBITER_ENV_FILE="/dev/null", SECRET_KEY=SECRET, DEBUG="false",
        SECURE_SSL_REDIRECT="false", SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false", STATIC_MANIFEST="false", ARBITER_VAR_DIR=str(var_dir),
        DATABASE_URL=database_url, CELERY_BROKER_URL=redis.url(0), CACHE_URL=redis.url(1),
        PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT), **(extra or {}),
    )
    app = App(env, var_dir)
    try:
        yield app
    finally:
        app.stop_all()
        shutil.rmtree(var_dir, ignore_errors=True)


def http(method: str, url: str, *, token: str, body: dict | None = None, timeout: float = 15.0
         ) -> tuple[int, dict, dict[str, str]]:
    """(status, JSON body or {}, headers); never raises on an HTTP status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - loopback http
        url, data=data, method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read()
            return response.status, (json.loads(raw) if raw else {}), dict(response.headers)
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"raw": raw[:200].decode(errors="replace")}
        return error.code, payload, dict(error.headers)

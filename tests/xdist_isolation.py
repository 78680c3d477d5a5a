"""Give every pytest-xdist worker (`pytest -n 2`, as `scripts/test.sh` runs the suite) Redis
databases and a var directory of its own, as pytest-django gives each its own test database.

Loaded with `-p tests.xdist_isolation` (scripts/test.sh; `python -m pytest`, whose working
directory is on sys.path) so that it runs before pytest-django reads `config.settings`: the
settings, and the Celery worker processes the tests start (they inherit this environment),
then see the worker's values. Worker ``gwK`` uses the run's broker and cache database numbers
plus ``2 * K``, so a run given databases 12 and 13 with two workers uses 12 to 15; its var
directory (media, models, exports, vectors, the file-system broker and cache of the SQLite
smoke run) is ``<ARBITER_VAR_DIR>/gwK``. Each worker also gets its share of the CPUs as
``OMP_NUM_THREADS`` unless one is set. Outside xdist it changes nothing."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Paths the settings read from the environment; each worker's are moved under a folder of its
# own. ARBITER_VAR_DIR is always set (the others default to folders inside it).
PATH_VARIABLES = ("ARBITER_MODEL_DIR", "ARBITER_EXPORT_DIR", "ARBITER_VECTOR_ROOT", "MEDIA_ROOT")
REDIS_VARIABLES = ("CELERY_BROKER_URL", "CACHE_URL")
DATABASES_PER_WORKER = 2


def worker_number(worker_id: str) -> int:
    """``gw3`` -> 3."""
    if not worker_id.startswith("gw") or not worker_id[2:].isdigit():
        raise ValueError(f"unexpected pytest-xdist worker id {worker_id!r}")
    return int(worker_id[2:])


def shifted_redis_url(url: str, offset: int) -> str:
    """The same Redis server, database number moved up by `offset` (other brokers unchanged:
    the file-system broker lives in the var directory, which is the worker's own)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return url
    database = parts.path.strip("/") or "0"
    if not database.isdigit():
        raise ValueError(f"cannot give xdist workers their own databases of {url!r}")
    return urlunsplit(parts._replace(path=f"/{int(database) + offset}"))


def worker_environment(environ: dict[str, str], worker_id: str, repo_root: Path) -> dict[str, str]:
    """The variables to change for one xdist worker."""
    number = worker_number(worker_id)
    var_dir = Path(environ.get("ARBITER_VAR_DIR") or repo_root / "var")
    changed = {"ARBITER_VAR_DIR": str(var_dir / worker_id)}
    for name in PATH_VARIABLES:
        if environ.get(name):
            changed[name] = str(Path(environ[name]) / worker_id)
    for name in REDIS_VARIABLES:
        if environ.get(name):
            changed[name] = shifted_redis_url(environ[name], DATABASES_PER_WORKER * number)
    return changed


def thread_environment(environ: dict[str, str], cpus: int) -> dict[str, str]:
    """Each worker's share of the CPUs as its torch/OpenMP thread count. Left alone, torch in
    every xdist worker (and in the Celery workers its tests start, which inherit it) runs as
    many threads as there are CPUs, so two workers on two cores spin four threads against each
    other. An OMP_NUM_THREADS already set is kept."""
    if environ.get("OMP_NUM_THREADS"):
        return {}
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return {"OMP_NUM_THREADS": str(max(1, cpus // workers))}


_worker_id = os.environ.get("PYTEST_XDIST_WORKER")
if _worker_id:
    os.environ.update(
        worker_environment(dict(os.environ), _worker_id, Path(__file__).resolve().parent.parent)
    )
    os.environ.update(thread_environment(dict(os.environ), os.cpu_count() or 1))

"""Celery tasks of the annotation app: thin adapters over services."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connections
from psycopg import pq

from annotation.services.assignments import assignments_expire
from annotation.services.import_jobs import import_job_run, import_jobs_fail_stale
from annotation.services.members import members_set_aside_left_behind
from annotation.services.tools import code_runs_fail_stale
from annotation.tool_tasks import run_code_task
from annotation.tools.sandbox import SandboxUnavailable, sandbox_sweep

__all__ = [
    "closing_connections_at_time_limit",
    "expire_leases_task",
    "fail_stale_work_task",
    "import_pairs_task",
    "run_code_task",
]

# Time limits. At its soft limit a task gets SoftTimeLimitExceeded and records its failure (an
# import's job row says so); the hard limit, later, kills its worker process should that not end
# it. Work that grows with the data reads its soft limit from settings (README: "Time limits").
# Light tasks (the sweeps below, the beat's checks, an e-mail) take seconds and are idempotent,
# the next run doing what a stopped one left: their fixed limit only frees a worker held by a
# hung query, disk, mount or mail server.
LIGHT_TASK_SOFT_LIMIT_S = 300
LIGHT_TASK_HARD_LIMIT_S = LIGHT_TASK_SOFT_LIMIT_S + 30
# Long enough to roll back, record the failure and stop the threads it started.
JOB_LIMIT_GRACE_S = 120


@contextlib.contextmanager
def closing_connections_at_time_limit() -> Iterator[None]:
    """Close this worker process's database connections when a soft time limit stops the task.

    The limit's exception can arrive while a query runs (a lock wait is the usual way to hang),
    and psycopg, which cancels a query only on KeyboardInterrupt, then leaves the connection in
    the middle of a command: the next task of this process would fail its first query ("another
    command is already in progress"). The query is cancelled on the server, so that it does not
    go on waiting for a client that has left.
    """
    try:
        yield
    except SoftTimeLimitExceeded:
        for connection in connections.all(initialized_only=True):
            raw = connection.connection
            if raw is not None and connection.vendor == "postgresql":
                if raw.info.transaction_status == pq.TransactionStatus.ACTIVE:
                    with contextlib.suppress(Exception):  # closed below either way
                        raw.cancel_safe(timeout=5.0)
            connection.close()
        raise


@shared_task(
    name="annotation.import_pairs",
    acks_late=True,
    soft_time_limit=settings.IMPORT_TIME_LIMIT_S,
    time_limit=settings.IMPORT_TIME_LIMIT_S + JOB_LIMIT_GRACE_S,
)
def import_pairs_task(job_id: int) -> None:
    # At the soft limit the import's transaction rolls back and its job is failed, naming it.
    with closing_connections_at_time_limit():
        import_job_run(job_id=job_id)


# Periodic tasks (settings.CELERY_BEAT_SCHEDULE) expire before beat sends the next one: a default
# worker held up (an import shares the queue for hours) would otherwise find hundreds queued and
# run them back to back, when the next one does the same work.
@shared_task(
    name="annotation.expire_leases",
    expires=25,  # every 30 s
    soft_time_limit=LIGHT_TASK_SOFT_LIMIT_S,
    time_limit=LIGHT_TASK_HARD_LIMIT_S,
)
def expire_leases_task() -> int:
    with closing_connections_at_time_limit():
        return assignments_expire()


@shared_task(
    name="annotation.fail_stale_work",
    expires=110,  # every 120 s
    soft_time_limit=LIGHT_TASK_SOFT_LIMIT_S,
    time_limit=LIGHT_TASK_HARD_LIMIT_S,
)
def fail_stale_work_task() -> int:
    """Imports and code runs whose worker died are marked failed rather than left running,
    what a killed sandbox worker left on this host (processes, scratch directories) goes, and
    labels a quarantine left behind (its process killed just after its commit) are set aside."""
    with closing_connections_at_time_limit():
        with contextlib.suppress(SandboxUnavailable, OSError):
            sandbox_sweep()
        return import_jobs_fail_stale() + code_runs_fail_stale() + members_set_aside_left_behind()

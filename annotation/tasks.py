"""Celery tasks of the annotation app: thin adapters over services."""

from __future__ import annotations

import contextlib

from celery import shared_task
from django.conf import settings

from annotation.services.assignments import assignments_expire
from annotation.services.import_jobs import import_job_run, import_jobs_fail_stale
from annotation.services.members import members_set_aside_left_behind
from annotation.services.tools import code_runs_fail_stale
from annotation.tool_tasks import run_code_task
from annotation.tools.sandbox import SandboxUnavailable, sandbox_sweep
from core.time_limits import (
    JOB_LIMIT_GRACE_S,
    LIGHT_TASK_HARD_LIMIT_S,
    LIGHT_TASK_SOFT_LIMIT_S,
)

__all__ = [
    "expire_leases_task",
    "fail_stale_work_task",
    "import_pairs_task",
    "run_code_task",
]


@shared_task(
    name="annotation.import_pairs",
    acks_late=True,
    soft_time_limit=settings.IMPORT_TIME_LIMIT_S,
    time_limit=settings.IMPORT_TIME_LIMIT_S + JOB_LIMIT_GRACE_S,
)
def import_pairs_task(job_id: int) -> None:
    # At the soft limit the import's transaction rolls back and its job is failed, naming it.
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
    with contextlib.suppress(SandboxUnavailable, OSError):
        sandbox_sweep()
    return import_jobs_fail_stale() + code_runs_fail_stale() + members_set_aside_left_behind()

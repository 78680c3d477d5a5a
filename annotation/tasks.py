"""Celery tasks of the annotation app: thin adapters over services."""

from __future__ import annotations

from celery import shared_task

from annotation.services.assignments import assignments_expire
from annotation.services.import_jobs import import_job_run
from annotation.tool_tasks import run_code_task

__all__ = ["expire_leases_task", "import_pairs_task", "run_code_task"]


@shared_task(name="annotation.import_pairs", acks_late=True)
def import_pairs_task(job_id: int) -> None:
    import_job_run(job_id=job_id)


@shared_task(name="annotation.expire_leases")
def expire_leases_task() -> int:
    return assignments_expire()

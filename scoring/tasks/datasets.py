"""Celery tasks for exports and Stage-2 curation: thin adapters over the services.

Autodiscovery imports the ``scoring.tasks`` package, which imports this module. Jobs run
through ``scoring.jobs.runner.job_run``: a failure marks the job failed (no automatic retry: the
admin starts another export), and a task redelivered after its worker died takes the job
over once its heartbeat is stale.
"""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

from core.time_limits import JOB_LIMIT_GRACE_S
from scoring.datasets.curation import curation_run
from scoring.datasets.export import export_run
from scoring.jobs.runner import JobError, worker_name
from scoring.tasks.busy import retry_while_busy


# Exports read the database and write files: light work, routed to the default queue (not the
# gpu queue of the other scoring.* tasks) by settings.CELERY_TASK_ROUTES. Its time grows with
# the campaign; at the soft limit the job fails, naming it, and its temporary files go.
@shared_task(
    name="scoring.export_snapshot",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(JobError,),
    soft_time_limit=settings.EXPORT_TIME_LIMIT_S,
    time_limit=settings.EXPORT_TIME_LIMIT_S + JOB_LIMIT_GRACE_S,
)
def export_snapshot_task(self: Task, job_id: int) -> None:
    claim = export_run(job_id=job_id, worker=worker_name(self.request.hostname))
    retry_while_busy(self, claim)


# Curation scores the pool with reward models: the gpu queue, like training and scoring.
@shared_task(
    name="scoring.curate_pool",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(JobError,),
    soft_time_limit=settings.TRAINING_TIME_LIMIT_S,
    time_limit=settings.TRAINING_TIME_LIMIT_S + 120,
)
def curate_pool_task(self: Task, job_id: int) -> None:
    retry_while_busy(self, curation_run(job_id=job_id, worker=worker_name(self.request.hostname)))

"""Celery tasks for exports and Stage-2 curation: thin adapters over the services.

Autodiscovery imports only ``scoring.tasks``; that module imports this one. A failure marks
the job failed (no automatic retry: the job row is the truth, and the admin starts another);
a task redelivered after its worker died re-claims the job once its heartbeat is stale.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from scoring.services.curation import curation_run
from scoring.services.export import export_run


# Exports read the database and write files: light work for the default queue, not the gpu
# queue that routes send scoring.* to (a task's own queue wins over the routes).
@shared_task(
    name="scoring.export_snapshot",
    queue="default",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def export_snapshot_task(self, job_id: int) -> None:  # noqa: ANN001 - Celery's bound task
    export_run(job_id=job_id, worker=self.request.hostname or "")


# Curation scores the pool with reward models: the gpu queue, like training and scoring.
@shared_task(
    name="scoring.curate_pool",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.TRAINING_TIME_LIMIT_S,
    time_limit=settings.TRAINING_TIME_LIMIT_S + 120,
)
def curate_pool_task(self, job_id: int) -> None:  # noqa: ANN001 - Celery's bound task
    curation_run(job_id=job_id, worker=self.request.hostname or "")

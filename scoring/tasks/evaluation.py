"""Evaluation of model versions on the uploaded evaluation sets."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

from core.time_limits import (
    LIGHT_TASK_HARD_LIMIT_S,
    LIGHT_TASK_SOFT_LIMIT_S,
)
from scoring.evaluation.services import evaluation_run, evaluations_enqueue_pending
from scoring.jobs.runner import JobError, worker_name
from scoring.tasks.busy import retry_while_busy


# Scores with a reward model: the gpu queue (the scoring.* route).
@shared_task(
    name="scoring.evaluate_model",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(JobError,),
    soft_time_limit=settings.TRAINING_TIME_LIMIT_S,
    time_limit=settings.TRAINING_TIME_LIMIT_S + 120,
)
def evaluate_model_task(self: Task, job_id: int) -> None:
    # The queue it came from: a sharded evaluation sends its shards to the same one.
    queue = (self.request.delivery_info or {}).get("routing_key") or None
    claim = evaluation_run(job_id=job_id, worker=worker_name(self.request.hostname), queue=queue)
    retry_while_busy(self, claim)


# Light: a few queries; the default queue (CELERY_TASK_ROUTES), run by the beat every 60 s. It
# expires before the next one is sent, so a held-up worker does not run a pile of them.
@shared_task(
    name="scoring.evaluate_pending",
    ignore_result=True,
    expires=55,
    soft_time_limit=LIGHT_TASK_SOFT_LIMIT_S,
    time_limit=LIGHT_TASK_HARD_LIMIT_S,
)
def evaluate_pending_task() -> None:
    evaluations_enqueue_pending()

"""Model-job tasks (train, score, loop): thin adapters that take a job id, claim, run one service.

Model tasks run on the ``gpu`` queue (settings route ``scoring.*`` there), one at a time per
worker. They acknowledge late and are rejected (so redelivered) when their worker dies; the job
claim makes a second delivery harmless (see ``scoring.jobs.runner``). Transient database or
Redis errors retry the task automatically; user errors (``JobError``) are expected failures,
recorded on the job row. Nothing is returned: the job row holds the result.
"""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from scoring.evaluation.services import evaluation_shard_work
from scoring.jobs.runner import JobError, worker_name
from scoring.jobs.shards import ShardWork, shard_run
from scoring.loop.model_jobs import model_job_run
from scoring.loop.pool_scoring import shard_score_work
from scoring.models import Job, JobShard
from scoring.tasks.busy import retry_while_busy

TRANSIENT_ERRORS = (OperationalError, InterfaceError, RedisConnectionError)

_MODEL_TASK_OPTIONS = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": settings.TRAINING_TIME_LIMIT_S,
    "time_limit": settings.TRAINING_TIME_LIMIT_S + 120,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "max_retries": 5,
    "throws": (JobError,),
}


def _queue_of(task: Task) -> str | None:
    info = task.request.delivery_info or {}
    return info.get("routing_key") or None


def _run_model_job(task: Task, job_id: int) -> None:
    claim = model_job_run(
        job_id=job_id, worker=worker_name(task.request.hostname), queue=_queue_of(task)
    )
    retry_while_busy(task, claim)  # another delivery of this job runs with a live heartbeat


@shared_task(name="scoring.train_reward_model", **_MODEL_TASK_OPTIONS)
def train_reward_model_task(self: Task, job_id: int) -> None:
    _run_model_job(self, job_id)


@shared_task(name="scoring.score_pool", **_MODEL_TASK_OPTIONS)
def score_pool_task(self: Task, job_id: int) -> None:
    _run_model_job(self, job_id)


@shared_task(name="scoring.run_round_loop", **_MODEL_TASK_OPTIONS)
def run_round_loop_task(self: Task, job_id: int) -> None:
    _run_model_job(self, job_id)


@shared_task(name="scoring.cross_validate", **_MODEL_TASK_OPTIONS)
def cross_validate_task(self: Task, job_id: int) -> None:
    _run_model_job(self, job_id)


def _shard_work(shard: JobShard) -> ShardWork:
    # An evaluation's shards score evaluation pairs; every other job's shards score the pool.
    if shard.job.kind == Job.Kind.EVALUATE:
        return evaluation_shard_work(shard)
    return shard_score_work(shard)


@shared_task(name="scoring.score_shard", **_MODEL_TASK_OPTIONS)
def score_shard_task(self: Task, shard_id: int) -> None:
    """One shard of a score stage or an evaluation (``scoring.jobs.shards``); any gpu worker
    takes it."""
    claim = shard_run(
        shard_id=shard_id, worker=worker_name(self.request.hostname), work_for=_shard_work
    )
    retry_while_busy(self, claim)  # a live worker holds it

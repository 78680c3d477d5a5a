"""Running model jobs (train, score, loop, cross-validation), on a worker or inline.

What each kind of job does (``job_work_for``); ``model_job_run`` claims and runs one (the
tasks call it). ``job_run_inline`` runs a job in the calling process (management commands with
``--inline``, the benchmark); ``job_wait`` polls a job row until it finishes. Jobs are started
by ``scoring.loop.requests``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scoring.jobs.runner import JobClaim, JobContext, JobError, JobWork, job_run, worker_name
from scoring.jobs.shards import shards_run_inline
from scoring.loop.cross_validation import cross_validate_job_work
from scoring.loop.pool_scoring import (
    pool_score_hand_off,
    pool_score_summary,
    scored_version,
    scoring_log_line,
    shard_score_work,
)
from scoring.loop.prioritisation import pool_prioritise
from scoring.loop.rounds import round_close_and_advance
from scoring.loop.training import train_job_work
from scoring.models import Job
from scoring.selectors import active_model_version

# --- What each kind of job does ------------------------------------------------------------


def _train_work(context: JobContext) -> dict[str, Any]:
    return train_job_work(context)


def _score_work(context: JobContext) -> dict[str, Any]:
    job = context.job
    include_gold = bool(job.params.get("retrieve_from_gold", True))
    if job.stage == Job.Stage.MAIN:
        version = active_model_version(campaign=job.campaign)
        if version is None:
            raise JobError("the campaign has no active model version to score with")
        context.log(f"scoring the pool with v{version.number}")
        pool_score_hand_off(
            version=version, context=context, include_gold=include_gold,
            progress_range=(0.0, 0.9),
        )
    version = scored_version(job)
    scoring = pool_score_summary(job=job, version=version, include_gold=include_gold)
    context.log(scoring_log_line(scoring))
    with context.stage(0.9, 1.0, "prioritising"):
        prioritisation = pool_prioritise(
            version=version, context=context, include_gold=include_gold
        )
    return {
        "version": version.number,
        **{name: scoring[name] for name in ("scored", "pool", "shards", "workers")},
        "scoring": scoring,
        "prioritisation": prioritisation,
    }


def _loop_work(context: JobContext) -> dict[str, Any]:
    return round_close_and_advance(campaign=context.job.campaign, context=context)


_WORK: dict[str, JobWork] = {
    Job.Kind.TRAIN: _train_work,
    Job.Kind.SCORE: _score_work,
    Job.Kind.LOOP: _loop_work,
    Job.Kind.CROSS_VALIDATE: cross_validate_job_work,
}


def job_work_for(job: Job) -> JobWork:
    try:
        return _WORK[job.kind]
    except KeyError:
        raise JobError(f"{job.kind} jobs are not model jobs") from None


def model_job_run(
    *, job_id: int, worker: str, reraise: bool = True, queue: str | None = None
) -> JobClaim:
    return job_run(
        job_id=job_id, worker=worker, work_for=job_work_for, reraise=reraise, queue=queue
    )


def job_run_inline(*, job: Job) -> Job:
    """Run a queued job in this process, its shards too; the job row records the outcome."""
    worker = "inline:" + worker_name()
    model_job_run(job_id=job.pk, worker=worker, reraise=False)
    job.refresh_from_db()
    if job.status == Job.Status.RUNNING and job.stage == Job.Stage.SHARDS:
        shards_run_inline(job=job, worker=worker, work_for=shard_score_work)
        job.refresh_from_db()
    if job.status == Job.Status.RUNNING and job.stage == Job.Stage.FINISHING:
        model_job_run(job_id=job.pk, worker=worker, reraise=False)
        job.refresh_from_db()
    return job


def job_wait(
    *,
    job: Job,
    timeout: float | None = None,
    interval: float = 1.0,
    on_update: Callable[[Job], None] | None = None,
) -> Job:
    """Poll the job row until it finishes; raises TimeoutError after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last_seen: tuple[Any, ...] = ()
    while True:
        job.refresh_from_db()
        seen = (job.status, round(job.progress, 3), job.message)
        if on_update is not None and seen != last_seen:
            on_update(job)
            last_seen = seen
        if job.is_finished:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job.pk} still {job.status} after {timeout} s")
        time.sleep(interval)
